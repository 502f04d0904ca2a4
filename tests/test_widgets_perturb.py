"""The "Perturb genes" widget in a real napari window on a tiny phantom with a tiny model."""

from pathlib import Path

import numpy as np
import pytest

from _widget_helpers import (  # noqa: F401 (fixtures)
    isolated_settings,
    save_screenshot,
    show_store,
    single_thread,
    tiny_phantom,
    units_consistent,
)
from napari_teramind.widgets.perturb import MASK_LAYER, PerturbWidget, shapes_polygons


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return tiny_phantom(tmp_path_factory.mktemp("perturb-w") / "brain.zarr")


@pytest.fixture(scope="module")
def tiny_model(phantom, tmp_path_factory):
    """A seeded random tiny checkpoint (fast on two shared cores)."""
    import torch

    from napari_teramind.model import ModelConfig, TeraMindUNet
    from napari_teramind.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", len(phantom.panel.names))
    path = tmp_path_factory.mktemp("perturb-model") / "tiny-model"
    save_checkpoint(path, TeraMindUNet(config), config, list(phantom.panel.names))
    return str(path)


def _widget(make_napari_viewer, phantom, tiny_model, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    show_store(viewer, phantom)
    w = PerturbWidget(viewer)
    viewer.window.add_dock_widget(w, name="Perturb genes")
    w.model_picker.source.setCurrentText("checkpoint")
    w.model_picker.path.setText(tiny_model)
    return viewer, w


def _top_gene(store, region, z=1):
    y0, y1, x0, x1 = (v // 16 for v in region)
    counts = np.asarray(store.zarr_array("genes", 0)[:, z, y0:y1, x0:x1]).sum(axis=(1, 2))
    return store.panel.names[int(counts.argmax())]


def test_ellipse_becomes_a_polygon_and_lines_are_refused():
    rect = np.array([[0, 0], [0, 40], [20, 40], [20, 0]], float)
    (poly,) = shapes_polygons([rect], ["ellipse"])
    assert poly.shape == (64, 2)
    assert np.allclose(poly.mean(axis=0), [10, 20]) and np.isclose(np.ptp(poly[:, 1]), 40)
    with pytest.raises(ValueError, match="encloses no area"):
        shapes_polygons([rect[:2]], ["line"])


def test_bad_input_is_notified_before_work(make_napari_viewer, qtbot, phantom, tiny_model,
                                           monkeypatch):  # fmt: skip
    from napari_teramind.widgets import perturb

    messages = []
    monkeypatch.setattr(perturb, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    _, w = _widget(make_napari_viewer, phantom, tiny_model)
    w.set_region((64, 192, 64, 192))
    w.slices_edit.setText("1")
    assert w.generate() is None and "no edit" in messages[-1]
    assert w.gene_combo.count() == len(phantom.panel)  # the store's genes to pick from
    w.add_edit("knockout", "Thh")
    assert w.generate() is not None  # refused in the worker, before any unit runs
    qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
    assert w.task.state == "failed" and "unknown gene 'Thh'" in str(w.task.last_error)
    assert not (Path(w.default_output(phantom)).with_suffix(".job")).exists()


def test_perturb_in_a_real_window(make_napari_viewer, qtbot, phantom, tiny_model, tmp_path):
    viewer, w = _widget(make_napari_viewer, phantom, tiny_model, show=True)
    viewer.window._qt_window.resize(1400, 900)
    region = (64, 192, 64, 192)
    w.set_region(region)
    w.slices_edit.setText("1")
    w.steps_spin.setValue(2)
    w.block_spin.setValue(64)
    w.output_edit.setText(str(tmp_path / "ko.zarr"))
    gene = _top_gene(phantom, region)
    w.gene_combo.setCurrentText(gene)
    w.kind_combo.setCurrentText("knockout")
    w.add_edit()
    assert w.edit_list.count() == 1 and w.edit_list.item(0).text() == f"knockout {gene}"
    # a mask: the left half of the region, drawn as a rectangle on the mask layer
    layer = w.mask_layer()
    assert layer is viewer.layers[MASK_LAYER] and layer.mode == "add_polygon"
    layer.add_rectangles(np.array([[64, 64], [192, 128]], float))
    seen = []
    worker = w.generate()
    assert worker is not None
    worker.yielded.connect(seen.append)
    qtbot.waitUntil(w.task.wait_idle, timeout=180_000)
    assert w.task.state == "done", w.task.status.text()
    # progress went through both runs: unedited, then edited
    assert seen[0].name == "unedited" and seen[-1].name == "edited"
    assert w.task.bar.value() == w.task.bar.maximum()
    # the edited store: the gene is zero in the mask only, the edit recorded
    from napari_teramind.store import BrainStore

    out = BrainStore.open(tmp_path / "ko.zarr")
    g = list(phantom.panel.names).index(gene)
    genes = np.asarray(out.zarr_array("genes", 0)[g, 1, 4:12, 4:12])
    real = np.asarray(phantom.zarr_array("genes", 0)[g, 1, 4:12, 4:12])
    assert not genes[:, :4].any() and np.array_equal(genes[:, 4:], real[:, 4:])
    (edit,) = out.metadata["generated_regions"][-1]["edits"]
    assert edit["gene"] == gene and edit["mask"]["shape_blocks"] == [8, 8]
    # unedited / edited / difference, aligned over the region
    names = [layer.name for layer in w.perturb_layers]
    assert "perturb difference DAPI" in names and "perturb edited DAPI" in names
    by_name = {layer.name: layer for layer in w.perturb_layers}
    diff = by_name["perturb difference DAPI"]
    edited = by_name["perturb edited DAPI"]
    assert np.allclose(diff.translate, edited.translate) and np.allclose(diff.scale, edited.scale)
    assert np.allclose(edited.translate[-1], viewer.layers[0].translate[-1] + 64 * diff.scale[-1])
    assert np.array_equal(
        np.asarray(diff.data),
        np.asarray(edited.data, np.int16) - np.asarray(by_name["perturb unedited DAPI"].data),
    )
    assert np.abs(np.asarray(diff.data)).sum() > 0
    assert units_consistent(viewer)
    # the nuclei table: one row per region, unedited -> edited
    assert w.table.rowCount() >= 2
    assert w.table.horizontalHeaderItem(0).text() == "slice"
    assert w.table.item(0, 1).text() == "all" and w.table.item(1, 1).text() == "edited"
    assert "->" in w.table.item(0, 2).text()
    viewer.reset_view()
    qtbot.wait(200)
    save_screenshot(viewer.screenshot(canvas_only=False, flash=False), "perturb-window.png")


def test_cancel_stops_the_perturbation(make_napari_viewer, qtbot, phantom, tiny_model, tmp_path):
    _, w = _widget(make_napari_viewer, phantom, tiny_model)
    w.set_region((0, 256, 0, 384))
    w.slices_edit.setText("1")
    w.steps_spin.setValue(50)
    w.block_spin.setValue(64)
    w.output_edit.setText(str(tmp_path / "c.zarr"))
    w.add_edit("scale", _top_gene(phantom, (0, 256, 0, 384)))
    seen = []
    worker = w.generate()
    worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=60_000)
    w.task.cancel_button.click()
    qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
    assert w.task.state == "cancelled"
    assert seen[-1].item.units_done < seen[-1].item.units_total
    assert not w.perturb_layers
    # the stopped job is kept, to resume
    assert (tmp_path / "c-unedited.job" / "spec.json").is_file()
