"""Expression-vs-attention trend plots (the paper's Fig. 3c; METHOD.md 4.3 ``reg/``).

For each gene of a map, the normalised attention level (``all`` by default) is paired with the
normalised expression level over the masked elements (both genes expressed), a linear
regression is fitted, and a 2D density with the fit is drawn per gene. The published code does
this at 1/4 of the block resolution, i.e. pyramid level 2 of our maps (the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_teramind.attention.normalise import NormaliseOptions, normalise_map, options_for
from napari_teramind.store.compute import compute
from napari_teramind.store.pyramid import downsample2

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from napari_teramind.store import BrainStore

__all__ = ["TrendResult", "contrast_data", "plot_trend", "trend_data", "trend_plot"]


@dataclass
class TrendResult:
    """Data and fits of a trend plot.

    Attributes
    ----------
    data
        One row per masked element and gene: ``gene, slice, y, x, expression, attention``
        (``y, x`` in elements of the level used).
    fits
        One row per gene: ``gene, slope, intercept, r, p_value, n``.
    path
        The PNG written, or ``None``.
    contrast
        With a contrast map (:mod:`.contrast`): one row per level-0 block where both genes
        count, ``slice, y, x, coexpression`` (``log2(1 + min(count a, count b))``) and ``z``;
        drawn as an extra panel beside the genes'.
    """

    data: pd.DataFrame
    fits: pd.DataFrame
    path: Path | None = None
    contrast: pd.DataFrame | None = None


def contrast_data(
    store: BrainStore, contrast: str, slices: Sequence[int] | None = None
) -> pd.DataFrame:
    """Blocks of contrast map ``contrast`` where both genes count: co-expression and ``z``."""
    import pandas as pd

    from napari_teramind.attention.contrast import _contrast_arrays

    zs, ch = _contrast_arrays(store, contrast, slices)
    genes = list(store.attention_metadata(contrast)["genes"])
    counts = compute(store.genes()[store.panel.indices(genes)][:, zs]).astype(np.float32)
    hb, wb = ch["z"].shape[-2:]
    counts = counts[..., :hb, :wb]
    zi, yi, xi = np.nonzero(ch["both"] > 0.5)
    co = np.log2(1 + np.minimum(counts[0], counts[1]))[zi, yi, xi]
    return pd.DataFrame(
        {
            "slice": np.asarray(zs)[zi],
            "y": yi,
            "x": xi,
            "coexpression": co,
            "z": ch["z"][zi, yi, xi],
        }
    )


def trend_data(
    store: BrainStore,
    name: str,
    *,
    kind: str = "all",
    slices: Sequence[int] | None = None,
    level: int = 2,
    options: NormaliseOptions | None = None,
) -> TrendResult:
    """Masked (expression, attention) pairs of every gene of map ``name`` and their fits.

    Parameters
    ----------
    store
        Brain store holding ``attention/<name>``.
    name
        Map name.
    kind
        Attention kind plotted against expression: ``all``, ``up`` or ``down``.
    slices
        Slices pooled together; all by default (one slice gives a per-slice plot).
    level
        Pyramid level (2 = 1/4 of the block resolution, as published).
    options
        Normalisation; the map's defaults (log scaling, mask, sigma 2 at level 0).
    """
    import pandas as pd
    from scipy.stats import linregress

    if kind not in ("all", "up", "down"):
        raise ValueError(f"kind must be 'all', 'up' or 'down', not {kind!r}")
    options = options or options_for(store, name)
    meta = store.attention_metadata(name)
    channels = list(meta["channels"])
    genes = list(meta["genes"])
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    zs = list(range(store.n_slices)) if slices is None else [int(z) for z in slices]
    stored = min(level, store.n_levels(f"attention/{name}") - 1)
    raw = compute(store.attention(name, stored)[:, zs]).astype(np.float32)
    for _ in range(level - stored):  # coarser than the stored pyramid: 2 x 2 means
        raw = downsample2(raw, "mean")
    norm = normalise_map(raw, channels, options, level=level)
    expr_raw = np.stack([raw[channels.index(f"expr:{g}")] for g in genes])
    mask = (expr_raw > 0).all(axis=0) if options.mask == "all" else (expr_raw > 0).any(axis=0)
    zi, yi, xi = np.nonzero(mask)
    frames, fits = [], []
    for g in genes:
        a = norm[channels.index(f"{kind}:{g}")][zi, yi, xi]
        e = norm[channels.index(f"expr:{g}")][zi, yi, xi]
        frames.append(
            pd.DataFrame(
                {
                    "gene": g,
                    "slice": np.asarray(zs)[zi],
                    "y": yi,
                    "x": xi,
                    "expression": e,
                    "attention": a,
                }
            )
        )
        if a.size >= 3 and np.ptp(e) > 0:
            fit = linregress(e, a)
            row = {"slope": fit.slope, "intercept": fit.intercept, "r": fit.rvalue,
                   "p_value": fit.pvalue}  # fmt: skip
        else:
            row = {"slope": np.nan, "intercept": np.nan, "r": np.nan, "p_value": np.nan}
        fits.append({"gene": g, **row, "n": int(a.size)})
    data = pd.concat(frames, ignore_index=True)
    return TrendResult(data=data, fits=pd.DataFrame(fits))


def plot_trend(result: TrendResult, path: str | Path, title: str = "") -> Path:
    """Draw one panel per gene: 2D density of the pairs, the points, and the fitted line.

    Uses matplotlib's Agg backend (no display needed) and returns the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    genes = list(result.fits["gene"])
    n_panels = max(1, len(genes)) + (result.contrast is not None)
    fig = Figure(figsize=(4.6 * n_panels, 4.2), dpi=100, layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    if result.contrast is not None:
        _contrast_panel(fig, axes[-1], result.contrast)
    for ax, (_, fit) in zip(axes, result.fits.iterrows(), strict=False):
        sub = result.data[result.data["gene"] == fit["gene"]]
        e, a = sub["expression"].to_numpy(), sub["attention"].to_numpy()
        if e.size:
            if e.size > 50:
                hb = ax.hexbin(e, a, gridsize=40, bins="log", cmap="viridis", mincnt=1)
                fig.colorbar(hb, ax=ax, fraction=0.05, pad=0.02).set_label("blocks per bin")
            else:
                ax.scatter(e, a, s=6, alpha=0.6)
            if np.isfinite(fit["slope"]):
                xs = np.linspace(float(e.min()), float(e.max()), 50)
                ax.plot(xs, fit["intercept"] + fit["slope"] * xs, color="red", lw=2)
        # the fit goes in the title: a legend inside the axes would cover points
        stats = f"slope {fit['slope']:.2f}, r {fit['r']:.2f}, " if np.isfinite(fit["slope"]) else ""
        ax.set_title(f"{fit['gene']} ({stats}n = {int(fit['n'])})", fontsize=10)
        ax.set_xlabel("expression, log2(1 + count)")
        ax.set_ylabel("attention, log2(1 + G value)")
    if title:
        fig.suptitle(title)
    fig.savefig(path)
    return path


def _contrast_panel(fig, ax, data: pd.DataFrame) -> None:
    """Z of the attention contrast against the pair's co-expression (one point per block)."""
    co, z = data["coexpression"].to_numpy(), data["z"].to_numpy()
    if co.size > 50:
        hb = ax.hexbin(co, z, gridsize=40, bins="log", cmap="coolwarm", mincnt=1)
        fig.colorbar(hb, ax=ax, fraction=0.05, pad=0.02).set_label("blocks per bin")
    elif co.size:
        ax.scatter(co, z, s=6, alpha=0.6)
    ax.axhline(0.0, color="black", lw=1)
    mean = f"mean z {z.mean():.2f}, " if z.size else ""
    ax.set_title(f"attention contrast ({mean}n = {z.size})", fontsize=10)
    ax.set_xlabel("co-expression, log2(1 + min(count a, count b))")
    ax.set_ylabel("z = (A_pair - null mean) / null sd")


def trend_plot(
    store: BrainStore,
    name: str,
    out_dir: str | Path,
    *,
    per_slice: bool = False,
    kind: str = "all",
    level: int = 2,
    options: NormaliseOptions | None = None,
    contrast: str | None = None,
) -> list[TrendResult]:
    """Write ``<out_dir>/<name>_<kind>_trend[_z<slice>].png`` and return the results.

    ``per_slice=False`` pools all slices into one plot; True writes one plot per slice.
    ``contrast``: a contrast map of the same pair (:mod:`.contrast`), drawn as an extra panel
    (its ``z`` against the pair's co-expression, level 0 blocks).
    """
    out_dir = Path(out_dir)
    groups: list[list[int] | None] = (
        [[z] for z in store.attention_metadata(name).get("slices", range(store.n_slices))]
        if per_slice
        else [None]
    )
    results = []
    for zs in groups:
        res = trend_data(store, name, kind=kind, slices=zs, level=level, options=options)
        if contrast is not None:
            res.contrast = contrast_data(store, contrast, zs)
        suffix = f"_z{zs[0]}" if zs else ""
        title = f"{name} {kind} vs expression" + (f", slice {zs[0]}" if zs else ", all slices")
        res.path = plot_trend(res, out_dir / f"{name}_{kind}_trend{suffix}.png", title)
        results.append(res)
    return results
