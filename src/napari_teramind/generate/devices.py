"""Per-process model loading (cached by checkpoint), device autocast and batch-size choice."""

from __future__ import annotations

from typing import Any

_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}


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
