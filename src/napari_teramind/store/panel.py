"""Gene panels: ordered gene names, aligned between datasets by name, never by position."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_teramind.panels import (
    HUMAN_PANEL,
    NAMED_PANELS,
    human_orthologs,
    human_panel_names,
    named_panel_names,
    published_panel_names,
)

#: Genes of the published pathway pairs (METHOD.md, appendix B).
PATHWAYS: dict[str, tuple[str, str]] = {
    "GLUT": ("Slc17a6", "Slc17a7"),
    "DOPA": ("Nr4a2", "Th"),
    "BLOD": ("Cldn5", "Aqp4"),
}


@dataclass(frozen=True)
class PanelAlignment:
    """How the genes of a *source* panel map onto a *target* panel.

    Attributes
    ----------
    target_index
        For every gene of the target panel, its position in the source panel, or -1 when the
        source lacks it.
    missing
        Target genes that the source panel lacks (to be treated as *missing*, not as zero).
    unused
        Source genes that the target panel does not use.
    """

    target_index: np.ndarray
    missing: tuple[str, ...]
    unused: tuple[str, ...]

    @property
    def present(self) -> np.ndarray:
        """Boolean mask over the target genes that the source provides."""
        return self.target_index >= 0

    def take(self, source: np.ndarray, axis: int = 0, fill: float = 0) -> np.ndarray:
        """Reorder ``source`` (gene axis ``axis``) into target order; missing genes get ``fill``."""
        source = np.asarray(source)
        idx = np.where(self.present, self.target_index, 0)
        out = np.take(source, idx, axis=axis)
        if not self.present.all():
            shape = [1] * out.ndim
            shape[axis] = -1
            out = np.where(self.present.reshape(shape), out, np.asarray(fill, dtype=out.dtype))
        return out


class GenePanel:
    """An ordered list of unique gene symbols.

    Parameters
    ----------
    names
        Gene symbols in the order of the gene axis of the data they describe.

    Examples
    --------
    >>> panel = GenePanel(["Slc17a7", "Th", "Nr4a2"])
    >>> panel.index("Th")
    1
    """

    def __init__(self, names: Iterable[str]):
        names = tuple(str(n).strip() for n in names)
        if not names:
            raise ValueError("a gene panel needs at least one gene name")
        empty = [i for i, n in enumerate(names) if not n]
        if empty:
            raise ValueError(f"gene panel has empty names at positions {empty[:10]}")
        seen: dict[str, int] = {}
        dupes = sorted({n for n in names if n in seen or seen.setdefault(n, 0)})
        if dupes:
            raise ValueError(
                f"gene panel lists these genes more than once: {', '.join(dupes[:10])}; "
                "each gene must appear once"
            )
        self._names = names
        self._index = {n: i for i, n in enumerate(names)}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | Path, column: str = "gene") -> GenePanel:
        """Read a panel from a CSV file with a header and one gene per row in ``column``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"gene panel file {path} does not exist")
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if not lines:
            raise ValueError(f"gene panel file {path} is empty")
        header = [h.strip() for h in lines[0].split(",")]
        if column not in header:
            raise ValueError(
                f"gene panel file {path} has no column {column!r} (columns: {header}); "
                "pass column=... to name the gene column"
            )
        col = header.index(column)
        return cls(ln.split(",")[col] for ln in lines[1:])

    @classmethod
    def published(cls, mouse: str = "638850", n_genes: int | None = None) -> GenePanel:
        """Return the published 500-gene MERFISH panel of ``mouse`` (or its first ``n_genes``).

        The published 229-gene models use the first 229 genes, shared by both panels.
        """
        names = published_panel_names(mouse)
        return cls(names[:n_genes] if n_genes else names)

    @classmethod
    def named(cls, spec: str | Path) -> GenePanel:
        """A panel from a name or a file, as the ``--panel`` options take it.

        Parameters
        ----------
        spec
            ``published:638850[:N]`` (the published panel of a mouse, or its first ``N``
            genes), ``human-orthologs-81`` (the 81 mouse genes with a human ortholog in the
            human panel, the genes of the published single-section human model),
            ``human-brain-panel-319`` (the human panel, human symbols), or the path of a CSV
            file with a ``gene`` column.
        """
        text = str(spec)
        if text.startswith("published:"):
            parts = text.split(":")
            return cls.published(parts[1], int(parts[2]) if len(parts) > 2 and parts[2] else None)
        if text in NAMED_PANELS:
            return cls(named_panel_names(text))
        if not Path(text).exists():
            raise FileNotFoundError(
                f"gene panel {text!r} is neither a file nor a known panel; give a CSV file with "
                f"a 'gene' column, published:638850[:N] or one of {', '.join(NAMED_PANELS)}"
            )
        return cls.from_csv(text)

    # -- access ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Gene symbols in panel order."""
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenePanel) and other._names == self._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        head = ", ".join(self._names[:5])
        return f"GenePanel({len(self)} genes: {head}{', ...' if len(self) > 5 else ''})"

    def index(self, name: str) -> int:
        """Position of gene ``name``; a clear error with close matches when it is absent."""
        try:
            return self._index[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._names, n=3)
            ci = [n for n in self._names if n.lower() == str(name).lower()]
            hint = f"; did you mean {', '.join(ci or close)}?" if (ci or close) else ""
            raise KeyError(f"gene {name!r} is not in the panel ({len(self)} genes){hint}") from None

    def indices(self, names: Sequence[str]) -> list[int]:
        """Positions of several genes (see :meth:`index`)."""
        return [self.index(n) for n in names]

    def subset(self, names: Sequence[str]) -> GenePanel:
        """A new panel of ``names`` (all must be in this panel), in the given order."""
        self.indices(names)
        return GenePanel(names)

    # -- alignment ---------------------------------------------------------------------------
    def align(
        self,
        source: GenePanel,
        orthologs: Mapping[str, str] | None = None,
        case_sensitive: bool = True,
    ) -> PanelAlignment:
        """Map the genes of ``source`` onto this panel by name.

        Parameters
        ----------
        source
            The panel of the data to be aligned to this (target) panel.
        orthologs
            Optional mapping from this panel's symbols to the source's symbols (for example mouse
            ``Slc17a7`` to human ``SLC17A7``), consulted before the plain name.
        case_sensitive
            When False, names match regardless of case (a fallback for ortholog symbols that
            differ only in case).

        Returns
        -------
        PanelAlignment
            Positions in ``source`` of each of this panel's genes, and what is missing or unused.
        """
        lookup = dict(source._index)
        if not case_sensitive:
            for n, i in source._index.items():
                lookup.setdefault(n.lower(), i)
        target_index = np.full(len(self), -1, dtype=np.int64)
        for t, name in enumerate(self._names):
            candidates = [orthologs[name]] if orthologs and name in orthologs else []
            candidates.append(name)
            for cand in candidates:
                key = cand if case_sensitive or cand in lookup else cand.lower()
                if key in lookup:
                    target_index[t] = lookup[key]
                    break
        used = set(target_index[target_index >= 0].tolist())
        return PanelAlignment(
            target_index=target_index,
            missing=tuple(n for n, i in zip(self._names, target_index, strict=True) if i < 0),
            unused=tuple(n for i, n in enumerate(source._names) if i not in used),
        )

    def union(self, other: GenePanel) -> GenePanel:
        """Genes of this panel, then the genes of ``other`` that this one lacks."""
        return GenePanel(self._names + tuple(n for n in other if n not in self))

    def intersection(self, other: GenePanel) -> GenePanel:
        """Genes present in both panels, in this panel's order."""
        common = tuple(n for n in self._names if n in other)
        if not common:
            raise ValueError("the two gene panels share no gene names")
        return GenePanel(common)


