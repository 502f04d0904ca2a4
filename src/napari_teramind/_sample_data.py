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

from napari_teramind.userdirs import cache_dir

LayerDataTuple = tuple[Any, dict[str, Any], str]

#: Size of the sample phantom: small enough to write in seconds, large enough to look like tissue.
SAMPLE_SPEC_KWARGS: dict[str, Any] = {"seed": 0, "n_slices": 4, "height": 1024, "width": 1536}

#: Genes added (hidden) to the sample's layers: the GLUT pathway pair.
SAMPLE_GENES = ("Slc17a6", "Slc17a7")


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


#: Layer-name prefix of the sample (the cache directory's name carries a hash of the spec).
SAMPLE_NAME = "phantom brain"

#: Writers started by :func:`make_phantom_brain` (kept referenced until they finish).
_RUNNING: list[Any] = []


def sample_layers(store: BrainStore) -> list[LayerDataTuple]:
    """The sample's layers: stains, region labels (hidden) and the GLUT genes (hidden)."""
    from napari_teramind.layers import brain_layers

    layers = brain_layers(store, genes=SAMPLE_GENES, name=SAMPLE_NAME)
    for _, kwargs, _ in layers:
        if kwargs["metadata"].get("teramind_role") in ("gene", "regions"):
            kwargs["visible"] = False
    return layers


def make_phantom_brain() -> list[LayerDataTuple]:
    """Sample data "Phantom brain": stains, region labels and the GLUT genes (hidden).

    The first call writes a small phantom into the cache; later calls reuse it. In a napari
    window the write runs in a worker thread (napari's activity dock shows it) and the layers
    are added when it is done: napari's sample menu waits for this function, and writing on
    the GUI thread froze the window for 11-45 s. The function then returns one small
    placeholder layer (napari requires layer data), removed when the phantom arrives.
    Without a napari window (scripts) the phantom is written here.
    """
    spec = sample_spec()
    path = phantom_path(spec)
    store = _open_complete(path)
    if store is not None:
        return sample_layers(store)
    viewer = _current_viewer()
    if viewer is None:
        return sample_layers(ensure_phantom(spec))
    return [_write_in_background(viewer, spec, path)]


def _current_viewer() -> Any:
    try:
        import napari
    except ImportError:  # pragma: no cover - used outside napari
        return None
    return napari.current_viewer()


def _write_in_background(viewer: Any, spec: PhantomSpec, path: Path) -> LayerDataTuple:
    """Start writing the phantom in a worker; return the placeholder layer shown meanwhile."""
    import numpy as np
    from napari.qt.threading import create_worker

    placeholder = f"{SAMPLE_NAME} (being written, appears in a few seconds)"

    def done(store: BrainStore) -> None:
        from napari_teramind.widgets._common import add_layer_data

        for layer_data in sample_layers(store):
            add_layer_data(viewer, layer_data)
        if placeholder in viewer.layers:
            viewer.layers.remove(placeholder)
        _notify(f"Phantom brain ready (cached in {path.parent})")

    def failed(exc: BaseException) -> None:
        from napari_teramind.widgets._messages import notify_error

        if placeholder in viewer.layers:
            viewer.layers.remove(placeholder)
        notify_error(f"Could not write the phantom brain to {path}", exc)

    worker = create_worker(
        ensure_phantom, spec, _progress={"total": 0, "desc": "Writing the phantom brain"}
    )
    worker.returned.connect(done)
    worker.errored.connect(failed)
    worker.finished.connect(lambda: _RUNNING.remove(worker) if worker in _RUNNING else None)
    _RUNNING.append(worker)
    _notify(f"Writing the phantom brain (once) to {path.parent} in the background ...")
    worker.start()
    h, w = spec.shape[1:]
    px = spec.pixel_size_um
    return (
        np.zeros((8, 8), np.uint8),
        {
            "name": placeholder,
            "scale": (h * px / 8, w * px / 8),  # spans the section: the view is framed for it
            "units": ("um", "um"),
            "opacity": 0.0,
            "metadata": {"teramind_role": "placeholder"},
        },
        "image",
    )


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # pragma: no cover - used outside napari
        return
    show_info(message)
