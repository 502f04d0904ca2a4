"""The numerics of a generation unit: model loading (cached), samplers, precision, batch size.

Every generation path (``generate_roi`` for the widget and the demo, jobs for the CLI and
the executors) takes its batch size and precision from :func:`unit_numerics`, so the same
region gives the same numbers whichever path computed it.
"""

from __future__ import annotations

from typing import Any

_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}

#: Samplers the engine implements (the one list every entry point checks).
SAMPLERS = ("ddim",)


def check_sampler(sampler: str) -> str:
    """Return ``sampler`` if the engine implements it, else raise naming the choices."""
    if sampler not in SAMPLERS:
        raise ValueError(
            f"sampler {sampler!r} is not supported; choose one of {', '.join(SAMPLERS)}"
        )
    return sampler


def unit_numerics(
    model: Any, device: str, batch_size: int | None = None, bf16: bool | None = None
) -> tuple[int, str]:
    """``(batch_size, precision)`` of generation units on ``device``: the one policy.

    ``batch_size`` None: :func:`choose_batch_size` (8 on CPU, what fits on a GPU); ``bf16``
    None: :func:`~napari_teramind.model.precision.default_precision` (bf16 on CUDA, fp32
    elsewhere); ``True``/``False`` force bf16 / float32.
    """
    from napari_teramind.model.precision import default_precision

    batch = int(batch_size) if batch_size else choose_batch_size(model, device)
    if bf16 is None:
        precision = default_precision(device)
    else:
        precision = "bf16" if bf16 else "fp32"
    return batch, precision


def load_model(model: str, device: str = "cpu") -> tuple[Any, Any]:
    """Load ``"bundled"`` or a checkpoint path once per process and device (cached).

    Returns the model (``eval()``, on ``device``) and its ``CheckpointInfo``, as the one model
    loader :func:`napari_teramind.model.resolve_model` reads them (bundled model, native
    checkpoint, training run folder, published ``.ckpt``).
    """
    key = (model, str(device))
    if key not in _MODELS:
        from napari_teramind.model import resolve_model

        m, info = resolve_model(model, device=device)
        _MODELS[key] = (m.eval(), info)
    return _MODELS[key]


def autocast(device: str):
    """The generation precision of ``device`` (bf16 on CUDA, float32 elsewhere), entered.

    One policy for every generation path (:mod:`napari_teramind.model.precision`).
    """
    from napari_teramind.model.precision import autocast as _autocast
    from napari_teramind.model.precision import default_precision

    return _autocast(device, default_precision(device))


def choose_batch_size(model, device: str, fraction: float = 0.5, cap: int = 4096) -> int:
    """Patches per forward that fit in ``fraction`` of the device's free memory.

    On CUDA, a probe forward (encoder + collage decoder of a 4 x 4 patch grid, under bf16
    autocast) measures the peak memory per patch; on CPU the engine's default.
    """
    import torch

    if not str(device).startswith("cuda"):
        from napari_teramind.generate.engine import DEFAULT_BATCH_SIZE

        return DEFAULT_BATCH_SIZE
    dev = torch.device(device)
    cfg = model.config
    n, k = 16, 4
    x = torch.randn(n, cfg.in_channels, cfg.patch_size, cfg.patch_size, device=dev)
    genes = torch.zeros(n, cfg.n_genes, cfg.gene_slices, cfg.gene_grid, cfg.gene_grid, device=dev)
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    with torch.no_grad(), autocast(device):
        feats = model.encode(x, genes, 500)
        model.decode_collage(feats, (1, k, k), 500)
    torch.cuda.synchronize(dev)
    per_patch = max(1, (torch.cuda.max_memory_allocated(dev) - base)) / n
    del feats
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(dev)
    return int(max(1, min(cap, fraction * free // per_patch)))
