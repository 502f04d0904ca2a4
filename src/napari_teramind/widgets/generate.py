"""The "Generate a region" widget: a rectangle, some slices, a model, and a live preview.

A thin view over :func:`napari_teramind.generate.generate_roi`. The region is a rectangle on a
Shapes layer (draw, move or resize it, or type its pixel coordinates); Generate collects every
parameter on the GUI thread and runs the library generator in a worker (see
:class:`~napari_teramind.widgets._common.TaskPanel`). Each step's x0 estimate is shown in a
preview layer as the image emerges from noise; the generated brain store is then shown over
the real region (same micrometre coordinates). Cancel stops between blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_teramind.layers import (
    AXIS_LABELS,
    STAIN_COLORMAPS,
    UNITS,
    store_display_name,
    store_stem,
)
from napari_teramind.selection import region_from_rectangle
from napari_teramind.widgets._common import (
    DevicePicker,
    ModelPicker,
    Progress,
    StorePicker,
    TaskPanel,
    add_layer_data,
    batched_layer_update,
    bind_slice_keys,
    current_slice,
    for_people,
    load_model,
    notify_error,
    notify_info,
    parse_slices,
    save_settings,
    show_slice,
    single_section_slices,
    viewer_camera,
)
from napari_teramind.widgets._layout import add_sampler_rows, scroll_body
from napari_teramind.widgets._models import model_label, model_store_text

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from napari_teramind.store import BrainStore

REGION_LAYER = "teramind region"
PREVIEW_PREFIX = "preview"
COORDS = ("y0", "y1", "x0", "x1")
EDGES = {"y0": "top", "y1": "bottom", "x0": "left", "x1": "right"}


def rectangle_region(
    viewer: napari.viewer.Viewer, store: BrainStore, missing: str = ""
) -> tuple[int, int, int, int]:
    """The ``(y0, y1, x0, x1)`` pixel box of the region rectangle, clipped to ``store``'s canvas.

    Raises
    ------
    ValueError
        When no rectangle is placed (``missing`` is appended to the advice to place one) or
        it lies outside the canvas.
    """
    if REGION_LAYER not in viewer.layers or not len(viewer.layers[REGION_LAYER].data):
        raise ValueError(f"no region rectangle: place one with 'Generate a region'{missing}")
    corners = viewer.layers[REGION_LAYER].data[-1]
    return region_from_rectangle(corners, store.height, store.width)


def run_generation(
    store_path: str,
    model_spec: str | None,
    region: tuple[int, int, int, int],
    slices: list[int],
    *,
    seed: int,
    steps: int,
    block_px: int,
    device: str,
    output: str,
) -> Iterator[Any]:
    """Worker body: run :func:`generate_roi` (model loaded once, cached), yielding progress.

    Returns the result's layer data, built here, off the GUI thread.
    """
    from napari_teramind.generate import generate_roi
    from napari_teramind.store import BrainStore

    store = BrainStore.open(store_path)
    model, info = load_model(model_spec, device)
    n_slices = store.n_slices
    last = None
    for item in generate_roi(
        store,
        model,
        region,
        slices,
        seed=seed,
        steps=steps,
        gene_names=list(info.gene_names),
        output=output,
        block_px=block_px,
        device=device,
        model_info=info,
    ):
        last = item
        if item.preview is not None:  # the layer's array, built here, off the GUI thread
            item = dataclasses.replace(item, preview=preview_planes(item.preview, n_slices, slices))
        yield item
    return result_layers(str(last.output if last is not None and last.output else output))


def preview_planes(preview: np.ndarray, n_slices: int, slices: list[int]) -> np.ndarray:
    """``(2, len(slices), h, w)`` previews placed in a ``(2, n_slices, h, w)`` stack.

    The preview layers span every slice of the store (so they sit at the right z); slices not
    generated stay black. Called in the worker.
    """
    full = np.zeros((preview.shape[0], n_slices, *preview.shape[2:]), np.uint8)
    full[:, slices] = preview
    return full


def result_layers(path: str) -> tuple[str, list[Any]]:
    """Layer data of the generated store's stains (opened here: call it off the GUI thread)."""
    from napari_teramind.layers import stain_layers
    from napari_teramind.store import BrainStore

    generated = BrainStore.open(path, allow_incomplete=True)
    return path, stain_layers(generated)


