"""The ingest driver shared by every input layout: slices in, one brain store out.

A layout module (MERSCOPE, generic tables, ...) describes each slice as a :class:`SliceInput`
(tables, images and the affines that place them on the canvas); :func:`run_ingest` bins the
transcripts, writes the images chunk by chunk, records each finished slice, saves the report and
finalises the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_teramind.store import BrainStore, BrainStoreError, GenePanel, check_replaceable
from napari_teramind.store.errors import OverwriteRefused
from napari_teramind.store.overwrite import Found, Input

from .images import ImageSource, IntensityMapping, resample_window
from .report import DROP_REASONS, IngestReport, SliceReport
from .resume import ResumeState, fingerprint
from .tables import DEFAULT_CHUNK_ROWS, TableColumns, iter_chunks
from .transcripts import CONTROL_PATTERN, DEFAULT_BUDGET, GeneCoder, bin_chunks

STAINS = ("DAPI", "PolyT")
PANEL_MODES = ("same", "union", "intersection")


def make_progress(enabled: bool) -> Callable[..., Any]:
    """A factory of progress bars (tqdm), or of silent ones when ``enabled`` is False."""
    from tqdm.auto import tqdm

    def factory(total=None, desc="", unit="it"):
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            disable=not enabled,
            leave=False,
            dynamic_ncols=True,
        )

    return factory


@dataclass
class SliceInput:
    """Everything about one slice of an ingest.

    Attributes
    ----------
    z
        Slice index in the store.
    source
        Human-readable origin (directory or file).
    tables
        Transcript tables of the slice.
    slice_value
        Value of the slice column that selects this slice's rows (tables holding several).
    table_to_canvas
        3 x 3 affine, table coordinates to canvas pixels.
    images
        Stain (``DAPI``, ``PolyT``) to image path.
    image_to_canvas
        3 x 3 affine, mosaic pixels to canvas pixels.
    """

    z: int
    source: str
    tables: tuple[Path, ...] = ()
    slice_value: str | None = None
    table_to_canvas: np.ndarray = field(default_factory=lambda: np.eye(3))
    images: dict[str, Path] = field(default_factory=dict)
    image_to_canvas: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass
class IngestOptions:
    """Options shared by all layouts.

    Attributes
    ----------
    columns
        Column names of the transcript tables.
    control_pattern
        Regular expression of blank/control barcodes (left out and counted).
    chunk_rows
        Rows per chunk read.
    budget
        Bytes the transcript count buffer may use (larger canvases are binned in bands).
    intensity_range
        Stain to a fixed ``(lo, hi)`` uint8 mapping; otherwise uint8 images pass through and
        others map their 0.5-99.9 percentiles.
    image_channel
        Channel to read from multi-channel image files.
    workers
        Threads for image chunks and pyramids.
    progress
        Show progress bars.
    """

    columns: TableColumns = field(default_factory=TableColumns)
    control_pattern: str | None = CONTROL_PATTERN
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    budget: int = DEFAULT_BUDGET
    intensity_range: Mapping[str, tuple[float, float]] | None = None
    image_channel: int | None = None
    workers: int = 2
    progress: bool = True


# ---------------------------------------------------------------------------- panels
@dataclass
class PanelPlan:
    """The store's panel and how each slice's gene names map onto it."""

    panel: GenePanel
    index: dict[str, int]
    lower: dict[str, int] | None
    missing: dict[int, list[str]]
    model_genes_missing: list[str]
    target_mode: bool
    #: Target symbol -> sample symbol used to find the target genes (empty: names only).
    orthologs: dict[str, str] = field(default_factory=dict)

    def coder(self, control_pattern: str | None) -> GeneCoder:
        """A :class:`GeneCoder` for this plan."""
        coder = GeneCoder(self.index, control_pattern)
        if self.lower is not None:
            lower = self.lower
            base = coder.code

            def code(name: str) -> int:
                c = base(name)
                if c == -1 and name.lower() in lower:
                    c = lower[name.lower()]
                    coder._cache[name] = c
                return c

            coder.code = code  # type: ignore[method-assign]
        return coder


def plan_panel(
    slice_genes: Mapping[int, Sequence[str]] | None,
    mode: str = "same",
    target: GenePanel | None = None,
    orthologs: Mapping[str, str] | None = None,
    case_sensitive: bool = True,
) -> PanelPlan:
    """Decide the store's panel from the slices' panels, by gene name.

    Parameters
    ----------
    slice_genes
        Slice to the gene names it measures (controls already removed); may be None with a
        ``target`` (missing genes are then found while binning).
    mode
        ``same`` (all slices must measure the same genes), ``union`` or ``intersection``.
    target
        A fixed panel (a model's genes); overrides ``mode``.
    orthologs
        Target symbol to source symbol (for example mouse ``Slc17a7`` to human ``SLC17A7``).
    case_sensitive
        Match names exactly (True) or regardless of case.

    Raises
    ------
    ValueError
        When ``mode`` is ``same`` and slices measure different genes, or nothing is shared.
    """
    if mode not in PANEL_MODES:
        raise ValueError(f"panel mode must be one of {PANEL_MODES}, not {mode!r}")
    if target is None:
        if not slice_genes:
            raise ValueError("no genes found in the input tables")
        panels = {z: GenePanel(sorted(g)) for z, g in slice_genes.items() if g}
        if len(panels) < len(slice_genes):
            empty = sorted(set(slice_genes) - set(panels))
            raise ValueError(f"slices {empty} have no transcripts of any gene")
        zs = sorted(panels)
        if mode == "same":
            ref = set(panels[zs[0]])
            for z in zs[1:]:
                s = set(panels[z])
                if s != ref:
                    only_a, only_b = sorted(ref - s)[:8], sorted(s - ref)[:8]
                    raise ValueError(
                        f"slices {zs[0]} and {z} have different gene panels ({len(ref)} vs "
                        f"{len(s)} genes; only in {zs[0]}: {only_a}; only in {z}: {only_b}). "
                        "Choose how to combine them: panel mode 'union' (genes a slice lacks "
                        "are recorded as missing) or 'intersection' (only shared genes are kept)."
                    )
        panel = panels[zs[0]]
        for z in zs[1:]:
            panel = panel.union(panels[z]) if mode == "union" else panel.intersection(panels[z])
        if mode != "same":
            panel = GenePanel(sorted(panel.names))
        missing = {z: list(panel.align(panels[z]).missing) for z in zs}
        return PanelPlan(panel, {n: i for i, n in enumerate(panel.names)}, None, missing, [], False)
    index: dict[str, int] = {}
    lower: dict[str, int] | None = None if case_sensitive else {}
    for t, name in enumerate(target.names):
        for cand in (orthologs.get(name) if orthologs else None, name):
            if cand and cand not in index:
                index[cand] = t
            if cand and lower is not None and cand.lower() not in lower:
                lower[cand.lower()] = t
    missing: dict[int, list[str]] = {}
    if slice_genes is not None:
        for z, genes in slice_genes.items():
            missing[z] = (
                list(target.align(GenePanel(sorted(genes)), orthologs, case_sensitive).missing)
                if genes
                else list(target.names)
            )
    plan = PanelPlan(target, index, lower, missing, [], True, dict(orthologs or {}))
    plan.model_genes_missing = sorted({g for m in missing.values() for g in m}, key=target.index)
    return plan


def read_orthologs(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a CSV of model symbol to sample symbol (e.g. ``Slc17a7,SLC17A7``).

    ``human-orthologs-81`` names the built-in table of the 81 mouse genes with a human
    ortholog in the 319-gene human panel. A file with a header holding ``mouse_symbol`` and
    ``human_symbol`` (the layout of that table) uses those columns; otherwise a header naming
    the columns is optional and the first two columns are used.
    """
    import csv

    from napari_teramind.panels import ORTHOLOG_PANEL, human_orthologs

    if str(path) == ORTHOLOG_PANEL:
        return human_orthologs()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ortholog table {path} does not exist")
    out: dict[str, str] = {}
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if rows and len(rows[0]) < 2:
        raise ValueError(f"{path}: expected two columns (model symbol, sample symbol)")
    head = [c.strip().lower() for c in rows[0]] if rows else []
    if "mouse_symbol" in head and "human_symbol" in head:
        m, h = head.index("mouse_symbol"), head.index("human_symbol")
        rows = [[r[m], r[h]] for r in rows[1:] if len(r) > max(m, h)]
    for i, row in enumerate(rows):
        if len(row) < 2:
            raise ValueError(f"{path}: row {i + 1} has fewer than two columns")
        a, b = row[0].strip(), row[1].strip()
        if i == 0 and a.lower() in {"mouse", "model", "source", "from", "gene", "symbol"}:
            continue
        if a and b:
            out[a] = b
    if not out:
        raise ValueError(f"{path}: no ortholog pairs found")
    return out


# ---------------------------------------------------------------------------- driver
def check_output(out: str | os.PathLike[str], overwrite: bool, inputs: Sequence[Input]) -> Found:
    """Check that an ingest may write ``out`` (before reading anything, and again on create).

    ``out`` may not be an input (a table, an image, an input directory) nor a parent or a child
    of one; an existing ``out`` is resumed, or replaced with ``overwrite``, only when it is an
    ingested brain store (see :func:`~napari_teramind.store.check_replaceable`).
    """
    return check_replaceable(
        out, replaces=("real",), overwrite=overwrite, inputs=inputs, role="output store",
        reuse=True,
    )  # fmt: skip


def slice_inputs(slices: Sequence[SliceInput]) -> list[Input]:
    """The files an ingest of ``slices`` reads: tables and images."""
    out: list[Input] = []
    for s in slices:
        out.extend(("transcript table", t) for t in s.tables)
        out.extend((f"{stain} image", p) for stain, p in s.images.items())
    return out


def _open_or_create(
    out: Path,
    config_hash: str,
    overwrite: bool,
    create: Callable[[], BrainStore],
    inputs: Sequence[Input] = (),
):
    """Create the store, or reopen it to resume an interrupted ingest of the same inputs."""
    found = check_output(out, overwrite, inputs)
    if found.exists and not overwrite:
        state = ResumeState.load(out)
        if state is None or state.config_hash != config_hash:
            why = "was written by a different ingest" if state else "is not a resumable ingest"
            raise OverwriteRefused(
                f"{out} already exists and {why}; pass overwrite=True (--overwrite) to replace "
                "it, or choose another output store"
            )
        try:
            store = BrainStore.open(out, mode="r+", allow_incomplete=True)
        except BrainStoreError as exc:
            raise OverwriteRefused(
                f"{out} cannot be resumed ({exc}); pass overwrite=True (--overwrite) to replace "
                "it, or choose another output store"
            ) from None
        return store, state
    store = create()
    state = ResumeState(out, config_hash)
    state.save()
    return store, state


def keep_empty_chunks():
    """Context in which zarr writes chunks even when they hold only the fill value.

    A complete brain store must have every chunk file (an absent chunk means truncation), and
    zarr skips all-zero chunks unless told otherwise; the setting is not stored with the array,
    so every writer of a store needs it.
    """
    import zarr

    return zarr.config.set({"array.write_empty_chunks": True})


def writes_store(func):
    """Decorator: run ``func`` inside :func:`keep_empty_chunks`."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with keep_empty_chunks():
            return func(*args, **kwargs)

    return wrapper


@writes_store
def run_ingest(
    out: str | os.PathLike[str],
    slices: Sequence[SliceInput],
    plan: PanelPlan,
    *,
    height: int,
    width: int,
    pixel_size_um: float,
    slice_spacing_um: float,
    kind: str,
    provenance: Mapping[str, Any],
    options: IngestOptions,
    config: Mapping[str, Any],
    overwrite: bool = False,
    n_slices: int | None = None,
    notes: Sequence[str] = (),
    inputs: Sequence[Input] = (),
) -> IngestReport:
    """Bin, write, record and finalise; resumes an interrupted run of the same configuration.

    Parameters
    ----------
    out
        The brain store to write.
    slices
        The slices (each with a distinct ``z``).
    plan
        The store's panel and name mapping (:func:`plan_panel`).
    height, width
        Canvas size in pixels (multiples of 16).
    pixel_size_um, slice_spacing_um
        Geometry recorded in the store.
    kind
        Input layout (for the report).
    provenance
        Recorded in the store's metadata.
    options
        Shared options.
    config
        JSON-able description of the inputs and options; a resume requires the same.
    overwrite
        Replace an existing ingested store (never anything else, see :func:`check_output`).
    n_slices
        Number of slices of the store (default: one more than the largest ``z``).
    notes
        Remarks copied into the report.
    inputs
        ``(what, path)`` of input directories, beside the slices' tables and images, that
        ``out`` may not overlap.
    """
    out = Path(out)
    inputs = [*inputs, *slice_inputs(slices)]
    zs = [s.z for s in slices]
    if len(set(zs)) != len(zs):
        raise ValueError(f"slice indices must be distinct, got {zs}")
    n_slices = n_slices or (max(zs) + 1)
    config_hash = fingerprint(
        {**dict(config), "panel": list(plan.panel.names), "canvas": [n_slices, height, width]}
    )
    bars = make_progress(options.progress)

    def create() -> BrainStore:
        return BrainStore.create(
            out,
            n_slices=n_slices,
            height=height,
            width=width,
            panel=plan.panel,
            pixel_size_um=pixel_size_um,
            slice_spacing_um=slice_spacing_um,
            kind="real",
            provenance=dict(provenance),
            overwrite=overwrite,
            inputs=inputs,
        )

    store, state = _open_or_create(out, config_hash, overwrite, create, inputs)
    if store.complete:
        return IngestReport.load(out)
    report = IngestReport(
        kind=kind, panel=list(plan.panel.names), notes=list(notes), orthologs=dict(plan.orthologs)
    )
    for z, rep in state.done.items():
        report.slices[z] = SliceReport.from_json(rep)
    coder = plan.coder(options.control_pattern)
    todo = [s for s in slices if s.z not in state.done]
    groups: dict[tuple, list[SliceInput]] = {}
    for s in todo:
        groups.setdefault(tuple(str(t) for t in s.tables), []).append(s)
    for tables, group in groups.items():
        reports = [SliceReport(z=s.z, source=s.source) for s in group]
        if tables:
            _bin_group(store, group, reports, coder, plan, options, bars)
        for s, rep in zip(group, reports, strict=True):
            if not tables:
                rep.missing_genes = list(plan.panel.names)
            _write_images(store, s, rep, options, bars)
            report.slices[s.z] = rep
            state.mark_done(s.z, rep.to_json())
    if plan.target_mode:
        lacking = {g for r in report.slices.values() for g in r.missing_genes}
        report.model_genes_missing = [g for g in plan.panel.names if g in lacking]
    missing = {str(z): r.missing_genes for z, r in sorted(report.slices.items()) if r.missing_genes}
    store.update_metadata(
        {
            "missing_genes": missing,
            "intensity_mapping": {str(z): r.images for z, r in sorted(report.slices.items())},
            "ingest": {
                "kind": kind,
                "report": "ingest_report.json",
                "read": report.read,
                "binned": report.binned,
                "dropped": dict(report.dropped),
                "model_genes_missing": report.model_genes_missing,
            },
        }
    )
    report.save(out)
    bar = bars(total=store.pyramid_chunk_count(), desc="pyramids", unit="chunk")
    store.finalize(progress=bar.update, workers=options.workers)
    bar.close()
    return report


def _bin_group(store, group, reports, coder, plan, options, bars) -> None:
    tables = group[0].tables
    cols = options.columns
    mats = [s.table_to_canvas for s in group]
    slice_of = None
    if cols.slice:
        wanted = {s.slice_value: i for i, s in enumerate(group)}

        def slice_of(values):
            return np.array([wanted.get(v, -1) for v in values] + [-1], dtype=np.int64)

    def read_chunks():
        for t in tables:
            yield from iter_chunks(t, cols, options.chunk_rows)

    bar = bars(
        desc=f"binning slice{'s' if len(group) > 1 else ''} {','.join(str(s.z) for s in group)}",
        unit="row",
    )
    names = list(plan.panel.names)
    try:
        for band, counts in bin_chunks(
            read_chunks,
            coder=coder,
            n_genes=len(names),
            height=store.height,
            width=store.width,
            block=store.gene_block_px,
            matrices=mats,
            slice_of=slice_of,
            reports=reports,
            gene_names=names,
            budget=options.budget,
            progress=bar.update,
        ):
            for s, c in zip(group, counts, strict=True):
                store.write_genes(s.z, band.b0, 0, c)
    finally:
        bar.close()
    for s, rep in zip(group, reports, strict=True):
        check_usable(s, rep, cols, store.path)
    for s, rep in zip(group, reports, strict=True):
        if plan.target_mode:
            seen = getattr(rep, "_seen", set())
            rep.missing_genes = [g for g in names if g not in seen]
        else:
            rep.missing_genes = list(plan.missing.get(s.z, []))
        if hasattr(rep, "_seen"):
            del rep._seen


def check_usable(s: SliceInput, rep: SliceReport, columns: TableColumns, out) -> None:
    """Refuse a slice whose tables gave no transcript to bin: an empty or unusable table.

    A table with no rows, or whose every row is dropped (NaN coordinates, outside the canvas,
    no gene of the panel), would otherwise become a store of zero counts, accepted without a
    word. The message says what was read, why each row was dropped and what to check.

    Raises
    ------
    ValueError
        When ``rep`` (the slice's binning report) counts no binned transcript.
    """
    if rep.binned > 0:
        return
    tables = ", ".join(str(t) for t in s.tables)
    where = f"slice {s.z} ({tables}" + (
        f", rows with {columns.slice} = {s.slice_value!r})" if s.slice_value is not None else ")"
    )
    left = f"; {out} is left incomplete: fix the input, then run the ingest again with --overwrite"
    if rep.read == 0:
        raise ValueError(
            f"{where} has no transcript rows: "
            + (
                f"no row has that {columns.slice} value (check --slice-values)"
                if s.slice_value is not None
                else "the table is empty (a header at most)"
            )
            + left
        )
    why = ", ".join(
        f"{DROP_REASONS.get(r, r)}: {n}"
        for r, n in sorted(rep.dropped.items(), key=lambda i: -i[1])
    )
    raise ValueError(
        f"{where}: none of its {rep.read} transcript rows is usable ({why}); check the columns "
        f"(--x-column {columns.x}, --y-column {columns.y}, --gene-column {columns.gene}), the "
        "units and pixel size, the registration and the canvas size" + left
    )


def _write_images(store: BrainStore, s: SliceInput, rep: SliceReport, options, bars) -> None:
    sources: dict[str, ImageSource | None] = {}
    maps: dict[str, IntensityMapping | None] = {}
    try:
        for stain in STAINS:
            path = s.images.get(stain)
            if path is None:
                sources[stain] = maps[stain] = None
                rep.images[stain] = {"source": None, "note": "no image: written as zeros"}
                continue
            src = ImageSource.open(path, channel=options.image_channel)
            sources[stain] = src
            rng = (options.intensity_range or {}).get(stain)
            maps[stain] = src.mapping(rng)
            rep.images[stain] = {
                "source": str(path),
                "shape": list(src.shape),
                "dtype": str(src.dtype),
                "mapping": maps[stain].to_json(),
            }
        # Slices without images still get every chunk written (zeros): a complete store has
        # no missing chunks.
        ch = store.image_chunk
        wins = [
            (y, min(store.height, y + ch), x, min(store.width, x + ch))
            for y in range(0, store.height, ch)
            for x in range(0, store.width, ch)
        ]
        bar = bars(total=len(wins), desc=f"images slice {s.z}", unit="chunk")

        def one(win):
            y0, y1, x0, x1 = win
            planes = []
            for stain in STAINS:
                src = sources[stain]
                if src is None:
                    planes.append(np.zeros((y1 - y0, x1 - x0), np.uint8))
                else:
                    planes.append(
                        resample_window(src, maps[stain], s.image_to_canvas, y0, y1, x0, x1)
                    )
            store.write_images(s.z, y0, x0, np.stack(planes))

        with ThreadPoolExecutor(max(1, options.workers)) as pool:
            for _ in pool.map(one, wins):
                bar.update(1)
        bar.close()
    finally:
        for src in sources.values():
            if src is not None:
                src.close()
