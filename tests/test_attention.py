"""Attention maps: rows-only weights, geometry against a plain per-patch computation, streaming,
resume, store metadata, normalisation and layers, planted-program checks, plots and the CLI."""

import shutil

import numpy as np
import pytest
import torch

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.attention import (
    PRESETS,
    channel_names,
    compute_attention_maps,
    iter_attention_maps,
    window_maps,
)
from napari_teramind.attention.normalise import (
    NormaliseOptions,
    normalise_map,
    normalised_levels,
    options_for,
)
from napari_teramind.attention.plots import trend_data, trend_plot
from napari_teramind.attention.validate import planted_auc, planted_overlap, roc_auc
from napari_teramind.model import ModelConfig, TeraMindUNet, keep_gene_slices, save_checkpoint
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore
from napari_teramind.store.pyramid import downsample2

SPEC = PhantomSpec(seed=5, n_slices=5, height=384, width=512)


@pytest.fixture(scope="module")
def phantom_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("attn") / "phantom.zarr"
    write_phantom(path, SPEC, workers=1)
    return path


@pytest.fixture
def store(phantom_path, tmp_path):
    copy = tmp_path / "brain.zarr"
    shutil.copytree(phantom_path, copy)
    return BrainStore.open(copy, mode="r+")


def _model(n_genes, seed=0):
    torch.manual_seed(seed)
    return TeraMindUNet(ModelConfig.preset("tiny", n_genes)).eval()


@pytest.fixture(scope="module")
def model_genes():
    """Model genes in a different order than the store, plus one gene the store lacks."""
    genes = list(reversed(SPEC.gene_names)) + ["Gfap_extra"]
    return genes


@pytest.fixture(scope="module")
def model(model_genes):
    return _model(len(model_genes), seed=1)


# ------------------------------------------------------------------ rows == full matrix
@pytest.mark.parametrize("rows", [[0], [7, 2], [5, 5 - 5, 11, 3], list(range(12))[::-1]])
def test_rows_only_attention_equals_full_matrix_rows(rows):
    model = _model(12, seed=2)
    genes = torch.poisson(torch.full((6, 12, 4, 4, 4), 3.0))
    genes[0] = 0  # an empty patch
    with torch.no_grad():
        full = model.gene_attention(genes)
        fast = model.gene_attention(genes, rows)
    assert fast.shape == (6, len(rows), 12)
    torch.testing.assert_close(fast, full[:, rows], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fast.sum(-1), torch.ones(6, len(rows)))  # softmax over all G


def test_window_maps_rows_only_equals_full_matrix():
    model = _model(10, seed=3)
    rng = np.random.default_rng(0)
    genes = rng.poisson(1.0, size=(10, 4, 8, 12)).astype(np.float32)
    rows = [4, 1]

    def full(x, r):
        return model.gene_attention(x)[:, r]

    fast_maps, n_fast = window_maps(genes, model.gene_attention, rows, batch_size=5)
    full_maps, n_full = window_maps(genes, full, rows, batch_size=64)
    assert fast_maps.shape == (4 * 2, 2, 8, 12)
    assert n_fast == n_full > 0
    np.testing.assert_allclose(fast_maps, full_maps, rtol=1e-6, atol=1e-6)
    # expression channels are the raw counts of the middle slots
    np.testing.assert_array_equal(fast_maps[6:], genes[rows][:, 1:3])


