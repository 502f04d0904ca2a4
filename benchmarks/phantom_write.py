"""Benchmark: write a phantom brain store; report peak memory and writing speed.

Usage::

    python benchmarks/phantom_write.py --slices 4 --height 32768 --width 32768 --out /tmp/big.zarr

Reports wall time of the render+write phase and of the pyramid phase, the level-0 uncompressed
size (images + gene counts + region labels), MB/s, the on-disk size, and the peak resident set
size (``resource.getrusage``, interpreter and libraries included) of the parent and of the
largest worker process, and their bound ``parent + workers x worker`` on the job's peak; with
psutil installed, also the largest sum of the RSS of the parent and all its child processes
sampled every 0.5 s (the memory the job held at once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import sys
import threading
import time
from pathlib import Path


class _RssSampler:
    """Samples the summed RSS of this process and its children in a thread (needs psutil)."""

    def __init__(self, interval: float = 0.5):
        self.peak = 0
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # a child that just exited
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--height", type=int, default=32768)
    ap.add_argument("--width", type=int, default=32768)
    ap.add_argument("--genes", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/phantom_bench.zarr")
    ap.add_argument("--keep", action="store_true", help="keep the written store")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from napari_teramind.phantom import PhantomSpec, write_phantom

    spec = PhantomSpec(
        seed=args.seed, n_slices=args.slices, height=args.height, width=args.width,
        n_genes=args.genes,
    )  # fmt: skip
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    n_units = [0]

    def progress(done: int, total: int) -> None:
        if "first_progress" not in marks:
            marks["first_progress"] = time.perf_counter()
        n_units[0] = done
        if done % 50 == 0 or done == total:
            el = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{done}/{total} {el:.0f}s peak RSS {rss:.0f} MB", file=sys.stderr, flush=True)

    # time the two phases: patch finalize to mark the start of the pyramid phase
    from napari_teramind.store import BrainStore

    orig = BrainStore.finalize

    def finalize(self, *a, **k):
        marks["pyramid_start"] = time.perf_counter()
        return orig(self, *a, **k)

    BrainStore.finalize = finalize
    out = Path(args.out)
    try:
        import psutil  # noqa: F401

        sampler: _RssSampler | None = _RssSampler()
    except ImportError:
        sampler = None
    with sampler or contextlib.nullcontext():
        write_phantom(out, spec, progress=progress, overwrite=True, workers=args.workers)
    t1 = time.perf_counter()
    BrainStore.finalize = orig
    level0 = spec.nbytes
    render = marks["pyramid_start"] - t0
    res = {
        "shape": list(spec.shape),
        "genes": len(spec.gene_names),
        "workers": args.workers,
        "level0_uncompressed_MB": round(level0 / 1e6, 1),
        "render_write_s": round(render, 1),
        "pyramid_s": round(t1 - marks["pyramid_start"], 1),
        "total_s": round(t1 - t0, 1),
        "MB_per_s_level0_render_write": round(level0 / 1e6 / render, 1),
        "MB_per_s_level0_total": round(level0 / 1e6 / (t1 - t0), 1),
        "on_disk_MB": round(_du(out) / 1e6, 1),
        "peak_rss_parent_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_MB": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
    }
    # upper bound of the whole job: parent peak + every worker at the largest worker peak
    res["peak_total_bound_MB"] = round(
        res["peak_rss_parent_MB"] + args.workers * res["peak_rss_worker_MB"], 1
    )
    if sampler is not None:
        res["peak_rss_sum_sampled_MB"] = round(sampler.peak / 1e6, 1)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if not args.keep:
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
