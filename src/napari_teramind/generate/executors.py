"""Run a generation job: in-process, on local worker processes, or on a dask.distributed cluster.

Every executor runs the same units through the same function, :func:`run_claimed_unit`:
claim the unit, run it (the engine reads step k, writes step k+1 for the block), record it done,
release the claim. Steps are synchronous: no unit of step k+1 starts before every block of step
k is recorded. Units are deterministic and idempotent, so the output does not depend on the
executor, the number of workers, the order, or on how often the job was killed and resumed.
Every unit computes under the job's numerics (:attr:`JobDir.numerics`: a fixed torch thread
count and precision), never under the worker's ambient thread count, which differs between
executors (all cores in-process, one thread in a dask nanny worker) and would change the bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from napari_teramind.atomic import write_bytes_atomic, write_json_atomic
from napari_teramind.generate import _bridge
from napari_teramind.generate.claims import Claim, Owner, heartbeat
from napari_teramind.generate.job import (
    EXECUTORS,
    RUN_FILE,
    JobCancelled,
    JobDir,
    now_iso,
    unit_key,
)

#: Seconds between polls while waiting for other workers' units.
POLL_S = 0.05


@dataclass(frozen=True)
class JobProgress:
    """Progress of a running job, yielded after every finished unit (and while waiting).

    Attributes
    ----------
    step, n_steps
        The step being worked on (``n_steps`` once all are done) and the number of steps.
    block
        The block that just finished (None when the report is not about one block).
    units_done, units_total
        (step, block) units recorded done, over all workers, and their total.
    elapsed_s
        Seconds since this run started.
    rate
        Units per second during this run (None before the first unit).
    eta_s
        Estimated seconds to the end (None before the first unit).
    output
        Path of the generated brain store; set on the last item once it is complete.
    """

    step: int
    n_steps: int
    block: int | None
    units_done: int
    units_total: int
    elapsed_s: float
    rate: float | None
    eta_s: float | None
    output: str | None = None

    @property
    def fraction(self) -> float:
        """Fraction of units done."""
        return self.units_done / self.units_total if self.units_total else 1.0


class _Clock:
    """Run-local throughput: units finished since this run started."""

    def __init__(self, job: JobDir):
        self.t0 = time.time()
        self.job = job
        self.start_done = job.units_done()

    def progress(self, step: int, block: int | None, output: str | None = None) -> JobProgress:
        done = self.job.units_done()
        elapsed = time.time() - self.t0
        new = done - self.start_done
        rate = new / elapsed if new > 0 and elapsed > 0 else None
        eta = (self.job.units_total - done) / rate if rate else None
        return JobProgress(
            step, self.job.n_steps, block, done, self.job.units_total, elapsed, rate, eta, output
        )


# ---------------------------------------------------------------------- the unit
def run_claimed_unit(job: JobDir, runner: _bridge.UnitRunner, step: int, block: int,
                     claim: Claim) -> None:  # fmt: skip
    """Run one unit under ``claim`` and record it done; the claim is released at the end.

    The engine writes the block's data first; the done marker is written atomically only after
    that write returned. If another worker took the unit over meanwhile (this worker was
    presumed dead), nothing is written or recorded by this worker.
    """
    started = time.time()
    try:
        with heartbeat(claim, max(0.5, job.spec.lease_s / 4)):
            wrote = runner.run(step, block, claim.still_held)
        if wrote:
            _audit(job, claim.owner.worker, step, block)
        if wrote and claim.still_held():
            finished = time.time()
            job.record_unit(
                step,
                block,
                {
                    "step": step,
                    "block": block,
                    "worker": claim.owner.worker,
                    "host": claim.owner.host,
                    "pid": claim.owner.pid,
                    "started": started,
                    "finished": finished,
                    "seconds": finished - started,
                },
            )
    finally:
        claim.release()


def _audit(job: JobDir, worker: str, step: int, block: int) -> None:
    """Append to this worker's own log of the units it wrote (one writer per file)."""
    d = job.path / "workers"
    d.mkdir(exist_ok=True)
    with open(d / f"{worker}.units", "a") as fh:
        fh.write(f"{step} {block} {time.time():.3f}\n")


