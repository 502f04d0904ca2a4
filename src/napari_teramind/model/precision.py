"""The one autocast policy of the project: which precision a forward pass runs in, and where.

Every caller that runs the network (generation engine, ROI generator, jobs, training, attention
maps, benchmarks) enters :func:`autocast`; none builds its own ``torch.autocast``.

* ``"fp32"``: no autocast, plain float32. On CPU this is the default everywhere, so CPU results
  stay float32 and bit-exact across executors and releases.
* ``"bf16"``: bfloat16 autocast (the generation default on CUDA; the error against float32 is
  measured in ``benchmarks/gpu.py`` and ``benchmarks/engine.py``, see docs/generation.md). On CPU
  only when asked for explicitly (to measure that error on a machine without a GPU).
* ``"fp16"``: float16 autocast, CUDA only (training with a gradient scaler).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["PRECISIONS", "autocast", "default_precision", "precision_name"]

#: Precisions :func:`autocast` knows, float32 first.
PRECISIONS = ("fp32", "bf16", "fp16")

_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "none": "fp32", "": "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
}  # fmt: skip


def precision_name(precision: Any) -> str:
    """Normalise ``precision`` to one of :data:`PRECISIONS`.

    Accepts a name (``"bf16"``, ``"bfloat16"``, ``"none"``, ...), ``None`` (float32), a bool
    (``True`` = bf16, the engine's historical ``bf16=`` flag) or a torch dtype.
    """
    if precision is None or precision is False:
        return "fp32"
    if precision is True:
        return "bf16"
    if not isinstance(precision, str):
        precision = str(precision).removeprefix("torch.")
    name = _ALIASES.get(precision.lower())
    if name is None:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def default_precision(device: str | torch.device) -> str:
    """The generation precision of ``device``: bf16 on CUDA, fp32 elsewhere."""
    return "bf16" if str(device).startswith("cuda") else "fp32"


def autocast(device: str | torch.device, precision: Any = "fp32", *, off_cuda: str = "run"):
    """Context manager running the network at ``precision`` on ``device``.

    Parameters
    ----------
    device
        Where the tensors live (``"cpu"``, ``"cuda:1"``, a ``torch.device``).
    precision
        See :func:`precision_name`. ``"fp32"`` enters no autocast at all.
    off_cuda
        What reduced precision does off CUDA: ``"run"`` (CPU bf16 autocast, to measure its
        error), ``"ignore"`` (float32: training's ``--precision`` only applies on GPUs) or
        ``"refuse"`` (a ``ValueError`` naming the fix). fp16 is never run off CUDA.

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast`` or a null context.
    """
    name = precision_name(precision)
    if name == "fp32":
        return contextlib.nullcontext()
    import torch

    kind = torch.device(device).type
    if kind != "cuda" and off_cuda == "ignore":
        return contextlib.nullcontext()
    if kind != "cuda" and (off_cuda == "refuse" or name == "fp16"):
        raise ValueError(
            f"{name} autocast is for CUDA devices, not {kind}; use device='cuda' or precision fp32"
        )
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    return torch.autocast(kind, dtype=dtype)
