"""Streaming pyramid construction: each level from the one above, chunk by chunk.

Memory is bounded by a few chunks whatever the array size, so a whole-brain level is built
the same way as a tiny one. A region argument rebuilds only the chunks a write touched, which
lets a viewer watch a generated brain grow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np

Region = tuple[int, int, int, int]  # (y0, y1, x0, x1) in element units of a level
METHODS = ("mean", "max", "nearest")


def downsample2(block: np.ndarray, method: str) -> np.ndarray:
    """Halve the last two axes of ``block``.

    Odd sizes are padded by repeating the last row/column, so the output has
    ``ceil(n / 2)`` elements along each of the two axes.

    Parameters
    ----------
    block
        Array whose last two axes are ``(y, x)``.
    method
        ``"mean"`` (rounded, for intensities), ``"max"`` (for sparse counts: a gene seen
        anywhere stays visible when zoomed out) or ``"nearest"`` (for labels).
    """
    if method not in METHODS:
        raise ValueError(f"unknown downsampling method {method!r}; choose one of {METHODS}")
    if method == "nearest":
        return block[..., ::2, ::2]
    h, w = block.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
        block = np.pad(block, pad, mode="edge")
    a = block[..., 0::2, 0::2]
    b = block[..., 1::2, 0::2]
    c = block[..., 0::2, 1::2]
    d = block[..., 1::2, 1::2]
    if method == "max":
        return np.maximum(np.maximum(a, b), np.maximum(c, d))
    if np.issubdtype(block.dtype, np.floating):  # derived maps: a true mean, not rounded
        return ((a + b + c + d) * 0.25).astype(block.dtype)
    acc = a.astype(np.uint32) + b + c + d + 2
    return (acc // 4).astype(block.dtype)


def _chunk_regions(shape: tuple[int, ...], chunks: tuple[int, ...], region: Region | None):
    """Chunk-aligned slices of an array, optionally only those meeting ``region`` (y, x)."""
    ranges = []
    for ax, (n, c) in enumerate(zip(shape, chunks, strict=True)):
        lo, hi = 0, n
        if region is not None and ax >= len(shape) - 2:
            lo, hi = (region[0], region[1]) if ax == len(shape) - 2 else (region[2], region[3])
            lo, hi = max(0, lo), min(n, hi)
        first = (lo // c) * c
        ranges.append([(s, min(s + c, n)) for s in range(first, hi, c)])
    for combo in itertools.product(*ranges):
        yield tuple(slice(a, b) for a, b in combo)


def iter_downsample(
    src, dst, method: str, region: Region | None = None
) -> Iterator[Callable[[], None]]:
    """Yield one task per destination chunk; calling a task computes and writes that chunk."""
    for sl in _chunk_regions(dst.shape, dst.chunks, region):

        def task(sl=sl) -> None:
            src_sl = sl[:-2] + (
                slice(2 * sl[-2].start, min(2 * sl[-2].stop, src.shape[-2])),
                slice(2 * sl[-1].start, min(2 * sl[-1].stop, src.shape[-1])),
            )
            out = downsample2(np.asarray(src[src_sl]), method)
            dst[sl] = out[..., : sl[-2].stop - sl[-2].start, : sl[-1].stop - sl[-1].start]

        yield task


def run_tasks(tasks, workers: int = 2, progress: Callable[[int], None] | None = None) -> int:
    """Run callables on a thread pool with at most ``2 * workers`` in flight; return the count."""
    done = 0
    if workers <= 1:
        for t in tasks:
            t()
            done += 1
            if progress:
                progress(1)
        return done
    with ThreadPoolExecutor(workers) as pool:
        pending = set()
        for t in tasks:
            pending.add(pool.submit(t))
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()
                    done += 1
                    if progress:
                        progress(1)
        for f in pending:
            f.result()
            done += 1
            if progress:
                progress(1)
    return done


def build_pyramid(
    levels: list,
    method: str,
    region: Region | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Fill ``levels[1:]`` from ``levels[0]`` (zarr arrays, y and x last), level by level.

    Parameters
    ----------
    levels
        Arrays of one pyramid, finest first; each level is half the previous in y and x.
    method
        See :func:`downsample2`.
    region
        ``(y0, y1, x0, x1)`` at level 0: rebuild only what this region affects.
    workers
        Threads used per level.
    progress
        Called with the number of chunks finished.
    """
    for k in range(1, len(levels)):
        if region is not None:
            f = 2**k
            region_k = (region[0] // f, -(-region[1] // f), region[2] // f, -(-region[3] // f))
        else:
            region_k = None
        run_tasks(iter_downsample(levels[k - 1], levels[k], method, region_k), workers, progress)


def n_level_chunks(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int:
    """Number of chunks of an array."""
    return int(np.prod([-(-n // c) for n, c in zip(shape, chunks, strict=True)]))
