"""The "Generation jobs" widget: launch, table refresh, cancel, resume, open the output."""

from pathlib import Path

import pytest

from _widget_helpers import (  # noqa: F401 (fixtures)
    content_stats,
    isolated_settings,
    model_spec,
    save_screenshot,
    show_store,
    single_thread,
    tiny_phantom,
    units_consistent,
)
from napari_teramind.widgets.jobs import COLUMNS, JobsWidget, format_duration


def needs_engine():
    """Skip until the generation engine's job bridge is merged."""
    pytest.importorskip("napari_teramind.generate._bridge")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return tiny_phantom(tmp_path_factory.mktemp("jobs") / "brain.zarr", n_slices=2)


def _widget(make_napari_viewer, phantom, tmp_path, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    show_store(viewer, phantom)
    w = JobsWidget(viewer)
    viewer.window.add_dock_widget(w, name="Generation jobs")
    w.root_edit.setText(str(tmp_path / "jobs"))
    w._root_changed()
    spec = model_spec(tmp_path, phantom)
    if spec is not None:
        w.model_picker.source.setCurrentText("checkpoint")
        w.model_picker.path.setText(spec)
    return viewer, w


def test_layer_names_say_which_job_a_generic_store_comes_from():
    from napari_teramind.layers import store_display_name

    assert store_display_name("/data/jobs/glut-1/generated.zarr") == "glut-1 generated"
    assert store_display_name(Path("/data/jobs/dopa/perturbed.zarr")) == "dopa perturbed"
    assert store_display_name("/data/brain.zarr") == "brain"
    assert store_display_name("/data/brain-generated.zarr") == "brain-generated"


def test_format_duration():
    assert format_duration(None) == "?"
    assert format_duration(12.4) == "12s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"


def test_form_and_bad_input(make_napari_viewer, phantom, tmp_path, monkeypatch):
    from napari_teramind.widgets import _common, jobs

    _, w = _widget(make_napari_viewer, phantom, tmp_path)
    assert _common.load_settings()["jobs_root"] == str(tmp_path / "jobs")  # remembered
    assert w.table.columnCount() == len(COLUMNS) and w.table.rowCount() == 0
    job_dir, spec = w.job_spec()
    assert spec["region"] == (0, phantom.height, 0, phantom.width)
    assert spec["slices"] == (0, 1) and spec["executor"] == "inprocess"
    assert job_dir == str(tmp_path / "jobs" / "brain-0")
    w.executor_combo.setCurrentText("dask")
    w.scheduler_edit.setText("tcp://10.0.0.1:8786")
    assert w.job_spec()[1]["scheduler"] == "tcp://10.0.0.1:8786"
    messages = []
    monkeypatch.setattr(jobs, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    w.region_combo.setCurrentText("Region rectangle")
    assert w.launch() is None and "no region rectangle" in messages[-1]


def test_launch_cancel_resume_and_open(make_napari_viewer, qtbot, phantom, tmp_path, monkeypatch):
    needs_engine()
    from napari_teramind.generate.job import JobDir, job_status
    from napari_teramind.widgets import jobs

    viewer, w = _widget(make_napari_viewer, phantom, tmp_path, show=True)
    viewer.window._qt_window.resize(1920, 1080)
    w.slices_edit.setText("0")
    # 6 steps checkpointed every 2: three units of 2 steps (a slice pair's state stays in
    # memory between checkpoints). A cancel is honoured between units: sent during the
    # second, it stops the job before the third
    assert w.checkpoint_spin.value() == 8  # the library's default
    w.steps_spin.setValue(6)
    w.checkpoint_spin.setValue(2)
    w.block_spin.setValue(64)
    w.name_edit.setText("tiny")
    seen = []
    worker = w.launch()
    assert worker is not None
    worker.yielded.connect(seen.append)
    # at once: where the job stands, a determinate 0 of 3 (no busy bar; see _workers.py)
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=60_000)
    assert (seen[0].units_done, seen[0].units_total) == (0, 3)
    assert w.task.bar.maximum() == 3 and w.task.bar.value() == 0
    qtbot.waitUntil(lambda: seen[-1].units_done >= 1, timeout=300_000)  # the first unit is done
    job_dir = str((tmp_path / "jobs" / "tiny").resolve())
    assert JobDir(job_dir).spec.checkpoint_every == 2  # the form's setting reached the job
    w.refresh()  # job directories are read in a worker thread; the table fills when it returns
    qtbot.waitUntil(lambda: w.table.rowCount() == 1, timeout=10_000)
    w.select_job(job_dir)
    assert w.selected_job() == job_dir
    w.cancel_job_button.click()  # a cancel request, as for a job run by the CLI
    # honoured when the running unit ends: as long as a unit takes, like the first wait
    qtbot.waitUntil(w.task.wait_idle, timeout=300_000)
    status = job_status(job_dir)
    assert status.state == "cancelled" and 0 < status.units_done < status.units_total
    # the panel says cancelled: no jump to 100 %, no time left (#17 item 3)
    assert w.task.state == "cancelled" and "cancelled" in w.task.status.text()
    assert "left" not in w.task.status.text() and w.task.bar.value() < w.task.bar.maximum()
    # reusing the job's name is refused at once, in words (#17 item 8)
    messages = []
    monkeypatch.setattr(jobs, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    assert w.launch() is None and "already exists" in messages[-1] and "Resume" in messages[-1]
    w.refresh()
    qtbot.waitUntil(lambda: w.table.item(0, 1).text() == "cancelled", timeout=10_000)
    row = [w.table.item(0, c).text() for c in range(len(COLUMNS))]
    assert row[:2] == ["tiny", "cancelled"] and row[COLUMNS.index("time left")] == "-"

    w.resume_button.click()
    qtbot.waitUntil(w.task.wait_idle, timeout=400_000)
    w.refresh()
    assert job_status(job_dir).state == "complete"
    qtbot.waitUntil(lambda: w.table.item(0, 1).text() == "complete", timeout=10_000)
    assert w.table.item(0, 2).text().startswith("100%")
    layers = w.open_output(job_dir)
    # the job's name tells its generated.zarr from every other job's (#17 item 7)
    assert [layer.name for layer in layers] == ["tiny generated DAPI", "tiny generated PolyT"]
    assert layers[0].data[0].shape[-2:] == (phantom.height, phantom.width)
    viewer.reset_view()
    qtbot.wait(300)
    lit, std = content_stats(viewer.screenshot(canvas_only=True, flash=False))
    assert lit > 0.1 and std > 10, (lit, std)
    assert units_consistent(viewer)  # no napari units warning
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), "jobs-window.png")


def test_refresh_reads_jobs_in_a_worker_one_at_a_time(make_napari_viewer, qtbot, phantom, tmp_path):
    from napari_teramind.generate.job import JobSpec, create_job

    _, w = _widget(make_napari_viewer, phantom, tmp_path)
    qtbot.waitUntil(lambda: not w._refresher.busy, timeout=10_000)  # the start-up refresh
    assert w.table.rowCount() == 0
    job_dir, spec = w.job_spec()
    create_job(job_dir, JobSpec(**spec))  # written, not run: state "created"
    worker = w.refresh()
    assert worker is not None and w.table.rowCount() == 0  # the table fills when it returns
    assert w.refresh() is None  # one refresh at a time; this request runs after the first
    assert w._refresher.again
    qtbot.waitUntil(lambda: w.table.rowCount() == 1 and not w._refresher.busy, timeout=10_000)
    assert w.table.item(0, 0).text() == "brain-0"
