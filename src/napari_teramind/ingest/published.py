"""The published Tera-MIND tile layout (METHOD.md section 1) into a brain store.

Per mouse, ``gene_{mouse}/{stem}.npz`` holds a pydata-``sparse`` COO array
``(H1-H0, W1-W0, 50 * 500)`` of transcript counts per pixel (channel = slice * 500 + gene slot)
and ``img_{mouse}/{stem}.zip`` a zarr v2 array ``(100, H1-H0, W1-W0)`` uint8 (DAPI of slices
0..49, then PolyT of slices 0..49). The stem is ``{h0}_{h1}_{w0}_{w1}_{H0}_{H1}_{W0}_{W1}``:
the 256-px tile plus its context margin. Only each file's own tile ``[h0, h1) x [w0, w1)`` is
ingested, so neighbouring files never count a transcript twice.

The npz files are read with numpy alone (the keys ``sparse.save_npz`` writes: ``coords``,
``data``, ``shape``, ``fill_value``); the zip images with zarr's v2 reader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_teramind.store import BrainStore, GenePanel
from napari_teramind.store.brainstore import GENE_CHUNK_BLOCKS

from .pipeline import make_progress, writes_store
from .report import IngestReport, SliceReport
from .resume import fingerprint

#: Published canvas (H x W px), tile edge, slices, gene slots per slice (METHOD.md 1.1-1.3).
CANVAS = (73_728, 106_496)
TILE = 256
N_SLICES = 50
SLOTS = 500
_STEM = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)$")


@dataclass(frozen=True)
class Tile:
    """One published tile: its own extent and the extent of its file (tile plus margin)."""

    h0: int
    h1: int
    w0: int
    w1: int
    H0: int
    H1: int
    W0: int
    W1: int
    stem: str

    @classmethod
    def parse(cls, stem: str) -> Tile:
        """Parse ``{h0}_{h1}_{w0}_{w1}_{H0}_{H1}_{W0}_{W1}``; a clear error otherwise."""
        m = _STEM.match(stem)
        if not m:
            raise ValueError(f"{stem!r} is not a published tile name (h0_h1_w0_w1_H0_H1_W0_W1)")
        t = cls(*(int(v) for v in m.groups()), stem=stem)
        if not (t.H0 <= t.h0 < t.h1 <= t.H1 and t.W0 <= t.w0 < t.w1 <= t.W1):
            raise ValueError(f"tile {stem}: the tile does not lie inside its file's extent")
        if t.h0 % TILE or t.w0 % TILE:
            raise ValueError(f"tile {stem}: h0 and w0 must be multiples of {TILE}")
        return t

    @property
    def file_shape(self) -> tuple[int, int]:
        """``(H1 - H0, W1 - W0)``."""
        return self.H1 - self.H0, self.W1 - self.W0


def read_sparse_npz(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Read a pydata-``sparse`` COO ``.npz`` with numpy: ``(coords, data, shape)``.

    Raises
    ------
    ValueError
        When the file lacks the COO keys (for example a GCXS or scipy.sparse file) or its
        arrays disagree.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if not {"coords", "data", "shape"} <= keys:
                kind = "a GCXS array" if "indptr" in keys else "not a sparse COO file"
                raise ValueError(
                    f"{path} is {kind} (keys {sorted(keys)}); the published gene files are "
                    "pydata-sparse COO arrays with keys coords, data, shape, fill_value"
                )
            coords, data = f["coords"], f["data"]
            shape = tuple(int(v) for v in f["shape"])
            fill = f["fill_value"][()] if "fill_value" in keys else 0
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path} cannot be read as .npz ({exc}); it is truncated or corrupt"
        ) from None
    if fill != 0:
        raise ValueError(f"{path}: fill value {fill} is not 0; counts would be wrong")
    if coords.ndim != 2 or coords.shape[0] != len(shape) or coords.shape[1] != data.shape[0]:
        raise ValueError(
            f"{path}: coords {coords.shape}, data {data.shape} and shape {shape} disagree"
        )
    if coords.size and (coords.min() < 0 or np.any(coords.max(axis=1) >= np.asarray(shape))):
        raise ValueError(f"{path}: coordinates fall outside the array shape {shape}")
    if data.size and (np.any(data < 0) or not np.all(np.isfinite(data))):
        raise ValueError(f"{path}: negative or non-finite counts")
    return coords, data, shape


def read_zip_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a zarr v2 array saved in a zip file (``zarr.save_array(name.zip, ...)``)."""
    import zarr
    from zarr.storage import ZipStore

    path = Path(path)
    try:
        store = ZipStore(path, mode="r")
    except Exception as exc:
        raise ValueError(f"{path} is not a readable zip file ({exc})") from None
    try:
        arr = zarr.open_array(store=store, mode="r", zarr_format=2)
        return np.asarray(arr[...])
    except Exception as exc:
        raise ValueError(f"{path} is not a zarr v2 array in a zip file ({exc})") from None
    finally:
        try:
            store.close()
        except Exception:  # a store that never opened has nothing to close
            pass


