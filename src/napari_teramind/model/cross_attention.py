"""Windowed gene-to-morphology cross-attention with per-token AdaLN modulation.

Image tokens are the queries; keys and values are projections of a per-token vector
``kv_src`` derived from the gene map at the same location. Attention runs within
``windows x windows`` spatial windows (quadrants for the published model) over all depth
slices of the window, which aligns with the 32 px quadrants where collage patches are cut.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_teramind.model.attention import QKNormAttention
from napari_teramind.model.linear import SampleLinear
from napari_teramind.model.mlp import Mlp
from napari_teramind.model.norms import TokenRMSNorm

__all__ = ["CrossAttentionBlock", "from_window_tokens", "to_window_tokens"]

#: Order of the AdaLN chunks.
ADALN_CHUNKS = (
    "shift_msa",
    "scale_msa",
    "gate_msa",
    "kv_src",
    "shift_mlp",
    "scale_mlp",
    "gate_mlp",
)


def to_window_tokens(x: torch.Tensor, windows: int) -> torch.Tensor:
    """Cut ``(N, C, Z, H, W)`` into ``windows**2`` windows of tokens.

    Returns
    -------
    torch.Tensor
        ``(N * windows**2, Z * H/windows * W/windows, C)``, window-major per sample.
    """
    n, c, z, h, w = x.shape
    hw, ww = h // windows, w // windows
    x = x.reshape(n, c, z, windows, hw, windows, ww)
    x = x.permute(0, 3, 5, 2, 4, 6, 1)
    return x.reshape(n * windows * windows, z * hw * ww, c)


def from_window_tokens(tokens: torch.Tensor, shape: torch.Size, windows: int) -> torch.Tensor:
    """Invert :func:`to_window_tokens` back to a ``shape = (N, C, Z, H, W)`` map."""
    n, c, z, h, w = shape
    hw, ww = h // windows, w // windows
    x = tokens.reshape(n, windows, windows, z, hw, ww, c)
    x = x.permute(0, 6, 3, 1, 4, 2, 5)
    return x.reshape(n, c, z, h, w)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class CrossAttentionBlock(nn.Module):
    """AdaLN-modulated DiT-style block: image queries attend to gene-derived keys/values.

    With ``(shift_msa, scale_msa, gate_msa, kv_src, shift_mlp, scale_mlp, gate_mlp) =
    Linear(SiLU(gene_token))``::

        x = x + gate_msa * Attn(norm1(x) * (1 + scale_msa) + shift_msa, kv_src)
        x = x + gate_mlp * MLP(norm2(x) * (1 + scale_mlp) + shift_mlp)

    Parameters
    ----------
    dim
        Image feature width ``d``.
    gene_channels
        Channels of the gene map at this resolution.
    num_heads
        Attention heads.
    windows
        Windows per spatial side.
    mlp_ratio
        MLP hidden width ratio.
    """

    def __init__(
        self,
        dim: int,
        gene_channels: int,
        num_heads: int = 1,
        windows: int = 2,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        self.windows = windows
        self.norm1 = TokenRMSNorm(dim)
        self.attn = QKNormAttention(dim, num_heads)
        self.norm2 = TokenRMSNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(), SampleLinear(gene_channels, len(ADALN_CHUNKS) * dim)
        )

    def forward(self, x: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """Condition ``x`` ``(N, d, Z, H, W)`` on ``genes`` ``(N, C_g, Z, H, W)``."""
        tokens = to_window_tokens(x, self.windows)
        gene_tokens = to_window_tokens(genes, self.windows)
        modulation = self.adaLN_modulation(gene_tokens)
        shift_msa, scale_msa, gate_msa, kv_src, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(
            len(ADALN_CHUNKS), dim=-1
        )
        query_src = _modulate(self.norm1(tokens), shift_msa, scale_msa)
        tokens = tokens + gate_msa * self.attn(query_src, kv_src)
        tokens = tokens + gate_mlp * self.mlp(_modulate(self.norm2(tokens), shift_mlp, scale_mlp))
        return from_window_tokens(tokens, x.shape, self.windows)
