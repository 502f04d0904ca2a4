"""The published MERFISH gene panels, as data (the bottom layer: standard library only).

Both :class:`napari_teramind.store.GenePanel` (aligning datasets) and the import of published
checkpoints in :mod:`napari_teramind.model` (naming a checkpoint's genes) need the published
gene order; it lives here so that ``model/`` does not depend on the storage layer.
"""

from __future__ import annotations

from importlib import resources

__all__ = [
    "HUMAN_PANEL",
    "NAMED_PANELS",
    "ORTHOLOG_PANEL",
    "PUBLISHED_PANELS",
    "human_orthologs",
    "human_panel_names",
    "named_panel_names",
    "published_panel_names",
]

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


#: The 319-gene human brain panel of the published ``--to_hbr`` path (human symbols).
HUMAN_PANEL = "human-brain-panel-319"
#: The 81 mouse genes with a human ortholog in :data:`HUMAN_PANEL` (mouse symbols).
ORTHOLOG_PANEL = "human-orthologs-81"
#: Panels known by name (``GenePanel.named``, ``--panel NAME``).
NAMED_PANELS = (ORTHOLOG_PANEL, HUMAN_PANEL)


def _rows(fname: str) -> list[list[str]]:
    text = resources.files(__package__).joinpath("data", fname).read_text()
    return [[c.strip() for c in ln.split(",")] for ln in text.splitlines() if ln.strip()]


def human_panel_names() -> tuple[str, ...]:
    """The 319 human gene symbols of the published human brain panel (``HBR``), in order."""
    return tuple(r[0] for r in _rows(f"{HUMAN_PANEL}.csv")[1:])


def human_orthologs() -> dict[str, str]:
    """Mouse symbol to human symbol of the 81 orthologs (``M2H_dct``), in the published order.

    Every human symbol is in :func:`human_panel_names`; TH (the DOPA pathway) is not among
    them, SLC17A6 and SLC17A7 (GLUT), NR4A2 and AQP4 are.
    """
    rows = _rows(f"{ORTHOLOG_PANEL}.csv")
    head = rows[0]
    m, h = head.index("mouse_symbol"), head.index("human_symbol")
    return {r[m]: r[h] for r in rows[1:]}


def named_panel_names(name: str) -> tuple[str, ...]:
    """Genes of a panel known by name.

    ``human-orthologs-81``: the 81 mouse symbols; ``human-brain-panel-319``: human symbols.

    Raises
    ------
    KeyError
        For another name (the message lists the known ones).
    """
    if name == ORTHOLOG_PANEL:
        return tuple(human_orthologs())
    if name == HUMAN_PANEL:
        return human_panel_names()
    raise KeyError(f"no panel named {name!r}; the named panels are {', '.join(NAMED_PANELS)}")
