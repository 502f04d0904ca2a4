"""The phantom specification: everything that determines a phantom, bit for bit."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .interactions import DEFAULT_HIGH_FRACTION, EXPRESSION_MODES, INTERACTION_GENES
from .programs import CURATED_GENES, PANEL_638850_INDEX, REQUIRED_GENES

#: Version of the phantom generator; bumped whenever the same spec would render differently.
PHANTOM_VERSION = 1


def _published_order(names: Sequence[str]) -> tuple[str, ...]:
    """Sort gene names by their position in the published 638850 panel."""
    try:
        from napari_teramind.store import GenePanel

        panel = GenePanel.published("638850")
        return tuple(sorted(names, key=panel.index))
    except ImportError:  # pragma: no cover - the store package is part of the project
        return tuple(sorted(names, key=lambda n: PANEL_638850_INDEX[n]))


def resolve_genes(n_genes: int | None, interactions: bool = False) -> tuple[str, ...]:
    """The phantom gene panel of ``n_genes`` genes, in published-panel order.

    The curated genes (:data:`~napari_teramind.phantom.programs.CURATED_GENES`) come first in
    priority order; beyond them, the remaining genes of the published 638850 panel are added in
    panel order with weak filler programs. With ``interactions`` the 20 interaction genes
    (:data:`~napari_teramind.phantom.interactions.INTERACTION_GENES`) are added to those
    ``n_genes`` (and never used as filler genes).
    """
    if interactions:
        base = _resolve_base(n_genes, exclude=INTERACTION_GENES)
        return _published_order([*base, *INTERACTION_GENES])
    return _resolve_base(n_genes)


def _resolve_base(n_genes: int | None, exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """:func:`resolve_genes` without the interaction genes (``exclude``: never filler)."""
    n = len(CURATED_GENES) if n_genes is None else int(n_genes)
    if n < len(REQUIRED_GENES):
        raise ValueError(
            f"a phantom needs at least {len(REQUIRED_GENES)} genes "
            f"({', '.join(REQUIRED_GENES)}), got n_genes={n}"
        )
    if n <= len(CURATED_GENES):
        return _published_order(CURATED_GENES[:n])
    from napari_teramind.store import GenePanel

    panel = GenePanel.published("638850")
    if n > len(panel):
        raise ValueError(f"n_genes={n} exceeds the published panel ({len(panel)} genes)")
    extra = [g for g in panel.names if g not in CURATED_GENES and g not in exclude]
    extra = extra[: n - len(CURATED_GENES)]
    if len(extra) < n - len(CURATED_GENES):
        raise ValueError(f"n_genes={n} leaves too few panel genes besides the interaction genes")
    return _published_order([*CURATED_GENES, *extra])


@dataclass(frozen=True)
class PhantomSpec:
    """Parameters of a phantom brain. Two equal specs render bit-identical phantoms.

    Parameters
    ----------
    seed
        Random seed: nuclei, vessels, boundary wobble, transcripts and noise depend on it.
    n_slices, height, width
        Size of the stack in sections and pixels (``height`` and ``width`` multiples of 16).
    n_genes
        Number of genes; ``None`` takes the curated panel (48 genes). At least 6.
    genes
        Explicit gene names (overrides ``n_genes``); resolved from ``n_genes`` when ``None``.
    pixel_size_um
        Pixel size recorded in the store. The phantom is a scaled-down brain: at the default
        2 um/px a 2048 x 3072 px section is 4 x 6 mm and nuclei are 5-12 px (10-24 um) across.
    slice_spacing_um
        Distance between sections; the anatomy changes smoothly along z in micrometres.
    gene_block_px
        Gene block edge (always 16, as in the published model).
    species
        ``"mouse"`` (default) or ``"human"``: a human-like phantom whose panel is the
        published 319-gene human panel in human symbols (``genes`` are human symbols too).
        Genes with a mouse ortholog among the 81 of ``human-orthologs-81`` follow that mouse
        gene's programs (SLC17A6/SLC17A7 the GLUT ones); the others get weak filler programs.
        TH and CLDN5 are not in that panel, so no human phantom plants DOPA or BLOD. Nothing
        of a human phantom is mouse-named.
    interactions
        Plant the gene-gene interactions of :mod:`~napari_teramind.phantom.interactions`
        (AND, control and additive pairs of 20 extra genes, added to the ``n_genes``). False
        (default): the ordinary phantom, bit for bit as without this option.
    interaction_high_fraction
        With ``interactions``: the fraction of the section where each interaction gene is
        high (default 1/2). The AND phenotype then covers about ``1 - (1 - f^2)^4`` of the
        tissue (68 % at 1/2, 31 % at 0.3): in a sparser design fewer of a pair's both-high
        blocks also hold another jointly high AND pair, so more of them answer its knockout.
    interaction_expression
        With ``interactions``: ``"nucleus"`` (default: transcripts per nucleus in a gene's
        high field) or ``"tissue"`` (a constant rate per tissue block, whatever nuclei lie
        there, so that no interaction gene tells where nuclei are; see
        :mod:`~napari_teramind.phantom.interactions`).
    """

    seed: int = 0
    n_slices: int = 8
    height: int = 2048
    width: int = 3072
    n_genes: int | None = None
    genes: tuple[str, ...] | None = None
    pixel_size_um: float = 2.0
    slice_spacing_um: float = 200.0
    gene_block_px: int = 16
    species: str = "mouse"
    interactions: bool = False
    interaction_high_fraction: float = DEFAULT_HIGH_FRACTION
    interaction_expression: str = EXPRESSION_MODES[0]

    def __post_init__(self) -> None:
        if self.gene_block_px != 16:
            raise ValueError("the phantom uses 16-px gene blocks (gene_block_px=16)")
        if min(self.n_slices, self.height, self.width) <= 0:
            raise ValueError(
                f"phantom size must be positive, got {self.n_slices} x {self.height} x {self.width}"
            )
        if self.height % 16 or self.width % 16:
            raise ValueError(
                f"height and width must be multiples of 16 px, got {self.height} x {self.width}"
            )
        if self.pixel_size_um <= 0 or self.slice_spacing_um <= 0:
            raise ValueError("pixel_size_um and slice_spacing_um must be positive")
        if not 0 <= int(self.seed) < 2**63:
            raise ValueError(f"seed must be a non-negative 63-bit integer, got {self.seed}")
        object.__setattr__(self, "interactions", bool(self.interactions))
        f = float(self.interaction_high_fraction)
        if not 0.0 < f < 1.0:
            raise ValueError(f"interaction_high_fraction must lie in (0, 1), got {f}")
        if f != DEFAULT_HIGH_FRACTION and not self.interactions:
            raise ValueError("interaction_high_fraction needs interactions=True")
        object.__setattr__(self, "interaction_high_fraction", f)
        if self.interaction_expression not in EXPRESSION_MODES:
            raise ValueError(
                "interaction_expression must be 'nucleus' or 'tissue', not "
                f"{self.interaction_expression!r}"
            )
        if self.interaction_expression != EXPRESSION_MODES[0] and not self.interactions:
            raise ValueError("interaction_expression needs interactions=True")
        if self.species not in ("mouse", "human"):
            raise ValueError(f"species must be 'mouse' or 'human', not {self.species!r}")
        if self.interactions and self.species != "mouse":
            raise ValueError("planted interactions are a mouse phantom option (species='mouse')")
        if self.species == "human":
            from napari_teramind.panels import human_panel_names

            panel = human_panel_names()
            genes = panel if self.genes is None else tuple(str(g) for g in self.genes)
            if self.genes is None and self.n_genes is not None:
                raise ValueError(
                    "a human phantom has the 319-gene human panel; give genes=... (human "
                    "symbols) for a subset, not n_genes"
                )
            if len(set(genes)) != len(genes):
                raise ValueError("phantom genes must be unique")
        elif self.genes is None:
            genes = resolve_genes(self.n_genes, self.interactions)
        else:
            genes = tuple(str(g) for g in self.genes)
            required = (*REQUIRED_GENES, *(INTERACTION_GENES if self.interactions else ()))
            missing = [g for g in required if g not in genes]
            if missing:
                raise ValueError(f"phantom genes must include {', '.join(missing)}")
            if len(set(genes)) != len(genes):
                raise ValueError("phantom genes must be unique")
        object.__setattr__(self, "genes", genes)
        object.__setattr__(self, "n_genes", len(genes))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def gene_names(self) -> tuple[str, ...]:
        """The resolved gene names (the store's panel), in order."""
        assert self.genes is not None
        return self.genes

    @property
    def program_genes(self) -> tuple[str, ...]:
        """The names whose planted programs each gene follows (mouse orthologs for human)."""
        assert self.genes is not None
        if self.species == "mouse":
            return self.genes
        from napari_teramind.panels import human_orthologs

        to_mouse = {h: m for m, h in human_orthologs().items()}
        return tuple(to_mouse.get(g, g) for g in self.genes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_slices, height, width)``."""
        return (self.n_slices, self.height, self.width)

    @property
    def nbytes(self) -> int:
        """Uncompressed bytes of level 0: images, gene counts and region labels."""
        z, h, w = self.shape
        return z * h * w * 2 + z * (h // 16) * (w // 16) * len(self.gene_names) * 2 + z * h * w * 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; :meth:`from_dict` restores an equal spec."""
        d = dataclasses.asdict(self)
        if self.species == "mouse":
            del d["species"]  # the record of every mouse phantom stays what it was
        d["genes"] = list(self.gene_names)
        if not self.interactions:  # the ordinary phantom's record stays as it always was
            del d["interactions"]
        if self.interaction_high_fraction == DEFAULT_HIGH_FRACTION:  # so does the original
            del d["interaction_high_fraction"]  # interaction design's
        if self.interaction_expression == EXPRESSION_MODES[0]:
            del d["interaction_expression"]
        d["version"] = PHANTOM_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PhantomSpec:
        """Rebuild a spec from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("genes") is not None:
            kw["genes"] = tuple(kw["genes"])
        return cls(**kw)
