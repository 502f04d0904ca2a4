"""State in memory: advance whole slice pairs several steps at a time, checkpoint to disk.

A **span** is the unit of work of a resident generation: some slice pairs, advanced from step
``s0`` to step ``s1`` with their whole state (``x_t`` of every block) in host memory. Each
step of a span runs every block of its pairs step-synchronously through one batched
:func:`~napari_teramind.generate.engine.advance` stream, reading the in-memory step-``s``
state with its halo, so the result is the same bytes as the per-block engine on disk
(tested). Genes are read once per span (:class:`~napari_teramind.generate.engine.GeneCache`).
The state touches the disk only as a checkpoint at the end of a span (``x_{s1}``, written by a
background thread while the next pair computes) and is read back only when a span starts on
another worker or after a kill: a killed job resumes from the last checkpoint, bit for bit.

State I/O per output patch per step is therefore ``64 KiB * (checkpoints written + read) /
steps`` (float32, 4 channels of 64 x 64 px) instead of the per-block engine's read of the
block plus halo and write of the block at every step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.generate.engine import (
    DEFAULT_BATCH_SIZE,
    GeneCache,
    GeneSource,
    advance,
    write_output_block,
)
from napari_teramind.generate.numerics import Numerics
from napari_teramind.generate.plan import PATCH_PX, Block, GenerationPlan

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from napari_teramind.diffusion import DDIMSchedule
    from napari_teramind.model import TeraMindUNet
    from napari_teramind.store import BrainStore

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_MEMORY_BUDGET",
    "STATE_IO",
    "BackgroundWriter",
    "IOCounter",
    "PairState",
    "Span",
    "resident_nbytes",
    "run_span",
]

#: Steps between state checkpoints (15 steps: one checkpoint, after step 8). Fewer
#: checkpoints mean less state I/O (a tiled span reads its grown area back once per
#: checkpoint); a killed unit loses at most this many steps of work.
DEFAULT_CHECKPOINT_EVERY = 8
#: Host memory a resident unit may use by default (bytes).
DEFAULT_MEMORY_BUDGET = 8 * 2**30
#: Encoder features held per offset patch in flight, per model channel (float32, measured
#: order of magnitude: ~10 MB per patch for the reference model's 256 channels).
_FEATURE_BYTES_PER_CHANNEL = 40_000


class IOCounter:
    """Bytes of state read and written through :class:`PairState` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read = 0
        self.written = 0

    def add(self, read: int = 0, written: int = 0) -> None:
        """Count bytes."""
        with self._lock:
            self.read += int(read)
            self.written += int(written)

    def reset(self) -> None:
        """Back to zero."""
        with self._lock:
            self.read = self.written = 0

    @property
    def total(self) -> int:
        """Bytes read plus written."""
        return self.read + self.written


#: Process-wide counter of resident state I/O (benchmarks/engine.py reads it).
STATE_IO = IOCounter()


@dataclass(frozen=True)
class Span:
    """A resident unit: pair indices advanced from step ``step0`` to ``step1`` (exclusive)."""

    pairs: tuple[int, ...]
    step0: int
    step1: int


class PairState:
    """The state of some slice pairs in memory, indexable like the state arrays.

    ``state[pair, c, y0:y1, x0:x1]`` reads and writes pair ``pair`` (a plan pair index) of a
    ``(4, H + pad, W + pad)`` float32 buffer per pair, the layout of
    :func:`~napari_teramind.generate.engine.create_state_arrays`.
    """

    def __init__(self, arrays: dict[int, np.ndarray]):
        self.arrays = arrays

    @classmethod
    def zeros(cls, plan: GenerationPlan, pairs: Sequence[int]) -> PairState:
        """Zero state of ``pairs``."""
        shape = plan.state_shape[1:]
        return cls({p: np.zeros(shape, np.float32) for p in pairs})

    @classmethod
    def read(cls, array: Any, pairs: Sequence[int], counter: IOCounter = STATE_IO) -> PairState:
        """Read the checkpoint of ``pairs`` from a state array (one pass over its chunks)."""
        out = {}
        for p in pairs:
            out[p] = np.ascontiguousarray(np.asarray(array[p]), dtype=np.float32)
            counter.add(read=out[p].nbytes)
        return cls(out)

    def write(self, array: Any, pair: int, counter: IOCounter = STATE_IO) -> None:
        """Write pair ``pair``'s state into a state array (whole chunks, each once)."""
        array[pair] = self.arrays[pair]
        counter.add(written=self.arrays[pair].nbytes)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(a.nbytes for a in self.arrays.values())

    def __getitem__(self, key: tuple) -> np.ndarray:
        pair, *rest = key
        return self.arrays[pair][tuple(rest)]

    def __setitem__(self, key: tuple, value: Any) -> None:
        pair, *rest = key
        self.arrays[pair][tuple(rest)] = value


