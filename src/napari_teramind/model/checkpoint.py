"""The project's checkpoint format, and conversion from the published format.

A checkpoint is two files, written atomically (temporary file, then ``os.replace``):

* ``model.safetensors``: the model ``state_dict`` (no pickle anywhere);
* ``model.json``: ``{"format", "format_version", "model_config", "gene_names",
  "training_state", "provenance"}`` where provenance holds ``source``, ``weights_sha256``,
  ``created`` (UTC, ISO 8601) and ``package_version``.

``path`` may be a directory holding both files, or the path of the ``.safetensors`` (or
``.json``) file of a pair sharing one stem. The JSON is written last and records the SHA-256
of the weights, so a torn or corrupted pair is detected on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from napari_teramind.model.checkpoint_info import (
    CheckpointError,
    CheckpointInfo,
    load_state_dict_strict,
)
from napari_teramind.model.config import ModelConfig
from napari_teramind.model.published import file_sha256, import_published_checkpoint
from napari_teramind.model.unet import TeraMindUNet

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointInfo",
    "checkpoint_files",
    "convert_checkpoint",
    "import_published_checkpoint",
    "is_native_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT_NAME = "napari-teramind-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
#: The file of a training run directory that names its newest complete checkpoint.
RUN_LAST_FILE = "last.json"


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("napari-teramind")
    except Exception:  # not installed as a distribution
        from napari_teramind import __version__

        return __version__


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """Return the ``(weights, metadata)`` paths of a checkpoint location."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    return path / WEIGHTS_FILE, path / META_FILE


