"""Attention-weighted expression maps of the gene-gene block (METHOD.md 4.1-4.2).

Geometry
--------
The maps live on the gene-block grid of the store (one value per 16-px block). The model sees
patches of 4 x 4 blocks on the **global offset grid**: patch corners at ``-32 + 64 k`` px, i.e.
``-2 + 4 k`` blocks, the grid the published code gets from its 256-px tiles with a 32-px halo.
Every block belongs to exactly one patch, so a map of a region equals the whole-brain map cut
to that region, whatever the streaming tiles.

Along z, gene window ``k`` holds slices ``2k - 1 .. 2k + 2`` (empty padding slices beyond the
stack) and gives the maps of its two middle slices ``2k`` and ``2k + 1``. Per patch four
attention matrices are computed: ``A0, A1, A2`` with only window slices (0, 1), (1, 2), (2, 3)
kept and ``A3`` with all four. For pathway gene ``g`` and middle slot ``s`` (1 or 2) with counts
``E_s``::

    up:g    slot 1: A0[g, :] . E_1    slot 2: A1[g, :] . E_2
    down:g  slot 1: A1[g, :] . E_1    slot 2: A2[g, :] . E_2
    all:g   A3[g, :] . E_s
    expr:g  E_s[g]

where ``A[g, :] . E = sum over the requested genes g' of A[g, g'] E_g'``: only the L x L
sub-matrix of the requested genes is used, not renormalised; the softmax is still over all
``G`` model genes. Only the ``L`` attention rows are computed (``rows=`` of
:meth:`~napari_teramind.model.TeraMindUNet.gene_attention`).

Other slice schemes (:mod:`napari_teramind.slices`): the gene windows are the model's slice
groups (``Z`` gene slices around ``D`` image slices). For image slot ``s`` of the window, "up"
keeps window slices ``(s - 1, s)``, "down" ``(s, s + 1)`` and "all" every slice, which is the
rule above for ``Z = 4``. A single-section model (``Z = 1``) has no neighbouring slice: only
"all" (its one attention matrix) and "expr" are defined, and its maps have only those
channels (:func:`map_kinds`).
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.slices import SliceGroup, SliceScheme
from napari_teramind.store import (
    PATHWAYS,
    BrainStore,
    GenePanel,
    ModelPanelReport,
    align_model_panel,
)
from napari_teramind.store.compute import compute

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from napari_teramind.model import CheckpointInfo, ModelConfig, TeraMindUNet

__all__ = [
    "KINDS",
    "PRESETS",
    "AttentionProgress",
    "ModelGenes",
    "channel_names",
    "compute_attention_maps",
    "iter_attention_maps",
    "map_kinds",
    "patch_start",
    "preset_genes",
    "resolve_genes",
    "resolve_model_genes",
    "window_maps",
    "window_slices",
]

#: Pathway presets (METHOD.md appendix B): name -> gene pair.
PRESETS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in PATHWAYS.items()}

#: Map kinds, in channel order (METHOD.md 4.1: channels 0..L-1 up, L..2L-1 down, ...).
KINDS: tuple[str, ...] = ("up", "down", "all", "expr")

#: The published 4-slice scheme (the default of every function here).
_PAIRS = SliceScheme(4, 2)

#: Window slices kept for A0 ("up" of slot 1), A1, A2 ("down" of slot 2) and A3 (all).
_VARIANTS: tuple[tuple[int, ...], ...] = ((0, 1), (1, 2), (2, 3), (0, 1, 2, 3))


def map_kinds(scheme: SliceScheme = _PAIRS) -> tuple[str, ...]:
    """The map kinds a scheme defines: :data:`KINDS`, or ``("all", "expr")`` for one slice."""
    return KINDS if scheme.gene_slices > 1 else ("all", "expr")


def _variants(scheme: SliceScheme) -> tuple[list[tuple[int, ...]], dict[str, list[int]]]:
    """Kept window slices of every attention matrix, and per kind the matrix of each slot.

    For the 4-slice scheme this is :data:`_VARIANTS` with up = (A0, A1), down = (A1, A2) and
    all = (A3, A3).
    """
    every = tuple(range(scheme.gene_slices))
    variants: list[tuple[int, ...]] = []

    def index(kept: tuple[int, ...]) -> int:
        if kept not in variants:
            variants.append(kept)
        return variants.index(kept)

    per_kind: dict[str, list[int]] = {}
    if scheme.gene_slices > 1:
        per_kind["up"] = [index((s - 1, s)) for s in scheme.image_slots]
        per_kind["down"] = [index((s, s + 1)) for s in scheme.image_slots]
    per_kind["all"] = [index(every)] * scheme.image_depth
    return variants, per_kind


#: Gene blocks per patch side and the patch-grid offset (blocks) of the global offset grid.
PATCH_BLOCKS = 4
GRID_OFFSET = -2

#: Format of the map metadata; bump when the meaning of the stored values changes.
MAP_FORMAT = 1


@dataclass(frozen=True)
class AttentionProgress:
    """Progress of :func:`iter_attention_maps`, yielded after every unit of work.

    Attributes
    ----------
    name
        Name of the map being written (``attention/<name>``).
    units_done, units_total
        Units (one gene window x one spatial tile) finished and in all.
    window
        Gene window ``k`` of the last unit (slices ``2k - 1 .. 2k + 2``), or ``None``.
    tile
        ``(by0, by1, bx0, bx1)`` gene blocks of the last unit, or ``None``.
    patches
        Patches whose attention was computed in the last unit (non-empty ones).
    elapsed_s
        Seconds since the job started.
    done
        True on the last item (pyramids built, map marked complete).
    """

    name: str
    units_done: int
    units_total: int
    window: int | None = None
    tile: tuple[int, int, int, int] | None = None
    patches: int = 0
    elapsed_s: float = 0.0
    done: bool = False


def preset_genes(name: str) -> tuple[str, tuple[str, ...]]:
    """Return ``(preset name, gene names)`` of a pathway preset (case-insensitive).

    Raises
    ------
    ValueError
        For an unknown name, listing every preset and its genes.
    """
    key = str(name).strip().upper()
    if key not in PRESETS:
        listed = ", ".join(f"{k} ({' + '.join(v)})" for k, v in PRESETS.items())
        raise ValueError(
            f"unknown preset {name!r}; the presets are {listed}, or give the genes themselves"
        )
    return key, PRESETS[key]


def resolve_genes(genes_or_preset: str | Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """Return ``(preset name or None, gene names)`` of a preset name or a list of genes.

    Presets are matched case-insensitively (``"dopa"`` is DOPA); a single other string is one
    gene.
    """
    if isinstance(genes_or_preset, str):
        key = genes_or_preset.upper()
        if key in PRESETS:
            return key, PRESETS[key]
        genes: tuple[str, ...] = (genes_or_preset,)
    else:
        genes = tuple(str(g) for g in genes_or_preset)
    if not genes:
        raise ValueError(f"give a preset ({', '.join(PRESETS)}) or at least one gene name")
    dupes = sorted({g for g in genes if genes.count(g) > 1})
    if dupes:
        raise ValueError(f"genes listed more than once: {', '.join(dupes)}")
    return None, genes


def channel_names(genes: Sequence[str], kinds: Sequence[str] = KINDS) -> list[str]:
    """Channel names ``<kind>:<gene>``, kind-major (up, down, all, expr by default)."""
    return [f"{kind}:{g}" for kind in kinds for g in genes]


def window_slices(k: int, scheme: SliceScheme = _PAIRS) -> tuple[int, ...]:
    """The slices of gene window ``k``; out-of-stack ones are empty.

    ``2k - 1 .. 2k + 2`` for the 4-slice scheme; the gene slices of the model's slice group
    ``k`` otherwise.
    """
    return scheme.group(k).genes


def patch_start(block: int) -> int:
    """First block of the offset-grid patch that holds gene block ``block``."""
    return PATCH_BLOCKS * ((block - GRID_OFFSET) // PATCH_BLOCKS) + GRID_OFFSET


# ---------------------------------------------------------------------------- one window
AttentionFn = Callable[["torch.Tensor", Sequence[int]], "torch.Tensor"]


def window_maps(
    genes: np.ndarray | torch.Tensor,
    attention_fn: AttentionFn,
    rows: Sequence[int],
    *,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    autocast: torch.dtype | None = None,
    scheme: SliceScheme = _PAIRS,
) -> tuple[np.ndarray, int]:
    """Maps of the image slices of one gene window over a patch-aligned area.

    Parameters
    ----------
    genes
        Counts ``(G, Z, H, W)`` in model gene order: the ``Z`` window slices (4 by default) of
        an area whose top-left block is a patch corner (``H`` and ``W`` multiples of 4).
    attention_fn
        ``attention_fn(genes (N, G, 4, 4, 4), rows) -> (N, len(rows), G)`` float32 weights,
        e.g. ``model.gene_attention``.
    rows
        Model positions of the ``L`` requested genes.
    batch_size
        Patches per call of ``attention_fn``.
    device
        Where the patches are sent.
    autocast
        ``torch.float16``/``torch.bfloat16`` to run the attention under autocast (CUDA), or
        ``None`` for full precision.
    scheme
        The model's slice scheme (the 4-slice one by default).

    Returns
    -------
    tuple
        ``(maps, n_patches)``: float32 ``(K L, D, H, W)`` with the ``K`` kinds of
        :func:`map_kinds` in channel order like :func:`channel_names` and the ``D`` image slices
        (window slots 1, 2 for pairs), and the number of patches whose attention was computed
        (patches without any requested-gene count in the image slices map to zero and are
        skipped).
    """
    import torch

    from napari_teramind.model import keep_gene_slices
    from napari_teramind.model.precision import autocast as precision_autocast

    g = torch.as_tensor(np.asarray(genes) if not torch.is_tensor(genes) else genes)
    g = g.float()
    _, n_z, h, w = g.shape
    nz, depth = scheme.gene_slices, scheme.image_depth
    if n_z != nz or h % PATCH_BLOCKS or w % PATCH_BLOCKS:
        raise ValueError(f"window genes must be (G, {nz}, 4 m, 4 n), got {tuple(g.shape)}")
    kinds = map_kinds(scheme)
    variants, per_kind = _variants(scheme)
    slot0 = scheme.image_slots[0]
    rows = list(rows)
    n_rows = len(rows)
    ph, pw = h // PATCH_BLOCKS, w // PATCH_BLOCKS
    p = PATCH_BLOCKS
    patches = to_patches(g)
    row_index = torch.as_tensor(rows, dtype=torch.long)
    expr = patches.index_select(1, row_index)[:, :, slot0 : slot0 + depth]
    expr = expr.reshape(ph * pw, n_rows, depth, p * p)
    out = torch.zeros(ph * pw, len(kinds), n_rows, depth, p * p)
    out[:, kinds.index("expr")] = expr
    active = torch.nonzero(expr.reshape(ph * pw, -1).any(dim=1)).flatten()
    dev = torch.device(device)
    rows_dev = row_index.to(dev)
    for start in range(0, active.numel(), max(1, int(batch_size))):
        idx = active[start : start + batch_size]
        x = patches.index_select(0, idx).to(dev)
        e = expr.index_select(0, idx).to(dev)
        weights = []
        with torch.inference_mode(), precision_autocast(dev, autocast, off_cuda="refuse"):
            for kept in variants:
                xv = x if len(kept) == nz else keep_gene_slices(x, kept)
                a = attention_fn(xv, rows).float()  # (n, L, G)
                weights.append(a.index_select(2, rows_dev))  # (n, L, L)

        def mix(a: torch.Tensor, slot: int, e: torch.Tensor = e) -> torch.Tensor:
            return torch.einsum("nij,njb->nib", a, e[:, :, slot])

        with torch.inference_mode():
            for kind, matrices in per_kind.items():
                value = torch.stack([mix(weights[m], d) for d, m in enumerate(matrices)], dim=2)
                out[idx, kinds.index(kind)] = value.float().cpu()
    # (ph, pw, K, L, D, p, p) -> (K, L, D, ph, p, pw, p)
    out = out.reshape(ph, pw, len(kinds), n_rows, depth, p, p).permute(2, 3, 4, 0, 5, 1, 6)
    maps = out.reshape(len(kinds) * n_rows, depth, h, w).numpy()
    return np.ascontiguousarray(maps, dtype=np.float32), int(active.numel())


def to_patches(genes: torch.Tensor) -> torch.Tensor:
    """Cut window counts ``(G, Z, 4 m, 4 n)`` into patches ``(m n, G, Z, 4, 4)``, row-major."""
    n_genes, n_z, h, w = genes.shape
    p = PATCH_BLOCKS
    ph, pw = h // p, w // p
    patches = genes.reshape(n_genes, n_z, ph, p, pw, p).permute(2, 4, 0, 1, 3, 5)
    return patches.reshape(ph * pw, n_genes, n_z, p, p)


def from_patches(values: torch.Tensor | np.ndarray, h: int, w: int) -> np.ndarray:
    """Broadcast per-patch values ``(m n, ...)`` back to blocks ``(..., 4 m, 4 n)``."""
    v = np.asarray(values)
    p = PATCH_BLOCKS
    ph, pw = h // p, w // p
    grid = v.reshape(ph, pw, *v.shape[1:])
    grid = np.moveaxis(grid, (0, 1), (-2, -1))
    return np.repeat(np.repeat(grid, p, axis=-2), p, axis=-1)


# ---------------------------------------------------------------------------- streaming
def _attention_fn(model: TeraMindUNet, device: str | torch.device) -> AttentionFn:
    """``model.gene_attention`` on ``device``; only the small gene-gene layer is copied there."""
    import torch

    dev = torch.device(device)
    param = next(model.parameters())
    if param.device == dev or (dev.type == param.device.type and dev.index is None):
        return model.gene_attention
    attn = copy.deepcopy(model.rna_blocks.gene_block.attn).to(dev).eval()

    def fn(genes: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        tokens = genes.to(attn.q.weight.dtype).reshape(genes.shape[0], genes.shape[1], -1)
        return attn.attention_weights(tokens, rows)

    return fn


def attention_weights_sha256(model: TeraMindUNet) -> str:
    """SHA-256 of the gene-gene attention weights (the only weights the maps depend on)."""
    h = hashlib.sha256()
    for key, value in sorted(model.rna_blocks.gene_block.attn.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _block_region(
    store: BrainStore, region: Sequence[int] | None
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int] | None]:
    """Validate a pixel region; return its gene-block bounds and the pixel region (or None)."""
    gb = store.gene_block_px
    hb, wb = -(-store.height // gb), -(-store.width // gb)
    if region is None:
        return (0, hb, 0, wb), None
    if len(region) != 4:
        raise ValueError(f"region must be (y0, y1, x0, x1) in px, got {region!r}")
    y0, y1, x0, x1 = (int(v) for v in region)
    if not (0 <= y0 < y1 <= store.height and 0 <= x0 < x1 <= store.width):
        raise ValueError(
            f"region (y0, y1, x0, x1) = {(y0, y1, x0, x1)} px is empty or outside the "
            f"{store.height} x {store.width} px sections; give 0 <= y0 < y1 <= {store.height} "
            f"and 0 <= x0 < x1 <= {store.width}"
        )
    return (y0 // gb, -(-y1 // gb), x0 // gb, -(-x1 // gb)), (y0, y1, x0, x1)


def _check_slices(store: BrainStore, slices: Sequence[int] | None) -> list[int]:
    if slices is None:
        return list(range(store.n_slices))
    out = sorted({int(s) for s in slices})
    bad = [s for s in out if not 0 <= s < store.n_slices]
    if bad or not out:
        raise ValueError(
            f"slices {bad or list(slices)} are not in 0..{store.n_slices - 1} "
            f"({store.n_slices} sections)"
        )
    return out


def _tiles(blocks: tuple[int, int, int, int], tile: int) -> list[tuple[int, int, int, int]]:
    """Tiles of the block region cut at multiples of ``tile`` (the output chunk grid)."""
    by0, by1, bx0, bx1 = blocks
    ys = (
        [*range(by0, by1, tile)]
        if by0 % tile == 0
        else [by0, *range(-(-by0 // tile) * tile, by1, tile)]
    )
    xs = (
        [*range(bx0, bx1, tile)]
        if bx0 % tile == 0
        else [bx0, *range(-(-bx0 // tile) * tile, bx1, tile)]
    )
    out = []
    for i, ya in enumerate(ys):
        yb = ys[i + 1] if i + 1 < len(ys) else by1
        for j, xa in enumerate(xs):
            xb = xs[j + 1] if j + 1 < len(xs) else bx1
            out.append((ya, yb, xa, xb))
    return out


def _checkpoint_meta(
    model: TeraMindUNet, gene_names: Sequence[str], checkpoint: CheckpointInfo | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "gene_names": list(gene_names),
        "n_genes": len(gene_names),
        "attention_weights_sha256": attention_weights_sha256(model),
        "path": None,
        "weights_sha256": None,
        "source": "in-memory model",
    }
    if checkpoint is not None:
        meta.update(
            path=str(checkpoint.path) if checkpoint.path is not None else None,
            weights_sha256=checkpoint.provenance.get("weights_sha256"),
            source=checkpoint.provenance.get("source", "checkpoint"),
        )
    return meta


def _read_window(
    store: BrainStore,
    k: int,
    area: tuple[int, int, int, int],
    take: Callable[[np.ndarray], np.ndarray],
    scheme: SliceScheme = _PAIRS,
) -> np.ndarray:
    """Counts ``(G_model, Z, h, w)`` float32 of window ``k`` over blocks ``area``, zero-padded."""
    ya, yb, xa, xb = area
    _, n_z, hb, wb = store.zarr_array("genes", 0).shape
    zs = window_slices(k, scheme)
    z0, z1 = max(0, zs[0]), min(n_z, zs[-1] + 1)
    cy0, cy1, cx0, cx1 = max(0, ya), min(hb, yb), max(0, xa), min(wb, xb)
    raw = compute(store.genes()[:, z0:z1, cy0:cy1, cx0:cx1], scheduler="synchronous")
    aligned = take(np.asarray(raw))
    out = np.zeros((aligned.shape[0], len(zs), yb - ya, xb - xa), dtype=np.float32)
    out[:, z0 - zs[0] : z1 - zs[0], cy0 - ya : cy1 - ya, cx0 - xa : cx1 - xa] = aligned
    return out


def _job_params(meta: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("format", "genes", "region_blocks", "slices", "checkpoint", "tile_blocks")
    return {k: meta.get(k) for k in keys}


@dataclass(frozen=True)
class ModelGenes:
    """Requested genes resolved against a model's genes and a store's panel.

    Attributes
    ----------
    preset
        The pathway preset asked for, or ``None`` for a list of genes.
    genes
        The genes under the model's symbols (mouse symbols for every published model).
    symbols
        The same genes under the store's symbols (``SLC17A6`` on a human store): they name the
        map's channels and, by default, the map.
    rows
        Model positions of ``genes``.
    model_panel
        The model's genes, in model order.
    report
        How the store's panel serves the model (:func:`~napari_teramind.store.align_model_panel`):
        its alignment feeds the store's counts to the model, through the human orthologs on a
        human store.
    """

    preset: str | None
    genes: tuple[str, ...]
    symbols: tuple[str, ...]
    rows: tuple[int, ...]
    model_panel: GenePanel
    report: ModelPanelReport


def resolve_model_genes(
    store: BrainStore,
    config: ModelConfig,
    genes_or_preset: str | Sequence[str],
    gene_names: Sequence[str] | GenePanel | None = None,
    checkpoint: CheckpointInfo | None = None,
) -> ModelGenes:
    """Resolve a preset or genes against the model's genes and the store's panel, or refuse.

    The store's panel is aligned to the model's genes by name, or through the human orthologs
    for a store named with human symbols (:func:`~napari_teramind.store.align_model_panel`);
    genes may be given under either symbol (``Slc17a6`` or ``SLC17A6``). Reads no weights:
    the widgets call it with the checkpoint's metadata
    (:func:`~napari_teramind.model.registry.model_meta_of`) before any worker starts.

    Parameters
    ----------
    store
        The brain store the maps are computed on.
    config
        The model's configuration (``model.config``; its ``n_genes`` and slice scheme).
    genes_or_preset, gene_names, checkpoint
        As in :func:`iter_attention_maps`.

    Raises
    ------
    ValueError
        Without gene names, for gene names that do not fit the model, or for a human store that
        shares too few of the model's genes (:meth:`~napari_teramind.store.ModelPanelReport.check`).
    KeyError
        For a gene the model or the store lacks; on the human path it says why (TH is not in the
        human panel) and which pathways can be mapped.
    """
    preset, genes = resolve_genes(genes_or_preset)
    if gene_names is None:
        if checkpoint is None:
            raise ValueError("give gene_names (the model's genes, in model order) or checkpoint")
        gene_names = checkpoint.gene_names
    model_panel = gene_names if isinstance(gene_names, GenePanel) else GenePanel(gene_names)
    if len(model_panel) != config.n_genes:
        raise ValueError(
            f"gene_names lists {len(model_panel)} genes but the model has "
            f"{config.n_genes}; pass the checkpoint's gene names"
        )
    config.slice_scheme.check_stack(store.n_slices, f"the store {store.path}")
    report = align_model_panel(model_panel, store.panel)
    if report.orthologs:  # a human store: human symbols name the model's mouse genes
        to_model = {h: m for m, h in report.orthologs.items()}
        genes = tuple(to_model.get(g, g) for g in genes)
    unknown = [g for g in genes if g not in model_panel]
    if unknown:
        why = report.unavailable_reason(unknown)
        if why:
            raise KeyError(why)
        model_panel.index(unknown[0])  # KeyError with close matches
    present = dict(zip(model_panel.names, report.alignment.present, strict=True))
    missing_store = [g for g in genes if not present[g]]
    if missing_store:
        shown = [report.orthologs.get(g, g) for g in missing_store]
        raise KeyError(
            f"gene(s) {', '.join(shown)} are not in the store's panel "
            f"({len(store.panel)} genes) at {store.path}; pick genes the store measured"
        )
    if not report.alignment.present.any():
        raise ValueError("the store shares no gene names with the model")
    report.check()
    symbols = tuple(report.orthologs.get(g, g) for g in genes)
    return ModelGenes(
        preset, genes, symbols, tuple(model_panel.indices(genes)), model_panel, report
    )


@dataclass(frozen=True)
class _Units:
    """The units of work of a map job: gene windows x streaming tiles."""

    blocks: tuple[int, int, int, int]
    px_region: tuple[int, int, int, int] | None
    wanted: list[int]
    groups: dict[int, SliceGroup]
    units: list[tuple[int, tuple[int, int, int, int]]]


def _plan_units(
    store: BrainStore,
    scheme: SliceScheme,
    region: Sequence[int] | None,
    slices: Sequence[int] | None,
    tile_blocks: int,
) -> _Units:
    """Validate region, slices and tiles; the windows of the model's scheme times the tiles."""
    if tile_blocks <= 0 or tile_blocks % PATCH_BLOCKS:
        raise ValueError(f"tile_blocks must be a positive multiple of 4, got {tile_blocks}")
    blocks, px_region = _block_region(store, region)
    wanted = _check_slices(store, slices)
    scheme.check_stack(store.n_slices, f"the store {store.path}")
    groups: dict[int, SliceGroup] = {g.k: g for g in scheme.groups(wanted)}
    tiles = _tiles(blocks, tile_blocks)
    return _Units(blocks, px_region, wanted, groups, [(k, t) for k in groups for t in tiles])


