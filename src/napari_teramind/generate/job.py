"""Generation jobs on disk: spec, manifest of done units, claims, cancel, status, disk check.

A job directory holds everything a worker needs, so any process on any machine that sees the
directory (local disk or a shared filesystem) can work on the job::

    JOB/
      spec.json                      what to generate (JobSpec), written once, atomically
      state/                         the engine's ping-pong state arrays (x_t of two steps)
      manifest/step-003/block-00012  one marker per done (step, block) unit (JSON, atomic)
      manifest/step-002.done         a finished step: its markers folded into one file
      claims/step-003/block-00012.0  who is working on a unit (see ``claims.py``)
      cancel                         present = cancel requested; workers stop between units
      complete.json                  the job finished and its output store is complete
      workers/<name>.error           traceback of a worker that failed

A unit is recorded only after its data write returned: the marker is written with
:func:`~napari_teramind.atomic.write_json_atomic` (temporary file, fsync, rename) after the
engine wrote the block. A crash before the rename leaves no marker and the unit is redone; units
are deterministic and idempotent (same input state, same output bytes), so redoing one is
harmless. One marker file per unit (rather than an append-only log) because a rename is atomic
on every filesystem, including network ones where concurrent appends from several machines are
not, and because readers never have to parse a torn tail. Markers of a finished step are folded
into one ``step-NNN.done`` file, so the directory holds at most one step's markers.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_teramind.atomic import read_json, write_json_atomic
from napari_teramind.generate.claims import DEFAULT_LEASE_S, ClaimBoard
from napari_teramind.generate.numerics import Numerics, legacy_numerics
from napari_teramind.generate.schemes import DEFAULT_SCHEME, LEGACY_SCHEME, check_scheme
from napari_teramind.store.errors import NotEnoughSpace, OverwriteRefused
from napari_teramind.store.overwrite import JOB_SPEC_FILE, Input, check_replaceable, discard

SPEC_FILE = JOB_SPEC_FILE
COMPLETE_FILE = "complete.json"
CANCEL_FILE = "cancel"
#: Where the numerics of a job written before the ``numerics`` record are pinned on resume.
NUMERICS_FILE = "numerics.json"
EXECUTORS = ("inprocess", "local", "dask")
JOB_FORMAT = 1


class JobCancelled(RuntimeError):
    """Raised by a run when a cancel request stopped it between units."""


@dataclass(frozen=True)
class JobSpec:
    """What a generation job produces; everything a worker process needs to do any unit.

    Attributes
    ----------
    source
        Absolute path of the source brain store (genes are read from it).
    model
        ``"bundled"`` or the absolute path of a checkpoint, so worker processes can load it.
    region
        ``(y0, y1, x0, x1)`` in image pixels.
    slices
        Slice indices of the source store to generate.
    seed, sampler, steps
        Initial-noise seed, sampler name and number of sampler steps.
    scheme
        Sampling scheme (where the patch grids sit at each step). A spec written before
        schemes existed has none and resumes with ``"collage"``, the scheme it started with.
    block_px
        Edge of a block (one work unit per step) in pixels; a multiple of 64.
    batch_size
        Patches per model forward; None chooses one (fits GPU memory on CUDA).
    output
        Absolute path of the generated brain store.
    executor
        ``"inprocess"``, ``"local"`` or ``"dask"``.
    devices, workers, scheduler
        Local executor: one worker per device, or ``workers`` CPU processes. Dask executor:
        the scheduler address (None starts a LocalCluster with ``workers`` workers).
    gene_blind
        Feed zero gene counts (evaluation baseline).
    lease_s
        Seconds without heartbeat after which another worker takes over a unit.
    numerics
        Thread count, deterministic algorithms, matmul precision and CUDA autocast every unit
        runs with (:class:`~napari_teramind.generate.numerics.Numerics`), so a job's bytes do
        not depend on the executor, the machine or the ambient thread count. None only for
        jobs written before the record existed (see :attr:`JobDir.numerics`).
    memory_budget
        Bytes of host memory a unit may hold. When a unit of ``pairs_per_unit`` slice pairs
        fits (state of two steps, cached genes, features in flight), units are resident
        spans: the pairs advance ``checkpoint_every`` steps in memory and checkpoint their
        state to disk at the end. A pair too large for it (a whole brain) is cut into the
        largest square tiles that fit, each advanced the same way with a growing halo
        (:mod:`~napari_teramind.generate.tiles`). ``None``: 8 GiB. ``0``: per-block units on
        disk state (the step-synchronous engine without spans).
    checkpoint_every
        Steps per resident span (state is written to disk every this many steps).
    pairs_per_unit
        Slice pairs per resident span (batched together on the device).
    tile_px
        Side of the tiles of tiled spans (a multiple of ``block_px``). ``None``: tiles only
        when a pair does not fit ``memory_budget``, the largest that fit. A value runs tiles
        of that side (refused when one does not fit the budget).
    """

    source: str
    model: str
    region: tuple[int, int, int, int]
    slices: tuple[int, ...]
    output: str
    seed: int = 0
    sampler: str = "ddim"
    steps: int = 15
    scheme: str = DEFAULT_SCHEME
    block_px: int = 512
    batch_size: int | None = None
    executor: str = "inprocess"
    devices: tuple[str, ...] | None = None
    workers: int | None = None
    scheduler: str | None = None
    gene_blind: bool = False
    lease_s: float = DEFAULT_LEASE_S
    extra: dict[str, Any] = field(default_factory=dict)
    numerics: Numerics | None = field(default_factory=Numerics)
    memory_budget: int | None = None
    checkpoint_every: int = 8  # resident.DEFAULT_CHECKPOINT_EVERY (a test holds them equal)
    pairs_per_unit: int = 1
    tile_px: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``spec.json`` holds)."""
        d = dataclasses.asdict(self)
        d["region"] = list(self.region)
        d["slices"] = list(self.slices)
        d["devices"] = list(self.devices) if self.devices else None
        d["numerics"] = None if self.numerics is None else self.numerics.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        """Read the form written by :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names - {"format", "created", "software", "plan"}
        if unknown:
            raise ValueError(f"unknown job spec fields {sorted(unknown)}: spec.json is damaged")
        kw = {k: v for k, v in d.items() if k in names}
        kw.setdefault("scheme", LEGACY_SCHEME)  # specs older than schemes ran "collage"
        kw["region"] = tuple(int(v) for v in kw["region"])
        kw["slices"] = tuple(int(v) for v in kw["slices"])
        if kw.get("devices"):
            kw["devices"] = tuple(kw["devices"])
        # a spec without the record predates it: None, never silently today's default
        numerics = kw.pop("numerics", None)
        kw["numerics"] = None if numerics is None else Numerics.from_dict(numerics)
        return cls(**kw)

    def generation_record(self, job: str) -> dict[str, Any]:
        """What the output store records of this job's region while and after it is written.

        ``job`` is the job directory; it also identifies the writer, so a resumed job is not
        refused by its own pending entry.
        """
        return {
            "region": list(self.region),
            "slices": list(self.slices),
            "seed": self.seed,
            "sampler": self.sampler,
            "scheme": self.scheme,
            "steps": self.steps,
            "gene_blind": self.gene_blind,
            "source_store": self.source,
            "model": self.model,
            "job": job,
            "writer": job,
            **({"edits": self.extra["edits"]} if "edits" in self.extra else {}),
            # threads and precision change the last bits: part of what a region holds
            **({"numerics": self.numerics.to_dict()} if self.numerics is not None else {}),
        }

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _step_name(step: int) -> str:
    return f"step-{step:03d}"


def _block_name(block: int) -> str:
    return f"block-{block:05d}"


def unit_key(step: int, block: int) -> str:
    """The claim/manifest key of unit (step, block)."""
    return f"{_step_name(step)}/{_block_name(block)}"


class JobDir:
    """A job directory: paths, manifest, claims and cancel flag.

    Parameters
    ----------
    path
        The job directory (must contain ``spec.json``).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).resolve()
        spec_path = self.path / SPEC_FILE
        if not spec_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a generation job directory (no {SPEC_FILE}); create one "
                "with `teramind generate ... --job-dir DIR`"
            )
        raw = read_json(spec_path)
        self.raw = raw
        self.spec = JobSpec.from_dict(raw)
        self.plan: dict[str, Any] = dict(raw.get("plan") or {})
        self.claims = ClaimBoard(self.path / "claims", lease_s=self.spec.lease_s)

    # ------------------------------------------------------------------ layout
    @property
    def state_dir(self) -> Path:
        """Directory of the engine's state arrays."""
        return self.path / "state"

    @property
    def manifest_dir(self) -> Path:
        """Directory of the done markers."""
        return self.path / "manifest"

    @property
    def n_steps(self) -> int:
        """Number of sampler steps."""
        return int(self.plan["n_steps"])

    @property
    def n_blocks(self) -> int:
        """Number of blocks per step."""
        return int(self.plan["n_blocks"])

    @property
    def units_total(self) -> int:
        """Number of (step, block) units."""
        return self.n_steps * self.n_blocks

    # ------------------------------------------------------------------ numerics
    @property
    def numerics(self) -> Numerics:
        """The settings every unit of this job runs with.

        The spec's record; for a job written before it existed, the settings pinned in
        ``numerics.json`` by the first resume (:meth:`pin_numerics`).

        Raises
        ------
        RuntimeError
            For an old job that no resume has pinned yet (a worker started on it directly).
        """
        if self.spec.numerics is not None:
            return self.spec.numerics
        path = self.path / NUMERICS_FILE
        if path.is_file():
            return Numerics.from_dict(read_json(path))
        raise RuntimeError(
            f"job {self.path} was created before jobs recorded their numerics (thread count, "
            "precision), so its workers cannot know them; resume it with `teramind generate "
            "--resume` (or iter_job/run_job), which pins them, then start workers"
        )

    def pin_numerics(self, executor: str, cpu_workers: int = 1) -> Numerics:
        """Fix the numerics of a job written without them (idempotent); returns them.

        The first resume records the settings the job effectively ran with so far
        (:func:`~napari_teramind.generate.numerics.legacy_numerics`) in ``numerics.json``;
        every later worker and resume uses that record, wherever it runs.
        """
        if self.spec.numerics is not None:
            return self.spec.numerics
        path = self.path / NUMERICS_FILE
        if not path.is_file():
            legacy = legacy_numerics(executor, cpu_workers)
            write_json_atomic(path, legacy.to_dict())
        return self.numerics

    # ------------------------------------------------------------------ manifest
    def _marker(self, step: int, block: int) -> Path:
        return self.manifest_dir / _step_name(step) / _block_name(block)

    def _step_file(self, step: int) -> Path:
        return self.manifest_dir / f"{_step_name(step)}.done"

    def step_done(self, step: int) -> bool:
        """Whether every block of ``step`` is recorded done."""
        if self._step_file(step).is_file():
            return True
        return len(self.done_blocks(step)) == self.n_blocks

    def unit_done(self, step: int, block: int) -> bool:
        """Whether unit (step, block) is recorded done."""
        # marker first: a step's markers are only removed after its .done file exists
        return self._marker(step, block).is_file() or self._step_file(step).is_file()

    def done_blocks(self, step: int) -> set[int]:
        """Blocks of ``step`` recorded done."""
        if self._step_file(step).is_file():
            return set(range(self.n_blocks))
        try:
            names = os.listdir(self.manifest_dir / _step_name(step))
        except FileNotFoundError:
            return set()
        return {int(n[6:]) for n in names if n.startswith("block-") and n[6:].isdigit()}

    def record_unit(self, step: int, block: int, info: dict[str, Any]) -> None:
        """Record unit (step, block) done; call only after its data write returned."""
        path = self._marker(step, block)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, info)

    def finish_step(self, step: int) -> None:
        """Fold a finished step's markers into ``step-NNN.done`` (idempotent).

        The folded file keeps the timing figures ``status`` needs (first start, last finish,
        unit seconds), then the per-unit markers and the step's claims are removed.
        """
        target = self._step_file(step)
        if target.is_file():  # folded already; a kill may have left the markers behind
            shutil.rmtree(self.manifest_dir / _step_name(step), ignore_errors=True)
            shutil.rmtree(self.claims.root / _step_name(step), ignore_errors=True)
            return
        started, finished, seconds = [], [], 0.0
        for b in range(self.n_blocks):
            try:
                info = read_json(self._marker(step, b))
            except FileNotFoundError as exc:
                raise RuntimeError(
                    f"step {step} cannot be closed: block {b} has no done marker"
                ) from exc
            started.append(float(info.get("started", 0.0)))
            finished.append(float(info.get("finished", 0.0)))
            seconds += float(info.get("seconds", 0.0))
        write_json_atomic(
            target,
            {
                "step": step,
                "n_blocks": self.n_blocks,
                "started": min(started),
                "finished": max(finished),
                "unit_seconds": seconds,
                "finish_times": sorted(finished)[-64:],
            },
        )
        shutil.rmtree(self.manifest_dir / _step_name(step), ignore_errors=True)
        shutil.rmtree(self.claims.root / _step_name(step), ignore_errors=True)

    def units_done(self) -> int:
        """Number of (step, block) units recorded done."""
        return sum(len(self.done_blocks(s)) for s in range(self.n_steps))

    def current_step(self) -> int:
        """The first step not finished (``n_steps`` when all are)."""
        for s in range(self.n_steps):
            if not self.step_done(s):
                return s
        return self.n_steps

    # ------------------------------------------------------------------ cancel / complete
    def request_cancel(self) -> None:
        """Ask every worker to stop after its current unit."""
        write_json_atomic(self.path / CANCEL_FILE, {"requested": time.time()})

    def cancel_requested(self) -> bool:
        """Whether a cancel request is pending."""
        return (self.path / CANCEL_FILE).exists()

    def clear_cancel(self) -> None:
        """Withdraw a cancel request (a resume does this)."""
        (self.path / CANCEL_FILE).unlink(missing_ok=True)

    @property
    def complete(self) -> bool:
        """Whether the job finished and its output store is complete."""
        return (self.path / COMPLETE_FILE).is_file()

    def mark_complete(self, info: dict[str, Any]) -> None:
        """Record the job finished."""
        write_json_atomic(self.path / COMPLETE_FILE, info)

    def worker_errors(self) -> dict[str, str]:
        """Tracebacks of failed workers, by worker name."""
        d = self.path / "workers"
        if not d.is_dir():
            return {}
        return {p.stem: p.read_text() for p in sorted(d.glob("*.error"))}


