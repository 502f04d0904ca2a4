"""Evaluation: PSNR/SSIM against scikit-image and closed forms, streaming FID, nuclei against the
phantom's ground truth, region sampling, reports and ``teramind evaluate``."""

import math

import numpy as np
import pytest
import torch

from napari_teramind.evaluate import (
    RunningStats,
    TorchFeatures,
    compare_with_phantom,
    evaluate_region,
    evaluate_stores,
    frechet_distance,
    nuclei_stats,
    psnr,
    sample_regions,
    segment_nuclei,
    ssim,
    tissue_mask,
)
from napari_teramind.evaluate.fid import frechet_distance_eig
from napari_teramind.evaluate.image_metrics import image_metrics, view
from napari_teramind.evaluate.regions import Region, grid_regions, tissue_blocks
from napari_teramind.phantom import (
    PhantomSpec,
    ground_truth_nuclei,
    render_chunk,
    write_phantom,
)
from napari_teramind.store import BrainStore

SPEC = PhantomSpec(seed=5, n_slices=2, height=256, width=384)
C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _noisy_copy(real, path, sigma, seed=0, slices=None):
    gen = BrainStore.create(
        path, n_slices=real.n_slices, height=real.height, width=real.width, panel=real.panel,
        pixel_size_um=real.pixel_size_um, slice_spacing_um=real.slice_spacing_um,
        kind="generated", image_chunk=128,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    for z in slices if slices is not None else range(real.n_slices):
        im = real.images()[:, z].compute().astype(np.float64)
        noisy = np.clip(np.rint(im + rng.normal(0, sigma, im.shape)), 0, 255).astype(np.uint8)
        gen.write_images(z, 0, 0, noisy)
        gen.write_genes(z, 0, 0, real.genes()[:, z].compute())
    if slices is None:
        gen.finalize()
    return gen


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    real = write_phantom(d / "real.zarr", SPEC, workers=1, executor="thread", image_chunk=128)
    gen = _noisy_copy(real, d / "gen.zarr", 8.0)
    blind = _noisy_copy(real, d / "blind.zarr", 40.0, seed=1)
    return real, gen, blind


class SmallNet(torch.nn.Module):
    """A tiny feature network standing in for Inception (fid: 16-d, sfid: 18-d)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Conv2d(3, 8, 5, stride=4)
        self.b = torch.nn.Conv2d(8, 16, 3, stride=2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        a = torch.tanh(self.a(x))
        return torch.tanh(self.b(a)).mean((2, 3)), a[:, :2, ::5, ::5].flatten(1)


# ---------------------------------------------------------------- PSNR and SSIM
def test_psnr_ssim_equal_scikit_image_and_closed_forms():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 80), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)  # fmt: skip
    assert ssim(a, b) == pytest.approx(ref, abs=1e-12)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-12)

    # constant offset: MSE = d^2 exactly, PSNR = 20 log10(255 / d)
    c = np.clip(a, 0, 200)
    assert psnr(c, c + 7) == pytest.approx(20 * math.log10(255 / 7), abs=1e-9)
    # constant images: SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1) (contrast term 1)
    x, y = np.full((32, 32), 100, np.uint8), np.full((32, 32), 130, np.uint8)
    assert ssim(x, y) == pytest.approx((2 * 100 * 130 + C1) / (100**2 + 130**2 + C1), abs=1e-12)
    assert psnr(a, a) == math.inf and ssim(a, a) == pytest.approx(1.0)


def test_ssim_is_the_published_valid_convolution():
    from scipy.signal import convolve2d

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 48)).astype(np.float64)
    b = np.rint(np.clip(a + rng.normal(0, 25, a.shape), 0, 255))
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)

    def f(x):
        return convolve2d(x, w, mode="valid")

    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    smap = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s11 + s22 + C2))
    assert smap.shape == (30, 38)  # valid: 5 px lost at each border
    assert ssim(a.astype(np.uint8), b.astype(np.uint8)) == pytest.approx(smap.mean(), abs=1e-9)


def test_dapi_ssim_rewards_only_nuclei_placed_to_a_few_pixels():
    # What pixel-aligned DAPI SSIM can tell (docs/evaluation.md): the real phantom tissue,
    # displaced by half a 16-px gene block, scores below a flat image at the tissue's
    # nucleus-free level; only nuclei within ~2 px of the real ones beat that flat image.
    for z in range(SPEC.n_slices):
        dapi = render_chunk(SPEC, z, 0, 0, 256, 384).images[0]
        real = dapi[16:208, 16:336]
        flat = ssim(real, np.full_like(real, np.median(real)))
        for dy, dx in ((8, 0), (0, 8), (16, 0), (0, 16)):
            assert ssim(real, dapi[16 + dy : 208 + dy, 16 + dx : 336 + dx]) < flat
        assert ssim(real, dapi[18:210, 16:336]) > flat  # displaced by 2 px


def test_masked_metrics_and_views():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(2)
    r = rng.integers(0, 256, (2, 48, 48), dtype=np.uint8)
    g = np.clip(r.astype(int) + rng.integers(-20, 21, r.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((48, 48), bool)
    mask[10:40, 5:30] = True
    assert psnr(r[0], g[0], mask) == pytest.approx(
        peak_signal_noise_ratio(r[0][mask], g[0][mask], data_range=255)
    )
    assert psnr(r[0], g[0], np.ones((48, 48), bool)) == pytest.approx(psnr(r[0], g[0]))
    assert ssim(r[0], g[0], np.ones((48, 48), bool)) == pytest.approx(ssim(r[0], g[0]))
    assert math.isnan(psnr(r[0], g[0], np.zeros((48, 48), bool)))
    m = image_metrics(r, g)
    # merged view [0, DAPI, PolyT]: the zero channel scores SSIM 1 and error 0, as published
    assert m["ssim_merged"] == pytest.approx((1 + m["ssim_dapi"] + m["ssim_polyt"]) / 3)
    mse = lambda d: 255**2 / 10 ** (d / 10)  # noqa: E731
    assert mse(m["psnr_merged"]) == pytest.approx((mse(m["psnr_dapi"]) + mse(m["psnr_polyt"])) / 3)
    assert view(r, "merged").shape == (48, 48, 3) and not view(r, "merged")[..., 0].any()
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(r[0], g[0, :10])


# ---------------------------------------------------------------- FID
def test_running_stats_and_frechet_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    y = rng.normal(0.3, 1.2, size=(200, 12))
    a, b, parts = RunningStats(12), RunningStats(12), RunningStats(12)
    a.add(x)
    b.add(y)
    mu, cov = a.mean_cov()
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(cov, np.cov(x.T, bias=True), atol=1e-10)
    for chunk in np.array_split(x, 4):  # pooling by adding sums = one pass over everything
        p = RunningStats(12)
        p.add(chunk)
        parts.merge(p)
    np.testing.assert_allclose(parts.outer, a.outer)
    assert parts.count == 300
    # the symmetric evaluation equals the published general-eigenvalue formula
    assert frechet_distance(a, b) == pytest.approx(frechet_distance_eig(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="no features"):
        frechet_distance(RunningStats(3), RunningStats(3))


def test_fid_is_zero_on_itself_and_grows_with_noise():
    images = render_chunk(SPEC, 0, 0, 0, 256, 384).images
    fx = TorchFeatures(SmallNet(), input_px=64)
    rng = np.random.default_rng(4)

    def tiles(im):
        rgb = np.repeat(im[0][..., None], 3, -1)
        return np.stack([rgb[y : y + 64, x : x + 64].transpose(2, 0, 1)
                         for y in range(0, 256, 64) for x in range(0, 384, 64)])  # fmt: skip

    def stats(im):
        s = {}
        for k, f in fx(tiles(im)).items():
            s[k] = RunningStats(f.shape[1])
            s[k].add(f)
        return s

    ref = stats(images)
    assert ref["fid"].dim == 16 and ref["sfid"].dim == 18
    same = stats(images.copy())
    for k in ("fid", "sfid"):
        assert frechet_distance(ref[k], same[k]) == pytest.approx(0.0, abs=1e-6)
    for k in ("fid", "sfid"):
        d = []
        for sigma in (5, 20, 60):
            noisy = np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)
            d.append(frechet_distance(ref[k], stats(noisy)[k]))
        assert 0 < d[0] < d[1] < d[2], (k, d)


def test_inception_network_and_weights_file(tmp_path, monkeypatch):
    from napari_teramind.evaluate.inception import (
        WEIGHTS_ENV,
        WEIGHTS_FILE,
        WEIGHTS_URL,
        FIDInceptionV3,
        load_inception,
    )

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as err:
        load_inception(None)
    assert WEIGHTS_FILE in str(err.value) and WEIGHTS_URL in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_inception(tmp_path / "nope.pth")

    with torch.device("meta"):
        shapes = FIDInceptionV3().state_dict()
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.rand(v.shape, generator=g) * 0.1 + (0.5 if "running_var" in k else 0.0))
          if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype)
          for k, v in shapes.items() if not k.endswith("num_batches_tracked")}  # fmt: skip
    # pytorch-fid / torchvision layer names; mixed_6.conv = Mixed_6d.branch1x1
    assert sd["Mixed_6d.branch1x1.conv.weight"].shape == (192, 768, 1, 1)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["fc.weight"].shape == (1008, 2048)
    path = tmp_path / WEIGHTS_FILE
    torch.save(sd, path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    loaded = load_inception(None)
    for k, v in sd.items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with torch.inference_mode():
        pool, spatial = loaded(torch.rand(1, 3, 299, 299) * 2 - 1)
    assert pool.shape == (1, 2048) and spatial.shape == (1, 7 * 17 * 17)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold the FID Inception weights"):
        load_inception(tmp_path / "other.pth")


# ---------------------------------------------------------------- nuclei
def test_classical_nuclei_match_the_phantom_ground_truth():
    errs = [compare_with_phantom(SPEC, z, (0, 256, 0, 384)) for z in range(2)]
    for e in errs:
        assert e["count_true"] > 300
        assert abs(e["count_error"]) < 0.10, e
        assert abs(e["area_error"]) < 0.25, e
    assert not segment_nuclei(np.zeros((32, 32), np.uint8)).any()
    assert not segment_nuclei(np.full((32, 32), 90, np.uint8)).any()
    with pytest.raises(ValueError, match="nuclei method"):
        segment_nuclei(np.zeros((8, 8), np.uint8), method="otsu")


def test_classical_nuclei_ignore_faint_specks_on_nucleus_free_tissue():
    # Tissue DAPI with noise and faint specks (what a model paints where it sees no genes):
    # Otsu's threshold alone splits the specks from the background and counts them as nuclei.
    rng = np.random.default_rng(0)
    tissue = 14.0 + rng.normal(0.0, 3.0, (256, 256))
    cells = np.stack(np.meshgrid(np.arange(6, 250, 12), np.arange(6, 250, 12)), -1).reshape(-1, 2)
    for y, x in cells + rng.integers(-3, 4, cells.shape):  # one isolated speck per 12-px cell
        tissue[y - 1 : y + 2, x - 1 : x + 2] += rng.uniform(8, 20)  # peaks 22-34
    specks = np.clip(tissue, 0, 255).astype(np.uint8)
    assert nuclei_stats(segment_nuclei(specks))["count"] == 0
    # the same tissue with 25 real nuclei: exactly those are found
    yy, xx = np.mgrid[:256, :256]
    centres = [(24 + 48 * i, 24 + 48 * j) for i in range(5) for j in range(5)]
    for cy, cx in centres:
        tissue[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 160.0
    stats = nuclei_stats(segment_nuclei(np.clip(tissue, 0, 255).astype(np.uint8)))
    assert stats["count"] == len(centres)
    assert 40 <= stats["area_mean"] <= 70  # disc of radius 4: 49 px
    assert stats["solidity_mean"] > 0.8  # round (a 49 px digital disc: 0.86)


def test_solidity_tells_round_nuclei_from_worm_shaped_blobs():
    yy, xx = np.mgrid[:64, :128]
    labels = np.zeros((64, 128), np.int32)
    labels[(yy - 32) ** 2 + (xx - 32) ** 2 <= 100] = 1  # a round nucleus
    worm = ((yy - 20) ** 2 + (xx - 96) ** 2 <= 400) & ((yy - 20) ** 2 + (xx - 96) ** 2 >= 144)
    labels[worm & (yy >= 20)] = 2  # a bent, merged blob (half a ring)
    round_only = nuclei_stats(np.where(labels == 1, 1, 0))
    both = nuclei_stats(labels)
    assert round_only["solidity_mean"] > 0.9  # a 317 px digital disc: 0.93
    assert both["count"] == 2 and both["solidity_mean"] < 0.85
    mask = np.zeros_like(labels, bool)
    mask[:, :64] = True  # only the round one's centroid
    assert nuclei_stats(labels, mask)["solidity_mean"] == round_only["solidity_mean"]


def test_cellpose_without_weights_names_the_fix(tmp_path, monkeypatch):
    from napari_teramind.evaluate.nuclei import cellpose_model_dir, resolve_method

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    assert cellpose_model_dir() is None
    assert resolve_method("auto") == "classical"
    with pytest.raises(FileNotFoundError, match="--nuclei classical"):
        segment_nuclei(np.zeros((8, 8), np.uint8), method="cellpose")


def _cellpose_files(directory, seed=0):
    """A ``cyto``-architecture cellpose network built here (no download), saved as cellpose's
    files. Its last layer is scaled so that it finds at least one mask on the phantom."""
    from cellpose import models

    torch.manual_seed(seed)
    cp = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=30.0, nchan=2)
    with torch.no_grad():
        out = cp.net.output[-1]
        out.bias[2] = 4.0  # cell probability
        out.weight[:2] *= 20  # flows
    torch.save(cp.net.state_dict(), directory / "cytotorch_0")
    rng = np.random.default_rng(seed)
    size = {"A": rng.normal(0, 0.01, 256), "smean": rng.normal(0, 1, 256),
            "diam_mean": 30.0, "ymean": -0.5}  # fmt: skip
    np.save(directory / "size_cytotorch_0.npy", size)


def test_cellpose_path_equals_the_published_call(tmp_path):
    pytest.importorskip("cellpose")
    from cellpose import models

    from napari_teramind.evaluate.nuclei import _model_dir, resolve_method

    _cellpose_files(tmp_path)
    assert resolve_method("auto", tmp_path) == "cellpose"
    dapi = render_chunk(SPEC, 0, 0, 0, 128, 128).images[0]
    ours = segment_nuclei(dapi, "cellpose", cellpose_models=tmp_path)
    with _model_dir(tmp_path):  # the published call, reading the same files
        published = models.Cellpose(gpu=False, model_type="cyto")
    masks, *_ = published.eval(
        [dapi.astype(np.float32) / 255.0], diameter=None, normalize=False, channels=[0, 0]
    )
    assert ours.dtype == np.int32 and ours.shape == dapi.shape and ours.max() >= 1
    np.testing.assert_array_equal(ours, masks[0])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def test_cellpose_size_model_is_read_without_unpickling_code(tmp_path):
    from napari_teramind.evaluate.nuclei import read_size_model

    path = tmp_path / "size.npy"
    np.save(path, {"A": np.arange(3.0), "smean": np.ones(3), "diam_mean": 30.0,
                   "ymean": np.float64(-0.5)})  # fmt: skip
    params = read_size_model(path)
    np.testing.assert_array_equal(params["A"], np.arange(3.0))
    assert params["diam_mean"] == 30.0 and params["ymean"] == -0.5
    marker = tmp_path / "exploited"
    np.save(tmp_path / "evil.npy", np.array({"A": _Exploit(marker)}, dtype=object))
    with pytest.raises(ValueError, match=r"not a cellpose size model \(refused global"):
        read_size_model(tmp_path / "evil.npy")
    assert not marker.exists()
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match="plain array"):
        read_size_model(tmp_path / "plain.npy")
    np.save(tmp_path / "other.npy", {"weights": np.zeros(3)})
    with pytest.raises(ValueError, match="keys A, smean, diam_mean, ymean"):
        read_size_model(tmp_path / "other.npy")


# ---------------------------------------------------------------- regions
def test_regions_inside_tissue_reproducible_and_clipped(stores):
    real, _, _ = stores
    a = sample_regions(real, [0, 1], n_regions=3, region_size=96, seed=7)
    assert a == sample_regions(real, [0, 1], n_regions=3, region_size=96, seed=7)
    assert a != sample_regions(real, [0, 1], n_regions=3, region_size=96, seed=8)
    for r in a:
        assert r.shape == (96, 96)
        assert tissue_mask(real, r).mean() >= 0.5
        others = [o for o in a if o.z == r.z and o != r]
        assert all(r.y1 <= o.y0 or o.y1 <= r.y0 or r.x1 <= o.x0 or o.x1 <= r.x0 for o in others)
    # a region larger than the store is clipped to it
    (big,) = sample_regions(real, [0], n_regions=1, region_size=4096, min_tissue=0.1)
    assert big.shape == (256, 256)
    # a region's mask is the same window of the whole-slice mask
    whole = tissue_blocks(real, 1)
    m = tissue_mask(real, Region(1, 48, 176, 80, 240))
    np.testing.assert_array_equal(m[::16, ::16], whole[3:11, 5:15])
    assert sum(r.shape[0] * r.shape[1] for r in grid_regions(real, [0], 128)) <= 256 * 384


# ---------------------------------------------------------------- end to end
def test_evaluate_stores_report(stores, tmp_path):
    real, gen, blind = stores
    rep = evaluate_stores(
        real, gen, baselines={"blind": blind}, region_size=128, n_regions=2, seed=1,
        feature_extractor=TorchFeatures(SmallNet(), input_px=64), nuclei="classical", fid_tile=64,
    )  # fmt: skip
    t = rep.table
    assert set(t["set"]) == {"generated", "blind", "mean", "blur"}
    assert len(t) == 4 * 2 * 2 and set(t["z"]) == {0, 1}
    assert (t["nuclei_method"] == "classical").all()
    s = rep.summary()
    # less noise scores better than more noise and than the trivial mean image
    assert s.loc["generated", "ssim_merged"] > s.loc["blind", "ssim_merged"]
    psnr_dapi = s["psnr_dapi"]
    assert psnr_dapi["generated"] > psnr_dapi["blind"] > psnr_dapi["mean"]
    assert s.loc["generated", "ssim_dapi"] > s.loc["mean", "ssim_dapi"]
    assert s.loc["generated", "nuclei_count_error"] < s.loc["mean", "nuclei_count_error"]
    pooled = rep.fid[rep.fid["z"] == "all"].set_index(["set", "view"])
    assert pooled.loc[("generated", "merged"), "fid"] < pooled.loc[("blind", "merged"), "fid"]
    per_slice = rep.fid[(rep.fid["z"] != "all") & (rep.fid["set"] == "generated")]
    assert per_slice.groupby("view")["n_real"].sum().tolist() == pooled.xs(
        "generated")["n_real"].loc[per_slice.groupby("view").groups.keys()].tolist()  # fmt: skip
    paths = rep.write(tmp_path / "out", figures=False)  # figures: see the CLI test
    for name in ("table.csv", "table.parquet", "fid.parquet", "summary.txt", "settings.json"):
        assert paths[name].is_file() and paths[name].stat().st_size > 0
    import pandas as pd

    back = pd.read_parquet(paths["table.parquet"])
    assert back.shape == t.shape
    text = rep.summary_text()
    assert "classical segmentation (offline fallback" in text and "blind" in text
    # the real store is a phantom: its ground-truth nuclei sit next to the real segmentation
    for _, row in t[t["set"] == "generated"].iterrows():
        truth = ground_truth_nuclei(SPEC, row.z, row.y0, row.x0, row.y1 - row.y0, row.x1 - row.x0)
        assert 0.5 * len(truth) < row["nuclei_count_truth"] <= len(truth)  # centred on tissue
        assert (
            t[t["region"] == row["region"]]["nuclei_count_truth"] == row["nuclei_count_truth"]
        ).all()
    err = rep.segmentation_error()
    assert abs(err["count"]) < 0.10 and abs(err["area"]) < 0.25, err
    assert "vs the phantom's ground truth: count" in text
    # a generated store as the real one has no ground truth
    other = evaluate_stores(gen, blind, region_size=128, n_regions=1, trivial=(),
                            nuclei="classical", metrics=("nuclei",))  # fmt: skip
    assert "nuclei_count_truth" not in other.table and other.segmentation_error() is None


def test_identical_store_and_evaluate_region(stores, tmp_path):
    real, gen, _ = stores
    rep = evaluate_stores(real, real, regions=[(64, 192, 64, 192)], slices=[1], trivial=(),
                          metrics=("psnr", "ssim"))  # fmt: skip
    assert (rep.table["psnr_dapi"] == math.inf).all()
    assert rep.table["ssim_merged"].tolist() == pytest.approx([1.0])
    ev = evaluate_region(real, gen, 1, (64, 192, 64, 192), nuclei="classical")
    assert ev.real.shape == ev.generated.shape == (2, 128, 128)
    assert ev.labels_real.shape == ev.labels_generated.shape == (128, 128)
    assert ev.labels_real.max() == ev.metrics["nuclei_count_real"] or ev.tissue.mean() < 1
    assert 20 < ev.metrics["psnr_dapi"] < 40
    with pytest.raises(ValueError, match="same brain canvas"):
        other = BrainStore.create(tmp_path / "o.zarr", n_slices=1, height=256, width=384,
                                  panel=real.panel, pixel_size_um=2, slice_spacing_um=200,
                                  kind="generated")  # fmt: skip
        evaluate_region(real, other, 0, (0, 64, 0, 64))


def test_partial_generated_store_is_scored_where_it_has_data(stores, tmp_path):
    real, _, _ = stores
    part = _noisy_copy(real, tmp_path / "part.zarr", 8.0, slices=[1])  # slice 0 never written
    assert not part.complete
    rep = evaluate_stores(real, part, region_size=64, n_regions=2, metrics=("psnr",), trivial=())
    assert set(rep.table["z"]) == {1}
    # the whole brain, tile by tile: only where the partial store has data, all tissue tiles
    whole = evaluate_stores(real, part, regions="all", region_size=128, metrics=("psnr",),
                            trivial=())  # fmt: skip
    assert set(whole.table["z"]) == {1} and len(whole.table) == len(grid_regions(real, [1], 128))
    assert (whole.table["psnr_dapi"] > 25).all()


def test_cli_end_to_end(stores, tmp_path, capsys, monkeypatch):
    from napari_teramind.cli import main
    from napari_teramind.evaluate.inception import WEIGHTS_ENV, WEIGHTS_FILE

    real, gen, blind = stores
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    out = tmp_path / "ev"
    rc = main(["evaluate", str(real.path), str(gen.path), "--baseline", f"blind={blind.path}",
               "--out", str(out), "--region-size", "128", "--n-regions", "1", "--slices", "0-1",
               "--nuclei", "classical", "--quiet"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "psnr_dapi" in printed and "blind" in printed and "FID/sFID: not computed" in printed
    assert (out / "table.csv").is_file() and (out / "table.parquet").is_file()
    for name in ("image_metrics.png", "nuclei.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    rc = main(["evaluate", str(real.path), str(gen.path), "--out", str(out), "--metrics",
               "psnr,fid", "--quiet"])  # fmt: skip
    assert rc == 2 and WEIGHTS_FILE in capsys.readouterr().err
    rc = main(["evaluate", str(real.path), str(gen.path), "--out", str(out), "--metrics", "lpips"])
    assert rc == 2 and "unknown metrics" in capsys.readouterr().err


def test_report_tables_and_figures_follow_the_umask(stores, tmp_path):
    """#13 item 8: tables, summary, settings and figures get mode 0666 less the umask (they
    were 0600, unreadable to the group, unlike every other output)."""
    import os

    real, gen, _ = stores
    rep = evaluate_stores(real, gen, region_size=128, n_regions=1, trivial=(),
                          metrics=("psnr",), nuclei="classical")  # fmt: skip
    old = os.umask(0o027)
    try:
        paths = rep.write(tmp_path / "out", figures=True)
    finally:
        os.umask(old)
    assert "image_metrics.png" in paths and "table.csv" in paths and "settings.json" in paths
    modes = {name: p.stat().st_mode & 0o777 for name, p in paths.items()}
    assert set(modes.values()) == {0o640}, modes
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
