"""Issue 18 in napari: a single human section opens, browses and generates like a 3D store.

The single-section model is the one of tests/test_human_path.py (``teramind train
--gene-slices 1 --panel human-orthologs-81`` on a mouse phantom, 2 steps), shared through
:mod:`_human_helpers`.
"""

import numpy as np
import pytest

from _widget_helpers import isolated_settings, single_thread  # noqa: F401 (fixtures)
from napari_teramind.store import BrainStore


def _checkpoint(widget, path) -> None:
    widget.model_picker.source.setCurrentText("checkpoint")
    widget.model_picker.path.setText(str(path))


def _tiny_checkpoint(path, genes, **scheme):
    """A seeded tiny checkpoint over ``genes`` (weights are never read by the refusals)."""
    import torch

    from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig.preset("tiny", len(genes)).replace(**scheme)
    save_checkpoint(path, TeraMindUNet(config), config, list(genes))
    return path


def test_human_section_opens_browses_and_generates(make_napari_viewer, qtbot, human_path, tmp_path):
    from napari_teramind.widgets.browse import BrowseWidget
    from napari_teramind.widgets.generate import GenerateWidget

    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(human_path.human), plugin="napari-teramind")  # the reader
    assert [layer.name for layer in layers][:2] == ["human DAPI", "human PolyT"]
    assert layers[0].ndim == 3 and layers[0].level_shapes[0][0] == 1  # one section on z
    browse = BrowseWidget(viewer)
    viewer.window.add_dock_widget(browse, name="Browse brain stores")
    browse.open_store(human_path.human, "real")
    assert not browse.slice_slider.isEnabled() and browse.slice_label.text() == "slice 1 of 1"
    browse.step_slice(1)  # PageDown on one section stays there
    assert browse.current_slice() == 0

    w = GenerateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Generate a region")
    assert w.store_picker.edit.text() == str(human_path.human)
    w.open_store()
    assert w.slices_edit.text() == "0" and not w.slices_edit.isEnabled()  # no slices to pick
    _checkpoint(w, human_path.run)
    w.set_region((0, 128, 0, 128))
    w.steps_spin.setValue(2)
    w.block_spin.setValue(128)
    w.output_edit.setText(str(tmp_path / "generated.zarr"))
    worker = w.generate()
    assert worker is not None
    text = w.model_label.text()
    assert "single-section: 1 gene slice -> 1 image slice" in text and "groups of" not in text
    assert "measures 81 of the model's 81 genes (100 %)" in text
    assert "human orthologs used: Tmem132c->TMEM132C" in text and "(81 in all)" in text
    assert "DOPA (Nr4a2-Th) cannot be mapped" in text and "no TH" in text
    qtbot.waitUntil(w.task.wait_idle, timeout=120_000)
    assert w.task.state == "done", w.task.status.text()
    gen = BrainStore.open(tmp_path / "generated.zarr", allow_incomplete=True)
    assert gen.n_slices == 1 and np.asarray(gen.images()[0, 0, :128, :128]).std() > 0
    assert [layer.metadata["teramind_store"] for layer in w.result_layers] == [str(gen.path)] * 2


def test_generate_refuses_models_that_do_not_fit_before_any_worker(
    make_napari_viewer, human_path, tmp_path, monkeypatch
):
    from napari_teramind.store import GenePanel
    from napari_teramind.widgets import generate
    from napari_teramind.widgets.generate import GenerateWidget

    messages = []
    monkeypatch.setattr(generate, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    viewer = make_napari_viewer(show=True)
    w = GenerateWidget(viewer)
    viewer.window.add_dock_widget(w, name="Generate a region")
    w.store_picker.edit.setText(str(human_path.human))
    w.set_region((0, 128, 0, 128))
    mouse229 = GenePanel.published("638850", 229).names
    # a single-section model on 229 mouse genes: the human panel has 47 of them
    _checkpoint(w, _tiny_checkpoint(tmp_path / "wide", mouse229, gene_slices=1, image_depth=1))
    assert w.generate() is None and not w.task.running
    assert "only 47 of the model's 229 genes (21 %" in messages[-1]
    assert "DOPA lacks Th" in messages[-1]
    assert w.model_label.text().startswith("Refused: the human store shares only 47")
    # a 4-slice model on one section
    _checkpoint(w, _tiny_checkpoint(tmp_path / "pairs", human_path.info.gene_names))
    assert w.generate() is None and not w.task.running
    assert "1 section(s)" in messages[-1] and "single-section model" in messages[-1]
    assert "Refused" in w.model_label.text()


def test_attention_on_a_human_section(make_napari_viewer, qtbot, human_path, tmp_path, monkeypatch):
    import shutil

    from napari_teramind.widgets import attention
    from napari_teramind.widgets.attention import AttentionWidget

    messages = []
    monkeypatch.setattr(attention, "notify_error", lambda m, exc=None: messages.append(str(exc)))
    path = tmp_path / "human.zarr"
    shutil.copytree(human_path.human, path)
    viewer = make_napari_viewer(show=True)
    w = AttentionWidget(viewer)
    viewer.window.add_dock_widget(w, name="Attention maps")
    w.store_picker.edit.setText(str(path))
    w._refresh_store()
    _checkpoint(w, human_path.run)
    assert not w.slices_edit.isEnabled() and w.slices_edit.text() == "0"
    w.preset_combo.setCurrentText("GLUT")  # the store's own symbols
    assert [c.currentText() for c in w.gene_combos] == ["SLC17A6", "SLC17A7"]
    w.preset_combo.setCurrentText("DOPA")  # refused in words, before a worker
    assert [c.currentText() for c in w.gene_combos] == ["NR4A2", "Th"]
    assert w.compute() is None and not w.task.running
    assert messages[-1].startswith("Th is not in the model's 81 genes: the human-brain-panel")
    assert "panel has no TH" in messages[-1] and messages[-1].endswith("(Slc17a6-Slc17a7) can")
    assert w.model_label.text() == f"Refused: {messages[-1]}"
    w.preset_combo.setCurrentText("GLUT")
    worker = w.compute()
    assert worker is not None
    assert "81 of the model's 81 genes" in w.model_label.text()
    qtbot.waitUntil(w.task.wait_idle, timeout=60_000)
    assert w.task.state == "done", w.task.status.text()
    names = sorted(layer.name for layer in w.layers)
    assert names == ["human GLUT all:SLC17A6", "human GLUT all:SLC17A7"]
    assert w.more_button.isEnabled()
    more = [layer.name for layer in w.show_more()]
    assert sorted(more) == ["human GLUT expr:SLC17A6", "human GLUT expr:SLC17A7"]  # no up/down
    assert pytest.approx(0.6) == w.layers[0].opacity
    qtbot.waitUntil(lambda: not w._plotter.busy, timeout=60_000)  # no read left at teardown
