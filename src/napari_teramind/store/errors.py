"""Errors raised by the brain store."""

from __future__ import annotations


class BrainStoreError(ValueError):
    """A brain store is missing, incomplete, of an unknown version, or inconsistent.

    The message always names the problem and, where there is one, the fix.
    """


class MissingChunkError(BrainStoreError):
    """A chunk that must exist (the store, or its covered region, is complete) is missing.

    Attributes
    ----------
    store
        The store directory.
    array
        The array, relative to the store (``images/s0``).
    chunk
        Chunk-grid coordinates of the missing chunk.
    file
        The chunk file that should exist.
    """

    def __init__(self, message: str, *, store, array: str, chunk: tuple[int, ...], file):
        super().__init__(message)
        self.store, self.array, self.chunk, self.file = store, array, tuple(chunk), file


class DamagedStoreError(BrainStoreError):
    """A file of a brain store (a chunk or a ``zarr.json``) exists but cannot be decoded.

    Attributes
    ----------
    store
        The store directory.
    array
        The array or group, relative to the store (``images/s0``).
    chunk
        Chunk-grid coordinates of the damaged chunk, or None for metadata.
    file
        The damaged file.
    """

    def __init__(
        self, message: str, *, store, array: str, file, chunk: tuple[int, ...] | None = None
    ):
        super().__init__(message)
        self.store, self.array, self.file = store, array, file
        self.chunk = None if chunk is None else tuple(chunk)
