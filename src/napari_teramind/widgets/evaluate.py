"""The "Evaluate" widget: metrics of a region or slice, real vs generated, and the nuclei found.

A thin view over :func:`napari_teramind.evaluate.evaluate_region`: it scores the region
rectangle (or the whole slice on screen) of a generated store against the real one, and the
trivial baselines (mean, blurred real) beside it, in a worker; the metrics fill a table and the
nuclei segmented in the real and generated images are drawn as Labels layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_teramind.layers import AXIS_LABELS, UNITS
from napari_teramind.widgets._common import (
    Progress,
    StorePicker,
    TaskPanel,
    bind_slice_keys,
    current_slice,
    notify_error,
    show_slice,
)
from napari_teramind.widgets._layout import scroll_body

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from napari_teramind.store import BrainStore

BASELINES = ("mean", "blur")
NUCLEI_METHODS = ("auto", "classical", "cellpose")
WHOLE_SLICE, RECTANGLE = "Whole slice", "Region rectangle"
LABELS_PREFIX = "nuclei"


def run_evaluation(
    real: str,
    generated: str,
    z: int,
    region: tuple[int, int, int, int],
    *,
    metrics: Sequence[str],
    nuclei: str,
    baselines: Sequence[str],
) -> Iterator[Any]:
    """Worker body: score ``generated`` and each baseline; return ``{column: RegionEvaluation}``."""
    from napari_teramind.evaluate import evaluate_region

    columns = ["generated", *baselines]
    out = {}
    for i, column in enumerate(columns):
        yield Progress(i, len(columns), f"scoring {column}")
        target = generated if column == "generated" else column
        out[column] = evaluate_region(
            real, target, z, region, metrics=tuple(metrics), nuclei=nuclei
        )
    yield Progress(len(columns), len(columns), "done")
    return out


def format_value(value: Any) -> str:
    """A metric value for the table (3 significant digits, ``-`` for NaN)."""
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


class EvaluateWidget(QWidget):
    """Score a region of a generated brain store against the real one.

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
        self.results: dict[str, Any] = {}
        self.label_layers: list[Any] = []
        self._real: BrainStore | None = None
        self._build_ui()
        bind_slice_keys(self.viewer, self.step_slice)

    def _build_ui(self) -> None:
        layout = scroll_body(self)
        stores = QGroupBox("Brain stores")
        sf = QFormLayout(stores)
        self.real_picker = StorePicker(self.viewer, what="real brain store", kind="real")
        self.generated_picker = StorePicker(
            self.viewer, what="generated brain store", kind="generated"
        )
        sf.addRow("Real", self.real_picker)
        sf.addRow("Generated", self.generated_picker)
        layout.addWidget(stores)

        opts = QGroupBox("What to score")
        of = QFormLayout(opts)
        self.where_combo = QComboBox()
        self.where_combo.addItems([RECTANGLE, WHOLE_SLICE])
        self.where_combo.setToolTip(
            "The rectangle placed with 'Generate a region' (on the slice shown), or the whole "
            "slice shown"
        )
        metrics_row = QHBoxLayout()
        self.metric_boxes: dict[str, QCheckBox] = {}
        for metric, tip in (
            ("psnr", "Peak signal-to-noise ratio over tissue (dB), per stain and merged"),
            ("ssim", "Structural similarity over tissue, per stain and merged"),
            ("nuclei", "Nuclei segmented in both images: count and mean area, and their errors"),
        ):
            box = QCheckBox(metric.upper() if metric != "nuclei" else "Nuclei")
            box.setChecked(True)
            box.setToolTip(tip)
            metrics_row.addWidget(box)
            self.metric_boxes[metric] = box
        self.nuclei_combo = QComboBox()
        self.nuclei_combo.addItems(NUCLEI_METHODS)
        self.nuclei_combo.setToolTip(
            "Nuclei segmentation: cellpose when its weights are installed (auto), else a "
            "classical watershed"
        )
        self.baselines_box = QCheckBox("Compare with trivial baselines (mean, blurred real)")
        self.baselines_box.setChecked(True)
        self.baselines_box.setToolTip(
            "Also score the mean image and the blurred real image: a model should beat both"
        )
        of.addRow("Where", self.where_combo)
        of.addRow("Metrics", metrics_row)
        of.addRow("Nuclei", self.nuclei_combo)
        of.addRow(self.baselines_box)
        layout.addWidget(opts)

        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Score the region in the background")
        layout.addWidget(self.evaluate_button)
        self.task = TaskPanel(name="evaluation")
        layout.addWidget(self.task)
        self.table = QTableWidget(0, 1)
        self.table.setToolTip("Metrics per comparison: generated and the trivial baselines")
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        self.evaluate_button.clicked.connect(self.evaluate)

    def real_store(self) -> BrainStore:
        """The real store (reopened when its path changes)."""
        from pathlib import Path

        from napari_teramind.store import BrainStore

        path = self.real_picker.path()
        if self._real is None or Path(self._real.path).resolve() != Path(path).resolve():
            self._real = BrainStore.open(path)
        return self._real

    def step_slice(self, delta: int) -> None:
        """Show the next (``delta=1``) or previous (``-1``) slice."""
        if self._real is not None:
            show_slice(self.viewer, self._real, current_slice(self.viewer, self._real) + delta)

    def region(self, store: BrainStore) -> tuple[int, int, int, int]:
        """The rectangle's ``(y0, y1, x0, x1)`` (clipped), or the whole slice."""
        from napari_teramind.widgets.generate import rectangle_region

        if self.where_combo.currentText() == WHOLE_SLICE:
            return (0, store.height, 0, store.width)
        return rectangle_region(self.viewer, store, ", or choose 'Whole slice'")

    def evaluate(self) -> Any:
        """Collect the choices and score in a worker (errors are notified)."""
        try:
            real = self.real_store()
            generated = self.generated_picker.path()
            z = current_slice(self.viewer, real)
            region = self.region(real)
            metrics = [m for m, box in self.metric_boxes.items() if box.isChecked()]
            if not metrics:
                raise ValueError("tick at least one metric")
        except Exception as exc:
            notify_error("Cannot evaluate", exc)
            return None
        return self.task.run(
            run_evaluation,
            str(real.path),
            generated,
            z,
            region,
            metrics=metrics,
            nuclei=self.nuclei_combo.currentText(),
            baselines=BASELINES if self.baselines_box.isChecked() else (),
            progress=lambda p: p,
            on_returned=self.show_results,
            desc=f"Evaluating slice {z}",
        )

    def show_results(self, results: dict[str, Any]) -> None:
        """Fill the table and draw the nuclei of the real and generated images."""
        self.results = results
        columns = list(results)
        rows: list[str] = []
        for ev in results.values():
            rows += [k for k in ev.metrics if k not in rows]
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setVerticalHeaderLabels(rows)
        for c, column in enumerate(columns):
            metrics = results[column].metrics
            for r, key in enumerate(rows):
                item = QTableWidgetItem(format_value(metrics.get(key, "")))
                item.setToolTip(f"{key} of {column} vs real, {results[column].region}")
                self.table.setItem(r, c, item)
        self.show_nuclei(results.get("generated"))

    def show_nuclei(self, ev: Any) -> list[Any]:
        """Labels layers of the nuclei found in the real and generated region images."""
        for layer in self.label_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.label_layers = []
        if ev is None or ev.labels_real is None:
            return []
        store = self.real_store()
        level = store.levels("images")[0]
        reg = ev.region
        scale = tuple(level.scale[2:])
        translate = (
            level.translation[2] + reg.y0 * level.scale[2],
            level.translation[3] + reg.x0 * level.scale[3],
        )
        z_world = level.translation[1] + reg.z * level.scale[1]
        for which, labels in (("real", ev.labels_real), ("generated", ev.labels_generated)):
            if labels is None:
                continue
            layer = self.viewer.add_labels(
                labels[None],
                name=f"{LABELS_PREFIX} {which} (slice {reg.z})",
                scale=(level.scale[1], *scale),
                translate=(z_world, *translate),
                opacity=0.5,
                units=UNITS,
                axis_labels=AXIS_LABELS,
                metadata={"teramind_role": "nuclei", "teramind_channel": which},
            )
            self.label_layers.append(layer)
        return self.label_layers
