"""Small layer and layout helpers shared by the widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QWidget

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
