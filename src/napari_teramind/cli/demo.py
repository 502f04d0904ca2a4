"""``teramind demo``: the one command that shows what the project does, offline."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo",
        help="run the offline demo on the phantom brain",
        description=(
            "Write the synthetic phantom brain as a brain store and an overview PNG, generate a "
            "region from its genes with the bundled model (and a gene-blind baseline), compute "
            "the GLUT and DOPA attention maps, evaluate the generated region against the real "
            "one, and with --napari open the viewer on the results. Works offline on a laptop "
            "CPU."
        ),
    )
    p.add_argument("--out", default="teramind-demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: %(default)s)")
    p.add_argument("--slices", type=int, default=None, help="phantom slices (default: phantom's)")
    p.add_argument("--height", type=int, default=None, help="phantom height in px")
    p.add_argument("--width", type=int, default=None, help="phantom width in px")
    p.add_argument(
        "--roi-size",
        type=int,
        default=None,
        help="side of the generated region in px (default: 1024; a multiple of 64)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model for generation and attention: 'bundled' (default), a checkpoint or a "
        "published .ckpt",
    )
    p.add_argument(
        "--no-model",
        action="store_true",
        help="only write the phantom and its overview (no generation, attention, evaluation)",
    )
    p.add_argument("--overwrite", action="store_true", help="rewrite existing outputs")
    p.add_argument(
        "--napari",
        action="store_true",
        help="open napari on the result (needs napari and Qt: pip install 'napari-teramind[all]')",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _require_napari() -> None:
    """Fail before any work when ``--napari`` is asked for and napari or Qt is missing."""
    try:
        import napari  # noqa: F401
        import qtpy  # noqa: F401  (raises an ImportError when no Qt binding is installed)
    except ImportError as exc:
        raise RuntimeError(
            f"--napari needs napari with a Qt binding, which is not installed ({exc}); install "
            "the plugin extra, e.g. pip install -e '.[all]' in a clone (or "
            "pip install 'napari-teramind[all]'), or run the demo without --napari"
        ) from None


def _run(args: argparse.Namespace) -> int:
    from napari_teramind.cli._progress import StageBars
    from napari_teramind.demo import run_demo

    if args.napari:
        _require_napari()
    bars = StageBars(quiet=args.quiet)

    def log(line: str) -> None:
        bars.close()  # a stage line starts below the last finished bar
        print(line, flush=True)

    result = run_demo(
        args.out,
        seed=args.seed,
        n_slices=args.slices,
        height=args.height,
        width=args.width,
        overwrite=args.overwrite,
        generate=not args.no_model,
        model=args.model,
        log=log,
        progress=bars,
        **({"roi_px": args.roi_size} if args.roi_size else {}),
    )
    bars.close()
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"demo finished in {sum(result.seconds.values()):.1f} s ({timings})")
    stores = [result.real_store]
    stores += [p for p in (result.generated_store, result.gene_blind_store) if p is not None]
    print(f"open it in napari:  napari {' '.join(map(str, stores))} --plugin napari-teramind")
    if args.napari:
        import napari

        viewer = napari.Viewer(title="Tera-MIND demo")
        for path in stores:
            viewer.open(str(path), plugin="napari-teramind")
        napari.run()
    return 0
