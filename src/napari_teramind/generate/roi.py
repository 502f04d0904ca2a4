"""In-process generation of a region of interest (the napari entry point).

:func:`generate_roi` is an in-process, memory-only job: one resident span
(:func:`~napari_teramind.generate.resident.run_span`, the unit jobs run) over every slice
pair and step of a :class:`GenerationPlan`, with the batch size and precision every job uses
(:func:`~napari_teramind.generate.devices.unit_numerics`), so the widget, the demo, the CLI
and jobs compute the same numbers. The state lives in memory only; a
:class:`RoiProgress` with a uint8 preview of the current ``x0`` estimate is yielded after
every block of every step (the live-preview hook).
Closing the generator cancels between blocks: the temporary state is removed and the region
is not recorded as generated. The last step writes uint8 images into a generated brain store
(same canvas and panel as the source) and rebuilds its pyramids block by block, so a viewer
can watch the region appear.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.generate.devices import SAMPLERS, check_sampler, unit_numerics
from napari_teramind.generate.engine import GeneSource, to_uint8
from napari_teramind.generate.numerics import Numerics
from napari_teramind.generate.plan import GenerationPlan
from napari_teramind.generate.resident import (
    DEFAULT_MEMORY_BUDGET,
    Span,
    resident_nbytes,
    run_span,
)
from napari_teramind.generate.schemes import DEFAULT_SCHEME, LEGACY_SCHEME, check_scheme

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from napari_teramind.model import CheckpointInfo, TeraMindUNet
    from napari_teramind.store import BrainStore

__all__ = [
    "SAMPLERS",
    "RoiProgress",
    "finish_generated_store",
    "generate_roi",
    "model_fingerprint",
    "open_output_store",
]

#: Default block side for in-process ROI generation.
ROI_BLOCK_PX = 256


@dataclass(frozen=True)
class RoiProgress:
    """Progress of :func:`generate_roi`, yielded after every ``(step, block)`` unit.

    Attributes
    ----------
    step
        DDIM step (run order, 0-based) of the unit just finished.
    n_steps
        DDIM steps in all.
    block
        Block index of the unit just finished.
    n_blocks
        Blocks per step.
    units_done, units_total
        Units finished and units in all (``n_steps * n_blocks``).
    preview
        uint8 ``(2, n_slices, h, w)`` (DAPI, PolyT; requested slices; the region) of the
        current ``x0`` estimate, or None when previews are off. Blocks not yet visited in the
        current step show the previous step's estimate (black before the first).
    output
        Path of the generated store; set on the last item only.
    missing_genes
        Model genes the source store lacks (fed as zeros).
    """

    step: int
    n_steps: int
    block: int
    n_blocks: int
    units_done: int
    units_total: int
    preview: np.ndarray | None
    output: Path | None = None
    missing_genes: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        """Fraction of the work done, ``0..1``."""
        return self.units_done / self.units_total if self.units_total else 1.0


def model_fingerprint(model: TeraMindUNet) -> str:
    """SHA-256 of the model's parameters and buffers (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype():
    import torch

    return torch.uint8