#: ``window_fn(genes (G, Z, h, w)) -> (maps (C, D, h, w), patches computed)``.
WindowFn = Callable[[np.ndarray], tuple[np.ndarray, int]]


def _iter_windows(
    store: BrainStore,
    name: str,
    channels: Sequence[str],
    meta: dict[str, Any],
    job_params: Callable[[Mapping[str, Any]], dict[str, Any]],
    plan: _Units,
    window_fn: WindowFn,
    take: Callable[[np.ndarray], np.ndarray],
    scheme: SliceScheme,
    resume: bool,
) -> Iterator[AttentionProgress]:
    """Stream a map job unit by unit into ``attention/<name>``: the loop of every map kind.

    Each unit reads one gene window (the model's slice group, counts aligned to the model by
    ``take``) over the patches covering one tile, computes it with ``window_fn``, writes the
    tile of each of the group's image slices that was asked for and records the progress, so
    that a job resumes after its last finished unit when ``job_params`` of the stored metadata
    equal those of ``meta``. The pyramids are built and the map is marked complete at the end.
    """
    units = plan.units
    start_unit = 0
    if resume and name in store.attention_names():
        old = store.attention_metadata(name)
        if job_params(old) == job_params(meta):
            if old.get("complete"):
                yield AttentionProgress(name, len(units), len(units), done=True)
                return
            start_unit = int(old.get("units_done", 0))
            meta["units_done"] = start_unit
    if start_unit == 0:
        store.create_derived(name, list(channels), attrs=meta)
    t0 = time.perf_counter()
    for u in range(start_unit, len(units)):
        k, (ty0, ty1, tx0, tx1) = units[u]
        py0, px0 = patch_start(ty0), patch_start(tx0)
        py1 = patch_start(ty1 - 1) + PATCH_BLOCKS
        px1 = patch_start(tx1 - 1) + PATCH_BLOCKS
        window = _read_window(store, k, (py0, py1, px0, px1), take, scheme)
        maps, n_active = window_fn(window)
        crop = maps[:, :, ty0 - py0 : ty1 - py0, tx0 - px0 : tx1 - px0]
        for slot, z in enumerate(plan.groups[k].image):
            if z in plan.wanted:
                store.write_derived(name, z, ty0, tx0, np.ascontiguousarray(crop[:, slot]))
        meta["units_done"] = u + 1
        store.update_derived_metadata(name, {"units_done": u + 1})
        yield AttentionProgress(
            name, u + 1, len(units), k, (ty0, ty1, tx0, tx1), n_active, time.perf_counter() - t0
        )
    store.build_pyramids(names=[f"attention/{name}"], region=plan.px_region)
    store.update_derived_metadata(name, {"complete": True})
    yield AttentionProgress(
        name, len(units), len(units), elapsed_s=time.perf_counter() - t0, done=True
    )


