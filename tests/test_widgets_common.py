"""Shared widget infrastructure: settings, device picker, slices, the task panel's worker."""

import threading

import pytest

from napari_teramind.widgets import _common, _workers
from napari_teramind.widgets._common import (
    DevicePicker,
    ModelPicker,
    Progress,
    TaskPanel,
    available_devices,
    load_settings,
    parse_slices,
    save_settings,
    settings_path,
)


@pytest.fixture(autouse=True)
def _settings_file(tmp_path, monkeypatch):
    monkeypatch.setenv(_common.SETTINGS_ENV, str(tmp_path / "cfg" / "settings.json"))


def test_settings_round_trip(tmp_path):
    assert settings_path() == tmp_path / "cfg" / "settings.json"
    assert load_settings()["device"] == "cpu"  # defaults, no file yet
    save_settings(steps=7, jobs_root="/data/jobs")
    save_settings(seed=3)
    values = load_settings()
    assert (values["steps"], values["seed"], values["jobs_root"]) == (7, 3, "/data/jobs")
    # only what differs from the defaults is stored; a broken file falls back to defaults
    import json

    assert json.loads(settings_path().read_text()) == {
        "steps": 7,
        "jobs_root": "/data/jobs",
        "seed": 3,
    }
    settings_path().write_text("{not json")
    assert load_settings()["steps"] == _common.DEFAULT_SETTINGS["steps"]


def test_settings_live_in_napari_plugin_settings(request, monkeypatch):
    # napari >= 0.9 keeps plugin settings declared in the manifest (Preferences shows them);
    # napari's fixtures put them under this test's tmp_path.
    import napari.settings

    if not hasattr(napari.settings, "get_plugin_settings"):
        pytest.skip("this napari has no plugin settings; the JSON file is used")
    request.getfixturevalue("plugin_settings")
    npe2pm = request.getfixturevalue("npe2pm")
    from npe2 import PluginManifest

    monkeypatch.delenv(_common.SETTINGS_ENV)
    if _common.PLUGIN_NAME not in npe2pm:
        npe2pm.register(PluginManifest.from_distribution(_common.PLUGIN_NAME))
    section = _common.napari_settings()
    assert section is not None
    # one table of defaults: the manifest's equal the widgets'
    assert section.model_dump() == _common.DEFAULT_SETTINGS == load_settings()
    save_settings(steps=7, jobs_root="/data/jobs", model="checkpoint")
    assert (load_settings()["steps"], section.jobs_root) == (7, "/data/jobs")
    path = settings_path()
    assert path.name == "napari-teramind.yaml" and "steps: 7" in path.read_text()
    with pytest.raises(ValueError):  # the manifest's schema refuses it
        save_settings(model="from-the-internet")
    with pytest.raises(ValueError, match="unknown settings"):
        save_settings(colour="red")
    assert load_settings()["model"] == "checkpoint"


def test_device_picker_lists_devices_and_remembers_choice(qtbot):
    devices = available_devices()
    assert devices[0].name == "cpu"
    picker = DevicePicker()
    qtbot.addWidget(picker)
    assert picker.count() == len(devices) and picker.device() == "cpu"
    assert picker.toolTip()
    with pytest.raises(ValueError, match="not available"):
        picker.set_device("cuda:99")
    save_settings(device="cuda:99")  # a device not present here falls back to cpu
    again = DevicePicker()
    qtbot.addWidget(again)
    assert again.device() == "cpu"


def test_model_picker(qtbot):
    picker = ModelPicker()
    qtbot.addWidget(picker)
    assert picker.spec() is None and not picker.path.isEnabled()
    picker.source.setCurrentText("checkpoint")
    with pytest.raises(ValueError, match="no checkpoint path"):
        picker.spec()
    picker.path.setText("/models/m.safetensors")
    picker.path.editingFinished.emit()
    assert picker.spec() == "/models/m.safetensors"
    again = ModelPicker()  # persisted
    qtbot.addWidget(again)
    assert again.spec() == "/models/m.safetensors"


