"""Overview figures of a brain store (PNG), for the demo, reports and docs.

Reads only a coarse pyramid level, so an overview of a whole brain costs a few chunks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_teramind.store import BrainStore
from napari_teramind.store.compute import compute


def coarse_level(store: BrainStore, name: str, max_size: int) -> int:
    """The finest level of multiscale ``name`` whose larger side is at most ``max_size``."""
    n = store.n_levels(name)
    for k in range(n):
        if max(store.zarr_array(name, k).shape[-2:]) <= max_size:
            return k
    return n - 1


def stain_composite(dapi: np.ndarray, polyt: np.ndarray) -> np.ndarray:
    """RGB float image of DAPI (blue) over PolyT (green), each scaled to its 99.5th percentile."""

    def norm(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        hi = max(float(np.percentile(a, 99.5)), 1.0)
        return np.clip(a / hi, 0, 1)

    d, p = norm(dapi), norm(polyt)
    return np.stack([0.25 * d, p * 0.85 + 0.15 * d, d], axis=-1).clip(0, 1)


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``target`` (a scale-bar length)."""
    if target <= 0:
        raise ValueError(f"a scale bar needs a positive length, got {target}")
    k = 10 ** np.floor(np.log10(target))
    return float(max(m * k for m in (1, 2, 5) if m * k <= target))


