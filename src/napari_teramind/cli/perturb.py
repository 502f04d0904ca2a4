"""``teramind perturb``: generate a region with edited genes, beside the unedited one."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_teramind.cli._args import add_region_argument, add_slices_argument
from napari_teramind.generate.schemes import DEFAULT_SCHEME, SCHEMES


def parse_scale(text: str) -> tuple[str, float]:
    """``GENE=F`` -> ``(gene, factor)``."""
    gene, sep, factor = text.partition("=")
    try:
        if not sep or not gene:
            raise ValueError
        return gene.strip(), float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r}: write GENE=FACTOR, e.g. Th=0.5 (0 knocks it out, 2 doubles it)"
        ) from None


def parse_transplant(text: str) -> tuple[str, tuple[int, int]]:
    """``GENE:DY,DX`` -> ``(gene, (dy, dx))`` (px; the counts come from DY, DX px away)."""
    gene, sep, offset = text.partition(":")
    parts = offset.replace(" ", "").split(",")
    try:
        if not sep or not gene or len(parts) != 2:
            raise ValueError
        return gene.strip(), (int(parts[0]), int(parts[1]))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r}: write GENE:DY,DX in px (multiples of 16), e.g. Th:0,-512 "
            "copies Th's counts from 512 px to the left"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``perturb`` sub-command."""
    p = subparsers.add_parser(
        "perturb",
        help="generate a region with edited genes (knockout, scale, transplant) and compare",
        description=(
            "In-silico perturbation: generate a region with some genes knocked out, scaled or "
            "transplanted (inside the region or a --mask), with the same noise as the unedited "
            "generation, which is written beside it; print the nuclei count, mean area and "
            "nuclear DAPI per region, unedited -> edited. Both are resumable jobs (kill and run "
            "the same command again, or 'teramind generate --resume DIR'). Without edits the "
            "output is byte for byte 'teramind generate' with the same options."
        ),
    )
    p.add_argument("store", help="source brain store (genes are read from it)")
    add_region_argument(p, help="region in image pixels (default: the whole canvas)")
    add_slices_argument(p, help="slices to generate (default: all)")
    p.add_argument("--model", default="bundled", help="'bundled' or a checkpoint path")
    p.add_argument(
        "--knockout", nargs="+", default=[], metavar="GENE", help="genes whose counts become 0"
    )
    p.add_argument(
        "--scale",
        action="append",
        type=parse_scale,
        default=[],
        metavar="GENE=F",
        help="multiply a gene's counts by F >= 0 (repeat for several genes)",
    )
    p.add_argument(
        "--transplant",
        action="append",
        type=parse_transplant,
        default=[],
        metavar="GENE:DY,DX",
        help="copy a gene's counts from DY, DX px away (repeatable)",
    )
    p.add_argument(
        "--mask",
        metavar="FILE.npy",
        help="where the edits apply: a boolean .npy on the 16 px gene-block grid of "
        "the region or the canvas (default: the whole region)",
    )
    p.add_argument(
        "--mask-rect",
        nargs=4,
        type=int,
        metavar=("Y0", "Y1", "X0", "X1"),
        help="where the edits apply: a rectangle in image px inside the region",
    )
    p.add_argument("--out", required=True, help="the edited generated brain store")
    p.add_argument("--unedited", help="the unedited store (default: OUT-unedited.zarr)")
    p.add_argument(
        "--no-unedited",
        action="store_true",
        help="generate the edited store only (no comparison table)",
    )
    p.add_argument(
        "--difference",
        metavar="FILE.npy",
        help="also save edited - unedited images, int16 (2, slices, h, w)",
    )
    p.add_argument("--table", metavar="FILE.json", help="also save the table as JSON")
    p.add_argument(
        "--nuclei",
        default="classical",
        choices=("classical", "cellpose", "auto"),
        help="nuclei segmentation of the table (default: classical, offline)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument(
        "--scheme",
        choices=SCHEMES,
        default=DEFAULT_SCHEME,
        help=f"sampling scheme (default {DEFAULT_SCHEME}, as teramind generate)",
    )
    p.add_argument("--block-px", type=int, default=512, help="block edge in px (multiple of 64)")
    p.add_argument("--batch-size", type=int, default=None, help="patches per forward")
    p.add_argument("--device", default="cpu", help="device (cpu, cuda)")
    p.add_argument("--overwrite", action="store_true", help="replace existing jobs and outputs")
    p.add_argument("--no-space-check", action="store_true", help="skip the free-space check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_perturb)


def edits_from_args(args: argparse.Namespace) -> list:
    """The :mod:`~napari_teramind.generate.edits` items the options ask for."""
    import numpy as np

    from napari_teramind.generate.edits import Knockout, Scale, Transplant

    if args.mask and args.mask_rect:
        raise ValueError("give --mask or --mask-rect, not both")
    mask = None
    if args.mask:
        if not Path(args.mask).is_file():
            raise FileNotFoundError(f"mask file {args.mask} does not exist")
        mask = np.load(args.mask, allow_pickle=False)
    elif args.mask_rect:
        mask = tuple(args.mask_rect)
    edits = [Knockout(g, mask) for g in args.knockout]
    edits += [Scale(g, f, mask) for g, f in args.scale]
    edits += [Transplant(g, off, mask) for g, off in args.transplant]
    return edits


def _unedited_path(args: argparse.Namespace) -> Path:
    if args.unedited:
        return Path(args.unedited)
    from napari_teramind.layers import store_stem

    out = Path(args.out)
    return out.with_name(f"{store_stem(out)}-unedited.zarr")


def _perturb(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from napari_teramind.cli._progress import job_bar
    from napari_teramind.generate.job import JobCancelled
    from napari_teramind.perturb import (
        PerturbSettings,
        difference,
        format_table,
        morphometric_change,
        perturb,
    )
    from napari_teramind.perturb.api import prepare_perturbation

    edits = edits_from_args(args)
    if not edits:
        raise ValueError(
            "no edit given: add --knockout GENE, --scale GENE=F or --transplant GENE:DY,DX "
            "(an unedited generation is 'teramind generate')"
        )
    if args.no_unedited and (args.difference or args.table):
        raise ValueError("--difference and --table need the unedited store: drop --no-unedited")
    settings = PerturbSettings(
        seed=args.seed,
        sampler=args.sampler,
        steps=args.steps,
        scheme=args.scheme,
        block_px=args.block_px,
        batch_size=args.batch_size,
    )
    runs = [("edited", edits, Path(args.out))]
    if not args.no_unedited:
        runs.insert(0, ("unedited", [], _unedited_path(args)))
    for _, e, out in runs:  # every bad input is refused before the first unit runs
        prepare_perturbation(
            args.store, args.model, args.region, args.slices, e, output=out, settings=settings
        )
    stores = {}
    try:
        for name, e, out in runs:
            show, bar = job_bar(args.quiet)
            bar.desc = name
            with bar:
                stores[name] = perturb(
                    args.store,
                    args.model,
                    args.region,
                    args.slices,
                    e,
                    output=out,
                    settings=settings,
                    device=args.device,
                    progress=show,
                    overwrite=args.overwrite,
                    check_space=not args.no_space_check,
                )
            print(f"{name:<9} {stores[name].path}", flush=True)
    except JobCancelled as exc:
        print(f"cancelled: {exc}")
        return 3
    if args.no_unedited:
        return 0
    if args.difference:
        np.save(args.difference, difference(stores["unedited"], stores["edited"]))
        print(f"difference {args.difference}")
    rows = morphometric_change(stores["unedited"], stores["edited"], method=args.nuclei)
    print(format_table(rows))
    if args.table:
        Path(args.table).write_text(json.dumps([r.to_dict() for r in rows], indent=1))
    return 0
