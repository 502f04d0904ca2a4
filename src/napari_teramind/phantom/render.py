"""Render any window of the phantom: DAPI, PolyT, region labels, gene counts and nuclei.

How appearance follows expression (so that a model can learn images from 16-px gene blocks):

* every cell is a nucleus (DAPI) of a cell type whose size, shape and brightness are typical of
  it (large pale dopaminergic nuclei, small dense granule and oligodendrocyte nuclei, elongated
  endothelial nuclei along the vessels);
* the cell's transcripts are spread around its nucleus (Gaussian, sigma grows with the nucleus)
  and counted per 16-px block; block counts are Poisson with mean the sum of the nuclei's
  expected contributions, which is the same law as sampling each transcript's position
  independently;
* PolyT is cytoplasmic: a halo around each nucleus whose brightness is proportional to the
  cell's expected transcript total, over a region-dependent neuropil level.

Every random value is a hash of global coordinates (see :mod:`.hashing`), so a window renders
bit-identically whatever the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from . import hashing
from .anatomy import VESSEL_HALF_WIDTH_PX, region_grid, vessel_grid
from .interactions import INTERACTION_GENES, block_rates
from .nuclei import CYTOPLASM_SCALE, nuclei_window, nucleus_gene_means
from .programs import REGIONS, VENTRICLE
from .spec import PhantomSpec

#: Halo (px) around a window in which nuclei still contribute to it.
MARGIN_PX = 32
#: Expected spurious transcripts per gene and 16-px block inside the tissue.
AMBIENT_PER_BLOCK = 0.02
#: PolyT brightness per expected transcript of a cell.
POLYT_PER_TRANSCRIPT = 2.4
_B = 16
_N_REG = max(REGIONS) + 1
_DAPI_BASE = np.array([REGIONS[i].dapi if i in REGIONS else 0 for i in range(_N_REG)], "f4")
_POLYT_BASE = np.array([REGIONS[i].polyt if i in REGIONS else 0 for i in range(_N_REG)], "f4")
_TISSUE = np.array([i not in (0, VENTRICLE) and i in REGIONS for i in range(_N_REG)])


@dataclass
class PhantomChunk:
    """One rendered window of one slice.

    Attributes
    ----------
    images
        ``(2, h, w)`` uint8: DAPI, PolyT.
    regions
        ``(h, w)`` uint16 region ids (0 = background).
    genes
        ``(G, h // 16, w // 16)`` uint16 transcript counts per 16-px block.
    nuclei
        Ground-truth nuclei whose centres lie in the window (:data:`.nuclei.NUCLEUS_DTYPE`).
    """

    images: np.ndarray
    regions: np.ndarray
    genes: np.ndarray
    nuclei: np.ndarray


def _check_window(spec: PhantomSpec, z: int, y0: int, x0: int, h: int, w: int) -> None:
    if not 0 <= z < spec.n_slices:
        raise ValueError(f"slice {z} outside 0..{spec.n_slices - 1}")
    for name, val in (("y0", y0), ("x0", x0), ("h", h), ("w", w)):
        if val % _B:
            raise ValueError(f"{name}={val} must be a multiple of the 16-px gene block")
    if h <= 0 or w <= 0:
        raise ValueError(f"window size must be positive, got {h} x {w}")


def _value_noise(seed: int, z: int, y0: int, x0: int, h: int, w: int, step: int) -> np.ndarray:
    """Bilinear value noise in [0, 1) on a global lattice of ``step`` px (chunk independent)."""
    ly0, lx0 = y0 // step, x0 // step
    ly1, lx1 = (y0 + h - 1) // step + 1, (x0 + w - 1) // step + 1
    lat = hashing.uniform(
        seed, z, 7, np.arange(ly0, ly1 + 1)[:, None], np.arange(lx0, lx1 + 1)[None, :]
    )
    fy = (np.arange(y0, y0 + h) - ly0 * step) / step
    fx = (np.arange(x0, x0 + w) - lx0 * step) / step
    iy, ix = fy.astype(np.int64), fx.astype(np.int64)
    ty, tx = (fy - iy)[:, None], (fx - ix)[None, :]
    rows = lat[iy] * (1 - ty) + lat[iy + 1] * ty
    return (rows[:, ix] * (1 - tx) + rows[:, ix + 1] * tx).astype(np.float32)


def _pixel_noise(seed: int, z: int, y0: int, x0: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    """Two independent zero-mean, unit-variance noise images (Irwin-Hall of 16-bit uniforms)."""
    hsh = hashing.hash_keys(
        seed, z, 11, np.arange(y0, y0 + h)[:, None], np.arange(x0, x0 + w)[None, :]
    )
    # the four 16-bit words of each hash, least significant first (a view, no shifts)
    words = hsh.astype("<u8", copy=False).view("<u2").reshape(h, w, 4)
    parts = [words[..., i].astype(np.float32) for i in range(4)]
    scale = np.float32(1.0 / 65535.0 * np.sqrt(6.0))  # sum of 2 U(0,1): variance 1/6
    return ((parts[0] + parts[1]) * scale - np.sqrt(6.0)).astype(np.float32), (
        (parts[2] + parts[3]) * scale - np.sqrt(6.0)
    ).astype(np.float32)


def _stamp_nuclei(
    nuc: np.ndarray, totals: np.ndarray, y0: int, x0: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Summed nucleus (DAPI) and cytoplasm (PolyT) intensities of ``nuc`` on the window."""
    dapi = np.zeros(h * w, dtype=np.float64)
    polyt = np.zeros(h * w, dtype=np.float64)
    if nuc.size == 0:
        return dapi.reshape(h, w), polyt.reshape(h, w)
    half = np.ceil(CYTOPLASM_SCALE * nuc["semi_major"].astype(np.float64)).astype(np.int64) + 1
    cyf = nuc["y"] - 0.5
    cxf = nuc["x"] - 0.5
    iy = np.floor(cyf).astype(np.int64)
    ix = np.floor(cxf).astype(np.int64)
    ca = np.cos(nuc["angle"])
    sa = np.sin(nuc["angle"])
    totals = totals.astype(np.float32)
    for r in np.unique(half):
        sel = np.flatnonzero(half == r)
        off = np.arange(-r, r + 2)
        py = iy[sel, None, None] + off[None, :, None]  # global pixel rows
        px = ix[sel, None, None] + off[None, None, :]
        dy = (py - cyf[sel, None, None]).astype(np.float32)
        dx = (px - cxf[sel, None, None]).astype(np.float32)
        p = (dx * ca[sel, None, None] + dy * sa[sel, None, None]) / nuc["semi_major"][
            sel, None, None
        ]
        q = (-dx * sa[sel, None, None] + dy * ca[sel, None, None]) / nuc["semi_minor"][
            sel, None, None
        ]
        rho2 = p * p + q * q
        rho = np.sqrt(rho2)
        edge = np.clip((1.0 - rho) * nuc["semi_minor"][sel, None, None] + 0.5, 0.0, 1.0)
        dval = nuc["brightness"][sel, None, None] * edge * (1.0 - 0.25 * np.minimum(rho2, 1.0))
        dval = dval.astype(np.float32)
        cyt = np.clip(1.0 - rho2 * np.float32(1 / CYTOPLASM_SCALE**2), 0.0, None)
        cyt *= cyt
        pval = (
            (np.float32(POLYT_PER_TRANSCRIPT) * totals[sel, None, None]) * cyt * (1.0 - 0.55 * edge)
        )
        ly = py - y0
        lx = px - x0
        ok = (ly >= 0) & (ly < h) & (lx >= 0) & (lx < w)
        ok = np.broadcast_to(ok, rho.shape)
        flat = np.broadcast_to(ly * w + lx, rho.shape)[ok]
        dapi += np.bincount(flat, weights=dval[ok], minlength=h * w)
        polyt += np.bincount(flat, weights=pval[ok], minlength=h * w)
    return dapi.reshape(h, w), polyt.reshape(h, w)


def _gene_counts(
    spec: PhantomSpec,
    z: int,
    nuc: np.ndarray,
    regions: np.ndarray,
    y0: int,
    x0: int,
    h: int,
    w: int,
) -> np.ndarray:
    """Poisson transcript counts per gene and 16-px block of the window."""
    g = len(spec.gene_names)
    hb, wb = h // _B, w // _B
    by0, bx0 = y0 // _B, x0 // _B
    lam = np.zeros((hb * wb, g), dtype=np.float64)
    if nuc.size:
        means = nucleus_gene_means(spec, nuc)  # (N, G)
        sigma = 0.8 * nuc["radius"].astype(np.float64) + 1.5
        bcy = np.floor(nuc["y"] / _B).astype(np.int64)
        bcx = np.floor(nuc["x"] / _B).astype(np.int64)
        ks = np.arange(-2, 3)
        edges = np.arange(-2, 4)
        wy = np.diff(
            ndtr(((bcy[:, None] + edges) * _B - nuc["y"][:, None]) / sigma[:, None]), axis=1
        )
        wx = np.diff(
            ndtr(((bcx[:, None] + edges) * _B - nuc["x"][:, None]) / sigma[:, None]), axis=1
        )
        nz_n, nz_g = np.nonzero(means)
        nz_v = means[nz_n, nz_g]
        for i, ky in enumerate(ks):
            lby = bcy[nz_n] + ky - by0
            for j, kx in enumerate(ks):
                lbx = bcx[nz_n] + kx - bx0
                ok = (lby >= 0) & (lby < hb) & (lbx >= 0) & (lbx < wb)
                if not ok.any():
                    continue
                idx = (lby[ok] * wb + lbx[ok]) * g + nz_g[ok]
                wt = nz_v[ok] * wy[nz_n[ok], i] * wx[nz_n[ok], j]
                lam.ravel()[:] += np.bincount(idx, weights=wt, minlength=hb * wb * g)
    centre = regions[_B // 2 :: _B, _B // 2 :: _B].ravel()
    lam += AMBIENT_PER_BLOCK * _TISSUE[centre][:, None]
    if spec.interactions and spec.interaction_expression == "tissue":
        cols = [spec.gene_names.index(gn) for gn in INTERACTION_GENES]
        gby, gbx = np.divmod(np.arange(hb * wb), wb)
        lam[:, cols] += block_rates(
            spec.seed, gby + by0, gbx + bx0, _TISSUE[centre], spec.interaction_high_fraction
        )
    lam = lam.reshape(hb, wb, g).transpose(2, 0, 1)
    u = hashing.uniform(
        spec.seed,
        z,
        13,
        np.arange(g)[:, None, None],
        np.arange(by0, by0 + hb)[None, :, None],
        np.arange(bx0, bx0 + wb)[None, None, :],
    )
    return np.minimum(hashing.poisson(lam, u), 65535).astype(np.uint16)


def render_chunk(spec: PhantomSpec, z: int, y0: int, x0: int, h: int, w: int) -> PhantomChunk:
    """Render the window ``[y0, y0+h) x [x0, x0+w)`` of slice ``z``.

    ``y0``, ``x0``, ``h`` and ``w`` must be multiples of 16 (the gene block). The window may
    extend beyond the canvas (the tissue never reaches the canvas edge).

    Returns
    -------
    PhantomChunk
        Images, region labels, gene counts and the ground-truth nuclei of the window.
    """
    _check_window(spec, z, y0, x0, h, w)
    regions = region_grid(spec, z, y0, x0, h, w)
    m = MARGIN_PX
    nuc_all = nuclei_window(spec, z, y0 - m, x0 - m, h + 2 * m, w + 2 * m)
    inside = (
        (nuc_all["y"] >= y0)
        & (nuc_all["y"] < y0 + h)
        & (nuc_all["x"] >= x0)
        & (nuc_all["x"] < x0 + w)
    )
    genes = _gene_counts(spec, z, nuc_all, regions, y0, x0, h, w)

    dapi_base = _DAPI_BASE[regions]
    polyt_base = _POLYT_BASE[regions]
    tissue = _TISSUE[regions]
    if tissue.any():
        d = vessel_grid(spec, z, y0, x0, h, w)
        lumen = np.clip((VESSEL_HALF_WIDTH_PX + 0.75 - d) / 1.5, 0.0, 1.0) * tissue
        dapi_base = dapi_base * (1.0 - 0.5 * lumen).astype(np.float32)
        polyt_base = polyt_base * (1.0 - 0.7 * lumen).astype(np.float32)
    nd, npt = _stamp_nuclei(nuc_all, nuc_all["transcripts"].astype(np.float64), y0, x0, h, w)
    tex = _value_noise(spec.seed, z, y0, x0, h, w, 3)
    n1, n2 = _pixel_noise(spec.seed, z, y0, x0, h, w)
    dapi = dapi_base + nd.astype(np.float32) * (0.75 + 0.5 * tex)
    polyt = polyt_base * (0.9 + 0.2 * tex) + npt.astype(np.float32)
    dapi = dapi + (1.2 + 0.03 * dapi) * n1
    polyt = polyt + (1.5 + 0.04 * polyt) * n2
    images = np.empty((2, h, w), dtype=np.uint8)
    images[0] = np.clip(np.rint(dapi), 0, 255)
    images[1] = np.clip(np.rint(polyt), 0, 255)
    return PhantomChunk(images=images, regions=regions, genes=genes, nuclei=nuc_all[inside])


def ground_truth_nuclei(spec: PhantomSpec, z: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Ground-truth nuclei of slice ``z`` whose centres lie in the window (any alignment).

    Returns
    -------
    numpy.ndarray
        Structured array with fields ``y, x`` (centre, global px), ``radius``, ``area_px``,
        ``region``, ``cell_type``, ``semi_major``, ``semi_minor``, ``angle``, ``brightness``,
        ``transcripts`` and a unique ``id``; ``pandas.DataFrame(table)`` makes it a frame.
    """
    if not 0 <= z < spec.n_slices:
        raise ValueError(f"slice {z} outside 0..{spec.n_slices - 1}")
    return nuclei_window(spec, z, y0, x0, h, w)
