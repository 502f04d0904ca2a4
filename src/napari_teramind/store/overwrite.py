"""What a writer may replace: the one check every ``overwrite`` goes through.

A writer (``BrainStore.create``, ``create_job``, the ingest pipeline, the phantom writer, the
demo) asks :func:`check_replaceable` before it writes to a path, and removes what is there with
:func:`discard` only after the check passed. The rules (also in ``docs/reliability.md``):

- Nothing is written to, or replaced at, a path that is an input of the same command, or a parent
  or a child of one (symbolic links resolved): the source store of a generation, its checkpoint,
  the tables, images and directories of an ingest.
- Overwrite replaces only what this project wrote and recognises, of the kind the writer makes:
  a generation job directory, or a brain store of the writer's kind (``generated`` for
  generation, ``phantom`` for the phantom writer, ``real`` for ingest). Never a plain file, a
  directory this project did not write, or a brain store of another kind.
- Without overwrite an existing target is refused, and the message suggests overwrite only when
  overwrite would be allowed.
- An empty directory holds nothing to lose and is always usable.
- Removal renames the target aside (one atomic rename) before deleting it, so a crash part-way
  never leaves a half-deleted store or job that reads as valid.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import OverwriteRefused

#: The file that makes a directory a generation job (see ``generate/job.py``).
JOB_SPEC_FILE = "spec.json"
#: Prefix of a target renamed aside while it is deleted.
DISCARD_PREFIX = ".teramind-discard-"

#: What each recognised kind is called in messages.
KIND_NAMES = {
    "job": "a generation job directory",
    "real": "an ingested (real) brain store",
    "generated": "a generated brain store",
    "phantom": "a phantom brain store",
}

#: An input of a command: ``(what it is, path)``, e.g. ``("source store", "brain.zarr")``.
Input = tuple[str, "str | os.PathLike[str] | None"]


@dataclass(frozen=True)
class Found:
    """What is at a path, as far as overwriting is concerned.

    Attributes
    ----------
    path
        The path looked at.
    kind
        ``"missing"``, ``"empty"`` (an empty directory), ``"file"``, ``"other"`` (a directory
        this project did not write or does not recognise), ``"job"``, or the kind of a brain
        store: ``"real"``, ``"generated"``, ``"phantom"``.
    detail
        A few words on what is there (for messages).
    """

    path: Path
    kind: str
    detail: str = ""

    @property
    def exists(self) -> bool:
        """Whether something (other than nothing or an empty directory) is there."""
        return self.kind not in ("missing", "empty")

    def describe(self) -> str:
        """What is there, in words (``"a phantom brain store"``)."""
        if self.kind in KIND_NAMES:
            return KIND_NAMES[self.kind] + (f" ({self.detail})" if self.detail else "")
        text = {
            "missing": "nothing",
            "empty": "an empty directory",
            "file": "a file, not a directory",
            "other": "a directory that napari-teramind did not write",
        }[self.kind]
        return text + (f" ({self.detail})" if self.detail else "")


def identify(path: str | os.PathLike[str]) -> Found:
    """Look at ``path`` and say what it is (reads at most two small JSON files).

    A brain store is recognised by its ``zarr.json`` carrying napari-teramind metadata, whatever
    its completeness (an interrupted writer's store is still this project's); a job directory by
    a ``spec.json`` with a job's fields.
    """
    from .brainstore import FORMAT_NAME

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return Found(path, "missing")
    if not path.is_dir():
        return Found(path, "file")
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return Found(path, "other", f"it cannot be listed: {exc.strerror}")
    if not names:
        return Found(path, "empty")
    group = _read_json(path / "zarr.json")
    meta = (group or {}).get("attributes", {}).get("teramind") if isinstance(group, dict) else None
    if isinstance(meta, dict) and meta.get("format") == FORMAT_NAME:
        kind = meta.get("kind")
        state = "complete" if meta.get("complete") else "incomplete"
        if kind in KIND_NAMES and kind != "job":
            return Found(path, kind, state)
        return Found(path, "other", f"a brain store of unknown kind {kind!r}")
    spec = _read_json(path / JOB_SPEC_FILE)
    if isinstance(spec, dict) and {"source", "output", "plan", "format"} <= set(spec):
        return Found(path, "job", f"output {spec.get('output')}")
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    if group is not None:
        return Found(path, "other", f"a zarr group that is not a brain store; holds {shown}")
    return Found(path, "other", f"holds {shown}")


def _read_json(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _relation(target: Path, other: Path) -> str | None:
    """How resolved ``target`` relates to resolved ``other``: same, parent, child or None."""
    if target == other:
        return "is"
    if target in other.parents:
        return "contains"
    if other in target.parents:
        return "lies inside"
    return None


def check_inputs(
    target: str | os.PathLike[str], inputs: Iterable[Input], role: str = "output"
) -> None:
    """Refuse a ``target`` that is an input, or a parent or a child of one.

    Parameters
    ----------
    target
        Where the command will write.
    inputs
        ``(what, path)`` pairs of everything the command reads; ``None`` paths are skipped.
    role
        What the target is, for the message (``"output store"``, ``"job directory"``).

    Raises
    ------
    OverwriteRefused
        Naming the input and what to do.
    """
    t = Path(target).resolve()
    for what, p in inputs:
        if p is None:
            continue
        src = Path(p).resolve()
        rel = _relation(t, src)
        if rel is None:
            continue
        raise OverwriteRefused(
            f"refusing to write the {role} {target}: it {rel} the {what} {p} that this "
            f"command reads, and writing there would destroy or corrupt it. Choose another {role} "
            f"path, outside the {what}."
        )


def check_replaceable(
    target: str | os.PathLike[str],
    *,
    replaces: Collection[str],
    overwrite: bool,
    inputs: Iterable[Input] = (),
    role: str = "output",
    reuse: bool = False,
    hint: str = "",
) -> Found:
    """Check that a writer may write at ``target``; the one rule every overwrite follows.

    Parameters
    ----------
    target
        Where the writer will write.
    replaces
        Kinds this writer writes and may replace (``"job"``, ``"real"``, ``"generated"``,
        ``"phantom"``).
    overwrite
        Whether the caller asked to replace what is there.
    inputs
        ``(what, path)`` pairs the writer reads (see :func:`check_inputs`); checked always,
        also without ``overwrite`` and when nothing is at ``target`` yet.
    role
        What the target is, for messages.
    reuse
        Without ``overwrite``, accept an existing target of a kind in ``replaces`` (the caller
        resumes or adds to it); otherwise such a target is refused.
    hint
        Extra advice appended to the refusal of an existing target of the right kind (e.g.
        "continue it with --resume").

    Returns
    -------
    Found
        What is at ``target``. When ``found.exists`` and ``overwrite`` the caller replaces it
        with :func:`discard`; when ``found.exists`` and not ``overwrite`` (``reuse``), it adds
        to it.

    Raises
    ------
    OverwriteRefused
        What is there, why it is not replaced, and what to do.
    """
    check_inputs(target, inputs, role)
    found = identify(target)
    if not found.exists:
        return found
    ours = found.kind in replaces
    if not overwrite:
        if ours and reuse:
            return found
        if ours:
            raise OverwriteRefused(
                f"the {role} {target} already exists: it is {found.describe()}"
                f"{'; ' + hint if hint else ''}. Pass overwrite=True (--overwrite) to replace "
                f"it, or choose another {role}."
            )
        raise OverwriteRefused(
            f"the {role} {target} already exists and is {found.describe()}; napari-teramind "
            f"will not replace it (overwrite only replaces {_kinds(replaces)}). Choose another "
            f"{role}, or move it away yourself."
        )
    if not ours:
        raise OverwriteRefused(
            f"refusing to overwrite the {role} {target}: it is {found.describe()}, and overwrite "
            f"only replaces {_kinds(replaces)}. Choose another {role}, or move it away yourself."
        )
    if Path(target).is_symlink():
        raise OverwriteRefused(
            f"refusing to overwrite the {role} {target}: it is a symbolic link to "
            f"{Path(target).resolve()}; give that path itself to replace it."
        )
    return found


def _kinds(kinds: Collection[str]) -> str:
    names = [KIND_NAMES[k] for k in kinds if k in KIND_NAMES]
    return " or ".join(names) if names else "nothing"


def discard(path: str | os.PathLike[str]) -> None:
    """Remove a directory that :func:`check_replaceable` accepted, crash-safely.

    The directory is first renamed to a hidden sibling (one atomic rename), then deleted: a
    crash during the deletion leaves a ``.teramind-discard-*`` directory, never a half-deleted
    store or job at ``path`` that could be read as valid. Leftovers of earlier crashes next to
    ``path`` are removed too. Call this only after the check passed.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir() or path.is_symlink():
        raise OverwriteRefused(f"{path} is not a directory; napari-teramind removes only its own")
    parent = path.parent
    aside = parent / f"{DISCARD_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, aside)
    for old in parent.glob(f"{DISCARD_PREFIX}{path.name}-*"):
        shutil.rmtree(old, ignore_errors=old != aside)


def prepare_target(
    target: str | os.PathLike[str],
    *,
    replaces: Collection[str],
    overwrite: bool,
    inputs: Iterable[Input] = (),
    role: str = "output",
    hint: str = "",
) -> Found:
    """:func:`check_replaceable`, then :func:`discard` what may be replaced (the usual pair).

    Returns what was at ``target`` before; afterwards nothing (or an empty directory) is there.
    """
    found = check_replaceable(
        target, replaces=replaces, overwrite=overwrite, inputs=inputs, role=role, hint=hint
    )
    if found.exists:
        discard(target)
    return found
