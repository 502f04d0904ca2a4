"""Generation jobs: resume after kills, executors agree bit for bit, claims, disk check, status.

Everything runs on CPU with a tiny seeded random model saved as a native checkpoint, on a tiny
phantom brain (slices 0-1 of 4, a 256 x 256 px region, 3 DDIM steps, 128 px blocks: 12 units).
Jobs run with 1 torch thread per unit (``Numerics(threads=1)``: fast on a busy 2-core machine)
unless a test is about the thread count.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.generate.claims import ClaimBoard, Owner, pid_alive
from napari_teramind.generate.executors import current_progress, iter_job, run_job
from napari_teramind.generate.job import (
    JobCancelled,
    JobDir,
    JobSpec,
    cancel_job,
    check_disk_space,
    create_job,
    job_status,
    list_jobs,
)
from napari_teramind.generate.numerics import DEFAULT_THREADS, Numerics, usable_cores
from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore, GenePanel

SRC = Path(__file__).resolve().parents[1] / "src"
REGION = (0, 256, 128, 384)
SLICES = (0, 1)
STEPS = 3
BLOCK = 128


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny phantom store and a seeded random tiny model saved as a native checkpoint."""
    d = tmp_path_factory.mktemp("jobs-inputs")
    spec = PhantomSpec(seed=5, n_slices=4, height=256, width=384)
    write_phantom(d / "phantom.zarr", spec, workers=1, executor="thread")
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset("tiny", len(spec.gene_names))).eval()
    save_checkpoint(d / "model", model, None, list(spec.gene_names))
    return d / "phantom.zarr", d / "model"


def _spec(inputs, out: Path, **kw) -> JobSpec:
    store, model = inputs
    # memory_budget=0: per-block (step, block) units on disk state, the engine before spans;
    # the resident tests below compare spans with it
    base = dict(source=str(store), model=str(model), region=REGION, slices=SLICES,
                output=str(out), seed=7, steps=STEPS, block_px=BLOCK,
                numerics=Numerics(threads=1), memory_budget=0)  # fmt: skip
    base.update(kw)
    return JobSpec(**base)


def _images(path: Path, job: bool = True) -> np.ndarray:
    store = BrainStore.open(path)
    assert store.kind == "generated"
    (record,) = store.metadata["generated_regions"]
    assert record["region"] == list(REGION)
    assert ("job" in record) == job
    y0, y1, x0, x1 = REGION
    return np.asarray(store.images()[:, list(SLICES), y0:y1, x0:x1])


def _written_units(job: JobDir) -> list[tuple[str, int, int]]:
    """Every (worker, step, block) data write recorded in the per-worker audit logs."""
    rows = []
    for log in (job.path / "workers").glob("*.units"):
        for line in log.read_text().splitlines():
            step, block = map(int, line.split()[:2])
            rows.append((log.stem, step, block))
    return rows


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The uninterrupted in-process run every other run is compared with."""
    d = tmp_path_factory.mktemp("jobs-ref")
    job = create_job(d / "job", _spec(inputs, d / "out.zarr"))
    seen = []
    out = run_job(job.path, progress=seen.append)
    assert out == d / "out.zarr"
    assert [p.units_done for p in seen[:-1]] == list(range(1, job.units_total + 1))
    img = _images(out)
    assert img.dtype == np.uint8 and img.std() > 0
    return img, job


def test_inprocess_job_completes_and_cleans_up(reference):
    _, job = reference
    st = job_status(job.path)
    assert st.state == "complete" and st.units_done == st.units_total == STEPS * 4
    assert not job.state_dir.exists()  # ping-pong state deleted once the job is done
    # every unit written exactly once, all steps folded, no claims left
    units = _written_units(job)
    assert sorted((s, b) for _, s, b in units) == [(s, b) for s in range(STEPS) for b in range(4)]
    assert sorted(p.name for p in job.manifest_dir.iterdir()) == [
        f"step-{s:03d}.done" for s in range(STEPS)
    ]
    assert not job.claims.live_claims()


def test_job_equals_the_roi_api(inputs, reference, tmp_path):
    """The job's output equals the engine's in-process ROI generator, bit for bit."""
    from napari_teramind.generate import generate_roi
    from napari_teramind.model import load_checkpoint

    store, ckpt = inputs
    model, info = load_checkpoint(ckpt)
    items = list(generate_roi(store, model, REGION, SLICES, seed=7, steps=STEPS,
                              gene_names=info.gene_names, output=tmp_path / "roi.zarr",
                              block_px=256, preview=False,
                              numerics=Numerics(threads=1)))  # fmt: skip
    assert items[-1].output is not None
    assert np.array_equal(_images(tmp_path / "roi.zarr", job=False), reference[0])
    roi = BrainStore.open(tmp_path / "roi.zarr")  # finished: complete, covering the region
    assert roi.complete and [c.region for c in roi.coverage] == [REGION]
    assert roi.validate(deep=True) == []


# ---------------------------------------------------------------------- (a) resume
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "napari_teramind.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _kill_after(cmd: list[str], job_dir: Path, at_least: int, extra_s: float) -> int:
    """Start ``cmd``, SIGKILL it once ``at_least`` units are done (+ a random delay)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:
            if (job_dir / "spec.json").is_file() and JobDir(job_dir).units_done() >= at_least:
                time.sleep(extra_s)
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    return JobDir(job_dir).units_done()


