"""Planted gene-gene interactions (``PhantomSpec(interactions=True)``), as data and functions.

Ten gene pairs of the published 638850 panel (genes the curated programs do not use) are
planted on top of the ordinary phantom:

* **AND** pairs (``AND1..AND4``): a nucleus becomes the *interaction phenotype* (radius x
  :data:`AND_RADIUS`, DAPI brightness x :data:`AND_BRIGHTNESS`: large pale nuclei) only where
  **both** genes of the pair are high; either gene alone changes nothing;
* **CTRL** pairs (``CTRL1..CTRL4``): the same expression law, no planted effect on the nuclei
  (with per-nucleus expression their transcripts still brighten each cell's PolyT, as every
  gene's do; with ``interaction_expression="tissue"`` nothing in the image reflects them);
* **ADD** pairs (``ADD1, ADD2``): each high gene alone dims the nucleus by
  :data:`ADD_DIM` of its type brightness; the effects add (no joint term).

Expression: every gene has its own smooth binary field over the section, ``high`` where a
bilinear value noise on a :data:`FIELD_PX` lattice exceeds the threshold of the spec's
``interaction_high_fraction`` (:func:`high_threshold`; 1/2 by default: about half the
tissue; a smaller fraction makes every pair's joint phenotype rarer), the same in every slice,
independent between genes (separate hash streams), with the same law for every gene whatever
its pair kind, so AND and CTRL genes have matching marginal and joint expression statistics.
Every non-endothelial nucleus of the tissue inside a gene's high field expresses
:data:`HIGH_TRANSCRIPTS` transcripts of it (scaled by the cell's *base* size, so the
phenotype does not change the counts); elsewhere the gene counts only ambient transcripts.
With the spec's ``interaction_expression="tissue"`` the transcripts come instead at a constant
rate per tissue block (:data:`TISSUE_TRANSCRIPTS_PER_BLOCK`), whatever nuclei lie there: then
no interaction gene's count says where nuclei are or how large, so a control gene carries no
information about the image at all (with per-nucleus counts two co-expressed genes tell the
same nuclei density, and removing both loses more than the two removals apart: a second-order
effect of redundancy, not of a planted joint rule).

All values are functions of the seed and global coordinates, like the rest of the phantom.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from . import hashing

if TYPE_CHECKING:  # pragma: no cover
    from .spec import PhantomSpec

#: Lattice step (px) of the expression fields: 8 gene blocks, two 64-px model patches.
FIELD_PX = 128
#: Expected transcripts per nucleus of a gene where its field is high.
HIGH_TRANSCRIPTS = 8.0
#: The AND phenotype: nucleus radius and DAPI brightness factors.
AND_RADIUS = 1.6
AND_BRIGHTNESS = 0.55
#: Brightness lost per high gene of an additive pair (fraction of the type brightness).
ADD_DIM = 0.15
#: Default fraction of the section where each interaction gene is high.
DEFAULT_HIGH_FRACTION = 0.5
#: Expected transcripts per 16-px tissue block of a high gene with ``interaction_expression=
#: "tissue"`` (about what per-nucleus expression gives on average: 7.4).
TISSUE_TRANSCRIPTS_PER_BLOCK = 7.5
#: How interaction genes are expressed: per nucleus (the original) or per tissue block.
EXPRESSION_MODES = ("nucleus", "tissue")
_STREAM = 0x1A7E  # hash stream of the expression fields


@dataclass(frozen=True)
class InteractionPair:
    """A planted gene pair.

    Attributes
    ----------
    name
        ``AND<k>``, ``CTRL<k>`` or ``ADD<k>``.
    genes
        The two genes.
    kind
        ``"and"`` (phenotype only where both are high), ``"control"`` (no effect) or
        ``"additive"`` (each gene dims nuclei on its own).
    """

    name: str
    genes: tuple[str, str]
    kind: str


#: The planted pairs, in order (the first 20 genes of the published panel beyond the curated).
INTERACTION_PAIRS: tuple[InteractionPair, ...] = (
    InteractionPair("AND1", ("Syndig1", "Tmem132c"), "and"),
    InteractionPair("AND2", ("Serpine2", "Pou3f1"), "and"),
    InteractionPair("AND3", ("Bcl11a", "Lypd1"), "and"),
    InteractionPair("AND4", ("Arhgap36", "Igfbp2"), "and"),
    InteractionPair("CTRL1", ("Ccdc3", "Unc5d"), "control"),
    InteractionPair("CTRL2", ("Pth2r", "Gpr101"), "control"),
    InteractionPair("CTRL3", ("Syt2", "Tox"), "control"),
    InteractionPair("CTRL4", ("Cacng3", "Hs3st4"), "control"),
    InteractionPair("ADD1", ("Rab3b", "Rxfp1"), "additive"),
    InteractionPair("ADD2", ("Ramp3", "Ntn1"), "additive"),
)
INTERACTION_INDEX: dict[str, InteractionPair] = {p.name: p for p in INTERACTION_PAIRS}
#: The interaction genes, pair by pair (field stream ``j`` is gene ``j`` of this tuple).
INTERACTION_GENES: tuple[str, ...] = tuple(g for p in INTERACTION_PAIRS for g in p.genes)
_GENE_STREAM = {g: j for j, g in enumerate(INTERACTION_GENES)}


def planted_genes(spec: PhantomSpec) -> tuple[str, ...]:
    """The interaction genes of ``spec`` (empty for an ordinary phantom)."""
    return INTERACTION_GENES if getattr(spec, "interactions", False) else ()


def gene_field(seed: int, gene: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Value noise in [0, 1) of ``gene``'s expression field at global px ``(y, x)``."""
    j = _GENE_STREAM[gene]
    y = np.asarray(y, dtype=np.float64) / FIELD_PX
    x = np.asarray(x, dtype=np.float64) / FIELD_PX
    iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    ty, tx = y - iy, x - ix

    def lat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return hashing.uniform(seed, _STREAM, j, a, b)

    return (lat(iy, ix) * (1 - ty) * (1 - tx) + lat(iy + 1, ix) * ty * (1 - tx)
            + lat(iy, ix + 1) * (1 - ty) * tx + lat(iy + 1, ix + 1) * ty * tx)  # fmt: skip


