"""Attention contrast: how far a gene pair's attention is from an expression-matched null.

The published maps (:mod:`.maps`) weight expression by attention, so they mostly show the
expression (docs/attention.md). The contrast asks instead whether the attention *between the
two genes of a pair* in a patch differs from what a null gives on the **same counts**:

* ``null="permuted"``: the gene identities are shuffled (``draws`` seeded permutations of the
  ``G`` model channels: every gene's counts move to another channel) and the weight between the
  channels that now hold the pair's counts is read. An attention that knew which gene is which
  would differ from this null; one that sees only the counts would not;
* ``null="random"``: ``draws`` randomly initialised gene-gene attention layers (PyTorch's
  default initialisation, seeds ``seed .. seed + draws - 1``) read on the same counts: what
  training changed.

Per patch (4 x 4 gene blocks, the four slices of a gene window, the ``all`` variant ``A3``)::

    w      = (A[a, b] + A[b, a]) / 2          the pair's symmetric attention weight
    z      = (w - mean_null) / sqrt(sd_null^2 + eps^2),   eps = 1e-3 / G

``eps`` keeps ``z`` finite where the null does not vary at all. The gene-gene attention of this
architecture has shared query/key projections and no gene embedding, so it is equivariant under
gene permutations: the permuted null equals the observed weight up to float rounding and ``z``
is 0 (tested). That is a fact about the model, not a failure of the statistic: the attention
weights cannot tell two genes with the same counts apart, and what the model learned about a
pair's identity lives downstream of them (in the gene-aware z-reducing convolution and the
UNet). The random-model null is the one that moves.

Maps are written as a derived map ``attention/<name>`` (default ``<pair map>-contrast``) with
the channels :data:`CONTRAST_CHANNELS` (``weight, null_mean, null_sd, z, both``), per block;
``both`` is the published mask (both genes counted in the block). Values are per patch for the
two middle slices of each window (the same ``A3`` for both), 0 outside patches where both genes
are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.attention.maps import (
    _PAIRS,
    MAP_FORMAT,
    PATCH_BLOCKS,
    AttentionFn,
    AttentionProgress,
    _attention_fn,
    _checkpoint_meta,
    _iter_windows,
    _model_genes_meta,
    _plan_units,
    from_patches,
    resolve_model_genes,
    to_patches,
)
from napari_teramind.slices import SliceScheme
from napari_teramind.store import BrainStore, GenePanel
from napari_teramind.store.compute import compute

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from napari_teramind.model import CheckpointInfo, TeraMindUNet

__all__ = [
    "CONTRAST_CHANNELS",
    "NULLS",
    "compute_contrast_maps",
    "contrast_by_region",
    "contrast_summary",
    "iter_contrast_maps",
    "patch_contrast",
    "random_attention_fns",
]

#: Null models of the contrast.
NULLS: tuple[str, ...] = ("permuted", "random")
#: Channels of a contrast map, in order.
CONTRAST_CHANNELS: tuple[str, ...] = ("weight", "null_mean", "null_sd", "z", "both")
#: Kind recorded in the metadata of a contrast map (``attrs['teramind']['kind']``).
CONTRAST_KIND = "gene-gene attention contrast"


def _pair_weight(attention_fn: AttentionFn, x: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """``(A[a, b] + A[b, a]) / 2`` per patch of ``x`` ``(N, G, 4, 4, 4)``."""
    w = attention_fn(x, [a, b]).float()  # (N, 2, G)
    return 0.5 * (w[:, 0, b] + w[:, 1, a])


def random_attention_fns(dim: int, draws: int, seed: int = 0) -> list[AttentionFn]:
    """``draws`` randomly initialised gene-gene attention layers of token width ``dim``.

    PyTorch's default initialisation (the model's own), seeds ``seed .. seed + draws - 1``;
    the global random state is left as it was.
    """
    import torch

    from napari_teramind.model.gene_branch import GeneGeneAttention

    fns: list[AttentionFn] = []
    for d in range(int(draws)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) + d)
            layer = GeneGeneAttention(dim).eval()

        def fn(genes: torch.Tensor, rows: Sequence[int], layer=layer) -> torch.Tensor:
            tokens = genes.float().reshape(genes.shape[0], genes.shape[1], -1)
            return layer.attention_weights(tokens, rows)

        fns.append(fn)
    return fns


def patch_contrast(
    patches: torch.Tensor,
    attention_fn: AttentionFn,
    pair: tuple[int, int],
    *,
    null: str = "permuted",
    draws: int = 4,
    seed: int = 0,
    null_fns: Sequence[AttentionFn] | None = None,
) -> dict[str, np.ndarray]:
    """The pair's attention weight and its null per patch.

    Parameters
    ----------
    patches
        Counts ``(N, G, 4, 4, 4)`` in model gene order.
    attention_fn
        ``attention_fn(genes, rows) -> (N, len(rows), G)``, e.g. ``model.gene_attention``.
    pair
        Model positions ``(a, b)`` of the two genes.
    null
        ``"permuted"`` (gene identities shuffled, same counts) or ``"random"`` (randomly
        initialised attention layers on the same counts).
    draws
        Null draws (permutations or random layers); at least 2.
    seed
        Seed of the permutations / random layers.
    null_fns
        The random layers (``null="random"``), e.g. from :func:`random_attention_fns`; built
        from ``seed`` and ``draws`` when omitted (the token width is taken from ``patches``).

    Returns
    -------
    dict
        ``weight, null_mean, null_sd, z``: float32 ``(N,)``.
    """
    import torch

    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS}, not {null!r}")
    if int(draws) < 2:
        raise ValueError(f"draws must be at least 2 (a null needs a spread), got {draws}")
    a, b = (int(v) for v in pair)
    g = patches.shape[1]
    if not (0 <= a < g and 0 <= b < g) or a == b:
        raise ValueError(f"pair {pair} must be two different gene positions in 0..{g - 1}")
    with torch.inference_mode():
        w = _pair_weight(attention_fn, patches, a, b)
        nulls = []
        if null == "permuted":
            rng = np.random.default_rng([int(seed), 0xC0DE])
            for _ in range(int(draws)):
                perm = rng.permutation(g)  # gene j's counts go to channel perm[j]
                inv = torch.as_tensor(np.argsort(perm), dtype=torch.long, device=patches.device)
                nulls.append(
                    _pair_weight(attention_fn, patches.index_select(1, inv), perm[a], perm[b])
                )
        else:
            if null_fns is None:
                dim = int(np.prod(patches.shape[2:]))
                null_fns = random_attention_fns(dim, draws, seed)
            if len(null_fns) < 2:
                raise ValueError("the random null needs at least 2 layers (null_fns)")
            nulls = [_pair_weight(fn, patches, a, b) for fn in null_fns]
        stack = torch.stack(nulls).double()
        mean = stack.mean(dim=0)
        sd = stack.std(dim=0, unbiased=True)
        eps = 1e-3 / g
        z = (w.double() - mean) / torch.sqrt(sd * sd + eps * eps)
    return {
        "weight": w.float().cpu().numpy(),
        "null_mean": mean.float().cpu().numpy(),
        "null_sd": sd.float().cpu().numpy(),
        "z": z.float().cpu().numpy(),
    }


def window_contrast(
    genes: np.ndarray | torch.Tensor,
    attention_fn: AttentionFn,
    pair: tuple[int, int],
    *,
    batch_size: int = 1024,
    scheme: SliceScheme = _PAIRS,
    **null_kw: Any,
) -> tuple[np.ndarray, int]:
    """Contrast channels ``(5, D, H, W)`` of one gene window (``(G, Z, H, W)``, patch-aligned).

    Returns the map (channels :data:`CONTRAST_CHANNELS`, the ``D`` image slices of the
    model's slice scheme: the two middle slices of a 4-slice window, the one slice of a
    single-section model) and the number of patches where both genes are counted in those
    slices (the others stay 0).
    """
    import torch

    g = torch.as_tensor(np.asarray(genes) if not torch.is_tensor(genes) else genes).float()
    _, n_z, h, w = g.shape
    nz = scheme.gene_slices
    if n_z != nz or h % PATCH_BLOCKS or w % PATCH_BLOCKS:
        raise ValueError(f"window genes must be (G, {nz}, 4 m, 4 n), got {tuple(g.shape)}")
    s0, s1 = scheme.image_slots[0], scheme.image_slots[-1] + 1
    a, b = pair
    both_blocks = (g[a, s0:s1] > 0) & (g[b, s0:s1] > 0)  # (D, H, W): the published mask
    patches = to_patches(g)
    middle = patches[:, [a, b], s0:s1]
    active = torch.nonzero((middle.flatten(2) > 0).any(dim=2).all(dim=1)).flatten()
    per_patch = np.zeros((4, patches.shape[0]), dtype=np.float32)
    for start in range(0, active.numel(), max(1, int(batch_size))):
        idx = active[start : start + batch_size]
        res = patch_contrast(patches.index_select(0, idx), attention_fn, pair, **null_kw)
        for c, key in enumerate(CONTRAST_CHANNELS[:4]):
            per_patch[c, idx.numpy()] = res[key]
    blocks = from_patches(per_patch.T, h, w)  # (4, H, W)
    out = np.zeros((len(CONTRAST_CHANNELS), s1 - s0, h, w), dtype=np.float32)
    out[:4] = blocks[:, None]
    out[4] = both_blocks.numpy()
    return out, int(active.numel())


def iter_contrast_maps(
    store: BrainStore,
    model: TeraMindUNet,
    pair: str | Sequence[str],
    *,
    null: str = "permuted",
    draws: int = 4,
    seed: int = 0,
    gene_names: Sequence[str] | GenePanel | None = None,
    checkpoint: CheckpointInfo | None = None,
    name: str | None = None,
    region: Sequence[int] | None = None,
    slices: Sequence[int] | None = None,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    tile_blocks: int = 128,
    resume: bool = True,
) -> Iterator[AttentionProgress]:
    """Compute a pair's attention contrast into ``attention/<name>``, yielding progress.

    Parameters
    ----------
    store
        A brain store opened with ``mode="r+"``.
    model
        The network; only its gene-gene attention is used.
    pair
        A two-gene preset (``"GLUT"``, ``"DOPA"``, ``"BLOD"``) or two gene names.
    null, draws, seed
        The null (:func:`patch_contrast`).
    gene_names, checkpoint, region, slices, batch_size, device, tile_blocks, resume
        As in :func:`~napari_teramind.attention.maps.iter_attention_maps`.
    name
        Map name; ``<preset or genes joined by '-'>-contrast`` by default (so it sits beside
        the published map of the pair).

    Yields
    ------
    AttentionProgress
        After every unit, and a last item with ``done=True``.
    """
    if not store.writable:
        raise ValueError(f"{store.path} is open read-only; open it with mode='r+' to add maps")
    asked = resolve_model_genes(store, model.config, pair, gene_names, checkpoint)
    if len(asked.genes) != 2:
        raise ValueError(
            f"the contrast is for a gene pair; got {len(asked.genes)} gene(s): {asked.symbols}"
        )
    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS}, not {null!r}")
    if int(draws) < 2:
        raise ValueError(f"draws must be at least 2 (a null needs a spread), got {draws}")
    a, b = asked.rows
    name = name or f"{asked.preset or '-'.join(asked.symbols)}-contrast"
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"map name {name!r} must be non-empty, without '/' or a leading '.'")
    scheme = model.config.slice_scheme
    plan = _plan_units(store, scheme, region, slices, tile_blocks)
    fn = _attention_fn(model, device)
    dim = model.rna_blocks.gene_block.attn.dim
    null_kw: dict[str, Any] = {"null": null, "draws": int(draws), "seed": int(seed)}
    if null == "random":
        null_kw["null_fns"] = random_attention_fns(dim, draws, seed)
    meta: dict[str, Any] = {
        "format": MAP_FORMAT,
        "kind": CONTRAST_KIND,
        "preset": asked.preset,
        "genes": list(asked.symbols),
        **_model_genes_meta(asked),
        "channels_meaning": {
            "weight": "(A[a,b] + A[b,a]) / 2, all-slices attention A3, per patch",
            "null_mean": "mean of the null weights on the same counts",
            "null_sd": "standard deviation of the null weights",
            "z": "(weight - null_mean) / sqrt(null_sd^2 + (1e-3 / G)^2)",
            "both": "1 where both genes are counted in the block (the published mask)",
        },
        "null": null,
        "draws": int(draws),
        "seed": int(seed),
        "checkpoint": _checkpoint_meta(model, asked.model_panel.names, checkpoint),
        "missing_model_genes": list(asked.report.alignment.missing),
        "region": list(plan.px_region) if plan.px_region is not None else None,
        "region_blocks": list(plan.blocks),
        "slices": plan.wanted,
        "tile_blocks": int(tile_blocks),
        "units_done": 0,
        "units_total": len(plan.units),
        "complete": False,
    }
    keys = ("format", "genes", "null", "draws", "seed", "region_blocks", "slices", "checkpoint",
            "tile_blocks")  # fmt: skip

    def job_params(m: Mapping[str, Any]) -> dict[str, Any]:
        return {k: m.get(k) for k in keys}

    def window_fn(window: np.ndarray) -> tuple[np.ndarray, int]:
        return window_contrast(window, fn, (a, b), batch_size=batch_size, scheme=scheme, **null_kw)

    yield from _iter_windows(
        store, name, CONTRAST_CHANNELS, meta, job_params, plan, window_fn,
        asked.report.alignment.take, scheme, resume,
    )  # fmt: skip


def compute_contrast_maps(*args: Any, **kwargs: Any) -> str:
    """Run :func:`iter_contrast_maps` to the end and return the map name."""
    name = ""
    for item in iter_contrast_maps(*args, **kwargs):
        name = item.name
    return name


def _contrast_arrays(
    store: BrainStore, name: str, slices: Sequence[int] | None, level: int = 0
) -> tuple[list[int], dict[str, np.ndarray]]:
    meta = store.attention_metadata(name)
    if meta.get("kind") != CONTRAST_KIND:
        raise ValueError(
            f"attention/{name} is not a contrast map (kind {meta.get('kind')!r}); compute one "
            "with compute_contrast_maps or `teramind attention --contrast`"
        )
    zs = [int(z) for z in (meta.get("slices") if slices is None else slices)]
    raw = compute(store.attention(name, level)[:, zs]).astype(np.float32)
    return zs, {c: raw[i] for i, c in enumerate(CONTRAST_CHANNELS)}


def contrast_summary(
    store: BrainStore, name: str, slices: Sequence[int] | None = None
) -> dict[str, float]:
    """Mean weight, null and z of contrast map ``name`` over the blocks where both genes count.

    Returns
    -------
    dict
        ``n_blocks, weight, null_mean, z, z_abs_gt2`` (fraction of those blocks with
        ``|z| > 2``); NaN values where no block has both genes.
    """
    _, ch = _contrast_arrays(store, name, slices)
    m = ch["both"] > 0.5
    n = int(m.sum())

    def mean(v: np.ndarray) -> float:
        return float(v[m].mean()) if n else float("nan")

    return {
        "n_blocks": n,
        "weight": mean(ch["weight"]),
        "null_mean": mean(ch["null_mean"]),
        "z": mean(ch["z"]),
        "z_abs_gt2": mean((np.abs(ch["z"]) > 2).astype(np.float32)),
    }


def contrast_by_region(
    store: BrainStore,
    name: str,
    slices: Sequence[int] | None = None,
    labels: Callable[[int], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per region: blocks with both genes, mean weight, null, z and fraction ``|z| > 2``.

    Parameters
    ----------
    store
        The store holding contrast map ``name``.
    name
        Contrast map name.
    slices
        Slices pooled; the map's slices by default.
    labels
        ``labels(z) -> (hb, wb)`` integer region per gene block; by default the store's region
        labels at the block centres (``images/labels/regions``), or one region 0 without them.

    Returns
    -------
    pandas.DataFrame
        Columns ``region, name, n_blocks, weight, null_mean, z, z_abs_gt2``, one row per region
        with at least one block where both genes count.
    """
    import pandas as pd

    zs, ch = _contrast_arrays(store, name, slices)
    hb, wb = ch["z"].shape[-2:]
    names = store.region_names if store.has_regions else {}
    rows: dict[int, list[np.ndarray]] = {}
    for i, z in enumerate(zs):
        if labels is not None:
            lab = np.asarray(labels(z))
        elif store.has_regions:
            gb = store.gene_block_px
            full = np.asarray(compute(store.regions()[z, gb // 2 :: gb, gb // 2 :: gb]))
            lab = np.zeros((hb, wb), dtype=np.int64)
            lab[: full.shape[0], : full.shape[1]] = full[:hb, :wb]
        else:
            lab = np.zeros((hb, wb), dtype=np.int64)
        m = ch["both"][i] > 0.5
        for r in np.unique(lab[m]):
            sel = m & (lab == r)
            vals = np.stack([ch["weight"][i][sel], ch["null_mean"][i][sel], ch["z"][i][sel]])
            rows.setdefault(int(r), []).append(vals)
    out = []
    for r in sorted(rows):
        v = np.concatenate(rows[r], axis=1)
        out.append({
            "region": r,
            "name": names.get(r, str(r)) if isinstance(names, dict) else str(r),
            "n_blocks": int(v.shape[1]),
            "weight": float(v[0].mean()),
            "null_mean": float(v[1].mean()),
            "z": float(v[2].mean()),
            "z_abs_gt2": float((np.abs(v[2]) > 2).mean()),
        })  # fmt: skip
    columns = ["region", "name", "n_blocks", "weight", "null_mean", "z", "z_abs_gt2"]
    return pd.DataFrame(out, columns=columns)
