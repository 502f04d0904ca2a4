"""Attention kernel dispatch and the QK-normalised attention layer.

All attention in Tera-MIND uses an effective logit temperature of ``1 / head_dim`` (not
``1 / sqrt(head_dim)``): the reference pre-scales queries by ``head_dim ** -0.5`` and then
lets SDPA apply its own default scale. Here the scale is passed to the kernel directly.

Kernels
-------
``"auto"`` (default) uses ``flash_attn.flash_attn_func`` when the optional package imports
and the tensors are CUDA fp16/bf16 with a head size it supports, and
:func:`torch.nn.functional.scaled_dot_product_attention` otherwise. ``"sdpa"`` forces SDPA,
``"math"`` an explicit softmax (slow, for checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from napari_teramind.model.linear import SampleLinear
from napari_teramind.model.norms import TokenRMSNorm

__all__ = [
    "AttentionBackend",
    "QKNormAttention",
    "attention",
    "flash_attention_available",
    "get_attention_backend",
    "set_attention_backend",
]

AttentionBackend = Literal["auto", "sdpa", "flash", "math"]

_flash_attn_func: Callable[..., Any] | None
try:  # optional dependency, only useful on CUDA
    from flash_attn import flash_attn_func as _flash_attn_func
except Exception:  # any import failure means "not available"
    _flash_attn_func = None

_backend: AttentionBackend = "auto"


def flash_attention_available() -> bool:
    """Return whether the optional ``flash_attn`` package could be imported."""
    return _flash_attn_func is not None


def set_attention_backend(name: AttentionBackend) -> None:
    """Select the attention kernel used by every attention layer (process-wide)."""
    global _backend
    if name not in ("auto", "sdpa", "flash", "math"):
        raise ValueError(f"unknown attention backend {name!r}")
    if name == "flash" and _flash_attn_func is None:
        raise RuntimeError("flash_attn is not installed or failed to import")
    _backend = name


def get_attention_backend() -> AttentionBackend:
    """Return the selected attention kernel name."""
    return _backend


def _flash_usable(q: torch.Tensor) -> bool:
    return (
        _flash_attn_func is not None
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] <= 256
        and q.shape[-1] % 8 == 0
    )


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T * scale) v``.

    Parameters
    ----------
    q, k, v
        Tensors of shape ``(B, heads, L, D)``.
    scale
        Logit multiplier.

    Returns
    -------
    torch.Tensor
        ``(B, heads, L_q, D)``.
    """
    backend = _backend
    if backend == "flash" or (backend == "auto" and _flash_usable(q)):
        if not _flash_usable(q):
            raise RuntimeError("flash attention needs CUDA fp16/bf16 tensors with head dim <= 256")
        assert _flash_attn_func is not None
        out = _flash_attn_func(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale
        )
        return out.transpose(1, 2)
    if backend == "math":
        weights = torch.softmax((q @ k.transpose(-2, -1)).float() * scale, dim=-1)
        return weights.to(v.dtype) @ v
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


class QKNormAttention(nn.Module):
    """Multi-head attention with per-head RMSNorm on queries and keys (no input norm).

    Queries come from ``x`` and keys/values from ``context`` (self-attention when the two
    are the same tensor). Names ``q, k, v, q_norm, k_norm, proj`` match the published weights.

    Parameters
    ----------
    dim
        Token width ``d``.
    num_heads
        Number of heads; ``head_dim = d / num_heads``.
    """

    def __init__(self, dim: int, num_heads: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError("dim must be divisible by num_heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = SampleLinear(dim, dim)
        self.k = SampleLinear(dim, dim)
        self.v = SampleLinear(dim, dim)
        self.q_norm = TokenRMSNorm(self.head_dim)
        self.k_norm = TokenRMSNorm(self.head_dim)
        self.proj = SampleLinear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Attend from ``x`` ``(B, L, d)`` to ``context`` ``(B, L_kv, d)``."""
        v = self._heads(self.v(context))
        # the norms return float32 under autocast; attend in the projections' dtype
        q = self.q_norm(self._heads(self.q(x))).to(v.dtype)
        k = self.k_norm(self._heads(self.k(context))).to(v.dtype)
        out = attention(q, k, v, scale=1.0 / self.head_dim)
        b, _, n, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))
