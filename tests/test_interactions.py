"""Planted gene-gene interactions (the interaction phantom) and the attention contrast."""

import hashlib
import json

import numpy as np
import pytest
import torch

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.attention.contrast import (
    CONTRAST_CHANNELS,
    compute_contrast_maps,
    contrast_by_region,
    contrast_summary,
    patch_contrast,
    random_attention_fns,
)
from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
from napari_teramind.model.gene_branch import GeneGeneAttention
from napari_teramind.phantom import (
    PhantomSpec,
    phantom_metadata,
    planted_mask,
    render_chunk,
    spec_of,
    write_phantom,
)
from napari_teramind.phantom.interactions import (
    AND_BRIGHTNESS,
    AND_RADIUS,
    HIGH_TRANSCRIPTS,
    INTERACTION_GENES,
    INTERACTION_PAIRS,
    high_states,
)
from napari_teramind.phantom.nuclei import nucleus_gene_means
from napari_teramind.store import BrainStore

SMALL = dict(seed=3, n_slices=2, height=512, width=768)
ISPEC = PhantomSpec(**SMALL, n_genes=6, interactions=True)


# ------------------------------------------------------------------ the default phantom
def test_default_phantom_is_bit_for_bit_unchanged():
    """Hashes of a default render and its metadata, taken with the code before interactions."""
    spec = PhantomSpec(seed=3, n_slices=2, height=256, width=384)
    c = render_chunk(spec, 1, 0, 0, 256, 384)
    h = hashlib.sha256()
    for a in (c.images, c.regions, c.genes, c.nuclei):
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == "107239ecc228ca37fbc6ae43bf4fc286a3a0dcef4fc0b959f1ee2dedf5d54eab"
    meta = json.dumps(phantom_metadata(spec), sort_keys=True).encode()
    assert hashlib.sha256(meta).hexdigest() == (
        "6fb612b95e1885e20cd153ed5c8b2e41787de7e9c196937c78b824247af299b1"
    )
    assert "interactions" not in spec.to_dict()
    with pytest.raises(KeyError, match="interactions=True"):
        planted_mask(spec, "AND1", z=0)


# ------------------------------------------------------------------ the interaction phantom
@pytest.fixture(scope="module")
def pair_chunks():
    """Slice 1 of the interaction phantom and of the same spec without interactions."""
    plain = PhantomSpec(**SMALL, genes=ISPEC.gene_names)  # same genes, no interactions
    return render_chunk(ISPEC, 1, 0, 0, 512, 768), render_chunk(plain, 1, 0, 0, 512, 768)


def test_spec_panel_roundtrip_and_determinism():
    assert len(ISPEC.gene_names) == 6 + len(INTERACTION_GENES) == 26
    assert set(INTERACTION_GENES) <= set(ISPEC.gene_names)
    assert PhantomSpec.from_dict(ISPEC.to_dict()) == ISPEC
    with pytest.raises(ValueError, match="Syndig1"):
        PhantomSpec(
            **SMALL, genes=[g for g in ISPEC.gene_names if g != "Syndig1"], interactions=True
        )
    a = render_chunk(ISPEC, 1, 128, 128, 128, 256)
    whole = render_chunk(ISPEC, 1, 0, 0, 512, 768)  # chunking independence
    np.testing.assert_array_equal(a.images, whole.images[:, 128:256, 128:384])
    np.testing.assert_array_equal(a.genes, whole.genes[:, 8:16, 8:24])
    other = render_chunk(PhantomSpec(**{**SMALL, "seed": 4}, n_genes=6, interactions=True),
                         1, 0, 0, 512, 768)  # fmt: skip
    assert not np.array_equal(other.genes, whole.genes)


def _states_at(nuc):
    return high_states(ISPEC.seed, nuc["y"], nuc["x"])


