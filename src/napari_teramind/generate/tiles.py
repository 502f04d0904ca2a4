"""Tiled spans: advance one tile of a slice pair several steps in memory, with a growing halo.

A whole-brain slice pair (73,216 x 105,984 px, 4 float32 channels: 124 GB per state) does
not fit in memory, so a resident span of whole pairs (:mod:`~napari_teramind.generate.
resident`) cannot run it. A **tiled span** advances one tile (a rectangle of the plan's
blocks) from step ``s0`` to step ``s1`` with its state in memory. Every step of the engine
reads its blocks plus a halo of the previous state, so to end with the exact ``x_{s1}`` of
the tile, step ``s`` must compute a larger area: the tile at step ``s1 - 1``, grown at every
earlier step by what that step's blocks read (the 32 px encoder halo, the rounding of each
grid pass to whole patches, and the move of the frame between steps; see
:func:`tile_geometry`, which works it out exactly, backwards from the tile). The grown
blocks are plan :meth:`~napari_teramind.generate.plan.GenerationPlan.sub_block` rectangles,
which the engine computes exactly as it computes plan blocks, so a tiled job writes the same
bytes as the per-block engine (tested for every scheme).

A span reads ``x_{s0}`` of its grown area once from the job's checkpoint array (written by
the previous span's tiles: spans are step-synchronous across tiles, like the per-block
units), reads its genes once, and writes the tile's ``x_{s1}`` once (whole state chunks: a
tile is whole blocks). State I/O per output patch per step is therefore about
``64 KiB * (1 + grown / tile area) / (s1 - s0)``; the halo's extra compute is
:func:`tile_overhead`. Both shrink as the tile grows; :func:`choose_tile_px` takes the
largest tile that fits the memory budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.generate.engine import (
    DEFAULT_BATCH_SIZE,
    GeneCache,
    GeneSource,
    _pass_window,
    advance,
)
from napari_teramind.generate.numerics import Numerics
from napari_teramind.generate.plan import HALO_PX, PATCH_PX, Block, GenerationPlan
from napari_teramind.generate.resident import (
    _FEATURE_BYTES_PER_CHANNEL,
    STATE_IO,
    BackgroundWriter,
    IOCounter,
    output_writer,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from napari_teramind.diffusion import DDIMSchedule
    from napari_teramind.model import TeraMindUNet
    from napari_teramind.store import BrainStore

__all__ = [
    "Tile",
    "TileInputs",
    "TilePrefetcher",
    "TileStep",
    "WindowState",
    "choose_tile_px",
    "plan_tiles",
    "read_tile_inputs",
    "run_tile_span",
    "tile_geometry",
    "tile_nbytes",
    "tile_overhead",
    "tile_state_io",
]

Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """A rectangle of whole plan blocks of one slice pair (region px, block coordinates)."""

    index: int
    pair: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def rect(self) -> Rect:
        """``(y0, y1, x0, x1)``."""
        return self.y0, self.y1, self.x0, self.x1

    @property
    def n_patches(self) -> int:
        """Output patches of the tile."""
        return (self.y1 - self.y0) // PATCH_PX * ((self.x1 - self.x0) // PATCH_PX)


@dataclass(frozen=True)
class TileStep:
    """What one step of a tiled span computes.

    Attributes
    ----------
    step
        The sampler step.
    blocks
        Blocks (plan blocks or sub-blocks) whose ``x_{step+1}`` the span needs.
    reads
        Region px of ``x_step`` those blocks read (clipped to the region).
    genes
        Region px of gene windows they read (not clipped: real counts beyond the region).
    out
        State-array px that the blocks write (their frame-moved extents, stored).
    """

    step: int
    blocks: tuple[Block, ...]
    reads: Rect
    genes: Rect
    out: Rect


def plan_tiles(plan: GenerationPlan, tile_px: int) -> tuple[Tile, ...]:
    """The tiles of every pair, ``tile_px`` square (a multiple of ``block_px``), row-major."""
    if tile_px <= 0 or tile_px % plan.block_px:
        raise ValueError(f"tile_px must be a positive multiple of block_px {plan.block_px}")
    tiles = []
    for p in range(len(plan.pairs)):
        for y in range(0, plan.height, tile_px):
            for x in range(0, plan.width, tile_px):
                y1, x1 = min(y + tile_px, plan.height), min(x + tile_px, plan.width)
                tiles.append(Tile(len(tiles), p, y, y1, x, x1))
    return tuple(tiles)


def _union(a: Rect | None, b: Rect) -> Rect:
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _cut(plan: GenerationPlan, pair: int, rect: Rect) -> tuple[Block, ...]:
    """Blocks covering ``rect`` (block coordinates), cut on the plan's block grid.

    Whole plan blocks are returned as the plan's own (their last-step output is theirs).
    """
    y0, y1, x0, x1 = rect
    bp = plan.block_px
    rows, cols = plan.block_grid
    out = []
    for r in range(y0 // bp, -(-y1 // bp)):
        for c in range(x0 // bp, -(-x1 // bp)):
            a0, a1 = max(y0, r * bp), min(y1, (r + 1) * bp, plan.height)
            b0, b1 = max(x0, c * bp), min(x1, (c + 1) * bp, plan.width)
            own = plan.blocks[(pair * rows + r) * cols + c]
            if (own.y0, own.y1, own.x0, own.x1) == (a0, a1, b0, b1):
                out.append(own)
            else:
                out.append(plan.sub_block(pair, a0, a1, b0, b1))
    return tuple(out)


def _cover(plan: GenerationPlan, step: int, need: Rect) -> Rect:
    """Block coordinates of the blocks of ``step`` whose extents cover ``need``.

    ``need`` is in region px, inside the region; the blocks are whole patches of the step's
    frame grid.
    """
    fy, fx = plan.grids(step).frame
    y0, y1, x0, x1 = need
    return (
        max(0, (y0 + fy) // PATCH_PX * PATCH_PX),
        min(plan.height, -(-(y1 + fy) // PATCH_PX) * PATCH_PX),
        max(0, (x0 + fx) // PATCH_PX * PATCH_PX),
        min(plan.width, -(-(x1 + fx) // PATCH_PX) * PATCH_PX),
    )


def _stored(plan: GenerationPlan, step: int, blk: Block) -> Rect:
    """State-array px where ``blk``'s ``x_{step+1}`` is stored (its extent, frame-moved)."""
    fy, fx = plan.grids(step).frame
    y0, y1, x0, x1 = plan.extent(step, blk)
    return y0 + fy, y1 + fy, x0 + fx, x1 + fx