def work_on_step(job: JobDir, runner: _bridge.UnitRunner, owner: Owner, step: int,
                 order: list[int] | None = None) -> Iterator[int | None]:  # fmt: skip
    """Do every unclaimed unit of ``step``, then wait until all its units are recorded.

    Yields the block after each unit this worker finished, and None while it waits for units
    other workers hold (so a caller can report progress and honour cancel requests). Claims of
    dead workers are taken over.

    Raises
    ------
    JobCancelled
        When the job's cancel file appears (checked between units).
    """
    blocks = list(range(job.n_blocks)) if order is None else order
    while True:
        waiting = False
        for i, block in enumerate(blocks):
            if job.cancel_requested():
                raise JobCancelled(f"job {job.path} was cancelled (resume it with --resume)")
            if job.unit_done(step, block):
                continue
            claim = job.claims.try_claim(unit_key(step, block), owner)
            if claim is None:
                waiting = True
                continue
            if job.unit_done(step, block):  # finished by another worker just before our claim
                claim.release()
                continue
            # read the next unit's inputs while this one computes (tiled jobs)
            nxt = next((b for b in blocks[i + 1 :] if not job.unit_done(step, b)), None)
            if nxt is not None:
                runner.prefetch(step, nxt)
            run_claimed_unit(job, runner, step, block, claim)
            yield block
        if job.step_done(step):
            return
        if not waiting:
            # a unit was skipped without a live claim (a taken-over worker gave up): retry
            continue
        yield None
        time.sleep(POLL_S)


def _order(n_blocks: int, worker_index: int, n_workers: int) -> list[int]:
    """Start each worker at a different place so workers rarely race for the same claim."""
    start = (worker_index * n_blocks) // max(1, n_workers)
    return [(start + i) % n_blocks for i in range(n_blocks)]


# ---------------------------------------------------------------------- in-process
def _iter_inprocess(job: JobDir, clock: _Clock, device: str,
                    on_block: Callable[[int, int], None] | None = None,
                    ) -> Iterator[JobProgress]:  # fmt: skip
    runner = _bridge.UnitRunner(job, device=device, on_block=on_block)
    owner = Owner(worker=f"inprocess-{os.getpid()}")
    for step in range(job.n_steps):
        if job.step_done(step):
            job.finish_step(step)
            continue
        for block in work_on_step(job, runner, owner, step):
            yield clock.progress(step, block)
        job.finish_step(step)


# ---------------------------------------------------------------------- local processes
def _local_worker(job_path: str, name: str, index: int, n_workers: int, device: str) -> None:
    """Entry point of one local worker process: work on every step until the job is done.

    Units set their own thread count (the job's numerics), so none is set here.
    """
    job = JobDir(job_path)
    try:
        runner = _bridge.UnitRunner(job, device=device)
        owner = Owner(worker=name)
        for step in range(job.n_steps):
            for _ in work_on_step(job, runner, owner, step, _order(job.n_blocks, index, n_workers)):
                pass
    except JobCancelled:
        return
    except BaseException:
        d = job.path / "workers"
        d.mkdir(exist_ok=True)
        write_bytes_atomic(d / f"{name}.error", traceback.format_exc().encode())
        raise


