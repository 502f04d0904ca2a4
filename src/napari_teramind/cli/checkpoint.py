"""``teramind convert-checkpoint``: published Lightning checkpoint -> safetensors + JSON."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert-checkpoint`` sub-command."""
    p = subparsers.add_parser(
        "convert-checkpoint",
        help="convert a published .ckpt (or re-save a native checkpoint) to safetensors + JSON",
        description=(
            "Read a published PyTorch-Lightning checkpoint safely (tensors only, never a full "
            "unpickle), infer the model configuration from its tensors, map every key strictly "
            "and write this package's format: DST/model.safetensors + DST/model.json (config, "
            "gene names, provenance). The genes are named after the first G genes of a "
            "published panel (the 229-gene models use the 229 genes both panels share)."
        ),
        epilog=(
            "examples:\n"
            "  teramind convert-checkpoint last.ckpt models/teramind-229\n"
            "  teramind convert-checkpoint last.ckpt models/m500 --genes-from-panel 609882\n"
            "  teramind convert-checkpoint last.ckpt out --genes-from-panel 638850 --n-genes 229"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="published .ckpt or native checkpoint")
    p.add_argument("dst", metavar="DST", help="destination directory (or .safetensors path)")
    p.add_argument(
        "--genes-from-panel",
        choices=("638850", "609882"),
        default=None,
        help="published panel naming the genes (default: the run's mouse, else 638850)",
    )
    p.add_argument(
        "--n-genes",
        type=int,
        default=None,
        metavar="N",
        help="take the first N genes of the panel (must equal the model's gene count)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_teramind.model.checkpoint import convert_checkpoint
    from napari_teramind.store import GenePanel

    names = None
    if args.n_genes is not None:
        if args.n_genes < 1:
            raise ValueError("--n-genes must be at least 1")
        names = GenePanel.published(args.genes_from_panel or "638850", args.n_genes).names
    info = convert_checkpoint(args.src, args.dst, gene_names=names, mouse=args.genes_from_panel)
    cfg = info.config
    print(args.dst)
    print(
        f"{cfg.n_genes} genes ({', '.join(info.gene_names[:3])}, ...), model_channels "
        f"{cfg.model_channels}, channel_mult {list(cfg.channel_mult)}"
    )
    return 0
