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


def overview_figure(
    store: BrainStore,
    slice_index: int | None = None,
    genes: Sequence[str] = ("Slc17a7", "Slc17a6", "Th", "Nr4a2"),
    max_size: int = 1024,
):
    """A matplotlib figure: stains, region labels and a few genes of one slice.

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
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = store.n_slices // 2 if slice_index is None else int(slice_index)
    if not 0 <= z < store.n_slices:
        raise ValueError(f"slice {z} is outside the store's 0..{store.n_slices - 1}")
    k = coarse_level(store, "images", max_size)
    img = compute(store.images(k)[:, z])
    genes = [g for g in genes if g in store.panel]
    panels = 2 + (1 if store.has_regions else 0) + len(genes)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.2 * img.shape[1] / img.shape[2]))
    axes = np.atleast_1d(axes)
    axes[0].imshow(stain_composite(img[0], img[1]))
    axes[0].set_title(f"DAPI + PolyT, slice {z}")
    axes[1].imshow(img[0], cmap="gray")
    axes[1].set_title("DAPI")
    i = 2
    if store.has_regions:
        kr = coarse_level(store, "images/labels/regions", max_size)
        lab = compute(store.regions(kr)[z])
        axes[i].imshow(lab, cmap="tab20", interpolation="nearest")
        axes[i].set_title("regions (ground truth)" if store.kind == "phantom" else "regions")
        i += 1
    kg = coarse_level(store, "genes", max_size // store.gene_block_px)
    for g in genes:
        counts = compute(store.gene(g, kg)[z])
        axes[i].imshow(np.log2(1 + counts.astype(np.float32)), cmap="magma")
        axes[i].set_title(f"{g} log2(1+count)")
        i += 1
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{store.path.name}: {store.kind}, {len(store.panel)} genes", fontsize=10)
    fig.tight_layout()
    return fig


def save_overview(
    store: BrainStore, path: str | os.PathLike[str], slice_index: int | None = None, **kwargs
) -> Path:
    """Write :func:`overview_figure` to a PNG file and return its path."""
    return _save(overview_figure(store, slice_index, **kwargs), path)


def _save(fig, path: str | os.PathLike[str]) -> Path:
    """Write a figure to a PNG file atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
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
    fig, axes = plt.subplots(2, panels, figsize=(3.2 * panels, 6.4), squeeze=False)
    for j, (label, img) in enumerate(crops.items()):
        axes[0, j].imshow(stain_composite(img[0], img[1]))
        axes[0, j].set_title(f"{label}: DAPI + PolyT")
        axes[1, j].imshow(img[0], cmap="gray", vmin=0, vmax=255)
        axes[1, j].set_title(f"{label}: DAPI")
    if attention:
        from napari_teramind.attention.validate import map_score

        gb = real.gene_block_px
        by = slice(y0 // gb, -(-y1 // gb))
        bx = slice(x0 // gb, -(-x1 // gb))
        att = map_score(real, attention, "all", slices=[z])[0, by, bx]
        axes[0, -1].imshow(att, cmap="inferno", vmin=0, vmax=2)
        axes[0, -1].set_title(f"{attention} attention ('all')")
        genes = [real.panel.index(g) for g in real.attention_metadata(attention).get("genes", [])]
        expr = compute(real.genes(0)[genes, z, by, bx])
        axes[1, -1].imshow(np.log2(1 + expr.astype(np.float32)).sum(0), cmap="magma")
        axes[1, -1].set_title(f"{attention} genes log2(1+count)")
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"slice {z}, region y {y0}:{y1}, x {x0}:{x1} px", fontsize=10)
    fig.tight_layout()
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
