"""Time-modulated 3D residual block, optionally resampling in height and width."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from napari_teramind.model.linear import SampleLinear
from napari_teramind.model.norms import ChannelRMSNorm

__all__ = ["ResBlock", "Resample", "downsample_hw", "upsample_hw"]

Resample = Literal["none", "up", "down"]


def upsample_hw(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of the last two axes of ``(N, C, Z, H, W)``."""
    return F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")


def downsample_hw(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling of the last two axes of ``(N, C, Z, H, W)``."""
    return F.avg_pool3d(x, kernel_size=(1, 2, 2), stride=(1, 2, 2))


class ResBlock(nn.Module):
    """ResBlock with per-channel time scale/shift, on ``(N, C, Z, H, W)`` volumes.

    ``h = conv(SiLU(norm(x)))``; ``h = norm(h) * (1 + scale) + shift``;
    ``out = skip(x) + conv(dropout(SiLU(h)))`` where ``(scale, shift)`` come from the time
    embedding and the second conv starts at zero. When ``gene_channels > 0`` the gene map is
    concatenated to the input channels first (the skip sees the concatenation too).

    Parameters
    ----------
    in_channels
        Channels of the feature input (without the gene map).
    out_channels
        Output channels.
    embed_channels
        Width of the time embedding.
    gene_channels
        Channels of the gene map concatenated to the input, 0 for none.
    dropout
        Dropout before the second conv.
    resample
        ``"up"`` or ``"down"`` resamples H and W (not Z) of both paths.

    Notes
    -----
    The skip is the identity whenever the (concatenated) input width equals the output width,
    as in the published checkpoints; otherwise it is a 1x1x1 conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_channels: int,
        gene_channels: int = 0,
        dropout: float = 0.0,
        resample: Resample = "none",
    ) -> None:
        super().__init__()
        total_in = in_channels + gene_channels
        self.gene_channels = gene_channels
        self.resample = resample
        self.in_layers = nn.Sequential(
            ChannelRMSNorm(total_in),
            nn.SiLU(),
            nn.Conv3d(total_in, out_channels, kernel_size=3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), SampleLinear(embed_channels, 2 * out_channels))
        self.out_layers = nn.Sequential(
            ChannelRMSNorm(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1),
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        if total_in == out_channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv3d(total_in, out_channels, kernel_size=1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return upsample_hw(x)
        if self.resample == "down":
            return downsample_hw(x)
        return x

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, genes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x
            Features ``(N, C_in, Z, H, W)``.
        emb
            Time embedding ``(N, E)``.
        genes
            Gene map ``(N, C_g, Z, H, W)``, required iff ``gene_channels > 0``.
        """
        if self.gene_channels:
            if genes is None:
                raise ValueError("this ResBlock concatenates a gene map but none was given")
            x = torch.cat([x, genes.to(x.dtype)], dim=1)
        if self.resample == "none":
            h = self.in_layers(x)
        else:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self._resample(h))
            x = self._resample(x)
        scale, shift = self.emb_layers(emb).chunk(2, dim=1)
        scale = scale[:, :, None, None, None]
        shift = shift[:, :, None, None, None]
        norm, rest = self.out_layers[0], self.out_layers[1:]
        h = rest(norm(h) * (1 + scale) + shift)
        return self.skip_connection(x) + h
