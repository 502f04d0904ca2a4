"""Shared pieces of the widget tests: a tiny phantom, a tiny checkpoint, settings isolation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)

#: Where screenshots go: ``$TERAMIND_SCREENSHOTS`` (``docs/images`` to refresh the user guide's
#: pictures), else a folder in the system's temporary directory, so a test run never changes
#: the working tree.
SCREENSHOTS_ENV = "TERAMIND_SCREENSHOTS"

#: Longest event-loop stall allowed beyond the idle machine's own gap (``idle_max_gap``), in
#: every no-freeze test (sample data, generation, attention, evaluation). It is a coarse bound
#: on purpose: these tests check behaviour, not speed (speed is measured in benchmarks). What
#: says *where* the work runs is :class:`ThreadSpy` (the library call ran off the GUI thread,
#: which cannot flake); the gap bound catches what a spy cannot see, work added on the GUI
#: thread around the library call, as the freezes these tests were written for: 11-45 s for
#: the sample data, 2-3.5 s for a result, 3.4 s for the attention plot's matplotlib import.
#: Finer bounds (0.4 s, 0.5 s) failed in CI by 11 ms and 0.14 s on a loaded two-core machine,
#: where one software-GL draw of the 1920 x 1080 canvas alone takes up to 0.56 s and the
#: first draw of a new layer compiles its shaders; the measured gaps are printed and kept in
#: the user guide's no-freeze section.
MAX_GAP_S = 1.5

#: A phantom small enough for a generation test on two shared cores.
TINY = {"seed": 0, "n_slices": 4, "height": 256, "width": 384}


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """Settings go to a temporary file: tests never read or write the user's real settings."""
    from napari_teramind.widgets._common import SETTINGS_ENV

    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "settings" / "settings.json"))


def tiny_phantom(path: Path, **overrides):
    """Write the tiny phantom to ``path`` and open it."""
    from napari_teramind.phantom import PhantomSpec, write_phantom

    return write_phantom(path, spec=PhantomSpec(**{**TINY, **overrides}), workers=1)


def model_spec(tmp: Path, store) -> str | None:
    """The bundled model (``None``) when it exists, else a seeded tiny checkpoint for ``store``."""
    try:
        from napari_teramind.model.bundled import bundled_checkpoint_path

        if Path(bundled_checkpoint_path()).exists():
            return None
    except (ImportError, OSError):  # not merged yet, or its weights are missing
        pass
    import torch

    from napari_teramind.model import ModelConfig, TeraMindUNet
    from napari_teramind.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", len(store.panel.names))
    model = TeraMindUNet(config)
    path = tmp / "tiny-model"
    save_checkpoint(path, model, config, list(store.panel.names))
    return str(path)


def content_stats(img: np.ndarray) -> tuple[float, float]:
    """Fraction of lit pixels and the pixel standard deviation of a screenshot (RGB[A])."""
    rgb = img[..., :3].astype(float)
    return float((rgb.max(axis=-1) > 30).mean()), float(rgb.std())


def screenshot_dir() -> Path:
    """The folder screenshots are saved in (see :data:`SCREENSHOTS_ENV`)."""
    import os
    import tempfile

    configured = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(configured) if configured else Path(tempfile.gettempdir()) / "teramind-shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(img: np.ndarray, name: str) -> Path:
    """Save ``img`` as ``<screenshot_dir()>/<name>`` (the user guide's pictures)."""
    from imageio.v3 import imwrite

    path = screenshot_dir() / name
    imwrite(path, img)
    return path


def show_store(viewer, store) -> None:
    """Open ``store``'s stains in ``viewer`` as the reader would (public napari API only)."""
    from napari_teramind.layers import brain_layers
    from napari_teramind.widgets._common import add_layer_data

    for layer_data in brain_layers(store, regions=False):
        add_layer_data(viewer, layer_data)


def units_consistent(viewer) -> bool:
    """Whether napari sees one set of units across the layers (no "inconsistent units" warning).

    napari releases without ``LayerList.extent.units`` have no such warning to give.
    """
    extent = viewer.layers.extent
    return not hasattr(extent, "units") or extent.units is not None


def grid_shape(grid, layers: list):
    """Grid shape in use: napari 0.9 takes the layers, older releases their count."""
    try:
        return grid.actual_shape(layers)
    except TypeError:
        return grid.actual_shape(len(layers))


def grid_cell(grid, index: int, layers: list):
    """Grid cell of layer ``index``: napari 0.9 takes the layers, older releases their count."""
    try:
        return grid.position(index, layers)
    except TypeError:
        return grid.position(index, len(layers))


def threading_id() -> int:
    """The calling thread's id (the sampler leaves itself out of its samples)."""
    import threading

    return threading.get_ident()


