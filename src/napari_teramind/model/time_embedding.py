"""Diffusion-timestep embedding: sinusoids ``[cos, sin]`` followed by an MLP."""

from __future__ import annotations

import math

import torch
from torch import nn

from napari_teramind.model.linear import SampleLinear

__all__ = ["TimestepEmbedder", "sinusoidal_embedding"]


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Embed timesteps as ``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = max_period^(-i / half)``.

    Parameters
    ----------
    t
        Timesteps of shape ``(N,)`` (integer or float, original DDPM indices).
    dim
        Output width; an odd width gets one zero column.
    max_period
        Longest period of the sinusoids.

    Returns
    -------
    torch.Tensor
        Float32 tensor of shape ``(N, dim)``, cosines first.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / half)
    args = t.reshape(-1, 1).float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding followed by ``Linear -> SiLU -> Linear``.

    Parameters
    ----------
    sinusoid_dim
        Width of the raw sinusoidal embedding (published: 64).
    embed_channels
        Output width (published: 512).
    """

    def __init__(self, sinusoid_dim: int, embed_channels: int) -> None:
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.time_embed = nn.Sequential(
            SampleLinear(sinusoid_dim, embed_channels),
            nn.SiLU(),
            SampleLinear(embed_channels, embed_channels),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, embed_channels)`` embedding of timesteps ``t`` of shape ``(N,)``."""
        emb = sinusoidal_embedding(t, self.sinusoid_dim)
        return self.time_embed(emb.to(self.time_embed[0].weight.dtype))
