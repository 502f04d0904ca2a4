"""A linear layer whose result for one sample does not depend on the rest of its batch.

On CPU, torch's float32 matrix product splits the rows of ``x @ W.T`` across the intra-op
threads, and a row's rounding depends on where the split falls: with 2 threads, the gene
tokens of a patch projected at batch position 0 and at position 1 differed in the last bit
(measured on an AMD EPYC without AVX-512, 2 threads; 1 thread gave no difference, and neither
did any convolution). The generation engine packs a block's patches into fixed-size
micro-batches, so a patch's position in its batch changes with the block size and order; a
rounding that follows the position would break "tiled == global, bitwise, for every block
size and order".

:class:`SampleLinear` therefore applies the product one sample at a time when it runs on CPU
outside autograd (inference: generation, attention maps, evaluation): every sample then goes
through the same call on the same shape, whatever its neighbours. Training and CUDA use one
batched call (GPU tiles compute every row with the same kernel, and training needs no
bitwise invariance). The parameters are an ordinary :class:`torch.nn.Linear`'s, so
checkpoints load unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SampleLinear", "batch_invariant"]

_ENABLED = [True]


@contextmanager
def batch_invariant(enabled: bool) -> Iterator[None]:
    """Turn the per-sample CPU path on (the default) or off, process-wide, within the block.

    Off, a patch's last bits may follow its batch position, so results are no longer bitwise
    identical across block sizes and orders (still equal to float32 rounding). The per-sample
    path costs 1.2-1.3x in ROI generation on 2 CPU threads (benchmarks/RESULTS.md), so the
    demo, a single run that needs no block invariance, turns it off.
    """
    before = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    try:
        yield
    finally:
        _ENABLED[0] = before


class SampleLinear(nn.Linear):
    """:class:`torch.nn.Linear` that computes each sample (first axis) in its own CPU call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T + bias`` over the last axis; see the module docstring for the path."""
        if (
            x.dim() < 2
            or x.shape[0] < 2
            or x.device.type != "cpu"
            or torch.is_grad_enabled()
            or not _ENABLED[0]
        ):
            return F.linear(x, self.weight, self.bias)
        return torch.cat([F.linear(x[i : i + 1], self.weight, self.bias) for i in range(len(x))])
