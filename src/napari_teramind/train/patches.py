"""Random training crops from brain stores, read chunk-wise from zarr.

One sample (METHOD.md 1.6, adapted to brain stores), for the model's slice scheme
(:class:`~napari_teramind.slices.SliceScheme`; the published 4-slice one is shown):

* a slice group of ``D`` image slices starting at ``s`` (the pair ``(s, s+1)``) and the ``Z``
  gene slices that condition it (``s-1 .. s+2``; empty slices beyond the stack, as published).
  A single-section model (``Z = D = 1``) reads slice ``s`` alone;
* a ``crop`` x ``crop`` px image crop (default 256) at a position on the 16-px gene-block grid,
  as ``[DAPI_s, DAPI_s+1, PolyT_s, PolyT_s+1]`` in ``[-1, 1]``;
* the gene counts of the crop plus a 2-block (32-px) margin on every side, ``(G, 4, 20, 20)``,
  reordered to the model's panel by gene name. The published dataset zero-filled that margin;
  here it carries the real neighbouring counts (zero only beyond the canvas), which is what the
  generator sees at inference ("zero image padding plus real genes", docs/architecture.md);
* the same random 90-degree rotation and horizontal flip on image and genes.

Each sample's randomness comes from ``(seed, index)`` only, so a run is reproducible whatever
the number of loader workers, and a resumed run draws exactly the samples it would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_teramind.slices import SliceScheme
from napari_teramind.store import BrainStore, GenePanel, align_model_panel

#: The published 4-slice scheme, the default of every function here.
PAIRS = SliceScheme(4, 2)
GENE_SLICES = PAIRS.gene_slices
IMAGE_DEPTH = PAIRS.image_depth
MARGIN_BLOCKS = 2


@dataclass(frozen=True)
class TrainingSample:
    """One training crop: ``image`` (2 D, crop, crop) float32 and ``genes`` (G, Z, gb, gb).

    ``weight`` is the crop's ``(crop, crop)`` float32 loss weight map when the sampler weighs
    rare expression (``rarity_cap``), else ``None``.
    """

    image: np.ndarray
    genes: np.ndarray
    store: int
    slice: int
    y: int
    x: int
    weight: np.ndarray | None = None


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of sample ``index`` of a run seeded ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x7E7A]))


def read_image_pair(
    store: BrainStore, s: int, y0: int, x0: int, size: int, depth: int = IMAGE_DEPTH
) -> np.ndarray:
    """Images of slices ``s .. s + depth - 1`` in ``[-1, 1]``, channels (stain, slice).

    Returns ``(2 depth, size, size)`` float32; ``depth`` is the model's image depth (2: the
    pair ``s, s+1``; 1: slice ``s`` alone).
    """
    arr = store.array("images", 0)
    img = np.asarray(arr[:, s : s + depth, y0 : y0 + size, x0 : x0 + size])
    return img.reshape(2 * depth, size, size).astype(np.float32) / 127.5 - 1.0


def read_gene_window(
    store: BrainStore,
    s: int,
    by0: int,
    bx0: int,
    n_blocks: int,
    target_index: np.ndarray,
    scheme: SliceScheme = PAIRS,
) -> np.ndarray:
    """Gene counts of the window of the group at slice ``s`` over ``n_blocks`` square blocks.

    The blocks are ``[by0, by0+n) x [bx0, bx0+n)``; the slices the scheme's gene window
    (``s-1 .. s+2`` for the default 4-slice scheme).

    Slices and blocks outside the store are zero; ``target_index`` (from
    :meth:`GenePanel.align`) picks and orders the genes, -1 meaning absent (zero).

    Returns
    -------
    numpy.ndarray
        ``(G_target, Z, n_blocks, n_blocks)`` float32.
    """
    arr = store.array("genes", 0)
    _, nz, nby, nbx = arr.shape
    window = scheme.gene_window(s)
    out = np.zeros((len(target_index), len(window), n_blocks, n_blocks), np.float32)
    z0, z1 = window[0], window[-1] + 1
    cz0, cz1 = max(z0, 0), min(z1, nz)
    cy0, cy1 = max(by0, 0), min(by0 + n_blocks, nby)
    cx0, cx1 = max(bx0, 0), min(bx0 + n_blocks, nbx)
    if cz0 >= cz1 or cy0 >= cy1 or cx0 >= cx1:
        return out
    present = target_index >= 0
    src = np.asarray(arr[:, cz0:cz1, cy0:cy1, cx0:cx1])
    out[present, cz0 - z0 : cz1 - z0, cy0 - by0 : cy1 - by0, cx0 - bx0 : cx1 - bx0] = src[
        target_index[present]
    ]
    return out


#: Cells kept per gene and slice group in the gene-balanced table (:func:`gene_cell_table`).
BALANCE_TOP_CELLS = 64


def gene_cell_table(
    store: BrainStore,
    target_index: np.ndarray,
    starts: Sequence[int],
    cell_blocks: int,
    scheme: SliceScheme = PAIRS,
    top_k: int = BALANCE_TOP_CELLS,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Where each gene is most expressed, per slice group, in crop-sized cells.

    The canvas is cut into cells of ``cell_blocks`` x ``cell_blocks`` gene blocks (one crop);
    each cell's count of each model gene is summed over the group's gene window. For every
    training start ``s`` and model gene, the ``top_k`` cells with the most counts are kept with
    those counts. The gene array is read once, one slice and one row of cells at a time, so
    memory holds a few slices' cell sums (``G x H/crop x W/crop`` each), never a slice of
    counts.

    Returns
    -------
    dict
        ``s -> (cells, weights)``: ``cells`` ``(G, K, 2)`` int (cell row, column), ``weights``
        ``(G, K)`` float64 counts (0 where the gene is absent or a cell holds none of it).
    """
    arr = store.array("genes", 0)
    _, nz, nby, nbx = arr.shape
    ncy, ncx = nby // cell_blocks, nbx // cell_blocks
    present = np.flatnonzero(target_index >= 0)
    src_index = target_index[present]
    n_genes = len(target_index)
    k = min(top_k, ncy * ncx)
    cache: dict[int, np.ndarray] = {}

    def cell_sums(z: int) -> np.ndarray:
        if z not in cache:
            out = np.zeros((n_genes, ncy, ncx), np.float64)
            if 0 <= z < nz:
                for cy in range(ncy):
                    rows = slice(cy * cell_blocks, (cy + 1) * cell_blocks)
                    strip = np.asarray(arr[:, z, rows, : ncx * cell_blocks], np.float64)
                    strip = strip[src_index].reshape(len(present), cell_blocks, ncx, cell_blocks)
                    out[present, cy] = strip.sum(axis=(1, 3))
            cache[z] = out
        return cache[z]

    table: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for s in sorted(starts):
        window = scheme.gene_window(s)
        for z in [z for z in cache if z < window[0]]:
            del cache[z]
        total = sum(cell_sums(z) for z in window).reshape(n_genes, -1)
        top = np.argsort(-total, axis=1, kind="stable")[:, :k]
        weights = np.take_along_axis(total, top, axis=1)
        cells = np.stack(np.unravel_index(top, (ncy, ncx)), axis=-1)
        table[int(s)] = (cells.astype(np.int64), weights)
    return table