def tile_geometry(plan: GenerationPlan, tile: Tile, step0: int, step1: int) -> list[TileStep]:
    """The blocks each step of a span must compute for the tile's exact ``x_{step1}``.

    Worked out backwards: step ``step1 - 1`` computes the tile's own blocks; every earlier
    step computes the whole-patch blocks (on its own frame grid) covering the area the next
    step reads.
    """
    if not 0 <= step0 < step1 <= plan.steps:
        raise ValueError(f"span steps {step0}..{step1} outside 0..{plan.steps}")
    out: list[TileStep] = []
    rect = tile.rect  # block coordinates of the step's blocks
    for step in range(step1 - 1, step0 - 1, -1):
        blocks = _cut(plan, tile.pair, rect)
        reads = genes = stored = None
        for blk in blocks:
            extent = plan.extent(step, blk)
            stored = _union(stored, _stored(plan, step, blk))
            for q in plan.grids(step).passes:
                a0, a1, b0, b1 = _pass_window(extent, q)
                genes = _union(genes, (a0 - HALO_PX, a1 + HALO_PX, b0 - HALO_PX, b1 + HALO_PX))
        reads = (
            max(0, genes[0]),
            min(plan.height, genes[1]),
            max(0, genes[2]),
            min(plan.width, genes[3]),
        )
        out.append(TileStep(step, blocks, reads, genes, stored))
        if step > step0:
            rect = _cover(plan, step - 1, reads)
    return out[::-1]