def add_scale_bar(ax, um_per_px: float, width_px: int, color: str = "white"):
    """Draw a scale bar of about a fifth of the panel in the lower right corner of ``ax``.

    Parameters
    ----------
    ax
        A matplotlib axes showing an image of ``width_px`` columns.
    um_per_px
        Micrometres per displayed pixel (the store's pixel size times the level's downsampling).
    width_px
        Width of the displayed image in pixels.
    color
        Colour of the bar and its label.

    Returns
    -------
    AnchoredSizeBar
        The artist (its ``scale_bar_um`` attribute is the length in micrometres).
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    um = nice_length(0.2 * width_px * um_per_px)
    label = f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} \u00b5m"
    bar = AnchoredSizeBar(ax.transData, um / um_per_px, label, "lower right", pad=0.4,
                          color=color, frameon=False, size_vertical=max(1.0, width_px / 150),
                          fontproperties={"size": 8})  # fmt: skip
    bar.scale_bar_um = um
    ax.add_artist(bar)
    return bar


def add_colorbar(fig, image, ax, label: str):
    """A slim colour bar beside ``ax`` for ``image`` (an ``AxesImage``), labelled ``label``."""
    cb = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, shrink=0.9)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    return cb


def grid_shape(panels: int, panel_aspect: float, target: float = 4 / 3) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of ``panels`` panels of width/height ``panel_aspect``.

    The grid whose overall width/height is closest to ``target`` (a page, not a strip), with a
    penalty for empty cells.
    """

    def cost(cols: int) -> float:
        rows = -(-panels // cols)
        empty = rows * cols - panels
        return abs(float(np.log(cols * panel_aspect / rows / target))) + 0.5 * empty / cols

    best = min(range(1, panels + 1), key=cost)
    return -(-panels // best), best


def overview_figure(
    store: BrainStore,
    slice_index: int | None = None,
    genes: Sequence[str] = ("Slc17a7", "Slc17a6", "Th", "Nr4a2"),
    max_size: int = 1024,
    panel_in: float = 3.6,
):
    """A matplotlib figure: stains, region labels and a few genes of one slice, in a grid.

    Every image panel carries a scale bar (micrometres, from the store's pixel size) and every
    intensity panel a colour bar; the panels are laid out in a grid close to 4:3.

    Parameters
    ----------
    store
        The brain store.
    slice_index
        Slice to show; the middle slice by default.
    genes
        Genes to show (those absent from the panel are skipped).
    max_size
        Largest image side read (a pyramid level no larger is used).
    panel_in
        Width of one panel in inches.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = store.n_slices // 2 if slice_index is None else int(slice_index)
    if not 0 <= z < store.n_slices:
        raise ValueError(f"slice {z} is outside the store's 0..{store.n_slices - 1}")
    k = coarse_level(store, "images", max_size)
    img = compute(store.images(k)[:, z])
    um_px = float(store.levels("images")[k].scale[-1])
    genes = [g for g in genes if g in store.panel]
    panels = 2 + (1 if store.has_regions else 0) + len(genes)
    aspect = img.shape[2] / img.shape[1]
    rows, cols = grid_shape(panels, aspect)
    size = (panel_in * cols, (panel_in / aspect + 0.45) * rows + 0.4)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained", figsize=size)
    axes = axes.ravel()
    width = img.shape[2]
    axes[0].imshow(stain_composite(img[0], img[1]))
    axes[0].set_title(f"DAPI (blue) + PolyT (green), slice {z}", fontsize=9)
    add_scale_bar(axes[0], um_px, width)
    im = axes[1].imshow(img[0], cmap="gray")
    axes[1].set_title("DAPI", fontsize=9)
    add_scale_bar(axes[1], um_px, width)
    add_colorbar(fig, im, axes[1], "DAPI intensity")
    i = 2
    if store.has_regions:
        kr = coarse_level(store, "images/labels/regions", max_size)
        lab = compute(store.regions(kr)[z])
        axes[i].imshow(lab, cmap="tab20", interpolation="nearest")
        axes[i].set_title("regions (ground truth)" if store.kind == "phantom" else "regions",
                          fontsize=9)  # fmt: skip
        add_scale_bar(axes[i], float(store.levels("images/labels/regions")[kr].scale[-1]),
                      lab.shape[-1])  # fmt: skip
        i += 1
    kg = coarse_level(store, "genes", max_size // store.gene_block_px)
    um_block = float(store.levels("genes")[kg].scale[-1])
    for g in genes:
        counts = compute(store.gene(g, kg)[z])
        im = axes[i].imshow(np.log2(1 + counts.astype(np.float32)), cmap="magma")
        axes[i].set_title(g, fontsize=9)
        add_scale_bar(axes[i], um_block, counts.shape[-1])
        add_colorbar(fig, im, axes[i], "log2(1 + count)")
        i += 1
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{store.path.name}: {store.kind}, {len(store.panel)} genes, "
                 f"{store.pixel_size_um:g} \u00b5m/px", fontsize=10)  # fmt: skip
    return fig


def save_overview(
    store: BrainStore, path: str | os.PathLike[str], slice_index: int | None = None, **kwargs
) -> Path:
    """Write :func:`overview_figure` to a PNG file and return its path."""
    return _save(overview_figure(store, slice_index, **kwargs), path)


def _save(fig, path: str | os.PathLike[str], dpi: float = 110) -> Path:
    """Write a figure to a PNG file atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def comparison_figure(
    real: BrainStore,
    generated: Mapping[str, BrainStore],
    region: Sequence[int],
    slice_index: int,
    attention: str | None = None,
):
    """A matplotlib figure: one region of one slice, real next to each generated store.

    Every panel carries a scale bar (micrometres, from the real store's pixel size); the DAPI
    row (shared 0-255 range) and the attention panels carry colour bars.

    Parameters
    ----------
    real
        The real (or phantom) brain store.
    generated
        Generated stores by label (e.g. ``{"generated": ..., "gene-blind": ...}``).
    region
        ``(y0, y1, x0, x1)`` in image px (read at full resolution: keep it small).
    slice_index
        The slice shown.
    attention
        Name of an attention map of ``real`` to show over the region (its "all" channels,
        normalised for display), if any.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y0, y1, x0, x1 = (int(v) for v in region)
    z = int(slice_index)
    stores = {"real": real, **dict(generated)}
    crops = {k: compute(s.images(0)[:, z, y0:y1, x0:x1]) for k, s in stores.items()}
    panels = len(crops) + (1 if attention else 0)
    aspect = (x1 - x0) / (y1 - y0)
    fig, axes = plt.subplots(2, panels, squeeze=False, layout="constrained",
                             figsize=(3.4 * panels, 2 * 3.2 / aspect + 0.8))  # fmt: skip
    px = real.pixel_size_um
    for j, (label, img) in enumerate(crops.items()):
        axes[0, j].imshow(stain_composite(img[0], img[1]))
        axes[0, j].set_title(f"{label}: DAPI + PolyT", fontsize=9)
        add_scale_bar(axes[0, j], px, x1 - x0)
        im = axes[1, j].imshow(img[0], cmap="gray", vmin=0, vmax=255)
        axes[1, j].set_title(f"{label}: DAPI", fontsize=9)
        add_scale_bar(axes[1, j], px, x1 - x0)
    add_colorbar(fig, im, axes[1, len(crops) - 1], "DAPI intensity (0-255)")
    if attention:
        from napari_teramind.attention.validate import map_score

        gb = real.gene_block_px
        by = slice(y0 // gb, -(-y1 // gb))
        bx = slice(x0 // gb, -(-x1 // gb))
        att = map_score(real, attention, "all", slices=[z])[0, by, bx]
        im = axes[0, -1].imshow(att, cmap="inferno", vmin=0, vmax=2)
        axes[0, -1].set_title(f"{attention} attention ('all')", fontsize=9)
        add_scale_bar(axes[0, -1], px * gb, att.shape[-1])
        add_colorbar(fig, im, axes[0, -1], "attention score (normalised)")
        genes = [real.panel.index(g) for g in real.attention_metadata(attention).get("genes", [])]
        expr = compute(real.genes(0)[genes, z, by, bx])
        im = axes[1, -1].imshow(np.log2(1 + expr.astype(np.float32)).sum(0), cmap="magma")
        axes[1, -1].set_title(f"{attention} genes", fontsize=9)
        add_scale_bar(axes[1, -1], px * gb, expr.shape[-1])
        add_colorbar(fig, im, axes[1, -1], "sum of log2(1 + count)")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"slice {z}, region y {y0}:{y1}, x {x0}:{x1} px", fontsize=10)
    return fig


def save_comparison(
    real: BrainStore,
    generated: Mapping[str, BrainStore],
    region: Sequence[int],
    slice_index: int,
    path: str | os.PathLike[str],
    **kwargs,
) -> Path:
    """Write :func:`comparison_figure` to a PNG file and return its path."""
    return _save(comparison_figure(real, generated, region, slice_index, **kwargs), path)


#: Layout of :func:`crops_figure`, in output pixels.
CROP_TITLE_PX = 22
CROP_LABEL_PX = 64
CROP_GAP_PX = 6
CROP_DPI = 100


def crop_window(region: Sequence[int], size: int, period: int = 64) -> tuple[int, int, int, int]:
    """A ``size`` x ``size`` px window at the middle of ``region``, on the region's 64 px grid.

    The window's origin is a multiple of ``period`` px from the region's origin, so the patch
    lattice of a tiled generation (if any) falls on the same columns and rows of every crop.
    """
    y0, y1, x0, x1 = (int(v) for v in region)
    size = int(min(size, y1 - y0, x1 - x0))
    if size <= 0:
        raise ValueError(f"region {tuple(region)} is empty")

    def start(a: int, b: int) -> int:
        mid = a + ((b - a - size) // 2 // period) * period
        return max(a, min(mid, b - size))

    cy, cx = start(y0, y1), start(x0, x1)
    return cy, cy + size, cx, cx + size


def crop_panel_origin(row: int, col: int, size: int) -> tuple[int, int]:
    """Pixel ``(top, left)`` of panel ``(row, col)`` in a :func:`crops_figure` PNG."""
    return (CROP_TITLE_PX + row * (size + CROP_GAP_PX),
            CROP_LABEL_PX + col * (size + CROP_GAP_PX))  # fmt: skip


def crops_figure(
    real: BrainStore,
    generated: Mapping[str, BrainStore],
    region: Sequence[int],
    slice_index: int,
    size: int = 256,
):
    """Crops shown at 1:1: one screen pixel per image pixel, DAPI and PolyT rows.

    Columns are ``real`` and each generated store (e.g. generated, gene-blind); rows are DAPI
    and PolyT, each in grey on the stores' full 0-255 range (no per-panel contrast stretch, so
    brightness compares across panels). The window (:func:`crop_window`) sits on the region's
    64 px grid, so a patch lattice would show at the same place in every generated panel.
    Saved at :data:`CROP_DPI` with no resampling, the PNG holds the stores' pixel values
    exactly (panel ``(row, col)`` starts at :func:`crop_panel_origin`). Each panel carries a
    micrometre scale bar.

    Parameters
    ----------
    real
        The real (or phantom) brain store.
    generated
        Generated stores by label.
    region
        ``(y0, y1, x0, x1)`` in image px: the generated region the window is taken from.
    slice_index
        The slice shown.
    size
        Side of the window in px (at most the region's smaller side).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cy0, cy1, cx0, cx1 = crop_window(region, size)
    size = cy1 - cy0
    z = int(slice_index)
    stores = {"real": real, **dict(generated)}
    crops = {k: compute(s.images(0)[:, z, cy0:cy1, cx0:cx1]) for k, s in stores.items()}
    cols, rows = len(crops), 2
    width = CROP_LABEL_PX + cols * size + (cols - 1) * CROP_GAP_PX + CROP_GAP_PX
    height = CROP_TITLE_PX + rows * size + (rows - 1) * CROP_GAP_PX + CROP_TITLE_PX
    fig = plt.figure(figsize=(width / CROP_DPI, height / CROP_DPI), dpi=CROP_DPI)
    fig.patch.set_facecolor("white")
    for r, stain in enumerate(("DAPI", "PolyT")):
        for c, (label, img) in enumerate(crops.items()):
            top, left = crop_panel_origin(r, c, size)
            ax = fig.add_axes((left / width, 1 - (top + size) / height, size / width,
                               size / height))  # fmt: skip
            ax.imshow(img[r], cmap="gray", vmin=0, vmax=255, interpolation="nearest",
                      resample=False)  # fmt: skip
            ax.set_axis_off()
            add_scale_bar(ax, real.pixel_size_um, size)
            if r == 0:
                fig.text((left + size / 2) / width, 1 - (CROP_TITLE_PX - 6) / height, label,
                         ha="center", va="bottom", fontsize=9)  # fmt: skip
        fig.text(4 / width, 1 - (top + size / 2) / height, stain, ha="left", va="center",
                 fontsize=9)  # fmt: skip
    fig.text(width / 2 / width, 4 / height,
             f"1:1 crops, slice {z}, y {cy0}:{cy1}, x {cx0}:{cx1} px "
             f"({real.pixel_size_um:g} \u00b5m/px)", ha="center", va="bottom",
             fontsize=8)  # fmt: skip
    return fig


def save_crops(
    real: BrainStore,
    generated: Mapping[str, BrainStore],
    region: Sequence[int],
    slice_index: int,
    path: str | os.PathLike[str],
    size: int = 256,
) -> Path:
    """Write :func:`crops_figure` to a PNG at 1:1 (no resampling) and return its path."""
    fig = crops_figure(real, generated, region, slice_index, size=size)
    return _save(fig, path, dpi=CROP_DPI)
