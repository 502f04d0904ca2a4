"""Binning transcripts into gene counts per pixel block, chunk by chunk.

A transcript at continuous pixel coordinate ``(px, py)`` on the canvas lies in pixel
``(floor(px), floor(py))`` and in gene block ``(floor(py / B), floor(px / B))`` for block edge
``B`` (16 px). Each binned transcript becomes one integer key (slice, gene, block row, block
column); keys are buffered (fixed capacity) and counted in bulk with ``np.bincount`` into a
dense uint32 buffer over the slices and rows of blocks being binned. When that buffer would
exceed the memory budget the canvas is binned in bands of block rows, reading the table once per
band. Memory therefore depends on the canvas, the panel and the budget, never on the length of
the table; time is a few linear passes per transcript (no sort).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .registration import apply
from .report import SliceReport
from .tables import Chunk

#: Default pattern of blank and control barcodes (MERSCOPE ``Blank-*``, Xenium/CosMx controls).
CONTROL_PATTERN = (
    r"^(blank|negcontrol|negprb|neg_control|unassigned|deprecated|intergenic|antisense)"
)
#: Default memory budget of the count buffer, bytes.
DEFAULT_BUDGET = 1 << 30
_CONTROL, _EMPTY, _UNKNOWN = -2, -3, -1


class GeneCoder:
    """Maps gene names to positions in the store's panel, or to a drop reason.

    Parameters
    ----------
    index
        Source gene name to store gene position (already through any ortholog mapping).
    control_pattern
        Regular expression (case-insensitive, matched at the start) of blank/control names.
    """

    def __init__(self, index: dict[str, int], control_pattern: str | None = CONTROL_PATTERN):
        self.index = dict(index)
        self._control = re.compile(control_pattern, re.IGNORECASE) if control_pattern else None
        self._cache: dict[str, int] = {}

    def code(self, name: str) -> int:
        """Store gene position of ``name``, or -1 (not in panel), -2 (control), -3 (empty)."""
        c = self._cache.get(name)
        if c is None:
            if not name.strip():
                c = _EMPTY
            elif name in self.index:
                c = self.index[name]
            elif self._control is not None and self._control.match(name):
                c = _CONTROL
            else:
                c = _UNKNOWN
            self._cache[name] = c
        return c

    def lut(self, names: Sequence[str]) -> np.ndarray:
        """Codes of a chunk's gene dictionary, with one extra entry (last) for null names."""
        return np.array([self.code(n) for n in names] + [_EMPTY], dtype=np.int32)


@dataclass
class Band:
    """Rows ``[b0, b1)`` of gene blocks binned in one pass."""

    b0: int
    b1: int


