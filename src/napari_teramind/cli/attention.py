"""``teramind attention``: gene-gene attention maps of a brain store."""

from __future__ import annotations

import argparse
import time

from napari_teramind.cli._args import add_region_argument, add_slices_argument


def _preset(text: str) -> str:
    """``--pair``: a pathway preset name (an unknown one is refused with the list)."""
    from napari_teramind.attention import preset_genes

    try:
        return preset_genes(text)[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (--genes)") from None


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
            "--autocast bf16 --plot-dir plots/\n"
            "  teramind attention brain.zarr --pair DOPA --contrast random --null-draws 4"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", metavar="STORE.zarr", help="brain store (opened read-write)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pair", metavar="PRESET", type=_preset, help="GLUT, DOPA or BLOD")
    which.add_argument("--genes", nargs="+", metavar="GENE", help="gene names")
    p.add_argument(
        "--model",
        default="bundled",
        help="'bundled' (default) or a checkpoint directory/file",
    )
    add_region_argument(p, help="region in image px (default: whole sections)")
    add_slices_argument(p, help="slices (default: all)")
    p.add_argument("--name", help="map name (default: the preset or the genes joined by '-')")
    p.add_argument("--plot-dir", help="also write expression-vs-attention trend plots here")
    p.add_argument(
        "--per-slice", action="store_true", help="one trend plot per slice (with --plot-dir)"
    )
    p.add_argument(
        "--contrast",
        choices=("permuted", "random"),
        help="also write the pair's attention contrast against a null on the same counts "
        "(gene identities permuted, or randomly initialised attention) to "
        "attention/<name>-contrast (two genes only; docs/attention.md)",
    )
    p.add_argument(
        "--null-draws", type=int, default=4, metavar="N", help="null draws (default: 4, >= 2)"
    )
    p.add_argument("--null-seed", type=int, default=0, help="seed of the null (default: 0)")
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
    from napari_teramind.cli._progress import Bar
    from napari_teramind.store import BrainStore

    if args.contrast:
        from napari_teramind.attention import resolve_genes

        n = len(resolve_genes(args.pair or args.genes)[1])
        if n != 2:
            raise ValueError(f"--contrast needs a gene pair (two genes), got {n} gene(s)")
        if args.null_draws < 2:
            raise ValueError(f"--null-draws must be at least 2, got {args.null_draws}")
    store = BrainStore.open(args.store, mode="r+")
    model, info = load_model(args.model, device=args.device)
    if not args.quiet:
        from napari_teramind.store import align_model_panel

        report = align_model_panel(info.gene_names, store.panel)
        if report.missing or report.uses_orthologs:
            print(report.summary(), flush=True)
    t0 = time.perf_counter()
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
    with Bar("attention", "unit", args.quiet) as bar:
        for item in gen:
            bar(item.units_done, item.units_total)
    assert item is not None
    print(f"wrote attention/{item.name} in {time.perf_counter() - t0:.1f} s")
    contrast = None
    if args.contrast:
        from napari_teramind.attention.contrast import contrast_summary, iter_contrast_maps

        t1 = time.perf_counter()
        gen = iter_contrast_maps(
            store,
            model,
            args.pair or args.genes,
            null=args.contrast,
            draws=args.null_draws,
            seed=args.null_seed,
            checkpoint=info,
            name=f"{item.name}-contrast",
            region=args.region,
            slices=args.slices,
            batch_size=args.batch_size,
            device=args.device,
            resume=not args.restart,
        )
        with Bar("contrast", "unit", args.quiet) as bar:
            for citem in gen:
                bar(citem.units_done, citem.units_total)
        contrast = citem.name
        s = contrast_summary(store, contrast)
        print(
            f"wrote attention/{contrast} ({args.contrast} null, {args.null_draws} draws) in "
            f"{time.perf_counter() - t1:.1f} s: mean z {s['z']:.3f} over {s['n_blocks']} "
            f"blocks where both genes count, |z| > 2 in {100 * s['z_abs_gt2']:.1f} %"
        )
    if args.plot_dir:
        from napari_teramind.attention.plots import trend_plot

        results = trend_plot(
            store, item.name, args.plot_dir, per_slice=args.per_slice, contrast=contrast
        )
        for res in results:
            fits = ", ".join(
                f"{r.gene}: slope {r.slope:.2f}, r {r.r:.2f}" for r in res.fits.itertuples()
            )
            print(f"{res.path}  ({fits})")
    return 0
