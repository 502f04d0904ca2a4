"""Binning throughput of transcript tables against reading the same table with pyarrow alone.

For each table size (a MERSCOPE-like ``detected_transcripts.csv`` with all nine columns), one
run measures, in fresh subprocesses so peak memory is per step, alternating the two steps
``--repeat`` times (best kept) so both see the same machine load:

* ``read``: ``pyarrow.csv.read_csv`` of the three columns binning needs (multi-threaded);
* ``bin``: :func:`napari_teramind.ingest.transcripts.bin_chunks` over the streaming reader
  (read + gene lookup + affine + block binning + per-slice/per-gene report).

It prints transcripts per second, the ratio bin/read in wall time (the goal is <= 1.5) and in
CPU time (user + system, all threads: steadier than wall time on a shared machine), and the peak
RSS of each step with, in brackets, the RSS after imports; the peak should stay flat as the
table grows 10x.

    python benchmarks/ingest_binning.py --rows 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

H = W = 4096
CHUNK_ROWS = 250_000
N_GENES = 200


def write_table(path: Path, n: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    genes = np.array([f"Gene{i}" for i in range(N_GENES)] + ["Blank-1", "Blank-2"])
    step = 2_000_000
    with pcsv.CSVWriter(
        path,
        pa.schema(
            [
                ("barcode_id", pa.int64()),
                ("global_x", pa.float64()),
                ("global_y", pa.float64()),
                ("global_z", pa.float64()),
                ("x", pa.float64()),
                ("y", pa.float64()),
                ("fov", pa.int64()),
                ("gene", pa.string()),
                ("transcript_id", pa.string()),
            ]
        ),
    ) as w:
        for start in range(0, n, step):
            k = min(step, n - start)
            fov = np.sort(rng.integers(0, 400, k))  # MERSCOPE writes field of view by field
            gx = (fov % 20) * (W / 20 * 0.108) + rng.uniform(0, W / 20 * 0.108, k)
            gy = (fov // 20) * (H / 20 * 0.108) + rng.uniform(0, H / 20 * 0.108, k)
            w.write_table(
                pa.table(
                    {
                        "barcode_id": rng.integers(0, 500, k),
                        "global_x": gx.round(3),
                        "global_y": gy.round(3),
                        "global_z": rng.integers(0, 7, k).astype(float),
                        "x": rng.uniform(0, 2048, k).round(2),
                        "y": rng.uniform(0, 2048, k).round(2),
                        "fov": fov,
                        "gene": genes[rng.integers(0, len(genes), k)],
                        "transcript_id": np.char.add("ENST", (start + np.arange(k)).astype(str)),
                    }
                )
            )


def _step(kind: str, path: str) -> dict:
    # every module either step uses is imported before the clock starts (the readers import
    # pyarrow lazily; an import inside the timed region cost ~1 s, once per process)
    import pyarrow.compute
    import pyarrow.csv as pcsv
    import pyarrow.parquet  # noqa: F401

    from napari_teramind.ingest.report import SliceReport
    from napari_teramind.ingest.tables import TableColumns, iter_chunks
    from napari_teramind.ingest.transcripts import GeneCoder, bin_chunks

    base_rss = _rss_now_mb()
    c0 = _cpu()
    t0 = time.perf_counter()  # imports excluded from both timings
    if kind == "read":
        tab = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(include_columns=["gene", "global_x", "global_y"]),
        )
        n = tab.num_rows
    else:
        cols = TableColumns("gene", "global_x", "global_y")
        names = [f"Gene{i}" for i in range(N_GENES)]
        coder = GeneCoder({g: i for i, g in enumerate(names)})
        m = np.array([[1 / 0.108, 0, 0], [0, 1 / 0.108, 0], [0, 0, 1]])
        rep = SliceReport(z=0)
        for _band, _counts in bin_chunks(
            lambda: iter_chunks(path, cols, CHUNK_ROWS),
            coder=coder,
            n_genes=N_GENES,
            height=H,
            width=W,
            block=16,
            matrices=[m],
            slice_of=None,
            reports=[rep],
            gene_names=names,
        ):
            pass
        n = rep.read
        assert rep.binned + sum(rep.dropped.values()) == n, rep
    dt = time.perf_counter() - t0
    return {
        "rows": n,
        "seconds": dt,
        "cpu_seconds": _cpu() - c0,
        "base_rss_mb": base_rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mb() -> float:
    """Peak resident set size of this process image (Linux ``VmHWM``, reset by ``exec``).

    ``ru_maxrss`` is not used on Linux: it keeps the high-water mark across ``fork`` + ``exec``,
    so a child would report the parent's peak (here, the table writer's).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mb() -> float:
    """Current resident set size (Linux ``/proc``; the peak so far elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeat", type=int, default=2, help="runs per step (best is kept)")
    ap.add_argument("--canvas", type=int, default=4096, help="canvas edge in pixels")
    ap.add_argument("--chunk-rows", type=int, default=250_000, help="rows per chunk")
    ap.add_argument("--tmp", default=None, help="folder for the generated tables")
    ap.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global H, W, CHUNK_ROWS
    H = W = args.canvas
    CHUNK_ROWS = args.chunk_rows
    if args.step:
        print(json.dumps(_step(*args.step)))
        return
    print(
        f"canvas {H} x {W} px, {N_GENES} genes, 16-px blocks; "
        f"count buffer {N_GENES * (H // 16) * (W // 16) * 4 / 2**20:.0f} MiB"
    )
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.rows:
            path = Path(tmp) / f"t{n}.csv"
            write_table(path, n)
            runs: dict[str, list[dict]] = {"read": [], "bin": []}
            for _ in range(args.repeat):  # alternate, so both steps see the same load
                for kind in ("read", "bin"):
                    cmd = [sys.executable, __file__, "--canvas", str(args.canvas)]
                    cmd += ["--chunk-rows", str(args.chunk_rows), "--step", kind, str(path)]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    runs[kind].append(json.loads(out.stdout))
            r, b = (min(runs[k], key=lambda x: x["seconds"]) for k in ("read", "bin"))
            rc, bc = (min(x["cpu_seconds"] for x in runs[k]) for k in ("read", "bin"))
            print(
                f"{n:>11,} rows ({path.stat().st_size / 2**20:,.0f} MiB): "
                f"read {n / r['seconds'] / 1e6:5.2f} M/s ({r['seconds']:.2f} s, cpu {rc:.2f} s, "
                f"peak {r['peak_rss_mb']:,.0f} [{r['base_rss_mb']:.0f}] MiB) | "
                f"bin {n / b['seconds'] / 1e6:5.2f} M/s ({b['seconds']:.2f} s, cpu {bc:.2f} s, "
                f"peak {b['peak_rss_mb']:,.0f} [{b['base_rss_mb']:.0f}] MiB) | "
                f"bin/read wall {b['seconds'] / r['seconds']:.2f}x cpu {bc / rc:.2f}x",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
