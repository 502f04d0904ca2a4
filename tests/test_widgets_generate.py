"""The "Generate a region" widget end to end on a tiny phantom with a tiny model."""

import itertools
import time

import numpy as np
import pytest

from _widget_helpers import (  # noqa: F401 (fixtures)
    EventLoopWatch,
    ThreadSpy,
    assert_responsive,
    content_stats,
    grid_shape,
    idle_max_gap,
    isolated_settings,
    model_spec,
    save_screenshot,
    show_store,
    single_thread,
    tiny_phantom,
    units_consistent,
)
from napari_teramind.widgets._common import viewer_grid
from napari_teramind.widgets.generate import REGION_LAYER, GenerateWidget


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return tiny_phantom(tmp_path_factory.mktemp("gen") / "brain.zarr")


def _widget(make_napari_viewer, phantom, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    show_store(viewer, phantom)
    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate a region")
    return viewer, widget


def test_region_rectangle_and_coordinates_stay_in_sync(make_napari_viewer, phantom):
    viewer, w = _widget(make_napari_viewer, phantom)
    assert w.store_picker.edit.text() == str(phantom.path)  # adopted from the open layers
    layer = w.place_rectangle()
    assert layer is viewer.layers[REGION_LAYER]
    y0, y1, x0, x1 = w.region()
    assert 0 <= y0 < y1 <= phantom.height and 0 <= x0 < x1 <= phantom.width
    # snapped to the 64 px patch grid at once (#17 item 8)
    assert all(v % 64 == 0 or v in (phantom.height, phantom.width) for v in (y0, y1, x0, x1))
    # the fields cannot leave the canvas: y0 5000 is clipped to the section's height
    w.coord_spins["y0"].setValue(5000)
    assert w.coord_spins["y0"].value() == phantom.height
    assert "y0 (top) must be above y1" in w.region_hint.text()
    w.set_region((y0, y1, x0, x1))
    assert w.region_hint.text() == ""
    # typed coordinates move the rectangle (in pixels; the layer scale makes it micrometres)
    w.set_region((64, 192, 128, 256))
    corners = np.asarray(layer.data[0])
    assert corners[:, -2].min() == 64 and corners[:, -2].max() == 192
    assert corners[:, -1].min() == 128 and corners[:, -1].max() == 256
    world = layer.data_to_world(corners[0])
    assert world[-1] == pytest.approx(128 * phantom.pixel_size_um, abs=phantom.pixel_size_um)
    # moving the rectangle updates the coordinates
    layer.data = [corners + [32, 64]]
    assert w.region() == (96, 224, 192, 320)
    # every control explains itself
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit

    for cls in (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox):
        for child in w.findChildren(cls):
            if isinstance(child.parent(), QLineEdit | QAbstractSpinBox):
                continue
            assert child.toolTip(), f"{cls.__name__} {child} has no tooltip"


def test_bad_input_is_notified(make_napari_viewer, phantom, monkeypatch):
    from napari_teramind.widgets import generate

    messages = []
    monkeypatch.setattr(generate, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    _, w = _widget(make_napari_viewer, phantom)
    w.set_region((0, 0, 0, 0))
    assert w.generate() is None and "empty" in messages[-1]
    w.set_region((0, 128, 0, 128))
    w.slices_edit.setText("9")
    assert w.generate() is None and "outside" in messages[-1]


def needs_generate_roi():
    """Skip until the generate branch (``generate_roi``) is merged."""
    module = pytest.importorskip("napari_teramind.generate")
    if not hasattr(module, "generate_roi"):
        pytest.skip("napari_teramind.generate.generate_roi is not merged yet")


def _generate_until_done(qtbot, w, timeout=420_000):
    qtbot.waitUntil(w.task.wait_idle, timeout=timeout)


def test_generate_region_end_to_end(make_napari_viewer, qtbot, phantom, tmp_path, monkeypatch):
    needs_generate_roi()
    viewer, w = _widget(make_napari_viewer, phantom, show=True)
    viewer.window._qt_window.resize(1920, 1080)
    spec = model_spec(tmp_path, phantom)
    if spec is not None:
        w.model_picker.source.setCurrentText("checkpoint")
        w.model_picker.path.setText(spec)
    w.set_region((64, 192, 64, 192))
    w.slices_edit.setText("1")
    w.steps_spin.setValue(15)  # published; the screenshot shows a real result
    w.block_spin.setValue(64)
    w.output_edit.setText(str(tmp_path / "generated.zarr"))

    previews = []
    handler = []  # time spent in the widget's own progress handler (GUI thread)
    on_progress = w._on_progress

    def timed(item):
        start = time.perf_counter()
        on_progress(item)
        handler.append(time.perf_counter() - start)

    w._on_progress = timed
    show_result = w.show_result
    result_s = []

    def timed_result(result):
        start = time.perf_counter()
        layers = show_result(result)
        result_s.append(time.perf_counter() - start)
        return layers

    w.show_result = timed_result
    import napari_teramind.generate as _spied

    spy = ThreadSpy(monkeypatch, _spied, "generate_roi")
    idle = idle_max_gap(qtbot)  # what this machine's load alone costs the event loop
    # the GUI thread stays responsive: a 20 ms timer keeps ticking during the whole run,
    # preview updates and the result replacing the preview included (#17 item 2)
    watch = EventLoopWatch(viewer)
    with watch:
        worker = w.generate()
        assert worker is not None
        worker.yielded.connect(
            lambda item: previews.append(None if item.preview is None else item.preview.copy())
        )
        _generate_until_done(qtbot, w)
        qtbot.wait(100)  # the result handler ran; let the timer tick once more after it
    assert w.task.state == "done", w.task.status.text()
    # napari adds the two preview layers once per run: the result takes them over, nothing
    # is removed or added; those two gaps are napari's own (see MAX_INSERT_GAP_S)
    assert len(watch.inserted) == 2 and len(watch.insert_gaps) <= 2, watch.inserted
    print(f"preview handler max {max(handler):.3f} s, result handler {result_s}")
    assert_responsive(watch, idle, "generation")
    spy.assert_off_gui_thread()  # the heavy work ran in a worker
    assert np.median(handler) < 0.05, f"preview updates take {np.median(handler):.2f} s"

    # the live preview changed as the image emerged from noise
    shown = [p for p in previews if p is not None]
    assert len(shown) >= 2 and w.previews_shown >= 2
    assert any(not np.array_equal(a, b) for a, b in itertools.pairwise(shown))
    # the result: a generated store, shown over the real region, preview removed
    from napari_teramind.store import BrainStore

    gen = BrainStore.open(tmp_path / "generated.zarr", allow_incomplete=True)
    img = np.asarray(gen.images()[:, 1, 64:192, 64:192])
    assert img.std() > 0
    assert w.result_layers and not any("preview" in layer.name for layer in viewer.layers)
    assert not any(layer.metadata.get("teramind_role") == "preview" for layer in viewer.layers)
    assert [layer.metadata["teramind_store"] for layer in w.result_layers] == [str(gen.path)] * 2
    assert np.allclose(w.result_layers[0].scale[-2:], viewer.layers[0].scale[-2:])
    # the region sits where it was generated, in world micrometres
    corner = w.result_layers[0].data_to_world((1, 0, 0))
    expected = viewer.layers[0].data_to_world((1, 64, 64))
    assert np.allclose(corner[-2:], expected[-2:])
    shown = np.asarray(w.result_layers[0].data)[1]
    assert np.array_equal(shown, np.asarray(gen.images()[0, 1, 64:192, 64:192]))
    # rectangle, preview and result layers share the stores' units (no napari units warning)
    assert units_consistent(viewer)  # no napari units warning

    # screenshot: real section with the generated region in it (opaque: it replaces the real
    # pixels instead of brightening them), rectangle on top; default colours
    assert w.result_layers[0].blending == "translucent_no_depth"
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit, std = content_stats(shot)
    assert lit > 0.1 and std > 10, (lit, std)
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), "generate-window.png")

    # side by side: Browse docked once, real and generated in two grid cells
    browse = w.compare()
    assert browse is not None and set(browse.stores) == {"real", "generated"}
    grid = viewer_grid(viewer)
    assert grid.enabled and grid_shape(grid, list(viewer.layers)) == (1, 2)  # #17 item 4
    assert w.compare() is browse
    # Browse reuses the result layers: no second "generated DAPI"
    stains = [x for x in viewer.layers if x.metadata.get("teramind_role") == "stain"]
    from napari_teramind.layers import store_display_name

    prefix = store_display_name(gen)  # "<folder> generated": which run it comes from
    assert prefix.endswith(" generated") and w.result_layers[0].name == f"{prefix} DAPI"
    assert [x for x in stains if x.name.startswith(prefix)] == w.result_layers
    viewer.reset_view()
    qtbot.wait(300)
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), "generate-side-by-side.png")


def test_cancel_stops_generation(make_napari_viewer, qtbot, phantom, tmp_path):
    needs_generate_roi()
    viewer, w = _widget(make_napari_viewer, phantom)
    spec = model_spec(tmp_path, phantom)
    if spec is not None:
        w.model_picker.source.setCurrentText("checkpoint")
        w.model_picker.path.setText(spec)
    w.set_region((0, 256, 0, 384))
    w.steps_spin.setValue(50)
    w.block_spin.setValue(64)
    w.output_edit.setText(str(tmp_path / "cancelled.zarr"))
    seen = []
    worker = w.generate()
    worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=60_000)
    w.task.cancel_button.click()
    _generate_until_done(qtbot, w)
    assert w.task.state == "cancelled"
    assert seen[-1].units_done < seen[-1].units_total
    assert not w.result_layers
    # cancel is reported as such and the partial preview is gone (#17 item 3)
    assert "cancelled" in w.task.status.text() and "step" not in w.task.status.text()
    assert w.task.bar.value() < w.task.bar.maximum()
    assert not w.preview_layers
    assert not any(layer.metadata.get("teramind_role") == "preview" for layer in viewer.layers)
