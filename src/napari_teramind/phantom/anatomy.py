"""Anatomy of the phantom: region labels and vessels as functions of continuous (z, y, x).

The section is a stylised coronal section of a mouse brain, bilaterally symmetric up to a
seeded smooth wobble: a layered cortex (L1, L2/3, L4, L5, L6) over white matter, the hippocampus
(CA and dentate gyrus arcs with their strata), the striatum laterally, the lateral and third
ventricles, the thalamus across the midline, the midbrain ventrally with the SN/VTA, and two
olfactory bulbs below. To keep every structure in every section (so that any slice can be used
to test attention maps), the section is a *composite*: sizes change smoothly along z (striatum
and olfactory bulb shrink, hippocampus and SN/VTA grow from anterior to posterior over 10 mm)
instead of structures appearing and disappearing.

All functions take *global* pixel coordinates (pixel centres at ``i + 0.5``) and the slice
index, so any region of any section is computed identically whatever the chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .programs import REGION_IDS, VENTRICLE
from .spec import PhantomSpec

_R = REGION_IDS
#: Length of the anterior-posterior axis over which the anatomy morphs, in micrometres.
AP_LENGTH_UM = 10_000.0
#: Half-width of vessel lumens in pixels.
VESSEL_HALF_WIDTH_PX = 2.2
#: Lattice step (px) on which labels are first evaluated (mixed lattice cells are refined).
LABEL_LATTICE_PX = 8


@dataclass(frozen=True)
class _Waves:
    """Random plane waves (seeded) for boundary wobble and vessels."""

    ku: np.ndarray
    kv: np.ndarray
    kz: np.ndarray
    phase: np.ndarray


@lru_cache(maxsize=64)
def _wobble(seed: int) -> tuple[_Waves, _Waves]:
    rng = np.random.default_rng([int(seed), 0xA11A])
    out = []
    for _ in range(2):
        n = 4
        k = rng.uniform(3.0, 9.0, n) * rng.choice([-1.0, 1.0], n)
        ang = rng.uniform(0, np.pi, n)
        out.append(
            _Waves(
                ku=k * np.cos(ang),
                kv=k * np.sin(ang),
                kz=rng.uniform(0.2, 0.6, n) * rng.choice([-1.0, 1.0], n),  # rad per mm
                phase=rng.uniform(0, 2 * np.pi, n),
            )
        )
    return out[0], out[1]


@lru_cache(maxsize=64)
def _vessel_waves(seed: int) -> _Waves:
    rng = np.random.default_rng([int(seed), 0xB100D])
    n = 6
    lam = rng.uniform(260.0, 700.0, n)  # wavelength in px
    ang = rng.uniform(0, np.pi, n)
    k = 2 * np.pi / lam
    return _Waves(
        ku=k * np.cos(ang),  # rad per px along x
        kv=k * np.sin(ang),  # rad per px along y
        kz=rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n),  # rad per mm
        phase=rng.uniform(0, 2 * np.pi, n),
    )


def _frame(spec: PhantomSpec) -> tuple[float, float, float]:
    """Section frame: the section height ``S`` in px and the canvas centre."""
    s = min(spec.height, spec.width / 1.5)
    return s, spec.height / 2.0, spec.width / 2.0


def z_mm(spec: PhantomSpec, z: float) -> float:
    """Position of slice ``z`` along the stack in millimetres."""
    return float(z) * spec.slice_spacing_um / 1000.0


def _morph(spec: PhantomSpec, z: float) -> float:
    """Smooth anterior (0) to posterior (1) morph parameter."""
    t = min(max(z_mm(spec, z) * 1000.0 / AP_LENGTH_UM, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _lerp(a: float, b: float, s: float) -> float:
    return a + (b - a) * s


def _ell(a, v, ca, cv, ra, rv, angle: float = 0.0):
    """Elliptical radius (1 on the boundary) of points (a, v) for an ellipse."""
    da, dv = a - ca, v - cv
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        da, dv = c * da + s * dv, -s * da + c * dv
    return np.sqrt((da / ra) ** 2 + (dv / rv) ** 2)


def _superell(a, v, cv, ra, rv, p: float = 2.4):
    return ((np.abs(a) / ra) ** p + (np.abs(v - cv) / rv) ** p) ** (1.0 / p)


def normalized_coords(
    spec: PhantomSpec, z: float, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warped section coordinates ``(u, v)``: ``u`` lateral (-1..1), ``v`` dorsal-ventral (0..1)."""
    s, cy, cx = _frame(spec)
    u = (np.asarray(x, dtype=np.float64) - cx) / (0.75 * s)
    v = (np.asarray(y, dtype=np.float64) - cy) / s + 0.5
    wu, wv = _wobble(spec.seed)
    zm = z_mm(spec, z)
    du = np.zeros(np.broadcast_shapes(u.shape, v.shape))
    dv = np.zeros_like(du)
    for i in range(len(wu.ku)):
        du += np.sin(wu.ku[i] * u + wu.kv[i] * v + (wu.kz[i] * zm + wu.phase[i]))
        dv += np.sin(wv.ku[i] * u + wv.kv[i] * v + (wv.kz[i] * zm + wv.phase[i]))
    return u + 0.006 * du, v + 0.006 * dv


