"""The "Evaluate" widget: metrics table and nuclei labels for a region, real vs generated."""

import numpy as np
import pytest

from _widget_helpers import (  # noqa: F401 (fixtures)
    EventLoopWatch,
    ThreadSpy,
    assert_responsive,
    content_stats,
    idle_max_gap,
    isolated_settings,
    save_screenshot,
    show_store,
    single_thread,
    tiny_phantom,
    units_consistent,
)
from napari_teramind.widgets.evaluate import WHOLE_SLICE, EvaluateWidget


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from napari_teramind.store import BrainStore

    root = tmp_path_factory.mktemp("eval")
    real = tiny_phantom(root / "real.zarr", n_slices=2)
    other = tiny_phantom(root / "generated.zarr", n_slices=2, seed=5)
    writable = BrainStore.open(other.path, mode="r+")
    writable.update_metadata({"kind": "generated"})  # a stand-in generated brain, same size
    return real, BrainStore.open(other.path, allow_incomplete=True)


def _widget(make_napari_viewer, stores, **kwargs):
    real, generated = stores
    viewer = make_napari_viewer(**kwargs)
    for store in (real, generated):
        show_store(viewer, store)
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Evaluate")
    return viewer, w


def test_evaluate_region_fills_table_and_draws_nuclei(
    make_napari_viewer, qtbot, stores, tmp_path, monkeypatch
):
    real, generated = stores
    viewer, w = _widget(make_napari_viewer, stores, show=True)
    viewer.window._qt_window.resize(1920, 1080)
    assert w.real_picker.edit.text() == str(real.path)
    assert w.generated_picker.edit.text() == str(generated.path)
    from napari_teramind.widgets.generate import REGION_LAYER

    viewer.add_shapes(
        [np.array([[32, 64], [32, 320], [224, 320], [224, 64]], float)],
        shape_type="rectangle",
        name=REGION_LAYER,
        scale=(real.pixel_size_um, real.pixel_size_um),
        face_color="transparent",
        edge_color="yellow",
        edge_width=3,
        units=("um", "um"),  # the stores' units, as napari 0.9's "new shapes" button
    )
    w.nuclei_combo.setCurrentText("classical")
    import napari_teramind.evaluate as _spied

    spy = ThreadSpy(monkeypatch, _spied, "evaluate_region")
    idle = idle_max_gap(qtbot)
    watch = EventLoopWatch(viewer)  # scored, tabled and drawn without freezing napari
    with watch:
        assert w.evaluate() is not None
        qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
        qtbot.wait(100)
    assert_responsive(watch, idle, "evaluation")  # #17 item 2
    spy.assert_off_gui_thread()  # the heavy work ran in a worker
    assert w.task.state == "done", w.task.status.text()
    headers = [w.table.horizontalHeaderItem(i).text() for i in range(w.table.columnCount())]
    assert headers == ["generated", "mean", "blur"]
    rows = w.row_keys
    assert {"psnr_dapi", "ssim_merged", "nuclei_count", "nuclei_count_real"} <= set(rows)
    # rows read as words with units, not raw keys (#17 item 6)
    labels = [w.table.verticalHeaderItem(i).text() for i in range(w.table.rowCount())]
    assert "PSNR, DAPI (dB)" in labels and "nuclei count error (%)" in labels
    assert not any("_" in label for label in labels)
    psnr = float(w.table.item(rows.index("psnr_dapi"), 0).text())
    assert np.isfinite(psnr) and psnr == pytest.approx(
        w.results["generated"].metrics["psnr_dapi"], rel=1e-3
    )
    ev = w.results["generated"]
    assert ev.region.box == (32, 224, 64, 320)
    # nuclei drawn where they were found: the real nuclei labels sit on the real DAPI
    # real nuclei as outlines over the generated ones filled, not two half-transparent fills
    assert [layer.name for layer in w.label_layers] == [
        "nuclei real, slice 0 (outlines)",
        "nuclei generated, slice 0 (filled)",
    ]
    assert w.label_layers[0].contour > 0 and w.label_layers[1].contour == 0
    assert viewer.layers.index(w.label_layers[0]) > viewer.layers.index(w.label_layers[1])
    labels = w.label_layers[0]
    assert labels.data.max() == ev.metrics["nuclei_count_real"] > 0
    dapi = np.asarray(real.images()[0, 0].compute())
    y, x = np.nonzero(ev.labels_real)
    world = labels.data_to_world((0, y[0], x[0]))
    assert world[-2] == pytest.approx((32 + y[0]) * real.pixel_size_um)
    inside = dapi[32:224, 64:320][ev.labels_real > 0].mean()
    outside = dapi[32:224, 64:320][(ev.labels_real == 0) & ev.tissue].mean()
    assert inside > outside
    # the nuclei layers share the stores' units: napari has no "inconsistent units" warning
    assert units_consistent(viewer)  # no napari units warning

    for layer in viewer.layers:
        layer.visible = layer.name in ("real DAPI", labels.name, REGION_LAYER)
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit, std = content_stats(shot)
    assert lit > 0.05 and std > 10, (lit, std)
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), "evaluate-window.png")
    # the table can be kept: CSV file and clipboard (#17 item 6)
    path = w.save_csv(str(tmp_path / "metrics.csv"))
    text = open(path, encoding="utf-8").read().splitlines()
    assert text[0] == "metric,generated,mean,blur"
    assert any(line.startswith('"PSNR, DAPI (dB)"') for line in text)
    assert w.copy_table().splitlines()[0] == "metric\tgenerated\tmean\tblur"
    # a model that loses to a baseline is flagged in words
    assert w.verdict.text()


