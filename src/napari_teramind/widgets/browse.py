"""The "Browse brain stores" widget: real and generated brains, slice by slice, gene by gene.

A thin view over :mod:`napari_teramind.layers`: it opens one real and optionally one generated
brain store, shows their stains and region labels, adds gene layers on request (their contrast
limits are read off the GUI thread), and compares the two stores side by side (napari's grid)
or as an overlay with a cross-fade slider, with contrast linked between matching layers.

Keyboard shortcuts (bound on the viewer): ``PageDown`` next slice, ``PageUp`` previous slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_teramind.layers import STORE_KEY, LayerData, brain_layers, gene_layers
from napari_teramind.widgets._common import (
    NEXT_SLICE_KEY,
    PREVIOUS_SLICE_KEY,
    add_layer_data,
    bind_slice_keys,
    viewer_grid,
)
from napari_teramind.widgets._layout import scroll_body

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from napari_teramind.store import BrainStore

ROLES = ("real", "generated")
ROLE_KEY = "teramind_browse_role"
OVERLAY, SIDE_BY_SIDE = "Overlay", "Side by side"
LINKED_ATTRIBUTES = ("contrast_limits", "gamma")


def _load_gene_layers(jobs: Sequence[tuple[BrainStore, str, dict[str, Any]]]) -> Iterator[Any]:
    """Worker body: one gene layer per job, yielded as soon as its contrast limits are read."""
    for store, gene, meta in jobs:
        yield gene_layers(store, [gene], metadata=meta)[0]


class BrowseWidget(QWidget):
    """Browse a real and optionally a generated brain store in napari.

    Parameters
    ----------
    napari_viewer
        The viewer to add layers to (injected by napari).
    parent
        Optional Qt parent.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.stores: dict[str, BrainStore] = {}
        self.workers: list[Any] = []
        self._syncing = False
        self._build_ui()
        self._connect()
        self._bind_keys()
        self._adopt_open_layers()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        from napari_teramind.store import CHANNELS

        layout = scroll_body(self)

        stores = QGroupBox("Brain stores")
        grid = QGridLayout(stores)
        self.path_edits: dict[str, QLineEdit] = {}
        for row, role in enumerate(ROLES):
            label = QLabel(role.capitalize())
            edit = QLineEdit()
            edit.setPlaceholderText(
                "path/to/brain.zarr" if role == "real" else "optional: path/to/generated.zarr"
            )
            edit.setToolTip(
                f"Directory of the {role} brain store (a .zarr folder written by napari-teramind)."
                + (" Leave empty to browse one store." if role == "generated" else "")
            )
            button = QToolButton()
            button.setText("…")
            button.setToolTip(f"Choose the {role} brain store directory")
            button.clicked.connect(lambda _=False, r=role: self._choose_path(r))
            grid.addWidget(label, row, 0)
            grid.addWidget(edit, row, 1)
            grid.addWidget(button, row, 2)
            self.path_edits[role] = edit
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip(
            "Open the store(s) above: stains and region labels are added as lazy multiscale "
            "layers; nothing is loaded beyond what is on screen"
        )
        grid.addWidget(self.open_button, len(ROLES), 0, 1, 3)
        layout.addWidget(stores)

        view = QGroupBox("View")
        vgrid = QGridLayout(view)
        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        self.slice_slider.setRange(0, 0)
        self.slice_slider.setToolTip(
            f"Section shown (follows the viewer's z slider). Shortcuts: {NEXT_SLICE_KEY} next, "
            f"{PREVIOUS_SLICE_KEY} previous slice"
        )
        self.slice_label = QLabel("slice 1 of 1")
        self.slice_label.setToolTip(
            "Section shown, counted from 1, of the sections in the store (the Slices fields of "
            "the other widgets take the index, one less)"
        )
        vgrid.addWidget(QLabel("Slice"), 0, 0)
        vgrid.addWidget(self.slice_slider, 0, 1)
        vgrid.addWidget(self.slice_label, 0, 2)
        stains_row = QHBoxLayout()
        self.stain_boxes: dict[str, QCheckBox] = {}
        for stain in CHANNELS:
            box = QCheckBox(stain)
            box.setChecked(True)
            box.setToolTip(f"Show the {stain} stain of every open store")
            stains_row.addWidget(box)
            self.stain_boxes[stain] = box
        self.regions_box = QCheckBox("Regions")
        self.regions_box.setChecked(False)  # a tint over everything: on demand
        self.regions_box.setToolTip(
            "Show the anatomical region labels, faint (hover a pixel to see the region's name)"
        )
        stains_row.addWidget(self.regions_box)
        vgrid.addWidget(QLabel("Show"), 1, 0)
        vgrid.addLayout(stains_row, 1, 1, 1, 2)
        layout.addWidget(view)

        genes = QGroupBox("Genes")
        gl = QVBoxLayout(genes)
        self.gene_filter = QLineEdit()
        self.gene_filter.setPlaceholderText("filter genes, e.g. Slc17")
        self.gene_filter.setClearButtonEnabled(True)
        self.gene_filter.setToolTip("Type part of a gene symbol to filter the list (any case)")
        self.gene_list = QListWidget()
        self.gene_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.gene_list.setToolTip(
            "Genes of the open stores' panels. Select one or more (Ctrl/Shift-click) and press "
            "'Show selected'; double-click shows one gene"
        )
        buttons = QHBoxLayout()
        self.show_genes_button = QPushButton("Show selected")
        self.show_genes_button.setToolTip(
            "Add a layer per selected gene and store (counts per gene block, loaded lazily)"
        )
        self.remove_genes_button = QPushButton("Remove selected")
        self.remove_genes_button.setToolTip("Remove the layers of the selected genes")
        buttons.addWidget(self.show_genes_button)
        buttons.addWidget(self.remove_genes_button)
        gl.addWidget(self.gene_filter)
        gl.addWidget(self.gene_list)
        gl.addLayout(buttons)
        layout.addWidget(genes)

        compare = QGroupBox("Real vs generated")
        cgrid = QGridLayout(compare)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems([OVERLAY, SIDE_BY_SIDE])
        self.mode_combo.setToolTip(
            "Overlay: both stores in one view, cross-faded by the slider. Side by side: "
            "napari's grid view, one cell per store, one shared camera"
        )
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setToolTip(
            "Overlay cross-fade: 0 shows only the real store, 100 only the generated one"
        )
        self.link_box = QCheckBox("Link contrast")
        self.link_box.setChecked(True)
        self.link_box.setToolTip(
            "Keep the contrast limits and gamma of matching real and generated layers (same "
            "stain or gene) equal"
        )
        cgrid.addWidget(QLabel("Mode"), 0, 0)
        cgrid.addWidget(self.mode_combo, 0, 1)
        cgrid.addWidget(QLabel("Generated"), 1, 0)
        cgrid.addWidget(self.opacity_slider, 1, 1)
        cgrid.addWidget(self.link_box, 2, 0, 1, 2)
        layout.addWidget(compare)
        layout.addStretch(1)

    def _connect(self) -> None:
        self.open_button.clicked.connect(self.open_stores)
        for edit in self.path_edits.values():
            edit.returnPressed.connect(self.open_stores)
        self.slice_slider.valueChanged.connect(self.set_slice)
        self.viewer.dims.events.current_step.connect(self._on_dims_changed)
        for stain, box in self.stain_boxes.items():
            box.toggled.connect(lambda on, s=stain: self.show_stain(s, on))
        self.regions_box.toggled.connect(self.show_regions)
        self.gene_filter.textChanged.connect(self.filter_genes)
        self.gene_list.itemDoubleClicked.connect(lambda item: self.show_genes([item.text()]))
        self.show_genes_button.clicked.connect(lambda: self.show_genes(self.selected_genes()))
        self.remove_genes_button.clicked.connect(lambda: self.remove_genes(self.selected_genes()))
        self.mode_combo.currentTextChanged.connect(lambda _: self.apply_mode())
        self.opacity_slider.valueChanged.connect(lambda _: self.apply_mode())
        self.link_box.toggled.connect(self.link_contrast)

    def _bind_keys(self) -> None:
        bind_slice_keys(self.viewer, self.step_slice)

    def _choose_path(self, role: str) -> None:
        path = QFileDialog.getExistingDirectory(self, f"Choose the {role} brain store")
        if path:
            self.path_edits[role].setText(path)

    # ------------------------------------------------------------------ stores
    def _adopt_open_layers(self) -> None:
        """Treat a store already opened in the viewer (File > Open) as the real store."""
        for layer in self.viewer.layers:
            path = layer.metadata.get(STORE_KEY)
            if path:
                self.path_edits["real"].setText(path)
                try:
                    self.open_store(path, "real")
                except Exception as exc:  # a stale layer must not break the widget
                    _warn(f"could not adopt {path}: {exc}")
                return

    def open_stores(self) -> None:
        """Open the stores named in the path fields (the generated one is optional)."""
        for role in ROLES:
            text = self.path_edits[role].text().strip()
            if not text:
                if role == "generated" and role in self.stores:
                    self._remove_store_layers(role)
                    del self.stores[role]
                continue
            try:
                self.open_store(text, role)
            except Exception as exc:  # shown to the user, not raised into Qt
                _error(f"Cannot open the {role} store {text}: {exc}")

    def open_store(self, path: str | Path, role: str = "real") -> BrainStore:
        """Open brain store ``path`` as the ``real`` or ``generated`` store and show it.

        Only metadata is read here; image data stay lazy. Gene layers shown for the other
        store are added for this one too (in a worker).
        """
        from napari_teramind.store import BrainStore

        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        store = BrainStore.open(path)
        old = self.stores.get(role)
        if old is not None and Path(old.path).resolve() != Path(store.path).resolve():
            self._remove_store_layers(role)
        self.stores[role] = store
        self.path_edits[role].setText(str(store.path))
        stains = [s for s, box in self.stain_boxes.items() if box.isChecked()]
        self._add_missing(
            role,
            brain_layers(
                store,
                stains=stains,
                regions=self.regions_box.isChecked(),
                metadata={ROLE_KEY: role},
            ),
        )
        self._refresh_gene_list()
        self._refresh_slice_range()
        shown = sorted(
            {
                layer.metadata["teramind_channel"]
                for layer in self._layers(role="gene")
                if _role_of(layer, self.stores) != role
            }
        )
        if shown:
            self.show_genes(shown)
        self.apply_mode()
        _info(
            f"Opened {Path(store.path).name} ({store.kind}, {store.n_slices} slices of "
            f"{store.height} x {store.width} px)"
        )
        return store

    def _remove_store_layers(self, role: str) -> None:
        for layer in list(self._layers(role_of=role)):
            self.viewer.layers.remove(layer)

    def _layers(
        self, role: str | None = None, channel: str | None = None, role_of: str | None = None
    ) -> Iterator[Any]:
        """Layers of the open stores, filtered by layer role, channel and store role."""
        for layer in list(self.viewer.layers):
            meta = layer.metadata
            which = _role_of(layer, self.stores)
            if which is None:
                continue
            if role_of is not None and which != role_of:
                continue
            if role is not None and meta.get("teramind_role") != role:
                continue
            if channel is not None and meta.get("teramind_channel") != channel:
                continue
            yield layer

    def _add_missing(self, role: str, layer_data: Iterable[LayerData]) -> list[Any]:
        added = []
        for data, kwargs, kind in layer_data:
            meta = kwargs["metadata"]
            existing = list(
                self._layers(
                    role=meta["teramind_role"], channel=meta["teramind_channel"], role_of=role
                )
            )
            if existing:
                continue
            added.append(add_layer_data(self.viewer, (data, kwargs, kind)))
        return added

    # ------------------------------------------------------------------ slices
    def _z_step(self) -> tuple[float, float, int]:
        """World origin and spacing of the slices, and their number, from the first store."""
        for role in ROLES:
            if role in self.stores:
                store = self.stores[role]
                lv = store.levels("images")[0]
                return float(lv.translation[1]), float(lv.scale[1]), store.n_slices
        return 0.0, 1.0, 1

    def _refresh_slice_range(self) -> None:
        _, _, n = self._z_step()
        n = max([s.n_slices for s in self.stores.values()] or [n])
        self.slice_slider.setMaximum(max(0, n - 1))
        self.slice_slider.setEnabled(n > 1)  # one section (a human section): nothing to pick
        self._on_dims_changed()

    def current_slice(self) -> int:
        """Index of the section the viewer shows."""
        if self.viewer.dims.ndim < 3:
            return 0
        z0, dz, _ = self._z_step()
        k = round((float(self.viewer.dims.point[0]) - z0) / dz)
        return int(min(max(k, 0), max(0, self.slice_slider.maximum())))

    def set_slice(self, k: int) -> None:
        """Show section ``k`` (clipped to the stores' sections)."""
        if self._syncing or self.viewer.dims.ndim < 3:
            return
        k = int(min(max(k, 0), self.slice_slider.maximum()))
        z0, dz, _ = self._z_step()
        self.viewer.dims.set_point(0, z0 + k * dz)
        self._on_dims_changed()

    def step_slice(self, delta: int) -> None:
        """Move ``delta`` sections forward (negative: back)."""
        self.set_slice(self.current_slice() + delta)

    def _on_dims_changed(self, event: Any = None) -> None:
        k = self.current_slice()
        self._syncing = True
        try:
            self.slice_slider.setValue(k)
        finally:
            self._syncing = False
        self.slice_label.setText(f"slice {k + 1} of {self.slice_slider.maximum() + 1}")

    # ------------------------------------------------------------------ stains and regions
    def show_stain(self, stain: str, visible: bool = True) -> None:
        """Show or hide stain ``stain`` of every open store (adding its layers if needed)."""
        if visible:
            for role, store in self.stores.items():
                meta = {ROLE_KEY: role}
                layers = brain_layers(store, stains=[stain], regions=False, metadata=meta)
                self._add_missing(role, layers)
        for layer in self._layers(role="stain", channel=stain):
            layer.visible = visible
        self.apply_mode()

    def show_regions(self, visible: bool = True) -> None:
        """Show or hide the region labels of every open store that has them."""
        if visible:
            for role, store in self.stores.items():
                self._add_missing(
                    role, brain_layers(store, stains=(), regions=True, metadata={ROLE_KEY: role})
                )
        for layer in self._layers(role="regions"):
            layer.visible = visible
        self.apply_mode()

    # ------------------------------------------------------------------ genes
    def _refresh_gene_list(self) -> None:
        names: list[str] = []
        for role in ROLES:
            if role in self.stores:
                names += [g for g in self.stores[role].panel.names if g not in names]
        selected = set(self.selected_genes())
        self.gene_list.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setToolTip(self._gene_tooltip(name))
            self.gene_list.addItem(item)
            item.setSelected(name in selected)
        self.filter_genes(self.gene_filter.text())

    def _gene_tooltip(self, gene: str) -> str:
        where = [role for role, s in self.stores.items() if gene in s.panel]
        return f"{gene}: in the {' and '.join(where)} store" + ("s" if len(where) > 1 else "")

    def filter_genes(self, text: str) -> None:
        """Show only the genes whose symbol contains ``text`` (case-insensitive)."""
        needle = text.strip().lower()
        for i in range(self.gene_list.count()):
            item = self.gene_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().lower())

    def selected_genes(self) -> list[str]:
        """Genes selected (and not filtered out) in the list, in list order."""
        return [
            self.gene_list.item(i).text()
            for i in range(self.gene_list.count())
            if self.gene_list.item(i).isSelected() and not self.gene_list.item(i).isHidden()
        ]

    def select_genes(self, genes: Iterable[str]) -> None:
        """Select ``genes`` in the list (for scripts and tests)."""
        wanted = set(genes)
        for i in range(self.gene_list.count()):
            item = self.gene_list.item(i)
            item.setSelected(item.text() in wanted)

    def show_genes(self, genes: Iterable[str]) -> Any:
        """Add a layer per gene and store (contrast read in a worker); show existing ones.

        Returns
        -------
        napari.qt.threading.GeneratorWorker or None
            The worker adding the new layers, or ``None`` when there was nothing to load.
        """
        jobs = []
        for gene in genes:
            for role, store in self.stores.items():
                if gene not in store.panel:
                    continue
                existing = list(self._layers(role="gene", channel=gene, role_of=role))
                for layer in existing:
                    layer.visible = True
                if not existing:
                    jobs.append((store, gene, {ROLE_KEY: role}))
        if not jobs:
            return None
        from napari.qt.threading import create_worker

        worker = create_worker(
            _load_gene_layers,
            jobs,
            _progress={"total": len(jobs), "desc": "Loading gene layers"},
        )
        worker.yielded.connect(self._on_gene_layer)
        worker.finished.connect(lambda: self._on_worker_done(worker))
        worker.errored.connect(lambda exc: _error(f"Could not load gene layers: {exc}"))
        self.workers.append(worker)
        worker.start()
        return worker

    def _on_gene_layer(self, layer_data: LayerData) -> None:
        meta = layer_data[1]["metadata"]
        role = meta[ROLE_KEY]
        if role not in self.stores or str(self.stores[role].path) != meta[STORE_KEY]:
            return  # the store was closed or replaced meanwhile
        self._add_missing(role, [layer_data])
        self.apply_mode()

    def _on_worker_done(self, worker: Any) -> None:
        if worker in self.workers:
            self.workers.remove(worker)

    def remove_genes(self, genes: Iterable[str]) -> None:
        """Remove the layers of ``genes`` from the viewer."""
        for gene in genes:
            for layer in list(self._layers(role="gene", channel=gene)):
                self.viewer.layers.remove(layer)
        self.apply_mode()

    # ------------------------------------------------------------------ comparison
    def pairs(self) -> list[tuple[Any, Any]]:
        """Matching (real, generated) layers: same role and channel (stain, gene, ...)."""
        out = []
        for real in self._layers(role_of="real"):
            meta = real.metadata
            if meta.get("teramind_role") == "regions":
                continue
            for gen in self._layers(
                role=meta["teramind_role"], channel=meta["teramind_channel"], role_of="generated"
            ):
                out.append((real, gen))
        return out

    def link_contrast(self, linked: bool | None = None) -> None:
        """Link (or unlink) contrast limits and gamma of matching real and generated layers."""
        linked = self.link_box.isChecked() if linked is None else linked
        for real, gen in self.pairs():
            if linked:
                gen.contrast_limits = real.contrast_limits
                gen.gamma = real.gamma
                self.viewer.layers.link_layers([real, gen], LINKED_ATTRIBUTES)
            else:
                self.viewer.layers.unlink_layers([real, gen], LINKED_ATTRIBUTES)

    def apply_mode(self) -> None:
        """Apply the comparison mode: grid with one cell per store, or a cross-faded overlay."""
        grid = viewer_grid(self.viewer)
        both = all(role in self.stores for role in ROLES)
        side_by_side = self.mode_combo.currentText() == SIDE_BY_SIDE
        self.opacity_slider.setEnabled(both and not side_by_side)
        if side_by_side and both:
            groups = self.side_by_side_groups()
            order = [layer for group in groups for layer in group]
            for i, layer in enumerate(order):
                j = self.viewer.layers.index(layer)
                if j != i:
                    self.viewer.layers.move(j, i)
            grid.stride = max(1, len(groups[0]))
            grid.enabled = True
            for layer in self._layers():
                if layer.metadata.get("teramind_role") != "regions":
                    layer.opacity = 1.0
        else:
            grid.enabled = False
            mirror = self._region_mirror(create=False)
            if mirror is not None:
                mirror.visible = False
            t = self.opacity_slider.value() / 100 if both else 0.0
            for layer in self._layers():
                if layer.metadata.get("teramind_role") == "regions":
                    continue
                role = _role_of(layer, self.stores)
                layer.opacity = t if role == "generated" else (1.0 - t if both else 1.0)
        if both and self.link_box.isChecked():
            self.link_contrast(True)

    def side_by_side_groups(self) -> list[list[Any]]:
        """The layers of each grid cell: the real store's, then the generated store's.

        Every layer joins a cell, so none takes a cell of its own: previews of a generation
        and generated nuclei join the generated cell, real nuclei, the region rectangle and
        other layers the real one; a copy of the rectangle (kept in sync) is shown in the
        generated cell. napari's grid places layers by position (``stride`` per cell, no
        per-layer placement in napari 0.6-0.9), so the fuller cell comes first.
        """
        real, generated = (list(self._layers(role_of=r)) for r in ROLES)
        mirror = self._region_mirror(create=True)
        for layer in self.viewer.layers:
            if layer in real or layer in generated:
                continue
            meta = getattr(layer, "metadata", {}) or {}
            to_generated = (
                layer is mirror
                or meta.get("teramind_role") == "preview"
                or (
                    meta.get("teramind_role") == "nuclei"
                    and meta.get("teramind_channel") == "generated"
                )
            )
            (generated if to_generated else real).append(layer)
        if mirror is not None:
            mirror.visible = True
        groups = [real, generated]
        groups.sort(key=len, reverse=True)  # a full first cell keeps the stride exact
        return groups

    def _region_mirror(self, create: bool) -> Any:
        """The copy of the region rectangle shown over the generated store (side by side)."""
        from napari_teramind.widgets.generate import REGION_LAYER

        name = f"{REGION_LAYER} (on generated)"
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        if not create or REGION_LAYER not in self.viewer.layers:
            return None
        source = self.viewer.layers[REGION_LAYER]
        mirror = self.viewer.add_shapes(
            [d.copy() for d in source.data],
            shape_type=source.shape_type,
            name=name,
            scale=source.scale,
            translate=source.translate,
            edge_color="yellow",
            face_color="transparent",
            edge_width=float(source.edge_width[0]) if len(source.edge_width) else 2.0,
            units=source.units,
            axis_labels=source.axis_labels,
            metadata={"teramind_role": "region mirror"},
        )

        def follow(_event: Any = None) -> None:
            if mirror in self.viewer.layers and source in self.viewer.layers:
                mirror.data = [d.copy() for d in source.data]
                mirror.shape_type = source.shape_type

        source.events.data.connect(follow)
        return mirror

    def set_mode(self, mode: str) -> None:
        """Switch to ``"Overlay"`` or ``"Side by side"``."""
        if mode not in (OVERLAY, SIDE_BY_SIDE):
            raise ValueError(f"mode must be {OVERLAY!r} or {SIDE_BY_SIDE!r}, not {mode!r}")
        self.mode_combo.setCurrentText(mode)
        self.apply_mode()


def _role_of(layer: Any, stores: dict[str, BrainStore]) -> str | None:
    """``real``/``generated`` when ``layer`` shows one of the open stores, else ``None``."""
    meta = getattr(layer, "metadata", {}) or {}
    path = meta.get(STORE_KEY)
    if not path:
        return None
    tagged = meta.get(ROLE_KEY)
    matches = [r for r, s in stores.items() if str(s.path) == path]
    if tagged in matches:
        return tagged
    return matches[0] if len(matches) == 1 else None


def _info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _warn(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