def test_parse_slices():
    assert parse_slices("", 4, current=2) == [2]
    assert parse_slices("current", 4, current=1) == [1]
    assert parse_slices("all", 3) == [0, 1, 2]
    assert parse_slices("0, 2-3", 4) == [0, 2, 3]
    with pytest.raises(ValueError, match="outside"):
        parse_slices("5", 4)
    with pytest.raises(ValueError, match="cannot read"):
        parse_slices("a-b", 4)


def _counting(n, gate, log):
    """A library-style generator: yields progress, cleans up when closed."""
    log.append(("thread", threading.get_ident()))
    try:
        for i in range(n):
            gate.wait(5)
            yield Progress(i + 1, n, f"unit {i + 1}")
        return "result"
    finally:
        log.append(("closed", threading.get_ident()))


def test_task_panel_runs_reports_and_returns(qtbot):
    panel = TaskPanel(name="test task")
    qtbot.addWidget(panel)
    gate, log, seen, returned = threading.Event(), [], [], []
    gate.set()
    panel.run(
        _counting,
        3,
        gate,
        log,
        progress=lambda p: p,
        on_yielded=lambda p: seen.append((p.done, threading.get_ident())),
        on_returned=returned.append,
    )
    qtbot.waitUntil(panel.wait_idle, timeout=10_000)
    main = threading.get_ident()
    assert [d for d, _ in seen] == [1, 2, 3]
    assert all(t == main for _, t in seen)  # results applied on the GUI thread
    assert log[0][1] != main  # the generator ran in a worker thread
    assert returned == ["result"] and panel.state == "done"
    assert panel.bar.value() == panel.bar.maximum() == 3


def test_task_panel_bar_is_never_busy_before_the_first_progress(qtbot):
    # a busy (indeterminate) bar animates: with software OpenGL each repaint composes the whole
    # window on the CPU, which starved a 2-core job several-fold (see TaskPanel.run)
    panel = TaskPanel(name="test task")
    qtbot.addWidget(panel)
    gate, log = threading.Event(), []
    panel.run(_counting, 2, gate, log, progress=lambda p: p)  # held before its first item
    assert panel.running and panel.bar.maximum() > 0 and panel.bar.value() == 0
    assert panel.bar.text() == "starting…"
    assert panel._pbar.total > 0  # napari's activity dock: determinate too
    gate.set()
    qtbot.waitUntil(panel.wait_idle, timeout=10_000)
    assert panel.bar.maximum() == panel.bar.value() == 2 and panel.bar.text() == "100%"


def test_task_panel_cancel_closes_the_generator_in_the_worker(qtbot):
    panel = TaskPanel(name="test task")
    qtbot.addWidget(panel)
    gate, log, seen = threading.Event(), [], []
    gate.set()
    panel.run(_counting, 10_000, gate, log, progress=lambda p: p, on_yielded=seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=10_000)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    qtbot.waitUntil(panel.wait_idle, timeout=10_000)
    assert panel.state == "cancelled" and "cancelled" in panel.status.text()
    closed = [t for kind, t in log if kind == "closed"]
    assert closed and closed[0] == log[0][1]  # cleanup ran in the worker thread
    assert len(seen) < 10_000 and not panel.cancel_button.isEnabled()


def _failing():
    yield Progress(1, 2)
    raise ValueError("store has no genes; ingest transcripts first")


def test_task_panel_errors_are_notified_with_the_cause(qtbot, monkeypatch):
    messages = []
    monkeypatch.setattr(_workers, "notify_error", lambda m, exc=None: messages.append((m, exc)))
    panel = TaskPanel(name="test task")
    qtbot.addWidget(panel)
    panel.run(_failing, progress=lambda p: p)
    qtbot.waitUntil(panel.wait_idle, timeout=10_000)
    assert panel.state == "failed"
    assert messages and "ingest transcripts first" in str(messages[0][1])
    assert "ingest transcripts first" in panel.status.text()
