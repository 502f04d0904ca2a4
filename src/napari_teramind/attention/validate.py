"""Checks of attention maps against a phantom's planted programs (the ground truth).

* :func:`planted_auc`: per slice, the ROC AUC of a map's score (the sum over its genes of a
  kind, normalised as displayed) against the planted region mask of a program (DOPA: SN/VTA
  and olfactory bulb; GLUT: cortex L4 and thalamus), over the tissue blocks;
* :func:`planted_overlap`: per slice, the Spearman correlation of the map with the planted
  co-expression level ``min(mean A, mean B)`` of the pair's two genes (from the region
  programs), again over tissue.

Both return pandas DataFrames with one row per slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from napari_teramind.attention.normalise import NormaliseOptions, normalise_map, options_for
from napari_teramind.store.compute import compute

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from napari_teramind.store import BrainStore

__all__ = ["map_score", "planted_auc", "planted_overlap", "roc_auc"]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` for boolean ``labels`` (Mann-Whitney, ties counted half).

    Returns NaN when either class is empty.
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def map_score(
    store: BrainStore,
    name: str,
    kind: str = "all",
    options: NormaliseOptions | None = None,
    slices: Sequence[int] | None = None,
) -> np.ndarray:
    """Sum over the map's genes of the ``kind`` channels, normalised, ``(Z', hb, wb)`` float32.

    ``options=None`` uses the map's display defaults (log scaling, co-expression mask, sigma 2).
    """
    options = options or options_for(store, name)
    channels = list(store.attention_metadata(name)["channels"])
    zs = list(range(store.n_slices)) if slices is None else [int(z) for z in slices]
    raw = compute(store.attention(name)[:, zs]).astype(np.float32)
    norm = normalise_map(raw, channels, options)
    picked = [c for c, ch in enumerate(channels) if ch.split(":", 1)[0] == kind]
    if not picked:
        raise ValueError(f"map {name!r} has no {kind!r} channels (channels: {channels})")
    return norm[picked].sum(axis=0)


def _tissue(store: BrainStore, zs: Sequence[int]) -> np.ndarray:
    """Tissue blocks (region label at the block centre not background/ventricle)."""
    from napari_teramind.phantom import planted_mask

    out = []
    for z in zs:
        bg = planted_mask(store, "background", z=z) | planted_mask(store, "ventricle", z=z)
        out.append(~bg)
    return np.stack(out)


def planted_auc(
    store: BrainStore,
    name: str,
    program: str = "DOPA",
    *,
    kind: str = "all",
    options: NormaliseOptions | None = None,
    slices: Sequence[int] | None = None,
    within_tissue: bool = True,
) -> pd.DataFrame:
    """ROC AUC per slice of map ``name`` against the planted mask of ``program``.

    Parameters
    ----------
    store
        A phantom brain store holding the map.
    name
        Map name (``attention/<name>``).
    program
        ``"DOPA"``, ``"GLUT"``, ``"BLOD"`` or a region name (see
        :func:`napari_teramind.phantom.planted_mask`).
    kind
        Channel kind scored (``all``, ``up``, ``down`` or ``expr`` as a baseline).
    options
        Normalisation of the score; the map's display defaults when ``None``.
    slices
        Slices to score; all by default.
    within_tissue
        Score only tissue blocks (not the background around the section).

    Returns
    -------
    pandas.DataFrame
        Columns ``slice, auc, n_positive, n_negative`` (AUC NaN where the program is absent).
    """
    import pandas as pd

    from napari_teramind.phantom import planted_mask

    zs = list(range(store.n_slices)) if slices is None else [int(z) for z in slices]
    score = map_score(store, name, kind, options, zs)
    truth = np.stack([planted_mask(store, program, z=z) for z in zs])
    keep = _tissue(store, zs) if within_tissue else np.ones_like(truth)
    rows = []
    for i, z in enumerate(zs):
        m = keep[i]
        y = truth[i][m]
        rows.append(
            {
                "slice": z,
                "auc": roc_auc(score[i][m], y),
                "n_positive": int(y.sum()),
                "n_negative": int((~y).sum()),
            }
        )
    return pd.DataFrame(rows)


def planted_overlap(
    store: BrainStore,
    name: str,
    *,
    kind: str = "all",
    options: NormaliseOptions | None = None,
    slices: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Spearman correlation per slice of the map with the planted co-expression of its pair.

    The planted level of a block is ``min(m_a, m_b)`` where ``m_a, m_b`` are the two genes'
    expected transcripts per nucleus in the block's region times the region's nucleus
    density (:func:`napari_teramind.phantom.region_gene_means`): high only where *both* genes
    are planted. Also returns the AUC against "planted level above half its maximum".

    Returns
    -------
    pandas.DataFrame
        Columns ``slice, spearman, auc_high_overlap, n_tissue``.
    """
    import pandas as pd
    from scipy.stats import spearmanr

    from napari_teramind.phantom import REGIONS, region_gene_means, spec_of
    from napari_teramind.phantom.anatomy import region_at

    genes = list(store.attention_metadata(name)["genes"])
    if len(genes) != 2:
        raise ValueError(f"planted_overlap needs a gene pair; map {name!r} has genes {genes}")
    spec = spec_of(store)
    means = region_gene_means(tuple(genes))
    density = np.array([REGIONS[i].density if i in REGIONS else 0 for i in range(len(means))])
    level = np.minimum(means[:, 0], means[:, 1]) * density
    zs = list(range(store.n_slices)) if slices is None else [int(z) for z in slices]
    score = map_score(store, name, kind, options, zs)
    keep = _tissue(store, zs)
    gb = store.gene_block_px
    hb, wb = score.shape[-2:]
    ys = (np.arange(hb) * gb + gb // 2).astype(np.float64)[:, None]
    xs = (np.arange(wb) * gb + gb // 2).astype(np.float64)[None, :]
    rows = []
    for i, z in enumerate(zs):
        planted = level[region_at(spec, z, ys, xs)]
        m = keep[i]
        rho = spearmanr(score[i][m], planted[m]).statistic if m.sum() > 2 else np.nan
        high = planted[m] > 0.5 * level.max()
        rows.append(
            {
                "slice": z,
                "spearman": float(rho),
                "auc_high_overlap": roc_auc(score[i][m], high),
                "n_tissue": int(m.sum()),
            }
        )
    return pd.DataFrame(rows)
