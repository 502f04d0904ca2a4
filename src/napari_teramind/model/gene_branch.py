"""Gene branch: gene-gene self-attention, z reduction and the 3D-conv upscaling path.

Input genes are raw block counts ``(N, G, Z_g, g, g)`` (gene, gene slice, block row, block
column; ``Z_g = 4`` and ``g = 4`` for the published model). The branch returns one gene map
per UNet level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_teramind.model.attention import attention
from napari_teramind.model.linear import SampleLinear
from napari_teramind.model.mlp import Mlp
from napari_teramind.model.norms import TokenRMSNorm
from napari_teramind.model.resblock import upsample_hw

__all__ = ["GeneBranch", "GeneGeneAttention", "GeneGeneBlock", "UpsampleHW"]


class UpsampleHW(nn.Module):
    """Nearest x2 upsampling of height and width of ``(N, C, Z, H, W)`` maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x``."""
        return upsample_hw(x)


class GeneGeneAttention(nn.Module):
    """Self-attention between genes with shared, RMS-normalised queries and keys.

    Each gene is one token. Keys are the queries (one projection ``q`` and one
    ``q_norm``), so the logits ``S = q_n q_n^T / dim`` are symmetric; the softmax is taken
    per row (query gene ``i`` over key genes ``j``).

    Parameters
    ----------
    dim
        Token width (``Z_g * g * g`` = 64 for the published model).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.q = SampleLinear(dim, dim)
        self.v = SampleLinear(dim, dim)
        self.q_norm = TokenRMSNorm(dim)
        self.proj = SampleLinear(dim, dim)

    @property
    def scale(self) -> float:
        """Logit temperature ``1 / dim``."""
        return 1.0 / self.dim

    def normalised_queries(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return ``q_norm(q(tokens))`` of shape ``(N, G, dim)``."""
        return self.q_norm(self.q(tokens))

    def attention_weights(
        self, tokens: torch.Tensor, rows: Sequence[int] | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return softmax attention weights, computed in float32.

        Parameters
        ----------
        tokens
            Gene tokens ``(N, G, dim)``.
        rows
            Query-gene indices to compute. ``None`` computes the full matrix. The softmax is
            always over all ``G`` key genes, so each row equals the full matrix's row.

        Returns
        -------
        torch.Tensor
            ``(N, G, G)`` or ``(N, len(rows), G)``.
        """
        queries = self.normalised_queries(tokens).float()
        if rows is None:
            selected = queries
        else:
            index = torch.as_tensor(rows, dtype=torch.long, device=queries.device)
            selected = queries.index_select(1, index)
        logits = selected @ queries.transpose(1, 2) * self.scale
        return torch.softmax(logits, dim=-1)

    def forward(
        self, tokens: torch.Tensor, return_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend between genes.

        Parameters
        ----------
        tokens
            ``(N, G, dim)``.
        return_weights
            Also return the ``(N, G, G)`` weights (explicit softmax instead of the kernel).

        Returns
        -------
        tuple
            Projected output ``(N, G, dim)`` and the weights or ``None``.
        """
        values = self.v(tokens)
        if return_weights:
            weights = self.attention_weights(tokens)
            mixed = weights.to(values.dtype) @ values
        else:
            weights = None
            queries = self.normalised_queries(tokens)[:, None].to(values.dtype)
            mixed = attention(queries, queries, values[:, None], self.scale)
            mixed = mixed[:, 0]
        return self.proj(mixed), weights


class GeneGeneBlock(nn.Module):
    """Gene-gene attention, RMSNorm, MLP (no residuals) and the z-reducing 3D conv.

    Parameters
    ----------
    n_genes
        ``G``.
    gene_slices
        Gene slices ``Z_g`` per patch.
    gene_grid
        Gene blocks per patch side ``g``.
    z_kernel
        Depth of the z-reducing kernel (``Z_g - image_depth + 1``).
    mlp_ratio
        MLP hidden width ratio.
    """

    def __init__(
        self, n_genes: int, gene_slices: int, gene_grid: int, z_kernel: int, mlp_ratio: int = 4
    ) -> None:
        super().__init__()
        dim = gene_slices * gene_grid * gene_grid
        self.attn = GeneGeneAttention(dim)
        self.norm2 = TokenRMSNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.down_z = nn.Conv3d(n_genes, n_genes, kernel_size=(z_kernel, 3, 3), padding=(0, 1, 1))

    def forward(
        self, genes: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Map genes ``(N, G, Z_g, g, g)`` to ``(N, G, Z, g, g)`` (and optionally ``A``)."""
        n = genes.shape[0]
        tokens = genes.reshape(n, genes.shape[1], -1)
        mixed, weights = self.attn(tokens, return_weights=return_attention)
        mixed = self.mlp(self.norm2(mixed))
        return self.down_z(mixed.reshape(genes.shape)), weights


class GeneBranch(nn.ModuleList):
    """The four-stage gene branch, stored as ``rna_blocks`` like the published model.

    Stage 0 is the :class:`GeneGeneBlock` plus x2 upsampling; each later stage is
    ``SiLU -> Conv3d(1,3,3) -> x2 upsampling``.

    Parameters
    ----------
    n_genes
        ``G``.
    gene_slices, gene_grid, z_kernel, mlp_ratio
        See :class:`GeneGeneBlock`.
    map_channels
        Output channels of the upscaling convs, coarse to fine (published 128, 64, 32).
    """

    def __init__(
        self,
        n_genes: int,
        gene_slices: int,
        gene_grid: int,
        z_kernel: int,
        map_channels: Sequence[int],
        mlp_ratio: int = 4,
    ) -> None:
        stages: list[nn.Module] = [
            nn.Sequential(
                GeneGeneBlock(n_genes, gene_slices, gene_grid, z_kernel, mlp_ratio), UpsampleHW()
            )
        ]
        previous = n_genes
        for channels in map_channels:
            stages.append(
                nn.Sequential(
                    nn.SiLU(),
                    nn.Conv3d(previous, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
                    UpsampleHW(),
                )
            )
            previous = channels
        super().__init__(stages)

    @property
    def gene_block(self) -> GeneGeneBlock:
        """The gene-gene block (``rna_blocks.0.0``)."""
        block = self[0][0]
        assert isinstance(block, GeneGeneBlock)
        return block

    def forward(self, genes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the gene maps per UNet level, **full resolution first**.

        Parameters
        ----------
        genes
            Counts ``(N, G, Z_g, g, g)``.

        Returns
        -------
        tuple of torch.Tensor
            For the published model ``(r3, r2, r1, r0)`` with shapes ``(N, 32, 2, 64, 64)``,
            ``(N, 64, 2, 32, 32)``, ``(N, 128, 2, 16, 16)``, ``(N, G, 2, 8, 8)``.
        """
        block_out, _ = self.gene_block(genes)
        maps = [upsample_hw(block_out)]
        for stage in list(self)[1:]:
            maps.append(stage(maps[-1]))
        return tuple(reversed(maps))