#: Below this share of the model's genes a human store is refused (see :func:`align_model_panel`).
MIN_ORTHOLOG_SHARE = 0.5


@dataclass(frozen=True)
class ModelPanelReport:
    """How a store's panel serves a model's genes: shared genes, orthologs, what is missing.

    Attributes
    ----------
    model_genes
        The model's genes, in model order.
    alignment
        Store positions of every model gene (:class:`PanelAlignment`, target = the model).
    orthologs
        Model gene -> store gene for the genes found under their human ortholog symbol (empty
        for a store named like the model).
    store_size
        Genes in the store's panel.
    """

    model_genes: tuple[str, ...]
    alignment: PanelAlignment
    orthologs: dict[str, str]
    store_size: int

    @property
    def n_shared(self) -> int:
        """Model genes the store measures."""
        return int(self.alignment.present.sum())

    @property
    def share(self) -> float:
        """Fraction of the model's genes the store measures."""
        return self.n_shared / len(self.model_genes)

    @property
    def missing(self) -> tuple[str, ...]:
        """Model genes the store lacks (fed as zero counts)."""
        return self.alignment.missing

    @property
    def uses_orthologs(self) -> bool:
        """Whether the store is matched through human ortholog symbols (a human section)."""
        return bool(self.orthologs)

    @property
    def missing_pathways(self) -> dict[str, tuple[str, ...]]:
        """Pathway presets with genes the store (or the model) lacks -> those genes."""
        out = {}
        for name, genes in PATHWAYS.items():
            gone = tuple(g for g in genes if g not in self.model_genes or g in self.missing)
            if gone:
                out[name] = gone
        return out

    def summary(self) -> str:
        """A few lines for the CLI and the napari widgets."""
        n = len(self.model_genes)
        lines = [
            f"the store measures {self.n_shared} of the model's {n} genes "
            f"({100 * self.share:.0f} %); {len(self.missing)} missing genes are fed as zero"
        ]
        if self.orthologs:
            shown = ", ".join(f"{m}->{h}" for m, h in list(self.orthologs.items())[:8])
            more = f", ... ({len(self.orthologs)} in all)" if len(self.orthologs) > 8 else ""
            lines.append(f"human orthologs used: {shown}{more}")
        if self.missing:
            lines.append(f"missing: {', '.join(self.missing[:12])}"
                         + (", ..." if len(self.missing) > 12 else ""))  # fmt: skip
        lines.extend(self.pathway_lines())
        return "\n".join(lines)

    def pathway_lines(self) -> list[str]:
        """One line per pathway preset that cannot be mapped, saying which genes and why.

        Examples
        --------
        >>> r = align_model_panel(GenePanel.named("human-orthologs-81"), GenePanel(["SLC17A7"]))
        >>> print(r.pathway_lines()[1])  # doctest: +ELLIPSIS
        DOPA (Nr4a2-Th) cannot be mapped: Th is not in the model's 81 genes: ...
        """
        lines = []
        for name, genes in self.missing_pathways.items():
            why = self._core_reason(genes) or (
                f"{', '.join(genes)} not measured by the store or not in the model"
            )
            lines.append(f"{name} ({'-'.join(PATHWAYS[name])}) cannot be mapped: {why}")
        return lines

    def check(self, min_share: float = MIN_ORTHOLOG_SHARE) -> None:
        """Refuse a human store that shares too few of the model's genes.

        Raises
        ------
        ValueError
            Saying how many genes are shared, which pathway genes are missing and what to do.
        """
        if self.uses_orthologs and self.share < min_share:
            paths = "; ".join(f"{k} lacks {', '.join(v)}" for k, v in self.missing_pathways.items())
            raise ValueError(
                f"the human store shares only {self.n_shared} of the model's "
                f"{len(self.model_genes)} genes ({100 * self.share:.0f} %, through their human "
                f"orthologs; at least {100 * min_share:.0f} % needed)"
                + (f"; pathway genes missing: {paths}" if paths else "")
                + ". Use a model trained on the genes that have a human ortholog in the human "
                "panel (`teramind train --gene-slices 1 --panel human-orthologs-81`)"
            )

    def _core_reason(self, genes: Sequence[str]) -> str | None:
        orth, human = human_orthologs(), set(human_panel_names())
        model = set(self.model_genes)
        if not (self.uses_orthologs or model <= set(orth)):
            return None
        gone = [g for g in genes if g not in orth and g.upper() not in human]
        if not gone:
            return None
        parts = []
        for g in gone:
            if g in model:
                parts.append(
                    f"{g} is in the model, but the {HUMAN_PANEL} panel has no {g.upper()}: "
                    "human sections do not measure it"
                )
            else:
                parts.append(
                    f"{g} is not in the model's {len(model)} genes: the {HUMAN_PANEL} panel "
                    f"has no {g.upper()}, so a model of human sections cannot know it"
                )
        return "; ".join(parts)

    def unavailable_reason(self, genes: Sequence[str]) -> str | None:
        """Why genes are unavailable, when the human path explains it.

        Returns a message for genes without a human ortholog in the human panel (TH of the
        DOPA pathway) asked of a human store or of a model of the human path, naming the
        pathways that cannot be mapped and those that can; else ``None``.

        Examples
        --------
        >>> r = align_model_panel(GenePanel.named("human-orthologs-81"), GenePanel(["SLC17A7"]))
        >>> print(r.unavailable_reason(["Th"]))  # doctest: +ELLIPSIS
        Th is not in the model's 81 genes: the human-brain-panel-319 panel has no TH, ...
        """
        core = self._core_reason(genes)
        if core is None:
            return None
        orth, human = human_orthologs(), set(human_panel_names())
        gone = {g for g in genes if g not in orth and g.upper() not in human}
        present = dict(zip(self.model_genes, self.alignment.present, strict=True))
        blocked = [k for k, v in PATHWAYS.items() if set(v) & gone]
        usable = [k for k, v in PATHWAYS.items() if all(present.get(g, False) for g in v)]
        text = core
        if blocked:
            text += "; " + ", ".join(f"{k} ({'-'.join(PATHWAYS[k])})" for k in blocked)
            text += " cannot be mapped on human sections"
        if usable:
            text += "; " + ", ".join(f"{k} ({'-'.join(PATHWAYS[k])})" for k in usable) + " can"
        return text


