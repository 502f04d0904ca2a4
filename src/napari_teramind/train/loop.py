"""The training loop: Adam, gradient clipping and accumulation, autocast, DDP, resume.

A run lives in one directory::

    run/
      run.json                  the TrainConfig (a resumed run must match it)
      checkpoints/step_000500/  model.safetensors + model.json (our checkpoint format)
                               optimizer.safetensors + optimizer.json
                               ema/model.safetensors + model.json (with ema_decay > 0)
      last.json                 {"step": 500, "path": "checkpoints/step_000500"}, written last
      loss.csv                  one row per logged step
      loss.png, preview_*.png   loss curve and generated previews

Every random draw of step ``k`` (the crops, the diffusion noise and timesteps, the dropout
masks) is seeded from ``(seed, k)``; a run resumed from a checkpoint therefore continues with
exactly the draws an uninterrupted run makes, and reaches the same weights (on CPU, bit for
bit). ``last.json`` is replaced atomically after the checkpoint it names is complete, so a
crash mid-save resumes from the previous checkpoint.

Distributed data parallel: start with ``torchrun --nproc-per-node N -m napari_teramind.cli
train ...``; each rank draws its own part of every batch and rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_teramind.atomic import read_json, write_json_atomic
from napari_teramind.model.checkpoint import RUN_LAST_FILE, latest_checkpoint
from napari_teramind.model.precision import PRECISIONS, autocast
from napari_teramind.store import BrainStore, GenePanel
from napari_teramind.train.ema import ModelEMA
from napari_teramind.train.optimizer_state import load_optimizer, save_optimizer
from napari_teramind.train.patches import PatchSampler

#: The sub-directory of a step checkpoint holding the EMA weights (a checkpoint of its own).
EMA_DIR = "ema"

#: Options that may change when a run is resumed: none of them changes a random draw, so a run
#: extended from ``steps=k`` to ``steps=n`` equals one trained to ``n`` at once. ``steps`` and
#: ``cooldown_steps`` move the start of the learning-rate cooldown; a resumed checkpoint must
#: lie before the cooldown of both the old and the new configuration (checked).
RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "cooldown_steps",
        "checkpoint_every",
        "log_every",
        "preview_every",
        "num_workers",
        "keep_checkpoints",
        "keep_every",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as ``run.json``).

    Attributes
    ----------
    stores
        Brain stores to train on.
    preset
        Model preset (``tiny``, ``small``, ``reference``); ignored when ``init`` is given.
    model_overrides
        :class:`ModelConfig` fields replacing the preset's (e.g. ``{"model_channels": 12}``).
    init
        Optional checkpoint to start from (fine-tuning); its genes define the panel.
    genes
        Model genes; by default the first store's panel.
    steps
        Optimizer steps.
    batch_size
        Crops per micro-batch (per rank).
    accumulate
        Micro-batches per optimizer step (gradient accumulation).
    lr, grad_clip
        Adam learning rate (published: 2e-5) and gradient-norm clip (published: 1.0).
    cooldown_steps
        The last ``cooldown_steps`` optimizer steps decay the learning rate linearly towards
        zero (``lr / (cooldown_steps + 1)`` at the last step; :func:`learning_rate`); 0 (the
        default, as published) keeps it constant. A constant phase followed by a short decay
        lets a run be extended and still end on settled weights.
    crop
        Crop edge in px (published: 256).
    holdout_slices
        Slices never trained on (kept for evaluation).
    seed
        Seed of every random draw.
    checkpoint_every, log_every, preview_every
        Intervals in optimizer steps (0 = never for previews).
    precision
        ``fp32``; ``bf16`` or ``fp16`` autocast on CUDA (ignored on CPU).
    num_workers
        Loader processes that prefetch crops.
    keep_checkpoints
        How many step checkpoints to keep (the newest).
    keep_every
        Also keep, for ever, every checkpoint whose step is a multiple of this (0 = none):
        the points of a learning curve (``benchmarks/learning_curve.py``).
    ema_decay
        Keep an exponential moving average of the weights with this decay
        (:mod:`~napari_teramind.train.ema`; e.g. 0.999), saved in every checkpoint's ``ema/``;
        0 (the default, as published) keeps none.
    loss_weighting, snr_gamma
        ``"none"`` (published) or ``"min_snr"``: min-SNR-``snr_gamma`` weights on every
        sample's loss (:func:`~napari_teramind.diffusion.losses.min_snr_weights`).
    gene_balance
        Fraction of crops drawn gene-balanced
        (:class:`~napari_teramind.train.patches.PatchSampler`): near where a uniformly drawn
        gene is most expressed, so rare programs are seen as often as common ones; 0 (the
        default, as published): uniform crops.
    rarity_cap
        0 (the default, as published): every pixel's loss counts alike. Above 1: each pixel's
        squared error is weighted by the rarity of its gene block's expression, up to this
        cap (:mod:`~napari_teramind.train.rarity`), so rare tissue types count more wherever
        they appear; the crops and draws are unchanged.
    """

    stores: tuple[str, ...]
    preset: str = "tiny"
    model_overrides: dict[str, Any] | None = None
    init: str | None = None
    genes: tuple[str, ...] | None = None
    steps: int = 1000
    batch_size: int = 4
    accumulate: int = 1
    lr: float = 2e-5
    grad_clip: float = 1.0
    cooldown_steps: int = 0
    crop: int = 256
    holdout_slices: tuple[int, ...] = ()
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    preview_every: int = 0
    precision: str = "fp32"
    num_workers: int = 0
    keep_checkpoints: int = 3
    keep_every: int = 0
    ema_decay: float = 0.0
    loss_weighting: str = "none"
    snr_gamma: float = 5.0
    gene_balance: float = 0.0
    rarity_cap: float = 0.0

    def __post_init__(self) -> None:
        from napari_teramind.diffusion.losses import LOSS_WEIGHTINGS

        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        for name in ("steps", "batch_size", "accumulate", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.stores:
            raise ValueError("no brain store to train on; give at least one store path")
        if not self.lr > 0 or not self.grad_clip > 0:
            raise ValueError("lr and grad_clip must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                f"ema_decay must be 0 (no EMA) or lie in (0, 1), e.g. 0.999; not {self.ema_decay}"
            )
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"loss_weighting must be one of {LOSS_WEIGHTINGS}, not {self.loss_weighting!r}"
            )
        if not self.snr_gamma > 0:
            raise ValueError(f"snr_gamma must be positive, not {self.snr_gamma}")
        if not 0.0 <= self.gene_balance <= 1.0:
            raise ValueError(f"gene_balance must lie in [0, 1], not {self.gene_balance}")
        if self.rarity_cap and not self.rarity_cap > 1:
            raise ValueError(f"rarity_cap must be 0 (off) or above 1, not {self.rarity_cap}")
        if self.keep_every < 0:
            raise ValueError(f"keep_every must be 0 (off) or positive, not {self.keep_every}")
        if not 0 <= self.cooldown_steps <= self.steps:
            raise ValueError(
                f"cooldown_steps must be between 0 and steps ({self.steps}), "
                f"not {self.cooldown_steps}"
            )

    @property
    def cooldown_start(self) -> int:
        """The first optimizer step (0-based) whose learning rate is below ``lr``."""
        return self.steps - self.cooldown_steps

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return json.loads(json.dumps(asdict(self)))  # tuples -> lists, as read back

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for k in ("stores", "genes", "holdout_slices"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def model_config(self, n_genes: int):
        """The :class:`ModelConfig` of a new model of ``n_genes`` genes."""
        from napari_teramind.model import ModelConfig

        config = ModelConfig.preset(self.preset, n_genes)
        return config.replace(**self.model_overrides) if self.model_overrides else config


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    run_dir: Path
    checkpoint: Path
    step: int
    losses: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based).

    ``cfg.lr`` until :attr:`TrainConfig.cooldown_start`, then linearly down to
    ``cfg.lr / (cooldown_steps + 1)`` at the last step (never zero, so every step updates).
    """
    if step < cfg.cooldown_start:
        return cfg.lr
    return cfg.lr * (cfg.steps - step) / (cfg.cooldown_steps + 1)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of all draws of optimizer step ``step`` on ``rank``."""
    ss = np.random.SeedSequence([int(seed), int(step), int(rank), 0x5EED])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)


