"""``teramind evaluate``: score a generated brain store against the real one."""

from __future__ import annotations

import argparse

from napari_teramind.cli._args import add_region_argument, add_slices_argument


def _baseline(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--baseline takes NAME=STORE, got {text!r}")
    return name, path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="score a generated brain against the real one (PSNR, SSIM, FID, sFID, nuclei)",
        description=(
            "Compare a generated brain store with the real one on regions inside tissue: PSNR "
            "and SSIM on DAPI, PolyT and [0, DAPI, PolyT] (published settings), FID and sFID "
            "(with local Inception weights), and nuclear count and size (cellpose, or a "
            "classical offline fallback). Baselines (gene-blind stores, the real region's mean "
            "image, the blurred real image) put the numbers in context. Writes per-slice tables "
            "(CSV, Parquet), a summary and figures to --out and prints the summary."
        ),
        epilog=(
            "examples:\n"
            "  teramind evaluate real.zarr generated.zarr --out eval/\n"
            "  teramind evaluate real.zarr gen.zarr --baseline blind=blind.zarr --out eval/ \\\n"
            "      --inception-weights pt_inception-2015-12-05-6726825d.pth --slices 0-3\n"
            "  teramind evaluate real.zarr gen.zarr --region 4096 5120 8192 9216 --out eval/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("real", metavar="REAL", help="the real brain store")
    p.add_argument("generated", metavar="GENERATED", help="the generated brain store")
    p.add_argument(
        "--baseline", type=_baseline, action="append", default=[], metavar="NAME=STORE",
        help="another generated store to score as a baseline (repeatable), e.g. gene-blind",
    )  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="directory for tables and figures")
    p.add_argument("--region-size", type=int, default=1024, help="region edge in px (default 1024)")
    p.add_argument("--n-regions", type=int, default=4, help="regions sampled per slice (default 4)")
    p.add_argument("--seed", type=int, default=0, help="region sampling seed (default 0)")
    p.add_argument(
        "--min-tissue", type=float, default=0.5,
        help="minimum tissue fraction of a sampled region (default 0.5)",
    )  # fmt: skip
    add_region_argument(
        p, repeatable=True,
        help="evaluate this region (image px) on every slice instead of sampling (repeatable; "
        "the older Y0,Y1,X0,X1 form also reads)",
    )  # fmt: skip
    p.add_argument(
        "--whole", action="store_true",
        help="evaluate the whole brain, tiled into --region-size squares",
    )  # fmt: skip
    add_slices_argument(p, help="slices (default: all)")
    p.add_argument(
        "--metrics", default=None,
        help="comma-separated subset of psnr,ssim,nuclei,fid,sfid (default: psnr,ssim,nuclei "
        "and fid,sfid when Inception weights are available)",
    )  # fmt: skip
    p.add_argument(
        "--inception-weights", default=None, metavar="PATH",
        help="FID Inception weights pt_inception-2015-12-05-6726825d.pth "
        "(or $TERAMIND_INCEPTION_WEIGHTS); see docs/evaluation.md",
    )  # fmt: skip
    p.add_argument(
        "--nuclei", choices=("auto", "classical", "cellpose"), default="auto",
        help="nuclei segmentation: cellpose when its weights are present (auto), or classical",
    )  # fmt: skip
    p.add_argument(
        "--cellpose-models", default=None, metavar="DIR",
        help="directory holding cellpose's cyto weights (default: cellpose's cache)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_teramind.evaluate import evaluate_stores

    if args.whole and args.region:
        raise ValueError("give either --whole or --region, not both")
    metrics = None
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]

    from napari_teramind.cli._progress import Bar

    progress = Bar("evaluate", "region", args.quiet)
    report = evaluate_stores(
        args.real,
        args.generated,
        baselines=dict(args.baseline),
        regions="all" if args.whole else args.region,
        region_size=args.region_size,
        n_regions=args.n_regions,
        seed=args.seed,
        slices=args.slices,
        metrics=metrics,
        inception_weights=args.inception_weights,
        nuclei=args.nuclei,
        cellpose_models=args.cellpose_models,
        min_tissue=args.min_tissue,
        progress=progress,
    )
    progress.close()
    paths = report.write(args.out)
    print(report.summary_text())
    print(f"wrote {len(paths)} files to {args.out}: {', '.join(sorted(paths))}")
    return 0