# ------------------------------------------------------------------ geometry, by hand
def _direct_map(store, model, model_genes, genes, region_blocks, slices):
    """The maps written plainly: one offset-grid patch at a time, full attention matrices."""
    counts = np.asarray(store.genes().compute(), dtype=np.float32)  # (G_store, Z, hb, wb)
    n_z, hb, wb = counts.shape[1:]
    store_names = list(store.panel.names)
    # model-order counts, zero for the model gene the store lacks
    model_counts = np.zeros((len(model_genes), n_z, hb, wb), np.float32)
    for i, g in enumerate(model_genes):
        if g in store_names:
            model_counts[i] = counts[store_names.index(g)]
    rows = [model_genes.index(g) for g in genes]
    by0, by1, bx0, bx1 = region_blocks
    out = np.zeros((4 * len(genes), len(slices), by1 - by0, bx1 - bx0), np.float32)
    for si, z in enumerate(slices):
        k = z // 2
        slot = z - (2 * k - 1)  # 1 or 2
        window_z = [2 * k - 1, 2 * k, 2 * k + 1, 2 * k + 2]
        for by in range(by0, by1):
            for bx in range(bx0, bx1):
                py = ((by + 2) // 4) * 4 - 2  # patch corners at -2 + 4 j blocks
                px = ((bx + 2) // 4) * 4 - 2
                patch = np.zeros((len(model_genes), 4, 4, 4), np.float32)
                for wz, zz in enumerate(window_z):
                    for dy in range(4):
                        for dx in range(4):
                            y, x = py + dy, px + dx
                            if 0 <= zz < n_z and 0 <= y < hb and 0 <= x < wb:
                                patch[:, wz, dy, dx] = model_counts[:, zz, y, x]
                t = torch.from_numpy(patch)[None]
                with torch.no_grad():
                    a = [
                        model.gene_attention(keep_gene_slices(t, kept))[0].numpy()
                        for kept in ((0, 1), (1, 2), (2, 3), (0, 1, 2, 3))
                    ]
                e = patch[rows, slot, by - py, bx - px]  # counts of the L genes here
                up = a[0] if slot == 1 else a[1]
                down = a[1] if slot == 1 else a[2]
                for kind, mat in enumerate((up, down, a[3])):
                    sub = mat[np.ix_(rows, rows)]
                    out[kind * len(genes) : (kind + 1) * len(genes), si, by - by0, bx - bx0] = (
                        sub @ e
                    )
                out[3 * len(genes) :, si, by - by0, bx - bx0] = e
    return out


def test_region_map_equals_direct_per_patch_computation(store, model, model_genes):
    region = (72, 168, 136, 264)  # px, not patch aligned
    slices = [0, 3, 4]
    name = compute_attention_maps(
        store, model, "DOPA", gene_names=model_genes, region=region, slices=slices, batch_size=7
    )
    assert name == "DOPA"
    blocks = (72 // 16, 168 // 16, 136 // 16, 264 // 16)
    got = store.attention("DOPA")[:, slices, blocks[0] : blocks[1], blocks[2] : blocks[3]]
    expected = _direct_map(store, model, model_genes, list(PRESETS["DOPA"]), blocks, slices)
    assert np.abs(expected[6:]).sum() > 0, "the region must hold DOPA expression"
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    # outside the region and the requested slices nothing is written
    full = np.asarray(store.attention("DOPA").compute())
    assert not full[:, [1, 2]].any()
    assert not full[:, 0, : blocks[0]].any()


def test_streamed_tiles_equal_one_shot_and_region_equals_whole(store, model, model_genes):
    genes = ["Slc17a7", "Gad2", "Th"]
    compute_attention_maps(store, model, genes, gene_names=model_genes, name="one")
    compute_attention_maps(
        store, model, genes, gene_names=model_genes, name="tiles", tile_blocks=8, batch_size=3
    )
    one = np.asarray(store.attention("one").compute())
    tiles = np.asarray(store.attention("tiles").compute())
    np.testing.assert_allclose(tiles, one, rtol=1e-6, atol=1e-6)
    assert one[:4].any() and one[-3:].any()
    region = (100, 260, 30, 300)
    compute_attention_maps(store, model, genes, gene_names=model_genes, name="r", region=region)
    by0, by1, bx0, bx1 = 100 // 16, -(-260 // 16), 30 // 16, -(-300 // 16)
    part = np.asarray(store.attention("r")[:, :, by0:by1, bx0:bx1])
    np.testing.assert_allclose(part, one[:, :, by0:by1, bx0:bx1], rtol=1e-6, atol=1e-6)


def test_cancel_and_resume_gives_the_same_map(store, model, model_genes):
    compute_attention_maps(store, model, "GLUT", gene_names=model_genes, name="ref", tile_blocks=16)
    job = iter_attention_maps(store, model, "GLUT", gene_names=model_genes, tile_blocks=16)
    first = [next(job), next(job)]
    job.close()
    assert [p.units_done for p in first] == [1, 2]
    meta = store.attention_metadata("GLUT")
    assert meta["units_done"] == 2 and not meta["complete"]
    resumed = list(
        iter_attention_maps(store, model, "GLUT", gene_names=model_genes, tile_blocks=16)
    )
    assert resumed[0].units_done == 3 and resumed[-1].done
    np.testing.assert_array_equal(
        np.asarray(store.attention("GLUT").compute()), np.asarray(store.attention("ref").compute())
    )
    # a finished job with the same parameters is not recomputed
    again = list(iter_attention_maps(store, model, "GLUT", gene_names=model_genes, tile_blocks=16))
    assert len(again) == 1 and again[0].done


# ------------------------------------------------------------------ store contents
def test_store_map_channels_metadata_and_pyramid(store, model, model_genes, tmp_path):
    info = save_checkpoint(tmp_path / "ckpt", model, None, model_genes)
    compute_attention_maps(store, model, "dopa", checkpoint=info, slices=[1, 2])
    reopened = BrainStore.open(store.path)
    assert reopened.attention_names() == ["DOPA"]
    meta = reopened.attention_metadata("DOPA")
    assert meta["channels"] == channel_names(("Nr4a2", "Th"))
    assert meta["channels"][:2] == ["up:Nr4a2", "up:Th"] and meta["channels"][-1] == "expr:Th"
    assert meta["genes"] == ["Nr4a2", "Th"] and meta["preset"] == "DOPA"
    assert meta["checkpoint"]["weights_sha256"] == info.provenance["weights_sha256"]
    assert meta["checkpoint"]["path"] == str(info.path)
    assert meta["checkpoint"]["gene_names"] == model_genes
    assert meta["missing_model_genes"] == ["Gfap_extra"]
    assert meta["normalisation"]["n_genes"] == len(model_genes)
    assert meta["normalisation"]["sigma_blocks"] == 2.0
    assert meta["slices"] == [1, 2] and meta["region"] is None and meta["complete"]
    lv0 = np.asarray(reopened.attention("DOPA", 0).compute())
    assert lv0.dtype == np.float32 and lv0.shape == (8, 5, 24, 32)
    assert lv0[:, 1:3].any() and not lv0[:, [0, 3, 4]].any()
    # float pyramid levels are true 2 x 2 means (not rounded to integers)
    mean = lv0.reshape(8, 5, 12, 2, 16, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(downsample2(lv0, "mean"), mean, rtol=1e-6, atol=1e-7)
    assert reopened.levels("attention/DOPA")[0].scale == reopened.levels("genes")[0].scale


def test_bad_inputs_give_clear_errors(store, model, model_genes, phantom_path):
    with pytest.raises(KeyError, match=r"not in the panel.*did you mean Nr4a2"):
        compute_attention_maps(store, model, ["Nr4a3", "Th"], gene_names=model_genes)
    with pytest.raises(KeyError, match=r"Gfap_extra.*not in the store"):
        compute_attention_maps(store, model, ["Gfap_extra", "Th"], gene_names=model_genes)
    with pytest.raises(ValueError, match="model has"):
        compute_attention_maps(store, model, "DOPA", gene_names=model_genes[:-1])
    with pytest.raises(ValueError, match="outside"):
        compute_attention_maps(store, model, "DOPA", gene_names=model_genes, region=(0, 9999, 0, 9))
    with pytest.raises(ValueError, match="slices"):
        compute_attention_maps(store, model, "DOPA", gene_names=model_genes, slices=[7])
    with pytest.raises(ValueError, match="more than once"):
        compute_attention_maps(store, model, ["Th", "Th"], gene_names=model_genes)
    with pytest.raises(ValueError, match="read-only"):
        compute_attention_maps(BrainStore.open(phantom_path), model, "DOPA", gene_names=model_genes)
    with pytest.raises(ValueError, match="CUDA"):
        compute_attention_maps(store, model, "DOPA", gene_names=model_genes, autocast="bf16")


# ------------------------------------------------------------------ normalisation, layers
def test_normalisation_follows_the_published_rules():
    channels = channel_names(("a", "b"))
    values = np.zeros((8, 1, 3, 3), np.float32)
    values[:6] = 0.25  # attention values
    values[6, 0, 0, :2] = 3  # expr:a at (0,0), (0,1)
    values[7, 0, 0, 1:] = 1  # expr:b at (0,1), (0,2)
    values[0, 0, 2, 2] = -1  # negative values are clamped
    out = normalise_map(values, channels, NormaliseOptions(n_genes=4, sigma=0))
    both = np.zeros((3, 3), bool)
    both[0, 1] = True
    assert np.all(out[:, 0][:, ~both] == 0)
    np.testing.assert_allclose(out[:6, 0, 0, 1], np.log2(1 + 4 * 0.25))
    np.testing.assert_allclose(out[6:, 0, 0, 1], [2.0, 1.0])
    raw = normalise_map(values, channels, NormaliseOptions(n_genes=4, sigma=0, mask="none"))
    assert raw[0, 0, 2, 2] == 0 and raw[6, 0, 0, 0] == 2.0
    smooth = normalise_map(values, channels, NormaliseOptions(n_genes=4, sigma=1))
    assert smooth[0, 0, 1, 1] > 0 and smooth[0].sum() == pytest.approx(out[0].sum(), rel=1e-5)
    with pytest.raises(ValueError, match="mask"):
        NormaliseOptions(mask="both")


def test_layers_show_normalised_maps_lazily_with_pathway_colours(store, model, model_genes):
    from napari_teramind.layers import PATHWAY_COLORS, attention_layers

    compute_attention_maps(store, model, "DOPA", gene_names=model_genes, tile_blocks=16)
    layers = attention_layers(store, ["DOPA"])
    assert [kw["name"].split()[-1] for _, kw, _ in layers] == channel_names(("Nr4a2", "Th"))
    visible = [kw["name"].split()[-1] for _, kw, _ in layers if kw["visible"]]
    assert visible == ["all:Nr4a2", "all:Th"]
    for _data, kw, kind in layers:
        assert kind == "image" and kw["blending"] == "additive"
        gene = kw["name"].split(":")[-1]
        colour = PATHWAY_COLORS["DOPA"][PRESETS["DOPA"].index(gene)]
        assert kw["colormap"]["colors"][-1][:3] == list(colour)
        assert kw["scale"] == [SPEC.slice_spacing_um, 32.0, 32.0]
    opts = options_for(store, "DOPA")
    raw = np.asarray(store.attention("DOPA").compute())
    expected = normalise_map(raw, store.attention_metadata("DOPA")["channels"], opts)
    lazy = normalised_levels(store, "DOPA")
    np.testing.assert_allclose(np.asarray(lazy[0].compute()), expected, rtol=1e-5, atol=1e-5)
    data0 = layers[4][0]
    data0 = data0[0] if isinstance(data0, list) else data0
    np.testing.assert_allclose(np.asarray(data0.compute()), expected[4], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ planted programs
def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 5, 60).astype(float)  # many ties
    y = rng.random(60) < 0.3
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert roc_auc(s, y) == pytest.approx(np.mean(pairs))
    assert np.isnan(roc_auc(s, np.zeros(60, bool)))


def test_dopa_and_glut_maps_follow_the_planted_programs(store, model, model_genes):
    compute_attention_maps(store, model, "DOPA", gene_names=model_genes)
    compute_attention_maps(store, model, "GLUT", gene_names=model_genes)
    auc = planted_auc(store, "DOPA", "DOPA")
    assert list(auc["slice"]) == list(range(SPEC.n_slices))
    scored = auc.dropna()
    assert len(scored) >= 3 and (scored["auc"] > 0.9).all(), auc
    # the check can fail: the DOPA map does not find the GLUT regions
    wrong = planted_auc(store, "DOPA", "GLUT").dropna()
    assert (wrong["auc"] < 0.7).all(), wrong
    # GLUT layers are a few blocks thick in this small phantom (0.99 on the default one)
    glut = planted_auc(store, "GLUT", "GLUT").dropna()
    assert (glut["auc"] > 0.8).all(), glut
    overlap = planted_overlap(store, "GLUT")
    assert (overlap["spearman"] > 0.3).all() and (overlap["auc_high_overlap"] > 0.8).all()
    with pytest.raises(ValueError, match="gene pair"):
        compute_attention_maps(store, model, ["Th"], gene_names=model_genes)
        planted_overlap(store, "Th")


def test_bundled_model_dopa_auc_above_bar(store):
    from napari_teramind.model.bundled import load_bundled_model

    model, info = load_bundled_model()
    compute_attention_maps(store, model, "DOPA", checkpoint=info)
    compute_attention_maps(store, model, "GLUT", checkpoint=info)
    auc = planted_auc(store, "DOPA", "DOPA").dropna()
    assert len(auc) >= 3 and (auc["auc"] > 0.9).all(), auc
    overlap = planted_overlap(store, "GLUT")
    assert (overlap["spearman"] > 0.3).all(), overlap


# ------------------------------------------------------------------ plots
def test_trend_data_and_png(store, model, model_genes, tmp_path):
    compute_attention_maps(store, model, "GLUT", gene_names=model_genes, slices=[1, 2])
    res = trend_data(store, "GLUT", level=0, options=options_for(store, "GLUT", sigma=0))
    assert set(res.data["gene"]) == {"Slc17a6", "Slc17a7"}
    assert list(res.data.columns) == ["gene", "slice", "y", "x", "expression", "attention"]
    assert (res.data["expression"] > 0).all()  # masked: both genes expressed
    raw = np.asarray(store.attention("GLUT").compute())
    row = res.data.iloc[0]
    assert (
        raw[6, row["slice"], row["y"], row["x"]] > 0
        and raw[7, row["slice"], row["y"], row["x"]] > 0
    )
    fits = res.fits.set_index("gene")
    assert (fits["slope"] > 0).all() and (fits["n"] == len(res.data) // 2).all()
    assert res.fits.loc[0, "r"] == pytest.approx(
        np.corrcoef(res.data.query("gene == 'Slc17a6'")[["expression", "attention"]].T)[0, 1]
    )
    results = trend_plot(store, "GLUT", tmp_path / "plots", per_slice=True, level=1)
    assert len(results) == 2  # the map's slices
    for r in results:
        assert r.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert set(r.data["slice"]) <= {int(r.path.stem.split("_z")[-1])}


# ------------------------------------------------------------------ CLI
def test_cli_attention(store, model, model_genes, tmp_path, capsys):
    from napari_teramind.cli import main

    save_checkpoint(tmp_path / "ckpt", model, None, model_genes)
    path = str(store.path)
    del store
    rc = main(["attention", path, "--pair", "DOPA", "--model", str(tmp_path / "ckpt"),
               "--slices", "2", "3", "--region", "0", "192", "64", "320",
               "--plot-dir", str(tmp_path / "plots"), "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "attention/DOPA" in out and "DOPA_all_trend.png" in out
    meta = BrainStore.open(path).attention_metadata("DOPA")
    assert meta["slices"] == [2, 3] and meta["region"] == [0, 192, 64, 320]
    assert (tmp_path / "plots" / "DOPA_all_trend.png").is_file()
    rc = main(["attention", path, "--genes", "Thh", "--model", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and "Thh" in err and "did you mean Th" in err
