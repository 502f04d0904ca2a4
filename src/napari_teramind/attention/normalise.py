"""Display normalisation of attention maps (METHOD.md 4.3), with the published defaults.

* attention channels (``up``, ``down``, ``all``): ``log2(1 + G * value)``, ``G`` the model's gene
  count, so that a uniform attention row maps to about ``log2(1 + L * count)``;
* expression channels (``expr``): ``log2(1 + count)``;
* then every channel is **masked** to the elements where all the map's genes (both genes of a
  pathway pair) are expressed, and smoothed with a Gaussian of ``sigma`` elements.

Values are clamped at 0 first (as the published code clamps after resizing). ``sigma`` is in
gene blocks of level 0; a pyramid level ``k`` uses ``sigma / 2**k`` so every zoom level shows
the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from napari_teramind.store import BrainStore

__all__ = [
    "NormaliseOptions",
    "coexpression_mask",
    "normalise_attention",
    "normalise_expression",
    "normalise_map",
    "normalised_levels",
    "options_for",
    "parse_channel",
    "smooth",
]

MASK_MODES = ("all", "any", "none")


@dataclass(frozen=True)
class NormaliseOptions:
    """How maps are normalised for display and analysis (published defaults).

    Attributes
    ----------
    n_genes
        ``G`` of ``log2(1 + G * value)``; ``None`` reads it from the map metadata.
    log
        Apply the log scalings (False: raw values, still clamped at 0).
    mask
        ``"all"``: keep elements where every gene of the map is expressed (both genes of a
        pair, the published rule); ``"any"``: where at least one is; ``"none"``: no mask.
    sigma
        Gaussian smoothing in level-0 elements (gene blocks); 0 disables it.
    """

    n_genes: int | None = None
    log: bool = True
    mask: str = "all"
    sigma: float = 2.0

    def __post_init__(self) -> None:
        if self.mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, not {self.mask!r}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.n_genes is not None and self.n_genes < 1:
            raise ValueError(f"n_genes must be positive, got {self.n_genes}")


def parse_channel(channel: str) -> tuple[str, str]:
    """Split ``"<kind>:<gene>"`` into ``(kind, gene)``."""
    kind, sep, gene = channel.partition(":")
    if not sep or kind not in ("up", "down", "all", "expr"):
        raise ValueError(f"channel {channel!r} is not '<up|down|all|expr>:<gene>'")
    return kind, gene


def normalise_attention(values: np.ndarray, n_genes: int, log: bool = True) -> np.ndarray:
    """``log2(1 + n_genes * max(value, 0))`` as float32."""
    v = np.maximum(np.asarray(values, dtype=np.float32), 0)
    return np.log2(1 + n_genes * v) if log else v


def normalise_expression(counts: np.ndarray, log: bool = True) -> np.ndarray:
    """``log2(1 + max(count, 0))`` as float32."""
    v = np.maximum(np.asarray(counts, dtype=np.float32), 0)
    return np.log2(1 + v) if log else v


def coexpression_mask(expression: np.ndarray, mode: str = "all") -> np.ndarray:
    """Boolean mask over ``expression[0]``'s shape: all (or any) genes of axis 0 expressed."""
    e = np.asarray(expression) > 0
    if mode == "all":
        return e.all(axis=0)
    if mode == "any":
        return e.any(axis=0)
    if mode == "none":
        return np.ones(e.shape[1:], dtype=bool)
    raise ValueError(f"mask must be one of {MASK_MODES}, not {mode!r}")


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of the last two axes (``scipy.ndimage``, reflecting edges)."""
    if sigma <= 0:
        return np.asarray(values, dtype=np.float32)
    from scipy.ndimage import gaussian_filter

    v = np.asarray(values, dtype=np.float32)
    return gaussian_filter(v, sigma=(0,) * (v.ndim - 2) + (sigma, sigma)).astype(np.float32)


def normalise_map(
    values: np.ndarray,
    channels: Sequence[str],
    options: NormaliseOptions,
    level: int = 0,
) -> np.ndarray:
    """Normalise a map ``(C, ..., y, x)`` whose channels are ``<kind>:<gene>``.

    Parameters
    ----------
    values
        Raw map values, channel first (as stored, any level).
    channels
        The channel names; the mask uses the ``expr:`` channels.
    options
        Normalisation; ``options.n_genes`` must be set.
    level
        Pyramid level of ``values`` (scales ``sigma`` by ``2 ** -level``).

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    if options.n_genes is None:
        raise ValueError("options.n_genes is not set; use options_for(store, name)")
    values = np.asarray(values, dtype=np.float32)
    if values.shape[0] != len(channels):
        raise ValueError(f"{len(channels)} channel names for {values.shape[0]} channels")
    out = np.empty_like(values)
    expr = []
    for c, ch in enumerate(channels):
        kind, _ = parse_channel(ch)
        if kind == "expr":
            out[c] = normalise_expression(values[c], options.log)
            expr.append(values[c])
        else:
            out[c] = normalise_attention(values[c], options.n_genes, options.log)
    if options.mask != "none":
        if not expr:
            raise ValueError("masking needs the expr:<gene> channels of the map")
        out *= coexpression_mask(np.stack(expr), options.mask)[None]
    return smooth(out, options.sigma / 2**level)


def options_for(store: BrainStore, name: str, **overrides: Any) -> NormaliseOptions:
    """The map's normalisation defaults from its metadata, with ``overrides``."""
    meta = store.attention_metadata(name).get("normalisation", {})
    opts = NormaliseOptions(
        n_genes=int(meta.get("n_genes") or 0) or None,
        mask=str(meta.get("mask", "all")),
        sigma=float(meta.get("sigma_blocks", 2.0)),
    )
    return replace(opts, **overrides)


def normalised_levels(
    store: BrainStore, name: str, options: NormaliseOptions | None = None
) -> list[Any]:
    """Lazily normalised pyramid of map ``name``: dask arrays ``(C, z, y, x)``, finest first.

    Each level is normalised chunk by chunk (``dask.array.map_overlap`` with the smoothing
    kernel's radius as overlap), so nothing larger than a few chunks is ever in memory and the
    result equals normalising the whole level at once.
    """
    options = options or options_for(store, name)
    channels = list(store.attention_metadata(name).get("channels", []))
    out = []
    for k in range(store.n_levels(f"attention/{name}")):
        arr = store.attention(name, k)
        sigma_k = options.sigma / 2**k
        radius = int(4.0 * sigma_k + 0.5) if sigma_k > 0 else 0
        if arr.shape[1] != 1:
            arr = arr.rechunk({1: 1})
        depth = {2: min(radius, arr.shape[2] - 1), 3: min(radius, arr.shape[3] - 1)}
        smallest = min(min(arr.chunks[2]), min(arr.chunks[3]))
        if radius > smallest:  # overlap may not exceed a chunk
            arr = arr.rechunk({2: max(radius, 128), 3: max(radius, 128)})

        def block(x: np.ndarray, _k: int = k) -> np.ndarray:
            return normalise_map(x, channels, options, level=_k)

        out.append(
            arr.map_overlap(block, depth=depth, boundary="none", dtype=np.float32, trim=True)
        )
    return out
