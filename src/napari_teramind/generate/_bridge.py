"""The only place where jobs call the generation engine.

Jobs need four things from the engine: a plan (how many blocks, how big the state and the
output are), preparing the state arrays and the output store, running one (step, block) unit,
and finishing the output store. Everything else (claims, manifest, executors) is engine-agnostic.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_teramind.generate.devices import choose_batch_size, load_model
from napari_teramind.store.atomic import write_json_atomic

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_teramind.generate.job import JobDir, JobSpec
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.store import BrainStore

PREPARED_FILE = "prepared.json"
#: Largest image chunk of a generated store (the brain-store default).
MAX_IMAGE_CHUNK = 512
#: Bytes assumed per all-zero image chunk outside the generated region (compressed).
ZERO_CHUNK_BYTES = 1024
SAMPLERS = ("ddim",)


def make_plan(spec: JobSpec, store: BrainStore | None = None) -> GenerationPlan:
    """The engine's :class:`GenerationPlan` of a job spec."""
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.store import BrainStore

    if spec.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {spec.sampler!r}; available: {', '.join(SAMPLERS)}")
    store = store or BrainStore.open(spec.source)
    return GenerationPlan(
        canvas=store.shape,
        region=spec.region,
        slices=spec.slices,
        block_px=spec.block_px,
        seed=spec.seed,
        steps=spec.steps,
        gene_block_px=store.gene_block_px,
    )


