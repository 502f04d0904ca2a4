"""The "Browse brain stores" widget end to end, and a screenshot that shows the tissue."""

import numpy as np
import pytest

from _napari_helpers import make_store
from _widget_helpers import grid_cell, save_screenshot, units_consistent
from napari_teramind.widgets._common import viewer_grid
from napari_teramind.widgets.browse import (
    NEXT_SLICE_KEY,
    OVERLAY,
    PREVIOUS_SLICE_KEY,
    SIDE_BY_SIDE,
    BrowseWidget,
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    real = make_store(root / "real.zarr", kind="real", seed=0)
    generated = make_store(root / "generated.zarr", kind="generated", seed=1)
    return real, generated


def _widget(make_napari_viewer, qtbot, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    widget = BrowseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Browse brain stores")
    return viewer, widget


def _wait_workers(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.workers, timeout=20_000)


def test_browse_end_to_end(make_napari_viewer, qtbot, stores):
    real, generated = stores
    viewer, w = _widget(make_napari_viewer, qtbot)
    w.path_edits["real"].setText(str(real.path))
    w.path_edits["generated"].setText(str(generated.path))
    w.open_button.click()
    assert set(w.stores) == {"real", "generated"}
    from napari_teramind.layers import store_display_name

    gen = store_display_name(generated)  # a generic store name gets its folder
    assert gen.endswith(" generated") and gen != "generated"
    names = [layer.name for layer in viewer.layers]
    assert names == ["real DAPI", "real PolyT", f"{gen} DAPI", f"{gen} PolyT"]
    assert w.slice_slider.maximum() == real.n_slices - 1

    # every control explains itself
    from qtpy.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QListWidget, QSlider

    for cls in (QAbstractButton, QComboBox, QLineEdit, QListWidget, QSlider):
        for child in w.findChildren(cls):
            if isinstance(child.parent(), QLineEdit):  # Qt's own clear button
                continue
            assert child.toolTip(), f"{cls.__name__} {child.objectName() or child} has no tooltip"

    # gene picker: filter, select, layers appear lazily for both stores
    w.gene_filter.setText("slc17")
    visible = [
        w.gene_list.item(i).text()
        for i in range(w.gene_list.count())
        if not w.gene_list.item(i).isHidden()
    ]
    assert visible == ["Slc17a6", "Slc17a7"]
    w.select_genes(["Slc17a7"])
    w.show_genes_button.click()
    _wait_workers(qtbot, w)
    assert "real Slc17a7" in viewer.layers and f"{gen} Slc17a7" in viewer.layers
    gene = viewer.layers["real Slc17a7"]
    assert gene.scale[1] == real.pixel_size_um * real.gene_block_px

    # linked contrast between real and generated layers of the same stain / gene
    viewer.layers["real DAPI"].contrast_limits = (10, 200)
    assert tuple(viewer.layers[f"{gen} DAPI"].contrast_limits) == (10, 200)
    viewer.layers[f"{gen} Slc17a7"].contrast_limits = (0, 3)
    assert tuple(viewer.layers["real Slc17a7"].contrast_limits) == (0, 3)

    # slices: slider, viewer dims and key bindings stay in sync
    w.slice_slider.setValue(1)
    assert viewer.dims.point[0] == pytest.approx(real.slice_spacing_um)
    assert w.current_slice() == 1
    viewer.dims.set_point(0, 0.0)
    assert w.slice_slider.value() == 0
    from app_model.types import KeyBinding

    viewer.keymap[KeyBinding.from_str(NEXT_SLICE_KEY)](viewer)  # the bound shortcut
    assert w.current_slice() == 1
    viewer.keymap[KeyBinding.from_str(PREVIOUS_SLICE_KEY)](viewer)
    assert w.current_slice() == 0
    w.step_slice(5)
    assert w.current_slice() == real.n_slices - 1

    # stains and regions toggle
    w.stain_boxes["PolyT"].setChecked(False)
    assert not viewer.layers["real PolyT"].visible and not viewer.layers[f"{gen} PolyT"].visible
    # the region overlay is off by default (it tints everything) and faint when shown
    assert not w.regions_box.isChecked() and "real regions" not in viewer.layers
    w.regions_box.setChecked(True)
    assert viewer.layers["real regions"].visible and viewer.layers["real regions"].opacity <= 0.3
    w.regions_box.setChecked(False)
    assert not viewer.layers["real regions"].visible

    # overlay cross-fade, then side by side in napari's grid, one cell per store
    w.set_mode(OVERLAY)
    w.opacity_slider.setValue(25)
    assert viewer.layers[f"{gen} DAPI"].opacity == pytest.approx(0.25)
    assert viewer.layers["real DAPI"].opacity == pytest.approx(0.75)
    w.set_mode(SIDE_BY_SIDE)
    grid = viewer_grid(viewer)
    assert grid.enabled and grid.stride == 4
    layers = list(viewer.layers)
    cells = {
        layer.name: grid_cell(grid, i, layers) for i, layer in enumerate(layers) if layer.visible
    }
    assert len(set(cells.values())) == 2
    assert cells["real DAPI"] == cells["real Slc17a7"] != cells[f"{gen} DAPI"]
    assert viewer.layers[f"{gen} DAPI"].opacity == 1
    w.set_mode(OVERLAY)
    assert not grid.enabled

    # removing genes; reopening without a generated store drops its layers
    w.remove_genes(["Slc17a7"])
    assert not any("Slc17a7" in layer.name for layer in viewer.layers)
    w.path_edits["generated"].setText("")
    w.open_button.click()
    assert set(w.stores) == {"real"}
    assert not any(layer.name.startswith(gen) for layer in viewer.layers)


def test_widget_adopts_a_store_opened_by_the_reader(make_napari_viewer, qtbot, stores):
    real, _ = stores
    viewer = make_napari_viewer()
    viewer.open(str(real.path), plugin="napari-teramind")
    w = BrowseWidget(viewer)
    viewer.window.add_dock_widget(w)
    assert w.path_edits["real"].text() == str(real.path)
    assert len(viewer.layers) == 3  # nothing added twice
    w.show_genes(["Th"])
    _wait_workers(qtbot, w)
    assert "real Th" in viewer.layers


def test_open_errors_are_notified_not_raised(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_teramind.widgets import browse

    messages = []
    monkeypatch.setattr(browse, "_error", messages.append)
    _, w = _widget(make_napari_viewer, qtbot)
    w.path_edits["real"].setText(str(tmp_path / "nothing.zarr"))
    w.open_button.click()
    assert messages and "nothing.zarr" in messages[0] and not w.stores


def _tissue_stats(img: np.ndarray) -> tuple[float, float]:
    rgb = img[..., :3].astype(float)
    lit = (rgb.max(axis=-1) > 30).mean()
    return float(lit), float(rgb.std())


def test_screenshot_shows_tissue(make_napari_viewer, qtbot, stores):
    real, generated = stores
    viewer, w = _widget(make_napari_viewer, qtbot, show=True)
    viewer.window._qt_window.resize(1920, 1080)
    w.open_store(real.path, "real")
    w.show_genes(["Slc17a7"])
    _wait_workers(qtbot, w)
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit, std = _tissue_stats(shot)
    assert lit > 0.2 and std > 15, (lit, std)
    save_screenshot(shot, "browse.png")
    assert units_consistent(viewer)  # no napari units warning
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), "browse-window.png")

    w.open_store(generated.path, "generated")
    w.set_mode(SIDE_BY_SIDE)
    viewer.reset_view()
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    lit, std = _tissue_stats(shot)
    assert lit > 0.15 and std > 15, (lit, std)
    half = shot.shape[1] // 2
    assert _tissue_stats(shot[:, :half])[0] > 0.1 and _tissue_stats(shot[:, half:])[0] > 0.1
    save_screenshot(shot, "browse-side-by-side.png")