def open_output_store(
    source: BrainStore,
    output: str | os.PathLike[str],
    provenance: dict[str, Any] | None = None,
    image_chunk: int | None = None,
) -> BrainStore:
    """Open a generated store matching ``source`` for writing, creating it if needed.

    An existing store must be a generated store with the same canvas, gene block and panel;
    ``output`` may not be the source (nor a parent or child of it), a file, or a directory this
    project did not write (see :func:`~napari_teramind.store.check_replaceable`).
    It is marked incomplete until the region written into it is finished
    (:func:`finish_generated_store`): while it is written it is not complete.
    """
    from napari_teramind.store import BrainStore, BrainStoreError, check_replaceable

    output = Path(output)
    inputs = [("source store", source.path)]
    found = check_replaceable(
        output, replaces=("generated",), overwrite=False, inputs=inputs,
        role="output store", reuse=True,
    )  # fmt: skip
    if found.exists:
        out = BrainStore.open(output, mode="r+")
        problems = []
        if out.shape != source.shape:
            problems.append(f"its canvas {out.shape} differs from the source's {source.shape}")
        if out.gene_block_px != source.gene_block_px:
            problems.append("its gene block differs from the source's")
        if out.panel != source.panel:
            problems.append("its gene panel differs from the source's")
        if problems:
            raise BrainStoreError(
                f"cannot write generated images into {output}: {'; '.join(problems)}. "
                "Choose a new output path."
            )
        if out.complete:
            out.update_metadata({"complete": False})
        return out
    return BrainStore.create(
        output,
        n_slices=source.n_slices,
        height=source.height,
        width=source.width,
        panel=source.panel,
        pixel_size_um=source.pixel_size_um,
        slice_spacing_um=source.slice_spacing_um,
        gene_block_px=source.gene_block_px,
        kind="generated",
        provenance=provenance,
        image_chunk=image_chunk or source.image_chunk,
        inputs=inputs,
    )


# ---------------------------------------------------------------------- region records
#: Record fields that decide a generated region's pixels (with the model).
GENERATION_FIELDS = (
    "region", "slices", "seed", "sampler", "scheme", "steps", "gene_blind", "source_store",
    "edits", "numerics",
)  # fmt: skip


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("model_sha256") and b.get("model_sha256"):
        return a["model_sha256"] == b["model_sha256"]
    if a.get("model") and b.get("model"):
        return a["model"] == b["model"]
    return False  # not known to be the same model