class _Batches(torch.utils.data.Dataset):
    """Micro-batch ``i`` of the run = crops ``[i * B, (i + 1) * B)`` of the sampler."""

    def __init__(self, sampler: PatchSampler, batch_size: int):
        self.sampler = sampler
        self.batch_size = batch_size

    def __len__(self) -> int:  # pragma: no cover - indices come from our own sampler
        return 2**62

    def __getitem__(self, i: int):
        idx = range(i * self.batch_size, (i + 1) * self.batch_size)
        return tuple(torch.from_numpy(a) for a in self.sampler.batch(idx))


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def build_model(cfg: TrainConfig, device: str | torch.device = "cpu"):
    """The run's model before its first step (seeded) and its gene panel."""
    from napari_teramind.model import TeraMindUNet
    from napari_teramind.model.checkpoint import load_checkpoint

    stores = [BrainStore.open(p) for p in cfg.stores]  # a clear error for a missing store
    if cfg.init:
        model, info = load_checkpoint(cfg.init, map_location=device)
        return model, GenePanel(info.gene_names)
    if cfg.genes:
        panel = GenePanel(cfg.genes)
        everywhere = set().union(*(st.panel.names for st in stores))
        missing = [g for g in panel.names if g not in everywhere]
        if missing:
            raise ValueError(
                f"gene(s) {missing} are in none of the stores' panels; drop them from --genes "
                "(or train on a store that measured them)"
            )
    else:
        panel = stores[0].panel
    torch.manual_seed(step_seed(cfg.seed, 2**31))  # initial weights
    model = TeraMindUNet(cfg.model_config(len(panel))).to(device)
    return model, panel


