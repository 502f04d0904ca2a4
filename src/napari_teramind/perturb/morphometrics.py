"""What a perturbation did to the nuclei: count, mean area and mean nuclear DAPI per region.

Nuclei are segmented in the unedited and the edited DAPI with the classical counter of
:mod:`napari_teramind.evaluate.nuclei` (or cellpose, ``method="cellpose"``), and counted per
region as :func:`~napari_teramind.evaluate.nuclei.nuclei_stats` counts them (a nucleus belongs to
the region holding its centroid). The regions are the whole generated region, the edited
pixels (the union of the edit masks), and every anatomical region of the source store's labels
that covers at least :data:`MIN_REGION_PX` pixels of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_teramind.store import BrainStore

__all__ = ["MIN_REGION_PX", "MorphometricRow", "format_table", "morphometric_change"]

#: Smallest anatomical region (pixels inside the generated region) that gets a row.
MIN_REGION_PX = 1024


@dataclass(frozen=True)
class MorphometricRow:
    """Nuclei of one region of one slice, unedited vs edited.

    Attributes
    ----------
    slice, region
        Slice index and region name (``"all"``, ``"edited"`` or an anatomical region).
    pixels
        Pixels of the region inside the generated region.
    count_unedited, count_edited
        Nuclei counted.
    area_unedited, area_edited
        Mean nucleus area in px (NaN without nuclei).
    dapi_unedited, dapi_edited
        Mean DAPI (0..255) inside the nuclei (NaN without nuclei).
    """

    slice: int
    region: str
    pixels: int
    count_unedited: int
    count_edited: int
    area_unedited: float
    area_edited: float
    dapi_unedited: float
    dapi_edited: float

    @property
    def count_change(self) -> int:
        """Edited minus unedited count."""
        return self.count_edited - self.count_unedited

    @property
    def area_change(self) -> float:
        """Relative change of the mean area (edited / unedited - 1)."""
        return _relative(self.area_edited, self.area_unedited)

    @property
    def dapi_change(self) -> float:
        """Relative change of the mean nuclear DAPI."""
        return _relative(self.dapi_edited, self.dapi_unedited)

    def to_dict(self) -> dict:
        """Plain dict with the changes (for JSON and tables)."""
        return {**asdict(self), "count_change": self.count_change,
                "area_change": self.area_change, "dapi_change": self.dapi_change}  # fmt: skip


def _relative(new: float, old: float) -> float:
    if not np.isfinite(new) or not np.isfinite(old) or old == 0:
        return float("nan")
    return float(new / old - 1.0)


def _nuclear_dapi(labels: np.ndarray, dapi: np.ndarray, mask: np.ndarray) -> float:
    """Mean DAPI over the pixels of the nuclei whose centroid lies in ``mask``."""
    from skimage.measure import regionprops_table

    if labels.max() == 0:
        return float("nan")
    p = regionprops_table(labels, dapi, properties=("centroid", "intensity_mean", "area"))
    cy = np.clip(np.asarray(p["centroid-0"]).astype(int), 0, labels.shape[0] - 1)
    cx = np.clip(np.asarray(p["centroid-1"]).astype(int), 0, labels.shape[1] - 1)
    keep = mask[cy, cx]
    if not keep.any():
        return float("nan")
    area = np.asarray(p["area"], float)[keep]
    return float((np.asarray(p["intensity_mean"], float)[keep] * area).sum() / area.sum())


def _label_masks(source: BrainStore | None, z: int, region) -> dict[str, np.ndarray]:
    if source is None or not source.has_regions:
        return {}
    y0, y1, x0, x1 = region
    labels = np.asarray(source.array("images/labels/regions", 0)[z, y0:y1, x0:x1])
    names = source.region_names
    out = {}
    for rid, n in zip(*np.unique(labels, return_counts=True), strict=True):
        if rid == 0 or n < MIN_REGION_PX:
            continue
        out[names.get(int(rid), f"region {int(rid)}")] = labels == rid
    return out


def morphometric_change(
    unedited: BrainStore | str | os.PathLike[str],
    edited: BrainStore | str | os.PathLike[str],
    region: Sequence[int] | None = None,
    slices: Sequence[int] | None = None,
    *,
    source: BrainStore | str | os.PathLike[str] | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    method: str = "classical",
) -> list[MorphometricRow]:
    """Nuclei count, mean area and mean nuclear DAPI per region, unedited vs edited.

    Parameters
    ----------
    unedited, edited
        The two generated stores (same region, slices, seed).
    region, slices
        What to compare; the edited store's last generated region by default.
    source
        Store with region labels for per-region rows (default: the edited store's source
        store, when it has labels).
    masks
        Extra named pixel masks ``(h, w)`` over the region.
    method
        Nuclei segmentation: ``"classical"`` (offline), ``"cellpose"`` or ``"auto"``.

    Returns
    -------
    list of MorphometricRow
        Per slice: ``"all"``, ``"edited"`` (when edits were recorded), anatomical regions, then
        ``masks``.
    """
    from napari_teramind.evaluate.nuclei import nuclei_stats, segment_nuclei
    from napari_teramind.perturb.api import (
        _open,
        _region_slices,
        edited_mask,
        generated_record,
        read_images,
    )

    edited = _open(edited)
    unedited = _open(unedited)
    region, slices = _region_slices(edited, region, slices)
    if source is None:
        src = generated_record(edited).get("source_store")
        source = BrainStore.open(src) if src and os.path.exists(src) else None
    elif not isinstance(source, BrainStore):
        source = BrainStore.open(source)
    a = read_images(unedited, region, slices)
    b = read_images(edited, region, slices)
    edit_px = edited_mask(edited, region)
    h, w = a.shape[-2:]
    rows = []
    for i, z in enumerate(slices):
        la = segment_nuclei(a[0, i], method)
        lb = segment_nuclei(b[0, i], method)
        named = {"all": np.ones((h, w), bool)}
        if edit_px.any() and not edit_px.all():
            named["edited"] = edit_px
        named.update(_label_masks(source, z, region))
        named.update(masks or {})
        for name, m in named.items():
            m = np.asarray(m, bool)
            if m.shape != (h, w):
                raise ValueError(f"mask {name!r} has shape {m.shape}; the region is {h} x {w} px")
            sa, sb = nuclei_stats(la, m), nuclei_stats(lb, m)
            rows.append(MorphometricRow(
                slice=int(z), region=name, pixels=int(m.sum()),
                count_unedited=sa["count"], count_edited=sb["count"],
                area_unedited=sa["area_mean"], area_edited=sb["area_mean"],
                dapi_unedited=_nuclear_dapi(la, a[0, i], m),
                dapi_edited=_nuclear_dapi(lb, b[0, i], m),
            ))  # fmt: skip
    return rows


COLUMNS = ("slice", "region", "nuclei", "change", "mean area px", "change", "nuclear DAPI",
           "change")  # fmt: skip


def table_cells(row: MorphometricRow) -> list[str]:
    """The text cells of one row (what the CLI prints and the widget shows)."""

    def pct(v: float) -> str:
        return "n/a" if not np.isfinite(v) else f"{100 * v:+.1f}%"

    def one(v: float) -> str:
        return "n/a" if not np.isfinite(v) else f"{v:.1f}"

    def num(a: float, b: float) -> str:
        return f"{one(a)} -> {one(b)}"

    return [
        str(row.slice),
        row.region,
        f"{row.count_unedited} -> {row.count_edited}",
        f"{row.count_change:+d}",
        num(row.area_unedited, row.area_edited),
        pct(row.area_change),
        num(row.dapi_unedited, row.dapi_edited),
        pct(row.dapi_change),
    ]


def format_table(rows: Sequence[MorphometricRow]) -> str:
    """A plain-text table of :func:`morphometric_change`'s rows (unedited -> edited)."""
    cells = [list(COLUMNS), *(table_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths, strict=True)).rstrip()
             for row in cells]  # fmt: skip
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)
