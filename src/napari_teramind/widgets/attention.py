"""The "Attention maps" widget: where the model links two genes.

A thin view over :mod:`napari_teramind.attention`: pick a pathway preset (GLUT, DOPA, BLOD) or
any two genes of the store's panel (searchable), then compute the maps in a worker
(:func:`~napari_teramind.attention.iter_attention_maps`, resumable, cancellable) or load maps
the store already holds. The maps are shown as overlay layers (``up``, ``down``, ``all`` and
expression channels, built by :func:`napari_teramind.layers.attention_layers`), and a dock
plots expression against attention for the slice on screen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_teramind.widgets._common import (
    DevicePicker,
    ModelPicker,
    OneAtATime,
    Progress,
    StorePicker,
    TaskPanel,
    add_layer_data,
    bind_slice_keys,
    current_slice,
    for_people,
    load_model,
    notify_error,
    parse_slices,
    show_slice,
    single_section_slices,
)
from napari_teramind.widgets._compat import show_colorbar
from napari_teramind.widgets._layout import scroll_body
from napari_teramind.widgets._models import model_label, model_store_text

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from napari_teramind.store import BrainStore

CUSTOM = "Custom pair"
ATTENTION_META = "teramind_attention"
#: The contrast choices of the Compute group: label -> null (None: no contrast).
CONTRAST_CHOICES: dict[str, str | None] = {
    "none": None,
    "vs random attention (what training changed)": "random",
    "vs permuted genes (gene identity)": "permuted",
}


def run_attention(
    store_path: str,
    model_spec: str | None,
    genes: str | tuple[str, ...],
    *,
    name: str | None,
    region: tuple[int, int, int, int] | None,
    slices: list[int] | None,
    device: str,
    contrast: str | None = None,
    draws: int = 4,
) -> Iterator[Any]:
    """Worker body: compute the maps (yielding progress), then return their layers' data.

    With ``contrast`` (``"random"`` or ``"permuted"``) the pair's attention contrast against
    that null (:func:`~napari_teramind.attention.contrast.iter_contrast_maps`, ``draws``
    draws) is computed next and shown with the maps.
    """
    from napari_teramind.attention import iter_attention_maps
    from napari_teramind.attention.contrast import iter_contrast_maps
    from napari_teramind.store import BrainStore

    store = BrainStore.open(store_path, mode="r+")
    model, info = load_model(model_spec, device)
    last = None
    for last in iter_attention_maps(
        store,
        model,
        genes,
        gene_names=info.gene_names,
        checkpoint=info,
        name=name,
        region=region,
        slices=slices,
        device=device,
    ):
        yield last
    assert last is not None
    names = [last.name]
    if contrast:
        item = None
        for item in iter_contrast_maps(store, model, genes, null=contrast, draws=draws,
                                       gene_names=info.gene_names, checkpoint=info,
                                       name=f"{last.name}-contrast", region=region,
                                       slices=slices, device=device):  # fmt: skip
            yield item
        assert item is not None
        names.append(item.name)
    return load_attention(store_path, *names)


def import_plot_modules() -> None:
    """Import matplotlib's figure and Qt canvas off the GUI thread.

    Call it before :class:`AttentionPlot` is built on the GUI thread: measured, the first plot
    froze napari 2.6-3.4 s importing them on the loaded test machine.
    """
    import matplotlib.backends.backend_qtagg
    import matplotlib.figure  # noqa: F401


def load_attention(store_path: str, name: str, *more: str) -> tuple[str, list[Any]]:
    """Layer data of map ``name`` (and maps ``more``) for the viewer.

    Contrast limits are read here: call it off the GUI thread. Also imports the plot's
    modules (:func:`import_plot_modules`): the plot follows the map.
    """
    from napari_teramind.layers import attention_layers
    from napari_teramind.store import BrainStore

    import_plot_modules()
    store = BrainStore.open(store_path)
    return name, attention_layers(store, [name, *more], metadata={ATTENTION_META: name})


def _load_worker(store_path: str, name: str) -> Iterator[Any]:
    yield Progress(0, 1, f"reading {name}")
    return load_attention(store_path, name)


def attention_progress(item: Any) -> Progress:
    """Progress text of an ``AttentionProgress``."""
    if isinstance(item, Progress):
        return item
    return Progress(
        int(item.units_done),
        int(item.units_total),
        f"{item.name}: unit {item.units_done}/{item.units_total}",
    )


class AttentionPlot(QWidget):
    """A matplotlib canvas: expression (x) against attention (y), one colour per gene."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setToolTip("Expression vs attention of the genes of the map, this slice")
        self.axes = self.figure.add_subplot(111)
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas)
        self.save_button = QPushButton("Save PNG…")
        self.save_button.setToolTip("Save the plot as a PNG image (200 dpi)")
        self.save_button.clicked.connect(self._choose_png)
        layout.addWidget(self.save_button)
        self.setMinimumHeight(260)
        self.points = 0

    def save_png(self, path: str) -> str:
        """Save the plot to ``path`` (PNG, 200 dpi)."""
        self.figure.savefig(path, dpi=200)
        return path

    def _choose_png(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self, "Save the plot", "attention.png", "PNG (*.png)")
        if path:
            self.save_png(path)

    def plot(self, trend: Any, title: str = "", empty: str = "") -> None:
        """Draw a :class:`~napari_teramind.attention.plots.TrendResult`: points and fits."""
        from napari_teramind.layers import gene_color

        ax = self.axes
        ax.clear()
        self.points = len(trend.data)
        for i, (gene, rows) in enumerate(trend.data.groupby("gene", sort=False)):
            color = gene_color(str(gene), i)
            ax.scatter(rows["expression"], rows["attention"], s=4, alpha=0.4, color=color)
            fit = trend.fits[trend.fits["gene"] == gene].iloc[0]
            label = f"{gene} (r = {fit['r']:.2f}, n = {int(fit['n'])})"
            if np.isfinite(fit["slope"]):
                xs = np.linspace(rows["expression"].min(), rows["expression"].max(), 2)
                ax.plot(xs, fit["intercept"] + fit["slope"] * xs, color=color, label=label)
            else:
                ax.plot([], [], color=color, label=label)
        ax.set_xlabel("expression (normalised)")
        ax.set_ylabel("attention, all (normalised)")
        ax.set_title(title, fontsize=9)
        if self.points:
            ax.legend(fontsize=8)
        else:  # say why, rather than show empty axes
            ax.text(
                0.5,
                0.5,
                f"No attention on this slice{f' ({empty})' if empty else ''}.\n"
                "Compute it: Slices = this slice, then Compute maps.",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
                wrap=True,
            )
        self.canvas.draw_idle()