def _check_schedule_change(run: Path, saved: TrainConfig, new: TrainConfig) -> None:
    """Refuse to resume past a point where the old and new learning rates already differ."""
    resumed = latest_checkpoint(run)
    if resumed is None:
        return
    start = resumed[0]
    same = all(learning_rate(saved, s) == learning_rate(new, s) for s in range(start))
    if not same:
        raise ValueError(
            f"{run} was trained to step {start} with steps={saved.steps}, "
            f"cooldown_steps={saved.cooldown_steps}; its learning rate already followed that "
            "schedule, so resuming with another one would not equal a fresh run. Keep those "
            "options, or start a new run directory"
        )


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    device: str | torch.device | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_steps_this_call: int | None = None,
) -> TrainResult:
    """Train (or resume training) a model and return the final checkpoint.

    Parameters
    ----------
    cfg
        The run's configuration. A run directory that already holds a run must have been
        started with the same configuration; it is then resumed from its last checkpoint.
    run_dir
        Where checkpoints, logs and previews go.
    device
        ``cpu``, ``cuda``, ``cuda:1``...; CUDA when available by default (the local rank's GPU
        under ``torchrun``).
    progress
        Called as ``progress(step, steps, losses)`` after every logged step.
    should_stop
        Polled after every step; when it returns True, a checkpoint is written and training
        stops (it can be resumed).
    max_steps_this_call
        Stop (with a checkpoint) after this many steps; for tests of resuming.
    """
    from napari_teramind.diffusion import collage_training_losses
    from napari_teramind.model.checkpoint import (
        is_native_checkpoint,
        load_checkpoint,
        save_checkpoint,
    )

    world, rank, local = _dist_info()
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    run_json = run / "run.json"
    if run_json.exists():
        # Through TrainConfig, so options added since the run began read as their defaults.
        saved, new = TrainConfig.from_dict(read_json(run_json)).to_dict(), cfg.to_dict()
        diff = sorted(
            k
            for k in saved.keys() | new.keys()
            if saved.get(k) != new.get(k) and k not in RESUMABLE_CHANGES
        )
        if diff:
            raise ValueError(
                f"{run} holds a run with another configuration (differs in {diff}); use a new "
                "run directory, or the same options to resume it"
            )
        _check_schedule_change(run, TrainConfig.from_dict(saved), cfg)
    if rank == 0:
        write_json_atomic(run_json, cfg.to_dict())

    model, panel = build_model(cfg, device)
    if cfg.crop % model.config.patch_size:
        raise ValueError(
            f"crop {cfg.crop} px is not a multiple of the model patch "
            f"({model.config.patch_size} px)"
        )
    sampler = PatchSampler(
        cfg.stores,
        panel,
        crop=cfg.crop,
        holdout_slices=cfg.holdout_slices,
        seed=cfg.seed,
        scheme=model.config.slice_scheme,
        gene_balance=cfg.gene_balance,
        rarity_cap=cfg.rarity_cap,
    )
    start, seconds0, cpu0 = 0, 0.0, 0.0
    resumed = latest_checkpoint(run)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.precision == "fp16")
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    if resumed is not None:
        start, ck = resumed
        loaded, info = load_checkpoint(ck, map_location=device)
        model.load_state_dict(loaded.state_dict())
        load_optimizer(optimizer, ck / "optimizer")
        seconds0 = float(info.training_state.get("train_seconds", 0.0))
        cpu0 = float(info.training_state.get("train_cpu_seconds", 0.0))
        if info.training_state.get("grad_scaler"):
            scaler.load_state_dict(info.training_state["grad_scaler"])
        if ema is not None:
            if not is_native_checkpoint(ck / EMA_DIR):
                raise FileNotFoundError(
                    f"{ck} holds no EMA weights ({EMA_DIR}/) although the run keeps an EMA; "
                    "the checkpoint is incomplete: delete it (and point last.json at the "
                    "previous one) or start a new run directory"
                )
            ema.load_weights(load_checkpoint(ck / EMA_DIR, map_location=device)[0])
        if rank == 0:
            _truncate_csv(run / "loss.csv", start)  # rows logged after the checkpoint are redone
    model.train()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        net.config = model.config  # the loss reads the patch geometry from it
    micro_per_step = cfg.accumulate * world
    stop_at = (
        cfg.steps if max_steps_this_call is None else min(cfg.steps, start + max_steps_this_call)
    )
    order = [
        (s * micro_per_step + a * world + rank)
        for s in range(start, stop_at)
        for a in range(cfg.accumulate)
    ]
    loader = torch.utils.data.DataLoader(
        _Batches(sampler, cfg.batch_size),
        batch_size=None,
        sampler=order,
        num_workers=cfg.num_workers,
        prefetch_factor=2 if cfg.num_workers else None,
    )
    batches = iter(loader)
    log_rows: list[dict[str, float]] = []
    t_start, cpu_start = time.perf_counter(), time.process_time()
    step = start
    ck_path = resumed[1] if resumed else None

    def save(step: int) -> Path:
        path = run / "checkpoints" / f"step_{step:07d}"
        if rank == 0:
            if path.exists():
                shutil.rmtree(path)
            tmp = run / "checkpoints" / f".tmp_step_{step:07d}"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            state = {
                "global_step": step,
                "steps": cfg.steps,
                "seed": cfg.seed,
                "grad_scaler": scaler.state_dict(),
                "train_seconds": seconds0 + time.perf_counter() - t_start,
                # CPU time of this process, all threads (learning curves: quality per CPU-hour)
                "train_cpu_seconds": cpu0 + time.process_time() - cpu_start,
                "torch_threads": torch.get_num_threads(),
            }
            provenance = {
                "source": "napari-teramind train",
                "train_config": cfg.to_dict(),
                "stores": [str(s) for s in cfg.stores],
            }
            save_checkpoint(tmp, model, None, panel.names, state, provenance)
            save_optimizer(optimizer, tmp / "optimizer")
            if ema is not None:  # a checkpoint of its own: loadable, verified, no pickle
                save_checkpoint(
                    tmp / EMA_DIR,
                    ema.model,
                    None,
                    panel.names,
                    {**state, "ema_decay": cfg.ema_decay, "ema_updates": step},
                    {**provenance, "weights": "ema"},
                )
            os.replace(tmp, path)
            write_json_atomic(
                run / RUN_LAST_FILE, {"step": step, "path": str(path.relative_to(run))}
            )
            _prune(run / "checkpoints", cfg.keep_checkpoints, cfg.keep_every)
        if world > 1:
            torch.distributed.barrier()
        return path

    while step < stop_at:
        optimizer.zero_grad(set_to_none=True)
        sums = {"loss": 0.0, "collage": 0.0, "tile": 0.0}
        for a in range(cfg.accumulate):
            img, genes, *weight = next(batches)
            img, genes = img.to(device), genes.to(device)
            weight = weight[0].to(device) if weight else None
            seed = step_seed(cfg.seed, step, rank * cfg.accumulate + a)
            torch.manual_seed(seed)  # dropout masks
            gen = torch.Generator(device="cpu").manual_seed(seed)
            with autocast(device, cfg.precision, off_cuda="ignore"):
                losses = collage_training_losses(
                    net,
                    img,
                    genes,
                    generator=gen,
                    loss_weighting=cfg.loss_weighting,
                    snr_gamma=cfg.snr_gamma,
                    pixel_weight=weight,
                )
            loss = losses["loss"] / cfg.accumulate
            scaler.scale(loss).backward()
            for k in sums:
                sums[k] += float(losses[k].detach()) / cfg.accumulate
        if not all(math.isfinite(v) for v in sums.values()):
            raise FloatingPointError(
                f"loss became {sums['loss']} at step {step}; lower the learning rate (--lr) or "
                "use --precision bf16/fp32"
            )
        lr = learning_rate(cfg, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        scaler.step(optimizer)
        scaler.update()
        step += 1
        if ema is not None:
            ema.update(model, step)
        row = {
            "step": step,
            **sums,
            "grad_norm": grad_norm,
            "seconds": seconds0 + time.perf_counter() - t_start,
        }
        if step % cfg.log_every == 0 or step == stop_at:
            log_rows.append(row)
            if rank == 0:
                _append_csv(run / "loss.csv", row)
            if progress:
                progress(step, cfg.steps, sums)
        stopping = bool(should_stop and should_stop())
        if step % cfg.checkpoint_every == 0 or step == stop_at or stopping:
            ck_path = save(step)
            if rank == 0:
                plot_loss(run / "loss.csv", run / "loss.png")
        if cfg.preview_every and step % cfg.preview_every == 0 and rank == 0:
            save_preview(model, sampler, run / f"preview_{step:07d}.png", device)
            model.train()
        if stopping:
            break
    if ck_path is None:
        ck_path = save(step)
    return TrainResult(run, ck_path, step, log_rows, time.perf_counter() - t_start)


def _prune(folder: Path, keep: int, keep_every: int = 0) -> None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir())
    for p in steps[:-keep] if keep > 0 else []:
        if keep_every and int(p.name.split("_")[1]) % keep_every == 0:
            continue  # a learning-curve point
        shutil.rmtree(p, ignore_errors=True)


