"""Pyramidal OME-TIFF of one slice of a brain store, written tile by tile.

The file is a BigTIFF whose first page holds full resolution and whose sub-IFDs hold the 2x
reductions (the layout QuPath, Bio-Formats and OMERO read as a pyramid). Pixel sizes are in the
OME-XML (``PhysicalSizeX/Y`` in micrometres) and in the TIFF resolution tags. Only one row of
tiles of one level is in memory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_teramind.store import CHANNELS, BrainStore

COMPRESSIONS = ("zlib", "jpeg", "lzw", "zstd", "none")


def _tiles(arr, tile: int, progress: Callable[[], None] | None) -> Iterator[np.ndarray]:
    """Tiles of a lazy ``(c, y, x)`` array in TIFF order (plane, row, column), edge-padded."""
    c, h, w = arr.shape
    for ci in range(c):
        for y0 in range(0, h, tile):
            band = np.asarray(arr[ci, y0 : y0 + tile, :])
            if progress is not None:  # counted on read: the writer may not resume us at the end
                progress()
            for x0 in range(0, w, tile):
                t = band[:, x0 : x0 + tile]
                if t.shape != (tile, tile):
                    t = np.pad(t, ((0, tile - t.shape[0]), (0, tile - t.shape[1])))
                yield np.ascontiguousarray(t)


def _export_box(
    store: BrainStore, z: int, region: Sequence[int] | None, whole: bool
) -> tuple[int, int, int, int]:
    """The ``(y0, y1, x0, x1)`` px exported: given, covered, or the whole canvas."""
    if region is not None:
        if whole:
            raise ValueError("give either a region or whole=True (--whole), not both")
        if len(region) != 4:
            raise ValueError(f"region is (y0, y1, x0, x1) in px, got {tuple(region)}")
        y0, y1, x0, x1 = (int(v) for v in region)
        if not (0 <= y0 < y1 <= store.height and 0 <= x0 < x1 <= store.width):
            raise ValueError(
                f"region {(y0, y1, x0, x1)} is empty or outside the {store.height} x "
                f"{store.width} px canvas"
            )
        return (y0, y1, x0, x1)
    box = None if whole else store.covered_box(z)
    return box if box is not None else (0, store.height, 0, store.width)


def _crop(arr, box: tuple[int, int, int, int], f: int):
    """``arr[..., y, x]`` over ``box`` (image px) at ``f`` px per element."""
    y0, y1, x0, x1 = box
    return arr[..., y0 // f : -(-y1 // f), x0 // f : -(-x1 // f)]


def export_ome_tiff(
    store: BrainStore | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    slice_index: int,
    stains: Sequence[str] = CHANNELS,
    gene: str | None = None,
    tile: int = 256,
    compression: str = "zlib",
    quality: int = 90,
    min_size: int = 256,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    region: Sequence[int] | None = None,
    whole: bool = False,
) -> Path:
    """Write one slice of a brain store (real or generated) as a pyramidal OME-TIFF.

    Parameters
    ----------
    store
        The brain store (or its path).
    out
        Target file, conventionally ``*.ome.tif``.
    slice_index
        Which slice.
    stains
        ``DAPI``, ``PolyT`` or both (channels of the file, in this order).
    gene
        Export this gene's counts (uint16, one element per 16-px block) instead of images.
    tile
        Tile edge in pixels (a multiple of 16).
    compression
        ``zlib`` (lossless, default), ``jpeg`` (lossy, small; images only), ``lzw``, ``zstd``
        or ``none``.
    quality
        JPEG quality.
    min_size
        Stop adding pyramid levels once the larger side is at most this.
    overwrite
        Replace an existing file.
    progress
        Called as ``progress(rows_done, rows_total)`` after each row of tiles written.
    region
        ``(y0, y1, x0, x1)`` in image pixels to export. By default the region the store holds
        data for on this slice: the whole canvas, or the bounding box of the regions a
        generated store covers (its ``coverage``).
    whole
        Export the whole canvas even from a store that covers only regions (the rest is 0).

    Returns
    -------
    Path
        The file written.
    """
    import tifffile

    if not isinstance(store, BrainStore):
        store = BrainStore.open(store, allow_incomplete=True)
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if not 0 <= slice_index < store.n_slices:
        raise ValueError(f"slice {slice_index} is out of range: the store has {store.n_slices}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    if tile % 16 or tile <= 0:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile}")
    box = _export_box(store, slice_index, region, whole)
    if gene is not None:
        if compression == "jpeg":
            raise ValueError("gene counts are uint16: use a lossless compression, not jpeg")
        g = store.panel.index(gene)
        unit = store.gene_block_px
        levels = [
            _crop(store.genes(k)[g : g + 1, slice_index], box, unit * 2**k)
            for k in range(store.n_levels("genes"))
        ]
        px = store.pixel_size_um * store.gene_block_px
        names = [gene]
    else:
        stains = list(stains)
        bad = [s for s in stains if s not in CHANNELS]
        if bad or not stains:
            raise ValueError(f"stains must be among {list(CHANNELS)}, got {stains}")
        idx = [CHANNELS.index(s) for s in stains]
        levels = [
            _crop(store.images(k)[idx, slice_index], box, 2**k)
            for k in range(store.n_levels("images"))
        ]
        px = store.pixel_size_um
        names = stains
    # Keep levels down to min_size; the store's own pyramid (2x per level) provides them.
    keep = [levels[0]]
    for lv in levels[1:]:
        if max(keep[-1].shape[1:]) <= min_size:
            break
        keep.append(lv)
    dtype = keep[0].dtype
    comp: Any = None if compression == "none" else compression
    comp_args = {"level": int(quality)} if comp == "jpeg" else None
    metadata = {
        "axes": "CYX",
        "PhysicalSizeX": px,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": px,
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": list(names)},
        "Name": f"{store.path.name} slice {slice_index}",
        "Description": f"napari-teramind export of {store.path} ({store.kind}), "
        f"region y {box[0]}:{box[1]}, x {box[2]}:{box[3]} px of slice {slice_index}",
    }
    total = sum(lv.shape[0] * -(-lv.shape[1] // tile) for lv in keep)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    tmp = out.with_name(out.name + ".partial")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            for k, lv in enumerate(keep):
                scale = px * 2**k
                opts = dict(
                    shape=lv.shape,
                    dtype=dtype,
                    tile=(tile, tile),
                    compression=comp,
                    compressionargs=comp_args,
                    photometric="minisblack",
                    resolution=(1e4 / scale, 1e4 / scale),
                    resolutionunit="CENTIMETER",
                )
                if k == 0:
                    tif.write(
                        _tiles(lv, tile, step), subifds=len(keep) - 1, metadata=metadata, **opts
                    )
                else:
                    tif.write(_tiles(lv, tile, step), subfiletype=1, metadata=None, **opts)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
