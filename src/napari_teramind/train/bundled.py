"""The recipe of the bundled model: phantom, training run, quality figures, export.

``teramind train-bundled OUT`` runs :func:`train_bundled`: it writes the default phantom brain
(8 x 2048 x 3072 px, 48 genes) into ``OUT``, trains the ``tiny`` preset on it with
:func:`bundled_train_config` (stage 1, ``OUT/run``), continues from those weights with
:func:`continued_train_config` (stage 2, ``OUT/continued``: more steps, an EMA of the weights),
measures how well generated images follow the genes (:func:`gene_following_scores`) and exports
the checkpoint to ``OUT/bundled`` (with ``--install`` also into the package). The checkpoint's
``provenance.bundled_recipe`` records the command, the stages, steps, wall time, final and
held-out losses and the quality figures. A run that keeps an EMA of its weights exports the
EMA weights (``provenance.weights == "ema"``).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_teramind.store import BrainStore, GenePanel
from napari_teramind.train.loop import (
    EVAL_INDEX0,
    TrainConfig,
    checkpoint_weights,
    evaluate_loss,
    latest_checkpoint,
    read_loss_csv,
    sample_crop,
    train,
)
from napari_teramind.train.patches import PatchSampler

__all__ = [
    "BUNDLED_CONTINUE_EMA",
    "BUNDLED_CONTINUE_SEED",
    "BUNDLED_CONTINUE_STEPS",
    "BUNDLED_COOLDOWN",
    "BUNDLED_HOLDOUT",
    "BUNDLED_STEPS",
    "bundled_train_config",
    "continued_train_config",
    "export_bundled",
    "gene_following_scores",
    "train_bundled",
]

#: Optimizer steps of the shipped model's stage 1.
BUNDLED_STEPS = 2600
#: Its last steps decay the learning rate linearly towards zero (warmup-stable-decay). Before the
#: cooldown the rate is constant, so a longer run with this recipe starts as the same model.
BUNDLED_COOLDOWN = 400
#: What the shipped network predicts (see :mod:`napari_teramind.diffusion.parameterization`).
BUNDLED_PREDICTION = "v"
#: The default phantom's last slice is never trained on: its pair (6, 7) gives the held-out
#: figures.
BUNDLED_HOLDOUT = (7,)
PHANTOM_NAME = "phantom-default.zarr"

#: Stage 2 of the shipped model: optimizer steps from stage 1's weights (the same constant rate
#: and a cooldown of :data:`BUNDLED_COOLDOWN` at the end); 0 would export stage 1 alone. The
#: shipped model has both stages, 4600 steps in all (docs/training.md).
BUNDLED_CONTINUE_STEPS = 2000
#: Stage 2 keeps this EMA of its weights, and the EMA is what ships (``docs/training.md``).
BUNDLED_CONTINUE_EMA = 0.999
#: Stage 2 draws other crops, timesteps and noise than stage 1 (whose seed is 0).
BUNDLED_CONTINUE_SEED = 1


def bundled_train_config(
    store: str | os.PathLike[str],
    steps: int = BUNDLED_STEPS,
    cooldown_steps: int = BUNDLED_COOLDOWN,
    ema_decay: float = 0.0,
    loss_weighting: str = "none",
    keep_every: int = 0,
) -> TrainConfig:
    """The training configuration of the bundled model on the phantom ``store``.

    ``tiny`` preset (0.5 M parameters, 2 MB) predicting the velocity ``v`` (an eps model of
    this size and training time paints nuclei over empty background: docs/training.md), 4 crops
    per step, Adam at lr 1e-3 (50 x the published 2e-5: a tiny network with a small batch on
    CPU converges within a few hundred steps only with a large step; gradient clipping at 1.0
    keeps it stable), no accumulation.
    The last ``cooldown_steps`` decay the rate towards zero: at a constant 1e-3 the weights keep
    jumping (checkpoints 100 steps apart differ by a factor of 3 in image brightness error),
    and the cooldown lets them settle.
    ``ema_decay``, ``loss_weighting`` and ``keep_every`` are the :class:`TrainConfig` options
    of the same names (the shipped model: no EMA, unweighted loss).
    """
    return TrainConfig(
        stores=(str(store),),
        preset="tiny",
        model_overrides={"prediction": BUNDLED_PREDICTION},
        steps=int(steps),
        batch_size=4,
        accumulate=1,
        lr=1e-3,
        cooldown_steps=int(cooldown_steps),
        grad_clip=1.0,
        crop=256,
        holdout_slices=BUNDLED_HOLDOUT,
        seed=0,
        checkpoint_every=100,
        log_every=10,
        keep_checkpoints=3,
        keep_every=int(keep_every),
        ema_decay=float(ema_decay),
        loss_weighting=loss_weighting,
    )


def continued_train_config(
    store: str | os.PathLike[str],
    init: str | os.PathLike[str],
    steps: int,
    ema_decay: float = BUNDLED_CONTINUE_EMA,
    keep_every: int = 0,
) -> TrainConfig:
    """Stage 2 of the bundled model: :func:`bundled_train_config` continued from ``init``.

    The same data, rate and cooldown, ``steps`` more steps from the weights ``init`` (a
    checkpoint: stage 1's last), the seed :data:`BUNDLED_CONTINUE_SEED` (new draws) and an
    EMA of decay ``ema_decay``, which is exported. Why a second stage and not one longer run:
    stage 1 ends cooled down, and a cooled-down run cannot be extended at the constant rate
    (``train`` refuses another schedule), so the shipped stage-1 weights are kept as the start.
    """
    cfg = bundled_train_config(store, steps, BUNDLED_COOLDOWN, ema_decay, "none", keep_every)
    return replace(cfg, init=str(init), seed=BUNDLED_CONTINUE_SEED)


def stage_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What one training stage of the bundled model did: its configuration and time."""
    import json

    run_dir = Path(run_dir)
    cfg = TrainConfig.from_dict(json.loads((run_dir / "run.json").read_text()))
    cols = read_loss_csv(run_dir / "loss.csv")
    record: dict[str, Any] = {
        "steps": cfg.steps,
        "cooldown_steps": cfg.cooldown_steps,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "ema_decay": cfg.ema_decay,
        "loss_weighting": cfg.loss_weighting,
        "train_seconds": round(float(cols["seconds"][-1]), 1) if len(cols["seconds"]) else 0.0,
    }
    if cfg.init:
        record["init"] = "the previous stage's last checkpoint"
    return record


def _patch_means(img: np.ndarray, patch: int) -> np.ndarray:
    """Mean of ``(C, H, W)`` over ``patch`` x ``patch`` px cells -> ``(C, H/patch * W/patch)``."""
    c, h, w = img.shape
    cells = img.reshape(c, h // patch, patch, w // patch, patch).mean(axis=(2, 4))
    return cells.reshape(c, -1)


def _empty_block_mask(
    genes: np.ndarray, side: int, block: int, slots: Sequence[int] = (1, 2)
) -> np.ndarray:
    """Pixels of the crop's image slices whose gene block (``block`` px) counts nothing.

    ``genes`` is ``(G, Z, gb, gb)`` with its margin; ``slots`` are the window positions of the
    image slices (1 and 2 for the 4-slice scheme, see ``SliceScheme.image_slots``).
    """
    margin = (genes.shape[-1] - side // block) // 2
    counts = genes[:, list(slots), margin:-margin, margin:-margin].sum(axis=0)  # (D, ., .)
    return np.kron(counts == 0, np.ones((block, block), dtype=bool))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def gene_following_scores(
    model: torch.nn.Module,
    store: str | os.PathLike[str],
    gene_names: Sequence[str],
    holdout_slices: Sequence[int] = BUNDLED_HOLDOUT,
    n_crops: int = 8,
    steps: int = 15,
    patch_px: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """How well images generated from real genes follow the real tissue.

    Draws ``n_crops`` crops (held-out slice pairs when ``holdout_slices`` is given; crops with
    at least 5 % of their gene blocks expressing, so tissue borders are included),
    generates each with DDIM-``steps`` from its real genes (real neighbouring counts in the
    32-px margin, zero image padding, as the generator does) and again from zero genes
    (gene-blind, same noise), and correlates the mean intensity of every ``patch_px`` cell with
    the real image's, over all cells of all crops (Pearson r).

    Returns
    -------
    dict
        ``dapi_r``, ``polyt_r`` (conditioned on genes), ``dapi_r_blind``, ``polyt_r_blind``
        (zero genes), ``dapi_mae``/``dapi_mae_blind`` (mean absolute error of the cell means, in
        uint8 grey levels), ``dapi_empty``/``dapi_empty_real`` (mean generated/real DAPI grey
        level where the gene blocks count nothing: outside the tissue it should stay
        dark), ``empty_fraction`` and the settings used.
    """
    sampler = PatchSampler(
        [store],
        GenePanel(gene_names),
        holdout_slices=tuple(holdout_slices),
        seed=seed,
        augment=False,
        min_tissue=0.05,
        use="holdout" if holdout_slices else "train",
        scheme=model.config.slice_scheme,
    )
    depth, slots = model.config.image_depth, model.config.slice_scheme.image_slots
    real, cond, blind = [], [], []
    empty_gen, empty_real = [], []
    for i in range(n_crops):
        sample = sampler.sample(EVAL_INDEX0 + i)
        genes = torch.from_numpy(sample.genes)
        real.append(_patch_means(sample.image, patch_px))
        generated = sample_crop(model, genes, steps, seed=i).numpy()
        cond.append(_patch_means(generated, patch_px))
        blind.append(_patch_means(sample_crop(model, genes * 0, steps, seed=i).numpy(), patch_px))
        side, block = sample.image.shape[-1], model.config.gene_block_px
        empty = _empty_block_mask(sample.genes, side, block, slots)  # (D, H, W): DAPI slices
        empty_gen.append(generated[:depth][empty])
        empty_real.append(sample.image[:depth][empty])
    real_a, cond_a, blind_a = (np.concatenate(v, axis=1) for v in (real, cond, blind))
    empty_gen_a, empty_real_a = np.concatenate(empty_gen), np.concatenate(empty_real)
    grey = 127.5  # [-1, 1] -> uint8 grey levels
    dapi, polyt = slice(0, depth), slice(depth, 2 * depth)

    def level(a: np.ndarray) -> float:
        return float((a.mean() + 1.0) * grey) if a.size else float("nan")

    return {
        "dapi_empty": level(empty_gen_a),
        "dapi_empty_real": level(empty_real_a),
        "empty_fraction": float(empty_gen_a.size / (depth * n_crops * sample.image.shape[-1] ** 2)),
        "dapi_r": _pearson(real_a[dapi], cond_a[dapi]),
        "dapi_r_blind": _pearson(real_a[dapi], blind_a[dapi]),
        "polyt_r": _pearson(real_a[polyt], cond_a[polyt]),
        "polyt_r_blind": _pearson(real_a[polyt], blind_a[polyt]),
        "dapi_mae": float(np.abs(real_a[dapi] - cond_a[dapi]).mean() * grey),
        "dapi_mae_blind": float(np.abs(real_a[dapi] - blind_a[dapi]).mean() * grey),
        "n_crops": n_crops,
        "n_cells": int(real_a.shape[1] * 2),
        "cell_px": patch_px,
        "ddim_steps": steps,
        "slices": "held-out pairs" if holdout_slices else "training pairs",
    }


def export_bundled(
    checkpoint: str | os.PathLike[str], dest: str | os.PathLike[str], recipe: dict[str, Any]
) -> Path:
    """Write the weights of ``checkpoint`` to ``dest`` with ``recipe`` in the provenance.

    A training checkpoint holding EMA weights exports those; ``provenance.weights`` says which
    (``"ema"`` or ``"raw"``).
    """
    from napari_teramind.model.checkpoint import load_checkpoint, save_checkpoint

    path, which = checkpoint_weights(checkpoint)
    model, info = load_checkpoint(path)
    provenance = {
        k: v
        for k, v in info.provenance.items()
        if k not in ("weights_sha256", "created", "package_version")
    }
    provenance["source"] = "napari-teramind train-bundled"
    provenance.setdefault("weights", which)
    provenance["bundled_recipe"] = recipe
    state = {k: v for k, v in info.training_state.items() if k != "grad_scaler"}
    save_checkpoint(dest, model, None, info.gene_names, state, provenance)
    return Path(dest)


def finish_bundled(
    run_dir: str | os.PathLike[str],
    store: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    command: str,
    n_crops: int = 4,
    stages: Sequence[dict[str, Any]] = (),
) -> tuple[Path, dict[str, Any]]:
    """Measure the latest checkpoint of a bundled-recipe run and export it to ``dest``.

    ``stages`` (:func:`stage_record` of each stage, the measured run last) go into the recipe
    with the total steps and training time of all of them.
    """
    from napari_teramind.model.checkpoint import load_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint; train first")
    step, path = latest
    weights, which = checkpoint_weights(path)
    model, info = load_checkpoint(weights)
    cols = read_loss_csv(Path(run_dir) / "loss.csv")
    keep = cols["step"] <= step
    last = cols["loss"][keep][-5:]
    holdout = PatchSampler(
        [store], GenePanel(info.gene_names), holdout_slices=BUNDLED_HOLDOUT, use="holdout"
    )
    recipe: dict[str, Any] = {
        "command": command,
        "steps": step,
        "train_seconds": round(float(cols["seconds"][keep][-1]), 1),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores, shared)",
        "final_loss": round(float(last.mean()), 4),
        "final_loss_note": "mean of the last 5 logged training losses (collage + tile MSE)",
        "weights": which,
        "heldout_loss": round(evaluate_loss(model, holdout, n=16), 4),
        "train_config": {k: v for k, v in info.provenance["train_config"].items() if k != "stores"},
        "phantom": "default PhantomSpec() (seed 0, 8 x 2048 x 3072 px, 48 genes)",
    }
    if which == "ema":  # the raw weights' figure beside it, on the same draws
        recipe["heldout_loss_raw"] = round(evaluate_loss(load_checkpoint(path)[0], holdout, 16), 4)
    recipe["gene_following"] = gene_following_scores(model, store, info.gene_names, n_crops=n_crops)
    if stages:
        recipe["stages"] = [dict(st) for st in stages]
        recipe["total_steps"] = int(sum(st["steps"] for st in stages))
        recipe["total_train_seconds"] = round(sum(st["train_seconds"] for st in stages), 1)
    return export_bundled(path, dest, recipe), recipe


def train_bundled(
    out: str | os.PathLike[str],
    steps: int = BUNDLED_STEPS,
    cooldown_steps: int = BUNDLED_COOLDOWN,
    install: bool = False,
    ema_decay: float = 0.0,
    loss_weighting: str = "none",
    keep_every: int = 0,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    continue_steps: int = BUNDLED_CONTINUE_STEPS,
    continue_ema_decay: float = BUNDLED_CONTINUE_EMA,
) -> tuple[Path, dict[str, Any]]:
    """Rebuild the bundled model from scratch in ``out`` (resumable).

    Parameters
    ----------
    out
        Work folder: ``phantom-default.zarr``, ``run/`` (stage 1: checkpoints, loss curve),
        ``continued/`` (stage 2) and ``bundled/`` (the exported model).
    steps
        Stage 1's optimizer steps (the shipped model: :data:`BUNDLED_STEPS`).
    cooldown_steps
        Learning-rate cooldown at the end (the shipped model: :data:`BUNDLED_COOLDOWN`).
    install
        Also replace the model shipped inside the package.
    ema_decay, loss_weighting, keep_every
        As in :class:`~napari_teramind.train.loop.TrainConfig` (the shipped model: 0, "none", 0).
        They apply to stage 1.
    progress, should_stop
        As in :func:`~napari_teramind.train.loop.train`.
    continue_steps, continue_ema_decay
        Stage 2 (:func:`continued_train_config`): steps from stage 1's weights (0: no stage 2,
        stage 1 is exported) and its EMA decay (the shipped model:
        :data:`BUNDLED_CONTINUE_STEPS`, :data:`BUNDLED_CONTINUE_EMA`).

    Returns
    -------
    tuple
        The exported checkpoint directory and its recipe record.
    """
    from napari_teramind.phantom import PhantomSpec, write_phantom

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    phantom = out / PHANTOM_NAME
    try:
        BrainStore.open(phantom)
    except Exception:  # absent or incomplete: (re)write it, deterministic from the spec
        write_phantom(phantom, PhantomSpec(), overwrite=True)
    cfg = bundled_train_config(
        phantom, steps, cooldown_steps, ema_decay, loss_weighting, keep_every
    )
    result = train(cfg, out / "run", device="cpu", progress=progress, should_stop=should_stop)
    if result.step < steps:
        raise RuntimeError(f"training stopped at step {result.step}; run again to resume")
    command = f"teramind train-bundled OUT --steps {steps} --cooldown-steps {cooldown_steps}"
    if ema_decay:
        command += f" --ema-decay {ema_decay}"
    if loss_weighting != "none":
        command += f" --loss-weighting {loss_weighting}"
    run_dir, stages = out / "run", [stage_record(out / "run")]
    if continue_steps:
        command += f" --continue-steps {continue_steps} --continue-ema-decay {continue_ema_decay}"
        init = checkpoint_weights(result.checkpoint)[0]
        cfg2 = continued_train_config(phantom, init, continue_steps, continue_ema_decay, keep_every)
        run_dir = out / "continued"
        result = train(cfg2, run_dir, device="cpu", progress=progress, should_stop=should_stop)
        if result.step < continue_steps:
            raise RuntimeError(f"stage 2 stopped at step {result.step}; run again to resume")
        stages.append(stage_record(run_dir))
    dest, recipe = finish_bundled(run_dir, phantom, out / "bundled", command, stages=stages)
    if install:
        from napari_teramind.model import bundled

        export_bundled(dest, Path(bundled.__file__).parent, recipe)
    return dest, recipe
