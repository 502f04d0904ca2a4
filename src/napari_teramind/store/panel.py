"""Gene panels: ordered gene names, aligned between datasets by name, never by position."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_teramind.panels import published_panel_names

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
