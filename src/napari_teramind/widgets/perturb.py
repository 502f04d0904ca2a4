"""The "Perturb genes" widget: edit genes in a drawn mask, generate, compare with the unedited.

A thin view over :func:`napari_teramind.perturb.iter_perturb` and
:func:`~napari_teramind.perturb.morphometric_change`. It is the "Generate a region" widget
(store, region rectangle, slices, model, steps, seed, block, device) with a list of gene edits
(knock out, scale, transplant) and an optional mask drawn on a Shapes layer (polygons,
rectangles, ellipses). Perturb runs the unedited generation and the edited one in a worker, both
as resumable jobs with the same noise (an unchanged unedited run is reused); Cancel stops between
units. The unedited, edited and difference images are then shown aligned over the region (the
difference in a diverging colormap), with the nuclei table (count, mean area, nuclear DAPI per
region, unedited -> edited).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_teramind.layers import AXIS_LABELS, UNITS
from napari_teramind.widgets._common import (
    Progress,
    batched_layer_update,
    current_slice,
    notify_error,
    notify_info,
    parse_slices,
    save_settings,
)
from napari_teramind.widgets.generate import REGION_LAYER, GenerateWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from napari_teramind.store import BrainStore

MASK_LAYER = "teramind perturb mask"
RESULT_PREFIX = "perturb"
DIFF_COLORMAP = "bwr"
KINDS = ("knockout", "scale", "transplant")


@dataclass(frozen=True)
class PerturbProgress:
    """Progress of the two generations of a perturbation (unedited, then edited)."""

    stage: int
    name: str
    item: Any


def perturb_progress(p: PerturbProgress) -> Progress:
    """Progress bar of both runs: ``stage * units + units_done`` of ``2 * units``."""
    item = p.item
    total = int(item.units_total)
    step = min(item.step + 1, item.n_steps)
    text = f"{p.name}: step {step}/{item.n_steps}, unit {item.units_done}/{total}"
    return Progress(p.stage * total + int(item.units_done), 2 * total, text)


def shapes_polygons(data: list[np.ndarray], shape_types: list[str]) -> list[np.ndarray]:
    """Polygons ``(n, 2)`` (y, x px) of Shapes data; an ellipse becomes 64 points on it.

    Raises
    ------
    ValueError
        For lines and paths (they enclose nothing).
    """
    out = []
    for verts, kind in zip(data, shape_types, strict=True):
        v = np.asarray(verts, float)[:, -2:]
        if kind in ("line", "path"):
            raise ValueError(
                f"a {kind} in '{MASK_LAYER}' encloses no area; draw polygons, rectangles or "
                "ellipses"
            )
        if kind == "ellipse":
            c = v.mean(axis=0)
            u, w = (v[1] - v[0]) / 2, (v[3] - v[0]) / 2
            t = np.linspace(0, 2 * np.pi, 64, endpoint=False)[:, None]
            v = c + u * np.cos(t) + w * np.sin(t)
        out.append(v)
    return out


def run_perturbation(
    store_path: str,
    model_spec: str,
    region: tuple[int, int, int, int],
    slices: list[int],
    edits: list[Any],
    *,
    seed: int,
    steps: int,
    block_px: int,
    device: str,
    output: str,
    unedited: str,
    overwrite: bool,
) -> Iterator[PerturbProgress]:
    """Worker body: the unedited and the edited generation, then images and the nuclei table."""
    from napari_teramind.perturb import (
        PerturbSettings,
        difference,
        iter_perturb,
        morphometric_change,
    )
    from napari_teramind.perturb.api import prepare_perturbation, read_images

    settings = PerturbSettings(seed=seed, steps=steps, block_px=block_px)
    runs = (("unedited", [], unedited), ("edited", edits, output))
    for _, e, out in runs:  # refuse bad input before the first unit runs
        prepare_perturbation(store_path, model_spec, region, slices, e, output=out,
                             settings=settings)  # fmt: skip
    stores = {}
    for stage, (name, e, out) in enumerate(runs):
        gen = iter_perturb(store_path, model_spec, region, slices, e, output=out,
                           settings=settings, device=device,
                           overwrite=overwrite and name == "edited")  # fmt: skip
        try:
            while True:
                yield PerturbProgress(stage, name, next(gen))
        except StopIteration as done:
            stores[name] = done.value
        finally:
            gen.close()
    a, b = stores["unedited"], stores["edited"]
    rows = morphometric_change(a, b, region, slices, source=store_path)
    return {
        "unedited": read_images(a, region, slices),
        "edited": read_images(b, region, slices),
        "difference": difference(a, b, region, slices),
        "rows": rows,
        "paths": (str(a.path), str(b.path)),
    }


class PerturbWidget(GenerateWidget):
    """Generate a region with edited genes and compare it with the unedited generation.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    parent
        Optional Qt parent.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(napari_viewer, parent)
        self.edits: list[Any] = []
        self.result: dict[str, Any] | None = None
        self.perturb_layers: list[Any] = []
        self._build_perturb_ui()

    # ------------------------------------------------------------------ UI
    def _build_perturb_ui(self) -> None:
        layout = self.layout()
        self.live_box.setChecked(False)
        self.live_box.hide()
        self.compare_button.hide()
        self.task.name = "perturbation"
        self.generate_button.setText("Perturb")
        self.generate_button.setToolTip(
            "Generate the region unedited and with the edits (same noise), then show both, "
            "their difference and the nuclei table"
        )
        self.output_edit.setPlaceholderText("default: <store>-perturbed.zarr next to the store")
        self.output_edit.setToolTip(
            "Edited generated store to write; the unedited one goes beside it (-unedited.zarr)"
        )

        box = QGroupBox("Gene edits")
        form = QFormLayout(box)
        self.gene_combo = QComboBox()
        self.gene_combo.setEditable(True)
        self.gene_combo.setToolTip("Gene to edit (the store's panel; type to search)")
        self.kind_combo = QComboBox()
        self.kind_combo.addItems(KINDS)
        self.kind_combo.setToolTip(
            "knockout: counts 0; scale: counts x factor; transplant: counts copied from "
            "dy, dx px away"
        )
        self.factor_spin = QDoubleSpinBox()
        self.factor_spin.setRange(0.0, 1000.0)
        self.factor_spin.setDecimals(3)
        self.factor_spin.setValue(0.5)
        self.factor_spin.setToolTip("Scale factor (>= 0): 0 knocks the gene out, 2 doubles it")
        self.dy_spin, self.dx_spin = QSpinBox(), QSpinBox()
        for spin, name in ((self.dy_spin, "dy"), (self.dx_spin, "dx")):
            spin.setRange(-(10**6), 10**6)
            spin.setSingleStep(16)
            spin.setToolTip(f"Transplant source offset {name} in px (a multiple of 16)")
        row = QHBoxLayout()
        row.addWidget(self.kind_combo)
        row.addWidget(QLabel("x"))
        row.addWidget(self.factor_spin)
        row.addWidget(QLabel("dy"))
        row.addWidget(self.dy_spin)
        row.addWidget(QLabel("dx"))
        row.addWidget(self.dx_spin)
        form.addRow("Gene", self.gene_combo)
        form.addRow("Edit", row)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add edit")
        self.add_button.setToolTip("Add this edit to the list (applied in list order)")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected edit")
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        form.addRow(buttons)
        self.edit_list = QListWidget()
        self.edit_list.setToolTip("The edits of the next perturbation")
        self.edit_list.setMaximumHeight(90)
        form.addRow(self.edit_list)
        mask_row = QHBoxLayout()
        self.mask_button = QPushButton("Draw mask")
        self.mask_button.setToolTip(
            f"Add the '{MASK_LAYER}' Shapes layer and start drawing a polygon: the edits apply "
            "inside its shapes (polygons, rectangles, ellipses), which must lie in the region"
        )
        self.mask_box = QCheckBox("Edit inside the mask only")
        self.mask_box.setChecked(True)
        self.mask_box.setToolTip("Off, or without shapes: the edits apply to the whole region")
        mask_row.addWidget(self.mask_button)
        mask_row.addWidget(self.mask_box)
        form.addRow(mask_row)
        self.overwrite_box = QCheckBox("Replace an earlier perturbation at the output")
        self.overwrite_box.setToolTip(
            "Off: an output holding a different perturbation is refused (nothing is lost)"
        )
        form.addRow(self.overwrite_box)
        layout.insertWidget(layout.indexOf(self.generate_button), box)

        self.table = QTableWidget(0, 0)
        self.table.setToolTip("Nuclei per region, unedited -> edited (classical counter)")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)
        layout.insertWidget(layout.indexOf(self.task) + 1, self.table)
        self.add_button.clicked.connect(self.add_edit)
        self.remove_button.clicked.connect(self.remove_edit)
        self.mask_button.clicked.connect(self.mask_layer)
        self.store_picker.edit.textChanged.connect(lambda _t: self.refresh_genes())
        self.refresh_genes()

    def refresh_genes(self) -> None:
        """Fill the gene list from the store's panel (quietly nothing without a store)."""
        try:
            store = self.open_store()
        except Exception:
            return
        current = self.gene_combo.currentText()
        self.gene_combo.clear()
        self.gene_combo.addItems(list(store.panel.names))
        if current:
            self.gene_combo.setCurrentText(current)

    # ------------------------------------------------------------------ edits
    def _edit_item(self, kind: str, gene: str) -> Any:
        from napari_teramind.generate.edits import Knockout, Scale, Transplant

        if kind == "knockout":
            return Knockout(gene)
        if kind == "scale":
            return Scale(gene, float(self.factor_spin.value()))
        return Transplant(gene, (int(self.dy_spin.value()), int(self.dx_spin.value())))

    def add_edit(self, kind: str | None = None, gene: str | None = None) -> Any:
        """Add an edit (the form's values by default) to the list."""
        kind = kind or self.kind_combo.currentText()
        gene = (gene or self.gene_combo.currentText()).strip()
        if not gene:
            notify_error("Pick a gene to edit")
            return None
        edit = self._edit_item(kind, gene)
        self.edits.append(edit)
        text = f"{kind} {gene}"
        if kind == "scale":
            text += f" x {edit.factor:g}"
        elif kind == "transplant":
            text += f" from {edit.offset[0]:+d}, {edit.offset[1]:+d} px"
        self.edit_list.addItem(text)
        return edit

    def remove_edit(self) -> None:
        """Remove the selected edit."""
        row = self.edit_list.currentRow()
        if 0 <= row < len(self.edits):
            self.edits.pop(row)
            self.edit_list.takeItem(row)

    def mask_layer(self) -> Any:
        """The mask Shapes layer (added on first use, in image-pixel data coordinates)."""
        if MASK_LAYER in self.viewer.layers:
            layer = self.viewer.layers[MASK_LAYER]
        else:
            scale, translate = self._pixel_transform()
            layer = self.viewer.add_shapes(
                name=MASK_LAYER,
                ndim=2,
                scale=scale,
                translate=translate,
                edge_color="magenta",
                face_color=[1.0, 0.0, 1.0, 0.15],
                units=UNITS[-2:],
                axis_labels=AXIS_LABELS[-2:],
            )
        self.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"
        return layer

    def mask(self) -> Any:
        """The drawn mask as polygons (px), or None (the whole region)."""
        if not self.mask_box.isChecked() or MASK_LAYER not in self.viewer.layers:
            return None
        layer = self.viewer.layers[MASK_LAYER]
        if not len(layer.data):
            return None
        return shapes_polygons(list(layer.data), list(layer.shape_type))

    # ------------------------------------------------------------------ run
    def default_output(self, store: BrainStore) -> str:
        """``<store>-perturbed.zarr`` next to the real store."""
        from napari_teramind.layers import store_stem

        return str(Path(store.path).with_name(f"{store_stem(store.path)}-perturbed.zarr"))

    def generate(self) -> Any:
        """Collect the parameters and start the perturbation worker (errors are notified)."""
        import dataclasses

        from napari_teramind.generate import snap_region

        try:
            store = self.open_store()
            region = snap_region(self.region(), store.height, store.width)
            if region != self.region():
                self.set_region(region)
            slices = parse_slices(
                self.slices_edit.text(), store.n_slices, current_slice(self.viewer, store)
            )
            if not self.edits:
                raise ValueError("no edit: pick a gene and an edit, then 'Add edit'")
            mask = self.mask()
            edits = [dataclasses.replace(e, mask=mask) for e in self.edits]
            model = self.model_picker.spec() or "bundled"
        except Exception as exc:
            notify_error("Cannot perturb", exc)
            return None
        output = self.output_edit.text().strip() or self.default_output(store)
        stem = output[:-5] if output.endswith(".zarr") else output
        self.output_path = output
        self._run_slices, self._run_region = slices, region
        save_settings(steps=self.steps_spin.value(), seed=self.seed_spin.value(),
                      block_px=self.block_spin.value())  # fmt: skip
        return self.task.run(
            run_perturbation,
            str(store.path),
            model,
            region,
            slices,
            edits,
            seed=self.seed_spin.value(),
            steps=self.steps_spin.value(),
            block_px=self.block_spin.value(),
            device=self.device_picker.device(),
            output=output,
            unedited=f"{stem}-unedited.zarr",
            overwrite=self.overwrite_box.isChecked(),
            progress=perturb_progress,
            on_returned=self.show_perturbation,
            desc=f"Perturbing on {self.device_picker.device()}",
        )

    def show_perturbation(self, result: dict[str, Any]) -> list[Any]:
        """Show unedited, edited and difference images over the region, and the table."""
        from napari_teramind.layers import STAIN_COLORMAPS

        store = self.store
        assert store is not None
        self.result = result
        y0, _, x0, _ = self._run_region
        level = store.levels("images")[0]
        translate = (
            level.translation[2] + y0 * level.scale[2],
            level.translation[3] + x0 * level.scale[3],
        )
        z = current_slice(self.viewer, store)
        i = self._run_slices.index(z) if z in self._run_slices else 0
        lim = max(1, int(np.percentile(np.abs(result["difference"][0, i]), 99.5)))
        with batched_layer_update(self.viewer):
            for layer in self.perturb_layers:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            self.perturb_layers = []
            for c, stain in enumerate(("DAPI", "PolyT")):
                for name in ("unedited", "edited", "difference"):
                    data = result[name][c, i]
                    diff = name == "difference"
                    self.perturb_layers.append(self.viewer.add_image(
                        data,
                        name=f"{RESULT_PREFIX} {name} {stain}",
                        scale=tuple(level.scale[2:]),
                        translate=translate,
                        colormap=DIFF_COLORMAP if diff else STAIN_COLORMAPS.get(stain, "gray"),
                        contrast_limits=(-lim, lim) if diff else (0, 255),
                        blending="translucent" if diff else "additive",
                        visible=stain == "DAPI" and name != "unedited",
                        units=UNITS[-2:],
                        axis_labels=AXIS_LABELS[-2:],
                        metadata={"teramind_role": f"perturb {name}", "teramind_slice": z},
                    ))  # fmt: skip
        for name in (REGION_LAYER, MASK_LAYER):  # keep the outlines on top
            if name in self.viewer.layers:
                self.viewer.layers.move(self.viewer.layers.index(name), len(self.viewer.layers))
        self.show_table(result["rows"])
        notify_info(
            f"Perturbation written to {result['paths'][1]} (unedited: {result['paths'][0]})"
        )
        return self.perturb_layers

    def show_table(self, rows: list[Any]) -> None:
        """Fill the nuclei table (count, mean area, nuclear DAPI: unedited -> edited)."""
        from napari_teramind.perturb.morphometrics import COLUMNS, table_cells

        self.table.clear()
        self.table.setColumnCount(len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(table_cells(row)):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
