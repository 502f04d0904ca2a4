"""The published MERFISH gene panels, as data (the bottom layer: standard library only).

Both :class:`napari_teramind.store.GenePanel` (aligning datasets) and the import of published
checkpoints in :mod:`napari_teramind.model` (naming a checkpoint's genes) need the published
gene order; it lives here so that ``model/`` does not depend on the storage layer.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["PUBLISHED_PANELS", "published_panel_names"]

#: The published panels shipped with the package (files in ``panels/data``), by mouse.
PUBLISHED_PANELS = {
    "638850": "panel-638850.csv",
    "609882": "panel-609882-609889.csv",
    "609889": "panel-609882-609889.csv",
}


def published_panel_names(mouse: str = "638850") -> tuple[str, ...]:
    """Return the gene names of the published 500-gene panel of ``mouse``, in panel order.

    Parameters
    ----------
    mouse
        The published mouse id (``"638850"``, ``"609882"`` or ``"609889"``).

    Raises
    ------
    KeyError
        For a mouse without a published panel (the message lists those with one).
    """
    try:
        fname = PUBLISHED_PANELS[str(mouse)]
    except KeyError:
        raise KeyError(
            f"no published panel for mouse {mouse!r}; choose one of {sorted(PUBLISHED_PANELS)}"
        ) from None
    text = resources.files(__package__).joinpath("data", fname).read_text()
    return tuple(ln.strip() for ln in text.splitlines()[1:] if ln.strip())