def is_native_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` looks like a checkpoint in this project's format."""
    weights, meta = checkpoint_files(path)
    return weights.is_file() and meta.is_file()


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise TypeError(f"{where} must hold plain JSON data, got {type(value).__name__}")


def _temporary_sibling(path: Path) -> Path:
    # lazily: only a write needs it
    from napari_teramind.atomic import create_temporary_sibling

    fd, name = create_temporary_sibling(path)  # mode 0666 less the umask, like other outputs
    os.close(fd)
    return name


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def save_checkpoint(
    path: str | Path,
    model: TeraMindUNet,
    config: ModelConfig | None,
    gene_names: Sequence[str],
    training_state: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Save weights and metadata atomically.

    Parameters
    ----------
    path
        A directory (created if needed) or a ``*.safetensors`` path.
    model
        The network.
    config
        Its configuration; ``None`` uses ``model.config``.
    gene_names
        The ``G`` gene names in model order.
    training_state
        Plain JSON data (numbers, strings, lists, dicts), e.g. ``{"global_step": 1000}``.
    provenance
        Extra provenance fields (``source`` defaults to ``"napari-teramind"``); ``created``,
        ``weights_sha256`` and ``package_version`` are always set here.

    Returns
    -------
    CheckpointInfo
        What was written.
    """
    config = model.config if config is None else config
    if config != model.config:
        raise ValueError("config does not describe the model being saved")
    names = tuple(str(n) for n in gene_names)
    if len(names) != config.n_genes:
        raise ValueError(f"got {len(names)} gene names for a model of {config.n_genes} genes")
    state = dict(training_state or {})
    _check_plain(state, "training_state")
    extra = dict(provenance or {})
    _check_plain(extra, "provenance")

    weights_path, meta_path = checkpoint_files(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    tmp_weights = _temporary_sibling(weights_path)
    try:
        mode = tmp_weights.stat().st_mode & 0o777  # 0666 less the umask
        save_file(tensors, str(tmp_weights), metadata={"format": "pt", "producer": FORMAT_NAME})
        os.chmod(tmp_weights, mode)  # safetensors recreates the file 0600
        _fsync(tmp_weights)
        sha = file_sha256(tmp_weights)
        os.replace(tmp_weights, weights_path)
    finally:
        tmp_weights.unlink(missing_ok=True)

    full_provenance = {"source": "napari-teramind", **extra}
    full_provenance.update(
        weights_sha256=sha,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        package_version=_package_version(),
    )
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_config": config.to_dict(),
        "gene_names": list(names),
        "training_state": state,
        "provenance": full_provenance,
    }
    tmp_meta = _temporary_sibling(meta_path)
    try:
        tmp_meta.write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n")
        _fsync(tmp_meta)
        os.replace(tmp_meta, meta_path)
    finally:
        tmp_meta.unlink(missing_ok=True)
    return CheckpointInfo(config, names, state, full_provenance, Path(path))


def _read_meta(meta_path: Path) -> dict[str, Any]:
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint metadata {meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{meta_path} is not a {FORMAT_NAME} metadata file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format version {meta.get('format_version')}, "
            f"this package reads version {FORMAT_VERSION}"
        )
    for key in ("model_config", "gene_names", "provenance"):
        if key not in meta:
            raise CheckpointError(f"{meta_path} lacks {key!r}")
    return meta


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True
) -> tuple[TeraMindUNet, CheckpointInfo]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path
        Directory or ``*.safetensors``/``*.json`` path of the pair.
    map_location
        Device of the returned model.
    verify
        Check the weights' SHA-256 against the metadata.

    Returns
    -------
    tuple
        The model in ``eval()`` mode and its :class:`CheckpointInfo`.

    Raises
    ------
    CheckpointError
        Missing, corrupted or truncated files, or weights that do not match the config.
    """
    weights_path, meta_path = checkpoint_files(path)
    meta = _read_meta(meta_path)
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights {weights_path} do not exist")
    expected_sha = meta["provenance"].get("weights_sha256")
    if verify and expected_sha and file_sha256(weights_path) != expected_sha:
        raise CheckpointError(
            f"{weights_path} is corrupted or was replaced: its SHA-256 does not match "
            f"{meta_path.name}"
        )
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid model_config in {meta_path}: {exc}") from exc
    names = tuple(meta["gene_names"])
    if len(names) != config.n_genes:
        raise CheckpointError(f"{meta_path} lists {len(names)} genes for G = {config.n_genes}")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read weights {weights_path}: {exc}") from exc
    model = TeraMindUNet(config)
    load_state_dict_strict(model, tensors, source=str(weights_path))
    model.to(map_location).eval()
    info = CheckpointInfo(
        config=config,
        gene_names=names,
        training_state=dict(meta.get("training_state") or {}),
        provenance=dict(meta["provenance"]),
        path=Path(path),
    )
    return model, info


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    gene_names: Sequence[str] | None = None,
    mouse: str | None = None,
) -> CheckpointInfo:
    """Convert a published Lightning checkpoint (or re-save a native one) to this format.

    Parameters
    ----------
    src
        Published ``.ckpt`` or a native checkpoint location.
    dst
        Destination directory or ``*.safetensors`` path.
    gene_names
        Gene names to attach (published checkpoints only; see
        :func:`import_published_checkpoint`).
    mouse
        Name the genes after the first ``G`` of this published panel (published checkpoints,
        when ``gene_names`` is None).

    Returns
    -------
    CheckpointInfo
        The written checkpoint's metadata.
    """
    if is_native_checkpoint(src):
        model, info = load_checkpoint(src)
        names = info.gene_names if gene_names is None else tuple(gene_names)
        provenance = {k: v for k, v in info.provenance.items() if k != "weights_sha256"}
    else:
        model, info = import_published_checkpoint(src, gene_names=gene_names, mouse=mouse)
        names = info.gene_names
        provenance = dict(info.provenance)
    provenance["converted_from"] = str(Path(src).name)
    return save_checkpoint(dst, model, info.config, names, info.training_state, provenance)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[int, Path] | None:
    """``(step, path)`` of the newest complete checkpoint of a training run, or None.

    A training run directory (:mod:`napari_teramind.train.loop`) names it in ``last.json``
    (``{"step": 500, "path": "checkpoints/step_000500"}``), which the trainer replaces
    atomically after the checkpoint is complete. It lives here, with the checkpoint format,
    so that loading a model (:func:`~napari_teramind.model.resolve_model`) needs no trainer.

    Raises
    ------
    ValueError
        When ``last.json`` is not valid JSON (a corrupt or truncated file).
    """
    last = Path(run_dir) / RUN_LAST_FILE
    if not last.exists():
        return None
    try:
        info = json.loads(last.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{last} is not valid JSON ({exc}); the file is corrupt or truncated"
        ) from exc
    return int(info["step"]), Path(run_dir) / info["path"]
