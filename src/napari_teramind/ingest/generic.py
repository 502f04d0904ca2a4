"""Generic transcript tables (CSV or Parquet with user-named columns) into a brain store."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_teramind.store import GenePanel

from . import registration as reg
from .pipeline import (
    IngestOptions,
    SliceInput,
    check_output,
    make_progress,
    plan_panel,
    run_ingest,
)
from .report import IngestReport
from .resume import file_identity
from .tables import TableColumns, check_columns, natural_order, scan
from .transcripts import GeneCoder

UNITS = ("px", "um")


def ingest_table(
    tables: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    columns: TableColumns,
    pixel_size_um: float,
    units: str = "px",
    micron_to_pixel: np.ndarray | None = None,
    slice_values: Sequence[str] | None = None,
    canvas: tuple[int, int] | None = None,
    images: Mapping[int, Mapping[str, str | os.PathLike[str]]] | None = None,
    registration: Mapping[int, np.ndarray] | None = None,
    panel: GenePanel | None = None,
    panel_mode: str = "same",
    orthologs: Mapping[str, str] | None = None,
    case_sensitive: bool = True,
    slice_spacing_um: float = 100.0,
    options: IngestOptions | None = None,
    overwrite: bool = False,
) -> IngestReport:
    """Ingest transcript tables with user-named columns.

    Parameters
    ----------
    tables
        CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet files. Without a slice column each
        file is one slice, in order; with one, all files are read and the column names the slice.
    out
        The brain store to write.
    columns
        Names of the gene, x, y and (optional) slice columns.
    pixel_size_um
        Pixel size of the canvas (and of coordinates given in pixels).
    units
        ``px`` (coordinates are canvas pixels before registration) or ``um`` (micrometres).
    micron_to_pixel
        For ``um``: the 3 x 3 affine from micrometres to pixels; by default a scaling by
        ``1 / pixel_size_um``.
    slice_values
        Values of the slice column in slice order (by default all values found, in numeric
        order when they are numbers).
    canvas
        ``(height, width)`` in pixels; by default the largest image, rounded up to 16 px.
    images
        Slice to ``{"DAPI": path, "PolyT": path}``.
    registration
        Slice to a 3 x 3 affine from the slice's pixels to the canvas.
    panel, panel_mode, orthologs, case_sensitive
        Gene panel choice, as for :func:`~napari_teramind.ingest.merscope.ingest_merscope`.
    slice_spacing_um
        Distance between slices.
    options
        Shared options.
    overwrite
        Replace an existing ingested store (never an input, a file or a directory this
        project did not write).
    """
    options = options or IngestOptions()
    options.columns = columns
    paths = [Path(t) for t in tables]
    if not paths:
        raise ValueError("give at least one transcript table")
    read = [("transcript table", p) for p in paths]
    read += [(f"{k} image", v) for m in (images or {}).values() for k, v in m.items()]
    check_output(out, overwrite, read)  # before reading anything
    for p in paths:
        check_columns(p, columns)
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, not {units!r}")
    if pixel_size_um <= 0:
        raise ValueError("pixel_size_um must be positive")
    if units == "um":
        m2p = (
            reg.as_affine(micron_to_pixel, "micron_to_pixel")
            if micron_to_pixel is not None
            else np.diag([1 / pixel_size_um, 1 / pixel_size_um, 1.0])
        )
    else:
        m2p = np.eye(3)
    bars = make_progress(options.progress)
    ctl = GeneCoder({}, options.control_pattern)
    counts = None
    if panel is None or (columns.slice and slice_values is None):
        bar = bars(desc="scanning genes and slices", unit="row")
        counts = scan(paths, columns, options.chunk_rows, bar) if columns.slice else {}
        if not columns.slice:
            for i, p in enumerate(paths):
                counts[str(i)] = scan([p], columns, options.chunk_rows, bar).get("", {})
        bar.close()
    if columns.slice:
        if slice_values is None:
            assert counts is not None
            if "<null>" in counts:
                raise ValueError(
                    f"{counts['<null>'] and sum(counts['<null>'].values())} rows have an empty "
                    f"slice value in column {columns.slice!r}; fix or remove them"
                )
            slice_values = natural_order(counts)
        values = [str(v) for v in slice_values]
        entries = [(z, v, tuple(paths)) for z, v in enumerate(values)]
    else:
        entries = [(z, None, (p,)) for z, p in enumerate(paths)]
    registration = dict(registration or {})
    images = {int(k): dict(v) for k, v in (images or {}).items()}
    bad = sorted((set(registration) | set(images)) - {e[0] for e in entries})
    if bad:
        raise ValueError(f"registration/images name slices {bad} that the tables do not have")
    slices = []
    shapes = []
    for z, v, ts in entries:
        r = reg.as_affine(registration.get(z, np.eye(3)), what=f"registration of slice {z}")
        imgs = {k: Path(p) for k, p in images.get(z, {}).items()}
        for k in imgs:
            if k not in ("DAPI", "PolyT"):
                raise ValueError(f"image stain must be DAPI or PolyT, not {k!r}")
        if imgs:
            from .images import ImageSource

            with ImageSource.open(next(iter(imgs.values())), options.image_channel) as src:
                shapes.append(src.shape)
        src_name = f"{', '.join(map(str, ts))}" + (f" [{columns.slice}={v}]" if v else "")
        slices.append(
            SliceInput(
                z=z,
                source=src_name,
                tables=ts,
                slice_value=v,
                table_to_canvas=r @ m2p,
                images=imgs,
                image_to_canvas=r,
            )
        )
    if canvas is None:
        if not shapes:
            raise ValueError("give the canvas size (canvas=(height, width), --canvas H W)")
        canvas = (max(s[0] for s in shapes), max(s[1] for s in shapes))
    height, width = (-(-int(n) // 16) * 16 for n in canvas)
    slice_genes = None
    if counts is not None and panel is None:
        slice_genes = {}
        for z, v, _ in entries:
            key = v if columns.slice else str(z)
            names = counts.get(key, {})
            slice_genes[z] = [g for g in names if g and ctl.code(g) != -2]
        for s in slices:
            if not slice_genes[s.z]:
                rows = sum(counts.get(s.slice_value if columns.slice else str(s.z), {}).values())
                raise ValueError(
                    f"slice {s.z} ({s.source}) has no transcript of any gene: "
                    + (
                        f"its {rows} rows have an empty {columns.gene!r} or a control probe"
                        if rows
                        else "the table has no rows (a header at most)"
                    )
                    + "; check the table and --gene-column"
                )
    plan = plan_panel(slice_genes, panel_mode, panel, orthologs, case_sensitive)
    config = {
        "layout": "table",
        "inputs": [file_identity(p) for p in paths],
        "columns": [columns.gene, columns.x, columns.y, columns.slice],
        "units": units,
        "m2p": m2p.tolist(),
        "slices": [e[1] for e in entries],
        "images": {z: {k: file_identity(p) for k, p in v.items()} for z, v in images.items()},
        "registration": {z: np.asarray(m).tolist() for z, m in registration.items()},
        "panel_mode": panel_mode,
        "orthologs": dict(orthologs or {}),
        "options": {"control": options.control_pattern, "intensity": options.intensity_range},
    }
    provenance = {
        "source": "transcript table",
        "tables": [str(p.resolve()) for p in paths],
        "columns": {"gene": columns.gene, "x": columns.x, "y": columns.y, "slice": columns.slice},
        "units": units,
        "slice_values": [e[1] for e in entries],
        "registration": {str(z): np.asarray(m).tolist() for z, m in registration.items()},
    }
    return run_ingest(
        out,
        slices,
        plan,
        height=height,
        width=width,
        pixel_size_um=pixel_size_um,
        slice_spacing_um=slice_spacing_um,
        kind="table",
        provenance=provenance,
        options=options,
        config=config,
        overwrite=overwrite,
    )
