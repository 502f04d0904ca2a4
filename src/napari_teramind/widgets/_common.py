"""Infrastructure shared by every napari-teramind widget (one place, no copy-paste).

- :class:`TaskPanel`: runs a library generator in a napari ``thread_worker`` with a progress
  bar (in the widget and in napari's activity dock), a Cancel button, errors as napari
  notifications, and results handed to callbacks on the GUI thread only.
- :class:`DevicePicker`: ``cpu``, each ``cuda:i`` (name, free memory) and ``mps``; its default
  is the ``device`` setting.
- :class:`ModelPicker`: the bundled model, a checkpoint file/directory or a published
  checkpoint, resolved by :func:`napari_teramind.model.resolve_model` (in the worker).
- Settings that persist between sessions: napari's plugin settings (the manifest's
  ``configurations``; napari >= 0.9 shows them under Preferences and keeps them next to its own
  settings). With an older napari, or when ``$TERAMIND_SETTINGS`` names a file, a small JSON
  file instead (``settings.json`` in platformdirs' user config folder of napari-teramind,
  e.g. ``~/.config/napari-teramind`` on Linux, by default).
- Slice shortcuts: :func:`bind_slice_keys` (``PageDown``/``PageUp``), shared with Browse.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_teramind.selection import parse_slices

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Keyboard shortcuts for the next / previous slice, bound on the viewer.
NEXT_SLICE_KEY = "PageDown"
PREVIOUS_SLICE_KEY = "PageUp"

#: Environment variable naming a JSON settings file, used instead of napari's plugin settings
#: (tests point it into a temporary directory).
SETTINGS_ENV = "TERAMIND_SETTINGS"
#: The plugin's name and the key of its widget settings in the manifest's ``configurations``.
PLUGIN_NAME = "napari-teramind"
SETTINGS_SECTION = "widgets"

#: Defaults of every setting (the same as the manifest's); a settings file only stores what
#: differs from these.
DEFAULT_SETTINGS: dict[str, Any] = {
    "device": "cpu",
    "model": "bundled",
    "model_path": "",
    "steps": 15,
    "seed": 0,
    "block_px": 256,
    "jobs_root": "",
    "scheduler": "",
}


# ---------------------------------------------------------------------- notifications
def notify_info(message: str) -> None:
    """Show ``message`` as a napari info notification."""
    from napari.utils.notifications import show_info

    show_info(message)


def notify_error(message: str, exc: BaseException | None = None) -> None:
    """Show ``message`` (and the cause ``exc``) as a napari error notification."""
    from napari.utils.notifications import show_error

    if exc is not None:
        message = f"{message}: {type(exc).__name__}: {exc}"
    show_error(message)


# ---------------------------------------------------------------------- settings
def napari_settings() -> Any | None:
    """The plugin's section of napari's plugin settings, or None where the JSON file is used.

    None when ``$TERAMIND_SETTINGS`` names a file, when napari predates plugin settings
    (``napari.settings.get_plugin_settings``, napari 0.9), or when npe2 does not know the
    plugin (not installed).
    """
    if os.environ.get(SETTINGS_ENV):
        return None
    try:
        from napari.settings import get_plugin_settings
    except ImportError:
        return None
    try:
        return getattr(get_plugin_settings(PLUGIN_NAME), SETTINGS_SECTION)
    except (KeyError, AttributeError):
        return None


def settings_path() -> Path:
    """The file the settings live in: napari's plugin settings file or the JSON file."""
    env = os.environ.get(SETTINGS_ENV)
    if env:
        return Path(env).expanduser()
    if napari_settings() is not None:
        from napari.settings import get_plugin_settings

        path = get_plugin_settings(PLUGIN_NAME).config_path
        if isinstance(path, str | os.PathLike):
            return Path(path)
    from platformdirs import user_config_path

    return user_config_path(PLUGIN_NAME, appauthor=False) / "settings.json"


def load_settings() -> dict[str, Any]:
    """All settings: the defaults updated by what was saved (a broken JSON file is ignored)."""
    from napari_teramind.atomic import read_json

    values = dict(DEFAULT_SETTINGS)
    section = napari_settings()
    if section is not None:
        stored = section.model_dump()
        values.update({k: v for k, v in stored.items() if k in DEFAULT_SETTINGS})
        return values
    path = settings_path()
    if path.is_file():
        try:
            stored = read_json(path)
        except (OSError, ValueError):
            return values
        if isinstance(stored, dict):
            values.update(stored)
    return values


def get_setting(key: str) -> Any:
    """One setting (its default when never saved)."""
    return load_settings().get(key, DEFAULT_SETTINGS.get(key))


