"""``teramind phantom``: write a synthetic phantom brain store."""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` sub-command."""
    p = subparsers.add_parser(
        "phantom",
        help="write a synthetic phantom brain (deterministic from a seed, any size)",
        description=(
            "Write a phantom brain store: a stylised coronal-section-like brain with layered "
            "cortex, hippocampus, thalamus, striatum, midbrain with SN/VTA, olfactory bulbs, "
            "white matter and ventricles; DAPI nuclei and PolyT cytoplasm; transcript counts "
            "per 16-px block of a gene panel taken from the published 638850 panel, sampled "
            "around nuclei by region-specific programs (GLUT: Slc17a6/Slc17a7, DOPA: Nr4a2/Th, "
            "BLOD: Cldn5/Aqp4 on vessels). Region labels and the planted programs are stored "
            "with it. Written chunk by chunk: memory stays bounded for any size."
        ),
        epilog=(
            "examples:\n"
            "  teramind phantom phantom.zarr                      # 8 x 2048 x 3072 px\n"
            "  teramind phantom tiny.zarr --slices 2 --height 512 --width 768 --genes 32\n"
            "  teramind phantom pairs.zarr --slices 4 --height 1024 --width 1536 --genes 6 "
            "--interactions [--high-fraction 0.3]\n"
            "  teramind phantom big.zarr --slices 4 --height 32768 --width 32768 --workers 2\n"
            "  teramind phantom human.zarr --human --height 512 --width 768   # one section"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT.zarr", help="path of the brain store to write")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--slices", type=int, default=None, help="number of sections (default: 8; 1 with --human)"
    )
    p.add_argument(
        "--height", type=int, default=2048, help="section height in px, a multiple of 16 (2048)"
    )
    p.add_argument(
        "--width", type=int, default=3072, help="section width in px, a multiple of 16 (3072)"
    )
    p.add_argument(
        "--genes",
        type=int,
        default=None,
        metavar="N",
        help="number of genes (>= 6; default: the 48 curated genes; up to 500 from the panel)",
    )
    p.add_argument(
        "--pixel-size", type=float, default=2.0, help="pixel size in um to record (default: 2.0)"
    )
    p.add_argument(
        "--slice-spacing", type=float, default=200.0, help="section spacing in um (default: 200)"
    )
    p.add_argument(
        "--human",
        action="store_true",
        help="a human-like phantom: the 319-gene human panel in human symbols (GLUT genes "
        "SLC17A6/SLC17A7 planted; no TH, so no DOPA); one section unless --slices is given",
    )
    p.add_argument(
        "--interactions",
        action="store_true",
        help="plant gene-gene interactions: 20 extra genes in AND, control and additive pairs "
        "(docs/attention.md); the truth is stored with the phantom",
    )
    p.add_argument(
        "--high-fraction",
        type=float,
        metavar="F",
        help="with --interactions: fraction of the tissue where each interaction gene is high "
        "(default 0.5; 0.3 puts the AND phenotype on about a third of the tissue)",
    )
    p.add_argument(
        "--interaction-expression",
        choices=("nucleus", "tissue"),  # phantom.interactions.EXPRESSION_MODES (not imported
        # here: the parser is built without the library)
        help="with --interactions: transcripts of the interaction genes per nucleus (default) "
        "or per tissue block, whatever nuclei lie there (no gene then tells where nuclei are)",
    )
    p.add_argument("--workers", type=int, default=2, help="rendering threads (default: 2)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.zarr if it exists")
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_teramind.phantom import PhantomSpec, write_phantom
    from napari_teramind.phantom.interactions import DEFAULT_HIGH_FRACTION, EXPRESSION_MODES

    if args.human and args.genes is not None:
        raise ValueError("--human takes the 319-gene human panel; drop --genes")
    for flag, value in (("--high-fraction", args.high_fraction),
                        ("--interaction-expression", args.interaction_expression)):  # fmt: skip
        if value is not None and not args.interactions:
            raise ValueError(f"{flag} sets the planted interactions; add --interactions")
    if args.high_fraction is not None and not 0 < args.high_fraction < 1:
        raise ValueError(f"--high-fraction must lie between 0 and 1, got {args.high_fraction:g}")
    spec = PhantomSpec(
        seed=args.seed,
        n_slices=args.slices if args.slices is not None else (1 if args.human else 8),
        height=args.height,
        width=args.width,
        n_genes=args.genes,
        pixel_size_um=args.pixel_size,
        slice_spacing_um=args.slice_spacing,
        species="human" if args.human else "mouse",
        interactions=args.interactions,
        interaction_high_fraction=(
            DEFAULT_HIGH_FRACTION if args.high_fraction is None else args.high_fraction
        ),
        interaction_expression=args.interaction_expression or EXPRESSION_MODES[0],
    )
    from napari_teramind.cli._progress import Bar

    t0 = time.perf_counter()
    with Bar("phantom", "chunk", args.quiet) as progress:
        store = write_phantom(
            args.out, spec, progress=progress, overwrite=args.overwrite, workers=args.workers
        )
    dt = time.perf_counter() - t0
    print(f"{store}")
    print(f"wrote {spec.nbytes / 1e6:.0f} MB (level 0, uncompressed) in {dt:.1f} s")
    return 0
