"""In-silico gene edits: knock out, scale or transplant a gene's counts inside a mask.

A perturbation is a generation whose conditioning genes were edited before the model saw them.
The edits are applied where the genes of a unit are read (:class:`EditedCounts` is the gene array
:class:`~napari_teramind.generate.engine.GeneSource` reads), so every unit, every block size and
every worker sees the same edited genes, and the noise is the unedited run's: the difference of
the two outputs is the effect of the edit alone.

* :class:`Knockout`: the gene's counts become 0 inside the mask.
* :class:`Scale`: the counts are multiplied by ``factor`` (finite, >= 0) and rounded to whole
  counts (``floor(c * factor + 0.5)``, at most 65535), so the model sees exactly the counts the
  edited store records.
* :class:`Transplant`: the counts at ``p`` become the **unedited** counts at ``p + offset``
  (``(dy, dx)`` px, whole gene blocks): "bring this gene's expression from over there".

A mask is where an edit applies, in-plane (on every slice): ``None`` (the whole generated
region), a rectangle ``(y0, y1, x0, x1)`` in image px, a list of polygons (``(n, 2)`` vertices
``(y, x)`` in image px, e.g. napari Shapes data) or a boolean array on the 16 px gene-block grid
of the region (``(h / 16, w / 16)``) or of the whole canvas. Polygons keep the gene blocks whose
centre lies inside. Masks are resolved once, checked (inside the region, not empty) and stored
in the job's ``spec.json`` (packed bits, zlib, base64, with their SHA-256), so a resumed job, any
worker and the edited store's provenance hold the very same mask.

Edits apply in list order; a transplant always copies unedited counts.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from napari_teramind.store import BrainStore

__all__ = [
    "EDIT_KINDS",
    "EditedCounts",
    "GeneEdit",
    "Knockout",
    "ResolvedEdit",
    "Scale",
    "Transplant",
    "edits_from_json",
    "edits_to_json",
    "resolve_edits",
    "resolve_mask",
]

#: Names of the edit kinds, as written in job specs and provenance.
EDIT_KINDS = ("knockout", "scale", "transplant")
#: Largest count a brain store holds (uint16).
MAX_COUNT = np.iinfo(np.uint16).max
#: Job-spec key (``JobSpec.extra``) holding the resolved edits.
SPEC_KEY = "edits"

Region = tuple[int, int, int, int]
MaskLike = Any  # None | (y0, y1, x0, x1) | list of (n, 2) vertex arrays | bool array


@dataclass(frozen=True)
class Knockout:
    """Set ``gene``'s counts to zero inside ``mask`` (see the module docstring for masks)."""

    gene: str
    mask: MaskLike = None
    kind = "knockout"


@dataclass(frozen=True)
class Scale:
    """Multiply ``gene``'s counts by ``factor`` (finite, >= 0) inside ``mask``."""

    gene: str
    factor: float
    mask: MaskLike = None
    kind = "scale"


@dataclass(frozen=True)
class Transplant:
    """Copy ``gene``'s unedited counts from ``offset`` ``(dy, dx)`` px away into ``mask``.

    The counts at ``p`` become those at ``p + offset``; the offset is a whole number of gene
    blocks and every source block must lie inside the canvas.
    """

    gene: str
    offset: tuple[int, int]
    mask: MaskLike = None
    kind = "transplant"


GeneEdit = Knockout | Scale | Transplant


