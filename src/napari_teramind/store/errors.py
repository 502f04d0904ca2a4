"""Errors raised by the brain store and the other writers, and how to explain an OSError."""

from __future__ import annotations

import errno


class BrainStoreError(ValueError):
    """A brain store is missing, incomplete, of an unknown version, or inconsistent.

    The message always names the problem and, where there is one, the fix.
    """


class OverwriteRefused(FileExistsError):
    """A writer refused to write at a path: it is an input, or holds something not to replace.

    Raised by :func:`napari_teramind.store.overwrite.check_replaceable`; the message says what
    is there and what to do.
    """


class NotEnoughSpace(OSError):
    """A job or writer was refused before it started: the disk lacks room for its output."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


#: errno values that mean "the disk is full".
FULL_DISK = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: errno values that mean "this place cannot be written".
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


#: What to do once the cause of a failed write is fixed, unless the caller knows better.
THEN_RUN_AGAIN = (
    "then run the same command again (an interrupted ingest resumes where it stopped, a "
    "generation job continues with `teramind generate --resume JOB_DIR`, other writers replace "
    "the incomplete output they left with --overwrite)"
)


def explain_os_error(exc: OSError, then: str = THEN_RUN_AGAIN) -> tuple[str, bool]:
    """One line saying what an OSError from a write means and what to do.

    Parameters
    ----------
    exc
        The error (``filename`` is used when set).
    then
        What to do once the cause is fixed (e.g. how to resume).

    Returns
    -------
    message, user_error
        The line, and whether the user must change the command (a read-only or forbidden
        output) rather than the run having failed (a full disk, another I/O error).
    """
    if isinstance(exc, NotEnoughSpace):
        return str(exc), True
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in FULL_DISK:
        return (
            f"the disk is full: writing{where} failed (no space left on device). Free space or "
            f"write to another disk, {then}.",
            False,
        )
    if exc.errno in NOT_WRITABLE:
        reason = {errno.EROFS: "the file system is read-only"}.get(
            exc.errno, "permission denied (not writable by this user, or immutable)"
        )
        return (
            f"cannot write{where}: {reason}. Choose an output (--out, --job-dir, -o) in a "
            f"directory you can write to, or make it writable and {then.removeprefix('then ')}.",
            True,
        )
    reason = exc.strerror or str(exc)
    return f"{reason}{':' + where if where else ''}", False


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
