"""Atomic writes of small files (JSON metadata, manifests).

A reader never sees a half-written file: content goes to a temporary file in the same
directory, is flushed to disk, and replaces the target with :func:`os.replace`. The temporary
file is created with mode ``0o666`` less the umask, like any file ``open()`` creates, so the
result is as readable as every other output (``tempfile.mkstemp`` would make it ``0600``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def create_temporary_sibling(path: str | os.PathLike[str]) -> tuple[int, Path]:
    """Create a new, uniquely named temporary file next to ``path``, honouring the umask.

    Returns
    -------
    tuple
        An open file descriptor (write-only) and the temporary file's path; the caller writes,
        closes and renames it (or removes it on failure).
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp  # the kernel applies the umask
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Parameters
    ----------
    path
        Target file. Its directory must exist.
    data
        The complete new content.
    """
    path = Path(path)
    fd, tmp = create_temporary_sibling(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Serialise ``obj`` as indented JSON and write it atomically to ``path``."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with an error that names the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); the file is corrupt or truncated"
        ) from exc
