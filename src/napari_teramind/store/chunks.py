"""Checked reads of brain-store arrays: a lost chunk is an error, never zeros.

zarr reads a chunk file that does not exist as the array's fill value. While a writer is
still running that is what a viewer watching the store should see, but once the store is
marked complete a missing chunk means lost data (a truncated copy, a deleted file), and
reading it as zeros would hand wrong images to generation, evaluation and export without a
word. Every read of a brain-store array therefore goes through :class:`CheckedArray`, which

- raises :class:`~napari_teramind.store.errors.MissingChunkError` (naming the store, the array,
  the chunk index and the file) for a missing chunk the store's completeness marker says must
  exist, and
- turns a decoding failure (a truncated or overwritten chunk file) into
  :class:`~napari_teramind.store.errors.DamagedStoreError` naming the file and the fix.

Which chunks must exist is a :class:`ChunkRule`: all of them in a complete store, only those
meeting the covered region in a generated store that covers a region of the canvas
(:class:`CoveredRegion`); none while the store is incomplete.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BrainStoreError, DamagedStoreError, MissingChunkError

#: How to recover from a missing or damaged file (appended to every such error).
RECOVER = (
    "Re-copy the store from where it came from, or re-run the command that wrote it "
    "(`teramind ingest`, `phantom` or `generate`) into a new path; `teramind validate --deep "
    "{store}` lists every missing or damaged chunk."
)


@dataclass(frozen=True)
class CoveredRegion:
    """A region a generated store holds data for.

    Attributes
    ----------
    region
        ``(y0, y1, x0, x1)`` in image pixels at level 0.
    slices
        The slices of the region that were written.
    """

    region: tuple[int, int, int, int]
    slices: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (an entry of the store's ``coverage`` metadata)."""
        return {"region": [int(v) for v in self.region], "slices": [int(z) for z in self.slices]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CoveredRegion:
        """Read the form written by :meth:`to_dict`."""
        y0, y1, x0, x1 = (int(v) for v in d["region"])
        return cls((y0, y1, x0, x1), tuple(sorted({int(z) for z in d["slices"]})))


def merge_coverage(
    coverage: Sequence[CoveredRegion] | None,
    new: CoveredRegion,
    canvas: tuple[int, int, int],
) -> list[CoveredRegion] | None:
    """``coverage`` with ``new`` added; None (the whole canvas) once one entry covers it all.

    Parameters
    ----------
    coverage
        The store's coverage so far (None: the whole canvas).
    new
        The region just written.
    canvas
        ``(slices, height, width)`` of the store.
    """
    if coverage is None:
        return None
    n_z, h, w = canvas
    if tuple(new.region) == (0, h, 0, w) and set(new.slices) >= set(range(n_z)):
        return None
    out = [c for c in coverage if c != new]
    out.append(new)
    return out


class ChunkRule:
    """Which chunks of one array must exist.

    Parameters
    ----------
    shape, chunks
        The array's shape and chunk shape; the last three axes are ``(z, y, x)``.
    unit_px
        Image pixels per array element at level 0 (1 for images, the gene block for genes).
    level
        Pyramid level of the array (its elements are ``unit_px * 2**level`` pixels wide).
    coverage
        None: every chunk; else the covered regions (chunks meeting one of them).
    """

    def __init__(
        self,
        shape: Sequence[int],
        chunks: Sequence[int],
        unit_px: int = 1,
        level: int = 0,
        coverage: Sequence[CoveredRegion] | None = None,
    ):
        self.shape = tuple(int(n) for n in shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.grid = tuple(-(-n // c) for n, c in zip(self.shape, self.chunks, strict=True))
        lead = [range(g) for g in self.grid[:-3]]
        if coverage is None:
            self.entries = [[*lead, *(range(g) for g in self.grid[-3:])]]
            return
        f = int(unit_px) * 2 ** int(level)
        cz, cy, cx = self.chunks[-3:]
        gz, gy, gx = self.grid[-3:]
        self.entries = []
        for c in coverage:
            y0, y1, x0, x1 = c.region
            zs = sorted({z // cz for z in c.slices if 0 <= z < self.shape[-3]})
            ys = range(max(0, (y0 // f) // cy), min(gy, _ceil(_ceil(y1, f), cy)))
            xs = range(max(0, (x0 // f) // cx), min(gx, _ceil(_ceil(x1, f), cx)))
            if zs and len(ys) and len(xs):
                self.entries.append([*lead, [z for z in zs if z < gz], ys, xs])

    def required(self, coords: Sequence[int]) -> bool:
        """Whether the chunk at chunk-grid ``coords`` must exist."""
        return any(all(c in r for c, r in zip(coords, e, strict=True)) for e in self.entries)

    def iter_required(self) -> Iterator[tuple[int, ...]]:
        """Every chunk that must exist (each once)."""
        seen: set[tuple[int, ...]] = set()
        for e in self.entries:
            for coords in itertools.product(*e):
                if len(self.entries) == 1 or coords not in seen:
                    seen.add(coords)
                    yield coords

    def n_required(self) -> int:
        """Number of chunks that must exist."""
        if len(self.entries) == 1:
            return int(np.prod([len(r) for r in self.entries[0]]))
        return sum(1 for _ in self.iter_required())

    def edges(self) -> list[tuple[int, ...]]:
        """The first and last required chunk of each covered region (a cheap spot check)."""
        out = []
        for e in self.entries:
            out.append(tuple(r[0] for r in e))
            out.append(tuple(r[-1] for r in e))
        return out


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _axis_chunks(index: Any, n: int, c: int) -> Iterable[int]:
    """Chunk indices along one axis touched by a basic or integer-array index."""
    if isinstance(index, slice):
        start, stop, step = index.indices(n)
        if step == 1:
            return range(start // c, -(-stop // c)) if stop > start else range(0)
        return sorted({i // c for i in range(start, stop, step)})
    if isinstance(index, int | np.integer):
        i = int(index) + (n if index < 0 else 0)
        return [i // c]
    arr = np.asarray(index)
    if arr.dtype == bool:
        arr = np.flatnonzero(arr)
    arr = np.where(arr < 0, arr + n, arr)
    return sorted({int(i) // c for i in arr.ravel()})


def touched_chunks(key: Any, shape: Sequence[int], chunks: Sequence[int]) -> list[Iterable[int]]:
    """Chunk indices per axis that ``array[key]`` reads."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        fill = (slice(None),) * (len(shape) - len(key) + 1)
        key = key[:i] + fill + key[i + 1 :]
    key = tuple(k for k in key if k is not None)
    key = key + (slice(None),) * (len(shape) - len(key))
    return [_axis_chunks(k, n, c) for k, n, c in zip(key, shape, chunks, strict=True)]


def existing_chunk_keys(array_dir: Path) -> set[str]:
    """Keys (``c/0/1/2/3``) of every file under an array directory, listed, not read."""
    out = set()
    array_dir = Path(array_dir)
    for root, _, files in os.walk(array_dir):
        rel = Path(root).relative_to(array_dir)
        for f in files:
            if f != "zarr.json":
                out.add((rel / f).as_posix())
    return out


class CheckedArray:
    """Array-like that reads a zarr array, refusing missing chunks and naming damaged files.

    Parameters
    ----------
    array
        The zarr array.
    store_path
        Directory of the brain store (for messages and chunk files).
    rule
        Which chunks must exist; None reads missing chunks as the fill value (a store whose
        writer has not finished).
    """

    def __init__(self, array, store_path: Path, rule: ChunkRule | None):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.chunks = tuple(array.chunks)
        self.name = array.path
        self.store_path = Path(store_path)
        self.rule = rule

    @property
    def strict(self) -> bool:
        """Whether missing required chunks raise."""
        return self.rule is not None

    def chunk_key(self, coords: Sequence[int]) -> str:
        """The store key of the chunk at chunk-grid ``coords`` (``c/0/0/1/1``)."""
        return self.array.metadata.encode_chunk_key(tuple(int(c) for c in coords))

    def chunk_file(self, coords: Sequence[int]) -> Path:
        """The file of the chunk at chunk-grid ``coords``."""
        return self.store_path / self.name / self.chunk_key(coords)

    def chunk_exists(self, coords: Sequence[int]) -> bool:
        """True when the chunk file at chunk-grid ``coords`` exists."""
        return self.chunk_file(coords).exists()

    def chunk_slices(self, coords: Sequence[int]) -> tuple[slice, ...]:
        """The array region of the chunk at ``coords``."""
        return tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(coords, self.chunks, self.shape, strict=True)
        )

    def missing_error(self, coords: Sequence[int]) -> MissingChunkError:
        """The error for a required chunk that is missing."""
        c = "/".join(map(str, coords))
        return MissingChunkError(
            f"{self.store_path}: chunk {c} of array {self.name} is missing "
            f"({self.chunk_file(coords)}) although the store is marked complete (the chunk "
            "lies inside what it holds): data was lost, e.g. by a truncated copy or a deleted "
            f"file. {RECOVER.format(store=self.store_path)}",
            store=self.store_path,
            array=self.name,
            chunk=tuple(coords),
            file=self.chunk_file(coords),
        )

    def damaged_error(self, coords: Sequence[int], exc: BaseException) -> DamagedStoreError:
        """The error for a chunk file that exists but does not decode."""
        c = "/".join(map(str, coords))
        err = DamagedStoreError(
            f"{self.store_path}: chunk {c} of array {self.name} cannot be decoded "
            f"({self.chunk_file(coords)}: {type(exc).__name__}: {exc}); the file is damaged "
            f"(truncated or overwritten). {RECOVER.format(store=self.store_path)}",
            store=self.store_path,
            array=self.name,
            chunk=tuple(coords),
            file=self.chunk_file(coords),
        )
        err.__cause__ = exc
        return err

    def check_present(self, key: Any) -> None:
        """Raise :class:`MissingChunkError` if ``self[key]`` would read a lost chunk."""
        if self.rule is None:
            return
        for coords in itertools.product(*touched_chunks(key, self.shape, self.chunks)):
            if self.rule.required(coords) and not self.chunk_exists(coords):
                raise self.missing_error(coords)

    def read_chunk(self, coords: Sequence[int]) -> np.ndarray:
        """Read and decode one whole chunk (raising the errors of :meth:`__getitem__`)."""
        return self[self.chunk_slices(coords)]

    def __getitem__(self, key: Any) -> np.ndarray:
        self.check_present(key)
        try:
            return self.array[key]
        except BrainStoreError:
            raise
        except Exception as exc:
            damage = self._locate_damage(key, exc)
            if damage is None:
                raise
            raise damage from exc

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(
            f"{self.store_path}/{self.name} was opened for checked reading; write through "
            "the BrainStore write_* methods"
        )

    def _locate_damage(self, key: Any, exc: Exception) -> DamagedStoreError | None:
        """The chunk of a failed read that does not decode, or None when none fails alone."""
        try:
            touched = touched_chunks(key, self.shape, self.chunks)
        except Exception:  # an index zarr itself refused: not damage
            return None
        for coords in itertools.product(*touched):
            if not self.chunk_exists(coords):
                continue
            try:
                self.array[self.chunk_slices(coords)]
            except Exception as chunk_exc:
                return self.damaged_error(coords, chunk_exc)
        return None
