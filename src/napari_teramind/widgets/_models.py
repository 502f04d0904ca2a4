"""The model picker: bundled, a native checkpoint or a published ``.ckpt``."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QWidget,
)

from napari_teramind.widgets._settings import get_setting, save_settings

MODEL_SOURCES = ("bundled", "checkpoint", "published")


def load_model(spec: str | None, device: str = "cpu") -> tuple[Any, Any]:
    """The model of ``spec`` (``None``: bundled) on ``device``, cached per process.

    Delegates to :func:`napari_teramind.generate.devices.load_model` (the engine's cache, so a
    model the widgets loaded is not loaded again by an in-process job). Call it in a worker.
    """
    from napari_teramind.generate.devices import load_model as engine_load_model

    return engine_load_model("bundled" if spec in (None, "bundled") else str(spec), device)


class ModelPicker(QWidget):
    """The model to use: bundled, a native checkpoint, or a published ``.ckpt`` (imported)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.source = QComboBox()
        self.source.addItems(MODEL_SOURCES)
        self.source.setToolTip(
            "bundled: the small model shipped with the plugin (offline demo); checkpoint: a "
            "napari-teramind checkpoint file or directory; published: a Tera-MIND .ckpt "
            "(imported safely, never unpickled)"
        )
        self.path = QLineEdit()
        self.path.setPlaceholderText("path/to/checkpoint")
        self.path.setToolTip("Checkpoint file or directory (not used for the bundled model)")
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Choose a checkpoint file")
        layout.addWidget(self.source)
        layout.addWidget(self.path, 1)
        layout.addWidget(self.browse)
        source = str(get_setting("model"))
        self.source.setCurrentText(source if source in MODEL_SOURCES else "bundled")
        self.path.setText(str(get_setting("model_path")))
        self._sync()
        self.source.currentTextChanged.connect(lambda _: self._changed())
        self.path.editingFinished.connect(self._changed)
        self.browse.clicked.connect(self._choose)

    def _sync(self) -> None:
        custom = self.source.currentText() != "bundled"
        self.path.setEnabled(custom)
        self.browse.setEnabled(custom)

    def _changed(self) -> None:
        self._sync()
        save_settings(model=self.source.currentText(), model_path=self.path.text().strip())

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint")
        if path:
            self.path.setText(path)
            self._changed()

    def spec(self) -> str | None:
        """What :func:`resolve_model` takes: ``None`` for bundled, else the checkpoint path."""
        if self.source.currentText() == "bundled":
            return None
        text = self.path.text().strip()
        if not text:
            raise ValueError(
                f"no checkpoint path given for a {self.source.currentText()} model; type or "
                "choose one, or pick 'bundled'"
            )
        return text


def model_store_text(config: Any, report: Any) -> str:
    """What a model makes of a store, for the widgets' model label.

    The model's slice scheme (:meth:`~napari_teramind.slices.SliceScheme.describe`) and, where
    the store's panel differs from the model's (missing genes, or human ortholog symbols), the
    panel report (:meth:`~napari_teramind.store.ModelPanelReport.summary`): shared genes, their
    share of the model's panel, the missing genes and the pathways that cannot be mapped.
    """
    scheme = config.slice_scheme
    text = f"Model: {scheme.describe()}"
    if scheme.image_depth > 1:
        d = scheme.image_depth
        text += f" (slices are generated in groups of {d}: 0-{d - 1}, {d}-{2 * d - 1}, ...)"
    if report.missing or report.uses_orthologs:
        text += "\n" + report.summary()
    return text


def model_label() -> QLabel:
    """The label where a widget shows :func:`model_store_text` or why it refuses the model."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setToolTip(
        "How the model serves this store: its slice scheme and, where the store measures other "
        "genes than the model (a human section), the genes they share and those missing"
    )
    return label
