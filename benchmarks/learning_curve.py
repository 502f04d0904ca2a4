"""Learning curve: quality against CPU-hours at a run's checkpoints, EMA vs raw weights.

Usage::

    # measure a run (train-bundled OUT trains into OUT/run; it may still be running)
    python benchmarks/learning_curve.py --run OUT/run
    python benchmarks/learning_curve.py --run OUT/run --every 1000 --gene-crops 4 --json lc.json
    # train a tiny run first (micro network on a small phantom, a few minutes), then measure it
    python benchmarks/learning_curve.py --train /tmp/lc --tiny
    python benchmarks/learning_curve.py --train /tmp/lc --tiny --ema-decay 0.9 \\
        --loss-weighting min_snr --steps 60

Per checkpoint (the run's kept ones, or the multiples of ``--every``; step 0 = the seeded
initial weights) it prints:

* ``cpu_h``: CPU time of the training process up to that checkpoint, all threads
  (``training_state.train_cpu_seconds``; ``~`` marks older checkpoints without it, where wall
  time x threads stands in), and ``wall_h``;
* ``train``: mean logged training loss over the ``--smooth`` steps before it (the optimised
  loss: min-SNR weighted when the run is);
* for the raw weights and, where the checkpoint holds them, the EMA weights: ``heldout`` (the
  unweighted collage + tile MSE of :func:`napari_teramind.train.loop.evaluate_loss` on
  ``--loss-crops`` fixed held-out crops, identical draws for every checkpoint, comparable
  between runs of one prediction type) and the gene-following scores of
  :func:`napari_teramind.train.bundled.gene_following_scores` on ``--gene-crops`` held-out
  crops: DAPI / PolyT r of 64-px cell means, DAPI cell-mean error and the DAPI level where the
  genes count nothing (real: about 3-4 grey levels), in uint8 grey levels.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_teramind.model.checkpoint import load_checkpoint
from napari_teramind.store import BrainStore, GenePanel
from napari_teramind.train.bundled import gene_following_scores
from napari_teramind.train.loop import (
    EMA_DIR,
    TrainConfig,
    build_model,
    evaluate_loss,
    list_checkpoints,
    read_loss_csv,
    train,
)
from napari_teramind.train.patches import PatchSampler

#: The micro network of ``--tiny`` (the tiny preset cut to 2 channels, as in tests/test_train.py).
MICRO = {
    "model_channels": 2,
    "channel_mult": [1, 1, 1, 2],
    "embed_channels": 8,
    "gene_map_channels": [2, 2, 2],
    "num_res_blocks": 1,
    "prediction": "v",
}


def measure(
    model: torch.nn.Module,
    cfg: TrainConfig,
    panel: GenePanel,
    loss_crops: int,
    gene_crops: int,
    ddim_steps: int,
) -> dict[str, float]:
    """Held-out loss and gene-following scores of one set of weights."""
    use = "holdout" if cfg.holdout_slices else "train"
    sampler = PatchSampler(
        cfg.stores, panel, crop=cfg.crop, holdout_slices=cfg.holdout_slices, use=use
    )
    out: dict[str, float] = {"heldout": evaluate_loss(model, sampler, n=loss_crops)}
    if gene_crops:
        scores = gene_following_scores(
            model,
            cfg.stores[0],
            panel.names,
            holdout_slices=cfg.holdout_slices,
            n_crops=gene_crops,
            steps=ddim_steps,
        )
        for key in ("dapi_r", "polyt_r", "dapi_mae", "dapi_empty", "dapi_empty_real"):
            out[key] = float(scores[key])
    return out


def curve(
    run: Path,
    every: int = 0,
    loss_crops: int = 16,
    gene_crops: int = 4,
    ddim_steps: int = 15,
    smooth: int = 50,
    include_initial: bool = True,
    store: str | None = None,
) -> list[dict[str, Any]]:
    """Measure the checkpoints of ``run`` (see the module docstring); one dict per point."""
    run_json = run / "run.json"
    if not run_json.is_file():
        raise FileNotFoundError(f"{run} is no training run (it has no run.json)")
    cfg = TrainConfig.from_dict(json.loads(run_json.read_text()))
    if store is not None:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "stores": [store]})
    for path in cfg.stores:
        BrainStore.open(path)  # a clear error for a moved store: pass --store
    every = every or cfg.keep_every
    points = [(s, p) for s, p in list_checkpoints(run) if not every or s % every == 0]
    if not points:
        raise FileNotFoundError(f"{run} holds no checkpoint (with step a multiple of {every})")
    cols = read_loss_csv(run / "loss.csv") if (run / "loss.csv").exists() else {}
    rows: list[dict[str, Any]] = []
    if include_initial:
        model, panel = build_model(cfg)
        initial = measure(model, cfg, panel, loss_crops, gene_crops, ddim_steps)
        rows.append({"step": 0, "cpu_h": 0.0, "wall_h": 0.0, "cpu_exact": True, "raw": initial})
        print(_format(rows[-1]), flush=True)
    for step, path in points:
        model, info = load_checkpoint(path)
        panel = GenePanel(info.gene_names)
        state = info.training_state
        wall = float(state.get("train_seconds", math.nan))
        cpu = state.get("train_cpu_seconds")
        row: dict[str, Any] = {
            "step": step,
            "wall_h": wall / 3600,
            "cpu_h": (float(cpu) if cpu is not None else wall * state.get("torch_threads", 1))
            / 3600,
            "cpu_exact": cpu is not None,
        }
        if cols:
            keep = (cols["step"] <= step) & (cols["step"] > step - smooth)
            row["train"] = float(cols["loss"][keep].mean()) if keep.any() else math.nan
        row["raw"] = measure(model, cfg, panel, loss_crops, gene_crops, ddim_steps)
        if (path / EMA_DIR).is_dir():
            ema, _ = load_checkpoint(path / EMA_DIR)
            row["ema"] = measure(ema, cfg, panel, loss_crops, gene_crops, ddim_steps)
        rows.append(row)
        print(_format(row), flush=True)
    return rows


HEADER = (
    f"{'step':>6} {'cpu_h':>7} {'wall_h':>6} {'train':>7} | {'weights':>7} {'heldout':>7} "
    f"{'dapi_r':>6} {'polyt_r':>7} {'dapi_err':>8} {'dapi_bg':>7}"
)


def _format(row: dict[str, Any]) -> str:
    lines = []
    for which in ("raw", "ema"):
        if which not in row:
            continue
        m = row[which]
        cpu = f"{row['cpu_h']:.3f}" + ("" if row["cpu_exact"] else "~")
        lead = f"{row['step']:>6} {cpu:>7} {row['wall_h']:>6.2f} {row.get('train', math.nan):>7.4f}"
        if which == "ema":
            lead = " " * len(lead)
        lines.append(
            f"{lead} | {which:>7} {m['heldout']:>7.4f} {m.get('dapi_r', math.nan):>6.3f} "
            f"{m.get('polyt_r', math.nan):>7.3f} {m.get('dapi_mae', math.nan):>8.1f} "
            f"{m.get('dapi_empty', math.nan):>7.1f}"
        )
    return "\n".join(lines)


def train_tiny(args: argparse.Namespace) -> Path:
    """Write a phantom and train a run on it as the flags say; return the run directory."""
    from napari_teramind.phantom import PhantomSpec, write_phantom

    out = Path(args.train)
    out.mkdir(parents=True, exist_ok=True)
    phantom = out / "phantom.zarr"
    spec = (
        PhantomSpec(n_slices=4, height=256, width=384, n_genes=8, seed=3)
        if args.tiny
        else PhantomSpec()
    )
    try:
        BrainStore.open(phantom)
    except Exception:  # absent or incomplete: deterministic from the spec
        write_phantom(phantom, spec, workers=1, executor="thread", overwrite=True)
    overrides = json.loads(args.model_json) if args.model_json else (MICRO if args.tiny else None)
    if overrides is None:
        overrides = {"prediction": "v"}
    cfg = TrainConfig(
        stores=(str(phantom),),
        preset="tiny",
        model_overrides=overrides,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        cooldown_steps=args.cooldown_steps,
        crop=128 if args.tiny else 256,
        holdout_slices=(spec.n_slices - 1,),
        checkpoint_every=args.checkpoint_every,
        keep_every=args.checkpoint_every,
        log_every=1 if args.tiny else 10,
        ema_decay=args.ema_decay,
        loss_weighting=args.loss_weighting,
    )
    result = train(cfg, out / "run", device="cpu")
    print(f"trained {result.step} steps into {out / 'run'}", file=sys.stderr)
    return out / "run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="measure this training run directory")
    where.add_argument("--train", metavar="OUT", help="train a run in OUT first, then measure it")
    parser.add_argument("--store", help="the run's store, when it moved since training")
    parser.add_argument("--every", type=int, default=0,
                        help="measure checkpoints whose step is a multiple of N (default: the "
                        "run's --keep-every, else all kept)")  # fmt: skip
    parser.add_argument("--loss-crops", type=int, default=16, help="held-out loss crops (16)")
    parser.add_argument("--gene-crops", type=int, default=4, help="gene-following crops (4; 0=off)")
    parser.add_argument("--ddim-steps", type=int, default=15, help="DDIM steps of those (15)")
    parser.add_argument("--smooth", type=int, default=50, help="steps averaged for 'train' (50)")
    parser.add_argument("--no-initial", action="store_true", help="skip step 0 (initial weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--json", help="also write the points to this JSON file")
    t = parser.add_argument_group("training (--train)")
    t.add_argument("--tiny", action="store_true",
                   help="4 x 256 x 384 px phantom, 2-channel network, 128-px crops")  # fmt: skip
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--checkpoint-every", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--cooldown-steps", type=int, default=0)
    t.add_argument("--ema-decay", type=float, default=0.9)
    t.add_argument("--loss-weighting", choices=("none", "min_snr"), default="none")
    t.add_argument("--model-json", help="ModelConfig overrides of the tiny preset")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run) if args.run else train_tiny(args)
    print(HEADER)
    rows = curve(
        run,
        every=args.every,
        loss_crops=args.loss_crops,
        gene_crops=args.gene_crops,
        ddim_steps=args.ddim_steps,
        smooth=args.smooth,
        include_initial=not args.no_initial,
        store=args.store,
    )
    best = min(
        ((r["step"], w, r[w]["heldout"]) for r in rows for w in ("raw", "ema") if w in r),
        key=lambda x: x[2],
    )
    print(f"lowest held-out loss: step {best[0]}, {best[1]} weights, {best[2]:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float) + "\n")
    return 0 if np.isfinite(best[2]) else 1


if __name__ == "__main__":
    sys.exit(main())
