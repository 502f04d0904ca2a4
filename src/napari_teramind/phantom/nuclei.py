"""Nuclei of the phantom, placed deterministically on a global grid.

Each 8 x 8 px cell ``(gy, gx)`` of slice ``z`` holds at most one candidate nucleus. Whether it
exists, where it sits in the cell, its cell type, size, shape and brightness are hashes of
``(seed, z, gy, gx)`` and of the region at its centre, so any window renders the same nuclei
whatever the chunking. Candidates then go through a hard-core thinning (a candidate is dropped
when a neighbour within two cells with a higher priority overlaps it too much), which also only
depends on the candidates themselves.
"""

from __future__ import annotations

import numpy as np

from . import hashing
from .anatomy import VESSEL_HALF_WIDTH_PX, region_at, vessel_field
from .interactions import (
    INTERACTION_GENES,
    high_states,
    interaction_means,
    phenotype_factors,
    planted_genes,
)
from .programs import (
    ASTROCYTE,
    CELL_TYPES,
    ENDOTHELIAL,
    PERIVASCULAR_ASTROCYTE,
    REGIONS,
    VENTRICLE,
    region_mixture_matrix,
    type_gene_means,
)
from .spec import PhantomSpec

#: Edge of the nucleus grid cell in pixels (at most one nucleus per cell).
CELL_PX = 8
#: Overlap allowed between two nuclei, as a fraction of the sum of their radii.
MIN_SEPARATION = 0.8
#: Cytoplasm (PolyT) extent as a multiple of the nucleus semi-axes.
CYTOPLASM_SCALE = 1.7

#: Columns of a nucleus table (a numpy structured array).
NUCLEUS_DTYPE = np.dtype(
    [
        ("id", "i8"),  # (z << 40) | (gy << 20) | gx: unique per nucleus
        ("z", "i4"),
        ("y", "f8"),  # centre, global pixel coordinates (pixel centres at i + 0.5)
        ("x", "f8"),
        ("radius", "f4"),  # equivalent-circle radius in px
        ("semi_major", "f4"),
        ("semi_minor", "f4"),
        ("angle", "f4"),  # of the major axis, radians from +x towards +y
        ("area_px", "f4"),  # pi * semi_major * semi_minor
        ("region", "u2"),
        ("cell_type", "u2"),
        ("brightness", "f4"),  # DAPI peak, 0..255 before texture and noise
        ("transcripts", "f4"),  # expected transcripts of the cell, all genes of the panel
    ]
)

_S_ACCEPT, _S_JY, _S_JX, _S_TYPE, _S_R, _S_ASP, _S_ANG, _S_B, _S_PRI, _S_VES = range(10)

_DENSITY = np.array([REGIONS[i].density if i in REGIONS else 0.0 for i in range(max(REGIONS) + 1)])
_CUM_MIX = np.cumsum(region_mixture_matrix(), axis=1)
_TYPE_R = np.array([c.radius_px for c in CELL_TYPES])
_TYPE_ASP = np.array([c.aspect for c in CELL_TYPES])
_TYPE_B = np.array([c.brightness for c in CELL_TYPES])