def test_whole_slice_without_baselines(make_napari_viewer, qtbot, stores, monkeypatch):
    _, w = _widget(make_napari_viewer, stores)
    from napari_teramind.widgets import evaluate

    messages = []
    monkeypatch.setattr(evaluate, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    assert w.evaluate() is None and "no region rectangle" in messages[-1]
    w.where_combo.setCurrentText(WHOLE_SLICE)
    w.baselines_box.setChecked(False)
    w.metric_boxes["nuclei"].setChecked(False)
    w.evaluate()
    qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
    assert list(w.results) == ["generated"] and not w.label_layers
    assert w.results["generated"].region.box == (0, 256, 0, 384)


def test_verdict_and_recorded_regions():
    from napari_teramind.widgets.evaluate import baseline_verdict, recorded_box

    won = {"generated": {"psnr_merged": 30.0, "ssim_merged": 0.8}, "blur": {"psnr_merged": 20.0}}
    assert baseline_verdict(won) == ""
    lost = {"generated": {"psnr_merged": 12.0, "ssim_merged": 0.2},
            "mean": {"psnr_merged": 15.0, "ssim_merged": 0.1}}  # fmt: skip
    assert "mean baseline on PSNR, both stains (dB)" in baseline_verdict(lost)
    meta = {"generated_regions": [{"region": [0, 128, 64, 192], "slices": [1]}]}
    assert recorded_box(meta, 1, (32, 256, 0, 128)) == (32, 128, 64, 128)
    assert recorded_box(meta, 0, (32, 256, 0, 128)) is None  # slice 0 never generated
    assert recorded_box(meta, 1, (200, 256, 0, 64)) is None  # no overlap


def test_a_slice_never_generated_is_refused(make_napari_viewer, stores, monkeypatch):
    from napari_teramind.store import BrainStore
    from napari_teramind.widgets import evaluate

    _, generated = stores
    store = BrainStore.open(generated.path, mode="r+", allow_incomplete=True)
    old = dict(store.metadata)
    store.update_metadata({"generated_regions": [{"region": [0, 128, 0, 128], "slices": [1]}]})
    try:
        _, w = _widget(make_napari_viewer, stores)
        messages = []
        monkeypatch.setattr(evaluate, "notify_error", lambda m, exc=None: messages.append(str(exc)))
        w.where_combo.setCurrentText(WHOLE_SLICE)
        assert w.evaluate() is None  # on slice 0, which was never generated
        assert "slice 0 of this region was never generated" in messages[-1]
        assert "generated slices: 1" in messages[-1]
    finally:
        store.update_metadata({"generated_regions": old.get("generated_regions", [])})