def region_at(spec: PhantomSpec, z: float, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Region id (uint16) at global pixel coordinates ``(y, x)`` of slice ``z``.

    ``y`` and ``x`` are broadcast; use pixel centres (``i + 0.5``) for pixel labels.
    """
    u, v = normalized_coords(spec, z, y, x)
    a = np.abs(u)
    m = _morph(spec, z)
    out = np.zeros(u.shape, dtype=np.uint16)

    # outline: main body (superellipse) and olfactory bulbs below
    body_a, body_v, body_cv = 0.9 * _lerp(0.96, 1.0, m), 0.38 * _lerp(0.97, 1.0, m), 0.44
    r_out = _superell(a, v, body_cv, body_a, body_v)
    ob = _lerp(1.15, 0.75, m)
    q_ob = _ell(a, v, 0.45, 0.83, 0.19 * ob, 0.08 * ob)
    ob_in = q_ob < 1.0
    t_ctx, t_wm = 0.105, 0.024
    r_in = _superell(a, v, body_cv, body_a - t_ctx / 0.75, body_v - t_ctx)
    r_wm = _superell(a, v, body_cv, body_a - (t_ctx + t_wm) / 0.75, body_v - t_ctx - t_wm)
    body = r_out < 1.0
    fissure = (a < 0.008) & (r_in >= 1.0) & (v < body_cv)
    ventral_medial = (v - 0.56) > 0.9 * (a - 0.3)
    cortex = body & (r_in >= 1.0) & ~fissure & ~ventral_medial
    wm = body & (r_in < 1.0) & (r_wm >= 1.0) & ~ventral_medial
    deep = body & ~cortex & ~wm & ~fissure

    # cortical layers by relative depth between the outer and inner surfaces
    d1 = np.maximum(1.0 - r_out, 0.0)
    d2 = np.maximum(r_in - 1.0, 0.0)
    depth = d1 / np.maximum(d1 + d2, 1e-9)
    layer = np.select(
        [depth < 0.1, depth < 0.36, depth < 0.5, depth < 0.72],
        [_R["cortex L1"], _R["cortex L2/3"], _R["cortex L4"], _R["cortex L5"]],
        _R["cortex L6"],
    ).astype(np.uint16)
    out[cortex] = layer[cortex]
    out[wm] = _R["white matter"]

    # deep structures, first match wins
    hs = _lerp(0.85, 1.15, m)
    ss = _lerp(1.12, 0.8, m)
    ts = _lerp(0.92, 1.08, m)
    ms = _lerp(0.9, 1.1, m)
    ns = _lerp(0.8, 1.2, m)
    vs = _lerp(1.15, 0.8, m)
    lv = _ell(a, v, 0.44, 0.27, 0.11 * vs, 0.02 * vs, angle=-0.5) < 1.0
    v3 = (a < 0.01 * vs) & (v > 0.47) & (v < 0.66)
    qh = _ell(a, v, 0.22, 0.31, 0.2 * hs, 0.115 * hs)
    hip = (qh < 1.0) & (v < 0.31 + 0.05 * hs)
    ca = hip & (qh > 0.72) & (qh < 0.86)
    dg = hip & (qh > 0.34) & (qh < 0.48) & (v < 0.31 + 0.025 * hs)
    st = _ell(a, v, 0.58, 0.44, 0.19 * ss, 0.17 * ss) < 1.0
    th = _ell(a, v, 0.0, 0.52, 0.33 * ts, 0.12 * ts) < 1.0
    mb = _ell(a, v, 0.0, 0.71, 0.34 * ms, 0.11 * ms) < 1.0
    vta = _ell(a, v, 0.07, 0.735, 0.065 * ns, 0.028 * ns) < 1.0
    sn = _ell(a, v, 0.2, 0.71, 0.1 * ns, 0.025 * ns, angle=0.45) < 1.0
    deep_label = np.select(
        [lv | v3, ca, dg, hip, st, th, mb & (vta | sn), mb],
        [
            VENTRICLE,
            _R["hippocampus CA"],
            _R["dentate gyrus"],
            _R["hippocampal strata"],
            _R["striatum"],
            _R["thalamus"],
            _R["SN/VTA"],
            _R["midbrain"],
        ],
        _R["other subcortical"],
    ).astype(np.uint16)
    out[deep] = deep_label[deep]
    out[ob_in & ~body] = _R["olfactory bulb"]
    return out


def region_grid(spec: PhantomSpec, z: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Region ids ``(h, w)`` uint16 of the pixels ``[y0, y0+h) x [x0, x0+w)`` of slice ``z``.

    Labels are evaluated on a global lattice every :data:`LABEL_LATTICE_PX` px; lattice cells
    whose corners disagree are evaluated per pixel, the others take the common corner label.
    The result depends only on global coordinates, never on the requested window.
    """
    step = LABEL_LATTICE_PX
    ly0, lx0 = (y0 // step) * step, (x0 // step) * step
    ly1, lx1 = -(-(y0 + h) // step) * step, -(-(x0 + w) // step) * step
    gy = np.arange(ly0, ly1 + 1, step, dtype=np.float64)
    gx = np.arange(lx0, lx1 + 1, step, dtype=np.float64)
    corners = region_at(spec, z, gy[:, None], gx[None, :])
    c00, c01, c10, c11 = corners[:-1, :-1], corners[:-1, 1:], corners[1:, :-1], corners[1:, 1:]
    uniform = (c00 == c01) & (c00 == c10) & (c00 == c11)
    full = np.repeat(np.repeat(c00, step, axis=0), step, axis=1)
    mixed = ~np.repeat(np.repeat(uniform, step, axis=0), step, axis=1)
    if mixed.any():
        iy, ix = np.nonzero(mixed)
        full[iy, ix] = region_at(spec, z, ly0 + iy + 0.5, lx0 + ix + 0.5)
    oy, ox = y0 - ly0, x0 - lx0
    return full[oy : oy + h, ox : ox + w]


def vessel_field(
    spec: PhantomSpec, z: float, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel field at global pixel coordinates.

    Returns
    -------
    distance
        Approximate distance in px to the nearest vessel centre line (``|f| / |grad f|``).
    ty, tx
        Unit tangent of the vessel direction (along the zero line of ``f``).
    """
    wv = _vessel_waves(spec.seed)
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    zm = z_mm(spec, z)
    shape = np.broadcast_shapes(y.shape, x.shape)
    f = np.zeros(shape)
    gy = np.zeros(shape)
    gx = np.zeros(shape)
    for i in range(len(wv.ku)):
        arg = wv.ku[i] * x + wv.kv[i] * y + (wv.kz[i] * zm + wv.phase[i])
        f += np.cos(arg)
        s = np.sin(arg)
        gx -= wv.ku[i] * s
        gy -= wv.kv[i] * s
    g = np.sqrt(gx * gx + gy * gy) + 1e-12
    return np.abs(f) / g, gx / g, -gy / g


def vessel_grid(spec: PhantomSpec, z: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Distance (px, float32) to the nearest vessel line for the pixels of a window.

    Only pixels that may lie within 5 px of a vessel get an exact value; elsewhere the distance
    is reported as 5 px (a lower bound), which is all the renderer and the masks need.
    """
    wv = _vessel_waves(spec.seed)
    zm = z_mm(spec, z)
    ys = np.arange(y0, y0 + h, dtype=np.float64) + 0.5
    xs = np.arange(x0, x0 + w, dtype=np.float64) + 0.5
    # f = sum_i cos(ay_i + ax_i) as one (h, 2n) x (2n, w) product. f only selects the pixels
    # whose exact distance is computed below (by vessel_field); the small margin on the bound
    # makes that selection a superset of the exact one whatever the rounding of the product,
    # and pixels at the bound have a distance >= 5 px anyway (|grad f| <= gmax).
    ay = np.outer(ys, wv.kv) + (wv.kz * zm + wv.phase)
    ax = np.outer(xs, wv.ku)
    # (einsum rather than @: no BLAS thread pool contending with the worker processes)
    f = np.einsum(
        "ik,jk->ij", np.hstack([np.cos(ay), -np.sin(ay)]), np.hstack([np.cos(ax), np.sin(ax)])
    )
    gmax = float(np.sum(np.hypot(wv.ku, wv.kv)))
    out = np.full((h, w), 5.0, dtype=np.float32)
    near = np.abs(f) < 5.0 * gmax + 1e-6
    if near.any():
        iy, ix = np.nonzero(near)
        d, _, _ = vessel_field(spec, z, ys[iy], xs[ix])
        out[iy, ix] = np.minimum(d, 5.0)
    return out


def tissue_bbox(spec: PhantomSpec) -> tuple[int, int, int, int]:
    """A conservative ``(y0, y1, x0, x1)`` pixel box holding the tissue of every slice."""
    s, cy, cx = _frame(spec)
    y0 = cy + (0.0 - 0.5) * s
    y1 = cy + (1.0 - 0.5) * s
    x0 = cx - 1.0 * 0.75 * s
    x1 = cx + 1.0 * 0.75 * s
    return int(max(0, y0)), int(min(spec.height, y1)), int(max(0, x0)), int(min(spec.width, x1))