def same_generation(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two region records describe the same pixels (same region, settings, model)."""
    for k in GENERATION_FIELDS:
        va, vb = a.get(k), b.get(k)
        if k in ("region", "slices"):
            va, vb = list(va or ()), list(vb or ())
        elif k == "gene_blind":
            va, vb = bool(va), bool(vb)
        elif k == "scheme":  # records made before schemes existed are collage generations
            va, vb = va or LEGACY_SCHEME, vb or LEGACY_SCHEME
        elif k == "edits":  # no edits and an empty edit list are the same pixels
            va, vb = va or [], vb or []
        elif k == "numerics" and (va is None or vb is None):
            continue  # a record from before the numerics record: not known to differ
        if va != vb:
            return False
    return _same_model(a, b)


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ay0, ay1, ax0, ax1 = a["region"]
    by0, by1, bx0, bx1 = b["region"]
    meet = ay0 < by1 and by0 < ay1 and ax0 < bx1 and bx0 < ax1
    return meet and bool(set(a["slices"]) & set(b["slices"]))


def _describe(rec: dict[str, Any]) -> str:
    y0, y1, x0, x1 = rec["region"]
    sl = rec["slices"]
    slices = f"{sl[0]}-{sl[-1]}" if list(sl) == list(range(sl[0], sl[-1] + 1)) else str(sl)
    blind = ", gene-blind" if rec.get("gene_blind") else ""
    threads = (rec.get("numerics") or {}).get("threads")
    blind += f", {threads} threads" if threads else ""
    return (f"slices {slices}, region y {y0}:{y1}, x {x0}:{x1}, seed {rec.get('seed')} "
            f"({rec.get('sampler')}, {rec.get('scheme') or LEGACY_SCHEME}, {rec.get('steps')} steps"
            f"{blind})")  # fmt: skip


def check_region_free(out: BrainStore, record: dict[str, Any]) -> None:
    """Refuse to write ``record``'s region where ``out`` holds another generation.

    A generated store keeps a true record of what it holds: ``generated_regions`` (finished)
    and ``generating`` (being written, or interrupted). Writing a region that overlaps one of
    them with other settings (another seed, model, region, ...) would overwrite its pixels and
    leave a false record, so it is refused. The same generation again (e.g. a re-run) is
    allowed and replaces its record. A writer's own pending entry (``record["writer"]``, a
    resumed job) is skipped.

    Raises
    ------
    BrainStoreError
        Naming the generation already there and what to do.
    """
    from napari_teramind.store import BrainStoreError

    meta = out.metadata
    own = record.get("writer")
    entries = [(e, False) for e in meta.get("generated_regions", [])]
    entries += [(e, True) for e in meta.get("generating", [])]
    for entry, pending in entries:
        if (pending and own and entry.get("writer") == own) or not _overlap(entry, record):
            continue
        if same_generation(entry, record):
            continue
        if pending and entry.get("job"):
            what = (f"the unfinished generation job {entry['job']} is writing {_describe(entry)}; "
                    f"finish it first (teramind generate --resume {entry['job']}), or")  # fmt: skip
        elif pending:
            what = f"an interrupted generation partly wrote {_describe(entry)}; "
        else:
            what = f"it already holds {_describe(entry)}; "
        raise BrainStoreError(
            f"cannot generate {_describe(record)} into {out.path}: {what} writing there would "
            "overwrite those images and leave a false record. Write to another output store "
            "(--out), or replace this one whole (overwrite=True, --overwrite)."
        )


def begin_region(out: BrainStore, record: dict[str, Any]) -> None:
    """Check the region is free (:func:`check_region_free`) and record it as being written."""
    check_region_free(out, record)
    own = record["writer"]
    pending = [e for e in out.metadata.get("generating", []) if e.get("writer") != own]
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    out.update_metadata({"generating": [*pending, {**record, "started": started}]})


def abandon_region(out: BrainStore, writer: str, wrote_images: bool) -> None:
    """A writer stopped early: forget its pending entry, or mark it interrupted if it wrote."""
    pending = []
    for e in out.metadata.get("generating", []):
        if e.get("writer") == writer:
            if not wrote_images:
                continue
            e = {**e, "interrupted": True}
        pending.append(e)
    out.update_metadata({"generating": pending})


def _copy_genes(source: BrainStore, out: BrainStore, plan: GenerationPlan,
                counts: Any = None) -> None:  # fmt: skip
    """Copy the conditioning gene counts of the region (requested slices) into ``out``.

    ``counts`` is the gene array to copy from (the source's by default; edited genes for a
    perturbation, see :class:`~napari_teramind.generate.engine.GeneSource`).
    """
    gb = plan.gene_block_px
    y0, y1, x0, x1 = plan.region
    src = source.array("genes", 0) if counts is None else counts
    for z in plan.slices:
        counts = np.asarray(src[:, z, y0 // gb : y1 // gb, x0 // gb : x1 // gb])
        out.write_genes(z, y0 // gb, x0 // gb, counts)


def generate_roi(
    store: BrainStore | str | os.PathLike[str],
    model: TeraMindUNet,
    region: Sequence[int],
    slices: int | slice | range | Iterable[int] | None,
    seed: int = 0,
    sampler: str = "ddim",
    steps: int = 15,
    *,
    gene_names: Sequence[str],
    output: str | os.PathLike[str] | None = None,
    block_px: int = ROI_BLOCK_PX,
    device: str | torch.device = "cpu",
    gene_blind: bool = False,
    batch_size: int | None = None,
    bf16: bool | None = None,
    preview: bool = True,
    model_info: CheckpointInfo | None = None,
    workdir: str | os.PathLike[str] | None = None,
    scheme: str = DEFAULT_SCHEME,
    numerics: Numerics | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Iterator[RoiProgress]:
    """Generate a region of a brain store in-process, yielding progress after every unit.

    Parameters
    ----------
    store
        Source brain store (or its path): canvas geometry and gene counts.
    model
        The network, on ``device``.
    region
        ``(y0, y1, x0, x1)`` in image px; sides multiples of 64 px, origin a multiple of
        16 px (use :func:`~napari_teramind.generate.snap_region` for free-hand selections).
    slices
        Slices to generate (``None`` = all); whole slice groups of the model's scheme are
        computed (pairs ``(2k, 2k+1)`` for 4-slice models, single slices for single-section
        models; see :mod:`napari_teramind.slices`).
    seed
        Seed of the initial noise.
    sampler
        ``"ddim"`` (the only sampler for now).
    steps
        DDIM steps (15 as published).
    gene_names
        The model's genes in model order; aligned to the store's panel by name.
    output
        Generated brain store to write into (created if missing); a new temporary directory
        when None.
    block_px
        Block side (a multiple of 64); the result does not depend on it.
    device, batch_size, bf16
        How the model runs. ``None`` (default) chooses as every job does
        (:func:`~napari_teramind.generate.devices.unit_numerics`: 8 patches per call and
        float32 on CPU; a batch that fits the GPU and bf16 on CUDA).
    gene_blind
        Feed zero gene counts (evaluation baseline).
    preview
        Attach a uint8 preview of the ``x0`` estimate to every progress item.
    model_info
        Checkpoint metadata, recorded in the provenance when given.
    workdir
        Kept for compatibility (created if given): the state lives in memory only.
    scheme
        Sampling scheme (:data:`~napari_teramind.generate.schemes.SCHEMES`): where the patch
        grids sit at each step; ``"collage"`` is the published one. See docs/generation.md.
    numerics
        Thread count and precision of every unit (default
        :class:`~napari_teramind.generate.numerics.Numerics`, as a job's); recorded. The
        bytes equal a job's with the same numerics, whatever the caller's thread count.
    memory_budget
        Bytes the in-memory state may use; a larger region is refused (run it as a job,
        ``teramind generate``, which checkpoints to disk and bounds memory per slice pair).

    Yields
    ------
    RoiProgress
        After every ``(step, block)`` unit; the last one carries ``output``.
    """
    from napari_teramind.store import BrainStore

    numerics = numerics or Numerics()
    check_sampler(sampler)
    check_scheme(scheme)
    source = store if isinstance(store, BrainStore) else BrainStore.open(store)
    plan = GenerationPlan.for_model(
        model.config,
        canvas=source.shape,
        region=tuple(region),
        slices=slices,
        block_px=block_px,
        seed=seed,
        steps=steps,
        gene_block_px=source.gene_block_px,
        scheme=scheme,
    )
    genes = GeneSource(source, gene_names, gene_blind)
    need = resident_nbytes(plan, len(genes.gene_names), len(plan.pairs),
                           model.config.model_channels)  # fmt: skip
    if need > memory_budget:
        raise MemoryError(
            f"generating region {plan.region} of {len(plan.pairs)} slice pair(s) in memory "
            f"needs about {need / 2**30:.2f} GiB, more than the budget "
            f"({memory_budget / 2**30:.2f} GiB): generate it as a job (`teramind generate ... "
            "--job-dir DIR`), pass a larger memory_budget, or choose a smaller region"
        )
    if bf16 is None:  # as a job's units: the numerics record decides (bf16 on CUDA)
        bf16 = numerics.bf16(device)
    batch_size, precision = unit_numerics(model, device, batch_size, bf16)
    record = {
        "region": list(plan.region),
        "slices": list(plan.slices),
        "seed": plan.seed,
        "sampler": sampler,
        "scheme": plan.scheme,
        "steps": plan.steps,
        "gene_blind": bool(gene_blind),
        "source_store": str(Path(source.path).resolve()),
        "model_sha256": model_fingerprint(model),
        "model_config": model.config.to_dict(),
        "checkpoint": None if model_info is None else _checkpoint_record(model_info),
        "missing_genes": list(genes.missing),
        "engine": "napari-teramind step-synchronous tiled DDIM (collage decoder only)",
        "writer": f"roi-{uuid.uuid4().hex[:12]}",
        "numerics": numerics.to_dict(),
    }
    if output is None:
        output = Path(tempfile.mkdtemp(prefix="teramind-roi-")) / "generated.zarr"
    out = open_output_store(source, output, provenance={"generated_from": record})
    begin_region(out, record)
    try:
        _copy_genes(source, out, plan)
    except BaseException:
        abandon_region(out, record["writer"], wrote_images=False)
        raise
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    return _run(plan, model, genes, out, record, device, batch_size, precision, preview,
                numerics)  # fmt: skip


def _checkpoint_record(info: CheckpointInfo) -> dict[str, Any]:
    return {
        "path": None if info.path is None else str(info.path),
        "weights_sha256": info.provenance.get("weights_sha256"),
        "source": info.provenance.get("source"),
    }


def _run(
    plan: GenerationPlan,
    model: TeraMindUNet,
    genes: GeneSource,
    out: BrainStore,
    record: dict[str, Any],
    device,
    batch_size: int,
    precision: str,
    preview: bool,
    numerics: Numerics,
) -> Iterator[RoiProgress]:
    from napari_teramind.diffusion import DDIMSchedule

    schedule = DDIMSchedule.create(plan.steps)
    slice_pos = {z: i for i, z in enumerate(plan.slices)}
    view = np.zeros((2, len(plan.slices), plan.height, plan.width), np.uint8) if preview else None
    span = Span(tuple(range(len(plan.pairs))), 0, plan.steps)
    finished = wrote = False
    done = 0
    last = plan.steps - 1
    try:
        units = run_span(plan, model, genes, span, None, device=device, batch_size=batch_size,
                         precision=precision, output=out, schedule=schedule,
                         numerics=numerics)  # fmt: skip
        for step, blk, x0, _state in units:
            if blk is None:  # the span's end
                continue
            done += 1
            if view is not None:
                uy0, uy1, ux0, ux1 = plan.unit_window(step, blk)
                for d, z in enumerate(plan.pair_slices(blk.pair)):
                    if z in slice_pos:
                        stains = x0[plan.stain_channels(d)]
                        view[:, slice_pos[z], uy0:uy1, ux0:ux1] = to_uint8(stains)
            if step == last:
                wrote = True
                sy, sx = plan.to_store(blk.y0, blk.x0)
                ey, ex = plan.to_store(blk.y1, blk.x1)
                out.build_pyramids(names=["images"], region=(sy, ey, sx, ex), workers=1)
            finished = done == plan.n_units
            if finished:
                finish_generated_store(out, record)
            yield RoiProgress(
                step=step,
                n_steps=plan.steps,
                block=blk.index,
                n_blocks=plan.n_blocks,
                units_done=done,
                units_total=plan.n_units,
                preview=None if view is None else view.copy(),
                output=Path(out.path) if finished else None,
                missing_genes=tuple(genes.missing),
            )
    finally:
        if not finished:  # closed or failed: the store's record says what is there
            abandon_region(out, record["writer"], wrote)


def finish_generated_store(out: BrainStore, record: dict[str, Any]) -> None:
    """Finish a generated region: pyramids, provenance, coverage, then mark complete.

    Call after the last unit of the region was written. The pyramids of every multiscale
    (images and the copied genes) are rebuilt over the region, then one metadata update
    records the region in ``generated_regions`` (replacing its pending ``generating`` entry
    and any finished record it rewrote: :func:`check_region_free` let this write start only
    over nothing or the same generation, so an overlapped record describes pixels just
    rewritten and is never listed twice), adds the region and its slices to the store's
    ``coverage`` and marks the store complete. A crash before that update leaves the store
    incomplete, so it is never read as finished when it is not.
    """
    from napari_teramind.store.chunks import CoveredRegion

    y0, y1, x0, x1 = (int(v) for v in record["region"])
    out.build_pyramids(region=(y0, y1, x0, x1), workers=1)
    meta = out.metadata
    writer = record.get("writer")
    regions = [r for r in meta.get("generated_regions", []) if not _overlap(r, record)]
    regions.append({**record, "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")})
    pending = [e for e in meta.get("generating", []) if writer is None or e.get("writer") != writer]
    covered = CoveredRegion.from_dict(record)
    out.mark_complete(covered, extra={"generated_regions": regions, "generating": pending})
