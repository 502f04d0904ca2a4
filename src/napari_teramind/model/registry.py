"""Resolve a model specification (bundled, native checkpoint, published ``.ckpt``, run folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from napari_teramind.model.checkpoint import CheckpointInfo
    from napari_teramind.model.config import ModelConfig
    from napari_teramind.model.unet import TeraMindUNet

__all__ = ["model_config_of", "model_meta_of", "resolve_model"]

BUNDLED_NAMES = ("bundled",)


def resolve_model(
    spec: str | os.PathLike[str] | None, device: str | torch.device = "cpu"
) -> tuple[TeraMindUNet, CheckpointInfo]:
    """Load the model that ``spec`` names, in ``eval()`` mode on ``device``.

    Parameters
    ----------
    spec
        ``None`` or ``"bundled"``: the model shipped with the package. Otherwise a path: a
        native checkpoint (a directory holding ``model.safetensors`` + ``model.json``, or the
        ``.safetensors``/``.json`` file of such a pair), a training run directory (its latest
        checkpoint), or a published PyTorch-Lightning ``.ckpt`` (imported; its genes are the
        first ``G`` of the published panel).
    device
        Device of the returned model.

    Returns
    -------
    tuple
        ``(model, info)``; ``info.gene_names`` is the model's panel.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or a folder holding no checkpoint.
    ValueError
        A file that is no checkpoint this package reads.
    """
    from napari_teramind.model.bundled import load_bundled_model
    from napari_teramind.model.checkpoint import (
        import_published_checkpoint,
        is_native_checkpoint,
        latest_checkpoint,
        load_checkpoint,
    )

    if spec is None or (isinstance(spec, str) and spec.strip().lower() in BUNDLED_NAMES):
        return load_bundled_model(device)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"model {str(spec)!r} not found: give 'bundled' (or nothing) for the bundled model, "
            "a checkpoint directory, a .safetensors/.json checkpoint file, a training run "
            "directory or a published .ckpt file"
        )
    if is_native_checkpoint(path):
        return load_checkpoint(path, map_location=device)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is not None:
            return load_checkpoint(latest[1], map_location=device)
        raise FileNotFoundError(
            f"{path} holds no checkpoint (neither model.safetensors + model.json nor a "
            "training run's last.json)"
        )
    if path.suffix == ".ckpt":
        return import_published_checkpoint(path, map_location=device)
    raise ValueError(
        f"{path} is not a model checkpoint: expected a .safetensors/.json pair of this package "
        "or a published .ckpt file"
    )


def model_config_of(spec: str | os.PathLike[str] | None) -> ModelConfig:
    """The :class:`ModelConfig` of the model ``spec`` names (see :func:`model_meta_of`)."""
    return model_meta_of(spec)[0]


def model_meta_of(spec: str | os.PathLike[str] | None) -> tuple[ModelConfig, tuple[str, ...]]:
    """``(config, gene names)`` of the model ``spec`` names, from its metadata where it can.

    Native checkpoints (and the bundled model, and a run's latest checkpoint) are read from
    their JSON metadata without loading weights; a published ``.ckpt`` is imported. Used to
    plan a generation (its slice scheme) and check its source before any worker loads the
    model.
    """
    from napari_teramind.model.bundled import bundled_checkpoint_path
    from napari_teramind.model.checkpoint import (
        _read_meta,
        checkpoint_files,
        is_native_checkpoint,
        latest_checkpoint,
    )
    from napari_teramind.model.config import ModelConfig

    if spec is None or (isinstance(spec, str) and spec.strip().lower() in BUNDLED_NAMES):
        path = bundled_checkpoint_path()
    else:
        path = Path(spec).expanduser()
        if path.is_dir() and not is_native_checkpoint(path):
            latest = latest_checkpoint(path)
            path = latest[1] if latest is not None else path
    if is_native_checkpoint(path):
        meta = _read_meta(checkpoint_files(path)[1])
        return ModelConfig.from_dict(meta["model_config"]), tuple(meta["gene_names"])
    _, info = resolve_model(spec)
    return info.config, tuple(info.gene_names)