def save_settings(**values: Any) -> None:
    """Persist ``values`` (napari's plugin settings, or merged into the JSON file).

    napari saves its plugin settings file on every change; the JSON file is written atomically.

    Raises
    ------
    ValueError
        For a key that is not a setting, or (napari settings) a value the manifest's schema
        refuses.
    """
    from napari_teramind.atomic import write_json_atomic

    unknown = sorted(set(values) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
    section = napari_settings()
    if section is not None:
        for key, value in values.items():
            setattr(section, key, value)
        return
    path = settings_path()
    current = load_settings()
    current.update(values)
    stored = {k: v for k, v in current.items() if DEFAULT_SETTINGS.get(k, object()) != v}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, stored)


# ---------------------------------------------------------------------- devices
@dataclass(frozen=True)
class DeviceInfo:
    """A compute device: torch name (``cpu``, ``cuda:1``, ``mps``) and a label for users."""

    name: str
    label: str


def available_devices() -> list[DeviceInfo]:
    """``cpu``, each visible CUDA device (name, free/total memory) and ``mps`` when present."""
    out = [DeviceInfo("cpu", "cpu")]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return out
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            name = torch.cuda.get_device_name(i)
            try:
                free, total = torch.cuda.mem_get_info(i)
                memory = f", {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
            except RuntimeError:
                memory = ""
            out.append(DeviceInfo(f"cuda:{i}", f"cuda:{i} ({name}{memory})"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(DeviceInfo("mps", "mps (Apple GPU)"))
    return out


class DevicePicker(QComboBox):
    """Combo box of the compute devices; the default (and the last choice) is a setting."""

    def __init__(self, parent: QWidget | None = None, setting: str = "device"):
        super().__init__(parent)
        self._setting = setting
        self.refresh()
        self.setToolTip(
            "Device the model runs on: cpu, each CUDA GPU (with its free memory) or mps. "
            "The choice is remembered between sessions"
        )
        self.currentIndexChanged.connect(self._remember)

    def refresh(self) -> None:
        """Re-list the devices (free memory changes), keeping the current choice."""
        wanted = self.device() if self.count() else str(get_setting(self._setting))
        self.blockSignals(True)
        self.clear()
        for info in available_devices():
            self.addItem(info.label, info.name)
        index = self.findData(wanted)
        self.setCurrentIndex(max(index, 0))
        self.blockSignals(False)

    def device(self) -> str:
        """The chosen torch device name."""
        return str(self.currentData() or "cpu")

    def set_device(self, name: str) -> None:
        """Choose device ``name`` (``ValueError`` when it is not available here)."""
        index = self.findData(name)
        if index < 0:
            names = [self.itemData(i) for i in range(self.count())]
            raise ValueError(f"device {name!r} is not available here; choose one of {names}")
        self.setCurrentIndex(index)

    def _remember(self, _index: int) -> None:
        save_settings(**{self._setting: self.device()})


# ---------------------------------------------------------------------- models
MODEL_SOURCES = ("bundled", "checkpoint", "published")


def load_model(spec: str | None, device: str = "cpu") -> tuple[Any, Any]:
    """The model of ``spec`` (``None``: bundled) on ``device``, cached per process.

    Delegates to :func:`napari_teramind.generate.devices.load_model` (the engine's cache, so a
    model the widgets loaded is not loaded again by an in-process job). Call it in a worker.
    """
    from napari_teramind.generate.devices import load_model as engine_load_model

    return engine_load_model("bundled" if spec in (None, "bundled") else str(spec), device)


class ModelPicker(QWidget):
    """The model to use: bundled, a native checkpoint, or a published ``.ckpt`` (imported)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.source = QComboBox()
        self.source.addItems(MODEL_SOURCES)
        self.source.setToolTip(
            "bundled: the small model shipped with the plugin (offline demo); checkpoint: a "
            "napari-teramind checkpoint file or directory; published: a Tera-MIND .ckpt "
            "(imported safely, never unpickled)"
        )
        self.path = QLineEdit()
        self.path.setPlaceholderText("path/to/checkpoint")
        self.path.setToolTip("Checkpoint file or directory (not used for the bundled model)")
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a checkpoint file")
        layout.addWidget(self.source)
        layout.addWidget(self.path, 1)
        layout.addWidget(self.browse)
        source = str(get_setting("model"))
        self.source.setCurrentText(source if source in MODEL_SOURCES else "bundled")
        self.path.setText(str(get_setting("model_path")))
        self._sync()
        self.source.currentTextChanged.connect(lambda _: self._changed())
        self.path.editingFinished.connect(self._changed)
        self.browse.clicked.connect(self._choose)

    def _sync(self) -> None:
        custom = self.source.currentText() != "bundled"
        self.path.setEnabled(custom)
        self.browse.setEnabled(custom)

    def _changed(self) -> None:
        self._sync()
        save_settings(model=self.source.currentText(), model_path=self.path.text().strip())

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint")
        if path:
            self.path.setText(path)
            self._changed()

    def spec(self) -> str | None:
        """What :func:`resolve_model` takes: ``None`` for bundled, else the checkpoint path."""
        if self.source.currentText() == "bundled":
            return None
        text = self.path.text().strip()
        if not text:
            raise ValueError(
                f"no checkpoint path given for a {self.source.currentText()} model; type or "
                "choose one, or pick 'bundled'"
            )
        return text


# ---------------------------------------------------------------------- slices
def bind_slice_keys(viewer: napari.viewer.Viewer, step: Callable[[int], None]) -> None:
    """Bind ``PageDown``/``PageUp`` on ``viewer`` to ``step(+1)``/``step(-1)``.

    ``step`` is held weakly when it is a bound method, so a closed widget does not leak.
    """
    ref: Callable[[], Callable[[int], None] | None]
    if hasattr(step, "__self__"):
        ref = weakref.WeakMethod(step)  # type: ignore[arg-type]
    else:

        def ref() -> Callable[[int], None]:
            return step

    def stepper(delta: int):
        def bound(_viewer: Any) -> None:
            fn = ref()
            if fn is not None:
                try:
                    fn(delta)
                except RuntimeError:  # the Qt widget was deleted
                    pass

        bound.__doc__ = "Next slice" if delta > 0 else "Previous slice"
        return bound

    viewer.bind_key(NEXT_SLICE_KEY, stepper(1), overwrite=True)
    viewer.bind_key(PREVIOUS_SLICE_KEY, stepper(-1), overwrite=True)


def current_slice(viewer: napari.viewer.Viewer, store: Any) -> int:
    """Index of the section of ``store`` the viewer shows (0 for 2D views)."""
    if viewer.dims.ndim < 3:
        return 0
    z0, dz = slice_origin(store)
    k = round((float(viewer.dims.point[0]) - z0) / dz)
    return int(min(max(k, 0), store.n_slices - 1))


def slice_origin(store: Any) -> tuple[float, float]:
    """World z (micrometres) of slice 0 of ``store`` and the spacing between slices."""
    level = store.levels("images")[0]
    return float(level.translation[1]), float(level.scale[1])


def show_slice(viewer: napari.viewer.Viewer, store: Any, k: int) -> None:
    """Move the viewer to slice ``k`` of ``store`` (clipped to its slices)."""
    if viewer.dims.ndim < 3:
        return
    z0, dz = slice_origin(store)
    viewer.dims.set_point(0, z0 + min(max(k, 0), store.n_slices - 1) * dz)


# ---------------------------------------------------------------------- stores
def stores_in_viewer(viewer: napari.viewer.Viewer) -> list[str]:
    """Paths of the brain stores shown in ``viewer`` (from its layers' metadata), in order."""
    from napari_teramind.layers import STORE_KEY

    out: list[str] = []
    for layer in viewer.layers:
        path = (getattr(layer, "metadata", None) or {}).get(STORE_KEY)
        if path and path not in out:
            out.append(path)
    return out


class StorePicker(QWidget):
    """A brain store path (typed, chosen, or taken from the layers already in the viewer)."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer | None = None,
        parent: QWidget | None = None,
        what: str = "real brain store",
        kind: str | None = "real",
    ):
        super().__init__(parent)
        self._what = what
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("path/to/brain.zarr")
        self.edit.setToolTip(
            f"Directory of the {what} (a .zarr written by napari-teramind); filled in from the "
            "layers already open in the viewer"
        )
        self.button = QToolButton()
        self.button.setText("…")
        self.button.setToolTip(f"Choose the {what} directory")
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)
        self.button.clicked.connect(self._choose)
        if viewer is not None:
            self.adopt(viewer, kind)

    def adopt(self, viewer: napari.viewer.Viewer, kind: str | None = "real") -> None:
        """Fill in the first store of ``kind`` shown in ``viewer`` (when the field is empty).

        ``kind="real"`` takes any store that is not generated (real data or a phantom).
        """
        if self.edit.text().strip():
            return
        for path in stores_in_viewer(viewer):
            layer_kinds = {
                (layer.metadata or {}).get("teramind_kind")
                for layer in viewer.layers
                if (layer.metadata or {}).get("teramind_store") == path
            }
            real = kind == "real" and layer_kinds - {"generated"}
            if kind is None or kind in layer_kinds or real:
                self.edit.setText(path)
                return

    def _choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, f"Choose the {self._what}")
        if path:
            self.edit.setText(path)

    def path(self) -> str:
        """The path typed (``ValueError`` naming the fix when empty)."""
        text = self.edit.text().strip()
        if not text:
            raise ValueError(f"no {self._what} given; type its path or open it in napari first")
        return text

    def open(self, mode: str = "r") -> Any:
        """Open the store (``BrainStore.open``; its errors name the problem)."""
        from napari_teramind.store import BrainStore

        return BrainStore.open(self.path(), mode=mode)


# ---------------------------------------------------------------------- workers
def _closing_worker_class():
    from napari.qt.threading import GeneratorWorker

    class ClosingGeneratorWorker(GeneratorWorker):
        """A generator worker that closes its generator in the worker thread when it stops.

        napari's worker only stops iterating on ``quit()``; closing the generator here raises
        ``GeneratorExit`` at its last ``yield`` (in this thread), so the library cleans up.
        """

        def work(self):
            try:
                return super().work()
            finally:
                self._gen.close()

    return ClosingGeneratorWorker


@dataclass
class Progress:
    """What a task's progress bar shows: ``done`` of ``total`` units and a line of text."""

    done: int
    total: int
    text: str = ""


def default_progress(item: Any) -> Progress:
    """Progress of a library progress object (``units_done``/``units_total`` or ``done``/...)."""
    for done, total in (("units_done", "units_total"), ("done", "total"), ("step", "n_steps")):
        if hasattr(item, done) and hasattr(item, total):
            return Progress(int(getattr(item, done)), int(getattr(item, total)), "")
    return Progress(0, 0, "")


class TaskPanel(QWidget):
    """A progress bar, a status line and a Cancel button that run one generator at a time.

    Call :meth:`run` with a library generator function and its arguments (collected on the
    GUI thread). Each yielded item moves the bar (and napari's activity dock) and is passed
    to ``on_yielded``; the return value goes to ``on_returned``. Both run on the GUI thread,
    so they may change layers. Errors become napari notifications naming the cause.
    """

    def __init__(self, parent: QWidget | None = None, name: str = "task"):
        super().__init__(parent)
        self.name = name
        self.worker: Any = None
        self._pbar: Any = None
        self.last_error: BaseException | None = None
        self.state = "idle"  # idle, running, done, cancelled, failed
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setToolTip(f"Progress of the running {name}")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip(
            f"Stop the running {name} cleanly at its next step (what is done stays written)"
        )
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setToolTip(f"State of the last {name}")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether a task is running."""
        return self.worker is not None

    def run(
        self,
        func: Callable[..., Iterator[Any]],
        *args: Any,
        progress: Callable[[Any], Progress] = default_progress,
        on_yielded: Callable[[Any], None] | None = None,
        on_returned: Callable[[Any], None] | None = None,
        on_finished: Callable[[str], None] | None = None,
        desc: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run generator function ``func(*args, **kwargs)`` in a worker thread.

        Returns
        -------
        napari.qt.threading.GeneratorWorker
            The started worker (``None`` when a task is already running).
        """
        from napari.qt.threading import create_worker
        from napari.utils import progress as napari_progress

        if self.running:
            notify_info(f"A {self.name} is already running; cancel it first")
            return None
        desc = desc or self.name
        worker = create_worker(
            func, *args, _worker_class=_closing_worker_class(), _ignore_errors=True, **kwargs
        )
        self.worker = worker
        self.last_error = None
        self.state = "running"
        self._pbar = napari_progress(total=0, desc=desc)
        self.bar.setRange(0, 0)
        self.status.setText(f"{desc}: starting…")
        self.cancel_button.setEnabled(True)

        def yielded(item: Any) -> None:
            p = progress(item)
            if p.total > 0:
                self.bar.setRange(0, p.total)
                self.bar.setValue(min(p.done, p.total))
                if self._pbar is not None:
                    self._pbar.total = p.total
                    self._pbar.update(p.done - self._pbar.n)
            line = p.text or (f"{p.done} / {p.total}" if p.total else "working…")
            self.status.setText(f"{desc}: {line}")
            if on_yielded is not None:
                self._guard(on_yielded, item, desc)

        def returned(value: Any) -> None:
            self.state = "done"
            self.status.setText(f"{desc}: done")
            if on_returned is not None:
                self._guard(on_returned, value, desc)

        def errored(exc: BaseException) -> None:
            self.state = "failed"
            self.last_error = exc
            self.status.setText(f"{desc} failed: {exc}")
            notify_error(f"{desc} failed", exc)

        def aborted() -> None:
            self.state = "cancelled"
            self.status.setText(f"{desc}: cancelled")

        def finished() -> None:
            if self._pbar is not None:
                self._pbar.close()
                self._pbar = None
            if self.state == "done":
                self.bar.setRange(0, max(1, self.bar.maximum()))
                self.bar.setValue(self.bar.maximum())
            elif self.bar.maximum() == 0:
                self.bar.setRange(0, 1)
            self.cancel_button.setEnabled(False)
            self.worker = None
            if on_finished is not None:
                self._guard(on_finished, self.state, desc)

        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.aborted.connect(aborted)
        worker.finished.connect(finished)
        worker.start()
        return worker

    def _guard(self, fn: Callable[[Any], None], value: Any, desc: str) -> None:
        try:
            fn(value)
        except Exception as exc:  # a display error must not kill the event loop
            self.last_error = exc
            notify_error(f"{desc}: showing the result failed", exc)

    def cancel(self) -> None:
        """Ask the running task to stop at its next step (the generator is then closed)."""
        if self.worker is not None:
            self.status.setText(f"{self.status.text().split(':')[0]}: cancelling…")
            self.cancel_button.setEnabled(False)
            self.worker.quit()

    def wait_idle(self) -> bool:
        """Whether no task is running (for ``qtbot.waitUntil``)."""
        return self.worker is None


def add_layer_data(viewer: napari.viewer.Viewer, layer_data: tuple) -> Any:
    """Add one napari ``LayerData`` tuple ``(data, kwargs, layer_type)`` and return the layer.

    Uses the public :meth:`napari.layers.Layer.create` (what napari does with a reader's
    layer data), so widgets need no private viewer API.
    """
    from napari.layers import Layer

    data, kwargs, layer_type = layer_data
    return viewer.add_layer(Layer.create(data, kwargs, layer_type))


class OneAtATime:
    """Background reads for a view that follows changing state (a slice, a folder).

    Calling it asks ``make()`` for a napari worker (created, its result handlers connected, not
    started; or None when there is nothing to do) and starts it, unless a worker it started is
    still running; then the request is remembered and ``make()`` runs once more when that
    worker finishes, reading the state of that moment. So the view never misses a change, and
    a burst of changes costs at most one extra read. Handlers are connected before the worker
    starts, so a fast worker cannot finish unseen.
    """

    def __init__(self, make: Callable[[], Any]):
        self._make = make
        self.worker: Any = None
        self.again = False

    @property
    def busy(self) -> bool:
        """Whether a worker is running or a repeat is pending."""
        return self.worker is not None or self.again

    def __call__(self) -> Any:
        """Start a read now (returns its worker) or after the running one (returns None)."""
        if self.worker is not None:
            self.again = True
            return None
        worker = self._make()
        if worker is not None:
            self.worker = worker
            worker.finished.connect(self._finished)
            worker.start()
        return worker

    def cancel_repeat(self) -> None:
        """Forget a pending repeat (e.g. when the widget closes)."""
        self.again = False

    def _finished(self) -> None:
        self.worker = None
        if self.again:
            self.again = False
            self()


# ---------------------------------------------------------------------- napari versions
def viewer_grid(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` from napari 0.9, else ``viewer.grid``)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def viewer_camera(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def batched_layer_update(viewer: napari.viewer.Viewer) -> Any:
    """``viewer.layers.batched_update()`` where napari has it, else a do-nothing context.

    Batching makes napari clean up its canvas once for many layer changes.
    """
    from contextlib import nullcontext

    batched = getattr(viewer.layers, "batched_update", None)
    return batched() if batched is not None else nullcontext()


def set_tooltip(widget: QWidget, text: str) -> QWidget:
    """``widget`` with tooltip ``text`` (for building rows inline)."""
    widget.setToolTip(text)
    return widget


__all__ = [
    "DEFAULT_SETTINGS",
    "NEXT_SLICE_KEY",
    "PREVIOUS_SLICE_KEY",
    "SETTINGS_ENV",
    "DeviceInfo",
    "DevicePicker",
    "ModelPicker",
    "OneAtATime",
    "Progress",
    "StorePicker",
    "TaskPanel",
    "available_devices",
    "batched_layer_update",
    "bind_slice_keys",
    "current_slice",
    "get_setting",
    "load_model",
    "load_settings",
    "napari_settings",
    "notify_error",
    "notify_info",
    "parse_slices",
    "save_settings",
    "settings_path",
    "show_slice",
    "slice_origin",
    "stores_in_viewer",
    "viewer_camera",
    "viewer_grid",
]
