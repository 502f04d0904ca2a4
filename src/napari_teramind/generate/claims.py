"""Exclusive claims on job units, safe across processes and machines sharing a filesystem.

A claim on a unit is a small JSON file ``<root>/<key>.<generation>`` naming its owner (host,
process id, worker name, a random token). It is created complete and exclusively with
:func:`os.link` from a fully written temporary file: the link fails when the name exists, so of
two workers racing for a unit exactly one wins, and nobody ever reads a half-written claim.

The owner refreshes the file's modification time (a heartbeat) while it works. A claim whose
owner is known dead (same host, process gone) or whose heartbeat is older than the lease is
*stale*; another worker takes the unit over by creating the next generation, again with an
exclusive link, so two workers taking over the same stale claim cannot both win. A worker whose
claim was taken over notices it (:meth:`Claim.still_held`) and drops the unit before writing.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from napari_teramind.atomic import create_temporary_sibling

#: Default lease: a claim whose heartbeat is older than this (seconds) may be taken over.
DEFAULT_LEASE_S = 300.0

HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host.

    A zombie (dead, not yet reaped by its parent) counts as dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class Owner:
    """Who holds a claim."""

    worker: str
    host: str = HOST
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict:
        """JSON-able record."""
        return {"worker": self.worker, "host": self.host, "pid": self.pid, "token": self.token}


@dataclass
class Claim:
    """A claim held by this process on one unit."""

    path: Path
    owner: Owner

    def heartbeat(self) -> None:
        """Refresh the claim's lease (touch the file) if it is still there."""
        try:
            os.utime(self.path)
        except FileNotFoundError:
            pass

    def still_held(self) -> bool:
        """True while no other worker has taken the unit over (no newer generation exists)."""
        if not self.path.exists():
            return False
        key, gen = _split(self.path.name)
        return _max_generation(self.path.parent, key) == gen

    def release(self) -> None:
        """Remove the claim (after the unit's result and done marker are written)."""
        self.path.unlink(missing_ok=True)


def _split(name: str) -> tuple[str, int]:
    key, _, gen = name.rpartition(".")
    return key, int(gen)


def _generations(directory: Path, key: str) -> list[int]:
    gens = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return gens
    prefix = key + "."
    for name in names:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            gens.append(int(name[len(prefix) :]))
    return gens


def _max_generation(directory: Path, key: str) -> int | None:
    gens = _generations(directory, key)
    return max(gens) if gens else None


def _link_exclusive(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` if it does not exist; True when this call created it."""
    fd, tmp = create_temporary_sibling(path)  # readable by other users' workers (umask)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def claim_info(path: Path) -> dict | None:
    """The owner record and heartbeat age of a claim file, or None when it vanished."""
    try:
        st = path.stat()
        info = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    info["age_s"] = max(0.0, time.time() - st.st_mtime)
    return info


def is_stale(info: dict | None, lease_s: float) -> bool:
    """Whether a claim (as read by :func:`claim_info`) may be taken over."""
    if info is None:
        return True
    if info.get("host") == HOST and not pid_alive(int(info.get("pid", -1))):
        return True
    return info["age_s"] > lease_s


class ClaimBoard:
    """All claims of one job, in a directory shared by every worker.

    Parameters
    ----------
    root
        The job's ``claims/`` directory.
    lease_s
        Seconds without heartbeat after which a claim is stale.
    """

    def __init__(self, root: str | os.PathLike[str], lease_s: float = DEFAULT_LEASE_S):
        self.root = Path(root)
        self.lease_s = float(lease_s)

    def _dir_and_key(self, key: str) -> tuple[Path, str]:
        sub, _, name = key.rpartition("/")
        directory = self.root / sub if sub else self.root
        return directory, name

    def current(self, key: str) -> dict | None:
        """The record of the live generation of ``key``'s claim, or None when unclaimed."""
        directory, name = self._dir_and_key(key)
        gen = _max_generation(directory, name)
        if gen is None:
            return None
        return claim_info(directory / f"{name}.{gen}")

    def try_claim(self, key: str, owner: Owner) -> Claim | None:
        """Claim ``key`` for ``owner``; None when a live worker holds it.

        A stale claim (dead owner or expired lease) is taken over by creating the next
        generation exclusively; of several workers trying, exactly one succeeds.
        """
        directory, name = self._dir_and_key(key)
        directory.mkdir(parents=True, exist_ok=True)
        gen = _max_generation(directory, name)
        if gen is None:
            new = 0
        else:
            if not is_stale(claim_info(directory / f"{name}.{gen}"), self.lease_s):
                return None
            new = gen + 1
        path = directory / f"{name}.{new}"
        record = dict(owner.to_dict(), claimed=time.time())
        if not _link_exclusive(path, json.dumps(record).encode()):
            return None
        for old in _generations(directory, name):
            if old < new:
                (directory / f"{name}.{old}").unlink(missing_ok=True)
        return Claim(path, owner)

    def live_claims(self) -> list[dict]:
        """Records of all claims currently held by live (not stale) owners."""
        out = []
        if not self.root.exists():
            return out
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                info = claim_info(path)
                if info is not None and not is_stale(info, self.lease_s):
                    info["key"] = str(path.relative_to(self.root))
                    out.append(info)
        return out


@contextmanager
def heartbeat(claim: Claim, every_s: float) -> Iterator[Claim]:
    """Keep ``claim`` fresh from a background thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            claim.heartbeat()

    thread = threading.Thread(target=beat, name="teramind-claim-heartbeat", daemon=True)
    thread.start()
    try:
        yield claim
    finally:
        stop.set()
        thread.join()
