"""Perturbation jobs, difference maps and the second-order interaction map of a gene pair.

A perturbation is a generation job (:mod:`napari_teramind.generate.job`) whose spec carries the
resolved gene edits (``extra["edits"]``, masks included): it runs on the same engine and
executors, resumes bit-exactly after a kill (``teramind generate --resume DIR`` or calling
:func:`perturb` again with the same arguments), and its output is a generated brain store like
``teramind generate``'s, whose genes are the edited ones and whose ``generated_regions`` record
lists the edits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_teramind.generate.edits import (
    SPEC_KEY,
    GeneEdit,
    Knockout,
    edits_from_json,
    edits_to_json,
    resolve_edits,
)
from napari_teramind.generate.resident import DEFAULT_CHECKPOINT_EVERY
from napari_teramind.generate.schemes import DEFAULT_SCHEME
from napari_teramind.store import BrainStore

__all__ = [
    "InteractionMap",
    "PerturbSettings",
    "difference",
    "edited_mask",
    "interaction_map",
    "iter_perturb",
    "perturb",
    "prepare_perturbation",
]

PathLike = str | os.PathLike[str]


def _open(store: BrainStore | PathLike) -> BrainStore:
    return store if isinstance(store, BrainStore) else BrainStore.open(store)


def _model_spec(model: PathLike) -> str:
    model = str(model)
    return model if model == "bundled" else str(Path(model).resolve())


@dataclass(frozen=True)
class PerturbSettings:
    """How a perturbation is generated: the job settings of ``teramind generate``, same defaults.

    One record passed from :func:`perturb` (and :func:`iter_perturb`, :func:`interaction_map`)
    to :func:`prepare_perturbation`, so the settings are named once. Those functions also take
    any field as a keyword (``perturb(..., seed=3, steps=2)``), which overrides ``settings``.

    Attributes
    ----------
    seed, sampler, steps, scheme, block_px, batch_size
        As ``teramind generate``; the same seed gives the same noise, so the difference to the
        unedited run is the effect of the edits.
    executor, workers
        Job executor (``"inprocess"``, ``"local"``, ``"dask"``) and its worker count.
    memory_budget, checkpoint_every, numerics
        As for :class:`~napari_teramind.generate.job.JobSpec` (the job's unit layout and
        numerics; ``numerics=None``: the job's default).
    """

    seed: int = 0
    sampler: str = "ddim"
    steps: int = 15
    scheme: str = DEFAULT_SCHEME
    block_px: int = 512
    batch_size: int | None = None
    executor: str = "inprocess"
    workers: int | None = None
    memory_budget: int | None = None
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    numerics: Any = None

    @classmethod
    def of(cls, settings: PerturbSettings | None = None, **overrides: Any) -> PerturbSettings:
        """``settings`` (default: the defaults) with ``overrides`` replaced; names checked."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"unknown perturbation setting {', '.join(map(repr, unknown))}; the settings "
                f"are {', '.join(sorted(known))} (see PerturbSettings)"
            )
        base = settings if settings is not None else cls()
        return replace(base, **overrides) if overrides else base

    def job_fields(self) -> dict[str, Any]:
        """The settings as :class:`~napari_teramind.generate.job.JobSpec` keywords."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["numerics"] is None:
            del out["numerics"]  # the job's default
        return out


def prepare_perturbation(
    source: BrainStore | PathLike,
    model: PathLike,
    region: Sequence[int] | None,
    slices: int | Iterable[int] | None,
    edits: Iterable[GeneEdit],
    *,
    output: PathLike,
    settings: PerturbSettings | None = None,
    **overrides: Any,
) -> Any:
    """Check everything and build the job spec of a perturbation (nothing is written).

    Every bad input is refused here, before any work: the region and slices (as ``teramind
    generate`` checks them), an unknown gene (with close matches), a gene the model does not
    read, a negative or non-finite scale, a mask outside the region, a transplant source off the
    canvas, an unknown setting.

    Parameters
    ----------
    source, model, region, slices, edits, output
        As :func:`perturb`.
    settings
        The generation settings (:class:`PerturbSettings`; default: ``teramind generate``'s).
    **overrides
        :class:`PerturbSettings` fields replacing those of ``settings``.

    Returns
    -------
    JobSpec
        The spec :func:`perturb` runs (``extra["edits"]`` holds the resolved edits).
    """
    from napari_teramind.generate.devices import load_model
    from napari_teramind.generate.job import JobSpec
    from napari_teramind.generate.plan import GenerationPlan

    cfg = PerturbSettings.of(settings, **overrides)
    store = _open(source)
    _, h, w = store.shape
    region = tuple(int(v) for v in (region if region is not None else (0, h, 0, w)))
    plan = GenerationPlan(store.shape, region, slices, block_px=cfg.block_px, seed=cfg.seed,
                          steps=cfg.steps, gene_block_px=store.gene_block_px,
                          scheme=cfg.scheme)  # fmt: skip
    model = _model_spec(model)
    if model != "bundled" and not Path(model).exists():
        raise FileNotFoundError(
            f"model checkpoint {model} does not exist; give 'bundled' or a checkpoint path"
        )
    _, info = load_model(model, "cpu")
    resolved = resolve_edits(list(edits), store, plan.region, list(info.gene_names))
    return JobSpec(
        source=str(Path(store.path).resolve()),
        model=model,
        region=plan.region,
        slices=plan.slices,
        output=str(Path(output).resolve()),
        extra={SPEC_KEY: edits_to_json(resolved, store.gene_block_px)},
        **cfg.job_fields(),
    )


def perturb(
    source: BrainStore | PathLike,
    model: PathLike,
    region: Sequence[int] | None,
    slices: int | Iterable[int] | None,
    edits: Iterable[GeneEdit],
    *,
    output: PathLike,
    settings: PerturbSettings | None = None,
    device: str = "cpu",
    job_dir: PathLike | None = None,
    overwrite: bool = False,
    check_space: bool = True,
    progress: Callable[[Any], None] | None = None,
    **overrides: Any,
) -> BrainStore:
    """Generate ``region`` of ``source`` with edited genes; return the edited generated store.

    Parameters
    ----------
    source
        The source brain store (or its path).
    model
        ``"bundled"`` or a checkpoint path.
    region
        ``(y0, y1, x0, x1)`` px (sides multiples of 64, origin on the 16 px grid); None: the
        whole canvas.
    slices
        Slices to generate (None: all).
    edits
        :class:`~napari_teramind.generate.edits.Knockout`, ``Scale`` and ``Transplant`` items;
        an empty list is a plain generation (the bytes of ``teramind generate``).
    output
        The generated brain store to write.
    settings
        Seed, sampler, steps, scheme, block size, executor, ... (:class:`PerturbSettings`;
        default: ``teramind generate``'s defaults).
    device
        Device of the in-process executor.
    job_dir
        The job directory (default: ``output`` with ``.job`` instead of ``.zarr``). A job
        directory holding the same perturbation is resumed where it stopped.
    overwrite
        Replace an existing job directory and output store.
    check_space
        Check free disk space first.
    progress
        Called with every :class:`~napari_teramind.generate.executors.JobProgress`.
    **overrides
        :class:`PerturbSettings` fields (``seed=3, steps=2``) replacing those of ``settings``.

    Returns
    -------
    BrainStore
        The edited generated store.
    """
    items = iter_perturb(source, model, region, slices, edits, output=output,
                         settings=PerturbSettings.of(settings, **overrides), device=device,
                         job_dir=job_dir, overwrite=overwrite,
                         check_space=check_space)  # fmt: skip
    while True:
        try:
            item = next(items)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(item)


def iter_perturb(
    source: BrainStore | PathLike,
    model: PathLike,
    region: Sequence[int] | None,
    slices: int | Iterable[int] | None,
    edits: Iterable[GeneEdit],
    *,
    output: PathLike,
    settings: PerturbSettings | None = None,
    device: str = "cpu",
    job_dir: PathLike | None = None,
    overwrite: bool = False,
    check_space: bool = True,
    **overrides: Any,
) -> Iterator[Any]:
    """:func:`perturb` as a generator: yields every ``JobProgress``, returns the edited store.

    Every input is checked before the job directory is written. Closing the generator stops
    the job between units (it resumes where it stopped, see :func:`perturb`).
    """
    from napari_teramind.generate.executors import iter_job
    from napari_teramind.generate.job import SPEC_FILE, JobDir, create_job

    spec = prepare_perturbation(source, model, region, slices, edits, output=output,
                                settings=settings, **overrides)  # fmt: skip
    job_dir = Path(job_dir) if job_dir is not None else Path(spec.output).with_suffix(".job")
    if not overwrite and (job_dir / SPEC_FILE).is_file() and _same_job(JobDir(job_dir), spec):
        path = job_dir  # the same perturbation, stopped earlier (or done): resume it
    else:
        path = create_job(job_dir, spec, overwrite=overwrite, check_space=check_space).path
    yield from iter_job(path, device=device)
    return BrainStore.open(spec.output)


def _same_job(job: Any, spec: Any) -> bool:
    skip = {"lease_s"}
    a = {k: v for k, v in job.spec.to_dict().items() if k not in skip}
    b = {k: v for k, v in spec.to_dict().items() if k not in skip}
    return a == b


# ---------------------------------------------------------------------- reading results
def generated_record(store: BrainStore | PathLike) -> dict[str, Any]:
    """The last ``generated_regions`` record of a generated store (region, slices, edits)."""
    store = _open(store)
    regions = store.metadata.get("generated_regions") or []
    if not regions:
        raise ValueError(
            f"{store.path} holds no finished generation (no generated_regions record); run "
            "the generation (or resume its job) first"
        )
    return regions[-1]


def _region_slices(store: BrainStore, region, slices) -> tuple[tuple[int, ...], list[int]]:
    rec = None
    if region is None or slices is None:
        rec = generated_record(store)
    region = tuple(int(v) for v in (region if region is not None else rec["region"]))
    slices = [int(s) for s in (slices if slices is not None else rec["slices"])]
    return region, slices


def read_images(store: BrainStore | PathLike, region: Sequence[int] | None = None,
                slices: Sequence[int] | None = None) -> np.ndarray:  # fmt: skip
    """uint8 ``(2, n_slices, h, w)`` images of a generated region (its last one by default)."""
    store = _open(store)
    (y0, y1, x0, x1), slices = _region_slices(store, region, slices)
    return np.asarray(store.array("images", 0)[:, slices, y0:y1, x0:x1])


def difference(
    unedited: BrainStore | PathLike,
    edited: BrainStore | PathLike,
    region: Sequence[int] | None = None,
    slices: Sequence[int] | None = None,
) -> np.ndarray:
    """Edited minus unedited images, int16 ``(2, n_slices, h, w)`` (DAPI, PolyT).

    ``region`` and ``slices`` default to the edited store's last generated region.
    """
    edited = _open(edited)
    region, slices = _region_slices(edited, region, slices)
    a = read_images(unedited, region, slices).astype(np.int16)
    b = read_images(edited, region, slices).astype(np.int16)
    return b - a


def edited_mask(store: BrainStore | PathLike, region: Sequence[int] | None = None) -> np.ndarray:
    """Pixels ``(h, w)`` of ``region`` where any recorded edit applies (union of the masks).

    Read from the edited store's ``generated_regions`` record; all False for a plain generation.
    """
    store = _open(store)
    rec = generated_record(store)
    y0, y1, x0, x1 = (int(v) for v in (region if region is not None else rec["region"]))
    gb = store.gene_block_px
    hb, wb = (y1 - y0) // gb, (x1 - x0) // gb
    out = np.zeros((hb, wb), bool)
    for e in edits_from_json(rec.get("edits") or [], store):
        hit = e.window(y0 // gb, y1 // gb, x0 // gb, x1 // gb)
        if hit is not None:
            m, (ys, xs) = hit
            out[ys, xs] |= m
    return np.repeat(np.repeat(out, gb, axis=0), gb, axis=1)


# ---------------------------------------------------------------------- interactions
@dataclass(frozen=True)
class InteractionMap:
    """The second-order interaction of a gene pair, and the four generations behind it.

    Attributes
    ----------
    genes
        ``(A, B)``.
    map
        int16 ``(2, n_slices, h, w)``: ``f(A,B) - f(A,0) - f(0,B) + f(0,0)`` (DAPI, PolyT), where
        ``f(A,0)`` is the generation with B knocked out (same noise for all four).
    stores
        Paths of the four generated stores: ``"AB"`` (unedited), ``"A0"``, ``"0B"``, ``"00"``.
    region, slices
        What was generated.
    """

    genes: tuple[str, str]
    map: np.ndarray
    stores: dict[str, Path] = field(default_factory=dict)
    region: tuple[int, int, int, int] = (0, 0, 0, 0)
    slices: tuple[int, ...] = ()

    def score(self, channel: int = 0) -> float:
        """Mean absolute interaction of a channel (0 DAPI, 1 PolyT), in 0..255 units."""
        return float(np.abs(self.map[channel].astype(np.float64)).mean())


def interaction_map(
    source: BrainStore | PathLike,
    model: PathLike,
    region: Sequence[int] | None,
    slices: int | Iterable[int] | None,
    gene_a: str,
    gene_b: str,
    *,
    workdir: PathLike,
    mask: Any = None,
    settings: PerturbSettings | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    check_space: bool = True,
    progress: Callable[[str, Any], None] | None = None,
    **overrides: Any,
) -> InteractionMap:
    """``f(A,B) - f(A,0) - f(0,B) + f(0,0)``: four generations with the same noise.

    Parameters
    ----------
    source, model, region, slices
        As :func:`perturb`.
    gene_a, gene_b
        The pair; ``0`` means the gene knocked out inside ``mask``.
    workdir
        Folder of the four generated stores (``AB.zarr``, ``A0.zarr``, ``0B.zarr``,
        ``00.zarr``) and their jobs; finished ones are reused, stopped ones resumed.
    mask
        Where the knockouts apply (the whole region by default).
    settings, device, overwrite, check_space, **overrides
        As :func:`perturb`, for all four generations (``overwrite``: regenerate them).
    progress
        Called as ``progress(name, JobProgress)``.
    """
    cfg = PerturbSettings.of(settings, **overrides)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runs = {
        "AB": [],
        "A0": [Knockout(gene_b, mask)],
        "0B": [Knockout(gene_a, mask)],
        "00": [Knockout(gene_a, mask), Knockout(gene_b, mask)],
    }
    # validate all four before the first generation starts
    specs = {}
    for name, edits in runs.items():
        out = workdir / f"{name}.zarr"
        specs[name] = prepare_perturbation(source, model, region, slices, edits, output=out,
                                           settings=cfg)  # fmt: skip
    images = {}
    for name, edits in runs.items():
        cb = None if progress is None else (lambda p, n=name: progress(n, p))
        out = perturb(source, model, region, slices, edits, output=workdir / f"{name}.zarr",
                      settings=cfg, device=device, overwrite=overwrite,
                      check_space=check_space, progress=cb)  # fmt: skip
        images[name] = read_images(out, specs[name].region, specs[name].slices).astype(np.int16)
    inter = images["AB"] - images["A0"] - images["0B"] + images["00"]
    return InteractionMap(
        genes=(gene_a, gene_b),
        map=inter.astype(np.int16),
        stores={n: workdir / f"{n}.zarr" for n in runs},
        region=specs["AB"].region,
        slices=specs["AB"].slices,
    )
