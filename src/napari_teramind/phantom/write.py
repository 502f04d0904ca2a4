"""Write a phantom brain store chunk by chunk, and read its ground truth back."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import TYPE_CHECKING, Any

import numpy as np

from .anatomy import region_grid, vessel_grid
from .interactions import (
    INTERACTION_INDEX,
    gene_high,
    interactions_metadata,
    planted_genes,
)
from .programs import PATHWAYS, REGION_IDS, REGIONS, programs_metadata
from .render import render_chunk
from .spec import PHANTOM_VERSION, PhantomSpec

if TYPE_CHECKING:
    from napari_teramind.store import BrainStore

Progress = Callable[[int, int], None]


def region_names() -> dict[int, str]:
    """Region id -> name of the phantom's labels layer (background 0 excluded)."""
    return {i: r.name for i, r in REGIONS.items() if i != 0}


def _write_unit(store: BrainStore, spec: PhantomSpec, z: int, y0: int, x0: int, unit: int,
                sub: int) -> None:  # fmt: skip
    """Render and write one unit (a whole gene chunk), in image-chunk-sized pieces."""
    h = min(unit, spec.height - y0)
    w = min(unit, spec.width - x0)
    genes = np.zeros((len(spec.gene_names), h // 16, w // 16), dtype=np.uint16)
    for yy in range(y0, y0 + h, sub):
        for xx in range(x0, x0 + w, sub):
            hh, ww = min(sub, y0 + h - yy), min(sub, x0 + w - xx)
            c = render_chunk(spec, z, yy, xx, hh, ww)
            store.write_images(z, yy, xx, c.images)
            store.write_regions(z, yy, xx, c.regions)
            by, bx = (yy - y0) // 16, (xx - x0) // 16
            genes[:, by : by + hh // 16, bx : bx + ww // 16] = c.genes
    store.write_genes(z, y0 // 16, x0 // 16, genes)


_PROCESS_STORES: dict[str, BrainStore] = {}


def _process_unit(path: str, spec_dict: dict, z: int, y0: int, x0: int, unit: int,
                  sub: int) -> None:  # fmt: skip
    """:func:`_write_unit` in a worker process (the store is opened once per process)."""
    from napari_teramind.store import BrainStore

    store = _PROCESS_STORES.get(path)
    if store is None:
        store = BrainStore.open(path, mode="r+", allow_incomplete=True)
        _PROCESS_STORES[path] = store
    _write_unit(store, PhantomSpec.from_dict(spec_dict), z, y0, x0, unit, sub)


def _units(spec: PhantomSpec, unit: int) -> Iterator[tuple[int, int, int]]:
    for z in range(spec.n_slices):
        for y0 in range(0, spec.height, unit):
            for x0 in range(0, spec.width, unit):
                yield z, y0, x0


def _unit_size(store: BrainStore) -> tuple[int, int]:
    """Work unit edge (px) aligned with every level-0 chunk/shard, and the render piece edge."""
    gb = store.gene_block_px

    def edge(name: str, scale: int) -> int:
        arr = store.zarr_array(name, 0)
        shards = getattr(arr, "shards", None)
        return int((shards or arr.chunks)[-1]) * scale

    img = edge("images", 1)
    unit = math.lcm(img, edge("genes", gb))
    if store.has_regions:
        unit = math.lcm(unit, edge("images/labels/regions", 1))
    return unit, img


def write_phantom(
    path: str | os.PathLike[str],
    spec: PhantomSpec | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    workers: int = 2,
    image_chunk: int = 512,
    executor: str = "process",
) -> BrainStore:
    """Write a phantom brain store and return it (complete, with pyramids).

    The phantom is rendered unit by unit, a unit being one level-0 gene chunk (2048 x 2048 px by
    default) of one slice, itself rendered in image-chunk pieces. Units are independent and run
    on ``workers`` threads with at most ``2 * workers`` in flight, so memory stays bounded (a few
    tens of MB per worker) whatever the size of the phantom.

    Parameters
    ----------
    path
        Directory of the new store.
    spec
        What to generate; the default :class:`PhantomSpec` (8 slices of 2048 x 3072 px).
    progress
        Called as ``progress(done, total)`` after each unit and pyramid chunk.
    overwrite
        Replace an existing store at ``path``.
    workers
        Parallel workers rendering units (and threads building pyramids).
    executor
        ``"process"`` (default; rendering is many small numpy operations that contend for the
        GIL in threads) or ``"thread"``. Each unit writes whole chunks, so processes never
        write the same chunk.
    image_chunk
        Chunk edge of the image arrays (px, a multiple of 16).

    Returns
    -------
    BrainStore
        The written store. Its ``attrs['teramind']['phantom']`` holds the spec, the planted
        programs and the region table (see :func:`phantom_metadata`).
    """
    from napari_teramind.store import BrainStore, GenePanel

    spec = spec or PhantomSpec()
    store = BrainStore.create(
        path,
        n_slices=spec.n_slices,
        height=spec.height,
        width=spec.width,
        panel=GenePanel(spec.gene_names),
        pixel_size_um=spec.pixel_size_um,
        slice_spacing_um=spec.slice_spacing_um,
        gene_block_px=spec.gene_block_px,
        kind="phantom",
        provenance={
            "generator": f"napari_teramind.phantom v{PHANTOM_VERSION}",
            "seed": spec.seed,
            "panel_source": "published 638850 panel (subset)"
            if spec.species == "mouse"
            else "published 319-gene human brain panel (human-brain-panel-319)",
        },
        region_names=region_names(),
        overwrite=overwrite,
        image_chunk=image_chunk,
    )
    store.update_metadata({"phantom": phantom_metadata(spec)})
    unit, sub = _unit_size(store)
    units = list(_units(spec, unit))
    total = len(units) + store.pyramid_chunk_count()
    lock = threading.Lock()
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        with lock:
            done += n
            d = done
        if progress is not None:
            progress(d, total)

    if workers <= 1:
        for z, y0, x0 in units:
            _write_unit(store, spec, z, y0, x0, unit, sub)
            tick()
    else:
        if executor not in ("process", "thread"):
            raise ValueError(f"executor must be 'process' or 'thread', not {executor!r}")
        pool: Executor
        if executor == "process":
            import multiprocessing

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        else:
            pool = ThreadPoolExecutor(workers)
        with pool:
            pending: set = set()
            for z, y0, x0 in units:
                if executor == "process":
                    args = (str(store.path), spec.to_dict(), z, y0, x0, unit, sub)
                    pending.add(pool.submit(_process_unit, *args))
                else:
                    pending.add(pool.submit(_write_unit, store, spec, z, y0, x0, unit, sub))
                if len(pending) >= 2 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()
                        tick()
            for f in pending:
                f.result()
                tick()
    store.finalize(progress=tick, workers=workers)
    return store


def phantom_metadata(spec: PhantomSpec) -> dict[str, Any]:
    """The phantom's ground-truth description stored in the brain store metadata."""
    meta = {
        "version": PHANTOM_VERSION,
        "spec": spec.to_dict(),
        "region_names": {str(k): v for k, v in region_names().items()},
        "programs": _programs(spec),
        "nucleus_table": "phantom.ground_truth_nuclei(spec, z, y0, x0, h, w) re-renders them",
    }
    if spec.interactions:
        meta["interactions"] = interactions_metadata(
            spec.interaction_high_fraction, spec.interaction_expression
        )
    return meta


def _programs(spec: PhantomSpec) -> dict[str, Any]:
    """The planted programs, under the store's gene names (human symbols for human)."""
    meta = programs_metadata(spec.program_genes, planted_genes(spec))
    if spec.species == "mouse":
        return meta
    names = dict(zip(spec.program_genes, spec.gene_names, strict=True))

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            return {names.get(k, k): rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [names.get(v, v) if isinstance(v, str) else rename(v) for v in value]
        return value

    return rename(meta)


def spec_of(source: PhantomSpec | BrainStore | str | os.PathLike[str]) -> PhantomSpec:
    """The :class:`PhantomSpec` of a spec, a phantom brain store or its path."""
    if isinstance(source, PhantomSpec):
        return source
    if isinstance(source, str | os.PathLike):
        from napari_teramind.store import BrainStore

        source = BrainStore.open(source)
    meta = source.metadata.get("phantom")
    if not meta:
        raise ValueError(f"{source.path} is not a phantom brain store (no 'phantom' metadata)")
    return PhantomSpec.from_dict(meta["spec"])


def planted_mask(
    source: PhantomSpec | BrainStore | str | os.PathLike[str],
    program: str = "DOPA",
    z: int | None = None,
    window: tuple[int, int, int, int] | None = None,
    blocks: bool = True,
) -> np.ndarray:
    """Where a planted program (GLUT, DOPA, BLOD, a region or an interaction pair) is.

    Parameters
    ----------
    source
        A :class:`PhantomSpec`, a phantom brain store or its path (its spec is read back and the
        anatomy re-evaluated, so nothing large is read from disk).
    program
        ``"GLUT"`` (Slc17a6/Slc17a7 co-expression: cortex L4 and thalamus), ``"DOPA"``
        (Nr4a2/Th: SN/VTA and olfactory bulb), ``"BLOD"`` (Cldn5/Aqp4: vessels) or any region
        name (e.g. ``"thalamus"``), or, in an interaction phantom, a pair name (``"AND1"``,
        ``"CTRL2"``, ``"ADD1"``: the tissue where both genes of the pair are high, evaluated at
        block or pixel centres).
    z
        One slice, or all slices when ``None``.
    window
        ``(y0, x0, h, w)`` in pixels (multiples of 16 when ``blocks``); the whole section by
        default.
    blocks
        True: one value per 16-px gene block (the region at the block centre; for BLOD, whether
        any pixel of the block lies within 4 px of a vessel centre line); False: one per pixel.

    Returns
    -------
    numpy.ndarray
        bool ``(Z, h', w')`` (or ``(h', w')`` when ``z`` is given), where ``h' = h // 16`` for
        blocks.
    """
    spec = spec_of(source)
    y0, x0, h, w = window or (0, 0, spec.height, spec.width)
    if blocks and (y0 % 16 or x0 % 16 or h % 16 or w % 16):
        raise ValueError("with blocks=True the window must be aligned to 16-px blocks")
    pair = INTERACTION_INDEX.get(program) if spec.interactions else None
    if pair is not None:
        ids, vessels = [], False
    elif program in PATHWAYS:
        pw = PATHWAYS[program]
        ids = [REGION_IDS[n] for n in pw.regions]
        vessels = pw.vessels
    elif program in REGION_IDS:
        ids, vessels = [REGION_IDS[program]], False
    else:
        raise KeyError(
            f"unknown program {program!r}; choose one of {sorted(PATHWAYS)}, a region name "
            f"({', '.join(sorted(REGION_IDS))})"
            + (
                f" or an interaction pair ({', '.join(INTERACTION_INDEX)})"
                if spec.interactions
                else " (interaction pairs exist only in PhantomSpec(interactions=True))"
            )
        )
    slices = range(spec.n_slices) if z is None else [z]
    out = []
    for zz in slices:
        if pair is not None:
            step, off = (16, 8) if blocks else (1, 0.5)
            ys = np.arange(y0, y0 + h, step, dtype=np.float64)[:, None] + off
            xs = np.arange(x0, x0 + w, step, dtype=np.float64)[None, :] + off
            from .anatomy import region_at

            lab = region_at(spec, zz, ys, xs)
            m = (lab != 0) & (lab != REGION_IDS["ventricle"])
            for g in pair.genes:
                m = m & gene_high(spec.seed, g, ys, xs, spec.interaction_high_fraction)
        elif vessels:
            lab = region_grid(spec, zz, y0, x0, h, w)
            tissue = (lab != 0) & (lab != REGION_IDS["ventricle"])
            m = (vessel_grid(spec, zz, y0, x0, h, w) < 4.0) & tissue
            if blocks:
                m = m.reshape(h // 16, 16, w // 16, 16).any(axis=(1, 3))
        elif blocks:
            from .anatomy import region_at

            ys = np.arange(y0 + 8, y0 + h, 16, dtype=np.float64)[:, None]
            xs = np.arange(x0 + 8, x0 + w, 16, dtype=np.float64)[None, :]
            m = np.isin(region_at(spec, zz, ys, xs), ids)
        else:
            m = np.isin(region_grid(spec, zz, y0, x0, h, w), ids)
        out.append(m)
    return out[0] if z is not None else np.stack(out)
