"""The "Attention maps" widget end to end: compute GLUT maps, overlays aligned, the plot."""

import numpy as np
import pytest

from _widget_helpers import (  # noqa: F401 (fixtures)
    EventLoopWatch,
    ThreadSpy,
    assert_responsive,
    content_stats,
    idle_max_gap,
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


def test_attention_compute_overlay_and_plot(
    make_napari_viewer, qtbot, phantom, tmp_path, monkeypatch
):
    viewer, w = _widget(make_napari_viewer, phantom, tmp_path, show=True)
    viewer.window._qt_window.resize(1920, 1080)
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

    import napari_teramind.attention as _spied

    spy = ThreadSpy(monkeypatch, _spied, "iter_attention_maps")
    idle = idle_max_gap(qtbot)
    watch = EventLoopWatch(viewer)  # the maps are computed, shown and plotted: no freeze
    with watch:
        worker = w.compute()
        assert worker is not None
        qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
        qtbot.waitUntil(lambda: w.plot is not None and w.plot.points > 0, timeout=20_000)
        qtbot.wait(100)
    assert_responsive(watch, idle, "attention")  # #17 item 2
    spy.assert_off_gui_thread()  # the heavy work ran in a worker
    assert w.task.state == "done", w.task.status.text()
    assert w.map_name == "GLUT" and "GLUT" in phantom.attention_names()
    names = [layer.name for layer in w.layers]
    # only the 'all' maps at first, readable over the tissue, with a colour bar (#17 items 5, 7)
    assert sorted(names) == ["brain GLUT all:Slc17a6", "brain GLUT all:Slc17a7"]
    assert all(layer.opacity == pytest.approx(0.6) for layer in w.layers)
    if hasattr(w.layers[0], "colorbar"):
        assert all(layer.colorbar.visible for layer in w.layers)
    # gene colours stay apart from the stains' green and blue
    from napari_teramind.layers import gene_color

    assert [gene_color(g) for g in ("Slc17a6", "Slc17a7")] == [(1.0, 0.0, 1.0), (1.0, 0.55, 0.0)]
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
    png = w.plot.save_png(str(tmp_path / "plot.png"))
    assert open(png, "rb").read(4) == b"\x89PNG"
    # the map can be loaded again from the store
    w.load("GLUT")
    qtbot.waitUntil(w.task.wait_idle, timeout=20_000)
    assert [layer.name for layer in w.layers] == names
    att = next(layer for layer in w.layers if "all:Slc17a7" in layer.name)
    more = w.show_more()  # up, down and expression on demand, hidden
    assert any("up:" in layer.name for layer in more) and any(
        "expr:Slc17a6" in x.name for x in more
    )
    assert not any(layer.visible for layer in more) and not w.more_button.isEnabled()

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


def test_a_gene_outside_the_panel_is_refused_before_the_worker(
    make_napari_viewer, phantom, tmp_path, monkeypatch
):
    from napari_teramind.widgets import attention

    messages = []
    monkeypatch.setattr(attention, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    _, w = _widget(make_napari_viewer, phantom, tmp_path)
    w.preset_combo.setCurrentText(CUSTOM)
    w.gene_combos[0].setCurrentText("Slc17a6")
    w.gene_combos[1].setCurrentText("Notagene1")
    assert w.compute() is None and not w.task.running
    assert "Notagene1 is not in the gene panel" in messages[-1] and "Pair list" in messages[-1]


def test_an_uncomputed_slice_says_so(qtbot):
    import pandas as pd

    from napari_teramind.attention.plots import TrendResult
    from napari_teramind.widgets.attention import AttentionPlot

    plot = AttentionPlot()
    qtbot.addWidget(plot)
    empty = pd.DataFrame(columns=["gene", "expression", "attention"])
    fits = pd.DataFrame(columns=["gene", "slope", "intercept", "r", "n"])
    plot.plot(
        TrendResult(data=empty, fits=fits, path=None), "GLUT, slice 3", "computed: slices 0, 1"
    )
    texts = [t.get_text() for t in plot.axes.texts]
    assert plot.points == 0 and any("No attention on this slice" in t for t in texts)
    assert any("computed: slices 0, 1" in t for t in texts)


def test_contrast_overlay_has_a_colour_bar_with_its_range(
    make_napari_viewer, qtbot, phantom, tmp_path
):
    """Compute with a contrast: the z overlay is diverging about 0, its bar drawn (#16 item 3)."""
    from napari_teramind.attention.contrast import contrast_summary

    viewer, w = _widget(make_napari_viewer, phantom, tmp_path, show=True)
    w.slices_edit.setText("0")
    w.contrast_combo.setCurrentIndex(w.contrast_combo.findData("random"))
    assert w.compute() is not None
    qtbot.waitUntil(w.task.wait_idle, timeout=120_000)
    assert w.task.state == "done", w.task.status.text()
    assert "GLUT-contrast" in phantom.attention_names()
    assert w.maps_combo.findText("GLUT-contrast") >= 0
    (z,) = [layer for layer in w.layers if layer.name.endswith("GLUT-contrast z")]
    assert z.visible and z.colormap.name == "PiYG"
    lo, hi = z.contrast_limits  # symmetric about 0, covering every z of the map
    zmax = float(np.abs(np.asarray(z.data[-1])).max())
    assert lo == -hi and hi >= max(zmax, 3.0) - 1e-6
    assert np.isfinite(contrast_summary(phantom, "GLUT-contrast")["z"])
    if not hasattr(z, "colorbar"):
        pytest.skip("this napari has no layer colour bars")
    assert z.colorbar.visible
    # the bar is drawn on the canvas: hiding it changes the picture
    for layer in viewer.layers:
        layer.visible = layer is z or layer.name == "brain DAPI"
    for layer in w.layers:
        if layer is not z:
            layer.colorbar.visible = False
    viewer.reset_view()
    qtbot.wait(300)
    with_bar = viewer.screenshot(canvas_only=True, flash=False)
    save_screenshot(with_bar, "attention-contrast.png")
    z.colorbar.visible = False
    qtbot.wait(300)
    without = viewer.screenshot(canvas_only=True, flash=False)
    changed = np.abs(with_bar[..., :3].astype(int) - without[..., :3].astype(int)).sum(-1) > 30
    assert 0.002 < changed.mean() < 0.2, changed.mean()
    # a contrast map alone loads with its bar and no trend plot
    w.load("GLUT-contrast")
    qtbot.waitUntil(w.task.wait_idle, timeout=20_000)
    assert [layer.name for layer in w.layers] == [z.name] and w.layers[0].colorbar.visible