def augment(image: np.ndarray, genes: np.ndarray, k: int, flip: bool):
    """Rotate image and genes by ``k`` x 90 degrees (counter-clockwise), then flip left-right."""
    image = np.rot90(image, k, axes=(-2, -1))
    genes = np.rot90(genes, k, axes=(-2, -1))
    if flip:
        image = image[..., ::-1]
        genes = genes[..., ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(genes)


class PatchSampler:
    """Draw reproducible training crops from one or more brain stores.

    Parameters
    ----------
    stores
        Paths of the brain stores to train on.
    panel
        The model's genes; each store's genes are aligned to it by name.
    crop
        Crop edge in pixels (a multiple of the gene block, default 256).
    holdout_slices
        Slices never used for training (per store, or one list for all stores).
    seed
        Seed of the run.
    augment
        Apply the random rotation and flip.
    min_tissue
        Resample a crop (up to a few times) when fewer than this fraction of its gene blocks
        hold any transcript, so training does not waste steps on empty background.
    use
        ``"train"``: draw slice groups with no held-out slice; ``"holdout"``: draw only groups
        with a held-out slice (evaluation).
    scheme
        The model's slice scheme (``model.config.slice_scheme``); the published 4-slice one
        (slice pairs) by default.
    gene_balance
        Fraction of crops drawn gene-balanced (0, the default and as published: every crop
        uniform over the canvas). A balanced crop picks one model gene uniformly, then one of
        the crop-sized cells where that gene is most expressed (:func:`gene_cell_table`) in
        proportion to its counts there, then a position within half a crop of that cell. Rare
        programs (the SN/VTA's dopaminergic cells, 1.6 % of the default phantom's tissue)
        are then seen about as often as any gene's territory, not as often as their area.
    """

    def __init__(
        self,
        stores: Sequence[str | Path],
        panel: GenePanel,
        crop: int = 256,
        holdout_slices: Sequence[int] | Sequence[Sequence[int]] = (),
        seed: int = 0,
        augment: bool = True,
        min_tissue: float = 0.05,
        use: str = "train",
        scheme: SliceScheme = PAIRS,
        gene_balance: float = 0.0,
        rarity_cap: float = 0.0,
    ):
        if use not in ("train", "holdout"):
            raise ValueError(f"use must be 'train' or 'holdout', not {use!r}")
        if not stores:
            raise ValueError("no brain store to train on")
        self.paths = [str(p) for p in stores]
        self.panel = panel
        self.crop = int(crop)
        self.seed = int(seed)
        self.augment = augment
        self.min_tissue = float(min_tissue)
        self.scheme = scheme
        if not 0.0 <= gene_balance <= 1.0:
            raise ValueError(f"gene_balance must lie in [0, 1], not {gene_balance}")
        self.gene_balance = float(gene_balance)
        if rarity_cap and not rarity_cap > 1:
            raise ValueError(f"rarity_cap must be 0 (off) or above 1, not {rarity_cap}")
        self.rarity_cap = float(rarity_cap)
        self._stores: list[BrainStore] | None = None
        opened = [BrainStore.open(p) for p in self.paths]
        gb = opened[0].gene_block_px
        if self.crop % gb:
            raise ValueError(f"crop {crop} must be a multiple of the gene block ({gb} px)")
        self.gene_block_px = gb
        self.alignments = []
        for st in opened:
            if st.gene_block_px != gb:
                raise ValueError(f"{st.path} has gene blocks of {st.gene_block_px} px, not {gb}")
            if min(st.height, st.width) < self.crop:
                raise ValueError(f"{st.path} ({st.height} x {st.width} px) is smaller than a crop")
            if st.n_slices < scheme.image_depth:
                raise ValueError(
                    f"{st.path} has {st.n_slices} slice(s); a model with "
                    f"{scheme.describe()} trains on {scheme.image_depth} slices together "
                    "(train a single-section model, gene_slices=1, on single sections)"
                )
            al = align_model_panel(panel, st.panel).alignment
            if not al.present.any():
                raise ValueError(f"{st.path} shares no gene with the model panel")
            self.alignments.append(al)
        holdout = list(holdout_slices)
        if holdout and not isinstance(holdout[0], int | np.integer):
            per_store = [{int(s) for s in h} for h in holdout]
            if len(per_store) != len(opened):
                raise ValueError(
                    f"got held-out slices for {len(per_store)} stores, but {len(opened)} stores"
                )
        else:
            per_store = [{int(s) for s in holdout}] * len(opened)
        for st, ho in zip(opened, per_store, strict=True):
            bad = sorted(s for s in ho if not 0 <= s < st.n_slices)
            if bad:
                raise ValueError(
                    f"held-out slice(s) {bad} outside {st.path} (slices 0..{st.n_slices - 1})"
                )
        # a group s .. s+D-1 trains when none of its slices is held out, evaluates otherwise
        want_holdout = use == "holdout"
        depth = scheme.image_depth
        self.pairs = [
            [
                s
                for s in scheme.training_starts(st.n_slices)
                if any(z in ho for z in range(s, s + depth)) == want_holdout
            ]
            for st, ho in zip(opened, per_store, strict=True)
        ]
        if not any(self.pairs):
            raise ValueError(
                "every slice group is held out; nothing left to train on"
                if not want_holdout
                else "no slice is held out; nothing to evaluate on (give holdout slices)"
            )
        self.holdout = per_store
        self._shapes = [st.shape for st in opened]
        #: Per store, :func:`gene_cell_table` of its usable starts (only when balancing).
        self.balance_tables: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []
        if self.gene_balance > 0:
            self.balance_tables = [
                gene_cell_table(st, al.target_index, starts, self.crop // gb, scheme)
                for st, al, starts in zip(opened, self.alignments, self.pairs, strict=True)
            ]
        #: Per store, :func:`~napari_teramind.train.rarity.rarity_weight_maps` of its starts.
        self.rarity_maps: list[dict[int, np.ndarray]] = []
        if self.rarity_cap:
            from .rarity import rarity_weight_maps

            self.rarity_maps = [
                rarity_weight_maps(st, al.target_index, starts, scheme, self.rarity_cap)
                if starts
                else {}
                for st, al, starts in zip(opened, self.alignments, self.pairs, strict=True)
            ]

    @property
    def stores(self) -> list[BrainStore]:
        """The opened stores (opened lazily, once per process)."""
        if self._stores is None:
            self._stores = [BrainStore.open(p) for p in self.paths]
        return self._stores

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_stores"] = None  # each loader worker opens its own handles
        return state

    def sample(self, index: int) -> TrainingSample:
        """Return sample ``index`` of this run (deterministic)."""
        rng = sample_rng(self.seed, index)
        gb = self.gene_block_px
        nb = self.crop // gb
        usable = [i for i, p in enumerate(self.pairs) if p]
        for _attempt in range(8):
            # a balanced draw consumes one extra number first; with gene_balance 0 the draws
            # are exactly the published sampler's, so old runs resume and replay unchanged
            balanced = self.gene_balance > 0 and float(rng.random()) < self.gene_balance
            si = usable[int(rng.integers(len(usable)))]
            s = int(rng.choice(self.pairs[si]))
            _, h, w = self._shapes[si]
            if balanced:
                by, bx = self._balanced_origin(rng, si, s, h, w)
            else:
                by = int(rng.integers(0, (h - self.crop) // gb + 1))
                bx = int(rng.integers(0, (w - self.crop) // gb + 1))
            genes = read_gene_window(
                self.stores[si],
                s,
                by - MARGIN_BLOCKS,
                bx - MARGIN_BLOCKS,
                nb + 2 * MARGIN_BLOCKS,
                self.alignments[si].target_index,
                self.scheme,
            )
            slots = self.scheme.image_slots
            m = MARGIN_BLOCKS
            inner = genes[:, slots[0] : slots[-1] + 1, m:-m, m:-m]
            if (inner.sum(axis=(0, 1)) > 0).mean() >= self.min_tissue:
                break
        image = read_image_pair(
            self.stores[si], s, by * gb, bx * gb, self.crop, self.scheme.image_depth
        )
        weight = None
        if self.rarity_maps:
            blocks = self.rarity_maps[si][s][by : by + nb, bx : bx + nb]
            weight = np.repeat(np.repeat(blocks, gb, axis=0), gb, axis=1)
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            image, genes = augment(image, genes, k, flip)
            if weight is not None:
                weight, _ = augment(weight, weight, k, flip)
        return TrainingSample(image, genes, si, s, by * gb, bx * gb, weight)

    def _balanced_origin(
        self, rng: np.random.Generator, si: int, s: int, h: int, w: int
    ) -> tuple[int, int]:
        """A crop origin (in blocks) near a cell where a uniformly drawn gene is expressed."""
        gb, nb = self.gene_block_px, self.crop // self.gene_block_px
        cells, weights = self.balance_tables[si][s]
        expressed = np.flatnonzero(weights.sum(axis=1) > 0)
        if not expressed.size:  # no counts at all in this group: uniform
            return (
                int(rng.integers(0, (h - self.crop) // gb + 1)),
                int(rng.integers(0, (w - self.crop) // gb + 1)),
            )
        g = int(expressed[rng.integers(expressed.size)])
        p = weights[g] / weights[g].sum()
        cy, cx = cells[g, int(rng.choice(len(p), p=p))]
        jy, jx = (int(v) for v in rng.integers(-(nb // 2), nb // 2 + 1, size=2))
        by = int(np.clip(cy * nb + jy, 0, (h - self.crop) // gb))
        bx = int(np.clip(cx * nb + jx, 0, (w - self.crop) // gb))
        return by, bx

    def batch(self, indices: Sequence[int]) -> tuple[np.ndarray, ...]:
        """Stack samples into ``(B, 2 D, crop, crop)`` images and ``(B, G, Z, gb, gb)`` genes.

        When the sampler weighs rare expression (``rarity_cap``), a third array follows: the
        ``(B, 1, crop, crop)`` loss weights.
        """
        samples = [self.sample(i) for i in indices]
        out = (np.stack([s.image for s in samples]), np.stack([s.genes for s in samples]))
        if self.rarity_maps:
            out += (np.stack([s.weight for s in samples])[:, None],)
        return out
