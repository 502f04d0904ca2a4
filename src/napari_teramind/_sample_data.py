"""npe2 sample data: "Phantom brain", generated offline once and cached per user.

The phantom is written to ``$TERAMIND_CACHE`` (default: the per-user cache folder that
platformdirs names, e.g. ``~/.cache/napari-teramind`` on Linux,
``~/Library/Caches/napari-teramind`` on macOS) under a name that encodes its spec, and
reused while it is complete. It is written to a temporary sibling directory and renamed into
place, so an interrupted or concurrent generation never leaves a half-written store under the
final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from napari_teramind.phantom import PhantomSpec
    from napari_teramind.store import BrainStore

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Application name of the per-user folders (platformdirs).
APP_NAME = "napari-teramind"

#: Size of the sample phantom: small enough to write in seconds, large enough to look like tissue.
SAMPLE_SPEC_KWARGS: dict[str, Any] = {"seed": 0, "n_slices": 4, "height": 1024, "width": 1536}

#: Genes added (hidden) to the sample's layers: the GLUT pathway pair.
SAMPLE_GENES = ("Slc17a6", "Slc17a7")


def cache_dir() -> Path:
    """Per-user cache directory of napari-teramind (created on demand by the writers).

    ``$TERAMIND_CACHE`` when set, else platformdirs' user cache folder of the application
    (which follows ``$XDG_CACHE_HOME`` on Linux).
    """
    env = os.environ.get("TERAMIND_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path(APP_NAME, appauthor=False)


def sample_spec(**overrides: Any) -> PhantomSpec:
    """The spec of the sample phantom (``SAMPLE_SPEC_KWARGS`` with ``overrides``)."""
    from napari_teramind.phantom import PhantomSpec

    return PhantomSpec(**{**SAMPLE_SPEC_KWARGS, **overrides})


def phantom_path(spec: PhantomSpec, root: Path | None = None) -> Path:
    """Cache path of the phantom of ``spec``: the name encodes a hash of the spec."""
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()
    z, h, w = spec.shape
    return (root or cache_dir()) / f"phantom-brain-{z}x{h}x{w}-{digest[:12]}.zarr"


def _open_complete(path: Path) -> BrainStore | None:
    from napari_teramind.store import BrainStore

    if not path.exists():
        return None
    try:
        store = BrainStore.open(path)
    except Exception:  # incomplete, truncated or foreign: regenerate
        return None
    return store if store.complete else None


def ensure_phantom(spec: PhantomSpec | None = None, root: Path | None = None) -> BrainStore:
    """Open the cached phantom of ``spec``, writing it first when it is missing or incomplete.

    Parameters
    ----------
    spec
        The phantom to make; :func:`sample_spec` by default.
    root
        Cache directory; :func:`cache_dir` by default.
    """
    from napari_teramind.phantom import write_phantom
    from napari_teramind.store import BrainStore

    spec = spec or sample_spec()
    path = phantom_path(spec, root)
    store = _open_complete(path)
    if store is not None:
        return store
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # in-process: a process pool would re-import napari in every worker for a few chunks
        write_phantom(tmp, spec=spec, workers=1)
        if path.exists():  # an incomplete leftover, or a concurrent writer finished first
            if _open_complete(path) is not None:
                return BrainStore.open(path)
            shutil.rmtree(path, ignore_errors=True)
        try:
            os.replace(tmp, path)
        except OSError:  # a concurrent writer won the rename
            if _open_complete(path) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BrainStore.open(path)


def make_phantom_brain() -> list[LayerDataTuple]:
    """Sample data "Phantom brain": stains, region labels and the GLUT genes (hidden).

    The first call writes a small phantom (a few seconds) into the cache; later calls reuse it.
    """
    from napari_teramind.layers import brain_layers

    spec = sample_spec()
    if _open_complete(phantom_path(spec)) is None:
        _notify(f"Writing the phantom brain (once) to {phantom_path(spec)} ...")
    store = ensure_phantom(spec)
    layers = brain_layers(store, genes=SAMPLE_GENES)
    for _, kwargs, _ in layers:
        if kwargs["metadata"].get("teramind_role") == "gene":
            kwargs["visible"] = False
    return layers


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover - used outside napari
        return
    show_info(message)
