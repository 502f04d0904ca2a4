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
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
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
    notify_info,
    notify_warning,
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


#: Rows of the table: metric key, what a person reads (with units), and whether higher is better.
ROWS: tuple[tuple[str, str, bool | None], ...] = (
    ("psnr_dapi", "PSNR, DAPI (dB)", True),
    ("psnr_polyt", "PSNR, PolyT (dB)", True),
    ("psnr_merged", "PSNR, both stains (dB)", True),
    ("ssim_dapi", "SSIM, DAPI (0-1)", True),
    ("ssim_polyt", "SSIM, PolyT (0-1)", True),
    ("ssim_merged", "SSIM, both stains (0-1)", True),
    ("nuclei_count_real", "nuclei in real (count)", None),
    ("nuclei_count", "nuclei found (count)", None),
    ("nuclei_count_error", "nuclei count error (%)", None),
    ("nuclei_area_real", "nucleus area in real (µm²)", None),
    ("nuclei_area", "nucleus area found (µm²)", None),
    ("nuclei_area_error", "nucleus area error (%)", None),
    ("nuclei_solidity_real", "nucleus solidity in real (0-1)", None),
    ("nuclei_solidity", "nucleus solidity found (0-1)", None),
    ("nuclei_solidity_error", "nucleus solidity error (%)", None),
    ("nuclei_method", "nuclei segmentation", None),
    ("tissue_fraction", "tissue in region (%)", None),
)
#: The rows a model must win against the trivial baselines.
VERDICT_ROWS = ("psnr_merged", "ssim_merged")


def row_label(key: str) -> str:
    """The table's name of metric ``key`` (the key itself when unknown)."""
    return next((label for k, label, _ in ROWS if k == key), key.replace("_", " "))


