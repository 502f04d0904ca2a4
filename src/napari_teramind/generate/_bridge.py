"""The only place where jobs call the generation engine.

Jobs need four things from the engine: a plan (how many blocks, how big the state and the
output are), preparing the state arrays and the output store, running one (step, block) unit,
and finishing the output store. Everything else (claims, manifest, executors) is engine-agnostic.

This module sits below the job system (``job.py``, ``executors.py``) and never imports it: it
reads a job through the two protocols below, which :class:`~napari_teramind.generate.job.JobDir`
and :class:`~napari_teramind.generate.job.JobSpec` satisfy (checked by import-linter's layers).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from napari_teramind.atomic import write_json_atomic
from napari_teramind.generate.devices import SAMPLERS, check_sampler, load_model, unit_numerics

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.store import BrainStore


class JobSpec(Protocol):
    """What the bridge reads of a job spec (:class:`napari_teramind.generate.job.JobSpec`)."""

    @property
    def source(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def output(self) -> str: ...
    @property
    def region(self) -> tuple[int, int, int, int]: ...
    @property
    def slices(self) -> tuple[int, ...]: ...
    @property
    def seed(self) -> int: ...
    @property
    def sampler(self) -> str: ...
    @property
    def steps(self) -> int: ...
    @property
    def block_px(self) -> int: ...
    @property
    def batch_size(self) -> int | None: ...
    @property
    def gene_blind(self) -> bool: ...
    @property
    def scheme(self) -> str: ...
    def generation_record(self, job: str) -> dict[str, Any]: ...
    @property
    def extra(self) -> dict[str, Any]: ...


class JobDir(Protocol):
    """What the bridge reads of a job (:class:`napari_teramind.generate.job.JobDir`)."""

    path: Path
    spec: JobSpec
    plan: dict[str, Any]

    @property
    def state_dir(self) -> Path: ...


PREPARED_FILE = "prepared.json"
#: Largest image chunk of a generated store (the brain-store default).
MAX_IMAGE_CHUNK = 512
__all__ = ["SAMPLERS", "UnitRunner", "finalize_job", "make_plan", "plan_job", "prepare_job"]


def make_plan(spec: JobSpec, store: BrainStore | None = None) -> GenerationPlan:
    """The engine's :class:`GenerationPlan` of a job spec."""
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.store import BrainStore

    check_sampler(spec.sampler)
    from napari_teramind.model.registry import model_config_of

    store = store or BrainStore.open(spec.source)
    return GenerationPlan.for_model(
        model_config_of(spec.model),
        canvas=store.shape,
        region=spec.region,
        slices=spec.slices,
        block_px=spec.block_px,
        seed=spec.seed,
        steps=spec.steps,
        gene_block_px=store.gene_block_px,
        scheme=spec.scheme,
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


def unit_layout(spec: JobSpec, plan: GenerationPlan, n_genes: int) -> dict[str, Any]:
    """How a job is cut into units: in-memory spans when they fit the memory budget.

    ``{"kind": "pairs", ...}``: a unit is ``pairs_per_unit`` slice pairs advanced
    ``steps_per_unit`` steps in memory (:func:`~napari_teramind.generate.resident.run_span`),
    checkpointed to the state arrays at its end; the manifest's "step" is then the span's
    index and its "block" the pair group. ``{"kind": "tiles", ...}``: a pair too large for
    the budget is cut into square tiles of ``tile_px`` (the largest that fits), each advanced
    ``steps_per_unit`` steps in memory with a growing halo
    (:func:`~napari_teramind.generate.tiles.run_tile_span`); the manifest's "block" is the
    tile. ``{"kind": "blocks"}``: one ``(step, block)`` unit on disk state, as before (a spec
    with ``memory_budget=0``, a budget too small for one block's tile, or a job created
    before spans existed, whose plan has no ``units``).
    """
    from napari_teramind.generate.resident import (
        DEFAULT_CHECKPOINT_EVERY,
        DEFAULT_MEMORY_BUDGET,
        resident_nbytes,
    )
    from napari_teramind.generate.tiles import choose_tile_px, plan_tiles, tile_nbytes

    budget = getattr(spec, "memory_budget", None)
    budget = DEFAULT_MEMORY_BUDGET if budget is None else int(budget)
    n_pairs = len(plan.pairs)
    per = max(1, min(int(getattr(spec, "pairs_per_unit", 1) or 1), n_pairs))
    every = int(getattr(spec, "checkpoint_every", None) or DEFAULT_CHECKPOINT_EVERY)
    every = max(1, min(every, plan.steps))
    need = resident_nbytes(plan, n_genes, per)
    n_spans = -(-plan.steps // every)

    def tiles(tile_px: int) -> dict[str, Any]:
        return {"kind": "tiles", "steps_per_unit": every, "tile_px": tile_px,
                "resident_nbytes": tile_nbytes(plan, tile_px, every, n_genes),
                "memory_budget": budget, "n_steps": n_spans,
                "n_blocks": len(plan_tiles(plan, tile_px))}  # fmt: skip

    asked = getattr(spec, "tile_px", None)
    if asked:
        layout = tiles(int(asked))
        if budget and layout["resident_nbytes"] > budget:
            raise ValueError(
                f"a {asked} px tile needs {layout['resident_nbytes'] / 2**30:.2f} GiB, more than "
                f"the memory budget {budget / 2**30:.2f} GiB: choose smaller tiles (--tile-px) "
                "or a larger --memory-budget"
            )
        return layout
    if budget and need <= budget:
        return {"kind": "pairs", "steps_per_unit": every, "pairs_per_unit": per,
                "resident_nbytes": int(need), "memory_budget": budget,
                "n_steps": n_spans, "n_blocks": -(-n_pairs // per)}  # fmt: skip
    tile_px = choose_tile_px(plan, every, n_genes, budget) if budget else None
    if tile_px is not None:
        return tiles(tile_px)
    return {"kind": "blocks", "resident_nbytes": int(need), "memory_budget": budget,
            "n_steps": plan.steps, "n_blocks": plan.n_blocks}  # fmt: skip


def layout_of(job: JobDir) -> dict[str, Any]:
    """The job's unit layout (a plan without one is a per-block job)."""
    return dict(job.plan.get("units") or {"kind": "blocks"})


def plan_job(spec: JobSpec) -> dict[str, Any]:
    """The JSON plan of a job: units, steps, blocks and predicted bytes of state and output."""
    from napari_teramind.store import BrainStore

    store = BrainStore.open(spec.source)
    plan = make_plan(spec, store)
    layout = unit_layout(spec, plan, len(store.panel))
    chunk = output_image_chunk(plan)
    state_nbytes = 2 * math.prod(plan.state_shape) * 4  # two float32 ping-pong arrays
    generated = 2 * len(plan.slices) * plan.height * plan.width  # uint8 DAPI + PolyT
    gb = plan.gene_block_px
    genes = 2 * len(store.panel) * len(plan.slices) * (plan.height // gb) * (plan.width // gb)
    output_nbytes = (generated + genes) * 4 // 3  # + pyramid levels, uncompressed
    return {
        "n_steps": layout["n_steps"],
        "n_blocks": layout["n_blocks"],
        "units": layout,
        "state_nbytes": int(state_nbytes),
        "output_nbytes": int(output_nbytes),
        "image_chunk": chunk,
        "generation": plan.to_dict(),
    }


# ---------------------------------------------------------------------- gene edits
def _edits_json(spec: JobSpec) -> list[dict[str, Any]] | None:
    """The gene edits of a perturbation job (``spec.extra["edits"]``), None for a generation."""
    from napari_teramind.generate.edits import SPEC_KEY

    return (getattr(spec, "extra", None) or {}).get(SPEC_KEY)


def gene_counts(spec: JobSpec, source: BrainStore) -> Any:
    """The gene array every unit of the job reads: edited for a perturbation, else None.

    None means the store's own genes (a plain generation reads them exactly as before).
    """
    from napari_teramind.generate.edits import edited_counts, edits_from_json

    items = _edits_json(spec)
    return edited_counts(source, edits_from_json(items, source)) if items else None


# ---------------------------------------------------------------------- output store
def _record(job: JobDir, model: Any, info: Any, missing: Any) -> dict[str, Any]:
    """Provenance of the generated region, as :func:`generate_roi` records it."""
    from napari_teramind.generate.roi import _checkpoint_record, model_fingerprint

    return {
        **job.spec.generation_record(str(job.path)),
        "model_sha256": model_fingerprint(model),
        "model_config": model.config.to_dict(),
        "checkpoint": _checkpoint_record(info),
        "missing_genes": list(missing),
        "engine": "napari-teramind step-synchronous tiled DDIM (collage decoder only)",
        "numerics": job.numerics.to_dict(),
    }


def prepare_job(job: JobDir) -> None:
    """Create the state arrays and the output store once; a resume finds them prepared.

    The output is a generated brain store on the source's canvas (as :func:`generate_roi`
    makes it, or an existing one to write the region into), with the region's gene counts
    copied, and image chunks such that no two blocks share one. A run killed while preparing
    left no ``prepared.json``, so everything is prepared again.
    """
    from napari_teramind.generate.engine import create_state_arrays
    from napari_teramind.generate.roi import _copy_genes, begin_region, open_output_store
    from napari_teramind.store import BrainStore, discard

    if (job.path / PREPARED_FILE).is_file():
        return
    source = BrainStore.open(job.spec.source)
    plan = make_plan(job.spec, source)
    shutil.rmtree(job.state_dir, ignore_errors=True)
    create_state_arrays(plan, job.state_dir)
    if _half_made_by(job, Path(job.spec.output)):
        discard(job.spec.output)  # an earlier start of this job failed while creating it
    out = open_output_store(
        source,
        job.spec.output,
        provenance={"generated_by_job": str(job.path)},
        image_chunk=int(job.plan["image_chunk"]),
    )
    if not plan.output_chunk_safe(out.image_chunk):
        raise ValueError(
            f"output store {out.path} has {out.image_chunk} px image chunks, which blocks of "
            f"{plan.block_px} px at region origin {plan.region[::2]} would share between "
            "workers; choose a --block-px and --region aligned to its chunks, or a new --out"
        )
    begin_region(out, job.spec.generation_record(str(job.path)))
    _copy_genes(source, out, plan, counts=gene_counts(job.spec, source))
    write_json_atomic(job.path / PREPARED_FILE, {"state": str(job.state_dir)})


def _half_made_by(job: JobDir, path: Path) -> bool:
    """Whether ``path`` is a generated store this job created in a start that failed.

    Such a store holds nothing of value (at most a copy of the source's gene counts and this
    job's own pending entry), and may be too incomplete to open, so preparing again replaces it.
    """
    from napari_teramind.atomic import read_json

    try:
        meta = read_json(path / "zarr.json")["attributes"]["teramind"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if meta.get("kind") != "generated" or meta.get("complete"):
        return False
    if (meta.get("provenance") or {}).get("generated_by_job") != str(job.path):
        return False
    others = [e for e in meta.get("generating", []) if e.get("writer") != str(job.path)]
    return not meta.get("generated_regions") and not others


def update_pyramids(job: JobDir, blocks: list[int]) -> None:
    """Rebuild the output's image pyramids over finished last-step blocks (one writer only).

    Called by the job's driver process only, so pyramid chunks shared by several blocks are
    never written concurrently; the viewer sees the output grow.
    """
    from napari_teramind.store import BrainStore

    if not blocks:
        return
    plan = make_plan(job.spec)
    out = BrainStore.open(job.spec.output, mode="r+")
    layout = layout_of(job)
    if layout["kind"] == "pairs":  # a finished pair group covers the whole region
        out.build_pyramids(names=["images"], region=plan.region, workers=1)
        return
    if layout["kind"] == "tiles":
        from napari_teramind.generate.tiles import plan_tiles

        tiles = plan_tiles(plan, int(layout["tile_px"]))
        rects = [tiles[b].rect for b in blocks]
    else:
        rects = [(plan.block(b).y0, plan.block(b).y1, plan.block(b).x0, plan.block(b).x1)
                 for b in blocks]  # fmt: skip
    for y0, y1, x0, x1 in rects:
        (a0, b0), (a1, b1) = plan.to_store(y0, x0), plan.to_store(y1, x1)
        out.build_pyramids(names=["images"], region=(a0, a1, b0, b1), workers=1)


def finalize_job(job: JobDir) -> None:
    """Finish the output store and delete the state arrays (idempotent).

    Called once every unit is done. Pyramids of the region are rebuilt once more (by this
    process alone), the region is appended to the store's ``generated_regions`` provenance
    and ``coverage``, and the store is marked complete (see
    :func:`~napari_teramind.generate.roi.finish_generated_store`). A finalize that already
    recorded this job does nothing more.
    """
    from napari_teramind.generate.engine import GeneSource
    from napari_teramind.generate.roi import finish_generated_store
    from napari_teramind.store import BrainStore

    source = BrainStore.open(job.spec.source)
    out = BrainStore.open(job.spec.output, mode="r+")
    recorded = [r.get("job") for r in out.metadata.get("generated_regions", [])]
    if str(job.path) not in recorded:
        model, info = load_model(job.spec.model, "cpu")
        missing = GeneSource(source, info.gene_names, job.spec.gene_blind).missing
        finish_generated_store(out, _record(job, model, info, missing))
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

    For a resident job it also keeps the states its spans ended with (as many as the memory
    budget allows beside one running unit), so a worker that continues the same pairs reads
    nothing back from disk (the checkpoint holds the same
    bytes, which another worker or a resume reads instead).

    Parameters
    ----------
    job
        The job.
    device
        Torch device of this worker (``"cpu"``, ``"cuda:1"``).
    on_block
        Called as ``on_block(done, total)`` after every block of every step of a span unit
        (progress inside a unit).
    """

    def __init__(self, job: JobDir, device: str = "cpu",
                 on_block: Callable[[int, int], None] | None = None):  # fmt: skip
        from napari_teramind.generate.engine import GeneSource, open_state_arrays
        from napari_teramind.store import BrainStore

        self.job = job
        self.device = device
        self.numerics = job.numerics  # before any CUDA work: it may set the cuBLAS workspace
        with self.numerics.applied():
            self.model, self.info = load_model(job.spec.model, device)
            self.batch_size, self.precision = unit_numerics(
                self.model, device, job.spec.batch_size, self.numerics.bf16(device)
            )
        source = BrainStore.open(job.spec.source)
        self.plan = make_plan(job.spec, source)
        self.genes = GeneSource(source, self.info.gene_names, job.spec.gene_blind,
                                counts=gene_counts(job.spec, source))  # fmt: skip
        self.states = open_state_arrays(job.state_dir)
        self.output = BrainStore.open(job.spec.output, mode="r+")
        self.layout = layout_of(job)
        self._held: dict[tuple[tuple[int, ...], int], Any] = {}
        self._tiles: tuple | None = None
        self._prefetcher: Any = None
        self._next: tuple[int, int] | None = None
        self.on_block = on_block

    def run(self, step: int, block: int, still_held: Callable[[], bool]) -> bool:
        """Run unit (step, block); write nothing unless ``still_held()``; True when written."""
        if self.layout["kind"] == "pairs":
            return self._run_span(step, block, still_held)
        if self.layout["kind"] == "tiles":
            return self._run_tile(step, block, still_held)
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
                bf16=self.precision,
                numerics=self.numerics,
            )
        except _ClaimLost:
            return False
        return True

    def span(self, index: int, group: int):
        """The :class:`~napari_teramind.generate.resident.Span` of unit (index, group)."""
        from napari_teramind.generate.resident import Span

        every, per = int(self.layout["steps_per_unit"]), int(self.layout["pairs_per_unit"])
        pairs = tuple(range(group * per, min(len(self.plan.pairs), (group + 1) * per)))
        return Span(pairs, index * every, min(self.plan.steps, (index + 1) * every))

    @property
    def tiles(self) -> tuple:
        """The tiles of a tiled job (:func:`~napari_teramind.generate.tiles.plan_tiles`)."""
        if self._tiles is None:
            from napari_teramind.generate.tiles import plan_tiles

            self._tiles = plan_tiles(self.plan, int(self.layout["tile_px"]))
        return self._tiles

    def _tile_steps(self, index: int) -> tuple[int, int]:
        every = int(self.layout["steps_per_unit"])
        return index * every, min(self.plan.steps, (index + 1) * every)

    def prefetch(self, step: int, block: int) -> None:
        """Name the unit this worker will probably run after the next one (tiled jobs).

        The next tiled unit takes its own inputs (read ahead, if they were) and then starts
        reading this one's in the background (genes, the grown checkpoint window), so the
        reads overlap its compute. Only units of the span being worked on are named: the
        checkpoint they read is complete.
        """
        self._next = (step, block) if self.layout["kind"] == "tiles" else None

    def _start_prefetch(self) -> None:
        if self._next is None:
            return
        from napari_teramind.generate.tiles import TilePrefetcher, read_tile_inputs

        (step, block), self._next = self._next, None
        if self._prefetcher is None:
            self._prefetcher = TilePrefetcher()
        step0, step1 = self._tile_steps(step)
        state_in = self.states[(step - 1) % 2] if step else None
        tile = self.tiles[block]
        self._prefetcher.start((step, block), lambda: read_tile_inputs(
            self.plan, self.genes, tile, step0, step1, state_in))  # fmt: skip

    def _run_tile(self, index: int, tile: int, still_held: Callable[[], bool]) -> bool:
        """A tiled unit: span ``index`` of tile ``tile``.

        Reads the grown area of the previous span's checkpoint (state array
        ``(index - 1) % 2``, written by every tile of that span) and writes the tile's own
        state into array ``index % 2``, or its images at the last step.
        """
        from napari_teramind.generate.resident import BackgroundWriter
        from napari_teramind.generate.tiles import run_tile_span, tile_geometry

        step0, step1 = self._tile_steps(index)
        try:
            inputs = self._prefetcher.take((index, tile)) if self._prefetcher else None
        except Exception:  # a failed prefetch: read again here, where errors are reported
            inputs = None
        self._start_prefetch()  # the next unit's reads overlap this one's compute
        last = step1 == self.plan.steps
        writer = BackgroundWriter()
        total = sum(len(ts.blocks) for ts in tile_geometry(self.plan, self.tiles[tile],
                                                           step0, step1))  # fmt: skip
        try:
            for done, _ in enumerate(run_tile_span(
                self.plan, self.model, self.genes, self.tiles[tile], step0, step1, inputs=inputs,
                state_in=self.states[(index - 1) % 2] if index else None,
                checkpoint=None if last else _Guarded(self.states[index % 2], still_held),
                output=_Guarded(self.output, still_held) if last else None, writer=writer,
                device=self.device, batch_size=self.batch_size, precision=self.precision,
                numerics=self.numerics,
            ), 1):  # fmt: skip
                if self.on_block is not None:
                    self.on_block(done, total)
            writer.join()
        except _ClaimLost:
            return False
        finally:
            writer.close()
        return True

    def _run_span(self, index: int, group: int, still_held: Callable[[], bool]) -> bool:
        """A resident unit: span ``index`` of pair group ``group``.

        Reads the checkpoint of span ``index - 1`` (state array ``(index - 1) % 2``) unless
        this worker holds it in memory, and writes its own into array ``index % 2`` (the
        ping-pong of the per-block engine, one level up), or the images at the last step.
        """
        from napari_teramind.generate.resident import BackgroundWriter, PairState, run_span

        span = self.span(index, group)
        state = self._held.pop((span.pairs, span.step0), None)
        if span.step0 > 0 and state is None:
            state = PairState.read(self.states[(index - 1) % 2], span.pairs)
        last = span.step1 == self.plan.steps
        writer = BackgroundWriter()
        final = None
        done = 0
        total = (span.step1 - span.step0) * sum(b.pair in span.pairs for b in self.plan.blocks)
        try:
            for _, blk, _, st in run_span(
                self.plan, self.model, self.genes, span, state, device=self.device,
                batch_size=self.batch_size, precision=self.precision,
                output=_Guarded(self.output, still_held) if last else None,
                checkpoint=None if last else _Guarded(self.states[index % 2], still_held),
                writer=writer, numerics=self.numerics,
            ):  # fmt: skip
                if blk is not None and self.on_block is not None:
                    done += 1
                    self.on_block(done, total)
                final = st
            writer.join()
        except _ClaimLost:
            return False
        finally:
            writer.close()
        if final is not None:  # keep it for this worker's next span while the budget allows
            held = sum(s.nbytes for s in self._held.values()) + final.nbytes
            if held + int(self.layout.get("resident_nbytes", 0)) <= int(
                self.layout.get("memory_budget", 0)
            ):
                self._held[(span.pairs, span.step1)] = final
        return True
