"""What the network predicts: the noise (``eps``, published) or the velocity (``v``).

The published model predicts the noise ``eps`` of ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``.
A ``v`` model (Salimans & Ho, 2022) predicts ``v = sqrt(abar) eps - sqrt(1 - abar) x0``
instead: near pure noise it predicts the image itself, so a small, briefly trained network does
not have its noise error multiplied by ``1 / sqrt(abar)`` (100x at the first of 15 DDIM steps)
when the image is estimated. Every sampler works in ``eps``: :func:`to_eps` converts what the
network said, and the training loss compares the network with :func:`training_target`.
"""

from __future__ import annotations

import torch

__all__ = ["PREDICTIONS", "to_eps", "training_target"]

#: Supported network outputs.
PREDICTIONS = ("eps", "v")


def _check(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, not {prediction!r}")


def training_target(
    prediction: str, x0: torch.Tensor, eps: torch.Tensor, signal: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """What the network should output for clean ``x0`` noised with ``eps``.

    ``signal`` and ``sigma`` are ``sqrt(abar_t)`` and ``sqrt(1 - abar_t)``, broadcastable.
    """
    _check(prediction)
    if prediction == "eps":
        return eps
    return signal * eps - sigma * x0


def to_eps(
    prediction: str, output: torch.Tensor, x_t: torch.Tensor, abar: float | torch.Tensor
) -> torch.Tensor:
    """The noise the network ``output`` implies for state ``x_t`` at ``abar_t``.

    For an ``eps`` model the output itself (the very tensor, so published maths stay bitwise
    unchanged); for a ``v`` model ``sqrt(1 - abar) x_t + sqrt(abar) v``.
    """
    _check(prediction)
    if prediction == "eps":
        return output
    abar = torch.as_tensor(abar, dtype=torch.float64)
    signal, sigma = float(abar.sqrt()), float((1.0 - abar).sqrt())
    return sigma * x_t.to(output.dtype) + signal * output
