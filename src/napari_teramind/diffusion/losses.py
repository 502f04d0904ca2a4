"""The two-path (collage + tile) training loss of Tera-MIND.

For an image crop ``x0`` ``(B, C, S, S)`` (``S = 256``) and its gene grid
``(B, G, Z, (S + P) / b, (S + P) / b)`` (20 x 20 blocks, i.e. the crop plus a half-patch
halo):

1. zero-pad ``x0`` by ``P / 2`` = 32 px; ``mask`` is 1 on the crop, 0 on the padding;
2. draw one timestep per sample and ``eps ~ N(0, I)`` over the padded tensor;
   ``x_t = (sqrt(abar) x0 + sqrt(1 - abar) eps) * mask``;
3. draw **one** window ``(ix, iy)`` in ``0..S/P - 1`` for the whole batch: the 2 x 2 block of
   patches ``[P ix, P ix + 2P) x [P iy, P iy + 2P)`` of the padded grid (5 x 5 patches), and cut
   ``x_t``, ``eps``, ``mask`` and the genes the same way;
4. run the model once with grid ``(B, 2, 2)`` and both decoders;
5. ``L_col = mean((eps_c - collage)^2)`` with ``eps_c`` the centred patch of the noise window,
   ``L_tile = mean(mask * (eps - tile)^2)`` (divided by all pixels, not the mask sum);
   the loss is their unweighted sum.

Optionally (``loss_weighting="min_snr"``, not in the published code) every sample's two MSEs
are weighted by its min-SNR-gamma weight (Hang et al. 2023, :func:`min_snr_weights`), which
evens out how much the timesteps pull on the network.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from napari_teramind.diffusion.parameterization import training_target
from napari_teramind.diffusion.schedule import NoiseSchedule

__all__ = [
    "LOSS_WEIGHTINGS",
    "collage_training_losses",
    "cut_window_patches",
    "min_snr_weights",
]

#: ``"none"``: the published unweighted MSE; ``"min_snr"``: min-SNR-gamma weights.
LOSS_WEIGHTINGS = ("none", "min_snr")


class _PatchGeometry(Protocol):
    patch_size: int
    gene_block_px: int


class _TrainableModel(Protocol):
    @property
    def config(self) -> _PatchGeometry: ...

    def __call__(
        self,
        x: torch.Tensor,
        genes: torch.Tensor,
        t: torch.Tensor,
        grid: tuple[int, int, int],
        decoders: tuple[str, ...] = ...,
    ) -> dict[str, torch.Tensor]: ...


def cut_window_patches(x: torch.Tensor, row: int, col: int, size: int) -> torch.Tensor:
    """Cut the 2 x 2 patches of side ``size`` starting at patch ``(row, col)``.

    Parameters
    ----------
    x
        ``(B, *C, H, W)`` maps on a grid of ``size`` px patches.
    row, col
        Top-left patch of the window.
    size
        Patch side in the units of ``x``.

    Returns
    -------
    torch.Tensor
        ``(4 B, *C, size, size)`` ordered sample, row, column.
    """
    window = x[..., row * size : (row + 2) * size, col * size : (col + 2) * size]
    b, middle = window.shape[0], window.shape[1:-2]
    k = len(middle)
    tiles = window.reshape(b, *middle, 2, size, 2, size)
    order = (0, 1 + k, 3 + k, *range(1, 1 + k), 2 + k, 4 + k)
    return tiles.permute(order).reshape(4 * b, *middle, size, size)


def min_snr_weights(snr: torch.Tensor, prediction: str, gamma: float = 5.0) -> torch.Tensor:
    """The min-SNR-gamma loss weight of every sample (Hang et al. 2023, eq. 11 and 12).

    The weight makes the MSE on the network's output equal ``min(SNR, gamma)`` times the MSE
    on ``x0`` it implies: with ``SNR = abar / (1 - abar)``,

    * ``x0`` prediction: ``min(SNR, gamma)``;
    * ``eps`` prediction (``|eps error|^2 = SNR |x0 error|^2``): ``min(SNR, gamma) / SNR``;
    * ``v`` prediction (``|v error|^2 = (SNR + 1) |x0 error|^2``):
      ``min(SNR, gamma) / (SNR + 1)``.

    Parameters
    ----------
    snr
        Signal-to-noise ratios ``abar_t / (1 - abar_t)``, any shape.
    prediction
        What the network predicts: ``"eps"``, ``"v"`` or ``"x0"``.
    gamma
        The clamp (the paper's default 5).

    Returns
    -------
    torch.Tensor
        The weights, shaped like ``snr``.
    """
    if not gamma > 0:
        raise ValueError(f"the min-SNR gamma must be positive, not {gamma}")
    clamped = torch.clamp(snr, max=gamma)
    if prediction == "eps":
        return clamped / snr
    if prediction == "v":
        return clamped / (snr + 1.0)
    if prediction == "x0":
        return clamped
    raise ValueError(f"prediction must be 'eps', 'v' or 'x0', not {prediction!r}")


def collage_training_losses(
    model: _TrainableModel,
    x0: torch.Tensor,
    genes: torch.Tensor,
    schedule: NoiseSchedule | None = None,
    generator: torch.Generator | None = None,
    loss_weighting: str = "none",
    snr_gamma: float = 5.0,
    pixel_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Compute the published training loss for one batch.

    The network is compared with the noise (published, ``eps`` models) or with the velocity
    (``v`` models, :func:`~napari_teramind.diffusion.parameterization.training_target`).

    Parameters
    ----------
    model
        A :class:`~napari_teramind.model.unet.TeraMindUNet` (or compatible callable with a
        ``config`` exposing ``patch_size`` and ``gene_block_px``).
    x0
        Clean images in ``[-1, 1]``, ``(B, C, S, S)`` with ``S`` a multiple of the patch size.
    genes
        Counts ``(B, G, Z, (S + P) / b, (S + P) / b)`` covering the crop plus a ``P / 2`` halo.
    schedule
        Noise schedule (default: the published linear schedule).
    generator
        Source of all randomness (timesteps, noise, window); its device is used for drawing.
    loss_weighting
        ``"none"`` (published: every sample's MSE counts alike) or ``"min_snr"`` (each
        sample's collage and tile MSE times :func:`min_snr_weights` of its timestep for the
        model's prediction type). The draws are the same either way.
    snr_gamma
        The min-SNR clamp ``gamma``.
    pixel_weight
        Optional ``(B, 1, S, S)`` loss weight of every crop pixel (not in the published code;
        :mod:`~napari_teramind.train.rarity`): each squared error is multiplied by its
        pixel's weight before the means, so weights of mean 1 keep the loss's scale. ``None``
        (the default) is the published loss, bit for bit; all-ones weights give the same
        value. The draws are the same either way.

    Returns
    -------
    dict of str to torch.Tensor
        ``loss`` (= ``collage + tile``), ``collage``, ``tile`` (weighted when
        ``loss_weighting`` says so), and the draws ``t`` ``(B,)`` and ``window`` ``(2,)`` for
        logging.
    """
    if loss_weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, not {loss_weighting!r}")
    schedule = NoiseSchedule.linear() if schedule is None else schedule
    cfg = model.config
    patch, block = int(cfg.patch_size), int(cfg.gene_block_px)
    b, _, h, w = x0.shape
    if h % patch or w % patch:
        raise ValueError(f"crop {h} x {w} is not a multiple of the patch size {patch}")
    gene_side = (h + patch) // block, (w + patch) // block
    if tuple(genes.shape[-2:]) != gene_side or genes.shape[0] != b:
        raise ValueError(
            f"genes must be (B, G, Z, {gene_side[0]}, {gene_side[1]}), got {tuple(genes.shape)}"
        )
    half = patch // 2
    x0_pad = F.pad(x0, (half, half, half, half))
    mask = torch.zeros_like(x0_pad[:1, :1])
    mask[..., half : half + h, half : half + w] = 1.0

    device = generator.device if generator is not None else x0.device
    t = torch.randint(0, schedule.num_timesteps, (b,), generator=generator, device=device)
    eps = torch.randn(x0_pad.shape, generator=generator, device=device).to(x0.device, x0.dtype)
    ix = int(torch.randint(0, h // patch, (1,), generator=generator, device=device))
    iy = int(torch.randint(0, w // patch, (1,), generator=generator, device=device))
    t = t.to(x0.device)

    x_t = schedule.q_sample(x0_pad, t, eps) * mask
    signal, sigma = schedule.coefficients(t, x0.dtype, x0.device)
    target = training_target(getattr(cfg, "prediction", "eps"), x0_pad, eps, signal, sigma)
    x_tiles = cut_window_patches(x_t, ix, iy, patch)
    target_tiles = cut_window_patches(target, ix, iy, patch)
    mask_tiles = cut_window_patches(mask.expand(b, 1, -1, -1), ix, iy, patch)
    gene_patches = patch // block
    gene_tiles = cut_window_patches(genes, ix, iy, gene_patches)
    target_window = target[..., ix * patch : (ix + 2) * patch, iy * patch : (iy + 2) * patch]
    target_centre = target_window[..., half : half + patch, half : half + patch]

    out = model(x_tiles, gene_tiles, t, (b, 2, 2), decoders=("collage", "tile"))
    err_collage = (target_centre - out["collage"].float()).pow(2)
    err_tile = mask_tiles * (target_tiles - out["tile"].float()).pow(2)
    if pixel_weight is not None:
        if tuple(pixel_weight.shape) != (b, 1, h, w):
            raise ValueError(
                f"pixel_weight must be ({b}, 1, {h}, {w}), got {tuple(pixel_weight.shape)}"
            )
        wpad = F.pad(pixel_weight.to(x0.device, torch.float32), (half, half, half, half))
        w_window = wpad[..., ix * patch : (ix + 2) * patch, iy * patch : (iy + 2) * patch]
        err_collage = err_collage * w_window[..., half : half + patch, half : half + patch]
        err_tile = err_tile * cut_window_patches(wpad, ix, iy, patch)
    if loss_weighting == "none":  # the published loss, bit for bit (without pixel weights)
        loss_collage = err_collage.mean()
        loss_tile = err_tile.mean()
    else:
        abar = schedule.alphas_cumprod[t.to("cpu").long()]
        snr = abar / (1.0 - abar)
        prediction = getattr(cfg, "prediction", "eps")
        weight = min_snr_weights(snr, prediction, snr_gamma).to(x0.device, torch.float32)
        # Per-sample MSEs (tiles are ordered sample, row, column: 4 per sample), weighted,
        # then averaged: with all weights 1 this is the unweighted loss.
        col = err_collage.flatten(1).mean(1)
        tile = err_tile.flatten(1).mean(1)
        loss_collage = (weight * col).mean()
        loss_tile = (weight * tile.reshape(b, 4).mean(1)).mean()
    return {
        "loss": loss_collage + loss_tile,
        "collage": loss_collage,
        "tile": loss_tile,
        "t": t,
        "window": torch.tensor([ix, iy]),
    }
