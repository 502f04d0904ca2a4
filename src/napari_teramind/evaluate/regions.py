"""Tissue masks and evaluation regions.

Tissue is defined from the **real** store's gene counts, as in the published evaluation (which
drops slices whose gene counts are all zero over a tile): a 16-px gene block is tissue when any
gene has a count there, after a 3 x 3-block binary closing that fills the isolated empty blocks
of sparse tissue. The pixel mask repeats each block over its 16 x 16 pixels. Images are not
used, so a generated store cannot change the mask it is scored on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_teramind.store.compute import compute

#: Default region edge in pixels (published: 1,024-px regions of 4 x 4 tiles).
REGION_SIZE = 1024
#: Default minimum fraction of tissue blocks in a sampled region.
MIN_TISSUE_FRACTION = 0.5


@dataclass(frozen=True)
class Region:
    """A rectangle of one slice, ``[y0, y1) x [x0, x1)`` in image pixels."""

    z: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)``."""
        return (self.y0, self.y1, self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    def __str__(self) -> str:
        return f"z{self.z}:y{self.y0}-{self.y1}:x{self.x0}-{self.x1}"


def tissue_blocks(store, z: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Tissue mask of slice ``z`` at gene-block resolution (bool ``(hb, wb)``).

    Parameters
    ----------
    store
        The real :class:`~napari_teramind.store.BrainStore`.
    z
        Slice index.
    box
        ``(y0, y1, x0, x1)`` in pixels; the whole slice by default. The closing looks one block
        beyond the box, so a region's mask equals the same window of the whole-slice mask.
    """
    from scipy import ndimage as ndi

    gb = store.gene_block_px
    y0, y1, x0, x1 = box or (0, store.height, 0, store.width)
    hb, wb = store.height // gb, store.width // gb
    by0, by1 = max(y0 // gb - 2, 0), min(-(-y1 // gb) + 2, hb)
    bx0, bx1 = max(x0 // gb - 2, 0), min(-(-x1 // gb) + 2, wb)
    counts = store.genes()[:, z, by0:by1, bx0:bx1]
    anyg = compute((counts > 0).any(axis=0))
    # closing = dilation then erosion; pad with the border values so edges are not eroded
    padded = np.pad(anyg, 1, mode="edge")
    closed = ndi.binary_erosion(ndi.binary_dilation(padded, np.ones((3, 3))), np.ones((3, 3)))
    closed = closed[1:-1, 1:-1] | anyg
    cy0, cx0 = y0 // gb - by0, x0 // gb - bx0
    return closed[cy0 : cy0 + -(-y1 // gb) - y0 // gb, cx0 : cx0 + -(-x1 // gb) - x0 // gb]


def tissue_mask(store, region: Region) -> np.ndarray:
    """Pixel tissue mask (bool ``(h, w)``) of ``region``: its gene blocks repeated 16 x 16."""
    gb = store.gene_block_px
    blocks = tissue_blocks(store, region.z, region.box)
    px = np.repeat(np.repeat(blocks, gb, axis=0), gb, axis=1)
    oy, ox = region.y0 % gb, region.x0 % gb
    h, w = region.shape
    return px[oy : oy + h, ox : ox + w]


def clip_size(store, region_size: int) -> int:
    """The region edge actually used: ``region_size`` clipped to the store, in whole blocks."""
    gb = store.gene_block_px
    if region_size < 2 * gb:
        raise ValueError(f"region_size must be at least {2 * gb} px, got {region_size}")
    size = min(int(region_size), store.height, store.width)
    return size - size % gb


def sample_regions(
    store,
    slices: Sequence[int],
    n_regions: int,
    region_size: int = REGION_SIZE,
    seed: int = 0,
    min_tissue: float = MIN_TISSUE_FRACTION,
    covered=None,
) -> list[Region]:
    """Choose up to ``n_regions`` non-overlapping square regions inside tissue, per slice.

    Candidates are all block-aligned squares of ``clip_size(store, region_size)`` px whose
    tissue fraction is at least ``min_tissue``; they are drawn in a random order fixed by
    ``(seed, z)`` and kept when they overlap no region kept before. A slice with too little
    tissue yields fewer regions (possibly none). ``covered(z)`` may return a block mask of
    where every store to be scored has data; regions must then lie wholly inside it.
    """
    if n_regions < 1:
        raise ValueError(f"n_regions must be at least 1, got {n_regions}")
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue must be in [0, 1], got {min_tissue}")
    gb = store.gene_block_px
    size = clip_size(store, region_size)
    s = size // gb
    out: list[Region] = []
    for z in slices:
        blocks = tissue_blocks(store, z).astype(np.int64)
        frac = _window_mean(blocks, s)
        ok = frac >= max(min_tissue, 1e-9)
        if covered is not None:
            ok &= _window_mean(np.asarray(covered(z), np.int64), s) >= 1.0
        cand = np.argwhere(ok)
        rng = np.random.default_rng([int(seed), int(z)])
        taken: list[tuple[int, int]] = []
        for i in rng.permutation(len(cand)):
            by, bx = cand[i]
            if all(abs(by - ty) >= s or abs(bx - tx) >= s for ty, tx in taken):
                taken.append((int(by), int(bx)))
                if len(taken) == n_regions:
                    break
        for by, bx in sorted(taken):
            out.append(Region(int(z), by * gb, by * gb + size, bx * gb, bx * gb + size))
    return out


def _window_mean(blocks: np.ndarray, s: int) -> np.ndarray:
    """Mean of every ``s x s`` window (top-left indexed), from a summed-area table."""
    hb, wb = blocks.shape
    sat = np.zeros((hb + 1, wb + 1), np.int64)
    sat[1:, 1:] = blocks.cumsum(0).cumsum(1)
    return (sat[s:, s:] - sat[:-s, s:] - sat[s:, :-s] + sat[:-s, :-s]) / (s * s)


def chunk_coverage(store, z: int) -> np.ndarray:
    """Block mask of where ``store`` has written image chunks on slice ``z``.

    A complete store is covered where its metadata says (everywhere, or the regions and
    slices a generated store records in ``coverage``); an incomplete generated store (a
    region generated so far) only where its level-0 image chunks exist on disk.
    """
    gb = store.gene_block_px
    hb, wb = store.height // gb, store.width // gb
    if store.complete:
        if store.coverage is None:
            return np.ones((hb, wb), bool)
        out = np.zeros((hb, wb), bool)
        for c in store.coverage:
            if z in c.slices:
                y0, y1, x0, x1 = c.region
                out[y0 // gb : -(-y1 // gb), x0 // gb : -(-x1 // gb)] = True
        return out
    arr = store.zarr_array("images", 0)
    cc, _, cy, cx = arr.chunks
    root = store.path / arr.path / "c"
    out = np.zeros((hb, wb), bool)
    for iy in range(-(-store.height // cy)):
        for ix in range(-(-store.width // cx)):
            if all(
                (root / str(c) / str(z) / str(iy) / str(ix)).exists()
                for c in range(-(-arr.shape[0] // cc))
            ):
                out[iy * cy // gb : (iy + 1) * cy // gb, ix * cx // gb : (ix + 1) * cx // gb] = 1
    return out


def grid_regions(
    store,
    slices: Sequence[int],
    region_size: int = REGION_SIZE,
    min_tissue: float = 0.0,
    covered=None,
) -> list[Region]:
    """Tile whole slices into regions (the last row and column clipped to the store).

    Tiles whose tissue fraction is not above ``min_tissue`` are left out, so with the default
    every tile holding any tissue is evaluated: the whole brain, chunk by chunk. ``covered(z)``
    (a block mask, see :func:`sample_regions`) leaves out tiles not wholly covered.
    """
    gb = store.gene_block_px
    size = clip_size(store, region_size)
    out = []
    for z in slices:
        blocks = tissue_blocks(store, z)
        cov = None if covered is None else np.asarray(covered(z), bool)
        for y0 in range(0, store.height, size):
            for x0 in range(0, store.width, size):
                y1, x1 = min(y0 + size, store.height), min(x0 + size, store.width)
                win = (slice(y0 // gb, -(-y1 // gb)), slice(x0 // gb, -(-x1 // gb)))
                if cov is not None and not cov[win].all():
                    continue
                if blocks[win].mean() > min_tissue:
                    out.append(Region(int(z), y0, y1, x0, x1))
    return out


def user_regions(store, boxes: Sequence[Sequence[int]], slices: Sequence[int]) -> list[Region]:
    """Regions from user boxes ``(y0, y1, x0, x1)``, each on every slice, checked and clipped."""
    out = []
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"a region is (y0, y1, x0, x1), got {tuple(box)}")
        y0, y1, x0, x1 = (int(v) for v in box)
        y0, x0 = max(y0, 0), max(x0, 0)
        y1, x1 = min(y1, store.height), min(x1, store.width)
        if y1 - y0 < 11 or x1 - x0 < 11:
            raise ValueError(
                f"region {tuple(box)} is empty or smaller than 11 x 11 px inside the store "
                f"({store.height} x {store.width} px); give (y0, y1, x0, x1) in image pixels"
            )
        out.extend(Region(int(z), y0, y1, x0, x1) for z in slices)
    return out