class BackgroundWriter:
    """One thread that runs write calls in order, overlapping them with compute.

    :meth:`join` waits for every queued write and re-raises the first error, so a caller that
    records a unit done after ``join()`` never records an unwritten one.
    """

    def __init__(self, max_queued: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="teramind-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            fn = self._queue.get()
            try:
                if fn is None:
                    return
                if self._error is None:
                    fn()
            except BaseException as exc:  # re-raised by join()
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` (blocks while ``max_queued`` writes wait: memory stays bounded)."""
        if self._error is not None:
            raise self._error
        self._queue.put(fn)

    def join(self) -> None:
        """Wait for every queued write; raise the first error any of them raised."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Finish queued writes and stop the thread (errors are dropped: call join first)."""
        self._queue.put(None)
        self._thread.join()


def output_writer(
    plan: GenerationPlan, output: BrainStore | None, writer: BackgroundWriter | None
) -> Callable[[Block, np.ndarray], None]:
    """The ``write_output(block, x0)`` callback of a unit.

    It writes the images into ``output`` (if any), in the background ``writer`` when there
    is one.
    """

    def write_output(blk: Block, x0: np.ndarray) -> None:
        if output is None:
            return
        if writer is None:
            write_output_block(plan, output, blk, x0)
        else:
            writer.submit(lambda: write_output_block(plan, output, blk, x0))

    return write_output


def resident_nbytes(
    plan: GenerationPlan, n_genes: int, n_pairs: int = 1, model_channels: int = 256,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:  # fmt: skip
    """Host memory of a resident span of ``n_pairs`` pairs (an upper estimate).

    Two state buffers per pair (step ``s`` and ``s + 1``), the cached genes, and the encoder
    features in flight (about one block's offset patches plus one micro-batch).
    """
    import math

    state = 2 * n_pairs * math.prod(plan.state_shape[1:]) * 4
    genes = GeneCache.estimate_nbytes(plan, n_genes, n_pairs)
    side = min(plan.block_px, max(plan.height, plan.width)) // PATCH_PX + 2
    feats = (side * side + batch_size) * model_channels * _FEATURE_BYTES_PER_CHANNEL
    return int(state + genes + feats)


def run_span(
    plan: GenerationPlan,
    model: TeraMindUNet,
    genes: GeneSource | GeneCache,
    span: Span,
    state: PairState | None,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: bool | str | None = None,
    output: BrainStore | None = None,
    checkpoint: Any = None,
    writer: BackgroundWriter | None = None,
    schedule: DDIMSchedule | None = None,
    pad_to: int | None = None,
    numerics: Numerics | None = None,
) -> Iterator[tuple[int, Block, np.ndarray, PairState | None]]:
    """Advance the pairs of ``span`` from ``span.step0`` to ``span.step1`` in memory.

    Parameters
    ----------
    plan, model, device, batch_size, precision, schedule, pad_to, numerics
        As for :func:`~napari_teramind.generate.engine.advance`.
    genes
        Gene counts; a :class:`GeneSource` is cached for the span's pairs (read once).
    span
        Pairs and steps.
    state
        ``x_{step0}`` of the span's pairs; ``None`` at step 0 (initial noise).
    output
        Brain store receiving the images at the plan's last step.
    checkpoint
        State array receiving ``x_{step1}`` of every pair at the end of the span (skipped at
        the plan's last step, whose result is the images).
    writer
        Runs checkpoint and image writes in the background; the caller joins it. Without
        one they run in the calling thread.

    Yields
    ------
    tuple
        ``(step, block, x0, None)`` after every block of every step (for previews and
        progress), and finally ``(span.step1, None, None, state)`` with ``x_{step1}`` (None
        after the plan's last step).
    """
    if not 0 <= span.step0 < span.step1 <= plan.steps:
        raise ValueError(f"span steps {span.step0}..{span.step1} outside 0..{plan.steps}")
    if span.step0 > 0 and state is None:
        raise ValueError(f"a span starting at step {span.step0} needs the state of that step")
    if isinstance(genes, GeneSource):
        genes = GeneCache(genes, plan, span.pairs)
    blocks = [b for b in plan.blocks if b.pair in span.pairs]
    last = plan.steps - 1

    write_output = output_writer(plan, output, writer)
    cur = state
    for step in range(span.step0, span.step1):
        nxt = None if step == last else PairState.zeros(plan, span.pairs)
        for blk, x0 in advance(plan, model, genes, cur, nxt, step, blocks, device=device,
                               batch_size=batch_size, precision=precision, schedule=schedule,
                               pad_to=pad_to, write_output=write_output,
                               numerics=numerics):  # fmt: skip
            yield step, blk, x0, None
        cur = nxt
    if checkpoint is not None and cur is not None:
        for p in span.pairs:
            if writer is None:
                cur.write(checkpoint, p)
            else:
                writer.submit(lambda p=p, s=cur: s.write(checkpoint, p))
    yield span.step1, None, None, cur