def test_and_phenotype_only_where_both_genes_are_high(pair_chunks):
    inter, plain = pair_chunks
    _, i1, i2 = np.intersect1d(inter.nuclei["id"], plain.nuclei["id"], return_indices=True)
    a, b = inter.nuclei[i1], plain.nuclei[i2]
    eligible = a["cell_type"] != 19  # endothelial cells take no part
    st = _states_at(a)
    kinds = [p.kind for p in INTERACTION_PAIRS]
    both = {k: np.zeros(len(a), bool) for k in ("and", "control")}
    for k, p in enumerate(INTERACTION_PAIRS):
        if p.kind in both:
            both[p.kind] |= st[2 * k] & st[2 * k + 1]
    ratio = a["radius"] / b["radius"]
    np.testing.assert_allclose(ratio[both["and"] & eligible], AND_RADIUS, rtol=1e-5)
    np.testing.assert_allclose(ratio[~both["and"] | ~eligible], 1.0, rtol=1e-5)
    # one AND gene alone never gives the phenotype, and control pairs change nothing
    alone = np.zeros(len(a), bool)
    for k, kind in enumerate(kinds):
        if kind == "and":
            alone |= st[2 * k] ^ st[2 * k + 1]
    assert (alone & ~both["and"] & eligible).sum() > 20
    assert (both["control"] & ~both["and"] & eligible).sum() > 20
    assert both["and"][eligible].sum() > 20
    # brightness: AND factor times additive dimming (0.15 per high ADD gene)
    add = sum(st[2 * k].astype(float) + st[2 * k + 1] for k, kd in enumerate(kinds)
              if kd == "additive")  # fmt: skip
    expect = np.where(both["and"], AND_BRIGHTNESS, 1.0) * (1 - 0.15 * add)
    np.testing.assert_allclose((a["brightness"] / b["brightness"])[eligible], expect[eligible],
                               rtol=1e-5)  # fmt: skip
    # the phenotype changes no counts: interaction genes follow the fields at the base size
    means = nucleus_gene_means(ISPEC, a)
    cols = [ISPEC.gene_names.index(g) for g in INTERACTION_GENES]
    ref = nucleus_gene_means(PhantomSpec(**SMALL, genes=ISPEC.gene_names), b)
    curated = [j for j in range(len(ISPEC.gene_names)) if j not in cols]
    np.testing.assert_allclose(means[:, curated], ref[:, curated], rtol=1e-5, atol=1e-9)
    t = b["cell_type"].astype(int)
    from napari_teramind.phantom.nuclei import _TYPE_R

    base_size = (b["radius"].astype(np.float64) / _TYPE_R[t]) ** 2
    want = HIGH_TRANSCRIPTS * st.T * (eligible[:, None]) * base_size[:, None]
    np.testing.assert_allclose(means[:, cols], want, rtol=1e-5, atol=1e-9)


def test_controls_match_the_and_pairs_in_expression(pair_chunks):
    inter, _ = pair_chunks
    names = ISPEC.gene_names
    stats = {}
    for kind in ("and", "control"):
        genes = [g for p in INTERACTION_PAIRS if p.kind == kind for g in p.genes]
        counts = inter.genes[[names.index(g) for g in genes]].astype(float)
        pairs = counts.reshape(-1, 2, *counts.shape[1:])
        stats[kind] = (counts.mean(), (counts > 0).mean(), ((pairs > 0).all(axis=1)).mean())
    for x_and, x_ctrl in zip(stats["and"], stats["control"], strict=True):
        assert 0.6 < x_and / x_ctrl < 1.67  # same law (fields drawn alike), finite canvas
    # the pair masks: where both genes are high, inside tissue, matching the counts
    m = planted_mask(ISPEC, "CTRL1", z=1)
    c = inter.genes[[names.index(g) for g in INTERACTION_PAIRS[4].genes]]
    assert m.any() and (c[:, m] > 0).mean() > 2 * (c[:, ~m] > 0).mean()


