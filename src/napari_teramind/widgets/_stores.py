"""Brain stores shown in the viewer, and the store path picker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QToolButton, QWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari


def stores_in_viewer(viewer: napari.viewer.Viewer) -> list[str]:
    """Paths of the brain stores shown in ``viewer`` (from its layers' metadata), in order."""
    from napari_teramind.layers import STORE_KEY

    out: list[str] = []
    for layer in viewer.layers:
        path = (getattr(layer, "metadata", None) or {}).get(STORE_KEY)
        if path and path not in out:
            out.append(path)
    return out


class StorePicker(QWidget):
    """A brain store path (typed, chosen, or taken from the layers already in the viewer)."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer | None = None,
        parent: QWidget | None = None,
        what: str = "real brain store",
        kind: str | None = "real",
    ):
        super().__init__(parent)
        self._what = what
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("path/to/brain.zarr")
        self.edit.setToolTip(
            f"Directory of the {what} (a .zarr written by napari-teramind); filled in from the "
            "layers already open in the viewer"
        )
        self.button = QToolButton()
        self.button.setText("…")
        self.button.setToolTip(f"Choose the {what} directory")
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)
        self.button.clicked.connect(self._choose)
        if viewer is not None:
            self.adopt(viewer, kind)

    def adopt(self, viewer: napari.viewer.Viewer, kind: str | None = "real") -> None:
        """Fill in the first store of ``kind`` shown in ``viewer`` (when the field is empty).

        ``kind="real"`` takes any store that is not generated (real data or a phantom).
        """
        if self.edit.text().strip():
            return
        for path in stores_in_viewer(viewer):
            layer_kinds = {
                (layer.metadata or {}).get("teramind_kind")
                for layer in viewer.layers
                if (layer.metadata or {}).get("teramind_store") == path
            }
            real = kind == "real" and layer_kinds - {"generated"}
            if kind is None or kind in layer_kinds or real:
                self.edit.setText(path)
                return

    def _choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, f"Choose the {self._what}")
        if path:
            self.edit.setText(path)

    def path(self) -> str:
        """The path typed (``ValueError`` naming the fix when empty)."""
        text = self.edit.text().strip()
        if not text:
            raise ValueError(f"no {self._what} given; type its path or open it in napari first")
        return text

    def open(self, mode: str = "r") -> Any:
        """Open the store (``BrainStore.open``; its errors name the problem)."""
        from napari_teramind.store import BrainStore

        return BrainStore.open(self.path(), mode=mode)