def _truncate_csv(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with path.open() as fh:
        rows = [r for r in csv.DictReader(fh) if int(float(r["step"])) <= last_step]
    path.unlink()
    for r in rows:
        _append_csv(path, r)


def _append_csv(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def read_loss_csv(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Columns of a run's ``loss.csv`` as arrays."""
    with Path(path).open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def plot_loss(csv_path: Path, png_path: Path) -> None:
    """Plot the loss curve (total, collage, tile) of a run to PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = read_loss_csv(csv_path)
    if not cols:
        return
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    for k in ("loss", "collage", "tile"):
        ax.plot(cols["step"], cols[k], label=k)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MSE on noise")
    ax.set_yscale("log")
    fig.legend(loc="outside right upper")  # beside the axes, never over the curves
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


@torch.no_grad()
def sample_crop(model, genes: torch.Tensor, steps: int = 15, seed: int = 0) -> torch.Tensor:
    """Generate one crop with the collage decoder in a single pass (training preview).

    Parameters
    ----------
    model
        The network.
    genes
        ``(G, Z, gb, gb)`` counts of the crop plus its 2-block margin (``Z`` gene slices).
    steps
        DDIM steps.
    seed
        Noise seed.

    Returns
    -------
    torch.Tensor
        ``(2 D, crop, crop)`` in ``[-1, 1]``.
    """
    from napari_teramind.diffusion import DDIMSchedule, ddim_step, to_eps

    cfg = model.config
    p = cfg.patch_size
    nb = p // cfg.gene_block_px
    side = genes.shape[-1] * cfg.gene_block_px - p  # crop size
    n = side // p + 1
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg.in_channels, side, side, generator=gen).to(device)
    genes = genes.to(device)
    g_patches = genes.unfold(-2, nb, nb).unfold(-2, nb, nb)  # G, Z, n, n, nb, nb
    g_patches = g_patches.permute(2, 3, 0, 1, 4, 5).reshape(n * n, *genes.shape[:2], nb, nb)
    sched = DDIMSchedule.create(steps)
    model.eval()
    for i in range(len(sched)):
        padded = torch.nn.functional.pad(x, (p // 2,) * 4)
        patches = padded.unfold(-2, p, p).unfold(-2, p, p)  # C, n, n, p, p
        patches = patches.permute(1, 2, 0, 3, 4).reshape(n * n, cfg.in_channels, p, p)
        t = sched.timesteps[i : i + 1].to(device)
        eps = model(patches, g_patches, t, (1, n, n), decoders=("collage",))["collage"]
        eps = eps.reshape(n - 1, n - 1, cfg.in_channels, p, p).permute(2, 0, 3, 1, 4)
        eps = eps.reshape(cfg.in_channels, side, side)
        eps = to_eps(cfg.prediction, eps, x, sched.alphas_cumprod[i])
        x, x0 = ddim_step(x, eps, i, sched)
    return x0.cpu()


def save_preview(model, sampler: PatchSampler, path: Path, device, index: int = 0) -> None:
    """Write a PNG of a real crop next to one generated from its genes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = sampler.sample(EVAL_INDEX0 + index)
    gen = sample_crop(model, torch.from_numpy(sample.genes))
    fig, axes = plt.subplots(2, 2, figsize=(6, 6))
    for row, (name, im) in enumerate((("real", sample.image), ("generated", gen.numpy()))):
        for col, stain in enumerate(("DAPI", "PolyT")):
            axes[row, col].imshow(im[model.config.image_depth * col], cmap="gray", vmin=-1, vmax=1)
            axes[row, col].set_title(f"{name} {stain}")
            axes[row, col].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def checkpoint_weights(path: str | os.PathLike[str], use_ema: bool = True) -> tuple[Path, str]:
    """The weights of step checkpoint ``path`` to use, and which they are.

    Returns ``(path / "ema", "ema")`` when the checkpoint holds EMA weights and ``use_ema``,
    else ``(path, "raw")``.
    """
    from napari_teramind.model.checkpoint import is_native_checkpoint

    path = Path(path)
    if use_ema and is_native_checkpoint(path / EMA_DIR):
        return path / EMA_DIR, "ema"
    return path, "raw"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete step checkpoint of a run, oldest first."""
    from napari_teramind.model.checkpoint import is_native_checkpoint

    folder = Path(run_dir) / "checkpoints"
    found = [
        (int(p.name.split("_")[1]), p)
        for p in folder.glob("step_*")
        if p.is_dir() and is_native_checkpoint(p)
    ]
    return sorted(found)


#: Sample indices from here on are never drawn by a training run of realistic length.
EVAL_INDEX0 = 2**40


def evaluate_loss(model, sampler: PatchSampler, n: int = 16, seed: int = 1) -> float:
    """Mean training loss of ``model`` over ``n`` fixed crops of ``sampler`` (eval mode).

    The crops, timesteps and noise depend only on ``(sampler.seed, seed, n)``, so two models
    are compared on identical draws. Pass a ``use="holdout"`` sampler for held-out slices.
    """
    from napari_teramind.diffusion import collage_training_losses

    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(n):
            img, genes = sampler.batch([EVAL_INDEX0 + i])[:2]  # unweighted
            gen = torch.Generator().manual_seed(step_seed(seed, i))
            losses = collage_training_losses(
                model, torch.from_numpy(img), torch.from_numpy(genes), generator=gen
            )
            total += float(losses["loss"])
    return total / n
