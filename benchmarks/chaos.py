"""Chaos: SIGKILL a generation job at random points, resume it, compare with an uninterrupted run.

Usage::

    python benchmarks/chaos.py                 # 5 trials of up to 3 kills each
    python benchmarks/chaos.py --trials 20 --kills 4 --seed 7

Each trial starts ``teramind generate`` on a tiny phantom with a seeded random tiny model and
SIGKILLs the process after a random number of finished units plus a random delay (so kills land
between a unit's write and its done-marker, inside pyramid updates, during the final marking of
the output store, ...). It then resumes with ``teramind generate --resume`` and kills again, up
to ``--kills`` times, and finally lets the job run to completion. The output images are compared
byte for byte with the uninterrupted reference. Printed: kills survived (the resume after each
kill succeeded), units written twice (unit writes beyond one per unit, from the workers' audit
logs; a unit killed mid-way wrote nothing and is redone) and mismatches (trials whose output
differs from the reference; must be 0).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_teramind.cli", *args]


def _units_done(job_dir: Path) -> int:
    from napari_teramind.generate.job import JobDir

    if not (job_dir / "spec.json").is_file():
        return 0
    return JobDir(job_dir).units_done()


def _run_killed(cmd: list[str], job_dir: Path, at_least: int, delay_s: float) -> bool:
    """Run ``cmd`` and SIGKILL it after ``at_least`` units (+ delay); True if it was killed."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while proc.poll() is None:
        if _units_done(job_dir) >= at_least:
            time.sleep(delay_s)
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    if not killed and proc.returncode != 0:
        raise RuntimeError(f"job failed before the kill: {err.decode()[-2000:]}")
    return killed


def _unit_writes(job_dir: Path) -> int:
    n = 0
    for log in (job_dir / "workers").glob("*.units"):
        n += len(log.read_text().splitlines())
    return n


def _images(path: Path, region: tuple[int, int, int, int]) -> np.ndarray:
    from napari_teramind.store import BrainStore

    y0, y1, x0, x1 = region
    return np.asarray(BrainStore.open(path).images()[:, :2, y0:y1, x0:x1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--kills", type=int, default=3, help="kills per trial (at most)")
    ap.add_argument("--px", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--block-px", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="steps per unit (a slice pair's state in memory between checkpoints)",
    )
    ap.add_argument(
        "--memory-budget",
        default=None,
        help="'0': per-block units on disk state instead of in-memory spans",
    )
    args = ap.parse_args()

    import torch

    from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
    from napari_teramind.phantom import PhantomSpec, write_phantom

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    d = Path(tempfile.mkdtemp(prefix="teramind-chaos-"))
    ph = PhantomSpec(seed=5, n_slices=2, height=args.px, width=args.px)
    write_phantom(d / "phantom.zarr", ph, workers=1, executor="thread")
    torch.manual_seed(0)
    net = TeraMindUNet(ModelConfig.preset("tiny", len(ph.gene_names))).eval()
    save_checkpoint(d / "model", net, None, list(ph.gene_names))
    region = (0, args.px, 0, args.px)

    def first(job: Path, out: Path) -> list[str]:
        y0, y1, x0, x1 = region
        return _cli("generate", str(d / "phantom.zarr"), "--region", str(y0), str(y1), str(x0),
                    str(x1), "--slices", "0-1", "--model", str(d / "model"), "--seed", "7",
                    "--steps", str(args.steps), "--block-px", str(args.block_px),
                    "--checkpoint-every", str(args.checkpoint_every),
                    *(["--memory-budget", args.memory_budget] if args.memory_budget else []),
                    "--out", str(out), "--job-dir", str(job), "--quiet")  # fmt: skip

    t = time.perf_counter()
    ref_job = d / "ref.job"
    r = subprocess.run(first(ref_job, d / "ref.zarr"), env=_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"reference run failed:\n{r.stderr[-3000:]}")
    t_ref = time.perf_counter() - t
    ref = _images(d / "ref.zarr", region)
    from napari_teramind.generate.job import JobDir

    total = JobDir(ref_job).units_total
    print(f"{args.px} x {args.px} px, 2 slices, {args.steps} steps, {args.block_px} px blocks: "
          f"{total} units; reference run {t_ref:.1f} s")  # fmt: skip

    kills = survived = redone = mismatches = 0
    for trial in range(args.trials):
        job, out = d / f"t{trial}.job", d / f"t{trial}.zarr"
        resume = _cli("generate", "--resume", str(job), "--quiet")
        trial_kills = 0
        for _ in range(args.kills):
            # before the spec is written the job does not exist yet: start it again
            cmd = resume if (job / "spec.json").is_file() else first(job, out)
            if not _run_killed(cmd, job, rng.randint(0, total), rng.uniform(0, 0.3)):
                break  # finished before the kill
            trial_kills += 1
        cmd = resume if (job / "spec.json").is_file() else first(job, out)
        r = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
        same = r.returncode == 0 and np.array_equal(_images(out, region), ref)
        kills += trial_kills
        survived += trial_kills if same else 0
        mismatches += not same
        extra = _unit_writes(job) - total
        redone += extra
        print(f"trial {trial}: {trial_kills} kill(s), "
              f"{'identical' if same else 'MISMATCH: ' + r.stderr[-300:]}; "
              f"{extra} unit(s) written twice")  # fmt: skip
    print(f"kills survived: {survived} of {kills}")
    print(f"units written twice: {redone} (over {args.trials} trials of {total} units)")
    print(f"mismatches:     {mismatches} of {args.trials} trials")
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