def output_image_chunk(plan: GenerationPlan) -> int:
    """Image chunk of the output store such that every block writes whole chunks of its own.

    The largest divisor of 512 that also divides the block size and the region origin: then
    no two blocks share an output chunk, and concurrent workers never read-modify-write one.
    """
    y0, _, x0, _ = plan.region
    chunk = math.gcd(MAX_IMAGE_CHUNK, plan.block_px, y0, x0)
    assert plan.output_chunk_safe(chunk)
    return chunk


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _untouched_chunks(plan: GenerationPlan, shape: tuple[int, int, int], chunk: int):
    """Level-0 image chunks ``(z, cy, cx)`` that no unit writes (outside region or slices)."""
    n, h, w = shape
    y0, y1, x0, x1 = plan.region
    rows = range(-(-h // chunk))
    cols = range(-(-w // chunk))
    written = set(plan.slices)
    for z in range(n):
        for cy in rows:
            for cx in cols:
                inside = (
                    z in written
                    and cy * chunk < y1
                    and (cy + 1) * chunk > y0
                    and cx * chunk < x1
                    and (cx + 1) * chunk > x0
                )
                if not inside:
                    yield z, cy, cx


def plan_job(spec: JobSpec) -> dict[str, Any]:
    """The JSON plan of a job: steps, blocks and predicted bytes of state and output."""
    from napari_teramind.store import BrainStore

    store = BrainStore.open(spec.source)
    plan = make_plan(spec, store)
    chunk = output_image_chunk(plan)
    state_nbytes = 2 * math.prod(plan.state_shape) * 4  # two float32 ping-pong arrays
    generated = 2 * len(plan.slices) * plan.height * plan.width  # uint8 DAPI + PolyT
    n_zero = sum(1 for _ in _untouched_chunks(plan, store.shape, chunk))
    images = (generated + n_zero * ZERO_CHUNK_BYTES) * 4 // 3  # + pyramid levels
    genes = _dir_bytes(Path(spec.source) / "genes")
    return {
        "n_steps": plan.steps,
        "n_blocks": plan.n_blocks,
        "state_nbytes": int(state_nbytes),
        "output_nbytes": int(images + genes),
        "image_chunk": chunk,
        "generation": plan.to_dict(),
    }


# ---------------------------------------------------------------------- output store
def _provenance(job: JobDir, info: Any) -> dict[str, Any]:
    spec = job.spec
    return {
        "source": spec.source,
        "generator": "napari-teramind generate job",
        "job": str(job.path),
        "model": spec.model,
        "checkpoint_sha256": (info.provenance or {}).get("weights_sha256") if info else None,
        "seed": spec.seed,
        "sampler": spec.sampler,
        "steps": spec.steps,
        "region": list(spec.region),
        "slices": list(spec.slices),
        "gene_blind": spec.gene_blind,
    }


def _create_output(job: JobDir) -> None:
    """A generated brain store on the source's canvas, with the source's gene counts."""
    from napari_teramind.store import BrainStore

    src = BrainStore.open(job.spec.source)
    z, h, w = src.shape
    out = BrainStore.create(
        job.spec.output,
        n_slices=z,
        height=h,
        width=w,
        panel=src.panel,
        pixel_size_um=src.pixel_size_um,
        slice_spacing_um=src.slice_spacing_um,
        gene_block_px=src.gene_block_px,
        kind="generated",
        provenance=_provenance(job, None),
        overwrite=True,
        image_chunk=int(job.plan["image_chunk"]),
    )
    # the gene counts that drove the generation, pyramids included: a plain file copy
    shutil.rmtree(out.path / "genes")
    shutil.copytree(src.path / "genes", out.path / "genes")


def prepare_job(job: JobDir) -> None:
    """Create the state arrays and the output store once; a resume finds them prepared.

    A run killed while preparing left no ``prepared.json``, so everything is recreated.
    """
    from napari_teramind.generate.engine import create_state_arrays

    if (job.path / PREPARED_FILE).is_file():
        return
    shutil.rmtree(job.state_dir, ignore_errors=True)
    create_state_arrays(make_plan(job.spec), job.state_dir)
    _create_output(job)
    write_json_atomic(job.path / PREPARED_FILE, {"state": str(job.state_dir)})


def update_pyramids(job: JobDir, blocks: list[int]) -> None:
    """Rebuild the output's image pyramids over finished last-step blocks (one writer only).

    Called by the job's driver process only, so pyramid chunks shared by several blocks are
    never written concurrently; the viewer sees the output grow.
    """
    from napari_teramind.store import BrainStore

    plan = make_plan(job.spec)
    out = BrainStore.open(job.spec.output, mode="r+")
    for b in blocks:
        blk = plan.block(b)
        y0, x0 = plan.to_store(blk.y0, blk.x0)
        y1, x1 = plan.to_store(blk.y1, blk.x1)
        out.build_pyramids(names=["images"], region=(y0, y1, x0, x1), workers=1)


def finalize_job(job: JobDir) -> None:
    """Complete the output store and delete the state arrays (idempotent).

    Image chunks outside the generated region and slices are written as zeros (a complete
    store has no missing chunks), pyramids are built, provenance recorded.
    """
    import numpy as np

    from napari_teramind.store import BrainStore

    plan = make_plan(job.spec)
    out = BrainStore.open(job.spec.output, mode="r+")
    chunk = out.image_chunk
    _, h, w = out.shape
    for z, cy, cx in _untouched_chunks(plan, out.shape, chunk):
        y, x = cy * chunk, cx * chunk
        hh, ww = min(chunk, h - y), min(chunk, w - x)
        out.write_images(z, y, x, np.zeros((2, hh, ww), np.uint8))
    out.build_pyramids(names=["images"], workers=1)
    _, info = load_model(job.spec.model, "cpu")
    out.update_metadata({"complete": True, "provenance": _provenance(job, info)})
    shutil.rmtree(job.state_dir, ignore_errors=True)


# ---------------------------------------------------------------------- units
class _ClaimLost(Exception):
    """The unit was taken over by another worker: this worker must not write."""


class _Guarded:
    """Array or store proxy that refuses writes once this worker's claim is gone."""

    def __init__(self, target: Any, still_held: Callable[[], bool]):
        self._target = target
        self._still_held = still_held

    def _check(self) -> None:
        if not self._still_held():
            raise _ClaimLost

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check()
        self._target[key] = value

    def write_images(self, *args: Any) -> None:
        self._check()
        self._target.write_images(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class UnitRunner:
    """What one worker process keeps between units: the model, opened stores, the plan.

    Parameters
    ----------
    job
        The job.
    device
        Torch device of this worker (``"cpu"``, ``"cuda:1"``).
    """

    def __init__(self, job: JobDir, device: str = "cpu"):
        from napari_teramind.generate.engine import GeneSource, open_state_arrays
        from napari_teramind.store import BrainStore

        self.job = job
        self.device = device
        self.model, self.info = load_model(job.spec.model, device)
        self.batch_size = job.spec.batch_size or choose_batch_size(self.model, device)
        source = BrainStore.open(job.spec.source)
        self.plan = make_plan(job.spec, source)
        self.genes = GeneSource(source, self.info.gene_names, job.spec.gene_blind)
        self.states = open_state_arrays(job.state_dir)
        self.output = BrainStore.open(job.spec.output, mode="r+")

    def run(self, step: int, block: int, still_held: Callable[[], bool]) -> bool:
        """Run unit (step, block); write nothing unless ``still_held()``; True when written."""
        from napari_teramind.generate.engine import run_unit, state_index

        read, write = state_index(step)
        last = step == self.plan.steps - 1
        try:
            run_unit(
                self.plan,
                self.model,
                self.genes,
                None if read is None else self.states[read],
                None if last else _Guarded(self.states[write], still_held),
                step,
                block,
                device=self.device,
                batch_size=self.batch_size,
                output=_Guarded(self.output, still_held) if last else None,
                bf16=str(self.device).startswith("cuda"),
            )
        except _ClaimLost:
            return False
        return True
