"""``teramind attention``: gene-gene attention maps of a brain store."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``attention`` sub-command."""
    p = subparsers.add_parser(
        "attention",
        help="compute gene-gene attention maps (GLUT, DOPA, BLOD or any genes) into a store",
        description=(
            "Compute the attention-weighted expression maps of the model's gene-gene block "
            "(up, down, all and expr per gene, METHOD.md 4.1) over the whole brain or a region, "
            "write them to attention/<name> in the store, optionally with trend plots."
        ),
        epilog=(
            "examples:\n"
            "  teramind attention brain.zarr --pair DOPA\n"
            "  teramind attention brain.zarr --genes Slc17a7 Gad2 --region 0 1024 0 2048 "
            "--slices 2 3\n"
            "  teramind attention brain.zarr --pair GLUT --model ckpt/ --device cuda "
            "--autocast bf16 --plot-dir plots/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE.zarr", help="brain store (opened read-write)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pair", metavar="PRESET", help="GLUT, DOPA or BLOD")
    which.add_argument("--genes", nargs="+", metavar="GENE", help="gene names")
    p.add_argument(
        "--model",
        default="bundled",
        help="'bundled' (default) or a checkpoint directory/file",
    )
    p.add_argument(
        "--region",
        nargs=4,
        type=int,
        metavar=("Y0", "Y1", "X0", "X1"),
        help="region in image px (default: whole sections)",
    )
    p.add_argument("--slices", nargs="+", type=int, metavar="Z", help="slices (default: all)")
    p.add_argument("--name", help="map name (default: the preset or the genes joined by '-')")
    p.add_argument("--plot-dir", help="also write expression-vs-attention trend plots here")
    p.add_argument(
        "--per-slice", action="store_true", help="one trend plot per slice (with --plot-dir)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument(
        "--autocast", choices=("none", "fp16", "bf16"), default="none", help="CUDA autocast"
    )
    p.add_argument("--batch-size", type=int, default=1024, help="patches per attention call")
    p.add_argument("--restart", action="store_true", help="do not resume an unfinished job")
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=_run)


def load_model(spec: str, device: str = "cpu"):
    """Resolve ``--model`` (``bundled``, a checkpoint, a run folder or a published ``.ckpt``).

    The one model loader, :func:`napari_teramind.model.resolve_model`.
    """
    from napari_teramind.model import resolve_model

    return resolve_model(spec, device=device)


def _run(args: argparse.Namespace) -> int:
    from napari_teramind.attention import iter_attention_maps
    from napari_teramind.store import BrainStore

    store = BrainStore.open(args.store, mode="r+")
    model, info = load_model(args.model, device=args.device)
    t0 = time.perf_counter()
    last = 0.0
    gen = iter_attention_maps(
        store,
        model,
        args.pair or args.genes,
        checkpoint=info,
        name=args.name,
        region=args.region,
        slices=args.slices,
        batch_size=args.batch_size,
        device=args.device,
        autocast=None if args.autocast == "none" else args.autocast,
        resume=not args.restart,
    )
    item = None
    for item in gen:
        now = time.perf_counter()
        if not args.quiet and (now - last >= 1.0 or item.done):
            last = now
            pct = 100 * item.units_done / max(1, item.units_total)
            print(
                f"\r  {item.units_done}/{item.units_total} units ({pct:.0f}%)",
                end="\n" if item.done else "",
                file=sys.stderr,
            )
    assert item is not None
    print(f"wrote attention/{item.name} in {time.perf_counter() - t0:.1f} s")
    if args.plot_dir:
        from napari_teramind.attention.plots import trend_plot

        for res in trend_plot(store, item.name, args.plot_dir, per_slice=args.per_slice):
            fits = ", ".join(
                f"{r.gene}: slope {r.slope:.2f}, r {r.r:.2f}" for r in res.fits.itertuples()
            )
            print(f"{res.path}  ({fits})")
    return 0
