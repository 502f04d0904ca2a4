"""Job overhead: the same generation through generate_roi, an in-process job and local workers.

Usage::

    python benchmarks/jobs.py                    # 512 x 512 px, 2 slices, 3 steps, 256 px blocks
    python benchmarks/jobs.py --px 256 --workers 2

All three runs use the same tiny seeded model, phantom, spec and thread budget, in one
process run, side by side. The job adds claims, done markers, a heartbeat thread and the
driver's pyramid updates per unit; the figure is its wall time relative to ``generate_roi``
(which keeps its state in a temporary directory and records nothing). The local run starts
``--workers`` processes (torch import and model load included in its time). All three
outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--block-px", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from napari_teramind.generate import generate_roi
    from napari_teramind.generate.executors import run_job
    from napari_teramind.generate.job import JobSpec, create_job
    from napari_teramind.generate.numerics import Numerics
    from napari_teramind.model import ModelConfig, TeraMindUNet, load_checkpoint, save_checkpoint
    from napari_teramind.phantom import PhantomSpec, write_phantom
    from napari_teramind.store import BrainStore

    d = Path(tempfile.mkdtemp(prefix="teramind-bench-jobs-"))
    ph = PhantomSpec(seed=1, n_slices=2, height=max(256, args.px), width=max(256, args.px))
    write_phantom(d / "ph.zarr", ph, workers=1, executor="thread")
    torch.manual_seed(0)
    net = TeraMindUNet(ModelConfig.preset("tiny", len(ph.gene_names))).eval()
    save_checkpoint(d / "model", net, None, list(ph.gene_names))
    model, info = load_checkpoint(d / "model")
    region = (0, args.px, 0, args.px)

    def images(path: Path) -> np.ndarray:
        return np.asarray(BrainStore.open(path).images()[:, :2, : args.px, : args.px])

    t = time.perf_counter()
    for _ in generate_roi(d / "ph.zarr", model, region, (0, 1), seed=3, steps=args.steps,
                          gene_names=info.gene_names, output=d / "roi.zarr",
                          block_px=args.block_px, preview=False,
                          numerics=Numerics(threads=1)):  # fmt: skip
        pass
    t_roi = time.perf_counter() - t

    times = {}
    for name, kw in (("inprocess", {}), ("local", {"workers": args.workers})):
        spec = JobSpec(source=str(d / "ph.zarr"), model=str(d / "model"), region=region,
                       slices=(0, 1), output=str(d / f"{name}.zarr"), seed=3,
                       steps=args.steps, block_px=args.block_px, executor=name,
                       numerics=Numerics(threads=1), **kw)  # fmt: skip
        job = create_job(d / f"{name}.job", spec)
        t = time.perf_counter()
        run_job(job.path)
        times[name] = time.perf_counter() - t
        assert np.array_equal(images(d / f"{name}.zarr"), images(d / "roi.zarr"))
    units = job.units_total
    print(f"{args.px} x {args.px} px, 2 slices, {args.steps} steps, {args.block_px} px blocks: "
          f"{units} units")  # fmt: skip
    print(f"generate_roi        {t_roi:7.2f} s   {t_roi / units:.3f} s/unit")
    for name, s in times.items():
        print(f"job {name:<15} {s:7.2f} s   {s / units:.3f} s/unit   {s / t_roi:.2f}x ROI")
    print("outputs identical: yes")


if __name__ == "__main__":
    main()
