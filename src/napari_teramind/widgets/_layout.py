"""Small layer and layout helpers shared by the widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

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


def add_sampler_rows(form: QFormLayout, max_block_px: int = 8192) -> tuple[QSpinBox, ...]:
    """Add the sampler's rows to ``form`` and return its ``(steps, seed, block)`` spin boxes.

    ``Steps`` (with the seed beside it) and ``Block px`` on two rows, from the remembered
    settings: one layout for every widget that samples, narrow enough for napari's dock column.
    """
    from napari_teramind.widgets._settings import get_setting

    steps = set_tooltip(QSpinBox(), "DDIM sampler steps (more: slower, finer)")
    steps.setRange(1, 1000)
    steps.setValue(int(get_setting("steps")))
    seed = set_tooltip(QSpinBox(), "Seed of the initial noise (same seed, same result)")
    seed.setRange(0, 2**31 - 1)
    seed.setValue(int(get_setting("seed")))
    block = set_tooltip(
        QSpinBox(),
        "Block size in pixels: the region is generated block by block (exact tiling, the "
        "result does not depend on it); smaller blocks use less memory",
    )
    block.setRange(64, max_block_px)
    block.setSingleStep(64)
    block.setValue(max(64, int(get_setting("block_px")) // 64 * 64))
    row = QHBoxLayout()
    row.addWidget(steps)
    row.addWidget(QLabel("seed"))
    row.addWidget(seed)
    form.addRow("Steps", row)
    form.addRow("Block px", block)
    return steps, seed, block
