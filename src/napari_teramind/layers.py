"""Brain stores as napari layer data, without importing napari or Qt.

:func:`brain_layers` turns a :class:`~napari_teramind.store.BrainStore` into a list of napari
``LayerData`` tuples ``(data, kwargs, layer_type)``. Every layer is multiscale (a list of lazy
dask arrays, finest first), carries explicit contrast limits and the store's NGFF
transformations in micrometres, so images, gene-count blocks, region labels and attention maps
line up with no manual scaling. The reader, the sample data and the widgets all build their
layers here; scripts can pass a tuple to ``napari.layers.Layer.create(*t)`` or unpack it into
``viewer.add_image(data, **kwargs)``.

Examples
--------
>>> from napari_teramind.store import BrainStore
>>> from napari_teramind.layers import brain_layers
>>> store = BrainStore.open("brain.zarr")  # doctest: +SKIP
>>> for data, kwargs, kind in brain_layers(store, genes=["Slc17a7"]):  # doctest: +SKIP
...     getattr(viewer, f"add_{kind}")(data, **kwargs)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.store.compute import compute

if TYPE_CHECKING:  # pragma: no cover
    from napari_teramind.store import BrainStore

#: A napari ``LayerData`` tuple: ``(data, layer kwargs, layer type)``.
LayerData = tuple[Any, dict[str, Any], str]

#: Colormaps of the stains (blue DAPI and green PolyT, as in the store's ``omero`` metadata).
STAIN_COLORMAPS: dict[str, str] = {"DAPI": "blue", "PolyT": "green"}

#: Pathway colours of the published code (METHOD.md appendix B, ``utils.CM``), one per gene of
#: the pathway pair, then the colour of the composite.
PATHWAY_COLORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "GLUT": ((0.0, 1.0, 0.82), (0.69, 1.0, 0.0), (0.89, 0.0, 1.0)),
    "DOPA": ((1.0, 0.0, 0.4), (1.0, 0.4, 0.0), (1.0, 1.0, 0.4)),
    "BLOD": ((1.0, 0.43, 1.0), (1.0, 0.2, 0.49)),
}

#: Colours cycled through for genes outside the pathway pairs.
GENE_COLORS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 1.0),  # magenta
    (1.0, 1.0, 0.0),  # yellow
    (0.0, 1.0, 1.0),  # cyan
    (1.0, 0.5, 0.0),  # orange
    (1.0, 0.25, 0.25),  # red
    (0.6, 0.6, 1.0),  # lavender
)

#: Opacity of attention overlays: at 1 they saturate to white and hide the tissue.
ATTENTION_OPACITY = 0.6

#: Key of the layer metadata that names the source store (widgets look for it).
STORE_KEY = "teramind_store"

UNITS = ("um", "um", "um")
AXIS_LABELS = ("z", "y", "x")


#: Store names that say what a store is but not which one (job outputs are all
#: ``<job>/generated.zarr``): layer names put the parent directory before them.
GENERIC_STORE_NAMES = frozenset({"generated", "perturbed", "output", "result", "store"})


def store_stem(path: str | Path) -> str:
    """The directory name of the store at ``path`` without ``.zarr``."""
    return Path(path).name.removesuffix(".zarr")


def store_display_name(store: BrainStore | str | Path) -> str:
    """Short name of a store (or a store's path) for layer names.

    The directory name without ``.zarr``; a generic one (:data:`GENERIC_STORE_NAMES`, such as a
    job's ``generated.zarr``) is preceded by its parent directory, the job's name, so that two
    jobs' layers can be told apart: ``jobs/glut-1/generated.zarr`` is ``"glut-1 generated"``.
    Every place that names layers after a store uses this function.
    """
    path = Path(store if isinstance(store, str | Path) else store.path)
    stem = store_stem(path)
    if stem.lower() in GENERIC_STORE_NAMES and path.parent.name:
        return f"{store_stem(path.parent)} {stem}"
    return stem


#: Gene colours that stand apart from the stains (blue DAPI, green PolyT): used instead of a
#: pathway colour that is greenish or bluish (GLUT's teal and yellow-green).
STAIN_SAFE_COLORS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 1.0),  # magenta
    (1.0, 0.55, 0.0),  # orange
    (1.0, 1.0, 0.0),  # yellow
    (1.0, 0.25, 0.25),  # red
)


def _near_stain(rgb: Sequence[float]) -> bool:
    """Whether ``rgb`` reads as green or blue (a stain colour) more than as red/magenta."""
    r, g, b = rgb
    return r < 0.75 and (g >= 0.6 or b >= 0.6)


def gene_color(gene: str, panel_position: int = 0) -> tuple[float, float, float]:
    """Display colour of ``gene``: its pathway colour, else one of :data:`GENE_COLORS`.

    A colour that would sit on a stain's (green or blue) is replaced by one of
    :data:`STAIN_SAFE_COLORS` (the pair's first gene magenta, its second orange).

    Parameters
    ----------
    gene
        Gene symbol.
    panel_position
        Position of the gene in its panel; picks the fallback colour so that a gene keeps its
        colour across sessions.
    """
    from napari_teramind.store import PATHWAYS

    for pathway, pair in PATHWAYS.items():
        if gene in pair:
            color = PATHWAY_COLORS[pathway][pair.index(gene)]
            return STAIN_SAFE_COLORS[pair.index(gene)] if _near_stain(color) else color
    color = GENE_COLORS[panel_position % len(GENE_COLORS)]
    return (
        STAIN_SAFE_COLORS[panel_position % len(STAIN_SAFE_COLORS)] if _near_stain(color) else color
    )


def linear_colormap(name: str, rgb: Sequence[float]) -> dict[str, Any]:
    """A black-to-``rgb`` colormap as a dict napari turns into a ``Colormap``."""
    r, g, b = (float(v) for v in rgb)
    return {"name": name, "colors": [[0.0, 0.0, 0.0, 1.0], [r, g, b, 1.0]]}


def _spatial(levels: Sequence[Any], has_channel: bool) -> tuple[list[float], list[float]]:
    """Level-0 scale and translation of the (z, y, x) axes, micrometres."""
    lv = levels[0]
    k = 1 if has_channel else 0
    return [float(v) for v in lv.scale[k:]], [float(v) for v in lv.translation[k:]]


def _base_kwargs(
    store: BrainStore, name: str, group: str, has_channel: bool, meta: dict[str, Any]
) -> dict[str, Any]:
    scale, translate = _spatial(store.levels(group), has_channel)
    return {
        "name": name,
        "scale": scale,
        "translate": translate,
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
        "multiscale": True,
        "metadata": meta,
    }


def _pack(levels: list[Any], kwargs: dict[str, Any], layer_type: str) -> LayerData:
    """A multiscale layer, or a plain one when the pyramid has a single level.

    napari mistakes a one-level list whose first axis has length 1 for 2D data, so a single
    level is passed as the array itself.
    """
    if len(levels) == 1:
        return (levels[0], {**kwargs, "multiscale": False}, layer_type)
    return (levels, kwargs, layer_type)


def _coarsest(store: BrainStore, group: str) -> int:
    return store.n_levels(group) - 1


def gene_contrast_limits(
    store: BrainStore, gene: str, percentile: float = 99.0
) -> tuple[float, float]:
    """Contrast limits ``(0, hi)`` of a gene from its coarsest pyramid level.

    ``hi`` is the ``percentile`` of the non-zero counts of the coarsest level (gene levels are
    max-pooled, so this is a robust upper bound of the full-resolution counts), at least 1.
    Reads one small level of one gene; the widgets call it off the GUI thread.
    """
    level = store.gene(gene, _coarsest(store, "genes"))
    values = compute(level).ravel()
    values = values[values > 0]
    hi = float(np.percentile(values, percentile)) if values.size else 1.0
    return (0.0, float(max(1, math.ceil(hi))))


def attention_contrast_limits(
    store: BrainStore, name: str, channel: int = 0
) -> tuple[float, float]:
    """Contrast limits of attention map ``name`` (channel ``channel``): 1st-99th percentile."""
    level = store.attention(name, _coarsest(store, f"attention/{name}"))[channel]
    values = compute(level).astype(np.float64).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, (1.0, 99.0)))
    if hi <= lo:
        hi = lo + 1.0
    return (lo, hi)


def stain_layers(
    store: BrainStore,
    stains: Iterable[str] = ("DAPI", "PolyT"),
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[LayerData]:
    """One image layer per stain, named ``"<store> <stain>"``.

    Parameters
    ----------
    store
        An open brain store.
    stains
        Stain channels to show, from ``store.metadata["channels"]`` (``DAPI``, ``PolyT``).
    name
        Prefix of the layer names; the store's directory name by default.
    metadata
        Extra entries for every layer's ``metadata``.
    """
    channels = list(store.metadata.get("channels", ("DAPI", "PolyT")))
    prefix = name or store_display_name(store)
    n = store.n_levels("images")
    out: list[LayerData] = []
    for stain in stains:
        if stain not in channels:
            raise KeyError(f"{store.path} has no stain {stain!r} (has: {channels})")
        c = channels.index(stain)
        data = [store.images(k)[c] for k in range(n)]
        meta = _metadata(store, "stain", stain, metadata)
        kwargs = _base_kwargs(store, f"{prefix} {stain}", "images", True, meta)
        kwargs.update(
            contrast_limits=(0.0, 255.0),
            colormap=STAIN_COLORMAPS.get(stain, "gray"),
            blending="additive",
        )
        out.append(_pack(data, kwargs, "image"))
    return out


def gene_layers(
    store: BrainStore,
    genes: Iterable[str],
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    contrast_limits: Mapping[str, tuple[float, float]] | None = None,
) -> list[LayerData]:
    """One image layer per gene of transcript counts per gene block, ``"<store> <gene>"``.

    The layers' scale is the gene block (e.g. 16 px) and their translation puts the centre of
    block ``(i, j)`` at the centre of the image pixels it sums, so they overlay the stains.

    Parameters
    ----------
    store
        An open brain store.
    genes
        Gene symbols of the store's panel.
    name
        Prefix of the layer names; the store's directory name by default.
    metadata
        Extra entries for every layer's ``metadata``.
    contrast_limits
        Known limits per gene; others are computed by :func:`gene_contrast_limits`
        (reads the coarsest level of the gene).
    """
    panel = store.panel
    prefix = name or store_display_name(store)
    n = store.n_levels("genes")
    out: list[LayerData] = []
    for gene in genes:
        g = panel.index(gene)  # a KeyError naming close matches when absent
        data = [store.genes(k)[g] for k in range(n)]
        limits = (contrast_limits or {}).get(gene) or gene_contrast_limits(store, gene)
        meta = _metadata(store, "gene", gene, metadata)
        kwargs = _base_kwargs(store, f"{prefix} {gene}", "genes", True, meta)
        kwargs.update(
            contrast_limits=tuple(float(v) for v in limits),
            colormap=linear_colormap(f"teramind {gene}", gene_color(gene, g)),
            blending="additive",
        )
        out.append(_pack(data, kwargs, "image"))
    return out


def region_colors(store: BrainStore) -> dict[int, list[float]]:
    """RGBA colours (0-1) per region id, from the store's NGFF ``image-label`` metadata."""
    path = Path(store.path) / "images" / "labels" / "regions" / "zarr.json"
    colors: dict[int, list[float]] = {}
    try:
        attrs = json.loads(path.read_text())["attributes"]
        for entry in attrs["ome"]["image-label"]["colors"]:
            colors[int(entry["label-value"])] = [v / 255 for v in entry["rgba"]]
    except (OSError, KeyError, TypeError, ValueError):
        return {}
    return colors


def region_layer(
    store: BrainStore,
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    opacity: float = 0.25,
) -> LayerData:
    """The region label image as a multiscale labels layer, ``"<store> regions"``.

    Region names are in the layer's ``features`` (columns ``index`` and ``name``), so napari's
    status bar shows the region under the cursor.
    """
    names = store.region_names
    prefix = name or store_display_name(store)
    n = store.n_levels("images/labels/regions")
    data = [store.regions(k) for k in range(n)]
    ids = [0, *sorted(names)]
    features = {"index": ids, "name": ["background", *(names[i] for i in ids[1:])]}
    meta = _metadata(store, "regions", "regions", metadata)
    kwargs = _base_kwargs(store, f"{prefix} regions", "images/labels/regions", False, meta)
    kwargs.update(features=features, opacity=opacity, blending="translucent")
    colors = region_colors(store)
    if colors:
        kwargs["colormap"] = {None: [0.0, 0.0, 0.0, 0.0], 0: [0.0, 0.0, 0.0, 0.0], **colors}
    return _pack(data, kwargs, "labels")


def attention_layers(
    store: BrainStore,
    attention: Iterable[str],
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    normalise: bool = True,
    options: Any = None,
) -> list[LayerData]:
    """One image layer per channel of each attention map, ``"<store> <map> <channel>"``.

    Maps written by :mod:`napari_teramind.attention` (channels ``<kind>:<gene>``) are shown
    normalised as published (``log2(1 + G * value)``, ``log2(1 + count)``, masked to where both
    genes are expressed, Gaussian sigma 2 blocks), lazily per chunk and pyramid level, with
    black-to-pathway-colour colormaps (METHOD.md appendix B) and additive blending; the
    ``all:`` channels are visible, the others hidden. Contrast maps
    (:mod:`napari_teramind.attention.contrast`) show their ``z`` channel with a diverging
    colormap symmetric about 0 (the other channels hidden). Other maps are shown raw with
    ``magma``.

    Parameters
    ----------
    store
        An open brain store.
    attention
        Map names (``store.attention_names()``).
    name
        Prefix of the layer names; the store's directory name by default.
    metadata
        Extra entries for every layer's ``metadata``.
    normalise
        Show the normalised maps (False: raw stored values).
    options
        A :class:`napari_teramind.attention.normalise.NormaliseOptions` overriding the map's
        defaults.
    """
    prefix = name or store_display_name(store)
    out: list[LayerData] = []
    for att in attention:
        group = f"attention/{att}"
        att_meta = store.attention_metadata(att)
        channels = list(att_meta.get("channels", []))
        n = store.n_levels(group)
        n_channels = store.attention(att, 0).shape[0]
        typed = len(channels) == n_channels and all(
            c.partition(":")[0] in ("up", "down", "all", "expr") and ":" in c for c in channels
        )
        channels += [str(i) for i in range(len(channels), n_channels)]
        levels = [store.attention(att, k) for k in range(n)]
        if normalise and typed and att_meta.get("normalisation"):
            from napari_teramind.attention.normalise import normalised_levels, options_for

            levels = normalised_levels(store, att, options or options_for(store, att))
        else:
            typed = False
        for c, channel in enumerate(channels[:n_channels]):
            data = [lv[c] for lv in levels]
            meta = _metadata(store, "attention", f"{att}/{channel}", metadata)
            kwargs = _base_kwargs(store, f"{prefix} {att} {channel}", group, True, meta)
            if typed:
                kind, _, gene = channel.partition(":")
                panel = store.panel
                position = panel.index(gene) if gene in panel else c
                kwargs.update(
                    contrast_limits=_display_limits(data[-1]),
                    colormap=linear_colormap(f"teramind {att} {gene}", gene_color(gene, position)),
                    blending="additive",
                    opacity=ATTENTION_OPACITY,  # the tissue stays readable under the map
                    visible=kind == "all",
                )
            elif att_meta.get("kind") == "gene-gene attention contrast" and channel == "z":
                # the contrast z: diverging, symmetric about 0, drawn over the images
                hi = float(np.abs(np.asarray(attention_contrast_limits(store, att, c))).max())
                kwargs.update(
                    contrast_limits=(-max(hi, 3.0), max(hi, 3.0)),
                    colormap="PiYG",
                    blending="translucent",
                    opacity=0.7,
                    visible=True,
                )
            else:
                contrast_map = att_meta.get("kind") == "gene-gene attention contrast"
                kwargs.update(
                    contrast_limits=attention_contrast_limits(store, att, c),
                    colormap="magma",
                    blending="additive",
                    opacity=ATTENTION_OPACITY,
                    visible=c == 0 and not contrast_map,
                )
            out.append(_pack(data, kwargs, "image"))
    return out


def _display_limits(coarsest: Any) -> tuple[float, float]:
    """``(0, 99th percentile of the non-zero values)`` of a small normalised level."""
    values = compute(coarsest)
    values = values[np.isfinite(values) & (values > 0)]
    hi = float(np.percentile(values, 99.0)) if values.size else 1.0
    return (0.0, hi if hi > 0 else 1.0)


def _metadata(
    store: BrainStore, role: str, channel: str, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        STORE_KEY: str(store.path),
        "teramind_kind": store.kind,
        "teramind_role": role,
        "teramind_channel": channel,
        **dict(extra or {}),
    }


def brain_layers(
    store: BrainStore,
    genes: Iterable[str] = (),
    stains: Iterable[str] = ("DAPI", "PolyT"),
    regions: bool = True,
    attention: Iterable[str] = (),
    *,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[LayerData]:
    """All layers of a brain store, as napari ``LayerData`` tuples, bottom layer first.

    Parameters
    ----------
    store
        An open :class:`~napari_teramind.store.BrainStore`.
    genes
        Gene symbols to add as one layer each (lazy; only their contrast limits are computed,
        from the coarsest level).
    stains
        Stains to add as one image layer each (``DAPI`` blue, ``PolyT`` green, additive).
    regions
        Add the region label image when the store has one.
    attention
        Names of attention maps to add, one layer per channel.
    name
        Prefix of the layer names; the store's directory name (without ``.zarr``) by default.
    metadata
        Extra entries for every layer's ``metadata``; each layer's metadata already holds
        ``teramind_store`` (the store path), ``teramind_kind``, ``teramind_role`` (``stain``,
        ``gene``, ``regions``, ``attention``) and ``teramind_channel``.

    Returns
    -------
    list of (data, kwargs, layer_type)
        ``data`` is a list of dask arrays ``(z, y, x)``, finest first (a single dask array
        with ``multiscale=False`` when the pyramid has one level); ``kwargs`` holds ``name``,
        ``scale`` and ``translate`` (micrometres, level 0), ``units``, ``axis_labels``,
        ``multiscale``, ``contrast_limits``, ``colormap``, ``blending`` and ``metadata``;
        ``layer_type`` is ``"image"`` or ``"labels"``.
    """
    out = stain_layers(store, stains, name=name, metadata=metadata)
    if regions and store.has_regions:
        out.append(region_layer(store, name=name, metadata=metadata))
    out += gene_layers(store, genes, name=name, metadata=metadata)
    out += attention_layers(store, attention, name=name, metadata=metadata)
    return out


__all__ = [
    "GENERIC_STORE_NAMES",
    "GENE_COLORS",
    "PATHWAY_COLORS",
    "STAIN_COLORMAPS",
    "STORE_KEY",
    "LayerData",
    "attention_contrast_limits",
    "attention_layers",
    "brain_layers",
    "gene_color",
    "gene_contrast_limits",
    "gene_layers",
    "linear_colormap",
    "region_colors",
    "region_layer",
    "stain_layers",
    "store_display_name",
    "store_stem",
]
