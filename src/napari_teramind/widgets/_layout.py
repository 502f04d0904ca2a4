"""Small layer and layout helpers shared by the widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QVBoxLayout, QWidget

if TYPE_CHECKING:  # pragma: no cover
    import napari


def add_layer_data(viewer: napari.viewer.Viewer, layer_data: tuple) -> Any:
    """Add one napari ``LayerData`` tuple ``(data, kwargs, layer_type)`` and return the layer.

    Uses the public :meth:`napari.layers.Layer.create` (what napari does with a reader's
    layer data), so widgets need no private viewer API.
    """
    from napari.layers import Layer

    data, kwargs, layer_type = layer_data
    return viewer.add_layer(Layer.create(data, kwargs, layer_type))


def set_tooltip(widget: QWidget, text: str) -> QWidget:
    """``widget`` with tooltip ``text`` (for building rows inline)."""
    widget.setToolTip(text)
    return widget


def scroll_body(widget: QWidget) -> QVBoxLayout:
    """Give ``widget`` a vertically scrolling body and return the body's layout.

    A dock built on it needs little height of its own (napari stacks docks in one column), so
    several docks fit on a 1080 px screen; what does not fit scrolls. The scroll area is kept
    as ``widget.scroll_area``.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    body = QWidget()
    area.setWidget(body)
    outer.addWidget(area)
    widget.scroll_area = area  # type: ignore[attr-defined]
    return QVBoxLayout(body)
