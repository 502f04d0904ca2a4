"""Import checkpoints of the published reference code (PyTorch Lightning ``.ckpt``).

The published ``state_dict`` keys are ``"model." + <module path>``; the module paths of
:class:`~napari_teramind.model.unet.TeraMindUNet` mirror the reference, so the mapping is the
prefix strip alone and the load is strict. The configuration is inferred from tensor shapes
(the Lightning ``hyper_parameters`` only fill in what shapes cannot tell).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from napari_teramind.model.checkpoint_info import (
    CheckpointError,
    CheckpointInfo,
    load_state_dict_strict,
)
from napari_teramind.model.config import ModelConfig
from napari_teramind.model.safe_load import read_torch_checkpoint, to_plain_data
from napari_teramind.model.unet import TeraMindUNet

__all__ = [
    "PUBLISHED_PREFIX",
    "file_sha256",
    "import_published_checkpoint",
    "infer_config_from_state_dict",
    "published_gene_names",
    "strip_published_prefix",
]

#: Prefix of every model key in a published Lightning checkpoint.
PUBLISHED_PREFIX = "model."
_IGNORED_PREFIXES = ("ema_model.",)
_REQUIRED_KEYS = (
    "rna_blocks.0.0.down_z.weight",
    "rna_blocks.0.0.attn.q.weight",
    "rna_blocks.0.0.mlp.fc1.weight",
    "input_blocks.0.0.weight",
    "time_embed.time_embed.0.weight",
    "middle_block.1.attn.q_norm.weight",
)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def strip_published_prefix(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map published keys to model keys: strip ``model.``; drop EMA keys and non-tensors."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(_IGNORED_PREFIXES) or not isinstance(value, torch.Tensor):
            continue
        out[key.removeprefix(PUBLISHED_PREFIX)] = value
    return out


def _block_indices(state_dict: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pattern.match(k))})


def infer_config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], hparams: Mapping[str, Any] | None = None
) -> ModelConfig:
    """Infer the :class:`ModelConfig` of a published state dict (prefix already stripped).

    Shapes give ``n_genes``, widths, ``num_res_blocks``, embedding sizes, gene-map channels,
    attention levels and heads. ``patch_size``, ``gn_sz`` and ``dropout`` come from
    ``hparams`` when present (defaults 64, 4, 0.1).

    Raises
    ------
    CheckpointError
        If the tensors do not describe a Tera-MIND UNet.
    """
    hparams = hparams or {}
    missing = [k for k in _REQUIRED_KEYS if k not in state_dict]
    if missing:
        raise CheckpointError(f"not a Tera-MIND state dict: missing {missing}")
    sd = state_dict
    down_z = sd["rna_blocks.0.0.down_z.weight"]
    n_genes, z_kernel = int(down_z.shape[0]), int(down_z.shape[2])
    token_dim = int(sd["rna_blocks.0.0.attn.q.weight"].shape[1])
    mlp_ratio = int(sd["rna_blocks.0.0.mlp.fc1.weight"].shape[0]) // token_dim
    input_conv = sd["input_blocks.0.0.weight"]
    model_channels, stains = int(input_conv.shape[0]), int(input_conv.shape[1])
    time_linear = sd["time_embed.time_embed.0.weight"]
    embed_channels, sinusoid_dim = int(time_linear.shape[0]), int(time_linear.shape[1])

    gene_map_channels = []
    while (key := f"rna_blocks.{len(gene_map_channels) + 1}.1.weight") in sd:
        gene_map_channels.append(int(sd[key].shape[0]))
    levels = len(gene_map_channels) + 1
    n_input = len(_block_indices(sd, "input_blocks"))
    if (n_input - levels) % levels:
        raise CheckpointError(f"cannot infer num_res_blocks from {n_input} input blocks")
    num_res_blocks = (n_input - levels) // levels

    widths, attention_levels = [], []
    for level in range(levels):
        first = 1 + level * (num_res_blocks + 1)
        key = f"input_blocks.{first}.0.out_layers.3.weight"
        if key not in sd:
            raise CheckpointError(f"not a Tera-MIND state dict: missing {key}")
        widths.append(int(sd[key].shape[0]))
        if f"input_blocks.{first}.1.norm1.weight" in sd:
            attention_levels.append(level)
    if any(w % model_channels for w in widths):
        raise CheckpointError(f"widths {widths} are not multiples of {model_channels}")
    head_dim = int(sd["middle_block.1.attn.q_norm.weight"].shape[0])

    patch = int(hparams.get("patch_size", hparams.get("image_size", 64)))
    gene_grid = int(hparams.get("gn_sz", 4))
    gene_slices = token_dim // gene_grid**2
    try:
        return ModelConfig(
            n_genes=n_genes,
            model_channels=model_channels,
            channel_mult=tuple(w // model_channels for w in widths),
            num_res_blocks=num_res_blocks,
            embed_channels=embed_channels,
            attention_resolutions=tuple(patch // 2**level for level in attention_levels),
            num_heads=widths[-1] // head_dim,
            patch_size=patch,
            gene_block_px=patch // gene_grid,
            gene_slices=gene_slices,
            image_depth=gene_slices - z_kernel + 1,
            stains=stains,
            dropout=float(hparams.get("dropout", 0.1)),
            gene_map_channels=tuple(gene_map_channels),
            time_embed_dim=None if sinusoid_dim == model_channels else sinusoid_dim,
            mlp_ratio=mlp_ratio,
        )
    except ValueError as exc:
        raise CheckpointError(f"inconsistent Tera-MIND state dict: {exc}") from exc


def _mouse_of(hparams: Mapping[str, Any]) -> str:
    name = str(hparams.get("name") or "")
    match = re.match(r"(\d{6})_", name)
    if match:
        return match.group(1)
    return str(hparams.get("data_path") or "638850")


def published_gene_names(n_genes: int, mouse: str = "638850") -> tuple[str, ...]:
    """Return the first ``n_genes`` names of a mouse's published panel.

    Read from :mod:`napari_teramind.panels` (data only), so this package stays free of the
    storage layer.

    Raises
    ------
    CheckpointError
        If the panel cannot be loaded or is too short.
    """
    try:
        from napari_teramind.panels import published_panel_names

        names = published_panel_names(mouse)[:n_genes]
    except Exception as exc:
        raise CheckpointError(
            f"could not look up the published gene panel of mouse {mouse} ({exc}); "
            "pass gene_names=... explicitly"
        ) from exc
    if len(names) != n_genes:
        raise CheckpointError(f"the published panel has {len(names)} genes, need {n_genes}")
    return names


def import_published_checkpoint(
    ckpt_path: str | Path,
    gene_names: Sequence[str] | None = None,
    map_location: str | torch.device = "cpu",
    mouse: str | None = None,
) -> tuple[TeraMindUNet, CheckpointInfo]:
    """Build a model from a published Lightning checkpoint.

    Parameters
    ----------
    ckpt_path
        ``last.ckpt`` or any checkpoint of the reference code.
    gene_names
        Names of the ``G`` model genes in order. ``None`` takes the first ``G`` names of the
        published panel of the run's mouse (parsed from the run name, default 638850).
    map_location
        Device of the returned model.
    mouse
        Published panel (``"638850"`` or ``"609882"``) whose first ``G`` genes name the model
        genes when ``gene_names`` is None; by default the run's mouse.

    Returns
    -------
    tuple
        The model in ``eval()`` mode and its :class:`CheckpointInfo` (provenance records the
        source file's SHA-256, the Lightning metadata and the reference hyper-parameters).

    Raises
    ------
    CheckpointError
        Unreadable file, no state dict, or keys/shapes that do not match exactly.
    """
    ckpt_path = Path(ckpt_path)
    obj, restricted = read_torch_checkpoint(ckpt_path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        raw_state = obj["state_dict"]
    elif isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raw_state, obj = obj, {}
    else:
        raise CheckpointError(f"{ckpt_path} holds no state_dict")
    hparams = obj.get("hyper_parameters") or {}
    hparams = to_plain_data(hparams) if isinstance(hparams, Mapping) else {}
    state = strip_published_prefix(raw_state)
    config = infer_config_from_state_dict(state, hparams)

    if gene_names is None:
        names = published_gene_names(config.n_genes, mouse or _mouse_of(hparams))
    else:
        names = tuple(str(n) for n in gene_names)
        if len(names) != config.n_genes:
            raise ValueError(f"got {len(names)} gene names for a model of {config.n_genes} genes")

    model = TeraMindUNet(config)
    load_state_dict_strict(model, state, source=f"published checkpoint {ckpt_path.name}")
    model.to(map_location).eval()

    training_state = {k: obj[k] for k in ("epoch", "global_step") if isinstance(obj.get(k), int)}
    provenance: dict[str, Any] = {
        "source": "published-lightning-checkpoint",
        "source_file": ckpt_path.name,
        "source_sha256": file_sha256(ckpt_path),
        "lightning_version": to_plain_data(obj.get("pytorch-lightning_version")),
        "read_with_restricted_unpickler": restricted,
        "reference_hyper_parameters": hparams,
    }
    info = CheckpointInfo(
        config=config,
        gene_names=names,
        training_state=training_state,
        provenance=provenance,
        path=ckpt_path,
    )
    return model, info
