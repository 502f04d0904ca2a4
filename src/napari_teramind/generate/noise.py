"""Initial noise as a pure function of (seed, slice, global patch position).

Every 64 px patch of every slice on the store's global patch grid gets its own generator,
seeded from a BLAKE2b hash of ``(seed, slice, y, x)`` (the patch corner in store px). The
noise of any window is assembled from the patches it touches, so it never depends on the
block size, the block order or the worker that computes it, and two regions that overlap
see the same noise in the overlap when their origins agree modulo 64 px.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from napari_teramind.generate.plan import PATCH_PX, GenerationPlan

__all__ = ["initial_state", "noise_seed", "patch_noise"]

STAINS = 2


def noise_seed(seed: int, z: int, y: int, x: int) -> int:
    """63-bit generator seed of the patch with corner ``(y, x)`` (store px) on slice ``z``."""
    digest = hashlib.blake2b(
        struct.pack("<4q", int(seed), int(z), int(y), int(x)),
        digest_size=8,
        person=b"teramind-noise",
    ).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def patch_noise(seed: int, z: int, y: int, x: int, patch: int = PATCH_PX) -> np.ndarray:
    """Standard normal noise ``(2, patch, patch)`` float32 (DAPI, PolyT) of one patch."""
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(noise_seed(seed, z, y, x))
    return torch.randn((STAINS, patch, patch), generator=gen, dtype=torch.float32).numpy()


def initial_state(
    plan: GenerationPlan, pair: int, y0: int, y1: int, x0: int, x1: int
) -> np.ndarray:
    """Initial state ``x_T`` of a window of one slice group (a pair for 4-slice models).

    Parameters
    ----------
    plan
        The generation plan.
    pair
        Group index into ``plan.pairs``.
    y0, y1, x0, x1
        Window relative to the region origin; it may reach outside the region, where the
        state is zero (the halo rule).

    Returns
    -------
    np.ndarray
        ``(2 D, y1 - y0, x1 - x0)`` float32 in model channel order (stain, slice), e.g.
        ``[DAPI 2k, DAPI 2k+1, PolyT 2k, PolyT 2k+1]`` for pairs. Each slice's noise depends
        on the slice only, not on the scheme.
    """
    out = np.zeros((plan.channels, y1 - y0, x1 - x0), dtype=np.float32)
    cy0, cy1 = max(y0, 0), min(y1, plan.height)
    cx0, cx1 = max(x0, 0), min(x1, plan.width)
    if cy0 >= cy1 or cx0 >= cx1:
        return out
    ry, rx = plan.region[0], plan.region[2]
    for d, z in enumerate(plan.pair_slices(pair)):
        for py in range(cy0 // PATCH_PX * PATCH_PX, cy1, PATCH_PX):
            for px in range(cx0 // PATCH_PX * PATCH_PX, cx1, PATCH_PX):
                noise = patch_noise(plan.seed, z, ry + py, rx + px)
                sy0, sy1 = max(cy0, py), min(cy1, py + PATCH_PX)
                sx0, sx1 = max(cx0, px), min(cx1, px + PATCH_PX)
                out[plan.stain_channels(d), sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = noise[
                    :, sy0 - py : sy1 - py, sx0 - px : sx1 - px
                ]
    return out