def test_resume_after_kills_equals_uninterrupted(inputs, reference, tmp_path):
    """(a) SIGKILL the CLI three times at random points, resume, compare bit for bit."""
    ref, _ = reference
    store, model = inputs
    job_dir, out = tmp_path / "job", tmp_path / "out.zarr"
    rng = random.Random(1234)
    y0, y1, x0, x1 = REGION
    first = _cli("generate", str(store), "--region", str(y0), str(y1), str(x0), str(x1),
                 "--slices", "0-1", "--model", str(model), "--seed", "7", "--steps", str(STEPS),
                 "--block-px", str(BLOCK), "--out", str(out), "--threads", "1",
                 "--memory-budget", "0",
                 "--job-dir", str(job_dir), "--quiet")  # fmt: skip
    resume = _cli("generate", "--resume", str(job_dir), "--quiet")
    done = []
    for i, target in enumerate((rng.randint(1, 3), rng.randint(5, 7), rng.randint(9, 11))):
        done.append(_kill_after(first if i == 0 else resume, job_dir, target, rng.uniform(0, 0.3)))
        assert job_status(job_dir).state == "stopped"
    assert done == sorted(done) and 0 < done[0] and done[-1] < STEPS * 4, done
    r = subprocess.run(resume, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.array_equal(_images(out), ref)
    st = job_status(job_dir)
    assert st.state == "complete" and st.units_done == STEPS * 4


def test_resident_spans_equal_block_units_and_resume_after_kills(inputs, reference, tmp_path):
    """Spans in memory (the CLI default) == per-block units on disk, also across SIGKILLs.

    One slice pair, a checkpoint after every step: 3 span units. The CLI is killed after the
    first and after the second checkpoint (plus a random delay into the next span), resumed
    from the checkpoint each time, and the output is the per-block engine's, bit for bit.
    """
    ref, _ = reference
    store, model = inputs
    job_dir, out = tmp_path / "job", tmp_path / "out.zarr"
    rng = random.Random(99)
    y0, y1, x0, x1 = REGION
    first = _cli("generate", str(store), "--region", str(y0), str(y1), str(x0), str(x1),
                 "--slices", "0-1", "--model", str(model), "--seed", "7", "--steps", str(STEPS),
                 "--block-px", str(BLOCK), "--out", str(out), "--checkpoint-every", "1",
                 "--threads", "1", "--job-dir", str(job_dir), "--quiet")  # fmt: skip
    resume = _cli("generate", "--resume", str(job_dir), "--quiet")
    done = [_kill_after(first, job_dir, 1, rng.uniform(0, 0.5))]
    job = JobDir(job_dir)
    assert job.plan["units"]["kind"] == "pairs" and job.units_total == STEPS
    assert job_status(job_dir).state == "stopped"
    done.append(_kill_after(resume, job_dir, 2, rng.uniform(0, 0.5)))
    assert done == sorted(done) and 0 < done[0] and done[-1] < STEPS, done
    r = subprocess.run(resume, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.array_equal(_images(out), ref)
    assert job_status(job_dir).state == "complete" and not job.state_dir.exists()


def test_resident_local_workers_claim_spans_once(inputs, tmp_path):
    """Two local workers share span units (pair, steps) through claims: each written once.

    Two slice pairs, two steps per span: 4 units. The result equals the in-memory ROI
    generator's (one span over both pairs, batched across them) bit for bit.
    """
    from napari_teramind.generate import generate_roi
    from napari_teramind.model import load_checkpoint

    store, ckpt = inputs
    spec = _spec(inputs, tmp_path / "out.zarr", slices=(0, 1, 2, 3), executor="local",
                 workers=2, memory_budget=None, checkpoint_every=2)  # fmt: skip
    job = create_job(tmp_path / "job", spec)
    assert (job.n_steps, job.n_blocks) == (2, 2)
    run_job(job.path)
    units = _written_units(job)
    assert sorted((s, b) for _, s, b in units) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    model, info = load_checkpoint(ckpt)
    items = list(generate_roi(store, model, REGION, (0, 1, 2, 3), seed=7, steps=STEPS,
                              gene_names=info.gene_names, output=tmp_path / "roi.zarr",
                              block_px=BLOCK, preview=False,
                              numerics=Numerics(threads=1)))  # fmt: skip
    y0, y1, x0, x1 = REGION
    a = np.asarray(BrainStore.open(tmp_path / "out.zarr").images()[:, :4, y0:y1, x0:x1])
    b = np.asarray(BrainStore.open(items[-1].output).images()[:, :4, y0:y1, x0:x1])
    assert a.std() > 0 and np.array_equal(a, b)


# ---------------------------------------------------------------------- (b), (c) executors
def test_dask_local_cluster_equals_inprocess(inputs, reference, tmp_path):
    """(b) A real dask.distributed LocalCluster (2 worker processes, by scheduler address).

    One worker process is SIGKILLed during the second step: dask reschedules its task, the
    dead worker's claim is taken over, and the output is still the in-process bytes.
    """
    from distributed import Client, LocalCluster

    ref, _ = reference
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        spec = _spec(inputs, tmp_path / "out.zarr", executor="dask",
                     scheduler=cluster.scheduler_address)  # fmt: skip
        job = create_job(tmp_path / "job", spec)
        killed = False
        for p in iter_job(job.path):
            if not killed and p.units_done >= 5:
                pids = client.run(os.getpid)
                os.kill(next(iter(pids.values())), signal.SIGKILL)
                killed = True
        assert killed
    assert np.array_equal(_images(tmp_path / "out.zarr"), ref)
    units = _written_units(job)
    assert {(s, b) for _, s, b in units} == {(s, b) for s in range(STEPS) for b in range(4)}
    assert len(units) <= STEPS * 4 + 1  # (d) at most the killed worker's unit is redone


def test_local_processes_equal_inprocess(inputs, reference, tmp_path):
    """(c) Two local CPU worker processes give the same bytes, even when one is SIGKILLed.

    Once both workers have written units, one is killed; the survivor takes over its claim
    (a dead process's claim is stale at once) and finishes the job.
    """
    ref, _ = reference
    job = create_job(tmp_path / "job", _spec(inputs, tmp_path / "out.zarr", executor="local",
                                             workers=2))  # fmt: skip
    killed = None
    progress = []
    for p in iter_job(job.path):
        progress.append(p)
        workers = {w for w, _, _ in _written_units(job)}
        if killed is None and len(workers) == 2 and p.units_done < job.units_total - 2:
            victim = next(c for c in multiprocessing.active_children()
                          if c.name.startswith("teramind-local"))  # fmt: skip
            killed = victim.name.removeprefix("teramind-")
            os.kill(victim.pid, signal.SIGKILL)
    assert killed is not None, "both workers should have worked before the end"
    assert progress[-1].output == str(tmp_path / "out.zarr")
    assert np.array_equal(_images(tmp_path / "out.zarr"), ref)
    # (d) no unit written twice, except possibly the one the killed worker was writing
    units = _written_units(job)
    assert {(s, b) for _, s, b in units} == {(s, b) for s in range(STEPS) for b in range(4)}
    twice = [u for u in {(s, b) for _, s, b in units}
             if sum((s, b) == u for _, s, b in units) > 1]  # fmt: skip
    assert len(twice) <= 1
    for u in twice:
        assert killed in {w for w, s, b in units if (s, b) == u}


# ---------------------------------------------------------------------- (d) claims
_RACE = """
import json, pathlib, sys, time
from napari_teramind.generate.claims import ClaimBoard, Owner, pid_alive
board = ClaimBoard(sys.argv[1], lease_s=60)
barrier = pathlib.Path(sys.argv[3])
sys.stdin.read()  # start together
got = [i for i in range(200) if board.try_claim(f"step-000/block-{i:05d}", Owner(sys.argv[2]))]
print(json.dumps(got), flush=True)
# stay alive until every racer has finished: a claim whose owner has exited is stale by
# design (a dead worker's units are taken over), which is not what this test races for
(barrier / sys.argv[2]).touch()
while len(list(barrier.iterdir())) < int(sys.argv[4]):
    time.sleep(0.01)
"""


def test_claims_are_exclusive_across_processes(tmp_path):
    """(d) Four processes race for 200 units: every unit is claimed exactly once."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(tmp_path / "claims"), f"w{k}", str(barrier), "4"],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for p in procs:
        p.stdin.close()
    got = [json.loads(p.stdout.read()) for p in procs]
    assert all(p.wait() == 0 for p in procs)
    flat = [i for g in got for i in g]
    assert sorted(flat) == list(range(200))


def test_stale_claims_are_taken_over_once(tmp_path):
    """(d) A dead owner's or an expired claim is taken over by one worker only."""
    board = ClaimBoard(tmp_path, lease_s=60)
    live = board.try_claim("step-000/block-00000", Owner("a"))
    assert live is not None and live.still_held()
    assert board.try_claim("step-000/block-00000", Owner("b")) is None  # live owner
    # a claim from a process that has exited (same host) is stale at once
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    dead = Owner("dead", pid=int(proc.stdout))
    assert board.try_claim("step-000/block-00001", dead) is not None
    taken = board.try_claim("step-000/block-00001", Owner("c"))
    assert taken is not None and taken.path.name.endswith(".1")
    assert board.try_claim("step-000/block-00001", Owner("d")) is None
    # a child that died but was not reaped yet (a zombie) is dead too
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{zombie.pid}/stat")
    for _ in range(500):
        if stat.read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z":
            break
        time.sleep(0.02)
    assert not pid_alive(zombie.pid)
    zombie.wait()
    assert pid_alive(os.getpid())
    # an expired lease (no heartbeat for longer than the lease) is stale too
    old = time.time() - 120
    os.utime(live.path, (old, old))
    took = board.try_claim("step-000/block-00000", Owner("e"))
    assert took is not None and not live.still_held() and took.still_held()


# ---------------------------------------------------------------------- (e) disk space
def test_disk_space_check_names_the_numbers(tmp_path):
    """(e) A job that cannot fit on the disk is refused before anything is written."""
    panel = GenePanel([f"g{i}" for i in range(8)])
    big = BrainStore.create(tmp_path / "huge.zarr", n_slices=64, height=65536, width=65536,
                            panel=panel, pixel_size_um=1.0, slice_spacing_um=10.0)  # fmt: skip
    big.write_images(0, 0, 0, np.zeros((2, 512, 512), np.uint8))
    big.write_images(63, 65536 - 512, 65536 - 512, np.zeros((2, 512, 512), np.uint8))
    big.write_genes(0, 0, 0, np.zeros((8, 128, 128), np.uint16))
    big.write_genes(63, 4096 - 128, 4096 - 128, np.zeros((8, 128, 128), np.uint16))
    big.update_metadata({"complete": True})
    spec = JobSpec(source=str(tmp_path / "huge.zarr"), model="bundled",
                   region=(0, 65536, 0, 65536), slices=tuple(range(64)),
                   output=str(tmp_path / "out.zarr"), block_px=2048)  # fmt: skip
    with pytest.raises(OSError, match=r"not enough disk space.*needs about .*TiB.*free"):
        create_job(tmp_path / "job", spec)
    assert not (tmp_path / "job").exists() and not (tmp_path / "out.zarr").exists()
    with pytest.raises(OSError, match=r"only .* are free"):
        check_disk_space([(tmp_path / "x", 10**18)])
    check_disk_space([(tmp_path / "x", 10**6)])  # a small need passes


# ---------------------------------------------------------------------- numerics (#13 item 5)
@pytest.fixture(scope="module")
def reference_2threads(inputs, tmp_path_factory):
    """An in-process job whose spec fixes 2 threads, run with 2 ambient threads in the parent."""
    d = tmp_path_factory.mktemp("jobs-ref2")
    job = create_job(d / "job", _spec(inputs, d / "out.zarr", numerics=Numerics(threads=2)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_job(job.path)
    finally:
        torch.set_num_threads(before)
    return _images(d / "out.zarr")


def _ambient(threads: int):
    """Context: the calling process's torch thread count set to ``threads``, then restored."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return ctx()


def test_bytes_do_not_depend_on_executor_or_ambient_threads(inputs, reference_2threads,
                                                             tmp_path):  # fmt: skip
    """A dask nanny worker (1 ambient thread) and a resume under 1 then 3 ambient threads give
    the bytes of an in-process run with 2: every unit computes with the spec's 2 threads.

    (Before the numerics record, each unit used its worker's ambient thread count, and 1- and
    3-thread results differ from 2-thread ones in a few output pixels of this very job.)
    """
    from distributed import LocalCluster

    ref = reference_2threads
    numerics = Numerics(threads=2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        spec = _spec(inputs, tmp_path / "dask.zarr", executor="dask", numerics=numerics,
                     scheduler=cluster.scheduler_address)  # fmt: skip
        job = create_job(tmp_path / "dask.job", spec)
        run_job(job.path)
    assert np.array_equal(_images(tmp_path / "dask.zarr"), ref)

    job = create_job(tmp_path / "resumed.job",
                     _spec(inputs, tmp_path / "resumed.zarr", numerics=numerics))  # fmt: skip
    with _ambient(1):
        it = iter_job(job.path)
        for p in it:
            if p.units_done >= 5:
                break
        it.close()
        assert torch.get_num_threads() == 1  # the units' setting does not leak out
    assert 0 < job.units_done() < job.units_total
    with _ambient(3):
        run_job(job.path)
        assert torch.get_num_threads() == 3
    assert np.array_equal(_images(tmp_path / "resumed.zarr"), ref)
    record = BrainStore.open(tmp_path / "resumed.zarr").metadata["generated_regions"][0]
    assert record["numerics"] == numerics.to_dict()


def test_old_job_without_numerics_is_pinned_on_resume(inputs, reference_2threads, tmp_path):
    """A spec.json written before the numerics record resumes with the thread count it ran
    with (in-process: the driver's), pinned in numerics.json, so later resumes under another
    ambient count continue it with the same numerics."""
    job = create_job(tmp_path / "old.job", _spec(inputs, tmp_path / "old.zarr"))
    raw = json.loads((job.path / "spec.json").read_text())
    del raw["numerics"]  # as an older napari-teramind wrote it
    (job.path / "spec.json").write_text(json.dumps(raw))
    old = JobDir(job.path)
    assert old.spec.numerics is None
    with pytest.raises(RuntimeError, match=r"before jobs recorded their numerics.*--resume"):
        _ = old.numerics  # a worker cannot guess them
    with _ambient(2):
        it = iter_job(job.path)
        for p in it:
            if p.units_done >= 4:
                break
        it.close()
    pinned = json.loads((job.path / "numerics.json").read_text())
    assert pinned["threads"] == 2 and JobDir(job.path).numerics.threads == 2
    with _ambient(1):
        run_job(job.path)
    assert np.array_equal(_images(tmp_path / "old.zarr"), reference_2threads)


def test_numerics_are_recorded_validated_and_restored(inputs, tmp_path):
    job = create_job(tmp_path / "j", _spec(inputs, tmp_path / "o.zarr", numerics=None))
    assert json.loads((job.path / "spec.json").read_text())["numerics"] == {
        "threads": DEFAULT_THREADS, "deterministic": True, "matmul_precision": "highest",
        "cuda_autocast": "bf16"}  # fmt: skip
    assert DEFAULT_THREADS == min(4, usable_cores())
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        Numerics(threads=0)
    with pytest.raises(ValueError, match="matmul precision must be one of"):
        Numerics(matmul_precision="low")
    with pytest.raises(ValueError, match="unknown numerics fields"):
        Numerics.from_dict({"threads": 2, "dtype": "fp8"})
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.get_float32_matmul_precision())  # fmt: skip
    with Numerics(threads=3, matmul_precision="high").applied():
        assert torch.get_num_threads() == 3 and torch.are_deterministic_algorithms_enabled()
        assert torch.get_float32_matmul_precision() == "high"
        with Numerics(threads=2, matmul_precision="high").applied():  # nested: inner wins
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3 and torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.get_float32_matmul_precision()) == before  # fmt: skip


# ---------------------------------------------------------------------- (f) status
def test_status_after_partial_progress_then_cancel(inputs, reference, tmp_path, capsys):
    """(f) Status after some units: progress, speed, remaining time; cancel; list; resume."""
    ref, _ = reference
    job = create_job(tmp_path / "jobs" / "a", _spec(inputs, tmp_path / "out.zarr"))
    st = job_status(job.path)
    assert (st.state, st.units_done, st.units_total) == ("not started", 0, 12)
    it = iter_job(job.path)
    for p in it:
        if p.units_done == 6:
            mid = job_status(job.path)
            assert mid.state == "running" and mid.step == 1
            break
    it.close()  # stop between units, like closing napari's worker
    st = job_status(job.path)
    assert (st.state, st.units_done, st.step) == ("stopped", 6, 1)
    now = current_progress(job.path)  # what a widget shows before the resumed run's first unit
    assert (now.step, now.block, now.units_done, now.units_total) == (1, None, 6, 12)
    assert now.rate is None and now.eta_s is None and now.output is None
    assert st.rate is not None and st.rate > 0 and st.eta_s == pytest.approx(6 / st.rate)
    from napari_teramind.cli import main

    assert main(["jobs", "status", str(job.path)]) == 0
    text = capsys.readouterr().out
    assert "state    stopped" in text and "units 6/12" in text and "step 2/3" in text
    assert "units/s" in text and "remaining ~" in text
    assert main(["jobs", "list", str(tmp_path / "jobs")]) == 0
    assert "stopped" in capsys.readouterr().out
    # a cancel request stops every executor between units; resume clears it
    assert main(["jobs", "cancel", str(job.path)]) == 0
    assert "cancel requested; state now cancelled" in capsys.readouterr().out
    assert job_status(job.path).state == "cancelled"
    job.clear_cancel()
    it = iter_job(job.path)
    next(it)
    cancel_job(job.path)
    with pytest.raises(JobCancelled):
        list(it)
    assert [s.state for s in list_jobs(tmp_path / "jobs")] == ["cancelled"]
    run_job(job.path)
    assert np.array_equal(_images(tmp_path / "out.zarr"), ref)


# ---------------------------------------------------------------------- (g) bad specs
def test_bad_specs_are_refused_with_clear_errors(inputs, tmp_path):
    out = tmp_path / "out.zarr"
    with pytest.raises(FileNotFoundError, match=r"source brain store .* does not exist"):
        create_job(tmp_path / "j1", _spec(inputs, out, source=str(tmp_path / "nope.zarr")))
    with pytest.raises(ValueError, match="not inside the 256 x 384 px canvas"):
        create_job(tmp_path / "j2", _spec(inputs, out, region=(0, 512, 0, 256)))
    with pytest.raises(ValueError, match="not a positive multiple of 64"):
        create_job(tmp_path / "j3", _spec(inputs, out, block_px=100))
    with pytest.raises(ValueError, match="outside the store's 4 slices"):
        create_job(tmp_path / "j4", _spec(inputs, out, slices=(0, 1, 9)))
    with pytest.raises(FileNotFoundError, match=r"model checkpoint .* does not exist"):
        create_job(tmp_path / "j5", _spec(inputs, out, model=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="unknown executor"):
        create_job(tmp_path / "j6", _spec(inputs, out, executor="slurm"))
    assert not out.exists()
    job = create_job(tmp_path / "j7", _spec(inputs, out))
    with pytest.raises(FileExistsError, match="--resume"):
        create_job(tmp_path / "j7", _spec(inputs, tmp_path / "other.zarr"))
    with pytest.raises(FileNotFoundError, match="not a generation job directory"):
        JobDir(tmp_path / "j1")
    spec = json.loads((job.path / "spec.json").read_text())
    assert spec["source"] == str(inputs[0].resolve()) and spec["plan"]["n_blocks"] == 4


# ---------------------------------------------------------------------- (h) the finished output
def test_finished_job_output_is_complete_and_records_its_region(inputs, reference, tmp_path,
                                                                capsys):  # fmt: skip
    """A finished job's region store is complete, says what it covers and validates (#13 item 4).

    Chunks outside the region were never written and read as 0; inside it every chunk must
    exist. ``info``, ``validate --deep``, ``export`` (without ``--allow-incomplete``) and
    ``evaluate`` (without ``--region``) all use the recorded region.
    """
    import shutil

    import tifffile

    from napari_teramind.cli import main
    from napari_teramind.evaluate import evaluate_stores
    from napari_teramind.store import CoveredRegion, MissingChunkError

    ref, job = reference
    assert job_status(job.path).state == "complete"
    out = Path(job.spec.output)
    store = BrainStore.open(out, allow_incomplete=False)  # complete: opens like a real store
    assert store.complete
    assert store.coverage == (CoveredRegion(REGION, SLICES),)
    assert store.validate(deep=True) == []
    assert main(["validate", "--deep", str(out)]) == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "complete     True" in text and "y 0:256, x 128:384 px of slices [0, 1]" in text
    # outside the region: fill, never an error; genes (and their pyramid) copied in the region
    y0, y1, x0, x1 = REGION
    assert not np.asarray(store.images(0)[:, :, :, :x0]).any()
    assert not np.asarray(store.images(0)[:, 2:]).any()
    src = BrainStore.open(inputs[0])
    for k in range(store.n_levels("genes")):
        f = 16 * 2**k
        win = (slice(None), list(SLICES), slice(y0 // f, -(-y1 // f)), slice(x0 // f, -(-x1 // f)))
        if k == 0:
            np.testing.assert_array_equal(store.genes(k)[win], src.genes(k)[win])
        assert np.asarray(store.genes(k)[win]).any()
    # export without --allow-incomplete writes the covered region only
    tif = tmp_path / "gen.ome.tif"
    assert main(["export", "ome-tiff", str(out), "-o", str(tif), "--slice", "1", "--quiet"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tif), ref[:, 1])
    assert main(["export", "ome-tiff", str(out), "-o", str(tmp_path / "x.tif"), "--slice", "3",
                 "--quiet"]) == 2  # fmt: skip
    assert "holds generated data for slices [0, 1] only, not slice 3" in capsys.readouterr().err
    # evaluate without --region scores the recorded region on the recorded slices
    report = evaluate_stores(src, out, metrics=["psnr"], trivial=())
    assert report.settings["regions"] == [f"z{z}:y0-256:x128-384" for z in SLICES]
    # a chunk lost inside the region is an error, and validate finds it by listing
    lost = tmp_path / "lost.zarr"
    shutil.copytree(out, lost)
    (lost / "images" / "s0" / "c" / "0" / "1" / "1" / "2").unlink()
    broken = BrainStore.open(lost)
    with pytest.raises(MissingChunkError, match="chunk 0/1/1/2 of array images/s0 is missing"):
        np.asarray(broken.images(0)[0, 1])
    (problem,) = broken.validate()
    assert problem.startswith("images/s0: 1 of 16 chunks inside the covered region missing")
    # writing into a finished store again: incomplete until that region is finished too
    from napari_teramind.generate.roi import open_output_store

    assert not open_output_store(src, lost).complete
    assert not BrainStore.open(lost).complete