# ---------------------------------------------------------------------- disk space
def format_bytes(n: float) -> str:
    """Human-readable size (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_disk_space(needs: Sequence[tuple[str | os.PathLike[str], int]], margin: float = 0.05):
    """Check that each filesystem has room for what will be written to it.

    Parameters
    ----------
    needs
        ``(path, bytes)`` pairs: bytes that will be written under each path. Paths on the same
        filesystem are summed.
    margin
        Fraction of the filesystem's size kept free in addition.

    Raises
    ------
    NotEnoughSpace
        (an ``OSError``) When a filesystem lacks room, with the predicted and free figures and
        the fixes.
    """
    by_dev: dict[int, dict[str, Any]] = {}
    for path, nbytes in needs:
        where = _existing_parent(Path(path))
        dev = os.stat(where).st_dev
        entry = by_dev.setdefault(dev, {"paths": [], "bytes": 0, "where": where})
        entry["paths"].append(str(path))
        entry["bytes"] += int(nbytes)
    for entry in by_dev.values():
        usage = shutil.disk_usage(entry["where"])
        need = entry["bytes"] + int(margin * usage.total)
        if need > usage.free:
            raise NotEnoughSpace(
                f"not enough disk space for this job on the filesystem of {entry['where']}: it "
                f"needs about {format_bytes(entry['bytes'])} (for {', '.join(entry['paths'])}) "
                f"plus a {margin:.0%} reserve ({format_bytes(margin * usage.total)}), but only "
                f"{format_bytes(usage.free)} are free. Free space, put --job-dir or --out on "
                "another disk, or generate a smaller --region / fewer --slices."
            )


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- create
RUN_FILE = "run.json"


def _validate_spec(spec: JobSpec) -> None:
    """Check a spec against its source store; errors name the problem and the fix."""
    from napari_teramind.store import BrainStore

    if spec.executor not in EXECUTORS:
        raise ValueError(f"unknown executor {spec.executor!r}; use one of {', '.join(EXECUTORS)}")
    if spec.steps < 1:
        raise ValueError(f"steps must be at least 1, got {spec.steps}")
    check_scheme(spec.scheme)
    if spec.block_px < 64 or spec.block_px % 64:
        raise ValueError(
            f"block size {spec.block_px} px is not a positive multiple of 64 (the patch size); "
            "use e.g. --block-px 512"
        )
    if spec.batch_size is not None and spec.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {spec.batch_size}")
    if spec.memory_budget is not None and spec.memory_budget < 0:
        raise ValueError(f"memory budget must be >= 0 bytes, got {spec.memory_budget}")
    if spec.checkpoint_every < 1:
        raise ValueError(
            f"checkpoint every {spec.checkpoint_every} steps: give at least 1 (--checkpoint-every)"
        )
    if spec.pairs_per_unit < 1:
        raise ValueError(f"pairs per unit must be at least 1, got {spec.pairs_per_unit}")
    if spec.tile_px is not None and (spec.tile_px <= 0 or spec.tile_px % spec.block_px):
        raise ValueError(
            f"tile side {spec.tile_px} px must be a positive multiple of the block size "
            f"{spec.block_px} px (--tile-px)"
        )
    if spec.workers is not None and spec.workers < 1:
        raise ValueError(f"workers must be at least 1, got {spec.workers}")
    if not Path(spec.source).exists():
        raise FileNotFoundError(
            f"source brain store {spec.source} does not exist; give the path of a brain store "
            "(make one with `teramind ingest` or `teramind phantom`)"
        )
    store = BrainStore.open(spec.source)
    z, h, w = store.shape
    y0, y1, x0, x1 = spec.region
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise ValueError(
            f"region y {y0}:{y1}, x {x0}:{x1} is not inside the {h} x {w} px canvas of "
            f"{spec.source}; give --region y0 y1 x0 x1 with 0 <= y0 < y1 <= {h} and "
            f"0 <= x0 < x1 <= {w}"
        )
    if not spec.slices:
        raise ValueError("no slices to generate; give --slices")
    bad = [s for s in spec.slices if not 0 <= s < z]
    if bad:
        raise ValueError(
            f"slices {bad} are outside the store's {z} slices (0..{z - 1}); fix --slices"
        )
    if spec.model != "bundled" and not Path(spec.model).exists():
        raise FileNotFoundError(
            f"model checkpoint {spec.model} does not exist; give --model bundled or the path "
            "of a checkpoint"
        )


def create_job(job_dir: str | os.PathLike[str], spec: JobSpec, *, overwrite: bool = False,
               check_space: bool = True) -> JobDir:  # fmt: skip
    """Validate a job, predict its disk use, check free space and write its directory.

    Parameters
    ----------
    job_dir
        New (or empty) directory for the job.
    spec
        What to generate. Relative paths are made absolute, so workers started elsewhere
        find the source, model and output. An existing generated output store is written
        into (the region must not hold another generation).
    overwrite
        Replace an existing job directory and output store. Only a job directory and a
        generated store are replaced, never the source, the checkpoint (or a parent or child
        of either), a file or a directory this project did not write.
    check_space
        Compare the predicted disk use with free space (raises ``NotEnoughSpace``, an
        ``OSError``, when short).

    Raises
    ------
    OverwriteRefused
        When the job directory or the output may not be written or replaced.

    Returns
    -------
    JobDir
        The new job; run it with :func:`~napari_teramind.generate.executors.run_job`.
    """
    from napari_teramind.generate import _bridge

    job_dir = Path(job_dir).resolve()
    spec = spec.replace(
        source=str(Path(spec.source).resolve()),
        output=str(Path(spec.output).resolve()),
        model=spec.model if spec.model == "bundled" else str(Path(spec.model).resolve()),
        region=tuple(int(v) for v in spec.region),
        slices=tuple(int(s) for s in spec.slices),
        numerics=spec.numerics or Numerics(),
    )
    _validate_spec(spec)
    output = Path(spec.output)
    inputs: list[Input] = [("source store", spec.source)]
    if spec.model != "bundled":
        inputs.append(("model checkpoint", spec.model))
    if job_dir == output or output in job_dir.parents:
        raise OverwriteRefused(
            f"the job directory {job_dir} {'is' if job_dir == output else 'lies inside'} the "
            f"output store {output}; put it beside the output (the default is OUT.job)"
        )
    job_found = check_replaceable(
        job_dir,
        replaces=("job",),
        overwrite=overwrite,
        inputs=inputs,
        role="job directory",
        hint=f"continue it with `teramind generate --resume {job_dir}`",
    )
    out_found = check_replaceable(
        output, replaces=("generated",), overwrite=overwrite, inputs=inputs,
        role="output store", reuse=True,
    )  # fmt: skip
    if out_found.exists and not overwrite:
        # write the region into an existing generated store: it must match the source, and
        # the region must not hold another generation
        from napari_teramind.generate.roi import check_region_free, open_output_store
        from napari_teramind.store import BrainStore

        out = open_output_store(BrainStore.open(spec.source), output)
        check_region_free(out, spec.generation_record(str(job_dir)))
    plan = _bridge.plan_job(spec)
    if check_space:
        check_disk_space([(job_dir, plan["state_nbytes"]), (spec.output, plan["output_nbytes"])])
    if job_found.exists:
        discard(job_dir)
    if out_found.exists and overwrite:
        discard(output)
    from napari_teramind import __version__

    doc = dict(spec.to_dict(), format=JOB_FORMAT, created=now_iso(),
               software=f"napari-teramind {__version__}", plan=plan)  # fmt: skip
    made = not job_dir.exists()
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(job_dir / SPEC_FILE, doc)
    except OSError:
        if made:  # a job that could not be written leaves nothing behind
            shutil.rmtree(job_dir, ignore_errors=True)
        raise
    return JobDir(job_dir)


# ---------------------------------------------------------------------- status
@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job, read from its directory only (safe while workers run).

    Attributes
    ----------
    state
        ``"not started"``, ``"running"``, ``"cancelling"``, ``"cancelled"``, ``"stopped"``
        (killed or interrupted: resume it), ``"failed"`` or ``"complete"``.
    rate, eta_s
        Units per second over the most recent finished units, and the remaining time at that
        rate (None when not known).
    """

    path: str
    state: str
    step: int
    n_steps: int
    n_blocks: int
    units_done: int
    units_total: int
    rate: float | None
    eta_s: float | None
    workers: tuple[str, ...]
    output: str
    errors: dict[str, str]
    #: The job's unit layout (``kind`` "blocks", "pairs" or "tiles", steps per unit, ...).
    layout: dict[str, Any] = field(default_factory=dict)
    #: Sampler steps of the generation (a span unit covers several).
    sampler_steps: int = 0

    @property
    def position(self) -> str:
        """Where the job is, in the units it runs: a step of blocks or a span of steps."""
        step = min(self.step + 1, self.n_steps)
        kind = self.layout.get("kind", "blocks")
        if kind == "blocks":
            return f"step {step}/{self.n_steps}  ({self.n_blocks} blocks per step)"
        every = int(self.layout.get("steps_per_unit", 1))
        s0 = (step - 1) * every + 1
        s1 = min(self.sampler_steps or step * every, step * every)
        what = (
            f"{self.n_blocks} tiles of {self.layout.get('tile_px')} px"
            if kind == "tiles"
            else f"{self.n_blocks} pair groups"
        )
        return f"span {step}/{self.n_steps} (steps {s0}-{s1} of {self.sampler_steps}; {what})"

    @property
    def fraction(self) -> float:
        """Fraction of units done."""
        return self.units_done / self.units_total if self.units_total else 1.0

    def summary(self) -> str:
        """A few human-readable lines (what ``teramind jobs status`` prints)."""
        lines = [
            f"job      {self.path}",
            f"state    {self.state}",
            f"progress {self.fraction:6.1%}  units {self.units_done}/{self.units_total}  "
            f"{self.position}",
        ]
        if self.rate:
            eta = _format_duration(self.eta_s) if self.eta_s is not None else "?"
            lines.append(f"speed    {self.rate:.3g} units/s ({60 * self.rate:.3g}/min), "
                         f"remaining ~{eta}")  # fmt: skip
        else:
            lines.append("speed    unknown (fewer than two units finished recently)")
        if self.workers:
            lines.append(f"workers  {', '.join(self.workers)}")
        lines.append(f"output   {self.output}")
        for name, err in self.errors.items():
            last = err.strip().splitlines()[-1] if err.strip() else ""
            lines.append(f"error    {name}: {last}")
        return "\n".join(lines)