def local_devices(devices: tuple[str, ...] | None, workers: int | None,
                  threads: int = 1) -> list[str]:  # fmt: skip
    """One device per local worker: the given devices, every visible GPU, or ``workers`` CPUs.

    Without either, CPU workers get ``threads`` cores each: up to 4 workers, as many as the
    cores hold (at least one), so the units' fixed thread counts do not oversubscribe them.
    """
    if devices:
        return list(devices)
    if workers:
        return ["cpu"] * int(workers)
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * max(1, min(4, (os.cpu_count() or 1) // max(1, threads)))


def _iter_local(job: JobDir, clock: _Clock) -> Iterator[JobProgress]:
    devices = local_devices(job.spec.devices, job.spec.workers, job.numerics.threads)
    n = len(devices)
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i, dev in enumerate(devices):
        name = f"local-{i}-{dev.replace(':', '')}"
        p = ctx.Process(
            target=_local_worker,
            args=(str(job.path), name, i, n, dev),
            name=f"teramind-{name}",
        )
        p.start()
        procs.append(p)
    try:
        last = -1
        step = job.current_step()
        while True:
            step = job.current_step()
            if step > 0 and job.step_done(step - 1):
                job.finish_step(step - 1)
            done = job.units_done()
            if done != last:
                last = done
                yield clock.progress(step, None)
            errors = job.worker_errors()
            if errors:  # a worker raised: a real failure (bad input, out of memory, ...)
                detail = "\n".join(f"--- {k}\n{v}" for k, v in errors.items())
                raise RuntimeError(
                    f"local worker(s) {', '.join(errors)} failed; fix the cause and resume the "
                    f"job with --resume.\n{detail}"
                )
            # a worker that vanished (killed, OOM-killed) leaves claims of a dead process,
            # which the surviving workers take over at once: carry on while any is alive
            codes = [p.exitcode for p in procs]  # polls every child: reaps the dead ones
            if all(c is not None for c in codes):
                break
            time.sleep(POLL_S * 2)
        if job.cancel_requested() and job.current_step() < job.n_steps:
            raise JobCancelled(f"job {job.path} was cancelled (resume it with --resume)")
        if job.current_step() < job.n_steps:
            raise RuntimeError(
                f"all local workers of {job.path} exited (exit codes "
                f"{[p.exitcode for p in procs]}) before the job was done; resume it with --resume"
            )
        for s in range(job.n_steps):
            job.finish_step(s)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()


# ---------------------------------------------------------------------- dask.distributed
_DASK_RUNNERS: dict[str, _bridge.UnitRunner] = {}


def _dask_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dask_unit(job_path: str, step: int, block: int) -> int:
    """A dask task: do unit (step, block) of the job at ``job_path`` (idempotent).

    The model and opened stores are cached per worker process (by job and so by checkpoint),
    so each worker loads the model once. A unit already recorded is skipped; one claimed by a
    live worker (a duplicate task) is waited for; one claimed by a dead worker is taken over.
    """
    from distributed import get_worker

    try:
        worker_name = str(get_worker().name)
    except ValueError:  # pragma: no cover - called outside a worker
        worker_name = "dask"
    runner = _DASK_RUNNERS.get(job_path)
    if runner is None:
        runner = _bridge.UnitRunner(JobDir(job_path), device=_dask_device())
        _DASK_RUNNERS[job_path] = runner
    job = runner.job
    owner = Owner(worker=f"dask-{worker_name}")
    key = unit_key(step, block)
    while not job.unit_done(step, block):
        claim = job.claims.try_claim(key, owner)
        if claim is None:
            time.sleep(POLL_S)
            continue
        if job.unit_done(step, block):
            claim.release()
            break
        run_claimed_unit(job, runner, step, block, claim)
    return block


def _iter_dask(job: JobDir, clock: _Clock) -> Iterator[JobProgress]:
    from distributed import Client, LocalCluster, as_completed

    spec = job.spec
    cluster = None
    if spec.scheduler:
        client = Client(spec.scheduler, set_as_default=False)  # leave the user's default
    else:
        # one task per worker, each computing with the job's thread count: no oversubscription
        cores_per_unit = max(1, job.numerics.threads)
        cluster = LocalCluster(
            n_workers=spec.workers or max(1, min(2, (os.cpu_count() or 1) // cores_per_unit)),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster, set_as_default=False)
    token = job.path.name
    try:
        for step in range(job.n_steps):
            todo = [b for b in range(job.n_blocks) if not job.unit_done(step, b)]
            futures = [
                client.submit(
                    dask_unit,
                    str(job.path),
                    step,
                    b,
                    key=f"teramind-unit-{token}-{step}-{b}",
                    pure=False,
                    retries=3,
                )
                for b in todo
            ]
            try:
                # Bind to this client's loop, not default_client()'s: with another client in
                # the process (a user's, a notebook's) a result lost with a killed worker is
                # re-awaited on the wrong event loop and raises RuntimeError.
                for _, block in as_completed(futures, loop=client.loop, with_results=True):
                    yield clock.progress(step, block)
                    if job.cancel_requested():
                        raise JobCancelled(
                            f"job {job.path} was cancelled (resume it with --resume)"
                        )
            except BaseException:
                client.cancel(futures)
                raise
            job.finish_step(step)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------------- public
def current_progress(job_dir: str | os.PathLike[str]) -> JobProgress:
    """Where job ``job_dir`` stands now (units done of all), as the next run would report it.

    A caller can show this before the run's first unit ends, which may take minutes.
    """
    job = JobDir(job_dir)
    return _Clock(job).progress(job.current_step(), None)


def iter_job(job_dir: str | os.PathLike[str], executor: str | None = None,
             device: str = "cpu", on_block: Callable[[int, int], None] | None = None,
             ) -> Iterator[JobProgress]:  # fmt: skip
    """Run (or resume) a job, yielding :class:`JobProgress` after every unit.

    Parameters
    ----------
    job_dir
        A directory made by :func:`~napari_teramind.generate.job.create_job`.
    executor
        Override the spec's executor: ``"inprocess"``, ``"local"`` or ``"dask"``.
    device
        Device of the in-process executor.
    on_block
        In-process executor only: called as ``on_block(done, total)`` after every block of
        every step inside a span unit (``total`` blocks in the running unit), so a progress
        bar can move between units, which take minutes on a whole brain.

    Closing the generator stops the in-process executor between units; a cancel request
    (:func:`cancel_job`, ``teramind jobs cancel``) stops every executor between units and
    raises :class:`JobCancelled`. Either way the job resumes where it stopped.
    """
    job = JobDir(job_dir)
    if job.complete:
        yield _Clock(job).progress(job.n_steps, None, output=job.spec.output)
        return
    kind = executor or job.spec.executor
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
    # a job from before the numerics record: fix them, once
    cpu_workers = 1
    if kind == "local" and job.spec.numerics is None:
        cpu_workers = sum(d == "cpu" for d in local_devices(job.spec.devices, job.spec.workers))
    job.pin_numerics(kind, cpu_workers)
    job.clear_cancel()
    for old in (job.path / "workers").glob("*.error"):
        old.unlink()  # failures of an earlier run
    run_file = job.path / RUN_FILE
    write_json_atomic(run_file, dict(Owner(worker=f"driver-{kind}").to_dict(), started=now_iso()))
    try:
        _bridge.prepare_job(job)
        clock = _Clock(job)
        if kind == "inprocess":
            it = _iter_inprocess(job, clock, device, on_block)
        elif kind == "local":
            it = _iter_local(job, clock)
        else:
            it = _iter_dask(job, clock)
        last, shown = job.n_steps - 1, set()
        for p in it:
            os.utime(run_file)  # the driver's heartbeat, read by job_status
            if p.step == last:  # let a viewer watch the output grow (this process only)
                new = job.done_blocks(last) - shown
                _bridge.update_pyramids(job, sorted(new))
                shown |= new
            yield p
        _bridge.finalize_job(job)
        job.mark_complete({"finished": now_iso(), "units": job.units_total, "executor": kind})
        yield clock.progress(job.n_steps, None, output=job.spec.output)
    finally:
        run_file.unlink(missing_ok=True)


def run_job(job_dir: str | os.PathLike[str], progress: Callable[[JobProgress], None] | None = None,
            executor: str | None = None, device: str = "cpu",
            on_block: Callable[[int, int], None] | None = None) -> Path:  # fmt: skip
    """Run (or resume) a job to the end and return the path of the generated brain store.

    ``progress`` is called with every :class:`JobProgress`; ``on_block`` as for
    :func:`iter_job`.
    """
    last = None
    for p in iter_job(job_dir, executor=executor, device=device, on_block=on_block):
        last = p
        if progress is not None:
            progress(p)
    assert last is not None and last.output is not None
    return Path(last.output)
