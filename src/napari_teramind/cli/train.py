"""``teramind train`` and ``teramind train-bundled``: train a model on brain stores."""

from __future__ import annotations

import argparse
import json
import sys

from napari_teramind.cli._args import add_slices_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``train-bundled`` sub-commands."""
    p = subparsers.add_parser(
        "train",
        help="train a Tera-MIND model on one or more brain stores (resumable)",
        description=(
            "Train the gene-conditioned diffusion model on random 256-px crops of brain stores "
            "(the two-path collage + tile loss of the published method). Checkpoints, run.json, "
            "loss.csv/loss.png and previews go to RUN_DIR. Every random draw depends only on "
            "(seed, step), so --resume continues exactly as an uninterrupted run. Multi-GPU: "
            "torchrun --nproc-per-node N -m napari_teramind.cli train ..."
        ),
        epilog=(
            "examples:\n"
            "  teramind train brain.zarr --out runs/tiny --preset tiny --steps 2000 --lr 1e-3\n"
            "  teramind train brain.zarr --out runs/tiny --steps 4000 --resume\n"
            "  teramind train a.zarr b.zarr --out runs/ref --preset reference --batch-size 16 \\\n"
            "      --accumulate 4 --precision bf16 --workers 4 --holdout 20 21"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stores", nargs="+", metavar="STORE", help="brain store(s) to train on")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--preset", default="tiny", help="tiny | small | reference (default: tiny)")
    p.add_argument(
        "--model-json",
        default=None,
        metavar="JSON",
        help="ModelConfig fields replacing the preset's, e.g. '{\"model_channels\": 12}'",
    )
    p.add_argument("--init", default=None, help="checkpoint to fine-tune (defines the genes)")
    p.add_argument("--genes", nargs="+", default=None, help="model genes (default: first store)")
    p.add_argument(
        "--panel",
        default=None,
        metavar="PANEL",
        help="model genes from a panel: human-orthologs-81 (the 81 genes with a human "
        "ortholog, for human sections), published:638850[:N] or a CSV with a 'gene' column",
    )
    p.add_argument(
        "--gene-slices",
        type=int,
        default=None,
        choices=(1, 4, 8, 16),
        help="slice scheme of the published code (rna_slc): gene slices per patch; the image "
        "depth is ceil(N/2). 1 = single-section model (human sections); default: the preset's 4",
    )
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: 1000)")
    p.add_argument("--batch-size", type=int, default=4, help="crops per micro-batch (4)")
    p.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (1)")
    p.add_argument("--lr", type=float, default=2e-5, help="Adam learning rate (published: 2e-5)")
    p.add_argument(
        "--cooldown-steps",
        type=int,
        default=0,
        help="decay the learning rate linearly towards zero over the last N steps (default 0: "
        "constant, as published)",
    )
    _recipe_options(p)
    p.add_argument(
        "--snr-gamma", type=float, default=5.0, help="the min-SNR clamp gamma (default 5)"
    )
    p.add_argument(
        "--gene-balance",
        type=float,
        default=0.0,
        help="fraction of crops drawn near where a uniformly drawn gene is most expressed "
        "(rare programs seen as often as common ones; default 0: uniform crops, as published)",
    )
    p.add_argument(
        "--rarity-cap",
        type=float,
        default=0.0,
        metavar="CAP",
        help="weight each pixel's loss by the rarity of its gene expression, up to CAP times "
        "a common pixel's (e.g. 8; default 0: unweighted, as published); docs/training.md",
    )
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (1.0)")
    p.add_argument("--crop", type=int, default=256, help="crop edge in px (256)")
    add_slices_argument(p, help="slices never trained on (default: none)", flag="--holdout")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (0)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="steps between loss log rows (10)")
    p.add_argument("--preview-every", type=int, default=0, help="steps between previews (0=off)")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (autocast on GPU)")
    p.add_argument("--workers", type=int, default=0, help="crop prefetch processes (0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: GPU if any)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint"
    )
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=_run_train)

    b = subparsers.add_parser(
        "train-bundled",
        help="rebuild the bundled model: default phantom, training, quality figures, export",
        description=(
            "Reproduce the model shipped with the package in one command: write the default "
            "phantom brain into OUT, train the tiny preset on it (resumable: run again to "
            "continue), measure how generated DAPI/PolyT follow the genes, and export the "
            "checkpoint to OUT/bundled (--install also replaces the packaged one)."
        ),
    )
    b.add_argument("out", metavar="OUT", help="work folder")
    b.add_argument("--steps", type=int, default=None, help="optimizer steps (the shipped recipe)")
    b.add_argument(
        "--cooldown-steps",
        type=int,
        default=None,
        help="learning-rate cooldown at the end (the shipped recipe)",
    )
    _recipe_options(b)
    b.add_argument(
        "--continue-steps",
        type=int,
        default=None,
        help="stage 2: steps more from stage 1's weights, with an EMA (default: the shipped "
        "recipe, 2000; 0 = export stage 1 alone)",
    )
    b.add_argument(
        "--continue-ema-decay",
        type=float,
        default=None,
        help="stage 2's EMA decay; its EMA weights are exported (the shipped recipe)",
    )
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    b.add_argument("--install", action="store_true", help="replace the packaged model")
    b.add_argument("--quiet", action="store_true", help="print no progress")
    b.set_defaults(func=_run_bundled)


def _recipe_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``train-bundled`` (defaults: the published recipe)."""
    p.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="keep an EMA of the weights with this decay, e.g. 0.999, saved in every checkpoint "
        "and exported (default 0: none)",
    )
    p.add_argument(
        "--loss-weighting",
        choices=("none", "min_snr"),
        default="none",
        help="per-sample loss weights: none (published) or min_snr (min-SNR-gamma)",
    )
    p.add_argument(
        "--keep-every",
        type=int,
        default=0,
        help="also keep every checkpoint whose step is a multiple of N (learning curves; 0: off)",
    )