class EventLoopWatch:
    """Record the gaps between a 20 ms timer's ticks, and when layers were inserted.

    Use as a context manager around work that must not freeze napari. napari itself builds
    each new layer's controls on the GUI thread (~0.2 s on the loaded test machine); gaps in
    which a layer was inserted are reported apart (:attr:`insert_gaps`).

    With ``$TERAMIND_STALL_SAMPLER=1`` a background thread samples the GUI thread's stack
    every 5 ms while no tick has come for ``stall_s``: :meth:`stall_report` names the functions
    the longest stalls were spent in (how the user guide's figures were found). It is off by
    default: the sampler competes for the GIL and lengthens the stalls it measures.
    """

    def __init__(self, viewer=None, interval_ms: int = 20, stall_s: float = 0.06):
        import threading

        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.inserted: list[float] = []
        self.stall_s = stall_s
        #: ``(start, [stack, ...])`` per stall; a stack is a tuple of ``"file:line func"``.
        self.stalls: list[tuple[float, list[tuple[str, ...]]]] = []
        self._gui_thread = threading.get_ident()
        self._running = False
        self._sampler: threading.Thread | None = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        if viewer is not None:
            viewer.layers.events.inserted.connect(self._inserted)

    def _tick(self):
        import time

        self.ticks.append(time.perf_counter())

    def _inserted(self, _event=None):
        import time

        self.inserted.append(time.perf_counter())

    def _sample(self):
        import sys
        import time

        def stack(frame, limit=40):
            out = []
            while frame is not None and len(out) < limit:
                code = frame.f_code
                path = code.co_filename
                where = "/".join(Path(path).parts[-2:])
                if "napari_teramind/" in path:  # ours: the path inside the package
                    where = "teramind:" + path.split("napari_teramind/")[-1]
                out.append(f"{where}:{frame.f_lineno} {code.co_name}")
                frame = frame.f_back
            return tuple(reversed(out))

        current: list | None = None
        while self._running:
            time.sleep(0.005)
            if not self.ticks:
                continue
            last = self.ticks[-1]
            if time.perf_counter() - last < self.stall_s:
                current = None
                continue
            frames = sys._current_frames()
            gui = frames.pop(self._gui_thread, None)
            if gui is None:
                continue
            others = tuple(stack(f, 1)[-1] for i, f in frames.items() if i != threading_id())
            if current is None or current[0] != last:
                current = [last, []]
                self.stalls.append((last, current[1]))
            current[1].append((*stack(gui), "| other threads: " + "; ".join(others)))

    def __enter__(self):
        import os
        import threading

        self._running = True
        if os.environ.get("TERAMIND_STALL_SAMPLER") == "1":
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()
        self._running = False
        if self._sampler is not None:
            self._sampler.join()

    def stall_report(self, n: int = 3, depth: int = 6) -> str:
        """The ``n`` longest stalls: their length and the innermost frames most sampled."""
        from collections import Counter

        t = np.asarray(self.ticks)
        lines = []
        for start, stacks in sorted(self.stalls, key=lambda s: -len(s[1]))[:n]:
            after = t[t > start]
            gap = float(after[0] - start) if after.size else float("nan")
            lines.append(f"stall {gap:.3f} s at {start - t[0]:.2f} s ({len(stacks)} samples):")
            common = Counter(s[-depth - 1 :] for s in stacks).most_common(3)
            for stack, count in common:
                lines.append(f"  {count}x " + " <- ".join(reversed(stack[:-1])) + " " + stack[-1])
            ours = Counter(
                next((f for f in reversed(s[:-1]) if "teramind" in f or "tests/" in f), "-")
                for s in stacks
            ).most_common(2)
            lines.append(f"  in our code: {ours}")
        return "\n".join(lines)

    def _split(self):
        t = np.asarray(self.ticks)
        gaps = np.diff(t)
        adding = np.array(
            [any(a <= x <= b for x in self.inserted) for a, b in itertools.pairwise(t)],
            bool,
        )
        return gaps, adding

    @property
    def max_gap(self) -> float:
        """Longest gap without a layer insertion in it (seconds)."""
        gaps, adding = self._split()
        other = gaps[~adding]
        return float(other.max()) if len(other) else 0.0

    @property
    def insert_gaps(self) -> list[float]:
        """The gaps that contain a layer insertion."""
        gaps, adding = self._split()
        return [float(g) for g in gaps[adding]]


def assert_responsive(watch: EventLoopWatch, idle: float, what: str) -> None:
    """Fail, naming where the GUI thread was, when ``watch`` saw a stall over the tolerance."""
    print(
        f"{what}: idle {idle:.3f} s, longest gap {watch.max_gap:.3f} s, "
        f"layer-insert gaps {[round(g, 3) for g in watch.insert_gaps]}"
    )
    why = (
        f"{what}: GUI blocked {watch.max_gap:.2f} s (idle machine {idle:.2f} s)\n"
        + watch.stall_report()
    )
    assert len(watch.ticks) > 10 and watch.max_gap < MAX_GAP_S + idle, why


class ThreadSpy:
    """Record which thread runs ``owner.name`` (the real function, called through).

    Not a mock: the wrapped function runs unchanged; the spy only notes the calling thread, so a
    test can assert that a widget's heavy library call ran in a worker, never on the GUI
    thread (where it would freeze napari for as long as it takes, at any size).
    """

    def __init__(self, monkeypatch, owner, name: str):
        import functools
        import threading

        self.threads: list[int] = []
        self.gui_thread = threading.get_ident()
        real = getattr(owner, name)
        self.name = f"{getattr(owner, '__name__', owner)}.{name}"

        @functools.wraps(real)
        def spy(*args, **kwargs):
            self.threads.append(threading.get_ident())
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)

    def assert_off_gui_thread(self) -> None:
        """Fail unless the function ran, and every call ran off the GUI thread."""
        assert self.threads, f"{self.name} was never called"
        on_gui = sum(t == self.gui_thread for t in self.threads)
        assert on_gui == 0, f"{self.name}: {on_gui} of {len(self.threads)} calls on the GUI thread"


def idle_max_gap(qtbot, seconds: float = 2.0) -> float:
    """Longest gap between 20 ms timer ticks while nothing runs (the machine's own stalls)."""
    watch = EventLoopWatch()
    with watch:
        qtbot.wait(int(seconds * 1000))
    return watch.max_gap
