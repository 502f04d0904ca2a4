"""The "Attention maps" widget end to end: compute GLUT maps, overlays aligned, the plot."""

import numpy as np
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
from napari_teramind.widgets.attention import CUSTOM, AttentionWidget


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return tiny_phantom(tmp_path_factory.mktemp("att") / "brain.zarr", n_slices=2)


def _widget(make_napari_viewer, phantom, tmp_path, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    show_store(viewer, phantom)
    widget = AttentionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Attention maps")
    spec = model_spec(tmp_path, phantom)
    if spec is not None:
        widget.model_picker.source.setCurrentText("checkpoint")
        widget.model_picker.path.setText(spec)
    return viewer, widget


def test_attention_compute_overlay_and_plot(make_napari_viewer, qtbot, phantom, tmp_path):
    viewer, w = _widget(make_napari_viewer, phantom, tmp_path, show=True)
    viewer.window._qt_window.resize(1400, 800)
    assert w.store is not None and w.gene_combos[0].count() == len(phantom.panel)
    assert [c.currentText() for c in w.gene_combos] == ["Slc17a6", "Slc17a7"]
    assert not w.gene_combos[0].isEnabled()
    # a custom pair: searchable, case-insensitive, any part of the symbol
    w.preset_combo.setCurrentText(CUSTOM)
    completer = w.gene_combos[1].completer()
    completer.setCompletionPrefix("qp4")
    model = completer.completionModel()
    found = [model.index(i, 0).data() for i in range(model.rowCount())]
    assert found == ["Aqp4"]
    w.preset_combo.setCurrentText("GLUT")

    worker = w.compute()
    assert worker is not None
    qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
    assert w.task.state == "done", w.task.status.text()
    assert w.map_name == "GLUT" and "GLUT" in phantom.attention_names()
    names = [layer.name for layer in w.layers]
    assert any("all:Slc17a7" in n for n in names) and any("up:" in n for n in names)
    assert any("expr:Slc17a6" in n for n in names)
    # aligned with the images: same world extent in y and x as the stains
    stain = viewer.layers["brain DAPI"]
    att = next(layer for layer in w.layers if "all:Slc17a7" in layer.name)
    s_lo, s_hi = stain.extent.world
    a_lo, a_hi = att.extent.world
    assert np.allclose(a_lo[-2:], s_lo[-2:], atol=16 * phantom.pixel_size_um)
    assert np.allclose(a_hi[-2:], s_hi[-2:], atol=16 * phantom.pixel_size_um)
    assert att.blending == "additive"
    # the plot dock shows expression vs attention points (read in a worker thread)
    qtbot.waitUntil(lambda: w.plot is not None and w.plot.points > 0, timeout=20_000)
    # a slice change re-plots that slice; changes during a read are not lost
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(0, 0)
    qtbot.waitUntil(lambda: not w._plotter.busy, timeout=20_000)
    assert w.plot.axes.get_title().endswith("slice 0")
    # the map can be loaded again from the store
    w.load("GLUT")
    qtbot.waitUntil(w.task.wait_idle, timeout=20_000)
    assert [layer.name for layer in w.layers] == names
    att = next(layer for layer in w.layers if "all:Slc17a7" in layer.name)

    for layer in viewer.layers:
        layer.visible = layer in (stain, att)
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit, std = content_stats(shot)
    assert lit > 0.1 and std > 10, (lit, std)
    save_screenshot(shot, "attention.png")
    full = viewer.screenshot(canvas_only=False, flash=False)
    assert units_consistent(viewer)  # no napari units warning
    save_screenshot(full, "attention-window.png")


def test_custom_pair_needs_two_genes(make_napari_viewer, phantom, tmp_path, monkeypatch):
    from napari_teramind.widgets import attention

    messages = []
    monkeypatch.setattr(attention, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    _, w = _widget(make_napari_viewer, phantom, tmp_path)
    w.preset_combo.setCurrentText(CUSTOM)
    w.gene_combos[1].setCurrentText("")
    assert w.compute() is None and "two genes" in messages[-1]