def _printer(quiet: bool):
    """A ``progress(step, steps, losses)`` callback drawing a live bar (steps, ETA, losses)."""
    from napari_teramind.cli._progress import Bar

    bar = Bar("train", "step", quiet)

    def progress(step: int, steps: int, losses: dict[str, float]) -> None:
        bar(step, steps, postfix=" ".join(f"{k} {v:.4f}" for k, v in losses.items()))

    return progress


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from napari_teramind.train.loop import TrainConfig, latest_checkpoint, train

    if args.threads:
        torch.set_num_threads(args.threads)
    run = Path(args.out)
    if (run / "run.json").exists() and not args.resume:
        raise FileExistsError(
            f"{run} already holds a training run; pass --resume to continue it, or choose a new "
            "--out directory"
        )
    if args.resume and latest_checkpoint(run) is None:
        print(f"no checkpoint in {run} yet: starting from step 0", file=sys.stderr)
    overrides = json.loads(args.model_json) if args.model_json else None
    if args.gene_slices is not None:
        from napari_teramind.slices import SliceScheme

        overrides = {**(overrides or {}), **SliceScheme.published(args.gene_slices).to_dict()}
    genes = tuple(args.genes) if args.genes else None
    if args.panel:
        from napari_teramind.store import GenePanel

        if genes:
            raise ValueError("give the model genes either with --genes or with --panel, not both")
        genes = GenePanel.named(args.panel).names
    cfg = TrainConfig(
        stores=tuple(args.stores),
        preset=args.preset,
        model_overrides=overrides,
        init=args.init,
        genes=genes,
        steps=args.steps,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        lr=args.lr,
        cooldown_steps=args.cooldown_steps,
        grad_clip=args.grad_clip,
        crop=args.crop,
        holdout_slices=tuple(args.holdout or ()),
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        preview_every=args.preview_every,
        precision=args.precision,
        num_workers=args.workers,
        keep_every=args.keep_every,
        ema_decay=args.ema_decay,
        loss_weighting=args.loss_weighting,
        snr_gamma=args.snr_gamma,
        gene_balance=args.gene_balance,
        rarity_cap=args.rarity_cap,
    )
    result = train(cfg, run, device=args.device, progress=_printer(args.quiet))
    print(result.checkpoint)
    print(f"step {result.step}/{cfg.steps} in {result.seconds:.1f} s")
    return 0


def _run_bundled(args: argparse.Namespace) -> int:
    import torch

    from napari_teramind.train import bundled

    torch.set_num_threads(args.threads)
    steps = bundled.BUNDLED_STEPS if args.steps is None else args.steps
    cooldown = bundled.BUNDLED_COOLDOWN if args.cooldown_steps is None else args.cooldown_steps
    more = bundled.BUNDLED_CONTINUE_STEPS if args.continue_steps is None else args.continue_steps
    ema2 = args.continue_ema_decay
    ema2 = bundled.BUNDLED_CONTINUE_EMA if ema2 is None else ema2
    dest, recipe = bundled.train_bundled(
        args.out,
        steps=steps,
        cooldown_steps=cooldown,
        install=args.install,
        ema_decay=args.ema_decay,
        loss_weighting=args.loss_weighting,
        keep_every=args.keep_every,
        progress=_printer(args.quiet),
        continue_steps=more,
        continue_ema_decay=ema2,
    )
    print(dest)
    print(json.dumps(recipe, indent=1))
    return 0
