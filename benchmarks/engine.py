"""Per-block units on disk state vs resident spans in memory: time and state I/O, side by side.

Usage::

    python benchmarks/engine.py                 # ROI case and a multi-block job, 15 steps
    python benchmarks/engine.py --steps 6 --px 256 --model tiny

Both engines run the same spec in this one process on CPU, as in-process jobs with the
CLI's defaults except the unit layout: ``memory_budget=0`` (the step-synchronous engine of
before: every step of every block reads its block plus halo from a float32 zarr state array
and writes the block back) against the default (a slice pair's state stays in memory for
``checkpoint_every = 8`` steps and is checkpointed at the end of each span) and, for the
multi-block job, tiles of half its side (``tile_px``, as a whole-brain pair runs when it
does not fit the budget: each tile advanced a span with a growing halo,
:mod:`napari_teramind.generate.tiles`; at this small size the halo is a large part of a
tile, so tiles cost more time and I/O than they will on a whole brain). The last lines
project the defaults on a whole-brain slice pair from the tile geometry the job would run (no
generation). For each engine it prints seconds per output patch per step, and bytes per
output patch per step of

* **state I/O**: bytes the engine moved to and from the state arrays (counted in the state
  layer: every array read and write, uncompressed), and
* **process I/O**: ``rchar + wchar`` of ``/proc/self/io`` over the run (every byte this
  process read or wrote: state, genes, images, pyramids, markers; compressed on disk).

The outputs of all are checked to be identical, byte for byte. The last line measures bf16
autocast on CPU against float32 for the ROI case (``generate_roi(bf16=True)``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


class Counting:
    """A state array proxy counting the bytes read and written through it."""

    def __init__(self, target: Any, counts: dict[str, int]):
        self._target, self._counts = target, counts

    def __getitem__(self, key: Any) -> np.ndarray:
        value = np.asarray(self._target[key])
        self._counts["state"] += value.nbytes
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._counts["state"] += np.asarray(value).nbytes
        self._target[key] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def proc_io() -> int:
    """``rchar + wchar`` of this process (0 where /proc is missing)."""
    try:
        fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    except OSError:
        return 0
    return int(fields["rchar"]) + int(fields["wchar"])


def run_case(name: str, d: Path, store: Path, model: Path, region, slices, steps: int,
             block_px: int, budget: int | None, tile_px: int | None = None,
             ) -> tuple[dict[str, float], np.ndarray]:  # fmt: skip
    """One in-process job; returns its figures and its images."""
    import napari_teramind.generate.engine as engine
    from napari_teramind.generate.executors import run_job
    from napari_teramind.generate.job import JobSpec, create_job
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.store import BrainStore

    counts = {"state": 0}
    opened = engine.open_state_arrays

    def counting_open(directory, mode="r+"):
        return tuple(Counting(a, counts) for a in opened(directory, mode))

    spec = JobSpec(source=str(store), model=str(model), region=region, slices=slices,
                   output=str(d / f"{name}.zarr"), seed=3, steps=steps, block_px=block_px,
                   memory_budget=budget, tile_px=tile_px)  # fmt: skip
    job = create_job(d / f"{name}.job", spec)
    engine.open_state_arrays = counting_open
    try:
        io0, t0 = proc_io(), time.perf_counter()
        run_job(job.path)
        seconds, io = time.perf_counter() - t0, proc_io() - io0
    finally:
        engine.open_state_arrays = opened
    src = BrainStore.open(store)
    plan = GenerationPlan(src.shape, region, slices, block_px=block_px, steps=steps)
    per = plan.n_patches * steps
    y0, y1, x0, x1 = region
    images = np.asarray(BrainStore.open(d / f"{name}.zarr").images()[:, list(slices), y0:y1,
                                                                      x0:x1])  # fmt: skip
    kind = job.plan["units"]["kind"]
    return {"s": seconds / per, "state": counts["state"] / per, "io": io / per,
            "units": job.units_total, "kind": kind,
            "tile_px": job.plan["units"].get("tile_px")}, images  # fmt: skip


def whole_brain_projection(steps: int, n_genes: int = 500) -> None:
    """The defaults on one whole-brain slice pair, from the geometry the job would run."""
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.generate.resident import (
        DEFAULT_CHECKPOINT_EVERY,
        DEFAULT_MEMORY_BUDGET,
        resident_nbytes,
    )
    from napari_teramind.generate.schemes import DEFAULT_SCHEME
    from napari_teramind.generate.tiles import (
        choose_tile_px,
        tile_nbytes,
        tile_overhead,
        tile_state_io,
    )

    plan = GenerationPlan((50, 73216, 105984), (0, 73216, 0, 105984), (0, 1), seed=0,
                          steps=steps, scheme=DEFAULT_SCHEME)  # fmt: skip
    every = DEFAULT_CHECKPOINT_EVERY
    t = choose_tile_px(plan, every, n_genes, DEFAULT_MEMORY_BUDGET)
    print(f"whole-brain pair ({n_genes} genes, {steps} steps, {DEFAULT_SCHEME}, defaults): "
          "a resident pair needs "
          f"{resident_nbytes(plan, n_genes) / 2**30:.0f} GiB > "
          f"{DEFAULT_MEMORY_BUDGET / 2**30:.0f} GiB budget -> tiles of {t} px, "
          f"{tile_nbytes(plan, t, every, n_genes) / 2**30:.2f} GiB per unit, state I/O "
          f"{tile_state_io(plan, t, every) / 1000:.1f} KB per output patch per step, "
          f"{tile_overhead(plan, t, every):.3f}x patches computed per output patch")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=512, help="ROI side (the multi-block job: 2x)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--model", default="micro", help="micro (fast) or a preset (tiny, small)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default="roi,job", help="roi, job or both (comma-separated)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from napari_teramind.generate import generate_roi
    from napari_teramind.model import ModelConfig, TeraMindUNet, load_checkpoint, save_checkpoint
    from napari_teramind.phantom import PhantomSpec, write_phantom
    from napari_teramind.store import BrainStore

    d = Path(tempfile.mkdtemp(prefix="teramind-bench-engine-"))
    side = 2 * args.px
    ph = PhantomSpec(seed=1, n_slices=4, height=side, width=side)
    write_phantom(d / "ph.zarr", ph, workers=1, executor="thread")
    torch.manual_seed(0)
    n = len(ph.gene_names)
    if args.model == "micro":
        cfg = ModelConfig(n_genes=n, model_channels=8, channel_mult=(1, 1, 2, 2),
                          num_res_blocks=1, embed_channels=16,
                          gene_map_channels=(4, 4, 4))  # fmt: skip
    else:
        cfg = ModelConfig.preset(args.model, n)
    save_checkpoint(d / "model", TeraMindUNet(cfg).eval(), None, list(ph.gene_names))
    cases = [
        ("ROI", (0, args.px, 0, args.px), (0, 1), 256),
        ("multi-block job", (0, side, 0, side), (0, 1, 2, 3), 256),
    ]
    print(f"engine benchmark: {args.steps} steps, model {args.model}, {args.threads} thread(s), "
          "CPU; per output patch per step")  # fmt: skip
    print(f"{'case':16} {'engine':28} {'units':>5} {'s/patch/step':>13} "
          f"{'state I/O':>11} {'process I/O':>12}")  # fmt: skip
    wanted = {"roi": "ROI", "job": "multi-block job"}
    chosen = {wanted[c] for c in args.cases.split(",")}
    for name, region, slices, block in cases:
        if name not in chosen:
            continue
        rows = []
        engines = [("per-block, disk state", 0, None), ("resident spans (default)", None, None)]
        if name != "ROI":  # tiles of half the side, as a whole brain runs (--tile-px)
            engines.append(("tiled spans", None, side // 2))
        for i, (label, budget, tile_px) in enumerate(engines):
            key = f"{name.split()[0]}-{i}"
            fig, img = run_case(key, d, d / "ph.zarr", d / "model", region, slices, args.steps,
                                block, budget, tile_px)  # fmt: skip
            if fig["kind"] == "tiles":
                label = f"{label} ({fig['tile_px']} px)"
            rows.append((label, fig, img))
            print(f"{name:16} {label:28} {fig['units']:>5} {fig['s']:>13.4f} "
                  f"{fig['state'] / 1024:>8.1f} KiB {fig['io'] / 1024:>8.1f} KiB")  # fmt: skip
        same = all(np.array_equal(rows[0][2], r[2]) for r in rows[1:])
        print(f"{name:16} outputs identical: {same}; state I/O "
              f"{rows[0][1]['state'] / max(1, rows[1][1]['state']):.1f}x less, time "
              f"{rows[0][1]['s'] / rows[1][1]['s']:.2f}x")  # fmt: skip
        assert same, f"{name}: the engines differ"
    whole_brain_projection(15)
    # bf16 autocast on CPU against float32 (the ROI case)
    model, info = load_checkpoint(d / "model")
    outs = []
    for bf16 in (False, True):
        items = list(generate_roi(d / "ph.zarr", model, cases[0][1], (0, 1), seed=3,
                                  steps=args.steps, gene_names=info.gene_names, bf16=bf16,
                                  output=d / f"bf16-{bf16}.zarr", preview=False))  # fmt: skip
        y0, y1, x0, x1 = cases[0][1]
        outs.append(np.asarray(BrainStore.open(items[-1].output).images()[:, :2, y0:y1, x0:x1]))
    diff = np.abs(outs[0].astype(int) - outs[1].astype(int))
    print(
        f"bf16 autocast (CPU) vs float32, ROI images: max |diff| {diff.max()} / 255, "
        f"mean {diff.mean():.3f}, {np.mean(diff > 2):.2%} of pixels off by more than 2"
    )


if __name__ == "__main__":
    main()