@lru_cache(maxsize=16)
def high_threshold(fraction: float = DEFAULT_HIGH_FRACTION) -> float:
    """The field value above which a gene is high on about ``fraction`` of the section.

    The bilinear value noise of :func:`gene_field` is not uniform (its values crowd towards
    1/2), so the threshold is the ``1 - fraction`` quantile of its law, estimated from 2^21
    draws of a fixed-seed generator (the same number on every machine). 1/2 is exact for
    ``fraction=0.5`` (the law is symmetric about 1/2), which keeps the original phantom bit
    for bit.

    Parameters
    ----------
    fraction
        In (0, 1).
    """
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the high fraction must lie in (0, 1), got {fraction}")
    if fraction == 0.5:
        return 0.5
    rng = np.random.Generator(np.random.PCG64(0x1A7E))
    n = 1 << 21
    ty, tx = rng.random(n), rng.random(n)
    u = rng.random((4, n))
    v = (u[0] * (1 - ty) * (1 - tx) + u[1] * ty * (1 - tx)
         + u[2] * (1 - ty) * tx + u[3] * ty * tx)  # fmt: skip
    return float(np.quantile(v, 1.0 - fraction))


def gene_high(
    seed: int, gene: str, y: np.ndarray, x: np.ndarray, fraction: float = DEFAULT_HIGH_FRACTION
) -> np.ndarray:
    """Boolean, shaped like ``y``: where ``gene`` is high (its field above the threshold).

    ``fraction`` is the spec's ``interaction_high_fraction`` (see :func:`high_threshold`).
    """
    return gene_field(seed, gene, y, x) > high_threshold(fraction)


def high_states(
    seed: int, y: np.ndarray, x: np.ndarray, fraction: float = DEFAULT_HIGH_FRACTION
) -> np.ndarray:
    """Boolean ``(n_interaction_genes, *y.shape)``: :func:`gene_high` of every gene."""
    return np.stack([gene_high(seed, g, y, x, fraction) for g in INTERACTION_GENES])


