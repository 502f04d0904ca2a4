"""Shims over napari versions (0.6.6 to 0.9): grid, camera, batched layer updates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import napari


def viewer_grid(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` from napari 0.9, else ``viewer.grid``)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def viewer_camera(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def batched_layer_update(viewer: napari.viewer.Viewer) -> Any:
    """``viewer.layers.batched_update()`` where napari has it, else a do-nothing context.

    Batching makes napari clean up its canvas once for many layer changes.
    """
    from contextlib import nullcontext

    batched = getattr(viewer.layers, "batched_update", None)
    return batched() if batched is not None else nullcontext()


def show_colorbar(layer: Any) -> bool:
    """Show ``layer``'s colour bar (napari >= 0.6 image layers); whether there is one."""
    bar = getattr(layer, "colorbar", None)
    if bar is None or not hasattr(bar, "visible"):
        return False
    bar.visible = True
    return True