def find_tiles(gene_dir: Path | None, image_dir: Path | None) -> list[Tile]:
    """Tiles present in either directory (sorted by position)."""
    stems: set[str] = set()
    for d, ext in ((gene_dir, ".npz"), (image_dir, ".zip")):
        if d is None:
            continue
        if not d.is_dir():
            raise FileNotFoundError(f"tile directory {d} does not exist")
        stems |= {p.name[: -len(ext)] for p in d.iterdir() if p.name.endswith(ext)}
    if not stems:
        raise FileNotFoundError(f"no .npz or .zip tiles in {gene_dir} / {image_dir}")
    tiles = [Tile.parse(s) for s in stems]
    return sorted(tiles, key=lambda t: (t.h0, t.w0))


@writes_store
def ingest_published(
    out: str | os.PathLike[str],
    *,
    gene_dir: str | os.PathLike[str] | None,
    image_dir: str | os.PathLike[str] | None,
    mouse: str = "638850",
    pixel_size_um: float,
    slice_spacing_um: float = 100.0,
    slices: Sequence[int] | None = None,
    n_genes: int | None = None,
    full_canvas: bool = False,
    workers: int = 2,
    progress: bool = True,
    overwrite: bool = False,
) -> IngestReport:
    """Ingest downloaded published tiles (genes and/or images) into a brain store.

    Parameters
    ----------
    out
        The brain store to write.
    gene_dir, image_dir
        ``gene_{mouse}/`` and ``img_{mouse}/`` (either may be None).
    mouse
        ``638850``, ``609882`` or ``609889``: selects the gene-slot names (the published panel).
    pixel_size_um
        Pixel size to record (the published files do not state it).
    slice_spacing_um
        Slice spacing to record.
    slices
        Published slice indices (0..49) to ingest, in store order; all 50 by default.
    n_genes
        Keep only the first ``n_genes`` slots (229 = the genes shared by both panels).
    full_canvas
        Make the store the whole 73 728 x 106 496 px published canvas; by default the store
        covers the bounding box of the tiles found, and its origin on the published canvas is
        recorded as ``canvas_origin_px``.
    workers
        Threads reading tiles.
    progress
        Show progress bars.
    overwrite
        Replace an existing ingested store (never an input, a file or a directory this
        project did not write).
    """
    out = Path(out)
    gdir = Path(gene_dir) if gene_dir else None
    idir = Path(image_dir) if image_dir else None
    from .pipeline import _open_or_create, check_output

    read = [("published gene directory", gdir), ("published image directory", idir)]
    check_output(out, overwrite, read)  # before reading anything
    tiles = find_tiles(gdir, idir)
    panel_all = GenePanel.published(mouse)
    if len(panel_all) != SLOTS:
        raise ValueError(f"the published panel of {mouse} has {len(panel_all)} genes, not {SLOTS}")
    panel = GenePanel(panel_all.names[:n_genes]) if n_genes else panel_all
    sel = list(range(N_SLICES)) if slices is None else [int(s) for s in slices]
    if not sel or min(sel) < 0 or max(sel) >= N_SLICES or len(set(sel)) != len(sel):
        raise ValueError(f"slices must be distinct indices in 0..{N_SLICES - 1}, got {sel}")
    if full_canvas:
        oh, ow, height, width = 0, 0, *CANVAS
    else:
        oh, ow = min(t.h0 for t in tiles), min(t.w0 for t in tiles)
        height = max(t.h1 for t in tiles) - oh
        width = max(t.w1 for t in tiles) - ow
    for t in tiles:
        if t.h1 - t.h0 != TILE or t.w1 - t.w0 != TILE:
            raise ValueError(f"tile {t.stem} is not {TILE} x {TILE} px")
        if t.h1 > CANVAS[0] or t.w1 > CANVAS[1]:
            raise ValueError(f"tile {t.stem} lies outside the published canvas {CANVAS}")
    config_hash = fingerprint(
        {
            "layout": "published",
            "tiles": [t.stem for t in tiles],
            "gene_dir": str(gdir),
            "image_dir": str(idir),
            "mouse": mouse,
            "slices": sel,
            "n_genes": n_genes,
            "full_canvas": full_canvas,
            "canvas": [height, width],
        }
    )
    provenance = {
        "source": "published Tera-MIND tiles",
        "mouse": mouse,
        "gene_dir": str(gdir.resolve()) if gdir else None,
        "image_dir": str(idir.resolve()) if idir else None,
        "published_slices": sel,
        "canvas_origin_px": [oh, ow],
    }

    def create() -> BrainStore:
        return BrainStore.create(
            out,
            n_slices=len(sel),
            height=height,
            width=width,
            panel=panel,
            pixel_size_um=pixel_size_um,
            slice_spacing_um=slice_spacing_um,
            kind="real",
            provenance=provenance,
            overwrite=overwrite,
            image_chunk=TILE,
            inputs=read,
        )

    store, state = _open_or_create(out, config_hash, overwrite, create, read)
    if store.complete:
        return IngestReport.load(out)
    bars = make_progress(progress)
    reports = {z: SliceReport(z=z, source=f"published slice {s}") for z, s in enumerate(sel)}
    # Work unit: one store gene chunk (128 x 128 blocks = 8 x 8 tiles), all slices.
    span = GENE_CHUNK_BLOCKS * 16
    # Every unit of the canvas is visited, so chunks without a tile are written (as zeros).
    groups: dict[tuple[int, int], list[Tile]] = {
        (gy, gx): [] for gy in range(-(-height // span)) for gx in range(-(-width // span))
    }
    for t in tiles:
        groups[((t.h0 - oh) // span, (t.w0 - ow) // span)].append(t)
    done_units = set(map(tuple, state.done.get(-1, {}).get("units", [])))
    for z, rep in state.done.items():
        if z >= 0:
            reports[z] = SliceReport.from_json(rep)
    bar = bars(total=len(tiles), desc="published tiles", unit="tile")
    nz, ng = len(sel), len(panel)
    sel_arr = np.full(N_SLICES, -1, np.int64)
    sel_arr[sel] = np.arange(nz)
    for key, group in sorted(groups.items()):
        if key in done_units:
            bar.update(len(group))
            continue
        gy0, gx0 = key[0] * GENE_CHUNK_BLOCKS, key[1] * GENE_CHUNK_BLOCKS
        hb = min(GENE_CHUNK_BLOCKS, height // 16 - gy0)
        wb = min(GENE_CHUNK_BLOCKS, width // 16 - gx0)
        acc = np.zeros((nz, ng, hb, wb), np.uint32)
        unit_stats = {z: SliceReport(z=z) for z in range(nz)}

        def one(t: Tile):
            genes = img = None
            if gdir is not None and (gdir / f"{t.stem}.npz").is_file():
                genes = _tile_counts(gdir / f"{t.stem}.npz", t, sel_arr, ng)
            if idir is not None and (idir / f"{t.stem}.zip").is_file():
                img = _tile_image(idir / f"{t.stem}.zip", t, sel)
            return t, genes, img

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for t, genes, img in pool.map(one, group):
                by, bx = (t.h0 - oh) // 16 - gy0, (t.w0 - ow) // 16 - gx0
                if genes is not None:
                    counts, read, not_in_panel, per_slice_gene = genes
                    acc[:, :, by : by + 16, bx : bx + 16] += counts
                    for z in range(nz):
                        r = unit_stats[z]
                        r.read += int(read[z])
                        r.binned += int(per_slice_gene[z].sum())
                        if not_in_panel[z]:
                            r.dropped["gene_not_in_panel"] += int(not_in_panel[z])
                        r.add_gene_counts(panel.names, per_slice_gene[z], "per_gene")
                if img is not None:
                    for z in range(nz):
                        store.write_images(z, t.h0 - oh, t.w0 - ow, img[:, z])
                bar.update(1)
        have = {
            (t.h0 - oh, t.w0 - ow)
            for t in group
            if idir is not None and (idir / f"{t.stem}.zip").is_file()
        }
        blank = np.zeros((2, TILE, TILE), np.uint8)
        for y in range(gy0 * 16, min(height, (gy0 + GENE_CHUNK_BLOCKS) * 16), TILE):
            for x in range(gx0 * 16, min(width, (gx0 + GENE_CHUNK_BLOCKS) * 16), TILE):
                if (y, x) not in have:
                    for z in range(nz):
                        store.write_images(z, y, x, blank)
        over = acc > 65535
        for z in range(nz):
            if over[z].any():
                ex = int(((acc[z].astype(np.int64) - 65535) * over[z]).sum())
                unit_stats[z].dropped["count_overflow"] += ex
                unit_stats[z].binned -= ex
            store.write_genes(z, gy0, gx0, np.minimum(acc[z], 65535).astype(np.uint16))
        for z, r in unit_stats.items():
            tgt = reports[z]
            tgt.read += r.read
            tgt.binned += r.binned
            tgt.dropped.update(r.dropped)
            tgt.per_gene.update(r.per_gene)
        done_units.add(key)
        for z, r in reports.items():
            state.done[z] = r.to_json()
        state.mark_done(-1, {"units": sorted(map(list, done_units))})
    bar.close()
    report = IngestReport(kind="published", panel=list(panel.names), slices=reports)
    if n_genes:
        report.notes.append(f"kept the first {n_genes} of {SLOTS} gene slots")
    report.notes.append(
        f"canvas origin on the published canvas: {oh}, {ow} px; pixel size {pixel_size_um} um "
        "as given (the published files do not record it)"
    )
    tiles_no_genes = [
        t.stem for t in tiles if gdir is None or not (gdir / f"{t.stem}.npz").is_file()
    ]
    tiles_no_img = [t.stem for t in tiles if idir is None or not (idir / f"{t.stem}.zip").is_file()]
    if tiles_no_genes:
        report.notes.append(f"{len(tiles_no_genes)} tiles have no gene file (counts left 0)")
    if tiles_no_img:
        report.notes.append(f"{len(tiles_no_img)} tiles have no image file (images left 0)")
    store.update_metadata(
        {
            "canvas_origin_px": [oh, ow],
            "missing_genes": {},
            "intensity_mapping": {
                "all": {"method": "identity", "note": "published images are uint8"}
            },
            "ingest": {
                "kind": "published",
                "report": "ingest_report.json",
                "read": report.read,
                "binned": report.binned,
                "dropped": dict(report.dropped),
                "tiles": len(tiles),
            },
        }
    )
    report.save(out)
    pbar = bars(total=store.pyramid_chunk_count(), desc="pyramids", unit="chunk")
    store.finalize(progress=pbar.update, workers=workers)
    pbar.close()
    return report


def _tile_counts(path: Path, t: Tile, sel_arr: np.ndarray, ng: int):
    """Block sums ``(slices, genes, 16, 16)`` of a file's own tile, with read/drop tallies."""
    coords, data, shape = read_sparse_npz(path)
    fh, fw = t.file_shape
    if len(shape) != 3 or shape[:2] != (fh, fw) or shape[2] % SLOTS:
        raise ValueError(
            f"{path}: shape {shape} does not match the file name (expected ({fh}, {fw}, "
            f"slices * {SLOTS}))"
        )
    if shape[2] // SLOTS != N_SLICES:
        raise ValueError(f"{path}: {shape[2] // SLOTS} slices, expected {N_SLICES}")
    if data.dtype.kind == "f" and np.any(data != np.round(data)):
        raise ValueError(f"{path}: counts are not whole numbers")
    data = data.astype(np.int64)
    r, c, ch = coords
    z_pub, slot = ch // SLOTS, ch % SLOTS
    zl = sel_arr[z_pub]
    nz = int(sel_arr.max()) + 1
    ry, cx = r - (t.h0 - t.H0), c - (t.w0 - t.W0)
    # Only the file's own tile: the margin belongs to the neighbouring files.
    own = (zl >= 0) & (ry >= 0) & (ry < TILE) & (cx >= 0) & (cx < TILE)
    read = np.bincount(zl[own], weights=data[own], minlength=nz).astype(np.int64)
    ing = own & (slot < ng)
    not_in_panel = read - np.bincount(zl[ing], weights=data[ing], minlength=nz).astype(np.int64)
    key = ((zl[ing] * ng + slot[ing]) * 16 + ry[ing] // 16) * 16 + cx[ing] // 16
    counts = np.bincount(key, weights=data[ing], minlength=nz * ng * 256).astype(np.uint32)
    counts = counts.reshape(nz, ng, 16, 16)
    per_slice_gene = counts.reshape(nz, ng, -1).sum(axis=2)
    return counts, read, not_in_panel, per_slice_gene


def _tile_image(path: Path, t: Tile, sel: Sequence[int]) -> np.ndarray:
    """The tile's own ``(2, slices, 256, 256)`` uint8 crop (DAPI, PolyT)."""
    arr = read_zip_image(path)
    fh, fw = t.file_shape
    if arr.shape != (2 * N_SLICES, fh, fw):
        raise ValueError(
            f"{path}: image shape {arr.shape}, expected ({2 * N_SLICES}, {fh}, {fw}) "
            "(DAPI of 50 slices, then PolyT)"
        )
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{path}: values outside 0..255 ({arr.dtype})")
        arr = arr.astype(np.uint8)
    ys, xs = t.h0 - t.H0, t.w0 - t.W0
    crop = arr[:, ys : ys + TILE, xs : xs + TILE]
    s = np.asarray(sel)
    return np.stack([crop[s], crop[N_SLICES + s]])