def plan_bands(
    n_local: int, n_genes: int, hb: int, wb: int, budget: int, align: int = 128
) -> list[Band]:
    """Split ``hb`` block rows into bands whose uint32 buffer fits ``budget`` bytes.

    Bands are multiples of ``align`` rows (the store's gene chunk) except the last.
    """
    row_bytes = max(1, n_local * n_genes * wb * 4)
    rows = max(align, (budget // row_bytes) // align * align)
    if rows >= hb:
        return [Band(0, hb)]
    return [Band(b, min(hb, b + rows)) for b in range(0, hb, rows)]


class BlockBinner:
    """Accumulates transcript counts of ``n_local`` slices over one band of block rows.

    Each chunk of rows becomes one integer key per binned transcript (local slice, gene, block
    row, block column, in that order of significance). Keys are appended to a buffer of fixed
    capacity; when it is full they are counted into the dense uint32 count buffer with one
    ``np.bincount`` (in segments of at most :data:`SEGMENT` entries), so the per-key cost is a
    few linear passes rather than a sort, and memory is the count buffer plus two fixed-size
    scratch arrays, whatever the length of the table.

    Parameters
    ----------
    n_local
        Slices binned together (rows carry a local slice index 0..n_local-1).
    n_genes
        Genes of the store's panel.
    height, width
        Canvas size in pixels.
    block
        Gene block edge in pixels.
    matrices
        One 3 x 3 affine per local slice, table coordinates to canvas pixels.
    band
        Rows of blocks binned by this pass (all by default).
    key_capacity
        Keys buffered before they are counted (default: half the count buffer, clipped to
        64 Ki..8 Mi keys).
    """

    #: Largest number of count-buffer entries one ``bincount`` covers (its int64 result is
    #: scratch memory: 128 MiB at most).
    SEGMENT = 1 << 24

    def __init__(
        self,
        n_local: int,
        n_genes: int,
        height: int,
        width: int,
        block: int,
        matrices: Sequence[np.ndarray],
        band: Band | None = None,
        key_capacity: int | None = None,
    ):
        self.n_local, self.n_genes = n_local, n_genes
        self.height, self.width, self.block = height, width, block
        self.hb, self.wb = -(-height // block), -(-width // block)
        self.band = band or Band(0, self.hb)
        self.bh = self.band.b1 - self.band.b0
        self._banded = self.band.b0 != 0 or self.band.b1 != self.hb
        mats = np.stack([np.asarray(m, dtype=np.float64) for m in matrices])
        if len(mats) != n_local:
            raise ValueError("one affine per local slice is needed")
        self.mats = mats
        self._same = bool(np.all(mats == mats[0]))
        # a power-of-two block: floor(p / B) is exactly trunc(p * (1 / B)) for p >= 0
        self._inv = 1.0 / block if block > 0 and block & (block - 1) == 0 else None
        self.acc = np.zeros(n_local * n_genes * self.bh * self.wb, dtype=np.uint32)
        cap = key_capacity or min(max(self.acc.size // 2, 1 << 16), 1 << 23)
        self._keys = np.empty(max(1, cap), dtype=np.int64)
        self._n = 0

    def add(
        self,
        codes: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        local: np.ndarray | None,
        stats: list[SliceReport] | None = None,
    ) -> None:
        """Bin one chunk.

        Parameters
        ----------
        codes
            Store gene position of each row, or a negative drop code.
        x, y
            Table coordinates.
        local
            Local slice index per row (None when ``n_local == 1``); rows with -1 are skipped.
        stats
            When given (first band only), per-slice reports to update with read/drop counts.
        """
        if local is not None:
            keep = local >= 0
            if not keep.all():
                codes, x, y, local = codes[keep], x[keep], y[keep], local[keep]
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf rows are counted below
            if self._same:
                px, py = apply(self.mats[0], x, y)
            else:
                m = self.mats[local]
                px = m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 2]
                py = m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 2]
            # binned: a panel gene inside the canvas (NaN compares False, so it is left out)
            ok = codes >= 0
            ok &= px >= 0
            ok &= px < self.width
            ok &= py >= 0
            ok &= py < self.height
            if stats is not None:
                self._stats(stats, codes, ok, px, py, local)
            # block indices of every row (values of rows not ok are garbage, dropped below)
            if self._inv is not None:
                px *= self._inv
                py *= self._inv
            else:
                px //= self.block
                py //= self.block
            by = py.astype(np.int64)
            bx = px.astype(np.int64)
        if self._banded:
            ok &= by >= self.band.b0
            ok &= by < self.band.b1
            by -= self.band.b0
        key = codes.astype(np.int64)
        if local is not None:
            key += local.astype(np.int64) * self.n_genes
        key *= self.bh
        key += by
        key *= self.wb
        key += bx
        self._push(key[ok])

    def _push(self, key: np.ndarray) -> None:
        """Buffer keys, counting the buffer into the count buffer when it is full."""
        cap = len(self._keys)
        if self._n + key.size > cap:
            self._flush()
        if key.size > cap:
            self._count(key)
        else:
            self._keys[self._n : self._n + key.size] = key
            self._n += key.size

    def _flush(self) -> None:
        if self._n:
            self._count(self._keys[: self._n])
            self._n = 0

    def _count(self, key: np.ndarray) -> None:
        size = self.acc.size
        if size <= self.SEGMENT:
            np.add(self.acc, np.bincount(key, minlength=size), out=self.acc, casting="unsafe")
            return
        for lo in range(0, size, self.SEGMENT):
            hi = min(size, lo + self.SEGMENT)
            part = key[(key >= lo) & (key < hi)] - lo
            seg = self.acc[lo:hi]
            np.add(seg, np.bincount(part, minlength=hi - lo), out=seg, casting="unsafe")

    def _stats(self, stats, codes, ok, px, py, local) -> None:
        """Per-slice read/binned/dropped counts, per-gene binned counts and genes seen.

        Binned rows (``ok``) are counted with one ``bincount``; the classification of dropped
        rows runs on those rows only (usually a small fraction of the chunk).
        """
        nl, ng = self.n_local, self.n_genes
        lz = local.astype(np.int64) if local is not None else None
        read = np.bincount(lz, minlength=nl) if lz is not None else np.array([len(codes)])
        okc = codes[ok].astype(np.int64)
        if lz is not None:
            okc += lz[ok] * ng
        pg = np.bincount(okc, minlength=nl * ng).reshape(nl, ng)
        seen = pg.copy()
        counts: dict[str, np.ndarray] = {}
        bad = np.flatnonzero(~ok)
        if bad.size:
            cb = codes[bad]
            lb = lz[bad] if lz is not None else np.zeros(bad.size, np.int64)
            goodb = cb >= 0
            finite = np.isfinite(px[bad]) & np.isfinite(py[bad])
            per_reason = {
                "control_probe": cb == _CONTROL,
                "missing_gene_name": cb == _EMPTY,
                "gene_not_in_panel": cb == _UNKNOWN,
                "nan_coordinate": goodb & ~finite,
                # a panel gene, finite, yet not binned: outside the canvas
                "outside_canvas": goodb & finite,
            }
            counts = {r: np.bincount(lb[m], minlength=nl) for r, m in per_reason.items() if m.any()}
            if goodb.any():
                seen += np.bincount(lb[goodb] * ng + cb[goodb], minlength=nl * ng).reshape(nl, ng)
        for i, rep in enumerate(stats):
            rep.read += int(read[i])
            rep.binned += int(pg[i].sum())
            for r, c in counts.items():
                if c[i]:
                    rep.dropped[r] += int(c[i])
            rep._pg = getattr(rep, "_pg", np.zeros(ng, np.int64)) + pg[i]
            rep._seenc = getattr(rep, "_seenc", np.zeros(ng, np.int64)) + seen[i]

    def result(self, stats: list[SliceReport] | None = None) -> np.ndarray:
        """Counts ``(n_local, n_genes, band rows, wb)`` as uint16; overflow clipped, reported."""
        self._flush()
        acc = self.acc.reshape(self.n_local, self.n_genes, self.bh, self.wb)
        if acc.size and int(acc.max()) > 65535:  # one cheap pass in the usual case
            over = acc > 65535
            excess = (acc.astype(np.int64) - 65535) * over
            per = excess.reshape(self.n_local, -1).sum(axis=1)
            if stats is not None:
                for i, rep in enumerate(stats):
                    if per[i]:
                        rep.dropped["count_overflow"] += int(per[i])
                        rep.binned -= int(per[i])
            np.minimum(acc, 65535, out=acc)
        return acc.astype(np.uint16)


def bin_chunks(
    read_chunks: Callable[[], Iterable[Chunk]],
    *,
    coder: GeneCoder,
    n_genes: int,
    height: int,
    width: int,
    block: int,
    matrices: Sequence[np.ndarray],
    slice_of: Callable[[list[str] | None], np.ndarray] | None,
    reports: list[SliceReport],
    gene_names: Sequence[str],
    budget: int = DEFAULT_BUDGET,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[Band, np.ndarray]]:
    """Bin a table into gene counts, yielding ``(band, counts)`` for each band of block rows.

    Parameters
    ----------
    read_chunks
        Called once per band; returns the table's chunks from the start.
    coder
        Gene name to store position.
    n_genes, height, width, block
        Panel size, canvas size (px) and gene block edge.
    matrices
        Per local slice, table coordinates to canvas pixels.
    slice_of
        Maps a chunk's slice dictionary to local slice indices (-1 = not ingested now);
        ``None`` when all rows belong to the single local slice.
    reports
        One report per local slice, updated with read/binned/dropped counts.
    gene_names
        The store's panel (for per-gene counts in the reports).
    budget
        Bytes the count buffer may use.
    progress
        Called with the number of rows of each chunk processed.
    """
    n_local = len(matrices)
    hb, wb = -(-height // block), -(-width // block)
    bands = plan_bands(n_local, n_genes, hb, wb, budget)
    for k, band in enumerate(bands):
        binner = BlockBinner(n_local, n_genes, height, width, block, matrices, band)
        stats = reports if k == 0 else None
        for ch in read_chunks():
            lut = coder.lut(ch.genes)
            codes = lut[ch.gene_idx]  # null names (-1) pick the last entry
            local = None
            if slice_of is not None:
                lmap = slice_of(ch.slices)
                local = lmap[ch.slice_idx]
            binner.add(codes, ch.x, ch.y, local, stats)
            if stats is not None:
                _tally_names(ch, lut, codes, local, reports)
            if progress is not None:
                progress(len(ch))
        counts = binner.result(stats)
        if stats is not None:
            for rep in reports:
                pg = getattr(rep, "_pg", None)
                if pg is not None:
                    rep.add_gene_counts(gene_names, pg, "per_gene")
                    del rep._pg
                sc = getattr(rep, "_seenc", None)
                rep._seen = set() if sc is None else {gene_names[i] for i in np.flatnonzero(sc)}
                if sc is not None:
                    del rep._seenc
        yield band, counts


def _tally_names(
    ch: Chunk, lut: np.ndarray, codes: np.ndarray, local: np.ndarray | None, reports
) -> None:
    """Count control and unknown gene names per slice (rows with those codes only)."""
    neg = (codes == _CONTROL) | (codes == _UNKNOWN)
    if local is not None:
        neg &= local >= 0
    if not neg.any():
        return
    nd = len(ch.genes)
    lz = local[neg].astype(np.int64) if local is not None else np.zeros(int(neg.sum()), np.int64)
    cnt = np.bincount(lz * nd + ch.gene_idx[neg], minlength=len(reports) * nd)
    for k in np.flatnonzero(cnt):
        i, g = divmod(int(k), nd)
        target = reports[i].controls if lut[g] == _CONTROL else reports[i].unknown_genes
        target[ch.genes[g]] += int(cnt[k])
