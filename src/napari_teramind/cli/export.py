"""``teramind export ome-tiff``: a slice of a brain store as a pyramidal OME-TIFF for QuPath."""

from __future__ import annotations

from napari_teramind.cli._args import add_region_argument


def _ome_tiff(args) -> int:
    from tqdm.auto import tqdm

    from napari_teramind.export import export_ome_tiff
    from napari_teramind.store import BrainStore

    store = BrainStore.open(args.store, allow_incomplete=args.allow_incomplete)
    bar = tqdm(desc="tile rows", unit="row", disable=args.quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        path = export_ome_tiff(
            store,
            args.out,
            slice_index=args.slice,
            stains=args.stain,
            gene=args.gene,
            tile=args.tile,
            compression=args.compression,
            quality=args.quality,
            overwrite=args.overwrite,
            progress=progress,
            region=args.region,
            whole=args.whole,
        )
    finally:
        bar.close()
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    """Add ``teramind export``."""
    p = subparsers.add_parser(
        "export",
        help="export a brain store to other formats",
        description="Export brain stores for other tools.",
    )
    sub = p.add_subparsers(dest="format", metavar="<format>", required=True)
    o = sub.add_parser(
        "ome-tiff",
        help="one slice as a pyramidal, tiled OME-TIFF (opens in QuPath)",
        description="Write one slice (DAPI and/or PolyT, or one gene's counts) of a brain "
        "store, real or generated, as a tiled, compressed, pyramidal BigTIFF "
        "OME-TIFF with physical pixel sizes. QuPath: File > Open.",
    )
    o.add_argument("store", help="brain store")
    o.add_argument("-o", "--out", required=True, help="output file (*.ome.tif)")
    o.add_argument("--slice", type=int, required=True, help="slice index")
    o.add_argument(
        "--stain",
        nargs="+",
        default=["DAPI", "PolyT"],
        choices=["DAPI", "PolyT"],
        help="channels to export (default: both)",
    )
    o.add_argument("--gene", default=None, help="export this gene's block counts instead")
    o.add_argument("--tile", type=int, default=256, help="tile edge in pixels (default 256)")
    o.add_argument(
        "--compression",
        default="zlib",
        choices=["zlib", "jpeg", "lzw", "zstd", "none"],
        help="zlib (lossless, default) or jpeg (lossy, smaller), ...",
    )
    o.add_argument("--quality", type=int, default=90, help="JPEG quality")
    o.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="export from a store whose writer has not finished",
    )
    add_region_argument(
        o,
        help="export this region (image px); default: what the store holds on the slice (the "
        "whole canvas, or the region a generated store covers)",
    )
    o.add_argument(
        "--whole", action="store_true",
        help="export the whole canvas even from a generated store that covers a region only",
    )  # fmt: skip
    o.add_argument("--overwrite", action="store_true", help="replace an existing file")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.set_defaults(func=_ome_tiff)
