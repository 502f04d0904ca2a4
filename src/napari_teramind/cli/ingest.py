"""``teramind ingest merscope|table|published``: real data into a brain store."""

from __future__ import annotations

import argparse

from napari_teramind.cli._args import add_slices_argument


def _common(p: argparse.ArgumentParser, tables: bool = True) -> None:
    p.add_argument("-o", "--out", required=True, help="brain store to write (e.g. brain.zarr)")
    p.add_argument(
        "--slice-spacing",
        type=float,
        default=100.0,
        metavar="UM",
        help="distance between slices in micrometres (default 100)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--workers", type=int, default=2, help="threads for images and pyramids")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if not tables:
        return
    p.add_argument(
        "--canvas",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="canvas size in pixels (default: the largest mosaic)",
    )
    p.add_argument(
        "--registration",
        metavar="FILE",
        help="per-slice 2D affines (JSON or CSV, pixels) placing each slice on the "
        "canvas; see docs/ingest.md",
    )
    p.add_argument(
        "--registration-direction",
        default="source_to_canvas",
        choices=["source_to_canvas", "canvas_to_source"],
        help="what the matrices map (canvas_to_source = inverse transforms, e.g. "
        "ABBA exports; they are inverted)",
    )
    p.add_argument(
        "--panel-mode",
        default="same",
        choices=["same", "union", "intersection"],
        help="how slices with different genes combine (default: error if they differ)",
    )
    p.add_argument(
        "--panel",
        metavar="CSV",
        help="fixed gene panel (column 'gene'), e.g. a model's genes; or "
        "published:638850[:N] for the published panel (first N genes), human-orthologs-81 "
        "(the 81 mouse genes with a human ortholog) or human-brain-panel-319",
    )
    p.add_argument(
        "--orthologs",
        metavar="CSV",
        help="two-column table: panel symbol, sample symbol (e.g. Slc17a7,SLC17A7), a table "
        "with mouse_symbol and human_symbol columns, or human-orthologs-81 (the built-in "
        "81-gene mouse-to-human mapping)",
    )
    p.add_argument("--ignore-case", action="store_true", help="match gene names regardless of case")
    p.add_argument(
        "--controls",
        default=None,
        metavar="REGEX",
        help="pattern of blank/control barcodes to leave out (default: Blank-*, "
        "NegControl*, Unassigned*, ...)",
    )
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows read per chunk")
    p.add_argument(
        "--memory",
        type=float,
        default=1.0,
        metavar="GB",
        help="memory for the gene-count buffer (larger canvases are binned in bands)",
    )
    p.add_argument(
        "--dapi-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="fixed DAPI intensity range mapped to 0..255 (default: uint8 as is, "
        "else 0.5-99.9 percentiles per slice)",
    )
    p.add_argument(
        "--polyt-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="fixed PolyT intensity range mapped to 0..255",
    )
    p.add_argument(
        "--channel", type=int, default=None, help="channel to read from multi-channel image files"
    )


def _options(args):
    from napari_teramind.ingest import IngestOptions
    from napari_teramind.ingest.transcripts import CONTROL_PATTERN

    ranges = {}
    if args.dapi_range:
        ranges["DAPI"] = tuple(args.dapi_range)
    if args.polyt_range:
        ranges["PolyT"] = tuple(args.polyt_range)
    return IngestOptions(
        control_pattern=args.controls if args.controls is not None else CONTROL_PATTERN,
        chunk_rows=args.chunk_rows,
        budget=int(args.memory * 2**30),
        intensity_range=ranges or None,
        image_channel=args.channel,
        workers=args.workers,
        progress=not args.quiet,
    )


def _panel_args(args) -> dict:
    from napari_teramind.ingest import load_registration, read_orthologs
    from napari_teramind.store import GenePanel

    panel = GenePanel.named(args.panel) if args.panel else None
    return {
        "panel": panel,
        "panel_mode": args.panel_mode,
        "orthologs": read_orthologs(args.orthologs) if args.orthologs else None,
        "case_sensitive": not args.ignore_case,
        "registration": (
            load_registration(args.registration, args.registration_direction)
            if args.registration
            else None
        ),
        "canvas": tuple(args.canvas) if args.canvas else None,
    }


def _merscope(args) -> int:
    from napari_teramind.ingest import ingest_merscope

    report = ingest_merscope(
        args.directories,
        args.out,
        slice_spacing_um=args.slice_spacing,
        z_plane=args.z_plane,
        images=not args.no_images,
        options=_options(args),
        overwrite=args.overwrite,
        **_panel_args(args),
    )
    print(report.summary())
    print(f"wrote {args.out} (report: {args.out}/ingest_report.json)")
    return 0


def _images_arg(args) -> dict:
    out: dict[int, dict[str, str]] = {}
    for stain, paths in (("DAPI", args.dapi or []), ("PolyT", args.polyt or [])):
        for z, p in enumerate(paths):
            out.setdefault(z, {})[stain] = p
    return out


def _table(args) -> int:
    from napari_teramind.ingest import TableColumns, ingest_table

    cols = TableColumns(
        gene=args.gene_column, x=args.x_column, y=args.y_column, slice=args.slice_column
    )
    m2p = None
    if args.micron_to_pixel:
        from napari_teramind.ingest import read_matrix_file

        m2p = read_matrix_file(args.micron_to_pixel)
    report = ingest_table(
        args.tables,
        args.out,
        columns=cols,
        pixel_size_um=args.pixel_size,
        units=args.units,
        micron_to_pixel=m2p,
        slice_values=args.slice_values,
        images=_images_arg(args),
        slice_spacing_um=args.slice_spacing,
        options=_options(args),
        overwrite=args.overwrite,
        **_panel_args(args),
    )
    print(report.summary())
    print(f"wrote {args.out} (report: {args.out}/ingest_report.json)")
    return 0


def _published(args) -> int:
    from napari_teramind.ingest import ingest_published

    report = ingest_published(
        args.out,
        gene_dir=args.genes,
        image_dir=args.images,
        mouse=args.mouse,
        pixel_size_um=args.pixel_size,
        slice_spacing_um=args.slice_spacing,
        slices=args.slices,
        n_genes=args.n_genes,
        full_canvas=args.full_canvas,
        workers=args.workers,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(report.summary())
    print(f"wrote {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``teramind ingest`` and its layouts."""
    p = subparsers.add_parser(
        "ingest",
        help="turn real data (MERSCOPE, tables, published tiles) into a brain store",
        description="Bin transcripts into gene counts per 16-px block, convert DAPI/PolyT "
        "mosaics to uint8, register slices onto one canvas and write a brain "
        "store with an ingest report. Re-running after an interruption resumes.",
    )
    sub = p.add_subparsers(dest="layout", metavar="<layout>", required=True)

    m = sub.add_parser(
        "merscope",
        help="Vizgen MERSCOPE output directories, one per slice",
        description="One MERSCOPE region directory per slice, in slice order: "
        "detected_transcripts.csv, images/micron_to_mosaic_pixel_transform.csv, "
        "images/mosaic_{DAPI,PolyT}_z{k}.tif. Blank/control barcodes are left out "
        "and counted in the report.",
    )
    m.add_argument("directories", nargs="+", help="MERSCOPE region directories (slice 0, 1, ...)")
    m.add_argument(
        "--z-plane",
        type=int,
        default=None,
        help="mosaic z plane to ingest (default: the middle one)",
    )
    m.add_argument("--no-images", action="store_true", help="ingest transcripts only")
    _common(m)
    m.set_defaults(func=_merscope)

    t = sub.add_parser(
        "table",
        help="generic CSV/Parquet transcript tables with named columns",
        description="Each table is one slice, unless --slice-column names the slice of each "
        "row. Coordinates in pixels (--units px) or micrometres (--units um).",
    )
    t.add_argument("tables", nargs="+", help="CSV (.csv, .csv.gz, .tsv) or Parquet files")
    t.add_argument("--gene-column", default="gene", help="gene column (default: gene)")
    t.add_argument("--x-column", default="x", help="x (column) coordinate (default: x)")
    t.add_argument("--y-column", default="y", help="y (row) coordinate (default: y)")
    t.add_argument("--slice-column", default=None, help="column naming each row's slice")
    t.add_argument(
        "--slice-values",
        nargs="+",
        default=None,
        help="slice-column values in slice order (default: all, sorted)",
    )
    t.add_argument("--units", choices=["px", "um"], default="px", help="coordinate units")
    t.add_argument(
        "--pixel-size",
        type=float,
        required=True,
        metavar="UM",
        help="canvas pixel size in micrometres",
    )
    t.add_argument(
        "--micron-to-pixel",
        metavar="FILE",
        help="3 x 3 affine from micrometres to pixels (default: 1/pixel-size)",
    )
    t.add_argument("--dapi", nargs="+", help="DAPI image per slice (TIFF, OME-TIFF or zarr)")
    t.add_argument("--polyt", nargs="+", help="PolyT image per slice")
    _common(t)
    t.set_defaults(func=_table)

    pub = sub.add_parser(
        "published",
        help="the published Tera-MIND tiles (gene_*/ .npz, img_*/ .zip)",
        description="Per-tile sparse gene counts (.npz, 50 slices x 500 gene slots) and zarr "
        "images (.zip, DAPI then PolyT) as published with Tera-MIND. The store "
        "covers the tiles found; their origin is recorded as canvas_origin_px.",
    )
    pub.add_argument("--genes", help="directory of .npz gene tiles (gene_{mouse}/)")
    pub.add_argument("--images", help="directory of .zip image tiles (img_{mouse}/)")
    pub.add_argument(
        "--mouse",
        default="638850",
        choices=["638850", "609882", "609889"],
        help="which published panel names the gene slots",
    )
    pub.add_argument(
        "--pixel-size",
        type=float,
        required=True,
        metavar="UM",
        help="pixel size to record (the published files do not state it)",
    )
    add_slices_argument(pub, help="published slices (0..49) to ingest (default: all 50)")
    pub.add_argument(
        "--n-genes",
        type=int,
        default=None,
        help="keep the first N gene slots (229 = shared by both panels)",
    )
    pub.add_argument(
        "--full-canvas",
        action="store_true",
        help="make the store the whole 73728 x 106496 px canvas",
    )
    _common(pub, tables=False)
    pub.set_defaults(func=_published)