class AttentionWidget(QWidget):
    """Compute or load gene-pair attention maps and show them as overlays.

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
        self.map_name: str | None = None
        self.layers: list[Any] = []
        self.more_layer_data: list[Any] = []
        self.plot: AttentionPlot | None = None
        self._plotter = OneAtATime(self._make_plot)
        self._build_ui()
        bind_slice_keys(self.viewer, self.step_slice)
        self.viewer.dims.events.current_step.connect(self._slice_changed)
        if self.store_picker.edit.text():
            self._refresh_store()

    def _build_ui(self) -> None:
        from napari_teramind.attention import PRESETS

        layout = scroll_body(self)
        src = QGroupBox("Brain store")
        sl = QVBoxLayout(src)
        self.store_picker = StorePicker(self.viewer, what="brain store", kind="real")
        self.store_picker.edit.editingFinished.connect(self._refresh_store)
        sl.addWidget(self.store_picker)
        layout.addWidget(src)

        pick = QGroupBox("Genes")
        form = QFormLayout(pick)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([*PRESETS, CUSTOM])
        self.preset_combo.setToolTip(
            "A pathway pair (GLUT: Slc17a6/Slc17a7, DOPA: Nr4a2/Th, BLOD: Cldn5/Aqp4) or a "
            "custom pair of genes"
        )
        self.gene_combos = []
        genes_row = QHBoxLayout()
        for i in range(2):
            combo = QComboBox()
            combo.setEditable(True)
            combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            combo.setToolTip(
                f"Gene {i + 1} of the pair: type to search the store's panel (any part, any case)"
            )
            genes_row.addWidget(combo)
            self.gene_combos.append(combo)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("default: the preset, or gene1-gene2")
        self.name_edit.setToolTip("Name of the map in the store (attention/<name>)")
        form.addRow("Preset", self.preset_combo)
        form.addRow("Pair", genes_row)
        form.addRow("Map name", self.name_edit)
        layout.addWidget(pick)

        run = QGroupBox("Compute")
        rf = QFormLayout(run)
        self.model_picker = ModelPicker()
        self.device_picker = DevicePicker()
        self.slices_edit = QLineEdit("all")
        self.slices_edit.setToolTip("Slices to compute: 'all', 'current', '2', '0-3' or '0,2,5-6'")
        self.region_box = QCheckBox("Only the region rectangle")
        self.region_box.setToolTip(
            "Compute only inside the rectangle of the 'Generate a region' widget (faster); "
            "the rest of the map stays empty"
        )
        self.model_label = model_label()
        rf.addRow("Model", self.model_picker)
        rf.addRow(self.model_label)
        rf.addRow("Device", self.device_picker)
        rf.addRow("Slices", self.slices_edit)
        rf.addRow(self.region_box)
        self.contrast_combo = QComboBox()
        for label, null in CONTRAST_CHOICES.items():
            self.contrast_combo.addItem(label, null)
        self.contrast_combo.setToolTip(
            "Also compute the pair's attention contrast: z of the pair's attention weight "
            "against a null on the same counts (randomly initialised attention layers, or the "
            "gene channels permuted); shown as a diverging overlay with its colour bar"
        )
        rf.addRow("Contrast", self.contrast_combo)
        self.compute_button = QPushButton("Compute maps")
        self.compute_button.setToolTip(
            "Compute the maps in the background and write them into the store (resumes an "
            "unfinished computation with the same settings)"
        )
        rf.addRow(self.compute_button)
        layout.addWidget(run)

        load = QGroupBox("Maps in the store")
        ll = QHBoxLayout(load)
        self.maps_combo = QComboBox()
        self.maps_combo.setToolTip("Attention maps already written into the store")
        self.load_button = QPushButton("Show")
        self.load_button.setToolTip("Show the chosen map as overlay layers and plot it")
        ll.addWidget(self.maps_combo, 1)
        ll.addWidget(self.load_button)
        self.more_button = QPushButton("+ up/down/expr")
        self.more_button.setEnabled(False)
        self.more_button.setToolTip(
            "Add the map's other channels (attention up, down, and the expression of each "
            "gene), hidden; only the 'all' maps are added at first"
        )
        self.more_button.clicked.connect(self.show_more)
        ll.addWidget(self.more_button)
        layout.addWidget(load)

        self.task = TaskPanel(name="attention computation")
        layout.addWidget(self.task)
        layout.addStretch(1)

        self.preset_combo.currentTextChanged.connect(self._preset_changed)
        self.compute_button.clicked.connect(self.compute)
        self.load_button.clicked.connect(lambda: self.load(self.maps_combo.currentText()))
        self._preset_changed(self.preset_combo.currentText())

    # ------------------------------------------------------------------ store
    def _refresh_store(self) -> BrainStore | None:
        from napari_teramind.store import BrainStore

        try:
            path = self.store_picker.path()
            self.store = BrainStore.open(path)
        except Exception as exc:
            notify_error("Cannot open the brain store", exc)
            return None
        genes = list(self.store.panel.names)
        for combo in self.gene_combos:
            keep = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(genes)
            completer = QCompleter(genes, combo)
            completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            completer.setFilterMode(Qt.MatchFlag.MatchContains)
            combo.setCompleter(completer)
            if keep:
                combo.setCurrentText(keep)
            combo.blockSignals(False)
        self._preset_changed(self.preset_combo.currentText())
        single_section_slices(self.slices_edit, self.store, "all")
        self.maps_combo.clear()
        self.maps_combo.addItems(self.store.attention_names())
        return self.store

    def store_symbols(self, genes: tuple[str, ...]) -> tuple[str, ...]:
        """``genes`` (a preset's mouse symbols) under the open store's symbols, where it has them.

        A human store names ``Slc17a6`` ``SLC17A6`` (the built-in orthologs); a gene it has under
        neither name (TH) keeps its own.
        """
        if self.store is None:
            return genes
        from napari_teramind.store import GenePanel, align_model_panel

        orthologs = align_model_panel(GenePanel(genes), self.store.panel).orthologs
        return tuple(orthologs.get(g, g) for g in genes)

    def check_model(self, store: BrainStore, spec: str | None, genes: Any) -> Any:
        """Resolve ``genes`` against the model's metadata and ``store``, before any worker.

        Shows the model's slice scheme and the panel report in the model label and returns
        the :class:`~napari_teramind.attention.maps.ModelGenes`; raises (and the label says
        why) for a pair the store cannot give (TH on a human section), a model generating
        several slices together on one section, or a human store sharing too few genes.
        """
        from napari_teramind.attention.maps import resolve_model_genes
        from napari_teramind.model.registry import model_meta_of

        try:
            config, names = model_meta_of(spec)
            try:
                asked = resolve_model_genes(store, config, genes, names)
            except KeyError as exc:  # a sentence (why TH is missing), not a missing key
                raise ValueError(str(exc.args[0])) from exc
        except Exception as exc:
            self.model_label.setText(f"Refused: {for_people(exc)}")
            raise
        self.model_label.setText(model_store_text(config, asked.report))
        return asked

    def _preset_changed(self, preset: str) -> None:
        from napari_teramind.attention import PRESETS

        custom = preset == CUSTOM
        shown = () if custom else self.store_symbols(PRESETS[preset])
        for i, combo in enumerate(self.gene_combos):
            combo.setEnabled(custom)
            if not custom:
                combo.setCurrentText(shown[i] if i < len(shown) else "")

    def genes(self) -> str | tuple[str, ...]:
        """The preset name, or the two genes of the custom pair."""
        preset = self.preset_combo.currentText()
        if preset != CUSTOM:
            return preset
        genes = tuple(c.currentText().strip() for c in self.gene_combos if c.currentText())
        if len(genes) != 2:
            raise ValueError("choose two genes for a custom pair (type to search the panel)")
        if self.store is not None:  # refused here, before a worker starts
            unknown = [g for g in genes if g not in self.store.panel]
            if unknown:
                raise ValueError(
                    f"{', '.join(unknown)} is not in the gene panel of "
                    f"{self.store_picker.path()}; pick a gene from the Pair list (type to search)"
                )
        return genes

    def step_slice(self, delta: int) -> None:
        """Show the next (``delta=1``) or previous (``-1``) slice."""
        if self.store is not None:
            show_slice(self.viewer, self.store, current_slice(self.viewer, self.store) + delta)

    # ------------------------------------------------------------------ compute / load
    def compute(self) -> Any:
        """Start computing the chosen maps in a worker (errors are notified)."""
        try:
            store = self.store if self.store is not None else self._refresh_store()
            if store is None:
                return None
            genes = self.genes()
            slices_text = self.slices_edit.text().strip().lower()
            slices = (
                None
                if slices_text == "all"
                else parse_slices(slices_text, store.n_slices, current_slice(self.viewer, store))
            )
            region = self._region(store) if self.region_box.isChecked() else None
            spec = self.model_picker.spec()
            self.check_model(store, spec, genes)
        except Exception as exc:
            notify_error("Cannot compute attention maps", exc)
            return None
        return self.task.run(
            run_attention,
            str(store.path),
            spec,
            genes,
            name=self.name_edit.text().strip() or None,
            region=region,
            slices=slices,
            device=self.device_picker.device(),
            contrast=self.contrast_combo.currentData(),
            progress=attention_progress,
            on_returned=self._show,
            desc=f"Computing attention maps on {self.device_picker.device()}",
        )

    def _region(self, store: Any) -> tuple[int, int, int, int]:
        from napari_teramind.widgets.generate import rectangle_region

        return rectangle_region(self.viewer, store, ", or untick 'Only the region rectangle'")

    def load(self, name: str) -> Any:
        """Show map ``name`` of the store (contrast read in a worker)."""
        if not name:
            notify_error("No attention map chosen; compute one first")
            return None
        store = self.store if self.store is not None else self._refresh_store()
        if store is None:
            return None
        return self.task.run(
            _load_worker,
            str(store.path),
            name,
            on_returned=self._show,
            desc=f"Loading attention map {name}",
        )

    def _show(self, result: tuple[str, list[Any]]) -> None:
        from napari_teramind.store import BrainStore

        name, layer_data = result
        self.store = BrainStore.open(self.store_picker.path())
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = []
        # the maps people read first ('all'); up/down/expression on demand (fewer layers)
        self.more_layer_data = [ld for ld in layer_data if not ld[1].get("visible", True)]
        for data, kwargs, kind in layer_data:
            if kwargs.get("visible", True):
                layer = add_layer_data(self.viewer, (data, kwargs, kind))
                show_colorbar(layer)
                self.layers.append(layer)
        self.more_button.setEnabled(bool(self.more_layer_data))
        self.map_name = name
        for known in self.store.attention_names():  # the map, and its contrast if computed
            if self.maps_combo.findText(known) < 0:
                self.maps_combo.addItem(known)
        self.maps_combo.setCurrentText(name)
        self.update_plot()

    def show_more(self) -> list[Any]:
        """Add the map's hidden channels (up, down, expression) as hidden layers."""
        added = [add_layer_data(self.viewer, ld) for ld in self.more_layer_data]
        self.layers += added
        self.more_layer_data = []
        self.more_button.setEnabled(False)
        return added

    # ------------------------------------------------------------------ plot
    def show_plot(self) -> AttentionPlot:
        """The expression-vs-attention plot, docked on first use."""
        if self.plot is None:
            self.plot = AttentionPlot()
            self.viewer.window.add_dock_widget(
                self.plot, name="Expression vs attention", area="right"
            )
        return self.plot

    def _show_trend(self, trend: Any, title: str, empty: str) -> None:
        # A read may finish after the viewer closed (its Qt window is then gone): drop it.
        if getattr(self.viewer.window, "_qt_window", None) is None:
            return
        self.show_plot().plot(trend, title, empty)

    def update_plot(self) -> Any:
        """Re-plot for the slice on screen, reading the map in a worker thread.

        Uses :func:`~napari_teramind.attention.plots.trend_data` at pyramid level 2 (a few
        thousand points). One read at a time: slice changes during a read re-plot the slice
        on screen once it is done.

        Returns
        -------
        napari.qt.threading.FunctionWorker or None
            The worker, or None when there is nothing to plot or a read is still running.
        """
        return self._plotter()

    def _make_plot(self) -> Any:
        from napari_teramind.attention.contrast import CONTRAST_KIND

        if self.store is None or self.map_name is None:
            return None
        if self.store.attention_metadata(self.map_name).get("kind") == CONTRAST_KIND:
            return None  # a contrast map alone has no expression-vs-attention trend
        from napari.qt.threading import create_worker

        from napari_teramind.attention.plots import trend_data

        z = current_slice(self.viewer, self.store)
        title = f"{self.map_name}: attention vs expression, slice {z}"
        worker = create_worker(trend_data, self.store, self.map_name, slices=[z])
        computed = self.store.attention_metadata(self.map_name).get("slices")
        empty = (
            f"computed: slices {', '.join(str(k) for k in computed)}"
            if isinstance(computed, list) and z not in computed
            else ""
        )
        worker.returned.connect(lambda trend: self._show_trend(trend, title, empty))
        worker.errored.connect(lambda exc: notify_error("Cannot plot the attention map", exc))
        return worker

    def _slice_changed(self, event: Any = None) -> None:
        if self.plot is not None:
            self.update_plot()