def phenotype_factors(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radius and brightness factors of nuclei from their :func:`high_states`.

    Returns
    -------
    tuple of numpy.ndarray
        ``(radius_factor, brightness_factor)``, each shaped like ``states[0]``. A nucleus is of
        the AND phenotype when any AND pair has both genes high (the phenotype does not
        compound); additive dimming sums over the high genes of the ADD pairs.
    """
    both = np.zeros(states.shape[1:], dtype=bool)
    dim = np.zeros(states.shape[1:], dtype=np.float64)
    for k, p in enumerate(INTERACTION_PAIRS):
        a, b = states[2 * k], states[2 * k + 1]
        if p.kind == "and":
            both |= a & b
        elif p.kind == "additive":
            dim += ADD_DIM * (a.astype(np.float64) + b.astype(np.float64))
    radius = np.where(both, AND_RADIUS, 1.0)
    bright = np.where(both, AND_BRIGHTNESS, 1.0) * (1.0 - dim)
    return radius, bright


def interaction_means(states: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Expected transcripts ``(..., n_interaction_genes)`` of base-size nuclei."""
    on = states & np.asarray(eligible, dtype=bool)[None]
    return np.moveaxis(on.astype(np.float64) * HIGH_TRANSCRIPTS, 0, -1)


def block_rates(
    seed: int,
    by: np.ndarray,
    bx: np.ndarray,
    tissue: np.ndarray,
    fraction: float = DEFAULT_HIGH_FRACTION,
) -> np.ndarray:
    """Expected transcripts ``(..., n_interaction_genes)`` per block, ``"tissue"`` expression.

    ``by``, ``bx``: global block indices; ``tissue``: whether the block's centre lies in
    tissue (not the ventricle). A gene high at the block's centre gets
    :data:`TISSUE_TRANSCRIPTS_PER_BLOCK` there, nothing (beyond ambient) elsewhere.
    """
    cy = np.asarray(by, dtype=np.float64) * 16 + 8
    cx = np.asarray(bx, dtype=np.float64) * 16 + 8
    on = high_states(seed, cy, cx, fraction) & np.asarray(tissue, dtype=bool)[None]
    return np.moveaxis(on.astype(np.float64) * TISSUE_TRANSCRIPTS_PER_BLOCK, 0, -1)


def interactions_metadata(
    fraction: float = DEFAULT_HIGH_FRACTION, expression: str = "nucleus"
) -> dict[str, Any]:
    """The planted interactions as a JSON-able dict (``attrs['teramind']['phantom']``).

    ``fraction``, ``expression``: the spec's ``interaction_high_fraction`` and
    ``interaction_expression``. (The record of the original design says since 2026-12-04 that
    its control genes count in PolyT; the spec, and so the rendering, is unchanged.)
    """
    per = (
        f"{HIGH_TRANSCRIPTS:g} transcripts per non-endothelial tissue nucleus there"
        if expression == "nucleus"
        else f"{TISSUE_TRANSCRIPTS_PER_BLOCK:g} transcripts per 16-px tissue block there, "
        "whatever nuclei lie in it"
    )
    where = (
        "exceeds 0.5"
        if fraction == DEFAULT_HIGH_FRACTION
        else f"exceeds {high_threshold(fraction):.4f} (high on about {fraction:g} of the tissue)"
    )
    return {
        "pairs": [
            {"name": p.name, "genes": list(p.genes), "kind": p.kind} for p in INTERACTION_PAIRS
        ],
        "expression": (
            f"each gene high where its own value-noise field ({FIELD_PX}-px lattice, same in "
            f"every slice, independent between genes) {where}; {per}, ambient only elsewhere"
        ),
        "effects": {
            "and": f"radius x{AND_RADIUS}, DAPI brightness x{AND_BRIGHTNESS} where both genes "
            "of any AND pair are high (not compounded); nothing from either gene alone",
            "control": "none (same expression law as the AND genes)"
            + (
                "; per-nucleus transcripts count in the cell's PolyT like any gene's"
                if expression == "nucleus"
                else ""
            ),
            "additive": f"each high gene dims the nucleus by {ADD_DIM} of its type brightness",
        },
        "mask": "phantom.planted_mask(store, '<pair name>') gives where both genes are high",
    }