def _area(r: Rect) -> int:
    return max(0, r[1] - r[0]) * max(0, r[3] - r[2])


def tile_overhead(plan: GenerationPlan, tile_px: int, steps_per_unit: int) -> float:
    """Patches computed per output patch by tiled spans of ``steps_per_unit`` steps (>= 1)."""
    tiles = [t for t in plan_tiles(plan, tile_px) if t.pair == 0]
    done = need = 0
    for s0 in range(0, plan.steps, steps_per_unit):
        s1 = min(plan.steps, s0 + steps_per_unit)
        for t in tiles:
            for ts in tile_geometry(plan, t, s0, s1):
                done += sum((b.y1 - b.y0) * (b.x1 - b.x0) for b in ts.blocks)
                need += _area(t.rect)
    return done / need


def tile_state_io(plan: GenerationPlan, tile_px: int, steps_per_unit: int) -> float:
    """Bytes of state read and written per output patch per step by tiled spans.

    Each span after the first reads its grown area of the checkpoint; each span before the
    last writes its tile (float32, :attr:`~GenerationPlan.channels` channels). This is what
    :data:`~napari_teramind.generate.resident.STATE_IO` counts when the job runs.
    """
    tiles = [t for t in plan_tiles(plan, tile_px) if t.pair == 0]
    px = 0
    for s0 in range(0, plan.steps, steps_per_unit):
        s1 = min(plan.steps, s0 + steps_per_unit)
        for t in tiles:
            geo = tile_geometry(plan, t, s0, s1)
            if s0 > 0:
                px += _area(geo[0].reads)
            if s1 < plan.steps:
                px += _area(geo[-1].out)
    patches = sum(t.n_patches for t in tiles) * plan.steps
    return px * plan.channels * 4 / patches