def display_value(key: str, value: Any, pixel_area_um2: float = 1.0) -> Any:
    """``value`` of metric ``key`` in the table's unit (percent, µm²)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    if key.endswith("_error") or key == "tissue_fraction":
        return 100.0 * float(value)
    if key.startswith("nuclei_area"):
        return float(value) * pixel_area_um2
    return value


def baseline_verdict(metrics: dict[str, dict[str, Any]]) -> str:
    """A sentence naming the baselines the generated image loses to (empty when it wins).

    ``metrics`` maps a column (``generated``, ``mean``, ``blur``) to its metrics.
    """
    gen = metrics.get("generated", {})
    losses = []
    for column, values in metrics.items():
        if column == "generated":
            continue
        lost = [
            row_label(k)
            for k in VERDICT_ROWS
            if isinstance(gen.get(k), float)
            and isinstance(values.get(k), float)
            and not math.isnan(gen[k])
            and values[k] > gen[k]
        ]
        if lost:
            losses.append(f"the {column} baseline on {' and '.join(lost)}")
    if not losses:
        return ""
    return "The model loses to " + "; ".join(losses) + ": its images are not yet informative."


def recorded_box(
    metadata: dict[str, Any], z: int, region: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    """The part of ``region`` on slice ``z`` that the generated store records as generated.

    ``metadata["generated_regions"]`` lists what was generated (``region``, ``slices``).
    Returns the intersection with the first recorded region that covers slice ``z`` and
    overlaps ``region``; ``None`` when none does.
    """
    y0, y1, x0, x1 = region
    for rec in metadata.get("generated_regions", []):
        if z not in [int(k) for k in rec.get("slices", [])]:
            continue
        ry0, ry1, rx0, rx1 = (int(v) for v in rec.get("region", (0, 0, 0, 0)))
        box = (max(y0, ry0), min(y1, ry1), max(x0, rx0), min(x1, rx1))
        if box[0] < box[1] and box[2] < box[3]:
            return box
    return None


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
        self.row_keys: list[str] = []
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
        self.verdict = QLabel("")
        self.verdict.setWordWrap(True)
        self.verdict.setToolTip("Whether the model beats the trivial baselines (PSNR and SSIM)")
        layout.addWidget(self.verdict)
        self.table = QTableWidget(0, 1)
        self.table.setToolTip("Metrics per comparison: generated and the trivial baselines")
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(8 * self.table.verticalHeader().defaultSectionSize())
        layout.addWidget(self.table, 1)
        keep = QHBoxLayout()
        self.save_button = QPushButton("Save CSV…")
        self.save_button.setToolTip("Save the table (metrics in rows, comparisons in columns)")
        self.copy_button = QPushButton("Copy table")
        self.copy_button.setToolTip("Copy the table as tab-separated text (pastes into sheets)")
        for button in (self.save_button, self.copy_button):
            button.setEnabled(False)
            keep.addWidget(button)
        layout.addLayout(keep)
        self.evaluate_button.clicked.connect(self.evaluate)
        self.save_button.clicked.connect(self._choose_csv)
        self.copy_button.clicked.connect(self.copy_table)

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
                raise ValueError("tick at least one of PSNR, SSIM and Nuclei")
            region = self._generated_part(generated, z, region)
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

    def _generated_part(
        self, generated: str, z: int, region: tuple[int, int, int, int]
    ) -> tuple[int, int, int, int]:
        """``region`` cut to what ``generated`` records as generated on slice ``z``.

        Raises ``ValueError`` (in words) when nothing of it was generated; a store that
        records nothing (not written by Generate or a job) is scored as it is, with a warning.
        """
        from napari_teramind.store import BrainStore

        meta = BrainStore.open(generated, allow_incomplete=True).metadata
        if not meta.get("generated_regions"):
            notify_warning(f"{generated} records no generated region; scoring slice {z} as it is")
            return region
        box = recorded_box(meta, z, region)
        if box is None:
            done = sorted({int(k) for r in meta["generated_regions"] for k in r.get("slices", [])})
            raise ValueError(
                f"slice {z} of this region was never generated (generated slices: "
                f"{', '.join(str(k) for k in done)}); move to one of them or generate it "
                "with 'Generate a region'"
            )
        return box

    def show_results(self, results: dict[str, Any]) -> None:
        """Fill the table, say whether the model beats the baselines, draw the nuclei."""
        self.results = results
        columns = list(results)
        keys: list[str] = []
        for ev in results.values():
            keys += [k for k in ev.metrics if k not in keys]
        order = [k for k, _, _ in ROWS]
        keys.sort(key=lambda k: order.index(k) if k in order else len(order))
        self.row_keys = keys
        pixel = self.real_store().pixel_size_um if self._real is not None else 1.0
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setRowCount(len(keys))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setVerticalHeaderLabels([row_label(k) for k in keys])
        for c, column in enumerate(columns):
            metrics = results[column].metrics
            for r, key in enumerate(keys):
                value = display_value(key, metrics.get(key, ""), pixel**2)
                item = QTableWidgetItem(format_value(value))
                item.setToolTip(
                    f"{row_label(key)} of {column} vs real ({key}), {results[column].region}"
                )
                self.table.setItem(r, c, item)
        verdict = baseline_verdict({c: results[c].metrics for c in columns})
        self.verdict.setText(f"⚠ {verdict}" if verdict else "")
        self.verdict.setStyleSheet("color: #e8a33d;" if verdict else "")
        if not verdict and len(columns) > 1:
            self.verdict.setText("The model beats the trivial baselines on PSNR and SSIM.")
        self.save_button.setEnabled(True)
        self.copy_button.setEnabled(True)
        self.show_nuclei(results.get("generated"))

    def table_text(self, sep: str = "\t") -> str:
        """The table as text: a header line, then one line per metric."""
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, delimiter=sep, lineterminator="\n")
        columns = [
            self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())
        ]
        writer.writerow(["metric", *columns])
        for r in range(self.table.rowCount()):
            cells = [self.table.item(r, c).text() for c in range(self.table.columnCount())]
            writer.writerow([self.table.verticalHeaderItem(r).text(), *cells])
        return out.getvalue()

    def save_csv(self, path: str) -> str:
        """Write the table to ``path`` as CSV (UTF-8)."""
        from pathlib import Path

        Path(path).write_text(self.table_text(","), encoding="utf-8")
        notify_info(f"Saved the metrics table to {path}")
        return path

    def copy_table(self) -> str:
        """Copy the table to the clipboard as tab-separated text."""
        text = self.table_text("\t")
        QApplication.clipboard().setText(text)
        return text

    def _choose_csv(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self, "Save the metrics", "metrics.csv", "CSV (*.csv)"
        )
        if path:
            self.save_csv(path)

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
        # real nuclei as outlines over generated ones filled: both readable on one image
        for which, labels, contour, opacity in (
            ("real", ev.labels_real, 2, 1.0),
            ("generated", ev.labels_generated, 0, 0.45),
        ):
            if labels is None:
                continue
            style = "outlines" if contour else "filled"
            layer = self.viewer.add_labels(
                labels[None],
                name=f"{LABELS_PREFIX} {which}, slice {reg.z} ({style})",
                scale=(level.scale[1], *scale),
                translate=(z_world, *translate),
                opacity=opacity,
                units=UNITS,
                axis_labels=AXIS_LABELS,
                metadata={"teramind_role": "nuclei", "teramind_channel": which},
            )
            if contour:
                layer.contour = contour
            self.label_layers.append(layer)
        if len(self.label_layers) == 2:  # real outlines above the generated fill
            real_i = self.viewer.layers.index(self.label_layers[0])
            self.viewer.layers.move(real_i, len(self.viewer.layers))
        return self.label_layers