def roi_progress(item: Any) -> Progress:
    """Progress bar text of a ``RoiProgress``: step and block."""
    return Progress(
        int(item.units_done),
        int(item.units_total),
        f"step {item.step + 1 if item.step < item.n_steps else item.n_steps}/{item.n_steps}, "
        f"block {item.block + 1}/{item.n_blocks}",
    )


class GenerateWidget(QWidget):
    """Generate the stains of a region of a real brain store from its gene counts.

    Parameters
    ----------
    napari_viewer
        The viewer (injected by napari).
    parent
        Optional Qt parent.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.store: BrainStore | None = None
        self.preview_layers: dict[str, Any] = {}
        self.result_layers: list[Any] = []
        self.previews_shown = 0
        self.output_path: str | None = None
        self._syncing = False
        self._run_slices: list[int] = []
        self._run_region: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._build_ui()
        bind_slice_keys(self.viewer, self.step_slice)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = scroll_body(self)
        src = QGroupBox("Real brain store")
        sl = QVBoxLayout(src)
        self.store_picker = StorePicker(self.viewer)
        sl.addWidget(self.store_picker)
        layout.addWidget(src)

        region = QGroupBox("Region (image pixels)")
        rg = QGridLayout(region)
        self.coord_spins: dict[str, QSpinBox] = {}
        for i, name in enumerate(COORDS):
            spin = QSpinBox()
            spin.setRange(0, 10**7)
            spin.setSingleStep(64)
            spin.setToolTip(
                f"{name}: {EDGES[name]} edge of the region in level-0 pixels "
                "(kept in sync with the rectangle)"
            )
            rg.addWidget(QLabel(name), i // 2, 2 * (i % 2))
            rg.addWidget(spin, i // 2, 2 * (i % 2) + 1)
            self.coord_spins[name] = spin
            spin.valueChanged.connect(lambda _v: self._coords_changed())
        self.rect_button = QPushButton("Place rectangle")
        self.rect_button.setToolTip(
            f"Add (or re-centre) the '{REGION_LAYER}' Shapes layer with a rectangle in the middle "
            "of the view; move or resize it with napari's shape tools"
        )
        rg.addWidget(self.rect_button, 2, 0, 1, 4)
        self.region_hint = QLabel("")
        self.region_hint.setWordWrap(True)
        self.region_hint.setToolTip("What is wrong with the region typed above")
        self.region_hint.setStyleSheet("color: #e8a33d;")
        rg.addWidget(self.region_hint, 3, 0, 1, 4)
        layout.addWidget(region)

        params = QGroupBox("Generation")
        form = QFormLayout(params)
        self.slices_edit = QLineEdit("current")
        self.slices_edit.setToolTip(
            "Slices to generate: 'current' (the slice shown), 'all', '2', '0-3' or '0,2,5-6'"
        )
        self.model_picker = ModelPicker()
        self.device_picker = DevicePicker()
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("default: <store>-generated.zarr next to the store")
        self.output_edit.setToolTip(
            "Generated brain store to write (created if missing; the region is written into it)"
        )
        self.live_box = QCheckBox("Live preview")
        self.live_box.setChecked(True)
        self.live_box.setToolTip("Show each step's estimate of the image as it emerges from noise")
        self.model_label = model_label()
        form.addRow("Slices", self.slices_edit)
        form.addRow("Model", self.model_picker)
        form.addRow(self.model_label)
        self.steps_spin, self.seed_spin, self.block_spin = add_sampler_rows(form)
        form.addRow("Device", self.device_picker)
        form.addRow("Output", self.output_edit)
        form.addRow(self.live_box)
        layout.addWidget(params)

        self.generate_button = QPushButton("Generate")
        self.generate_button.setToolTip(
            "Generate the region's DAPI and PolyT from its gene counts (in the background)"
        )
        layout.addWidget(self.generate_button)
        self.task = TaskPanel(name="region generation")
        layout.addWidget(self.task)
        self.compare_button = QPushButton("Compare side by side")
        self.compare_button.setEnabled(False)
        self.compare_button.setToolTip(
            "Open the real and the generated store in 'Browse brain stores', side by side in "
            "napari's grid with one shared camera"
        )
        layout.addWidget(self.compare_button)
        self.compare_button.clicked.connect(self.compare)
        layout.addStretch(1)
        self.rect_button.clicked.connect(self.place_rectangle)
        self.generate_button.clicked.connect(self.generate)

    # ------------------------------------------------------------------ store and slices
    def open_store(self) -> BrainStore:
        """Open the store named in the picker (reused while the path does not change)."""
        path = self.store_picker.path()
        if self.store is None or Path(self.store.path).resolve() != Path(path).resolve():
            from napari_teramind.store import BrainStore

            self.store = BrainStore.open(path)
            for name, spin in self.coord_spins.items():  # the fields cannot leave the canvas
                spin.setMaximum(self.store.height if name[0] == "y" else self.store.width)
            single_section_slices(self.slices_edit, self.store, "current")
        return self.store

    def check_model(self, store: BrainStore, spec: str | None) -> Any:
        """Check the model against ``store`` from its metadata (no weights), before any worker.

        Shows the model's slice scheme and the panel report in the model label and returns the
        :class:`~napari_teramind.store.ModelPanelReport`. Raises (and the label says why) for
        a model generating several slices together asked for one section, or a human store
        sharing under half of the model's genes.
        """
        from napari_teramind.generate import check_source
        from napari_teramind.model.registry import model_meta_of

        try:
            config, names = model_meta_of(spec)
            report = check_source(store, config=config, gene_names=names)
        except Exception as exc:
            self.model_label.setText(f"Refused: {for_people(exc)}")
            raise
        self.model_label.setText(model_store_text(config, report))
        return report

    def step_slice(self, delta: int) -> None:
        """Show the next (``delta=1``) or previous (``-1``) slice."""
        if self.store is not None:
            show_slice(self.viewer, self.store, current_slice(self.viewer, self.store) + delta)

    # ------------------------------------------------------------------ region
    def _pixel_transform(self) -> tuple[np.ndarray, np.ndarray]:
        store = self.open_store()
        level = store.levels("images")[0]
        return np.asarray(level.scale[2:], float), np.asarray(level.translation[2:], float)

    def region_layer(self) -> Any:
        """The Shapes layer of the region (``None`` until placed)."""
        return self.viewer.layers[REGION_LAYER] if REGION_LAYER in self.viewer.layers else None

    def place_rectangle(self) -> Any:
        """Add or re-centre the region rectangle (a quarter of the view, or of the section)."""
        store = self.open_store()
        scale, translate = self._pixel_transform()
        center = (np.asarray(viewer_camera(self.viewer).center[-2:]) - translate) / scale
        if not (0 <= center[0] < store.height and 0 <= center[1] < store.width):
            center = np.array([store.height / 2, store.width / 2])
        from napari_teramind.generate import snap_region

        size = max(64, min(store.height, store.width) // 4 // 64 * 64)
        y0 = int(np.clip(center[0] - size / 2, 0, max(0, store.height - size)))
        x0 = int(np.clip(center[1] - size / 2, 0, max(0, store.width - size)))
        # on the 64 px patch grid at once: what is drawn is what Generate generates
        self.set_region(snap_region((y0, y0 + size, x0, x0 + size), store.height, store.width))
        return self.region_layer()

    def set_region(self, region: tuple[int, int, int, int]) -> None:
        """Set the region ``(y0, y1, x0, x1)`` in pixels: the spin boxes and the rectangle."""
        self.open_store()
        self._syncing = True
        try:
            for name, value in zip(COORDS, region, strict=True):
                self.coord_spins[name].setValue(int(value))
        finally:
            self._syncing = False
        self._coords_changed()

    def region(self) -> tuple[int, int, int, int]:
        """The region ``(y0, y1, x0, x1)`` of the spin boxes (``ValueError`` when empty)."""
        y0, y1, x0, x1 = (self.coord_spins[n].value() for n in COORDS)
        if y1 <= y0 or x1 <= x0:
            which = (
                "y0 (top) must be above y1 (bottom)"
                if y1 <= y0
                else ("x0 (left) must be left of x1 (right)")
            )
            raise ValueError(
                f"the region is empty: {which}; press Place rectangle or type other values"
            )
        return y0, y1, x0, x1

    def _coords_changed(self) -> None:
        if self._syncing:
            return
        try:
            y0, y1, x0, x1 = self.region()
        except ValueError as exc:
            self.region_hint.setText(str(exc))
            return
        self.region_hint.setText("")
        rect = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float)
        layer = self.region_layer()
        self._syncing = True
        try:
            if layer is None:
                scale, translate = self._pixel_transform()
                layer = self.viewer.add_shapes(
                    [rect],
                    shape_type="rectangle",
                    name=REGION_LAYER,
                    scale=scale,
                    translate=translate,
                    edge_color="yellow",
                    face_color="transparent",
                    edge_width=max(2.0, (y1 - y0) / 100),
                    units=UNITS[-2:],
                    axis_labels=AXIS_LABELS[-2:],
                )
                layer.events.data.connect(self._rectangle_changed)
            else:
                layer.data = [rect]
                layer.shape_type = ["rectangle"]
        finally:
            self._syncing = False

    def _rectangle_changed(self, event: Any = None) -> None:
        if self._syncing:
            return
        layer = self.region_layer()
        if layer is None or not len(layer.data):
            return
        store = self.open_store()
        try:
            y0, y1, x0, x1 = region_from_rectangle(layer.data[-1], store.height, store.width)
        except ValueError:  # dragged off the canvas: keep the last region in the fields
            return
        self._syncing = True
        try:
            for name, value in zip(COORDS, (y0, y1, x0, x1), strict=True):
                self.coord_spins[name].setValue(int(value))
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ generate
    def default_output(self, store: BrainStore) -> str:
        """``<store>-generated.zarr`` next to the real store."""
        return str(Path(store.path).with_name(f"{store_stem(store.path)}-generated.zarr"))

    def generate(self) -> Any:
        """Collect the parameters and start the generation worker (errors are notified)."""
        from napari_teramind.generate import snap_region

        try:
            store = self.open_store()
            region = snap_region(self.region(), store.height, store.width)
            if region != self.region():  # show what is generated: whole 64 px patches
                self.set_region(region)
            slices = parse_slices(
                self.slices_edit.text(), store.n_slices, current_slice(self.viewer, store)
            )
            spec = self.model_picker.spec()
            self.check_model(store, spec)
        except Exception as exc:
            notify_error("Cannot generate", exc)
            return None
        output = self.output_edit.text().strip() or self.default_output(store)
        self.output_path = output
        self._run_slices, self._run_region = slices, region
        self.previews_shown = 0
        save_settings(
            steps=self.steps_spin.value(),
            seed=self.seed_spin.value(),
            block_px=self.block_spin.value(),
        )
        return self.task.run(
            run_generation,
            str(store.path),
            spec,
            region,
            slices,
            seed=self.seed_spin.value(),
            steps=self.steps_spin.value(),
            block_px=self.block_spin.value(),
            device=self.device_picker.device(),
            output=output,
            progress=roi_progress,
            on_yielded=self._on_progress,
            on_returned=self.show_result,
            on_finished=self._finished,
            desc=f"Generating region on {self.device_picker.device()}",
        )

    def cancel(self) -> None:
        """Stop the running generation (between blocks)."""
        self.task.cancel()

    def _on_progress(self, item: Any) -> None:
        preview = getattr(item, "preview", None)
        if preview is not None and self.live_box.isChecked():
            self.show_preview(np.asarray(preview))
        if getattr(item, "output", None):
            self.output_path = str(item.output)

    def show_preview(self, full: np.ndarray) -> None:
        """Show ``full`` (uint8 ``(2, store slices, h, w)``, see :func:`preview_planes`).

        One layer per stain, at the region; the layers are created once and then only their
        data change (cheap: napari re-slices the plane on screen).
        """
        store = self.store
        assert store is not None
        y0, y1, x0, x1 = self._run_region
        channels = list(store.metadata.get("channels", ("DAPI", "PolyT")))
        full = full[:, :, : y1 - y0, : x1 - x0]
        level = store.levels("images")[0]
        scale = tuple(level.scale[1:])
        translate = (
            level.translation[1],
            level.translation[2] + y0 * level.scale[2],
            level.translation[3] + x0 * level.scale[3],
        )
        job = store_display_name(self.output_path or "generated")
        for c, stain in enumerate(channels):
            name = f"{job} {stain} ({PREVIEW_PREFIX}, generating)"
            layer = self.preview_layers.get(stain)
            if layer is None or layer not in self.viewer.layers:
                layer = self.viewer.add_image(
                    full[c],
                    name=name,
                    scale=scale,
                    translate=translate,
                    colormap=STAIN_COLORMAPS.get(stain, "gray"),
                    # opaque first stain: the region shows the generated image, not a sum
                    blending="translucent_no_depth" if c == 0 else "additive",
                    contrast_limits=(0, 255),
                    units=UNITS,
                    axis_labels=AXIS_LABELS,
                    metadata={
                        "teramind_role": "preview",
                        "teramind_channel": stain,
                        "teramind_preview_of": self.output_path,
                    },
                )
                self.preview_layers[stain] = layer
            else:
                layer.data = full[c]
        self.previews_shown += 1

    def clear_previews(self) -> None:
        """Remove the preview layers (after a cancel or a failure: they are partial)."""
        shown = [layer for layer in self.preview_layers.values() if layer in self.viewer.layers]
        self.preview_layers.clear()
        if not shown:  # napari's batch exit costs a full garbage collection: only when needed
            return
        with batched_layer_update(self.viewer):
            for layer in shown:
                self.viewer.layers.remove(layer)

    def _finished(self, state: str) -> None:
        if state in ("cancelled", "failed"):
            partial = bool(self.preview_layers)
            self.clear_previews()
            if state == "cancelled":
                notify_info(
                    "Generation cancelled"
                    + ("; its partial preview was removed" if partial else "")
                    + ". Blocks finished before the cancel are not kept as a result; press "
                    "Generate to run it again"
                )

    def show_result(self, result: tuple[str, list[Any]]) -> list[Any]:
        """Show the generated region over the real one (``result`` from :func:`result_layers`).

        With a live preview, its layers become the result in place: the last preview is the
        generated image (the same pixels the store holds), so they are renamed and tagged
        with the generated store instead of being removed and re-added (which froze napari
        for seconds). Without a preview the store's layers are added. The first stain is
        drawn opaque, so the region shows the generated image instead of brightening the
        real one.
        """
        path, layer_data = result
        stale = [
            layer
            for layer in self.result_layers
            if layer in self.viewer.layers and layer not in self.preview_layers.values()
        ]
        if stale:  # an earlier result; napari cleans up once for the batch (a full gc)
            with batched_layer_update(self.viewer):
                for layer in stale:
                    self.viewer.layers.remove(layer)
        layers = []
        for data, kwargs, kind in layer_data:
            stain = kwargs["metadata"].get("teramind_channel")
            layer = self.preview_layers.pop(stain, None)
            if layer is None or layer not in self.viewer.layers:
                layer = add_layer_data(self.viewer, (data, kwargs, kind))
            else:
                layer.name = kwargs["name"]
                layer.metadata = {**kwargs["metadata"], "teramind_region": self._run_region}
            layers.append(layer)
        self.clear_previews()
        for i, layer in enumerate(layers):
            layer.blending = "translucent_no_depth" if i == 0 else "additive"
        self.result_layers = layers
        region = self.region_layer()
        if region is not None:  # keep the rectangle on top
            self.viewer.layers.move(self.viewer.layers.index(region), len(self.viewer.layers))
        self.output_path = path
        self.compare_button.setEnabled(True)
        notify_info(f"Generated region written to {path}")
        return self.result_layers

    def compare(self) -> Any:
        """Show the real and generated stores side by side in the Browse widget (docked once)."""
        from napari_teramind.widgets.browse import SIDE_BY_SIDE, BrowseWidget

        if self.store is None or not self.output_path:
            notify_error("Generate a region first")
            return None
        browse = next(
            (w for w in self.viewer.window.dock_widgets.values() if isinstance(w, BrowseWidget)),
            None,
        )
        if browse is None:
            browse = BrowseWidget(self.viewer)
            self.viewer.window.add_dock_widget(browse, name="Browse brain stores")
        try:
            browse.open_store(self.store.path, "real")
            browse.open_store(self.output_path, "generated")
        except Exception as exc:
            notify_error("Cannot compare the stores", exc)
            return None
        browse.set_mode(SIDE_BY_SIDE)
        return browse
