"""What the per-sample linear layers cost on CPU: ROI generation with SampleLinear vs batched.

Usage::

    python benchmarks/sample_linear.py                    # 256 px, 2 slices, 15 steps, 2 threads
    python benchmarks/sample_linear.py --px 512 --repeats 3

:class:`napari_teramind.model.linear.SampleLinear` computes each patch's linear layers in its
own CPU call, so a patch rounds the same at any batch position (tiled == global, bitwise, for
every block size; see docs/generation.md). This script runs
:func:`napari_teramind.generate.generate_roi` with the bundled model on a phantom region
twice per repeat, alternating: once as shipped (per-sample) and once with the layers'
forward swapped for one batched ``F.linear`` call, and prints the median wall times, their
ratio, and the largest difference between the two outputs (expected: a few uint8 levels at
most, from last-bit rounding carried through the DDIM steps).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_teramind.generate import generate_roi
from napari_teramind.generate.numerics import Numerics
from napari_teramind.model import linear
from napari_teramind.model.bundled import load_bundled_model
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore


def _batched(self: linear.SampleLinear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, self.weight, self.bias)


def _run(store: BrainStore, model, info, region, slices, steps: int, out: Path, threads: int):
    y0, y1, x0, x1 = region
    start = time.perf_counter()
    last = None
    for item in generate_roi(store, model, region, slices, seed=1, steps=steps,
                             gene_names=info.gene_names, output=out, model_info=info,
                             preview=False, numerics=Numerics(threads=threads)):  # fmt: skip
        last = item
    seconds = time.perf_counter() - start
    assert last is not None and last.output is not None
    dapi = np.asarray(BrainStore.open(last.output).images()[0, slices, y0:y1, x0:x1])
    return seconds, dapi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--px", type=int, default=256, help="edge of the square region (px)")
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    model, info = load_bundled_model()
    tmp = Path(tempfile.mkdtemp(prefix="sample-linear-"))
    spec = PhantomSpec(seed=0, n_slices=args.slices + 1)
    store = write_phantom(tmp / "phantom.zarr", spec, workers=1)
    y0, x0 = (store.height // 2 // 64) * 64, (store.width // 2 // 64) * 64
    region = (y0, y0 + args.px, x0, x0 + args.px)
    slices = list(range(args.slices))
    original = linear.SampleLinear.forward
    times: dict[str, list[float]] = {"per-sample": [], "batched": []}
    images: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        for name, forward in (("per-sample", original), ("batched", _batched)):
            linear.SampleLinear.forward = forward
            try:
                seconds, dapi = _run(store, model, info, region, slices, args.steps,
                                     tmp / f"{name}-{r}.zarr", args.threads)  # fmt: skip
            finally:
                linear.SampleLinear.forward = original
            times[name].append(seconds)
            images[name] = dapi
    per, bat = statistics.median(times["per-sample"]), statistics.median(times["batched"])
    diff = np.abs(images["per-sample"].astype(int) - images["batched"].astype(int))
    print(f"region {args.px} px x {args.slices} slices, {args.steps} DDIM steps, "
          f"{args.threads} threads, {args.repeats} repeats, {torch.__version__}")  # fmt: skip
    print(f"per-sample linear (shipped): {per:7.2f} s")
    print(f"batched linear:              {bat:7.2f} s")
    print(f"ratio per-sample / batched:  {per / bat:7.3f}")
    print(f"DAPI output: max |diff| {int(diff.max())} levels, {float((diff > 0).mean()):.4%} of px")


if __name__ == "__main__":
    main()
