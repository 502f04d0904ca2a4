"""An exponential moving average (EMA) of a model's weights, for training runs.

After optimizer step ``n`` (1-based: ``n`` updates so far, this one included) every
floating-point parameter ``p`` moves its average ``e`` by ``e <- d_n e + (1 - d_n) p`` with

    ``d_n = min(decay, (1 + n) / (10 + n))``

(the warm-up of Tensorflow's ``ExponentialMovingAverage(num_updates=...)``), so the first
averages follow the quickly changing early weights instead of remembering the random
initialisation for ``1 / (1 - decay)`` steps. Buffers (and integer entries) are copied. The
decay depends only on ``n``, so the average is fully determined by the weights it saw: a
resumed run restores it from the checkpoint's ``ema/`` and continues bit for bit.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["ModelEMA", "ema_decay_at"]


def ema_decay_at(decay: float, n: int) -> float:
    """The decay of the ``n``-th update (``n >= 1``): ``min(decay, (1 + n) / (10 + n))``."""
    if n < 1:
        raise ValueError(f"EMA updates are counted from 1, not {n}")
    return min(float(decay), (1.0 + n) / (10.0 + n))


class ModelEMA:
    """The moving average of ``model``'s weights, held as a frozen copy of the model.

    Parameters
    ----------
    model
        The network being trained; the average starts as a copy of its current weights.
    decay
        The long-run decay (e.g. 0.999: an average over about 1000 steps), in ``(0, 1)``.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie between 0 and 1 (exclusive), not {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, n: int) -> float:
        """Fold ``model``'s current weights into the average as update ``n``; return its decay."""
        d = ema_decay_at(self.decay, n)
        ours = self.model.state_dict()
        for name, value in model.state_dict().items():
            avg = ours[name]
            if avg.is_floating_point():
                avg.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                avg.copy_(value)
        return d

    def load_weights(self, source: torch.nn.Module) -> None:
        """Replace the average by ``source``'s weights exactly (resume from a checkpoint)."""
        self.model.load_state_dict(source.state_dict(), strict=True)
