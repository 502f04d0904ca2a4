"""``teramind generate`` (run or resume a generation job) and ``teramind jobs`` (monitor them)."""

from __future__ import annotations

import argparse

from napari_teramind.cli._args import add_region_argument, add_slices_argument
from napari_teramind.generate.resident import DEFAULT_CHECKPOINT_EVERY
from napari_teramind.generate.schemes import DEFAULT_SCHEME, SCHEMES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` and ``jobs`` sub-commands."""
    from napari_teramind.generate.job import EXECUTORS

    p = subparsers.add_parser(
        "generate",
        help="generate images for a region of a brain store (a resumable job)",
        description=(
            "Generate DAPI/PolyT images for a region and slices of a brain store from its gene "
            "counts. The work is a job directory (spec, state, manifest of done units): kill it "
            "at any point and continue with 'teramind generate --resume DIR'; the result is the "
            "same as an uninterrupted run. Watch it with 'teramind jobs status DIR'."
        ),
    )
    p.add_argument("store", nargs="?", help="source brain store (genes are read from it)")
    p.add_argument("--resume", metavar="DIR", help="continue the job in DIR (no other options)")
    add_region_argument(p, help="region in image pixels (default: the whole canvas)")
    add_slices_argument(p, help="slices to generate (default: all)")
    p.add_argument("--model", default="bundled", help="'bundled' or a checkpoint path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--scheme", choices=SCHEMES, default=DEFAULT_SCHEME,
                   help="sampling scheme: where the patch grids sit at each step "
                   f"('collage' is the published one; default {DEFAULT_SCHEME})")  # fmt: skip
    p.add_argument("--block-px", type=int, default=512, help="block edge in px (multiple of 64)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="patches per forward (default: fit device)"
    )
    p.add_argument("--out", help="output brain store (default: JOB_DIR/generated.zarr)")
    p.add_argument("--job-dir", help="job directory (default: OUT without .zarr + '.job')")
    p.add_argument("--executor", choices=EXECUTORS, default="inprocess")
    p.add_argument("--devices", help="local executor: devices, e.g. cuda:0,cuda:1")
    p.add_argument("--workers", type=int, help="local: CPU processes; dask: LocalCluster size")
    p.add_argument("--scheduler", help="dask executor: scheduler address (default: LocalCluster)")
    p.add_argument("--device", default="cpu", help="in-process executor device (cpu, cuda)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of every unit (default 4, or one per core on a machine with fewer); "
        "fixed in the job, so the output bytes do not depend on the executor",
    )
    p.add_argument("--gene-blind", action="store_true", help="zero gene counts (baseline)")
    p.add_argument("--memory-budget", type=_size, default=None, metavar="BYTES",
                   help="host memory per unit, e.g. 8G (default 8G). A slice pair whose state "
                   "fits advances --checkpoint-every steps in memory; 0: per-block units on "
                   "disk state")  # fmt: skip
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        metavar="K",
        help="steps between state checkpoints of in-memory units (default "
        f"{DEFAULT_CHECKPOINT_EVERY}: one checkpoint in 15 steps)",
    )
    p.add_argument(
        "--tile-px",
        type=int,
        default=None,
        metavar="PX",
        help="tile side of tiled in-memory units, a multiple of --block-px (default: tiles "
        "only when a slice pair does not fit --memory-budget, the largest that fit)",
    )
    p.add_argument(
        "--pairs-per-unit",
        type=int,
        default=1,
        help="slice pairs per in-memory unit, batched together (default 1)",
    )
    p.add_argument(
        "--lease", type=float, default=None, help="s without heartbeat before takeover (300)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing job and output")
    p.add_argument("--no-space-check", action="store_true", help="skip the free-space check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)

    j = subparsers.add_parser(
        "jobs",
        help="status, list and cancel generation jobs",
        description="Monitor and cancel generation jobs (directories made by teramind generate).",
    )
    js = j.add_subparsers(dest="jobs_command", metavar="<action>")
    s = js.add_parser("status", help="progress, speed and remaining time of a job")
    s.add_argument("job_dir")
    s.set_defaults(func=_status)
    s = js.add_parser("list", help="every job under a directory, one line each")
    s.add_argument("root")
    s.set_defaults(func=_list)
    s = js.add_parser("cancel", help="ask a job's workers to stop after their current unit")
    s.add_argument("job_dir")
    s.set_defaults(func=_cancel)
    j.set_defaults(func=lambda a: j.print_help() or 0)


def _size(text: str) -> int:
    """Bytes from ``123``, ``512M``, ``8G``, ``1.5T`` (binary units)."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; give bytes or a number with K, M, G or T (e.g. 8G)"
        ) from None


def _progress_printer(quiet: bool, job_dir=None):
    """A ``progress(JobProgress)`` callback drawing a live bar (units, rate, ETA) on stderr.

    Its ``part`` method moves the bar inside a unit (``run_job(on_block=...)``).
    """
    from napari_teramind.cli._progress import job_bar

    return job_bar(quiet, job_dir)[0]


def _generate(args: argparse.Namespace) -> int:
    from napari_teramind.generate.job import JobCancelled

    try:
        return _generate_or_resume(args)
    except JobCancelled as exc:
        print(f"cancelled: {exc}")
        return 3


def _generate_or_resume(args: argparse.Namespace) -> int:
    from pathlib import Path

    from napari_teramind.generate.job import JobSpec, create_job

    if args.resume:
        if args.store:
            raise ValueError("--resume DIR takes no STORE: the job's spec.json has the inputs")
        out = _run_explained(args.resume, args)
        print(f"generated {out}")
        return 0
    if not args.store:
        raise ValueError("give a source STORE, or --resume DIR to continue a job")
    from napari_teramind.generate import check_source
    from napari_teramind.store import BrainStore

    store = BrainStore.open(args.store)
    report = check_source(store, args.model, gene_blind=args.gene_blind)
    if not args.quiet and (report.missing or report.uses_orthologs):
        print(report.summary(), flush=True)
    z, h, w = store.shape
    region = tuple(args.region) if args.region else (0, h, 0, w)
    slices = args.slices if args.slices is not None else list(range(z))
    if args.out:
        out = Path(args.out)
    elif args.job_dir:
        out = Path(args.job_dir) / "generated.zarr"
    else:
        raise ValueError("give --out OUT.zarr (and optionally --job-dir DIR)")
    job_dir = Path(args.job_dir) if args.job_dir else out.with_suffix(".job")
    extra = {}
    if args.lease is not None:
        extra["lease_s"] = args.lease
    if args.threads is not None:
        from napari_teramind.generate.numerics import Numerics

        extra["numerics"] = Numerics(threads=args.threads)
    spec = JobSpec(
        source=str(args.store),
        model=args.model,
        region=region,
        slices=tuple(slices),
        output=str(out),
        seed=args.seed,
        sampler=args.sampler,
        steps=args.steps,
        scheme=args.scheme,
        block_px=args.block_px,
        batch_size=args.batch_size,
        executor=args.executor,
        devices=tuple(args.devices.split(",")) if args.devices else None,
        workers=args.workers,
        scheduler=args.scheduler,
        gene_blind=args.gene_blind,
        memory_budget=args.memory_budget,
        checkpoint_every=args.checkpoint_every,
        tile_px=args.tile_px,
        pairs_per_unit=args.pairs_per_unit,
        **extra,
    )
    job = create_job(job_dir, spec, overwrite=args.overwrite, check_space=not args.no_space_check)
    if not args.quiet:
        if job.plan.get("units", {}).get("kind") == "pairs":
            u = job.plan["units"]
            print(f"job {job.path}: {job.n_steps} spans of {u['steps_per_unit']} steps x "
                  f"{job.n_blocks} pair group(s), state in memory", flush=True)  # fmt: skip
        else:
            print(f"job {job.path}: {job.n_steps} steps x {job.n_blocks} blocks", flush=True)
    result = _run_explained(job.path, args)
    print(f"generated {result}")
    return 0


def _run_explained(job_dir, args: argparse.Namespace):
    """Run a job; a failed write becomes one line that says how to continue the job."""
    from napari_teramind.cli import CommandError
    from napari_teramind.generate.executors import run_job
    from napari_teramind.store.errors import explain_os_error

    try:
        bar = _progress_printer(args.quiet, job_dir)
        return run_job(job_dir, progress=bar, device=args.device, on_block=bar.part)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError as exc:
        then = f"then continue the job with `teramind generate --resume {job_dir}`"
        msg, user_error = explain_os_error(exc, then=then)
        raise CommandError(msg, 2 if user_error else 1) from exc


def _status(args: argparse.Namespace) -> int:
    from napari_teramind.generate.job import job_status

    print(job_status(args.job_dir).summary())
    return 0


def _list(args: argparse.Namespace) -> int:
    from napari_teramind.generate.job import list_jobs

    jobs = list_jobs(args.root)
    if not jobs:
        print(f"no jobs under {args.root}")
    for st in jobs:
        print(f"{st.state:<12} {st.fraction:6.1%}  {st.units_done}/{st.units_total}  {st.path}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from napari_teramind.generate.job import cancel_job

    st = cancel_job(args.job_dir)
    print(f"cancel requested; state now {st.state}")
    return 0