def test_interaction_store_records_its_truth(tmp_path):
    from napari_teramind.cli import main

    spec = PhantomSpec(seed=1, n_slices=2, height=256, width=384, n_genes=6, interactions=True)
    args = ["phantom", str(tmp_path / "i.zarr"), "--seed", "1", "--slices", "2", "--height",
            "256", "--width", "384", "--genes", "6", "--interactions", "--workers", "1",
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    store = BrainStore.open(tmp_path / "i.zarr")
    meta = BrainStore.open(store.path).metadata["phantom"]
    assert [p["name"] for p in meta["interactions"]["pairs"]][:2] == ["AND1", "AND2"]
    assert {p["kind"] for p in meta["interactions"]["pairs"]} == {"and", "control", "additive"}
    assert spec_of(store.path) == spec
    # interaction genes carry no cell-type program in the recorded tables
    for ct in meta["programs"]["cell_types"]:
        assert not set(ct["gene_means_per_nucleus"]) & set(INTERACTION_GENES)


def test_sparser_design_keeps_the_law_and_records_itself(tmp_path, capsys):
    """``interaction_high_fraction``: each gene high on that share, the same AND rule."""
    from napari_teramind.cli import main
    from napari_teramind.phantom.interactions import high_threshold, phenotype_factors

    sparse = PhantomSpec(**SMALL, n_genes=6, interactions=True, interaction_high_fraction=0.3)
    assert "interaction_high_fraction" not in ISPEC.to_dict()  # the original record unchanged
    assert sparse.to_dict()["interaction_high_fraction"] == 0.3
    assert PhantomSpec.from_dict(sparse.to_dict()) == sparse
    assert high_threshold(0.5) == 0.5 and 0.55 < high_threshold(0.3) < 0.7
    # each gene is high on about 30 % of a large canvas (20 genes pooled), the default on 50 %
    ys = np.arange(8, 4096, 16, dtype=np.float64)[:, None] + 0 * np.arange(256)[None]
    xs = np.arange(8, 4096, 16, dtype=np.float64)[None, :] + 0 * np.arange(256)[:, None]
    assert abs(high_states(3, ys, xs, 0.3).mean() - 0.3) < 0.03
    assert abs(high_states(3, ys, xs).mean() - 0.5) < 0.03
    # the renderer and the planted masks follow the sparser fields
    inter = render_chunk(sparse, 1, 0, 0, 512, 768)
    plain = render_chunk(PhantomSpec(**SMALL, genes=sparse.gene_names), 1, 0, 0, 512, 768)
    _, i1, i2 = np.intersect1d(inter.nuclei["id"], plain.nuclei["id"], return_indices=True)
    a, b = inter.nuclei[i1], plain.nuclei[i2]
    eligible = a["cell_type"] != 19
    rf, _ = phenotype_factors(high_states(3, a["y"], a["x"], 0.3))
    assert (rf[eligible] > 1).sum() > 10
    np.testing.assert_allclose((a["radius"] / b["radius"])[eligible], rf[eligible], rtol=1e-5)
    cy = np.arange(8, 512, 16, dtype=np.float64)[:, None] + 0 * np.arange(48)[None]
    cx = np.arange(8, 768, 16, dtype=np.float64)[None, :] + 0 * np.arange(32)[:, None]
    st = high_states(3, cy, cx, 0.3)
    m, both = planted_mask(sparse, "AND2", z=1, blocks=True), st[2] & st[3]
    assert m.any() and not (m & ~both).any() and m.sum() > 0.5 * both.sum()  # (in tissue)
    meta = phantom_metadata(sparse)["interactions"]["expression"]
    assert f"{high_threshold(0.3):.4f}" in meta and "0.3 of the tissue" in meta
    for bad in (0.0, 1.0, float("nan"), -0.2):
        with pytest.raises(ValueError, match="interaction_high_fraction"):
            PhantomSpec(**SMALL, n_genes=6, interactions=True, interaction_high_fraction=bad)
    with pytest.raises(ValueError, match="interactions=True"):
        PhantomSpec(**SMALL, interaction_high_fraction=0.3)
    out = str(tmp_path / "x.zarr")
    assert main(["phantom", out, "--high-fraction", "0.3", "--quiet"]) == 2
    assert "add --interactions" in capsys.readouterr().err
    assert main(["phantom", out, "--interactions", "--high-fraction", "1.5", "--quiet"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_tissue_expression_says_nothing_of_the_nuclei(capsys, tmp_path):
    """``interaction_expression="tissue"``: a rate per block that no image reflects.

    Per nucleus, interaction transcripts also count in each cell's PolyT (as every gene's do),
    so every interaction gene, control pairs included, brightens the image; per tissue block
    they do not, and DAPI and the other genes stay exactly as they were.
    """
    from napari_teramind.cli import main
    from napari_teramind.phantom.interactions import TISSUE_TRANSCRIPTS_PER_BLOCK

    kw = dict(**SMALL, n_genes=6, interactions=True, interaction_high_fraction=0.3)
    per_nucleus, per_tissue = PhantomSpec(**kw), PhantomSpec(**kw, interaction_expression="tissue")
    assert "interaction_expression" not in per_nucleus.to_dict()
    assert PhantomSpec.from_dict(per_tissue.to_dict()) == per_tissue
    a, b = render_chunk(per_nucleus, 1, 0, 0, 512, 768), render_chunk(per_tissue, 1, 0, 0, 512, 768)
    np.testing.assert_array_equal(a.images[0], b.images[0])  # the same nuclei and phenotype
    cols = [per_tissue.gene_names.index(g) for g in INTERACTION_GENES]
    other = [j for j in range(len(per_tissue.gene_names)) if j not in cols]
    np.testing.assert_array_equal(a.genes[other], b.genes[other])
    # PolyT: the cell's transcripts now hold no interaction gene (dimmer where they are high)
    np.testing.assert_array_equal(nucleus_gene_means(per_tissue, b.nuclei)[:, cols], 0.0)
    np.testing.assert_allclose(
        b.nuclei["transcripts"], nucleus_gene_means(per_tissue, b.nuclei).sum(axis=1), rtol=1e-5
    )
    assert b.images[1].mean() < a.images[1].mean() - 5
    # nuclei per block against the interaction counts where the gene is high, in tissue
    cy = np.arange(8, 512, 16, dtype=np.float64)[:, None] + 0 * np.arange(48)[None]
    cx = np.arange(8, 768, 16, dtype=np.float64)[None, :] + 0 * np.arange(32)[:, None]
    high = high_states(3, cy, cx, 0.3) & (b.regions[8::16, 8::16] != 0)[None]
    nuc = a.nuclei[a.nuclei["cell_type"] != 19]
    per_block = np.zeros((32, 48))
    np.add.at(per_block, ((nuc["y"] // 16).astype(int), (nuc["x"] // 16).astype(int)), 1)
    n = np.broadcast_to(per_block, high.shape)[high]

    def r(chunk):
        return np.corrcoef(n, chunk.genes[cols].astype(float)[high])[0, 1]

    assert r(a) > 0.3 and abs(r(b)) < 0.05  # per nucleus the counts tell density; here not
    assert abs(b.genes[cols][high].mean() - TISSUE_TRANSCRIPTS_PER_BLOCK) < 0.3
    assert "per 16-px tissue block" in phantom_metadata(per_tissue)["interactions"]["expression"]
    with pytest.raises(ValueError, match="'nucleus' or 'tissue'"):
        PhantomSpec(**kw, interaction_expression="cell")
    with pytest.raises(ValueError, match="interactions=True"):
        PhantomSpec(**SMALL, interaction_expression="tissue")
    out = str(tmp_path / "x.zarr")
    assert main(["phantom", out, "--interaction-expression", "tissue", "--quiet"]) == 2
    assert "--interaction-expression sets the planted interactions" in capsys.readouterr().err


# ------------------------------------------------------------------ the contrast
def _layer_fn(layer, bias=None):
    def fn(genes, rows):
        tokens = genes.float().reshape(genes.shape[0], genes.shape[1], -1)
        if bias is None:
            return layer.attention_weights(tokens, rows)
        q = layer.normalised_queries(tokens).float()
        logits = q[:, list(rows)] @ q.transpose(1, 2) * layer.scale + bias[list(rows)]
        return torch.softmax(logits, dim=-1)

    return fn


def test_contrast_finds_an_identity_aware_pair_and_not_an_equivariant_one():
    torch.manual_seed(0)
    g = 12
    x = torch.poisson(torch.full((64, g, 4, 4, 4), 1.0))
    layer = GeneGeneAttention(64).eval()
    # the model's attention: no gene identity, so permuting genes changes nothing
    eq = patch_contrast(x, _layer_fn(layer), (2, 5), null="permuted", draws=4)
    assert np.abs(eq["z"]).max() < 1e-2
    np.testing.assert_allclose(eq["weight"], eq["null_mean"], rtol=1e-5)
    # a constructed attention that knows genes 2 and 5 attend: large positive z
    bias = torch.zeros(g, g)
    bias[2, 5] = bias[5, 2] = 2.0
    aware = _layer_fn(layer, bias)
    ctr = patch_contrast(x, aware, (2, 5), null="permuted", draws=4)
    assert (ctr["z"] > 3).all() and (ctr["weight"] > ctr["null_mean"]).all()
    other = patch_contrast(x, aware, (3, 7), null="permuted", draws=4)  # a pair without bias
    assert abs(np.median(other["z"])) < 2  # a pair without the bias is not detected
    # random-layer null: the pair bias stands out against unbiased random layers
    nulls = random_attention_fns(64, 4, seed=10)
    rnd = patch_contrast(x, aware, (2, 5), null="random", null_fns=nulls)
    assert (rnd["z"] > 3).mean() > 0.9
    # the same layer as its own null: zero contrast, sd zero, z exactly zero
    same = patch_contrast(x, _layer_fn(layer), (2, 5), null="random",
                          null_fns=[_layer_fn(layer)] * 3)  # fmt: skip
    assert (same["null_sd"] == 0).all() and (same["z"] == 0).all()
    with pytest.raises(ValueError, match="at least 2"):
        patch_contrast(x, aware, (2, 5), draws=1)
    with pytest.raises(ValueError, match="null must be"):
        patch_contrast(x, aware, (2, 5), null="shuffled")


@pytest.fixture(scope="module")
def contrast_store(tmp_path_factory):
    spec = PhantomSpec(seed=5, n_slices=2, height=256, width=384)
    return write_phantom(tmp_path_factory.mktemp("c") / "p.zarr", spec, workers=1).path


def test_contrast_map_in_store_and_cli(contrast_store, tmp_path, capsys):
    import shutil

    from napari_teramind.cli import main

    path = tmp_path / "b.zarr"
    shutil.copytree(contrast_store, path)
    genes = list(BrainStore.open(path).panel.names)
    torch.manual_seed(1)
    model = TeraMindUNet(ModelConfig.preset("tiny", len(genes))).eval()
    store = BrainStore.open(path, mode="r+")
    name = compute_contrast_maps(store, model, "DOPA", null="random", draws=3,
                                 gene_names=genes, slices=[0, 1])  # fmt: skip
    assert name == "DOPA-contrast"
    meta = store.attention_metadata(name)
    assert meta["channels"] == list(CONTRAST_CHANNELS) and meta["null"] == "random"
    raw = np.asarray(store.attention(name)[:, :2])
    counts = np.asarray(store.genes()[store.panel.indices(["Nr4a2", "Th"])][:, :2])
    both = (counts > 0).all(axis=0)[..., : raw.shape[-2], : raw.shape[-1]]
    np.testing.assert_array_equal(raw[4] > 0.5, both)  # the published mask
    assert np.isfinite(raw).all() and np.abs(raw[3][both]).max() > 0
    s = contrast_summary(store, name)
    assert s["n_blocks"] == int(both.sum()) > 0
    regions = contrast_by_region(store, name)
    assert regions["n_blocks"].sum() == s["n_blocks"] and "SN/VTA" in set(regions["name"])
    from napari_teramind.layers import attention_layers

    layers = {d[1]["name"].rsplit(" ", 1)[-1]: d[1] for d in attention_layers(store, [name])}
    assert set(layers) == set(CONTRAST_CHANNELS) and layers["z"]["visible"]
    lo, hi = layers["z"]["contrast_limits"]
    assert lo == -hi >= -1e9 and hi >= 3 and layers["z"]["colormap"] == "PiYG"
    assert not any(layers[c]["visible"] for c in CONTRAST_CHANNELS if c != "z")
    # the CLI: the published map is written as without --contrast, the contrast beside it
    save_checkpoint(tmp_path / "ckpt", model, None, genes)
    del store
    args = ["attention", str(path), "--pair", "DOPA", "--model", str(tmp_path / "ckpt"),
            "--slices", "0", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    before = np.asarray(BrainStore.open(path).attention("DOPA"))
    rc = main([*args, "--restart", "--contrast", "permuted", "--null-draws", "2",
               "--plot-dir", str(tmp_path / "plots")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "attention/DOPA-contrast (permuted null, 2 draws)" in out
    after = BrainStore.open(path)
    np.testing.assert_array_equal(np.asarray(after.attention("DOPA")), before)
    z = np.asarray(after.attention("DOPA-contrast")[3])
    assert np.abs(z).max() < 1e-2  # the model's attention knows no gene identity
    assert (tmp_path / "plots" / "DOPA_all_trend.png").is_file()
    rc = main(["attention", str(path), "--genes", "Th", "--model", str(tmp_path / "ckpt"),
               "--contrast", "random"])  # fmt: skip
    assert rc != 0 and "gene pair" in capsys.readouterr().err
