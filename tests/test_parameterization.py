"""eps and v parameterisations: conversions, the training target, generation with a v model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_teramind.diffusion import (
    NoiseSchedule,
    collage_training_losses,
    cut_window_patches,
    min_snr_weights,
    to_eps,
    training_target,
)
from napari_teramind.model import ModelConfig


def test_v_target_converts_back_to_the_noise():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 4, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(3, 4, 8, 8, generator=gen, dtype=torch.float64).float()
    sched = NoiseSchedule.linear()
    for t in (0, 400, 999):
        abar = sched.alphas_cumprod[t]
        signal, sigma = float(abar.sqrt()), float((1 - abar).sqrt())
        x_t = signal * x0 + sigma * eps
        v = training_target("v", x0, eps, signal, sigma)
        torch.testing.assert_close(to_eps("v", v, x_t, abar), eps, atol=1e-5, rtol=0)
        # near pure noise v is (minus) the image itself: the network predicts the picture
        if t == 999:
            torch.testing.assert_close(v, -x0, atol=0.02, rtol=0)
    out = torch.randn(2, 3)
    assert to_eps("eps", out, torch.zeros(2, 3), 0.5) is out  # published maths untouched
    assert training_target("eps", x0, eps, 0.3, 0.7) is eps
    with pytest.raises(ValueError, match="prediction must be one of"):
        to_eps("x0", out, out, 0.5)
    with pytest.raises(ValueError, match="prediction must be 'eps' or 'v'"):
        ModelConfig(n_genes=3, prediction="score")


class _Zero(nn.Module):
    """A network that always answers zero: its loss is the mean square of the target."""

    def __init__(self, prediction: str) -> None:
        super().__init__()
        self.config = ModelConfig.preset("tiny", 4).replace(prediction=prediction)

    def forward(self, x, genes, t, grid, decoders):
        b = grid[0]
        return {"collage": torch.zeros(b, 4, 64, 64), "tile": torch.zeros_like(x)}


def test_v_model_is_trained_on_the_velocity():
    """Same draws, zero output: the collage loss is the mean square of eps, or of v."""
    gen_x = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 4, 128, 128, generator=gen_x) * 2 - 1
    genes = torch.zeros(2, 4, 4, 12, 12)
    losses = {}
    for prediction in ("eps", "v"):
        out = collage_training_losses(
            _Zero(prediction), x0, genes, generator=torch.Generator().manual_seed(5)
        )
        losses[prediction] = out
    # redraw the same noise as the loss did (t, then eps, then the window)
    gen = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (2,), generator=gen)
    x0_pad = torch.nn.functional.pad(x0, (32,) * 4)
    eps = torch.randn(x0_pad.shape, generator=gen)
    ix, iy = (int(v) for v in losses["v"]["window"])
    assert torch.equal(t, losses["v"]["t"])
    signal, sigma = NoiseSchedule.linear().coefficients(t, x0.dtype, x0.device)
    v = signal * eps - sigma * x0_pad

    def centre(a):
        return a[..., ix * 64 + 32 : ix * 64 + 96, iy * 64 + 32 : iy * 64 + 96]

    torch.testing.assert_close(losses["eps"]["collage"], centre(eps).pow(2).mean())
    torch.testing.assert_close(losses["v"]["collage"], centre(v).pow(2).mean())
    assert cut_window_patches(v, ix, iy, 64).shape == (2 * 4, 4, 64, 64)


def test_min_snr_weights_match_the_paper():
    """Hang et al. 2023: x0 min(SNR, g); eps min(SNR, g) / SNR; v min(SNR, g) / (SNR + 1)."""
    snr = torch.tensor([0.01, 1.0, 5.0, 100.0], dtype=torch.float64)
    expect = {
        "x0": [0.01, 1.0, 5.0, 5.0],
        "eps": [1.0, 1.0, 1.0, 0.05],
        "v": [0.01 / 1.01, 0.5, 5.0 / 6.0, 5.0 / 101.0],
    }
    for prediction, weights in expect.items():
        got = min_snr_weights(snr, prediction, gamma=5.0)
        torch.testing.assert_close(got, torch.tensor(weights, dtype=torch.float64))
    torch.testing.assert_close(
        min_snr_weights(snr, "v", gamma=1.0),
        torch.tensor([0.01 / 1.01, 0.5, 1 / 6, 1 / 101], dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="prediction must be 'eps', 'v' or 'x0'"):
        min_snr_weights(snr, "score")
    with pytest.raises(ValueError, match="gamma must be positive"):
        min_snr_weights(snr, "v", gamma=0)


def test_min_snr_loss_weights_every_sample_by_its_timestep():
    """Same draws, zero output: each sample's collage and tile MSE times its hand weight."""
    gen_x = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 4, 128, 128, generator=gen_x) * 2 - 1
    genes = torch.zeros(3, 4, 4, 12, 12)
    # abar by hand: the published linear betas 1e-4 .. 0.02 over 1000 steps
    abar_all = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    for prediction in ("eps", "v"):
        plain = collage_training_losses(
            _Zero(prediction), x0, genes, generator=torch.Generator().manual_seed(7)
        )
        weighted = collage_training_losses(
            _Zero(prediction),
            x0,
            genes,
            generator=torch.Generator().manual_seed(7),
            loss_weighting="min_snr",
            snr_gamma=5.0,
        )
        assert torch.equal(plain["t"], weighted["t"]) and torch.equal(
            plain["window"], weighted["window"]
        )  # the same draws
        abar = abar_all[plain["t"].numpy()]
        snr = abar / (1 - abar)
        w = np.minimum(snr, 5.0) / (snr if prediction == "eps" else snr + 1.0)
        # redraw the targets as the loss did (t, then eps, then the window)
        gen = torch.Generator().manual_seed(7)
        t = torch.randint(0, 1000, (3,), generator=gen)
        x0_pad = torch.nn.functional.pad(x0, (32,) * 4)
        eps = torch.randn(x0_pad.shape, generator=gen)
        ix, iy = (int(v) for v in plain["window"])
        signal, sigma = NoiseSchedule.linear().coefficients(t, x0.dtype, x0.device)
        target = eps if prediction == "eps" else signal * eps - sigma * x0_pad
        mask = torch.zeros(1, 1, 192, 192)
        mask[..., 32:160, 32:160] = 1
        window = (mask * target)[..., ix * 64 : ix * 64 + 128, iy * 64 : iy * 64 + 128]
        centre = target[..., ix * 64 + 32 : ix * 64 + 96, iy * 64 + 32 : iy * 64 + 96]
        col = centre.pow(2).flatten(1).mean(1).double().numpy()
        tile = window.pow(2).flatten(1).mean(1).double().numpy()
        np.testing.assert_allclose(float(weighted["collage"]), (w * col).mean(), rtol=1e-5)
        np.testing.assert_allclose(float(weighted["tile"]), (w * tile).mean(), rtol=1e-5)
        np.testing.assert_allclose(float(plain["collage"]), col.mean(), rtol=1e-5)
        assert torch.equal(weighted["loss"], weighted["collage"] + weighted["tile"])
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        collage_training_losses(_Zero("v"), x0, genes, loss_weighting="snr")
