"""Checkpoint metadata, errors and strict weight loading shared by all checkpoint formats."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_teramind.model.config import ModelConfig

__all__ = ["CheckpointError", "CheckpointInfo", "load_state_dict_strict", "non_finite_tensors"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, or does not match the model."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything stored next to the weights.

    Attributes
    ----------
    config
        Model configuration.
    gene_names
        Gene panel of the model, ``len == config.n_genes``, in model order.
    training_state
        Plain JSON numbers/strings (e.g. ``global_step``, ``epoch``).
    provenance
        Where the weights come from: ``source``, ``weights_sha256``, ``created``,
        ``package_version`` and source-specific fields.
    path
        Location the checkpoint was read from or written to, if any.
    """

    config: ModelConfig
    gene_names: tuple[str, ...]
    training_state: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _shape_mismatches(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]
) -> list[str]:
    return [
        f"{key}: model {tuple(expected[key].shape)} vs checkpoint {tuple(given[key].shape)}"
        for key in expected
        if key in given and tuple(expected[key].shape) != tuple(given[key].shape)
    ]


def non_finite_tensors(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Describe every floating-point tensor of ``state_dict`` holding NaN or infinity.

    Returns
    -------
    list of str
        One line per bad tensor: its name, shape and how many NaN / infinite values it has.
    """
    bad = []
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
            continue
        finite = torch.isfinite(t)
        if bool(finite.all()):
            continue
        n_nan = int(torch.isnan(t).sum())
        n_inf = int((~finite).sum()) - n_nan
        what = ", ".join(f"{n} {kind}" for n, kind in ((n_nan, "NaN"), (n_inf, "infinite")) if n)
        bad.append(f"{name} {tuple(t.shape)}: {what} of {t.numel()} values")
    return bad


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load ``state_dict`` into ``model`` requiring exactly the same names and shapes.

    Every checkpoint loaded for use goes through here (native, published, bundled, training
    resume), so weights holding NaN or infinity are refused here, naming the tensors: such a
    model generates black or garbage images without a word.

    Raises
    ------
    CheckpointError
        Listing every missing key, unexpected key and shape mismatch, or every tensor that
        holds NaN or infinite values.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = _shape_mismatches(expected, state_dict)
    if missing or unexpected or mismatched:
        lines = [f"{source} does not match the model:"]
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items)
        raise CheckpointError("\n".join(lines))
    bad = non_finite_tensors(state_dict)
    if bad:
        more = f"\n    ... and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise CheckpointError(
            f"{source} holds non-finite weights (NaN or infinity) in {len(bad)} tensor"
            f"{'s' if len(bad) > 1 else ''}:\n"
            + "\n".join(f"    {b}" for b in bad[:8])
            + more
            + "\n  the training diverged or the file is damaged; use an earlier checkpoint"
        )
    model.load_state_dict(dict(state_dict), strict=True)
