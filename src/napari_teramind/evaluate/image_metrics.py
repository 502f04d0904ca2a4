"""PSNR and SSIM with the published settings, masked to tissue, on the three published views.

Both metrics are scikit-image's (:func:`skimage.metrics.peak_signal_noise_ratio` and
:func:`skimage.metrics.structural_similarity`); this module only chooses the settings and the
pixels they are averaged over.

Published settings (METHOD.md section 5.3): data range 255; SSIM with an 11-tap Gaussian window
of sigma 1.5, K = (0.01, 0.03), population (not sample) covariance, a *valid* convolution (no
padding) and the mean of the SSIM map. scikit-image with ``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255`` uses a Gaussian truncated at 3.5 sigma, i.e. a
radius of 5 px and 11 taps, normalised to sum 1 like the published window. It filters with
``mode="reflect"`` and then averages the map with the 5-px border cropped away; the cropped
interior never touches the reflected border, so it is exactly the published valid convolution.
The remaining difference is arithmetic only (scikit-image computes in float64, the published
code in float32).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Value range of the images (uint8).
DATA_RANGE = 255.0
#: SSIM Gaussian sigma and the scikit-image truncation giving an 11-tap window.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K = (0.01, 0.03)
#: Pixels lost at each border by the valid 11-tap convolution.
SSIM_PAD = 5
#: Views evaluated (METHOD.md section 5.2): DAPI, PolyT and RGB = [0, DAPI, PolyT].
VIEWS = ("dapi", "polyt", "merged")


def view(images: np.ndarray, name: str) -> np.ndarray:
    """One evaluation view of ``(2, h, w)`` DAPI/PolyT images.

    Returns ``(h, w)`` for ``"dapi"`` and ``"polyt"`` and ``(h, w, 3)`` = ``[0, DAPI, PolyT]``
    for ``"merged"``.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] != 2:
        raise ValueError(f"images must be (2, h, w) [DAPI, PolyT], got {images.shape}")
    if name == "dapi":
        return images[0]
    if name == "polyt":
        return images[1]
    if name == "merged":
        return np.stack([np.zeros_like(images[0]), images[0], images[1]], axis=-1)
    raise ValueError(f"unknown view {name!r}; choose one of {VIEWS}")


def psnr(real: np.ndarray, generated: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR ``20 log10(255 / sqrt(MSE))`` over the pixels of ``mask`` (all when ``None``).

    Parameters
    ----------
    real, generated
        Images of equal shape ``(h, w)`` or ``(h, w, channels)`` on a 0..255 range.
    mask
        Boolean ``(h, w)``: the pixels to score. For multi-channel images every channel of a
        masked pixel is scored (the merged view's zero channel included, as published).

    Returns
    -------
    float
        PSNR in dB; ``inf`` for identical images, ``nan`` when the mask is empty.
    """
    from skimage.metrics import peak_signal_noise_ratio

    real, generated = _check_pair(real, generated, mask)
    if mask is not None:
        if not mask.any():
            return float("nan")
        real, generated = real[mask], generated[mask]
    if np.array_equal(real, generated):
        return float("inf")
    return float(peak_signal_noise_ratio(real, generated, data_range=DATA_RANGE))


def ssim_map(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """The SSIM map with the published settings (channel mean for multi-channel images).

    The map has the input's ``(h, w)`` shape; only ``[5:-5, 5:-5]`` (the valid convolution)
    is used for scores.
    """
    from skimage.metrics import structural_similarity

    real, generated = _check_pair(real, generated, None)
    if min(real.shape[:2]) < 2 * SSIM_PAD + 1:
        raise ValueError(f"SSIM needs images of at least 11 x 11 px, got {real.shape[:2]}")
    _, smap = structural_similarity(
        real.astype(np.float64),
        generated.astype(np.float64),
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        K1=SSIM_K[0],
        K2=SSIM_K[1],
        data_range=DATA_RANGE,
        channel_axis=-1 if real.ndim == 3 else None,
        full=True,
    )
    return smap.mean(axis=-1) if smap.ndim == 3 else smap


def ssim(real: np.ndarray, generated: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the valid interior, restricted to ``mask`` when given.

    Without a mask this is exactly scikit-image's ``structural_similarity`` with the published
    settings. With a mask, the SSIM map is averaged over the masked pixels of the valid
    interior (the window still sees the neighbouring background).

    Returns
    -------
    float
        Mean SSIM; ``nan`` when no masked pixel lies in the interior.
    """
    smap = ssim_map(real, generated)
    p = SSIM_PAD
    inner = smap[p:-p, p:-p]
    if mask is None:
        return float(inner.mean())
    m = np.asarray(mask, bool)[p:-p, p:-p]
    return float(inner[m].mean()) if m.any() else float("nan")


def image_metrics(
    real: np.ndarray,
    generated: np.ndarray,
    mask: np.ndarray | None = None,
    views: tuple[str, ...] = VIEWS,
    metrics: tuple[str, ...] = ("psnr", "ssim"),
) -> dict[str, float]:
    """PSNR and SSIM of every view of ``(2, h, w)`` image pairs, as ``{"psnr_dapi": ...}``."""
    fns: Mapping[str, object] = {"psnr": psnr, "ssim": ssim}
    out: dict[str, float] = {}
    for v in views:
        a, b = view(real, v), view(generated, v)
        for m in metrics:
            out[f"{m}_{v}"] = fns[m](a, b, mask)  # type: ignore[operator]
    return out


def _check_pair(real, generated, mask):
    real, generated = np.asarray(real), np.asarray(generated)
    if real.shape != generated.shape:
        raise ValueError(f"real and generated shapes differ: {real.shape} vs {generated.shape}")
    if mask is not None and np.shape(mask) != real.shape[:2]:
        raise ValueError(f"mask shape {np.shape(mask)} does not match images {real.shape[:2]}")
    return real, generated