def align_model_panel(
    model_genes: Sequence[str] | GenePanel,
    store_panel: GenePanel,
    orthologs: Mapping[str, str] | str | None = "auto",
) -> ModelPanelReport:
    """Align a store's genes to a model's genes by name, through human orthologs if needed.

    Parameters
    ----------
    model_genes
        The model's genes in model order (mouse symbols for every published model).
    store_panel
        The store's panel.
    orthologs
        ``"auto"``: match by name, and for a store named with human symbols (one that the
        built-in mouse-to-human table, :func:`napari_teramind.panels.human_orthologs`, matches
        better) through that table. A mapping model symbol -> store symbol to use it instead,
        ``None`` for names only.

    Returns
    -------
    ModelPanelReport
        The alignment and what it shared, mapped and missed; :meth:`ModelPanelReport.check`
        refuses a human store with too few shared genes.
    """
    model = model_genes if isinstance(model_genes, GenePanel) else GenePanel(model_genes)
    plain = model.align(store_panel)
    table: Mapping[str, str] | None
    if orthologs == "auto":
        table = human_orthologs()
        if not plain.present.all():
            mapped = model.align(store_panel, table)
            if mapped.present.sum() <= plain.present.sum():
                table = None
        else:
            table = None
    elif isinstance(orthologs, str):
        raise ValueError(f"orthologs must be 'auto', a mapping or None, not {orthologs!r}")
    else:
        table = orthologs
    alignment = model.align(store_panel, table) if table else plain
    used = {}
    if table:
        for g, i in zip(model.names, alignment.target_index, strict=True):
            if i >= 0 and store_panel.names[i] != g:
                used[g] = store_panel.names[i]
    return ModelPanelReport(model.names, alignment, used, len(store_panel))