@dataclass(frozen=True)
class ResolvedEdit:
    """An edit checked against a store and a region, ready to apply and to serialise.

    Attributes
    ----------
    kind, gene
        What is edited.
    index
        Position of ``gene`` in the store's panel (the gene axis of the counts).
    factor
        Scale factor (0 for a knockout, 1 for a transplant).
    offset
        Transplant offset ``(dy, dx)`` in gene blocks (``(0, 0)`` otherwise).
    origin
        Gene block ``(by, bx)`` of the canvas where ``mask`` starts.
    mask
        Boolean ``(hb, wb)`` on the gene-block grid, from ``origin``.
    """

    kind: str
    gene: str
    index: int
    factor: float
    offset: tuple[int, int]
    origin: tuple[int, int]
    mask: np.ndarray

    def to_json(self, gene_block_px: int) -> dict[str, Any]:
        """JSON form (offsets in px, the mask packed)."""
        d: dict[str, Any] = {"kind": self.kind, "gene": self.gene}
        if self.kind == "scale":
            d["factor"] = float(self.factor)
        if self.kind == "transplant":
            d["offset_px"] = [int(v * gene_block_px) for v in self.offset]
        d["mask"] = _pack_mask(self.origin, self.mask)
        return d

    def window(self, by0: int, by1: int, bx0: int, bx1: int) -> tuple[np.ndarray, tuple] | None:
        """The mask over canvas blocks ``[by0, by1) x [bx0, bx1)`` and the window's slices.

        Returns None when the mask does not touch the window; else ``(mask, (ys, xs))`` with
        ``mask`` boolean over the overlap and ``ys, xs`` the overlap's slices in the window.
        """
        oy, ox = self.origin
        hb, wb = self.mask.shape
        y0, y1 = max(by0, oy), min(by1, oy + hb)
        x0, x1 = max(bx0, ox), min(bx1, ox + wb)
        if y0 >= y1 or x0 >= x1:
            return None
        m = self.mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        if not m.any():
            return None
        return m, (slice(y0 - by0, y1 - by0), slice(x0 - bx0, x1 - bx0))


# ---------------------------------------------------------------------- masks
def _pack_mask(origin: tuple[int, int], mask: np.ndarray) -> dict[str, Any]:
    bits = np.packbits(np.asarray(mask, bool).ravel())
    return {
        "origin_blocks": [int(origin[0]), int(origin[1])],
        "shape_blocks": [int(mask.shape[0]), int(mask.shape[1])],
        "bits": base64.b64encode(zlib.compress(bits.tobytes(), 9)).decode("ascii"),
        "sha256": hashlib.sha256(np.asarray(mask, bool).tobytes()).hexdigest(),
    }


def _unpack_mask(d: Mapping[str, Any]) -> tuple[tuple[int, int], np.ndarray]:
    hb, wb = (int(v) for v in d["shape_blocks"])
    raw = np.frombuffer(zlib.decompress(base64.b64decode(d["bits"])), np.uint8)
    mask = np.unpackbits(raw)[: hb * wb].astype(bool).reshape(hb, wb)
    if hashlib.sha256(mask.tobytes()).hexdigest() != d["sha256"]:
        raise ValueError("an edit mask in the job spec is damaged (its SHA-256 does not match)")
    oy, ox = (int(v) for v in d["origin_blocks"])
    return (oy, ox), mask


def _outside(what: str, region: Region, detail: str) -> ValueError:
    y0, y1, x0, x1 = region
    return ValueError(
        f"the {what} lies outside the region (y {y0}:{y1}, x {x0}:{x1} px): {detail}; draw the "
        "mask inside the generated region, or enlarge --region"
    )


