"""The "Generation jobs" widget: launch, watch, resume and cancel full-brain generation.

A thin view over :mod:`napari_teramind.generate.job` and ``executors``: Launch writes a job
directory (:func:`create_job`, with the engine's options: executor, devices/GPUs, workers,
dask scheduler address, output path) and runs it (:func:`iter_job`) in a worker. The table
lists every job under the jobs root (:func:`list_jobs`), refreshed every 2 s by a timer that
reads :func:`job_status` (state, progress, speed, time left) in a worker thread. Resume
continues a stopped job, Cancel asks its workers to stop between units (also for jobs started
from the CLI or on a cluster), and Open shows the growing output store as layers that refresh
while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_teramind.generate.job import EXECUTORS, JobSpec
from napari_teramind.layers import store_stem
from napari_teramind.widgets._common import (
    ModelPicker,
    OneAtATime,
    Progress,
    StorePicker,
    TaskCancelled,
    TaskPanel,
    add_layer_data,
    available_devices,
    get_setting,
    notify_error,
    notify_info,
    parse_slices,
    save_settings,
)
from napari_teramind.widgets._layout import add_sampler_rows, scroll_body

if TYPE_CHECKING:  # pragma: no cover
    import napari

COLUMNS = ("job", "state", "progress", "step", "speed", "time left", "output")
REFRESH_MS = 2000


def default_jobs_root() -> Path:
    """``jobs`` in the per-user cache folder (:func:`~napari_teramind.userdirs.cache_dir`)."""
    from napari_teramind.userdirs import cache_dir

    return cache_dir() / "jobs"


def launch_job(job_dir: str, spec_kwargs: dict[str, Any], device: str) -> Iterator[Any]:
    """Worker body: write the job directory, then run it (yielding ``JobProgress``)."""
    from napari_teramind.generate.job import create_job

    create_job(job_dir, JobSpec(**spec_kwargs))
    return (yield from resume_job(job_dir, device))


def resume_job(job_dir: str, device: str) -> Iterator[Any]:
    """Worker body: run (or resume) a job; a cancel request ends it quietly.

    Yields the job's progress at once (units done of all), so the panel shows where the job
    stands before its next unit, which may take minutes, ends.
    """
    from napari_teramind.generate.executors import current_progress, iter_job
    from napari_teramind.generate.job import JobCancelled

    yield current_progress(job_dir)
    try:
        last = None
        for last in iter_job(job_dir, device=device):
            yield last
    except JobCancelled:
        return TaskCancelled()
    return None if last is None else last.output


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def job_progress(item: Any) -> Progress:
    """Progress text of a ``JobProgress``: units, speed and time left."""
    speed = f", {item.rate * 60:.3g} units/min" if item.rate else ""
    left = f", {format_duration(item.eta_s)} left" if item.eta_s is not None else ""
    step = min(item.step + 1, item.n_steps)
    return Progress(
        int(item.units_done),
        int(item.units_total),
        f"step {step}/{item.n_steps}, unit {item.units_done}/{item.units_total}{speed}{left}",
    )


class JobsWidget(QWidget):
    """Launch and monitor generation jobs.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    parent
        Optional Qt parent.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.statuses: list[Any] = []
        self.running_job: str | None = None
        self.output_layers: dict[str, list[Any]] = {}
        self._refresher = OneAtATime(self._make_refresh)
        self._build_ui()
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = scroll_body(self)
        launch = QGroupBox("New job")
        form = QFormLayout(launch)
        self.store_picker = StorePicker(self.viewer, what="source brain store")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("default: <store>-<seed>")
        self.name_edit.setToolTip("Name of the job directory under the jobs root")
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("default: <jobs root>/<name>/generated.zarr")
        self.output_edit.setToolTip("Generated brain store the job writes (must not exist)")
        self.region_combo = QComboBox()
        self.region_combo.addItems(["Whole sections", "Region rectangle"])
        self.region_combo.setToolTip(
            "Generate the whole sections, or only the rectangle placed with 'Generate a region'"
        )
        self.slices_edit = QLineEdit("all")
        self.slices_edit.setToolTip("Slices: 'all', 'current', '2', '0-3' or '0,2,5-6'")
        self.model_picker = ModelPicker()
        self.executor_combo = QComboBox()
        self.executor_combo.addItems(EXECUTORS)
        self.executor_combo.setToolTip(
            "inprocess: in napari's worker thread on one device; local: one process per chosen "
            "device (all local GPUs); dask: a dask.distributed cluster (scheduler address, or "
            "a local cluster when empty)"
        )
        self.device_list = QListWidget()
        self.device_list.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        self.device_list.setMaximumHeight(70)
        self.device_list.setToolTip(
            "Devices: the first runs an inprocess job; a local job runs one worker per selected "
            "device (select several GPUs)"
        )
        for info in available_devices():
            item = QListWidgetItem(info.label)
            item.setData(256, info.name)
            self.device_list.addItem(item)
        self.device_list.item(0).setSelected(True)
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(0, 1024)
        self.workers_spin.setSpecialValueText("auto")
        self.workers_spin.setToolTip(
            "CPU worker processes (local executor without GPUs) or local-cluster workers (dask)"
        )
        self.scheduler_edit = QLineEdit(str(get_setting("scheduler")))
        self.scheduler_edit.setPlaceholderText("tcp://host:8786 (empty: local cluster)")
        self.scheduler_edit.setToolTip("Address of a running dask scheduler (dask executor)")
        self.launch_button = QPushButton("Launch")
        self.launch_button.setToolTip("Write the job directory and run the job in the background")
        form.addRow("Source", self.store_picker)
        form.addRow("Job name", self.name_edit)
        form.addRow("Output", self.output_edit)
        form.addRow("Region", self.region_combo)
        form.addRow("Slices", self.slices_edit)
        form.addRow("Model", self.model_picker)
        self.steps_spin, self.seed_spin, self.block_spin = add_sampler_rows(form, 16384)
        self.checkpoint_spin = QSpinBox()
        self.checkpoint_spin.setRange(1, 1000)
        self.checkpoint_spin.setValue(JobSpec.checkpoint_every)
        self.checkpoint_spin.setPrefix("every ")
        self.checkpoint_spin.setSuffix(" steps")
        self.checkpoint_spin.setToolTip(
            "Steps a slice pair advances in memory between checkpoints (one unit). A cancel or "
            "a crash loses at most the running unit; fewer steps: more checkpoints written"
        )
        form.addRow("Checkpoint", self.checkpoint_spin)
        form.addRow("Executor", self.executor_combo)
        form.addRow("Devices", self.device_list)
        form.addRow("Workers", self.workers_spin)
        form.addRow("Scheduler", self.scheduler_edit)
        form.addRow(self.launch_button)
        layout.addWidget(launch)

        jobs = QGroupBox("Jobs")
        jl = QVBoxLayout(jobs)
        root_row = QHBoxLayout()
        self.root_edit = QLineEdit(str(get_setting("jobs_root") or default_jobs_root()))
        self.root_edit.setToolTip("Directory holding the job directories (remembered)")
        self.root_button = QToolButton()
        self.root_button.setText("…")
        self.root_button.setToolTip("Choose the jobs root directory")
        root_row.addWidget(QLabel("Root"))
        root_row.addWidget(self.root_edit, 1)
        root_row.addWidget(self.root_button)
        jl.addLayout(root_row)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip(
            f"Jobs under the root, refreshed every {REFRESH_MS / 1000:g} s from their directories "
            "(also jobs started from the command line or on a cluster)"
        )
        jl.addWidget(self.table)
        buttons = QHBoxLayout()
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the selected job where it stopped (in napari)")
        self.cancel_job_button = QPushButton("Cancel job")
        self.cancel_job_button.setToolTip(
            "Ask every worker of the selected job to stop after its current unit; resume later"
        )
        self.open_button = QPushButton("Open output")
        self.open_button.setToolTip(
            "Show the selected job's generated store; its layers refresh while the job runs"
        )
        for b in (self.resume_button, self.cancel_job_button, self.open_button):
            buttons.addWidget(b)
        jl.addLayout(buttons)
        layout.addWidget(jobs)
        self.task = TaskPanel(name="job")
        layout.addWidget(self.task)
        layout.addStretch(1)

        self.launch_button.clicked.connect(self.launch)
        self.resume_button.clicked.connect(lambda: self.resume(self.selected_job()))
        self.cancel_job_button.clicked.connect(lambda: self.cancel(self.selected_job()))
        self.open_button.clicked.connect(lambda: self.open_output(self.selected_job()))
        self.root_edit.editingFinished.connect(self._root_changed)
        self.root_button.clicked.connect(self._choose_root)

    def _choose_root(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path = QFileDialog.getExistingDirectory(self, "Choose the jobs root")
        if path:
            self.root_edit.setText(path)
            self._root_changed()

    def _root_changed(self) -> None:
        save_settings(jobs_root=self.root_edit.text().strip())
        self.refresh()

    def jobs_root(self) -> Path:
        """The jobs root directory."""
        return Path(self.root_edit.text().strip() or default_jobs_root()).expanduser()

    def devices(self) -> tuple[str, ...]:
        """The selected devices, in list order."""
        return tuple(
            str(self.device_list.item(i).data(256))
            for i in range(self.device_list.count())
            if self.device_list.item(i).isSelected()
        ) or ("cpu",)

    # ------------------------------------------------------------------ launch
    def job_spec(self) -> tuple[str, dict[str, Any]]:
        """The job directory and the ``JobSpec`` fields of the form (``ValueError`` if bad)."""
        from napari_teramind.store import BrainStore
        from napari_teramind.widgets._common import current_slice

        store = BrainStore.open(self.store_picker.path())
        text = self.slices_edit.text().strip().lower()
        slices = parse_slices(text, store.n_slices, current_slice(self.viewer, store))
        from napari_teramind.generate import snap_region

        if self.region_combo.currentText() == "Whole sections":
            region = (0, store.height, 0, store.width)
        else:
            from napari_teramind.widgets.generate import rectangle_region

            region = rectangle_region(self.viewer, store)
        region = snap_region(region, store.height, store.width)  # whole 64 px patches
        stem = store_stem(store.path)
        name = self.name_edit.text().strip() or f"{stem}-{self.seed_spin.value()}"
        job_dir = self.jobs_root() / name
        if job_dir.exists():
            raise ValueError(
                f"a job named '{name}' already exists in {self.jobs_root()}; type another Job "
                "name, or select it in the table and press Resume"
            )
        output = self.output_edit.text().strip() or str(job_dir / "generated.zarr")
        spec_model = self.model_picker.spec()
        executor = self.executor_combo.currentText()
        scheduler = self.scheduler_edit.text().strip() or None
        return str(job_dir), {
            "source": str(store.path),
            "model": spec_model or "bundled",
            "region": region,
            "slices": tuple(slices),
            "output": output,
            "seed": self.seed_spin.value(),
            "steps": self.steps_spin.value(),
            "block_px": self.block_spin.value(),
            "checkpoint_every": self.checkpoint_spin.value(),
            "executor": executor,
            "devices": self.devices() if executor == "local" else None,
            "workers": self.workers_spin.value() or None,
            "scheduler": scheduler if executor == "dask" else None,
        }

    def launch(self) -> Any:
        """Write the job and run it in a worker (errors are notified)."""
        try:
            job_dir, spec = self.job_spec()
        except Exception as exc:
            notify_error("Cannot launch the job", exc)
            return None
        save_settings(scheduler=self.scheduler_edit.text().strip(),
                      jobs_root=self.root_edit.text().strip())  # fmt: skip
        self.running_job = job_dir
        return self.task.run(
            launch_job,
            job_dir,
            spec,
            self.devices()[0],
            progress=job_progress,
            on_finished=self._job_finished,
            desc=f"Job {Path(job_dir).name} ({spec['executor']}: "
            f"{', '.join(spec['devices'] or self.devices()[:1])})",
        )

    def resume(self, job_dir: str | None) -> Any:
        """Continue job ``job_dir`` in a worker."""
        if not job_dir:
            notify_error("Select a job in the table first")
            return None
        self.running_job = job_dir
        return self.task.run(
            resume_job,
            job_dir,
            self.devices()[0],
            progress=job_progress,
            on_finished=self._job_finished,
            desc=f"Job {Path(job_dir).name}",
        )

    def cancel(self, job_dir: str | None) -> None:
        """Ask job ``job_dir`` to stop between units (the job resumes later)."""
        from napari_teramind.generate.job import cancel_job

        if not job_dir:
            notify_error("Select a job in the table first")
            return
        try:
            status = cancel_job(job_dir)
        except Exception as exc:
            notify_error(f"Cannot cancel {job_dir}", exc)
            return
        notify_info(f"Cancel requested for {Path(job_dir).name} ({status.state})")
        self.refresh()

    def _job_finished(self, state: str) -> None:
        self.running_job = None
        self.refresh()

    # ------------------------------------------------------------------ table
    def selected_job(self) -> str | None:
        """Path of the job selected in the table."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.statuses[rows[0].row()].path

    def select_job(self, job_dir: str) -> None:
        """Select the row of ``job_dir``."""
        for i, status in enumerate(self.statuses):
            if Path(status.path) == Path(job_dir).resolve():
                self.table.selectRow(i)

    def refresh(self) -> Any:
        """Re-read every job's status in a worker thread; :meth:`show_statuses` shows them.

        Returns
        -------
        napari.qt.threading.FunctionWorker or None
            The worker, or None when a refresh is still running (this request then runs right
            after it, so the table never misses a change).
        """
        return self._refresher()

    def _make_refresh(self) -> Any:
        from napari.qt.threading import create_worker

        root = self.jobs_root()
        worker = create_worker(_read_statuses, root)
        worker.returned.connect(self.show_statuses)
        # a damaged job must not stop the timer: say so in the table's tooltip
        worker.errored.connect(
            lambda exc: self.table.setToolTip(f"Cannot list jobs under {root}: {exc}")
        )
        return worker

    def show_statuses(self, statuses: list[Any]) -> None:
        """Fill the table with ``statuses``; refresh the layers of outputs that are growing."""
        selected = self.selected_job()
        self.statuses = statuses
        self.table.setRowCount(len(statuses))
        for row, st in enumerate(statuses):
            speed = f"{st.rate * 60:.3g} units/min" if st.rate else "?"
            values = (
                Path(st.path).name,
                st.state,
                f"{st.fraction:.0%} ({st.units_done}/{st.units_total})",
                f"{min(st.step + 1, st.n_steps)}/{st.n_steps}",
                speed,
                "0s"
                if st.state == "complete"
                else (format_duration(st.eta_s) if st.state == "running" else "-"),
                st.output,
            )
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if st.errors:
                    item.setToolTip("\n".join(f"{k}: {v.strip()}" for k, v in st.errors.items()))
                else:
                    item.setToolTip(st.summary())
                self.table.setItem(row, col, item)
        if selected:
            self.select_job(selected)
        for job, layers in self.output_layers.items():
            status = next((s for s in statuses if s.path == job), None)
            if status is not None and status.state in ("running", "cancelling", "complete"):
                for layer in layers:
                    if layer in self.viewer.layers:
                        layer.refresh()

    # ------------------------------------------------------------------ output
    def open_output(self, job_dir: str | None) -> list[Any]:
        """Show the generated store of ``job_dir`` (it may still be growing)."""
        from napari_teramind.generate.job import job_status
        from napari_teramind.layers import stain_layers
        from napari_teramind.store import BrainStore

        if not job_dir:
            notify_error("Select a job in the table first")
            return []
        try:
            status = job_status(job_dir)
            store = BrainStore.open(status.output, allow_incomplete=True)
        except Exception as exc:
            notify_error(f"Cannot open the output of {job_dir}", exc)
            return []
        for layer in self.output_layers.pop(status.path, []):
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        layers = [
            add_layer_data(self.viewer, (data, kwargs, kind))
            for data, kwargs, kind in stain_layers(store)
        ]
        self.output_layers[status.path] = layers
        return layers

    def closeEvent(self, event: Any) -> None:
        """Stop the refresh timer with the widget."""
        self.timer.stop()
        self._refresher.cancel_repeat()
        super().closeEvent(event)


def _read_statuses(root: Path) -> list[Any]:
    """Every job's status under ``root`` (run in a worker thread)."""
    from napari_teramind.generate.job import list_jobs

    return list_jobs(root) if root.is_dir() else []