def tile_nbytes(
    plan: GenerationPlan, tile_px: int, steps_per_unit: int, n_genes: int,
    model_channels: int = 256, batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:  # fmt: skip
    """Host memory of the largest tiled span (state in and out, cached genes, features).

    It counts the next unit's inputs too (genes and first state), which a worker reads in
    the background while this unit computes (:class:`TilePrefetcher`).
    """
    worst = 0
    # an interior tile grows the most: the first three rows and columns hold one
    pick = [t for t in plan_tiles(plan, tile_px)
            if t.pair == 0 and t.y0 < 3 * tile_px and t.x0 < 3 * tile_px]  # fmt: skip
    for s0 in range(0, plan.steps, steps_per_unit):
        s1 = min(plan.steps, s0 + steps_per_unit)
        for t in pick:
            geo = tile_geometry(plan, t, s0, s1)
            held = [_area(geo[0].reads)] + [_area(ts.out) for ts in geo]
            state = max(a + b for a, b in itertools.pairwise(held))
            genes = n_genes * plan.gene_depth * 4 * _area(geo[0].genes) // plan.gene_block_px**2
            first = plan.channels * 4 * _area(geo[0].reads) if s0 else 0
            # the unit computing, plus the next unit's inputs read meanwhile (prefetch)
            worst = max(worst, plan.channels * 4 * state + genes + genes + first)
    side = plan.block_px // PATCH_PX + 2
    feats = (side * side + batch_size) * model_channels * _FEATURE_BYTES_PER_CHANNEL
    return int(worst + feats)


def choose_tile_px(
    plan: GenerationPlan, steps_per_unit: int, n_genes: int, budget: int, **kw: Any
) -> int | None:
    """The largest tile (a multiple of ``block_px``) whose span fits ``budget`` bytes.

    None when not even one block does (the job then runs per-block units on disk state).
    """
    bp = plan.block_px
    side = -(-max(plan.height, plan.width) // bp) * bp

    def fits(t: int) -> bool:
        return tile_nbytes(plan, t, steps_per_unit, n_genes, **kw) <= budget

    if not fits(bp):
        return None
    lo = bp  # fits; double until a tile does not, then bisect in whole blocks
    while lo < side and fits(min(2 * lo, side)):
        lo = min(2 * lo, side)
    if lo == side:
        return lo
    hi = min(2 * lo, side)
    while hi - lo > bp:
        mid = (lo + hi) // 2 // bp * bp
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


class WindowState:
    """The state of one pair over a window of the state arrays, indexable like them.

    ``state[pair, c, y0:y1, x0:x1]`` reads and writes state-array px ``(y0, x0)`` at
    ``(y0 - oy, x0 - ox)`` of a ``(C, h, w)`` float32 buffer. Indexing outside the window
    (or another pair) raises: a tile never reads state it did not compute.
    """

    def __init__(self, pair: int, rect: Rect, array: np.ndarray):
        self.pair = pair
        self.rect = rect
        self.array = array

    @classmethod
    def zeros(cls, plan: GenerationPlan, pair: int, rect: Rect) -> WindowState:
        """A zero window."""
        return cls(pair, rect, np.zeros((plan.channels, rect[1] - rect[0], rect[3] - rect[2]),
                                        np.float32))  # fmt: skip

    @classmethod
    def read(cls, array: Any, pair: int, rect: Rect, counter: IOCounter = STATE_IO):
        """Read a window of a state array."""
        y0, y1, x0, x1 = rect
        data = np.ascontiguousarray(np.asarray(array[pair, :, y0:y1, x0:x1]), dtype=np.float32)
        counter.add(read=data.nbytes)
        return cls(pair, rect, data)

    def write(self, array: Any, counter: IOCounter = STATE_IO) -> None:
        """Write the whole window into a state array."""
        y0, y1, x0, x1 = self.rect
        array[self.pair, :, y0:y1, x0:x1] = self.array
        counter.add(written=self.array.nbytes)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.array.nbytes

    def _local(self, key: tuple) -> tuple:
        pair, c, ys, xs = key
        y0, y1, x0, x1 = self.rect
        if pair != self.pair:
            raise IndexError(f"window of pair {self.pair} indexed for pair {pair}")
        if not (y0 <= ys.start and ys.stop <= y1 and x0 <= xs.start and xs.stop <= x1):
            raise IndexError(
                f"state px ({ys.start}, {ys.stop}, {xs.start}, {xs.stop}) outside the tile's "
                f"window {self.rect}"
            )
        return c, slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)

    def __getitem__(self, key: tuple) -> np.ndarray:
        return self.array[self._local(key)]

    def __setitem__(self, key: tuple, value: Any) -> None:
        self.array[self._local(key)] = value


@dataclass
class TileInputs:
    """What a tiled span reads before it computes: its geometry, genes and first state.

    Made by :func:`read_tile_inputs`, possibly in a background thread while another unit
    computes (:class:`TilePrefetcher`).
    """

    tile: Tile
    step0: int
    step1: int
    geometry: list[TileStep]
    genes: GeneCache
    state: WindowState | None

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.genes.nbytes + (0 if self.state is None else self.state.nbytes)


def read_tile_inputs(
    plan: GenerationPlan,
    genes: GeneSource,
    tile: Tile,
    step0: int,
    step1: int,
    state_in: Any = None,
    counter: IOCounter = STATE_IO,
) -> TileInputs:
    """Read a tiled span's genes (once, its whole area) and its grown ``x_{step0}``."""
    if step0 > 0 and state_in is None:
        raise ValueError(f"a tiled span starting at step {step0} needs the state of that step")
    geo = tile_geometry(plan, tile, step0, step1)
    area = None
    for ts in geo:
        area = _union(area, ts.genes)
    gb = plan.gene_block_px
    area = (area[0] // gb * gb, -(-area[1] // gb) * gb, area[2] // gb * gb, -(-area[3] // gb) * gb)
    cache = GeneCache(genes, plan, [tile.pair], area=area)
    state = None
    if step0 > 0:
        fy, fx = plan.grids(step0 - 1).frame
        r = geo[0].reads
        state = WindowState.read(state_in, tile.pair,
                                 (r[0] + fy, r[1] + fy, r[2] + fx, r[3] + fx), counter)  # fmt: skip
    return TileInputs(tile, step0, step1, geo, cache, state)


class TilePrefetcher:
    """Reads the next unit's inputs in one background thread while this one computes.

    ``start(key, fn)`` begins ``fn()`` for ``key`` (dropping any other prefetched unit);
    ``take(key)`` returns its result (waiting for it) or None when another key was
    prefetched. Errors of a prefetch are raised by ``take``; the unit then reads again.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="teramind-prefetch")
        self._key: Any = None
        self._future: Any = None

    def start(self, key: Any, fn: Any) -> None:
        """Prefetch ``fn()`` for ``key`` (a no-op when it is already prefetched)."""
        if key == self._key:
            return
        if self._future is not None:
            self._future.cancel()
        self._key, self._future = key, self._pool.submit(fn)

    def take(self, key: Any) -> Any:
        """The prefetched result for ``key``, or None."""
        if key != self._key or self._future is None:
            return None
        future, self._key, self._future = self._future, None, None
        return future.result()

    def close(self) -> None:
        """Stop the thread (a running prefetch finishes first)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def run_tile_span(
    plan: GenerationPlan,
    model: TeraMindUNet,
    genes: GeneSource,
    tile: Tile,
    step0: int,
    step1: int,
    *,
    state_in: Any = None,
    checkpoint: Any = None,
    output: BrainStore | None = None,
    writer: BackgroundWriter | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: bool | str | None = None,
    schedule: DDIMSchedule | None = None,
    pad_to: int | None = None,
    numerics: Numerics | None = None,
    counter: IOCounter = STATE_IO,
    inputs: TileInputs | None = None,
) -> Iterator[tuple[int, Block, np.ndarray]]:
    """Advance ``tile`` from ``step0`` to ``step1`` in memory.

    Parameters
    ----------
    plan, model, device, batch_size, precision, schedule, pad_to, numerics
        As for :func:`~napari_teramind.generate.engine.advance`.
    genes
        Gene counts; the tile's windows are read once (:class:`GeneCache` of its area).
    tile, step0, step1
        The tile and its steps.
    state_in
        State array holding ``x_{step0}`` of the whole pair (the previous span's
        checkpoint); unused at step 0 (initial noise).
    checkpoint
        State array receiving the tile's ``x_{step1}`` (skipped after the plan's last step).
    output
        Brain store receiving the tile's images at the plan's last step.
    writer
        Runs the checkpoint and image writes in the background; the caller joins it.
    inputs
        The unit's inputs read beforehand (:func:`read_tile_inputs`); read here if None.

    Yields
    ------
    tuple
        ``(step, block, x0)`` after every block of every step (progress; at the plan's
        last step the tile's own blocks and their images, as
        :func:`~napari_teramind.generate.engine.advance` yields them).
    """
    if inputs is None:
        inputs = read_tile_inputs(plan, genes, tile, step0, step1, state_in, counter)
    elif (inputs.tile, inputs.step0, inputs.step1) != (tile, step0, step1):
        raise ValueError("the prepared inputs are another unit's")
    geo, cache, cur = inputs.geometry, inputs.genes, inputs.state
    last = plan.steps - 1

    write_output = output_writer(plan, output, writer)
    for ts in geo:
        nxt = None if ts.step == last else WindowState.zeros(plan, tile.pair, ts.out)
        for blk, x0 in advance(plan, model, cache, cur, nxt, ts.step, ts.blocks, device=device,
                              batch_size=batch_size, precision=precision, schedule=schedule,
                              pad_to=pad_to, write_output=write_output,
                              numerics=numerics):  # fmt: skip
            yield ts.step, blk, x0
        cur = nxt
    if checkpoint is not None and cur is not None:
        final: WindowState = cur
        if writer is None:
            final.write(checkpoint, counter)
        else:
            writer.submit(lambda: final.write(checkpoint, counter))