def resolve_mask(mask: MaskLike, region: Region, canvas: tuple[int, int], gene_block_px: int
                 ) -> np.ndarray:  # fmt: skip
    """A mask as a boolean array on the region's gene-block grid ``(h / gb, w / gb)``.

    Parameters
    ----------
    mask
        None (the whole region), a rectangle ``(y0, y1, x0, x1)`` px, polygons (a list of
        ``(n, 2)`` ``(y, x)`` px vertex arrays) or a boolean array on the gene-block grid of the
        region or of the canvas.
    region
        ``(y0, y1, x0, x1)`` of the generation (multiples of ``gene_block_px``).
    canvas
        ``(height, width)`` px of the store.
    gene_block_px
        Gene block edge (16).

    Raises
    ------
    ValueError
        When the mask lies (partly) outside the region, is empty, or is of no known form.
    """
    gb = gene_block_px
    y0, y1, x0, x1 = region
    hb, wb = (y1 - y0) // gb, (x1 - x0) // gb
    if mask is None:
        return np.ones((hb, wb), bool)
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        arr = np.asarray(mask)
        if arr.dtype != bool:
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"a mask array must be boolean (or 0/1), got dtype {arr.dtype}")
            arr = arr.astype(bool)
        ch, cw = canvas[0] // gb, canvas[1] // gb
        if arr.shape == (ch, cw) and (ch, cw) != (hb, wb):
            inside = np.zeros_like(arr)
            inside[y0 // gb : y1 // gb, x0 // gb : x1 // gb] = True
            if (arr & ~inside).any():
                n = int((arr & ~inside).sum())
                raise _outside("mask", region, f"{n} of its gene blocks are outside")
            arr = arr[y0 // gb : y1 // gb, x0 // gb : x1 // gb]
        elif arr.shape != (hb, wb):
            raise ValueError(
                f"a mask array is on the {gb} px gene-block grid of the region ({hb} x {wb}) or "
                f"of the canvas ({ch} x {cw}); got shape {arr.shape}"
            )
        out = arr.copy()
    else:
        polygons = _polygons(mask)
        from skimage.draw import polygon2mask

        out = np.zeros((hb, wb), bool)
        for poly in polygons:
            ys, xs = poly[:, 0], poly[:, 1]
            bad = (ys < y0) | (ys > y1) | (xs < x0) | (xs > x1)
            if bad.any():
                vy, vx = poly[np.flatnonzero(bad)[0]]
                raise _outside("mask", region, f"vertex (y {vy:g}, x {vx:g}) px is outside")
            # block (i, j) has its centre at region origin + (i + 0.5) gb
            local = np.stack([(ys - y0) / gb - 0.5, (xs - x0) / gb - 0.5], axis=1)
            out |= polygon2mask((hb, wb), local)
    if not out.any():
        raise ValueError(
            f"the mask covers no {gb} px gene block of the region (a block counts when its "
            "centre is inside); draw a larger mask"
        )
    return out


def _polygons(mask: Any) -> list[np.ndarray]:
    """Rectangle ``(y0, y1, x0, x1)`` or polygons -> a list of ``(n, 2)`` float arrays."""
    try:
        flat = np.asarray(mask, dtype=float)
    except (TypeError, ValueError):
        flat = None
    if flat is not None and flat.shape == (4,):
        ry0, ry1, rx0, rx1 = flat
        if ry1 <= ry0 or rx1 <= rx0:
            raise ValueError(f"mask rectangle {tuple(mask)} is empty; write (y0, y1, x0, x1)")
        return [np.array([[ry0, rx0], [ry0, rx1], [ry1, rx1], [ry1, rx0]], float)]
    if flat is not None and flat.ndim == 2 and flat.shape[1] >= 2 and flat.shape[0] >= 3:
        return [flat[:, -2:]]
    out = []
    try:
        items = list(mask)
    except TypeError:
        items = []
    for item in items:
        poly = np.asarray(item, dtype=float)
        if poly.ndim != 2 or poly.shape[0] < 3 or poly.shape[1] < 2:
            items = []
            break
        out.append(poly[:, -2:])
    if not out:
        raise ValueError(
            "a mask is None (the whole region), a rectangle (y0, y1, x0, x1) px, a list of "
            "polygons ((n, 2) vertices y, x in px) or a boolean array on the gene-block grid; "
            f"got {type(mask).__name__}"
        )
    return out


# ---------------------------------------------------------------------- resolve
def _unknown_gene(gene: str, names: Sequence[str], where: str) -> ValueError:
    close = difflib.get_close_matches(gene, list(names), n=5, cutoff=0.5)
    low = [n for n in names if n.lower() == gene.lower() and n not in close]
    close = low + close
    hint = f"; close matches: {', '.join(close)}" if close else f"; it has {len(names)} genes"
    return ValueError(f"unknown gene {gene!r}: it is not in {where}{hint}")


def resolve_edits(
    edits: Iterable[GeneEdit],
    store: BrainStore,
    region: Sequence[int],
    model_genes: Sequence[str] | None = None,
) -> list[ResolvedEdit]:
    """Check edits against a store, a region and the model's genes; resolve their masks.

    Every problem is reported before any work starts: an unknown gene (with close matches), a
    gene the model does not read, a scale factor that is negative or not finite, a mask outside
    the region or empty, a transplant offset off the gene-block grid or whose source leaves the
    canvas.

    Parameters
    ----------
    edits
        :class:`Knockout`, :class:`Scale` and :class:`Transplant` items.
    store
        The source brain store.
    region
        ``(y0, y1, x0, x1)`` px of the generation.
    model_genes
        The model's genes (``CheckpointInfo.gene_names``); an edited gene must be one of them.

    Returns
    -------
    list of ResolvedEdit
    """
    gb = store.gene_block_px
    y0, y1, x0, x1 = (int(v) for v in region)
    reg = (y0, y1, x0, x1)
    names = list(store.panel.names)
    out = []
    for e in edits:
        if not isinstance(e, Knockout | Scale | Transplant):
            raise TypeError(f"an edit is a Knockout, Scale or Transplant, got {e!r}")
        if e.gene not in names:
            raise _unknown_gene(e.gene, names, f"the store's panel ({store.path})")
        if model_genes is not None and e.gene not in model_genes:
            raise ValueError(
                f"gene {e.gene!r} is in the store but not among the model's {len(model_genes)} "
                "genes: the model never reads it, so editing it changes nothing; edit one of the "
                "model's genes"
            )
        factor, offset = 0.0, (0, 0)
        if isinstance(e, Scale):
            try:
                factor = float(e.factor)
            except (TypeError, ValueError):
                raise ValueError(
                    f"scale factor of {e.gene} must be a number, got {e.factor!r}"
                ) from None
            if not math.isfinite(factor) or factor < 0:
                raise ValueError(
                    f"scale factor of {e.gene} is {e.factor!r}: it must be finite and >= 0 "
                    "(0 knocks the gene out, 2 doubles it)"
                )
        mask = resolve_mask(e.mask, reg, (store.height, store.width), gb)
        origin = (y0 // gb, x0 // gb)
        if isinstance(e, Transplant):
            factor = 1.0
            dy, dx = (int(v) for v in e.offset)
            if (dy, dx) != tuple(e.offset) or dy % gb or dx % gb:
                raise ValueError(
                    f"transplant offset {tuple(e.offset)} px of {e.gene} must be whole "
                    f"{gb} px gene blocks (multiples of {gb})"
                )
            offset = (dy // gb, dx // gb)
            rows, cols = np.nonzero(mask)
            by, bx = origin[0] + offset[0], origin[1] + offset[1]
            sy0, sy1 = (rows.min() + by) * gb, (rows.max() + 1 + by) * gb
            sx0, sx1 = (cols.min() + bx) * gb, (cols.max() + 1 + bx) * gb
            if sy0 < 0 or sx0 < 0 or sy1 > store.height or sx1 > store.width:
                raise ValueError(
                    f"the transplant source of {e.gene} (the mask moved by {dy}, {dx} px: y "
                    f"{sy0}:{sy1}, x {sx0}:{sx1}) leaves the {store.height} x {store.width} px "
                    "canvas; choose an offset that keeps the source on the canvas"
                )
        out.append(ResolvedEdit(e.kind, e.gene, names.index(e.gene), factor, offset, origin, mask))
    return out


# ---------------------------------------------------------------------- JSON
def edits_to_json(edits: Sequence[ResolvedEdit], gene_block_px: int) -> list[dict[str, Any]]:
    """The JSON list stored in a job spec and in the edited store's provenance."""
    return [e.to_json(gene_block_px) for e in edits]


def edits_from_json(items: Sequence[Mapping[str, Any]], store: BrainStore) -> list[ResolvedEdit]:
    """Read :func:`edits_to_json`'s list back (masks checked against their SHA-256)."""
    names = list(store.panel.names)
    gb = store.gene_block_px
    out = []
    for d in items:
        kind = d.get("kind")
        if kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit kind {kind!r} in the job spec; one of {EDIT_KINDS}")
        gene = str(d["gene"])
        if gene not in names:
            raise _unknown_gene(gene, names, f"the store's panel ({store.path})")
        origin, mask = _unpack_mask(d["mask"])
        factor = {"knockout": 0.0, "transplant": 1.0}.get(kind, float(d.get("factor", 1.0)))
        dy, dx = (int(v) // gb for v in d.get("offset_px", (0, 0)))
        out.append(ResolvedEdit(kind, gene, names.index(gene), factor, (dy, dx), origin, mask))
    return out


def describe(edit: ResolvedEdit | Mapping[str, Any], gene_block_px: int = 16) -> str:
    """One line: ``knockout Th``, ``scale Th x 0.5``, ``transplant Th from +64, -32 px``."""
    d = edit.to_json(gene_block_px) if isinstance(edit, ResolvedEdit) else edit
    text = f"{d['kind']} {d['gene']}"
    if d["kind"] == "scale":
        text += f" x {d['factor']:g}"
    if d["kind"] == "transplant":
        dy, dx = d["offset_px"]
        text += f" from {dy:+d}, {dx:+d} px"
    return text


# ---------------------------------------------------------------------- apply
class EditedCounts:
    """A store's level-0 gene array with edits applied on read.

    Indexable like the zarr array for the reads the engine makes, ``counts[:, z, ys, xs]``
    (whole gene axis, one slice, a block window), returning uint16 counts in store panel order.

    Parameters
    ----------
    array
        The level-0 genes ``(genes, z, hb, wb)`` (``store.array("genes", 0)``, reads checked).
    edits
        Resolved edits, applied in order.
    """

    def __init__(self, array: Any, edits: Sequence[ResolvedEdit]):
        self.array = array
        self.edits = tuple(edits)
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        ok = (
            isinstance(key, tuple)
            and len(key) == 4
            and key[0] == slice(None)
            and isinstance(key[1], int | np.integer)
            and all(isinstance(k, slice) and k.step in (None, 1) for k in key[2:])
        )
        if not ok:
            raise TypeError(f"EditedCounts reads [:, z, y0:y1, x0:x1] windows, got {key!r}")
        ys = range(*key[2].indices(self.shape[2]))
        xs = range(*key[3].indices(self.shape[3]))
        return self.read(int(key[1]), ys.start, ys.stop, xs.start, xs.stop)

    def read(self, z: int, by0: int, by1: int, bx0: int, bx1: int) -> np.ndarray:
        """Edited counts ``(genes, by1 - by0, bx1 - bx0)`` of slice ``z`` (canvas blocks)."""
        raw = np.asarray(self.array[:, z, by0:by1, bx0:bx1])
        out = raw
        for e in self.edits:
            hit = e.window(by0, by1, bx0, bx1)
            if hit is None:
                continue
            if out is raw:
                out = raw.copy()
            m, (ys, xs) = hit
            target = out[e.index, ys, xs]
            if e.kind == "knockout":
                target[m] = 0
            elif e.kind == "scale":
                scaled = np.floor(target.astype(np.float64) * e.factor + 0.5)
                target[m] = np.minimum(scaled, MAX_COUNT).astype(out.dtype)[m]
            else:
                dy, dx = e.offset
                sy = slice(by0 + ys.start + dy, by0 + ys.stop + dy)
                sx = slice(bx0 + xs.start + dx, bx0 + xs.stop + dx)
                src = np.zeros(m.shape, out.dtype)
                # the mask's sources lie on the canvas (checked), the rest of the box may not
                cy0, cy1 = max(sy.start, 0), min(sy.stop, self.shape[2])
                cx0, cx1 = max(sx.start, 0), min(sx.stop, self.shape[3])
                if cy0 < cy1 and cx0 < cx1:
                    src[cy0 - sy.start : cy1 - sy.start, cx0 - sx.start : cx1 - sx.start] = (
                        np.asarray(self.array[e.index, z, cy0:cy1, cx0:cx1])
                    )
                target[m] = src[m]
            out[e.index, ys, xs] = target
        return out


def edited_counts(store: BrainStore, edits: Sequence[ResolvedEdit]) -> EditedCounts | None:
    """The store's genes with ``edits`` applied, or None when there are none (read as is)."""
    if not edits:
        return None
    return EditedCounts(store.array("genes", 0), edits)