def _format_duration(s: float) -> str:
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _recent_finish_times(job: JobDir) -> list[float]:
    times: list[float] = []
    for s in range(job.n_steps):
        f = job._step_file(s)
        if f.is_file():
            times.extend(read_json(f).get("finish_times", []))
            continue
        d = job.manifest_dir / _step_name(s)
        if d.is_dir():  # a marker is written when its unit finishes: its mtime is enough
            for p in d.iterdir():
                if p.name.startswith("block-"):
                    try:
                        times.append(p.stat().st_mtime)
                    except FileNotFoundError:
                        pass
        break
    return sorted(times)[-64:]


def _run_alive(job: JobDir) -> bool:
    from napari_teramind.generate.claims import claim_info, is_stale

    path = job.path / RUN_FILE
    if not path.is_file():
        return False
    return not is_stale(claim_info(path), job.spec.lease_s)


def job_status(job_dir: str | os.PathLike[str]) -> JobStatus:
    """Progress, speed, remaining time and state of a job, from its directory."""
    job = JobDir(job_dir)
    done = job.units_done()
    step = job.current_step()
    times = _recent_finish_times(job)
    rate = eta = None
    if len(times) >= 2 and times[-1] > times[0]:
        rate = (len(times) - 1) / (times[-1] - times[0])
        eta = (job.units_total - done) / rate
    live = job.claims.live_claims()
    workers = tuple(sorted({str(c.get("worker")) for c in live}))
    errors = job.worker_errors()
    running = bool(live) or _run_alive(job)
    if job.complete:
        state, eta = "complete", 0.0
    elif running:
        state = "cancelling" if job.cancel_requested() else "running"
    elif job.cancel_requested():
        state = "cancelled"
    elif errors:
        state = "failed"
    elif done == 0:
        state = "not started"
    else:
        state = "stopped"
    return JobStatus(str(job.path), state, step, job.n_steps, job.n_blocks, done,
                     job.units_total, rate, eta, workers, job.spec.output, errors,
                     dict(job.plan.get("units") or {"kind": "blocks"}),
                     job.spec.steps)  # fmt: skip


def list_jobs(root: str | os.PathLike[str]) -> list[JobStatus]:
    """Status of every job directory under ``root`` (searched two levels deep)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    found = []
    for pattern in (SPEC_FILE, f"*/{SPEC_FILE}", f"*/*/{SPEC_FILE}"):
        found.extend(p.parent for p in root.glob(pattern))
    return [job_status(d) for d in sorted(set(found))]


def cancel_job(job_dir: str | os.PathLike[str]) -> JobStatus:
    """Ask every worker of a job to stop after its current unit; returns the status."""
    job = JobDir(job_dir)
    if not job.complete:
        job.request_cancel()
    return job_status(job_dir)
