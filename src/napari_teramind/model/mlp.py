"""Transformer MLP ``d -> ratio * d -> d`` with tanh-approximated GELU."""

from __future__ import annotations

import torch
from torch import nn

from napari_teramind.model.linear import SampleLinear

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """Two-layer MLP as used after both attention kinds (names ``fc1``/``fc2``).

    Parameters
    ----------
    dim
        Input and output width.
    hidden
        Hidden width.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = SampleLinear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = SampleLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to the last axis of ``x``."""
        return self.fc2(self.act(self.fc1(x)))
