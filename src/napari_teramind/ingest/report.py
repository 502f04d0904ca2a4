"""The ingest report: what was read, binned and dropped (and why), per slice and per gene."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPORT_FILE = "ingest_report.json"

#: Reasons a transcript is left out, with the sentence the report prints for each.
DROP_REASONS = {
    "control_probe": "blank or control barcode",
    "nan_coordinate": "NaN or infinite coordinate",
    "outside_canvas": "outside the canvas after registration",
    "gene_not_in_panel": "gene not in the store's panel",
    "missing_gene_name": "empty gene name",
    "count_overflow": "block count above 65535 (clipped to uint16)",
}


@dataclass
class SliceReport:
    """Counts of one slice.

    Attributes
    ----------
    z
        Slice index in the store.
    source
        Where the slice came from (directory, file, tile set).
    read
        Transcript rows read for this slice.
    binned
        Transcripts added to the gene counts.
    dropped
        Reason to number of transcripts left out.
    per_gene
        Store gene name to transcripts binned.
    controls
        Control/blank barcode name to transcripts left out.
    unknown_genes
        Gene names not in the panel to transcripts left out.
    missing_genes
        Store genes this slice does not measure (recorded as missing, not zero).
    images
        Stain to a description of the image written (source, intensity mapping).
    """

    z: int
    source: str = ""
    read: int = 0
    binned: int = 0
    dropped: Counter = field(default_factory=Counter)
    per_gene: Counter = field(default_factory=Counter)
    controls: Counter = field(default_factory=Counter)
    unknown_genes: Counter = field(default_factory=Counter)
    missing_genes: list[str] = field(default_factory=list)
    images: dict[str, Any] = field(default_factory=dict)

    def add_gene_counts(self, names: Iterable[str], counts: np.ndarray, into: str) -> None:
        """Add ``counts[i]`` to the counter ``into`` under ``names[i]`` (non-zero only)."""
        counter: Counter = getattr(self, into)
        for name, n in zip(names, counts.tolist(), strict=True):
            if n:
                counter[name] += int(n)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "z": self.z,
            "source": self.source,
            "read": self.read,
            "binned": self.binned,
            "dropped": dict(sorted(self.dropped.items())),
            "per_gene": dict(self.per_gene),
            "controls": dict(sorted(self.controls.items())),
            "unknown_genes": dict(sorted(self.unknown_genes.items())),
            "missing_genes": list(self.missing_genes),
            "images": self.images,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SliceReport:
        """Inverse of :meth:`to_json`."""
        return cls(
            z=int(obj["z"]),
            source=obj.get("source", ""),
            read=int(obj.get("read", 0)),
            binned=int(obj.get("binned", 0)),
            dropped=Counter(obj.get("dropped", {})),
            per_gene=Counter(obj.get("per_gene", {})),
            controls=Counter(obj.get("controls", {})),
            unknown_genes=Counter(obj.get("unknown_genes", {})),
            missing_genes=list(obj.get("missing_genes", [])),
            images=dict(obj.get("images", {})),
        )


@dataclass
class IngestReport:
    """The report of one ingest, saved as ``ingest_report.json`` inside the store.

    Attributes
    ----------
    kind
        ``merscope``, ``table`` or ``published``.
    panel
        The store's genes.
    slices
        One :class:`SliceReport` per slice.
    model_genes_missing
        Genes of the target (model) panel that no slice of the sample provides.
    notes
        Free-text remarks (assumptions made, options used).
    orthologs
        The ortholog mapping the ingest was given (panel symbol -> sample symbol, e.g.
        ``Slc17a7 -> SLC17A7``); empty when genes were matched by name only.
    """

    kind: str
    panel: list[str]
    slices: dict[int, SliceReport] = field(default_factory=dict)
    model_genes_missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    orthologs: dict[str, str] = field(default_factory=dict)

    @property
    def read(self) -> int:
        """Transcript rows read over all slices."""
        return sum(s.read for s in self.slices.values())

    @property
    def binned(self) -> int:
        """Transcripts binned over all slices."""
        return sum(s.binned for s in self.slices.values())

    @property
    def dropped(self) -> Counter:
        """Reason to transcripts dropped over all slices."""
        out: Counter = Counter()
        for s in self.slices.values():
            out.update(s.dropped)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "kind": self.kind,
            "totals": {
                "read": self.read,
                "binned": self.binned,
                "dropped": dict(sorted(self.dropped.items())),
            },
            "panel": list(self.panel),
            "model_genes_missing": list(self.model_genes_missing),
            "orthologs": dict(self.orthologs),
            "notes": list(self.notes),
            "drop_reasons": DROP_REASONS,
            "slices": {str(z): s.to_json() for z, s in sorted(self.slices.items())},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> IngestReport:
        """Inverse of :meth:`to_json`."""
        return cls(
            kind=obj["kind"],
            panel=list(obj["panel"]),
            slices={int(z): SliceReport.from_json(s) for z, s in obj.get("slices", {}).items()},
            model_genes_missing=list(obj.get("model_genes_missing", [])),
            notes=list(obj.get("notes", [])),
            orthologs=dict(obj.get("orthologs", {})),
        )

    def save(self, store_path: str | Path) -> Path:
        """Write the report atomically into the store directory; returns its path."""
        from napari_teramind.atomic import write_json_atomic

        path = Path(store_path) / REPORT_FILE
        write_json_atomic(path, self.to_json())
        return path

    @classmethod
    def load(cls, store_path: str | Path) -> IngestReport:
        """Read the report saved in a store."""
        from napari_teramind.atomic import read_json

        path = Path(store_path) / REPORT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{store_path} has no ingest report ({REPORT_FILE})")
        return cls.from_json(read_json(path))

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.kind} ingest: {len(self.slices)} slices, {len(self.panel)} genes; "
            f"{self.read:,} transcripts read, {self.binned:,} binned"
        ]
        for reason, n in sorted(self.dropped.items()):
            lines.append(f"  dropped {n:,}: {DROP_REASONS.get(reason, reason)}")
        for z, s in sorted(self.slices.items()):
            extra = f", {len(s.missing_genes)} genes missing" if s.missing_genes else ""
            drop = sum(s.dropped.values())
            lines.append(
                f"  slice {z}: {s.read:,} read, {s.binned:,} binned, {drop:,} dropped{extra}"
                f"  ({s.source})"
            )
        if self.model_genes_missing:
            head = ", ".join(self.model_genes_missing[:20])
            more = "" if len(self.model_genes_missing) <= 20 else ", ..."
            lines.append(
                f"  the sample lacks {len(self.model_genes_missing)} model genes: {head}{more}"
            )
        if self.orthologs:
            lines.extend(f"  {line}" for line in self.ortholog_lines())
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def ortholog_lines(self) -> list[str]:
        """The ortholog mapping in words: mapped and unmapped genes, shares, pathway genes.

        The panel is the model's (the target of ``--panel``, mouse symbols); the sample's
        genes are those it measured (binned into the panel, or left out as not in it).
        """
        from napari_teramind.store import GenePanel, align_model_panel

        lacking = set(self.model_genes_missing)
        mapped = [g for g in self.panel if g not in lacking]
        renamed = [g for g in mapped if self.orthologs.get(g, g) != g]
        unknown = {g for s in self.slices.values() for g in s.unknown_genes}
        n_sample = len({self.orthologs.get(g, g) for g in mapped} | unknown)
        n = len(self.panel)
        lines = [
            f"ortholog mapping: {len(mapped)} of the panel's {n} genes mapped "
            f"({100 * len(mapped) / max(n, 1):.0f} % of the model's panel), "
            f"{len(renamed)} through their ortholog symbol; they are {len(mapped)} of the "
            f"{n_sample} genes the sample measured "
            f"({100 * len(mapped) / max(n_sample, 1):.0f} % of the sample's panel)"
        ]
        if renamed:
            shown = ", ".join(f"{self.orthologs[g]}->{g}" for g in renamed[:8])
            lines.append(f"renamed: {shown}" + (", ..." if len(renamed) > 8 else ""))
        if lacking:
            gone = [g for g in self.panel if g in lacking]
            shown = ", ".join(f"{g} ({self.orthologs.get(g, g)})" for g in gone[:12])
            lines.append(
                f"unmapped: {len(gone)} panel genes the sample lacks (zero counts): {shown}"
                + (", ..." if len(gone) > 12 else "")
            )
        report = align_model_panel(self.panel, GenePanel(mapped or ["-"]), orthologs=None)
        lines.extend(f"pathway {line}" for line in report.pathway_lines())
        return lines
