"""Counter-based random numbers: values are pure functions of integer keys.

Every random quantity of the phantom is a hash of ``(seed, stream, z, y, x, ...)``, never the
next draw of a stateful generator, so any chunk renders the same whatever the chunking or the
order of work.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (in place on a uint64 array)."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def hash_keys(*keys: np.ndarray | int) -> np.ndarray:
    """Hash broadcastable integer keys to uint64 (negative keys allowed)."""
    arrays = [np.asarray(k, dtype=np.int64) for k in keys]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    # The hash grows to the broadcast shape of the keys seen so far, so leading scalar or
    # low-dimensional keys (seed, z, row) are mixed once rather than once per element; every
    # element still goes through the same operations. ndmin=1 keeps numpy scalar arithmetic
    # (which warns on the intended uint64 wrap-around) out of the way.
    h = np.array([0x243F6A8885A308D3], dtype=np.uint64)
    for a in arrays:
        h = h ^ (np.atleast_1d(a).astype(np.uint64) * _GOLD)  # two's complement
        h = _mix(h)
    return h.reshape(shape)


def uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform float64 in [0, 1) from integer keys (53 random bits)."""
    return (hash_keys(*keys) >> _S11).astype(np.float64) * (1.0 / 2**53)


def normal(*keys: np.ndarray | int) -> np.ndarray:
    """Standard normal float64 from integer keys (inverse CDF of :func:`uniform`)."""
    u = uniform(*keys)
    return ndtri(np.clip(u, 1e-12, 1 - 1e-12))


def poisson(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson variates by inverse CDF of given uniforms ``u`` (same shape as ``lam``).

    Exact for ``lam <= 40``; a rounded normal approximation above. Returns int64.
    """
    lam = np.asarray(lam, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    out = np.zeros(lam.shape, dtype=np.int64)
    flat_l, flat_u, flat_o = lam.ravel(), u.ravel(), out.ravel()
    big = flat_l > 40
    if big.any():
        lb = flat_l[big]
        z = ndtri(np.clip(flat_u[big], 1e-12, 1 - 1e-12))
        flat_o[big] = np.maximum(0, np.floor(lb + np.sqrt(lb) * z + 0.5)).astype(np.int64)
    idx = np.flatnonzero((flat_l > 0) & ~big)
    if idx.size:
        lv = flat_l[idx]
        uv = flat_u[idx]
        p = np.exp(-lv)
        cdf = p.copy()
        k = np.zeros(idx.size, dtype=np.int64)
        active = np.flatnonzero(uv > cdf)
        n = 0
        while active.size and n < 400:
            n += 1
            k[active] += 1
            p[active] *= lv[active] / k[active]
            cdf[active] += p[active]
            # stop where the remaining tail mass is below float precision
            still = (uv[active] > cdf[active]) & (p[active] > 1e-300)
            active = active[still]
        flat_o[idx] = k
    return flat_o.reshape(lam.shape)
