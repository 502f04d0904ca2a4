"""Loss weights for rare expression: scores, weight maps, the sampler's maps, the loss, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _human_helpers import MICRO
from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.cli import main
from napari_teramind.diffusion.losses import collage_training_losses
from napari_teramind.model import ModelConfig, TeraMindUNet
from napari_teramind.store import BrainStore, GenePanel, align_model_panel
from napari_teramind.train import rarity
from napari_teramind.train.loop import TrainConfig, latest_checkpoint
from napari_teramind.train.patches import PAIRS, PatchSampler, augment

#: Where the rare genes are (block rows, columns) in :func:`rare_store`.
RARE = (slice(20, 26), slice(8, 14))


def _counts(rng: np.random.Generator) -> np.ndarray:
    """4 genes x 32 x 32 blocks: C0, C1 everywhere, R0, R1 only in :data:`RARE`; row 0 empty."""
    c = np.zeros((4, 32, 32), np.uint16)
    c[:2] = rng.poisson(4.0, (2, 32, 32))
    c[2:, RARE[0], RARE[1]] = rng.poisson(6.0, (2, 6, 6))
    c[:, 0] = 0
    return c


@pytest.fixture(scope="module")
def rare_store(tmp_path_factory) -> Path:
    """4 slices of 512 x 512 px whose DAPI is 200 on the rare blocks, 60 elsewhere."""
    path = tmp_path_factory.mktemp("rarity") / "rare.zarr"
    st = BrainStore.create(
        path, n_slices=4, height=512, width=512, panel=GenePanel(["C0", "C1", "R0", "R1"]),
        pixel_size_um=1.0, slice_spacing_um=10.0,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for z in range(4):
        img = np.full((2, 512, 512), 60, np.uint8)
        img[0, RARE[0].start * 16 : RARE[0].stop * 16, RARE[1].start * 16 : RARE[1].stop * 16] = 200
        st.write_images(z, 0, 0, img)
        st.write_genes(z, 0, 0, _counts(rng))
    st.finalize(workers=1)
    return path


def test_rarity_scores_find_the_blocks_whose_strongest_genes_are_rare():
    c = _counts(np.random.default_rng(1)).astype(np.float32)
    tissue = c.sum(axis=0) > 0
    means = c[:, tissue].mean(axis=1)
    score = rarity.rarity_scores(c, means)
    assert score.shape == (32, 32) and (score[0] == 0).all()  # no counts: no score
    inner = score[21:25, 9:13]  # the rare blocks away from their edge
    common = score[2:16, 16:]
    assert inner.min() > 3 * common.max(), (inner.min(), common.max())
    # a gene absent from the tissue (mean 0) is ignored, not divided by zero
    assert np.isfinite(rarity.rarity_scores(np.concatenate([c, 0 * c[:1]]), [*means, 0.0])).all()


def test_weight_maps_have_mean_one_respect_the_cap_and_do_not_depend_on_strips(
    rare_store, monkeypatch
):
    st = BrainStore.open(rare_store)
    al = align_model_panel(st.panel, st.panel).alignment
    starts = [0, 1, 2]
    maps = rarity.rarity_weight_maps(st, al.target_index, starts, PAIRS, cap=8.0)
    assert sorted(maps) == starts and maps[0].shape == (32, 32)
    allw = np.concatenate([m.ravel() for m in maps.values()])
    assert abs(allw.mean() - 1.0) < 1e-5
    assert allw.max() / allw.min() == pytest.approx(8.0, rel=1e-5)  # the rare blocks reach it
    assert maps[1][22, 10] == pytest.approx(allw.max())
    assert maps[1][5, 20] == pytest.approx(allw.min())
    monkeypatch.setattr(rarity, "STRIP_BLOCKS", 5)  # strips cut through the rare blocks
    for s, m in rarity.rarity_weight_maps(st, al.target_index, starts, PAIRS, cap=8.0).items():
        np.testing.assert_allclose(m, maps[s], rtol=1e-5)
    with pytest.raises(ValueError, match="above 1"):
        rarity.rarity_weight_maps(st, al.target_index, starts, PAIRS, cap=1.0)


def test_sampler_weights_move_with_the_crop_and_its_augmentation(rare_store):
    panel = BrainStore.open(rare_store).panel
    plain = PatchSampler([rare_store], panel, crop=128, holdout_slices=(3,))
    weighted = PatchSampler([rare_store], panel, crop=128, holdout_slices=(3,), rarity_cap=8.0)
    assert plain.sample(0).weight is None and len(plain.batch([0, 1])) == 2
    seen_rare = 0
    for i in range(12):
        a, b = plain.sample(i), weighted.sample(i)
        # the same crop, genes and augmentation as without weights
        assert (a.y, a.x, a.slice) == (b.y, b.x, b.slice)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.genes, b.genes)
        # the weight map is the store map's crop, rotated and flipped with the image
        by, bx = b.y // 16, b.x // 16
        blocks = weighted.rarity_maps[0][b.slice][by : by + 8, bx : bx + 8]
        raw = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)
        img = np.asarray(BrainStore.open(rare_store).array("images", 0)[0, b.slice,
                         b.y : b.y + 128, b.x : b.x + 128], np.float32) / 127.5 - 1  # fmt: skip
        hits = [
            (k, f) for k in range(4) for f in (False, True)
            if np.array_equal(augment(img, img, k, f)[0], b.image[0])
            and np.array_equal(augment(raw, raw, k, f)[0], b.weight)
        ]  # fmt: skip
        assert hits, i
        seen_rare += bool((b.weight > 2).any())
    assert seen_rare  # some crop held rare blocks, weighted above the rest
    _img, _genes, w = weighted.batch([0, 1])
    assert w.shape == (2, 1, 128, 128) and w.dtype == np.float32
    with pytest.raises(ValueError, match="rarity_cap"):
        PatchSampler([rare_store], panel, crop=128, rarity_cap=0.5)
    with pytest.raises(ValueError, match="rarity_cap"):
        TrainConfig(stores=(str(rare_store),), rarity_cap=1.0)


def test_pixel_weights_scale_the_loss_and_ones_change_nothing():
    cfg = ModelConfig.preset("tiny", n_genes=3).replace(**MICRO)
    model = TeraMindUNet(cfg).eval()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 4, 128, 128, generator=g) * 2 - 1
    genes = torch.rand(2, 3, 4, 12, 12, generator=g)

    def loss(**kw):
        with torch.no_grad():
            return collage_training_losses(
                model, x0, genes, generator=torch.Generator().manual_seed(5), **kw
            )

    plain, ones, twos = (
        loss(),
        loss(pixel_weight=torch.ones(2, 1, 128, 128)),
        loss(pixel_weight=torch.full((2, 1, 128, 128), 2.0)),
    )
    for k in ("collage", "tile"):
        assert torch.equal(plain[k], ones[k])
        torch.testing.assert_close(twos[k], 2 * plain[k])
    # weight only on sample 0: the loss is sample 0's, halved by the mean over two samples
    half = torch.zeros(2, 1, 128, 128)
    half[0] = 1.0
    first = loss(pixel_weight=half)
    assert 0 < float(first["loss"]) < float(plain["loss"])
    snr = loss(loss_weighting="min_snr", pixel_weight=torch.ones(2, 1, 128, 128))
    torch.testing.assert_close(snr["loss"], loss(loss_weighting="min_snr")["loss"])
    with pytest.raises(ValueError, match="pixel_weight"):
        loss(pixel_weight=torch.ones(2, 1, 64, 64))


def test_train_cli_trains_with_rarity_weights(rare_store, tmp_path):
    run = tmp_path / "rare"
    assert main([
        "train", str(rare_store), "--out", str(run), "--model-json", json.dumps(MICRO),
        "--steps", "2", "--batch-size", "2", "--crop", "128", "--rarity-cap", "8", "--quiet",
    ]) == 0  # fmt: skip
    assert json.loads((run / "run.json").read_text())["rarity_cap"] == 8.0
    assert latest_checkpoint(run)[0] == 2
