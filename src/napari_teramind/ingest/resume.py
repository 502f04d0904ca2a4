"""Per-slice done-records that let an interrupted ingest resume where it stopped.

The record lives in the store directory (``ingest_state.json``) and is replaced atomically
after each slice is fully written, so a slice is either recorded with all its data on disk or
redone on the next run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_teramind.atomic import read_json, write_json_atomic

STATE_FILE = "ingest_state.json"


def fingerprint(config: Mapping[str, Any]) -> str:
    """A stable hash of an ingest configuration (inputs, sizes, dates and options)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: str | Path) -> dict[str, Any]:
    """Path, size and modification time of an input (changes invalidate a resume)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return {"path": str(p), "missing": True}
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


class ResumeState:
    """The done-record of one ingest.

    Parameters
    ----------
    store_path
        The brain store being written.
    config_hash
        :func:`fingerprint` of the ingest's configuration.
    """

    def __init__(self, store_path: str | Path, config_hash: str):
        self.path = Path(store_path) / STATE_FILE
        self.config_hash = config_hash
        self.done: dict[int, dict[str, Any]] = {}

    @classmethod
    def load(cls, store_path: str | Path) -> ResumeState | None:
        """The record saved in ``store_path``, or None when there is none."""
        path = Path(store_path) / STATE_FILE
        if not path.is_file():
            return None
        obj = read_json(path)
        st = cls(store_path, obj.get("config_hash", ""))
        st.done = {int(z): rep for z, rep in obj.get("done", {}).items()}
        return st

    def mark_done(self, z: int, report: dict[str, Any]) -> None:
        """Record slice ``z`` (with its report) as written."""
        self.done[int(z)] = report
        self.save()

    def save(self) -> None:
        """Write the record atomically."""
        write_json_atomic(
            self.path,
            {
                "config_hash": self.config_hash,
                "done": {str(z): r for z, r in sorted(self.done.items())},
            },
        )