def iter_attention_maps(
    store: BrainStore,
    model: TeraMindUNet,
    genes_or_preset: str | Sequence[str],
    *,
    gene_names: Sequence[str] | GenePanel | None = None,
    checkpoint: CheckpointInfo | None = None,
    name: str | None = None,
    region: Sequence[int] | None = None,
    slices: Sequence[int] | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    autocast: torch.dtype | str | None = None,
    tile_blocks: int = 128,
    resume: bool = True,
) -> Iterator[AttentionProgress]:
    """Compute attention maps and write them to ``attention/<name>``, yielding progress.

    Streams unit by unit (one gene window of the model's slice scheme x one spatial tile of
    ``tile_blocks`` gene blocks), so memory stays bounded for any brain. Closing the generator
    stops between units; calling again with the same arguments resumes after the last finished
    unit.

    Parameters
    ----------
    store
        A brain store opened with ``mode="r+"``.
    model
        The network; only its gene-gene attention block is used.
    genes_or_preset
        ``"GLUT"``, ``"DOPA"``, ``"BLOD"`` or gene names (``L >= 1``), under the model's or the
        store's symbols.
    gene_names
        The model's ``G`` genes in model order (``CheckpointInfo.gene_names``); taken from
        ``checkpoint`` when omitted. Store counts are aligned to them by name (through the
        human orthologs on a store named with human symbols); model genes the store lacks are
        fed as zero counts (listed in the metadata).
    checkpoint
        The model's :class:`~napari_teramind.model.CheckpointInfo`, recorded in the metadata.
    name
        Map name; the preset name, or the genes (the store's symbols) joined by ``-``.
    region
        ``(y0, y1, x0, x1)`` in image px; the whole sections by default. Blocks outside stay 0.
    slices
        Slices to compute; all by default.
    batch_size
        Patches per attention call.
    device
        ``"cpu"``, ``"cuda"``, ...; only the gene-gene layer is copied there.
    autocast
        ``"fp16"``/``"bf16"`` (or a torch dtype) for CUDA autocast; ``None`` for float32.
    tile_blocks
        Edge of the streaming tiles in gene blocks (a multiple of the 128-block chunks keeps
        writes chunk-aligned).
    resume
        Continue an unfinished job with the same parameters instead of starting over.

    Yields
    ------
    AttentionProgress
        After every unit, and a last item with ``done=True``.

    Notes
    -----
    Channels are named with the store's symbols (``all:SLC17A6`` on a human store), and so is
    the metadata's ``genes``; ``model_genes`` then records the model's symbols.
    """
    import torch

    if not store.writable:
        raise ValueError(f"{store.path} is open read-only; open it with mode='r+' to add maps")
    asked = resolve_model_genes(store, model.config, genes_or_preset, gene_names, checkpoint)
    name = name or asked.preset or "-".join(asked.symbols)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"map name {name!r} must be non-empty, without '/' or a leading '.'")
    if isinstance(autocast, str):
        table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "none": None, "fp32": None}  # fmt: skip
        if autocast.lower() not in table:
            raise ValueError(f"autocast must be fp16, bf16 or none, not {autocast!r}")
        autocast = table[autocast.lower()]
    scheme = model.config.slice_scheme
    plan = _plan_units(store, scheme, region, slices, tile_blocks)
    kinds = map_kinds(scheme)
    fn = _attention_fn(model, device)
    alignment = asked.report.alignment

    meta: dict[str, Any] = {
        "format": MAP_FORMAT,
        "kind": "gene-gene attention",
        "preset": asked.preset,
        "genes": list(asked.symbols),
        **_model_genes_meta(asked),
        "kinds": list(kinds),
        "checkpoint": _checkpoint_meta(model, asked.model_panel.names, checkpoint),
        "missing_model_genes": list(alignment.missing),
        "normalisation": {
            "attention": "log2(1 + n_genes * value)",
            "n_genes": len(asked.model_panel),
            "expression": "log2(1 + count)",
            "mask": "all",
            "sigma_blocks": 2.0,
        },
        "region": list(plan.px_region) if plan.px_region is not None else None,
        "region_blocks": list(plan.blocks),
        "slices": plan.wanted,
        "tile_blocks": int(tile_blocks),
        "patch_grid": "offset: patch corners at -32 + 64 k px (4 x 4 blocks per patch)",
        "windows": "slices 2k-1..2k+2 (empty padding), maps of the middle slices 2k, 2k+1"
        if scheme == _PAIRS
        else f"slice groups of the model's scheme ({scheme.describe()}): gene window "
        f"{scheme.gene_window(0)[0]:+d}..{scheme.gene_window(0)[-1]:+d} around slices "
        f"{scheme.image_depth}k..{scheme.image_depth}k+{scheme.image_depth - 1}",
        "units_done": 0,
        "units_total": len(plan.units),
        "complete": False,
    }

    def window_fn(window: np.ndarray) -> tuple[np.ndarray, int]:
        return window_maps(
            window, fn, asked.rows, batch_size=batch_size, device=device, autocast=autocast,
            scheme=scheme,
        )  # fmt: skip

    yield from _iter_windows(
        store, name, channel_names(asked.symbols, kinds), meta, _job_params, plan, window_fn,
        alignment.take, scheme, resume,
    )  # fmt: skip


def _model_genes_meta(asked: ModelGenes) -> dict[str, list[str]]:
    """``{"model_genes": [...]}`` where the store names the genes otherwise (human orthologs)."""
    return {"model_genes": list(asked.genes)} if asked.symbols != asked.genes else {}


def compute_attention_maps(*args: Any, **kwargs: Any) -> str:
    """Run :func:`iter_attention_maps` to the end and return the map name."""
    name = ""
    for item in iter_attention_maps(*args, **kwargs):
        name = item.name
    return name
