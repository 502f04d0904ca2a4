"""Background work: :class:`TaskPanel` and :class:`OneAtATime`.

:class:`TaskPanel` runs one cancellable task with progress; :class:`OneAtATime` runs reads
that follow changing state.

Library generators run in a napari ``thread_worker``; their progress shows in the widget and
in napari's activity dock; results reach callbacks on the GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from napari_teramind.widgets._messages import for_people, notify_error, notify_info


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


class TaskCancelled:
    """What a worker body returns when the library stopped it on request (a job's cancel).

    :class:`TaskPanel` then reports the task as cancelled, not done.
    """


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
        self.state = "idle"  # idle, running, cancelling, done, cancelled, failed
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
        # Determinate from the start, never a busy bar: an animated bar repaints the window
        # many times a second, and with software OpenGL (llvmpipe: remote desktops, VMs,
        # headless CI) each repaint composes the whole window on the CPU: measured, it took
        # two cores from a 2-core job and made it run several times slower.
        self._pbar = napari_progress(total=1, desc=desc)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("starting…")
        self.status.setText(f"{desc}: starting…")
        self.cancel_button.setEnabled(True)

        def yielded(item: Any) -> None:
            if self.state != "running":  # queued before a cancel: the status says cancelling
                return
            p = progress(item)
            if p.total > 0:
                self.bar.resetFormat()
                self.bar.setRange(0, p.total)
                self.bar.setValue(min(p.done, p.total))
            line = p.text or (f"{p.done} / {p.total}" if p.total else "working…")
            self.status.setText(f"{desc}: {line}")
            if on_yielded is not None:
                self._guard(on_yielded, item, desc)
            # last: napari's activity dock processes events here, which may deliver the end
            # of the task (a cancel) while this handler runs; nothing may overwrite it after
            if p.total > 0 and self._pbar is not None and self.state == "running":
                self._pbar.total = p.total
                self._pbar.update(p.done - self._pbar.n)

        def returned(value: Any) -> None:
            if isinstance(value, TaskCancelled):
                aborted()
                return
            self.state = "done"
            self.status.setText(f"{desc}: done")
            if on_returned is not None:
                self._guard(on_returned, value, desc)

        def errored(exc: BaseException) -> None:
            self.state = "failed"
            self.last_error = exc
            self.status.setText(f"{desc} failed: {for_people(exc)}")
            notify_error(f"{desc} failed", exc)

        def aborted() -> None:
            self.state = "cancelled"
            done, total = self.bar.value(), self.bar.maximum()
            so_far = f" after {done} of {total} units" if total > 0 and done > 0 else ""
            self.status.setText(f"{desc}: cancelled{so_far}")

        def finished() -> None:
            if self.state in ("running", "cancelling"):  # stopped without a result
                aborted()
            if self._pbar is not None:
                if self.state in ("cancelled", "failed"):  # the activity dock says so too
                    self._pbar.set_description(f"{desc}: {self.state}")
                self._pbar.close()
                self._pbar = None
            if self.state == "done":
                self.bar.setRange(0, max(1, self.bar.maximum()))
                self.bar.setValue(self.bar.maximum())
            if self.state in ("cancelled", "failed"):
                self.bar.setFormat(self.state)
            else:
                self.bar.resetFormat()
            self.cancel_button.setEnabled(False)
            self.worker = None
            if on_finished is not None:
                self._guard(on_finished, self.state, desc)

        def while_shown(handler: Callable[..., None]) -> Callable[..., None]:
            # The dock may be closed while the worker runs: its Qt widgets are then deleted and
            # touching them raises; stop the worker (between units) and drop its late signals.
            def call(*a: Any) -> None:
                try:
                    self.bar.objectName()
                except RuntimeError:
                    worker.quit()
                    if self._pbar is not None:
                        self._pbar.close()
                        self._pbar = None
                    self.worker = None
                    return
                handler(*a)

            return call

        worker.yielded.connect(while_shown(yielded))
        worker.returned.connect(while_shown(returned))
        worker.errored.connect(while_shown(errored))
        worker.aborted.connect(while_shown(aborted))
        worker.finished.connect(while_shown(finished))
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
            self.state = "cancelling"
            self.status.setText(f"{self.status.text().split(':')[0]}: cancelling…")
            self.bar.setFormat("cancelling…")
            self.cancel_button.setEnabled(False)
            self.worker.quit()

    def wait_idle(self) -> bool:
        """Whether no task is running (for ``qtbot.waitUntil``)."""
        return self.worker is None


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