def _candidates(spec: PhantomSpec, z: int, gy: np.ndarray, gx: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate nuclei of the cells ``gy x gx`` (1-D ranges) as 2-D arrays."""
    GY, GX = np.meshgrid(gy, gx, indexing="ij")
    seed = spec.seed
    # row and column keys broadcast: the hash mixes the row keys once per row (same values)
    ky, kx = gy[:, None], gx[None, :]
    u = {s: hashing.uniform(seed, z, ky, kx, s) for s in (_S_ACCEPT, _S_JY, _S_JX)}
    cy = (GY + 0.5 + 0.8 * (u[_S_JY] - 0.5)) * CELL_PX
    cx = (GX + 0.5 + 0.8 * (u[_S_JX] - 0.5)) * CELL_PX
    region = region_at(spec, z, cy, cx)
    tissue = (region != 0) & (region != VENTRICLE)
    acc = u[_S_ACCEPT] < _DENSITY[region]
    ctype = np.zeros(GY.shape, dtype=np.int64)
    angle = np.zeros(GY.shape)
    # vessels: endothelial cells line them (extra candidates), astrocytes nearby become
    # perivascular (Aqp4-rich); only evaluated where a nucleus may exist
    idx = np.nonzero(tissue)
    if idx[0].size:
        d, ty, tx = vessel_field(spec, z, cy[idx], cx[idx])
        uv = hashing.uniform(seed, z, GY[idx], GX[idx], _S_VES)
        endo = (d < VESSEL_HALF_WIDTH_PX + 1.8) & (uv < 0.55)
        acc[idx] |= endo
        ut = hashing.uniform(seed, z, GY[idx], GX[idx], _S_TYPE)
        t = (ut[:, None] >= _CUM_MIX[region[idx]]).sum(axis=1)
        t = np.minimum(t, len(CELL_TYPES) - 1)
        t = np.where((t == ASTROCYTE) & (d < 10.0), PERIVASCULAR_ASTROCYTE, t)
        t = np.where(endo, ENDOTHELIAL, t)
        ctype[idx] = t
        angle[idx] = np.where(endo, np.arctan2(ty, tx), 0.0)
    acc &= tissue
    ua = hashing.uniform(seed, z, ky, kx, _S_ANG)
    angle = np.where(ctype == ENDOTHELIAL, angle, ua * np.pi)
    r = _TYPE_R[ctype] * np.exp(0.12 * hashing.normal(seed, z, ky, kx, _S_R))
    aspect = 1.0 + (_TYPE_ASP[ctype] - 1.0) * (0.6 + 0.8 * hashing.uniform(seed, z, ky, kx, _S_ASP))
    bright = _TYPE_B[ctype] * (0.85 + 0.3 * hashing.uniform(seed, z, ky, kx, _S_B))
    pri = hashing.uniform(seed, z, ky, kx, _S_PRI)
    if spec.interactions:  # planted gene-gene interactions change size and brightness
        rf, bf, _ = _interaction_terms(spec, cy, cx, region, ctype)
        r = r * rf
        bright = bright * bf
    return {
        "gy": GY, "gx": GX, "y": cy, "x": cx, "acc": acc, "region": region,
        "type": ctype, "r": r, "aspect": aspect, "angle": angle, "bright": bright, "pri": pri,
    }  # fmt: skip


def nuclei_window(
    spec: PhantomSpec, z: int, y0: float, x0: float, h: float, w: float
) -> np.ndarray:
    """All nuclei of slice ``z`` whose centres lie in ``[y0, y0+h) x [x0, x0+w)``.

    Returns
    -------
    numpy.ndarray
        A structured array of :data:`NUCLEUS_DTYPE`, in row-major cell order.
    """
    k = 2  # thinning looks two cells away
    gy0, gy1 = int(np.floor(y0 / CELL_PX)), int(np.ceil((y0 + h) / CELL_PX))
    gx0, gx1 = int(np.floor(x0 / CELL_PX)), int(np.ceil((x0 + w) / CELL_PX))
    c = _candidates(
        spec,
        z,
        np.arange(gy0 - k, gy1 + k, dtype=np.int64),
        np.arange(gx0 - k, gx1 + k, dtype=np.int64),
    )
    acc = c["acc"]
    ny, nx = acc.shape
    keep = acc[k : ny - k, k : nx - k].copy()
    inner = (slice(k, ny - k), slice(k, nx - k))
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            if dy == 0 and dx == 0:
                continue
            nb = (slice(k + dy, ny - k + dy), slice(k + dx, nx - k + dx))
            dist = np.hypot(c["y"][inner] - c["y"][nb], c["x"][inner] - c["x"][nb])
            clash = (
                acc[nb]
                & (c["pri"][nb] > c["pri"][inner])
                & (dist < MIN_SEPARATION * (c["r"][inner] + c["r"][nb]))
            )
            keep &= ~clash
    sel = {key: v[inner][keep] for key, v in c.items()}
    inside = (sel["y"] >= y0) & (sel["y"] < y0 + h) & (sel["x"] >= x0) & (sel["x"] < x0 + w)
    sel = {key: v[inside] for key, v in sel.items()}
    n = sel["y"].size
    out = np.zeros(n, dtype=NUCLEUS_DTYPE)
    sq = np.sqrt(sel["aspect"])
    out["id"] = (
        (np.int64(z) << 40) | (sel["gy"].astype(np.int64) << 20) | sel["gx"].astype(np.int64)
    )
    out["z"] = z
    out["y"] = sel["y"]
    out["x"] = sel["x"]
    out["radius"] = sel["r"]
    out["semi_major"] = sel["r"] * sq
    out["semi_minor"] = sel["r"] / sq
    out["angle"] = sel["angle"]
    out["area_px"] = np.pi * sel["r"] ** 2
    out["region"] = sel["region"]
    out["cell_type"] = sel["type"]
    out["brightness"] = sel["bright"]
    out["transcripts"] = (
        nucleus_gene_means(spec, out).sum(axis=1)
        if spec.interactions
        else (
            type_gene_means(spec.program_genes)[sel["type"]].sum(axis=1)
            * (sel["r"] / _TYPE_R[sel["type"]]) ** 2
        )
    )
    return out


def _interaction_terms(
    spec: PhantomSpec, y: np.ndarray, x: np.ndarray, region: np.ndarray, ctype: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius and brightness factors and interaction-gene means of nuclei at ``(y, x)``.

    Only non-endothelial tissue nuclei take part (see :mod:`.interactions`).
    """
    eligible = (region != 0) & (region != VENTRICLE) & (ctype != ENDOTHELIAL)
    states = high_states(spec.seed, y, x, spec.interaction_high_fraction)
    rf, bf = phenotype_factors(states)
    return (
        np.where(eligible, rf, 1.0),
        np.where(eligible, bf, 1.0),
        interaction_means(states, eligible),
    )


def nucleus_gene_means(spec: PhantomSpec, nuclei: np.ndarray) -> np.ndarray:
    """Expected transcripts of every gene for each nucleus, ``(n_nuclei, n_genes)``.

    The cell type's program scaled by the cell's size (``(radius / type radius) ** 2``). In an
    interaction phantom the size is that of the cell before its phenotype (so the phenotype
    changes no counts), and the interaction genes follow their fields (with
    ``interaction_expression="tissue"`` they have no per-nucleus part).
    """
    t = nuclei["cell_type"].astype(np.int64)
    if not spec.interactions:
        means = type_gene_means(spec.gene_names)
        size = (nuclei["radius"].astype(np.float64) / _TYPE_R[t]) ** 2
        return means[t] * size[:, None]
    planted = planted_genes(spec)
    rf, _, extra = _interaction_terms(
        spec, nuclei["y"], nuclei["x"], nuclei["region"].astype(np.int64), t
    )
    size = (nuclei["radius"].astype(np.float64) / rf / _TYPE_R[t]) ** 2
    means = type_gene_means(spec.gene_names, planted)[t].copy()
    if spec.interaction_expression == "nucleus":  # else per tissue block (render._gene_counts)
        cols = [spec.gene_names.index(g) for g in INTERACTION_GENES]
        means[:, cols] += extra
    return means * size[:, None]
