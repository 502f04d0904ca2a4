"""Slice navigation shared by the widgets: the viewer's z position in store slices, keys."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import napari

#: Keyboard shortcuts for the next / previous slice, bound on the viewer.
NEXT_SLICE_KEY = "PageDown"
PREVIOUS_SLICE_KEY = "PageUp"


def bind_slice_keys(viewer: napari.viewer.Viewer, step: Callable[[int], None]) -> None:
    """Bind ``PageDown``/``PageUp`` on ``viewer`` to ``step(+1)``/``step(-1)``.

    ``step`` is held weakly when it is a bound method, so a closed widget does not leak.
    """
    ref: Callable[[], Callable[[int], None] | None]
    if hasattr(step, "__self__"):
        ref = weakref.WeakMethod(step)  # type: ignore[arg-type]
    else:

        def ref() -> Callable[[int], None]:
            return step

    def stepper(delta: int):
        def bound(_viewer: Any) -> None:
            fn = ref()
            if fn is not None:
                try:
                    fn(delta)
                except RuntimeError:  # the Qt widget was deleted
                    pass

        bound.__doc__ = "Next slice" if delta > 0 else "Previous slice"
        return bound

    viewer.bind_key(NEXT_SLICE_KEY, stepper(1), overwrite=True)
    viewer.bind_key(PREVIOUS_SLICE_KEY, stepper(-1), overwrite=True)


def current_slice(viewer: napari.viewer.Viewer, store: Any) -> int:
    """Index of the section of ``store`` the viewer shows (0 for 2D views)."""
    if viewer.dims.ndim < 3:
        return 0
    z0, dz = slice_origin(store)
    k = round((float(viewer.dims.point[0]) - z0) / dz)
    return int(min(max(k, 0), store.n_slices - 1))


def slice_origin(store: Any) -> tuple[float, float]:
    """World z (micrometres) of slice 0 of ``store`` and the spacing between slices."""
    level = store.levels("images")[0]
    return float(level.translation[1]), float(level.scale[1])


def show_slice(viewer: napari.viewer.Viewer, store: Any, k: int) -> None:
    """Move the viewer to slice ``k`` of ``store`` (clipped to its slices)."""
    if viewer.dims.ndim < 3:
        return
    z0, dz = slice_origin(store)
    viewer.dims.set_point(0, z0 + min(max(k, 0), store.n_slices - 1) * dz)


#: Tooltip suffix of a slices field on a store of one section.
ONE_SECTION_TIP = " (this store has one section: there is nothing to pick)"


def single_section_slices(edit: Any, store: Any, default: str) -> None:
    """Follow ``store``'s sections in a slices field (a ``QLineEdit``).

    A store of one section (a human section) has no slices, pairs or groups to pick: the field
    shows ``0`` and is disabled. A store of several sections enables it again (``default``
    replaces the ``0`` that was forced).
    """
    one = int(store.n_slices) == 1
    tip = edit.toolTip().removesuffix(ONE_SECTION_TIP)
    if one:
        edit.setText("0")
    elif not edit.isEnabled():
        edit.setText(default)
    edit.setEnabled(not one)
    edit.setToolTip(tip + (ONE_SECTION_TIP if one else ""))
