"""Training: the patch sampler, the loop (loss goes down, exact resume), the CLI commands."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from _human_helpers import MICRO
from _model_helpers import FIXTURES, single_thread  # noqa: F401
from napari_teramind.cli import main
from napari_teramind.model import import_published_checkpoint, load_checkpoint
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore, GenePanel
from napari_teramind.train.bundled import (
    BUNDLED_CONTINUE_SEED,
    BUNDLED_COOLDOWN,
    bundled_train_config,
    continued_train_config,
    export_bundled,
    stage_record,
)
from napari_teramind.train.ema import ModelEMA, ema_decay_at
from napari_teramind.train.loop import (
    TrainConfig,
    build_model,
    checkpoint_weights,
    evaluate_loss,
    latest_checkpoint,
    learning_rate,
    list_checkpoints,
    read_loss_csv,
    train,
)
from napari_teramind.train.patches import PatchSampler, read_gene_window


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("train") / "phantom.zarr"
    spec = PhantomSpec(n_slices=4, height=256, width=384, n_genes=8, seed=3)
    write_phantom(path, spec, workers=1, executor="thread")
    return path


def _config(store: Path, **kw) -> TrainConfig:
    base = dict(
        stores=(str(store),),
        model_overrides=MICRO,
        batch_size=2,
        lr=3e-3,
        crop=128,
        holdout_slices=(3,),
        log_every=1,
        checkpoint_every=1000,
    )
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- patch sampler


def _two_gene_store(path: Path, n_slices: int, size: int) -> BrainStore:
    """An empty ``size`` x ``size`` px store of genes A and B at 1 um per px."""
    return BrainStore.create(
        path,
        n_slices=n_slices,
        height=size,
        width=size,
        panel=GenePanel(["A", "B"]),
        pixel_size_um=1.0,
        slice_spacing_um=10.0,
    )


@pytest.fixture(scope="module")
def marker_store(tmp_path_factory) -> Path:
    """3 slices of 128 x 128 px; one bright 16-px block at block (1, 2) and gene A there.

    Gene A counts ``z + 1`` in that block of slice ``z``; PolyT is ``10 (z + 1)`` everywhere.
    """
    path = tmp_path_factory.mktemp("marker") / "marker.zarr"
    st = _two_gene_store(path, n_slices=3, size=128)
    for z in range(3):
        img = np.zeros((2, 128, 128), np.uint8)
        img[0, 16:32, 32:48] = 255
        img[1] = 10 * (z + 1)
        st.write_images(z, 0, 0, img)
        genes = np.zeros((2, 8, 8), np.uint16)
        genes[0, 1, 2] = z + 1
        st.write_genes(z, 0, 0, genes)
    st.finalize(workers=1)
    return path


def test_augmentation_moves_image_and_genes_together(marker_store):
    sampler = PatchSampler([marker_store], GenePanel(["A", "B"]), crop=128, min_tissue=0)
    seen = set()
    for i in range(48):
        s = sampler.sample(i)
        assert s.image.shape == (4, 128, 128) and s.genes.shape == (2, 4, 12, 12)
        bright = s.image[0].reshape(8, 16, 8, 16).mean(axis=(1, 3)) > 0.9
        inner = s.genes[0, 1, 2:-2, 2:-2] > 0  # gene slice s of the crop, margin stripped
        assert bright.sum() == 1 and np.array_equal(bright, inner)
        assert np.array_equal(s.image[0] > 0.9, s.image[1] > 0.9)  # both slices moved alike
        seen.add(tuple(np.argwhere(bright)[0]))
    assert len(seen) == 8  # all 4 rotations x 2 flips occur


def test_gene_window_pads_the_stack_ends_with_empty_slices(marker_store):
    sampler = PatchSampler(
        [marker_store], GenePanel(["B", "A", "C"]), crop=128, augment=False, min_tissue=0
    )
    by_slice = {}
    for i in range(20):
        s = sampler.sample(i)
        by_slice[s.slice] = s
    assert set(by_slice) == {0, 1}  # pairs (0, 1) and (1, 2)
    # gene window = slices s-1 .. s+2; gene A is panel row 1, "C" is absent (zero)
    assert by_slice[0].genes[1, :, 3, 4].tolist() == [0, 1, 2, 3]
    assert by_slice[1].genes[1, :, 3, 4].tolist() == [1, 2, 3, 0]
    assert not by_slice[0].genes[[0, 2]].any()
    for s, sample in by_slice.items():  # image channels: DAPI_s, DAPI_s+1, PolyT_s, PolyT_s+1
        polyt = (sample.image[2:, 0, 0] + 1) * 127.5
        np.testing.assert_allclose(polyt, [10 * (s + 1), 10 * (s + 2)], atol=1e-4)
    # the 2-block margin is zero beyond the canvas, real counts inside it
    st = BrainStore.open(marker_store)
    win = read_gene_window(st, 0, -2, -2, 6, np.array([0]))
    assert win[0, 1, 3, 4] == 1 and win[0, 1, :2].sum() == 0


@pytest.fixture(scope="module")
def rare_gene_store(tmp_path_factory) -> Path:
    """4 slices of 512 x 512 px: gene B in every block, gene A in block (1, 1) alone."""
    path = tmp_path_factory.mktemp("rare") / "rare.zarr"
    st = _two_gene_store(path, n_slices=4, size=512)
    for z in range(4):
        st.write_images(z, 0, 0, np.full((2, 512, 512), 100, np.uint8))
        genes = np.ones((2, 32, 32), np.uint16)
        genes[0] = 0
        genes[0, 1, 1] = 5
        st.write_genes(z, 0, 0, genes)
    st.finalize(workers=1)
    return path


def test_gene_balanced_crops_find_a_rare_gene(rare_gene_store):
    panel = GenePanel(["A", "B"])
    uniform = PatchSampler([rare_gene_store], panel, crop=128)
    balanced = PatchSampler([rare_gene_store], panel, crop=128, gene_balance=1.0)
    # the table: gene A's best 128-px cell is (0, 0), holding 5 counts in each of the window's
    # slices that exist; a cell without A weighs 0
    cells, weights = balanced.balance_tables[0][0]
    assert tuple(cells[0, 0]) == (0, 0)
    window = [z for z in range(-1, 3) if 0 <= z < 4]
    assert weights[0, 0] == 5 * len(window) and weights[0, 1] == 0
    assert weights[1, 0] == 64 * len(window)  # B: one count per block, 8 x 8 blocks per cell

    def has_a(sampler, i):
        s = sampler.sample(i)  # the crop holds block (1, 1), px 16-32, when it starts at <= 16
        return s.y <= 16 and s.x <= 16

    n = 200
    seen_uniform = sum(has_a(uniform, i) for i in range(n)) / n
    seen_balanced = sum(has_a(balanced, i) for i in range(n)) / n
    # uniform: (2/25)^2 of the origins hold block (1, 1); balanced: half the draws pick A
    assert seen_uniform < 0.03 and seen_balanced > 0.15, (seen_uniform, seen_balanced)
    with pytest.raises(ValueError, match="gene_balance"):
        PatchSampler([rare_gene_store], panel, crop=128, gene_balance=1.5)
    with pytest.raises(ValueError, match="gene_balance"):
        _config(rare_gene_store, gene_balance=-0.1)


def test_train_cli_records_gene_balance_and_trains_on_balanced_crops(rare_gene_store, tmp_path):
    run = tmp_path / "balanced"
    assert main([
        "train", str(rare_gene_store), "--out", str(run), "--model-json", json.dumps(MICRO),
        "--steps", "2", "--batch-size", "2", "--crop", "128", "--gene-balance", "0.5", "--quiet",
    ]) == 0  # fmt: skip
    assert json.loads((run / "run.json").read_text())["gene_balance"] == 0.5
    assert latest_checkpoint(run)[0] == 2


def test_holdout_slices_are_never_drawn(phantom):
    panel = BrainStore.open(phantom).panel
    train_pairs = PatchSampler([phantom], panel, holdout_slices=(2,)).pairs
    eval_pairs = PatchSampler([phantom], panel, holdout_slices=(2,), use="holdout").pairs
    assert train_pairs == [[0]] and eval_pairs == [[1, 2]]
    drawn = {PatchSampler([phantom], panel, holdout_slices=(2,)).sample(i).slice for i in range(8)}
    assert drawn == {0}


def test_bad_inputs_are_named(phantom, tmp_path):
    panel = BrainStore.open(phantom).panel
    with pytest.raises(FileNotFoundError, match="no brain store"):
        train(_config(tmp_path / "missing.zarr", steps=1), tmp_path / "r0")
    with pytest.raises(ValueError, match="Nope"):
        train(_config(phantom, steps=1, genes=("Nope", panel.names[0])), tmp_path / "r1")
    with pytest.raises(ValueError, match="smaller than a crop"):
        PatchSampler([phantom], panel, crop=512)
    with pytest.raises(ValueError, match="multiple of the model patch"):
        train(_config(phantom, steps=1, crop=96), tmp_path / "r2")
    with pytest.raises(ValueError, match="held out"):
        PatchSampler([phantom], panel, holdout_slices=(1, 2))
    with pytest.raises(ValueError, match="outside"):
        PatchSampler([phantom], panel, holdout_slices=(9,))
    with pytest.raises(ValueError, match="shares no gene"):
        PatchSampler([phantom], GenePanel(["Nope"]))
    with pytest.raises(ValueError, match="precision"):
        _config(phantom, precision="fp8")
    train(_config(phantom, steps=1), tmp_path / "r3")
    with pytest.raises(ValueError, match="another configuration"):
        train(_config(phantom, steps=2, lr=1e-2), tmp_path / "r3")
    assert main(["train", str(phantom), "--out", str(tmp_path / "r3"), "--steps", "2"]) == 2


# --------------------------------------------------------------------------- training loop


@pytest.mark.slow
def test_training_lowers_the_loss(phantom, tmp_path):
    cfg = _config(phantom, steps=200, batch_size=1, checkpoint_every=100)
    holdout = PatchSampler([phantom], BrainStore.open(phantom).panel, 128, (3,), use="holdout")
    before = evaluate_loss(build_model(cfg)[0], holdout, n=8)
    result = train(cfg, tmp_path / "run")
    after = evaluate_loss(load_checkpoint(result.checkpoint)[0], holdout, n=8)
    loss = read_loss_csv(tmp_path / "run" / "loss.csv")["loss"]
    assert result.step == 200 and len(loss) == 200
    assert loss[-20:].mean() < 0.8 * loss[:20].mean()
    assert after < 0.8 * before  # on held-out slice 3, identical draws before and after
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0


def test_resume_reaches_the_same_weights(phantom, tmp_path):
    """6 steps at once == 3 steps (CLI), stop, resume to 6 (CLI): optimizer, RNG, dropout."""
    cfg = _config(phantom, steps=6, batch_size=1, accumulate=2, holdout_slices=())
    whole = train(cfg, tmp_path / "whole")
    args = [
        "train", str(phantom), "--out", str(tmp_path / "split"), "--model-json", json.dumps(MICRO),
        "--batch-size", "1", "--accumulate", "2", "--lr", "3e-3", "--crop", "128",
        "--log-every", "1", "--checkpoint-every", "1000", "--quiet",
    ]  # fmt: skip
    assert main([*args, "--steps", "3"]) == 0
    assert latest_checkpoint(tmp_path / "split")[0] == 3
    assert main([*args, "--steps", "6", "--resume"]) == 0
    a, _ = load_checkpoint(whole.checkpoint)
    b, info = load_checkpoint(latest_checkpoint(tmp_path / "split")[1])
    assert info.training_state["global_step"] == 6
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    first = build_model(cfg)[0].state_dict()
    assert not all(torch.equal(first[k], sa[k]) for k in sa)  # it did train
    csv = read_loss_csv(tmp_path / "split" / "loss.csv")
    np.testing.assert_array_equal(csv["step"], np.arange(1, 7))
    np.testing.assert_allclose(csv["loss"], read_loss_csv(tmp_path / "whole" / "loss.csv")["loss"])


def test_learning_rate_cools_down_linearly_at_the_end(phantom):
    cfg = _config(phantom, steps=10, lr=1e-3, cooldown_steps=4)
    lrs = [learning_rate(cfg, s) for s in range(10)]
    assert lrs[:6] == [1e-3] * 6 and cfg.cooldown_start == 6
    np.testing.assert_allclose(lrs[6:], [8e-4, 6e-4, 4e-4, 2e-4])
    assert [learning_rate(_config(phantom, steps=3), s) for s in range(3)] == [3e-3] * 3
    with pytest.raises(ValueError, match="cooldown_steps must be between 0 and steps"):
        _config(phantom, steps=3, cooldown_steps=4)


def test_cooldown_added_on_resume_equals_a_run_planned_with_it(phantom, tmp_path, capsys):
    """4 constant steps, then resumed to 6 with a 2-step cooldown == 6 steps planned so."""
    cfg = _config(phantom, steps=6, cooldown_steps=2, batch_size=1, holdout_slices=())
    whole = train(cfg, tmp_path / "whole")
    args = [
        "train", str(phantom), "--out", str(tmp_path / "split"), "--model-json", json.dumps(MICRO),
        "--batch-size", "1", "--lr", "3e-3", "--crop", "128", "--log-every", "1", "--quiet",
    ]  # fmt: skip
    assert main([*args, "--steps", "4"]) == 0
    assert main([*args, "--steps", "6", "--cooldown-steps", "2", "--resume"]) == 0
    a, _ = load_checkpoint(whole.checkpoint)
    b, _ = load_checkpoint(latest_checkpoint(tmp_path / "split")[1])
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # Steps 4 and 5 already ran cooled down: a schedule that moves the cooldown is refused.
    capsys.readouterr()
    assert main([*args, "--steps", "8", "--cooldown-steps", "2", "--resume"]) != 0
    assert "learning rate already followed that schedule" in capsys.readouterr().err
    assert latest_checkpoint(tmp_path / "split")[0] == 6  # nothing was overwritten


# --------------------------------------------------------------------------- EMA weights


def test_ema_update_follows_the_warm_up_formula():
    """e_n = d_n e_(n-1) + (1 - d_n) p_n with d_n = min(decay, (1 + n) / (10 + n))."""
    assert ema_decay_at(0.999, 1) == 2 / 11 and ema_decay_at(0.999, 90) == 91 / 100
    assert ema_decay_at(0.999, 10**6) == 0.999
    with pytest.raises(ValueError, match="counted from 1"):
        ema_decay_at(0.999, 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ModelEMA(torch.nn.Linear(2, 2), 1.0)
    net = torch.nn.Linear(3, 2)
    ema = ModelEMA(net, 0.5)
    expect = net.weight.detach().double().clone()
    gen = torch.Generator().manual_seed(0)
    for n in range(1, 6):
        with torch.no_grad():
            net.weight.copy_(torch.randn(2, 3, generator=gen))
        d = min(0.5, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * net.weight.detach().double()
        assert ema.update(net, n) == d
    torch.testing.assert_close(ema.model.weight.double(), expect, rtol=0, atol=1e-6)
    assert not ema.model.weight.requires_grad and net.weight.requires_grad


def test_resume_with_ema_and_min_snr_is_bit_exact(phantom, tmp_path):
    """EMA + min-SNR: 6 steps at once == 3 (CLI) + resume to 6 (CLI), raw and EMA weights;
    the saved EMA equals the average replayed by hand from every raw checkpoint."""
    cfg = _config(
        phantom, steps=6, batch_size=1, holdout_slices=(), ema_decay=0.9,
        loss_weighting="min_snr", checkpoint_every=1, keep_every=1,
    )  # fmt: skip
    whole = train(cfg, tmp_path / "whole")
    args = [
        "train", str(phantom), "--out", str(tmp_path / "split"), "--model-json", json.dumps(MICRO),
        "--batch-size", "1", "--lr", "3e-3", "--crop", "128", "--log-every", "1",
        "--checkpoint-every", "1", "--keep-every", "1", "--ema-decay", "0.9",
        "--loss-weighting", "min_snr", "--quiet",
    ]  # fmt: skip
    assert main([*args, "--steps", "3"]) == 0
    assert main([*args, "--steps", "6", "--resume"]) == 0
    for sub in ("", "ema"):
        a = load_checkpoint(whole.checkpoint / sub)[0].state_dict()
        b = load_checkpoint(latest_checkpoint(tmp_path / "split")[1] / sub)[0].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    # every checkpoint kept (keep_every=1), each with its EMA
    kept = list_checkpoints(tmp_path / "whole")
    assert [s for s, _ in kept] == [1, 2, 3, 4, 5, 6]
    avg = {k: v.double() for k, v in build_model(cfg)[0].state_dict().items()}
    for n, path in kept:
        d = min(0.9, (1 + n) / (10 + n))
        raw = load_checkpoint(path)[0].state_dict()
        avg = {k: d * avg[k] + (1 - d) * raw[k].double() for k in avg}
        ema, info = load_checkpoint(path / "ema")
        assert info.provenance["weights"] == "ema" and info.training_state["ema_updates"] == n
        for k, v in ema.state_dict().items():
            torch.testing.assert_close(v.double(), avg[k], rtol=0, atol=1e-6)
    assert not all(torch.equal(raw[k], v) for k, v in ema.state_dict().items())
    # the min-SNR run trained on other losses than the unweighted one (same draws)
    plain = train(
        _config(phantom, steps=2, batch_size=1, holdout_slices=(), log_every=1), tmp_path / "plain"
    )
    weighted = read_loss_csv(tmp_path / "whole" / "loss.csv")["loss"][:2]
    assert not np.allclose(weighted, [r["loss"] for r in plain.losses])


def test_ema_checkpoints_export_and_refuse_what_would_break_resume(phantom, tmp_path):
    cfg = _config(phantom, steps=2, batch_size=1, holdout_slices=(), ema_decay=0.99)
    result = train(cfg, tmp_path / "run")
    # the export ships the EMA weights, and says so
    dest = export_bundled(result.checkpoint, tmp_path / "export", {"note": "test"})
    exported, info = load_checkpoint(dest)
    ema = load_checkpoint(result.checkpoint / "ema")[0].state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in exported.state_dict().items())
    assert info.provenance["weights"] == "ema" and "grad_scaler" not in info.training_state
    assert checkpoint_weights(result.checkpoint, use_ema=False) == (result.checkpoint, "raw")
    # re-exporting an export keeps the record (the install path of train-bundled)
    again = load_checkpoint(export_bundled(dest, tmp_path / "again", {}))[1]
    assert again.provenance["weights"] == "ema"
    # switching the EMA on (or off) for an existing run is another configuration
    with pytest.raises(ValueError, match="differs in \\['ema_decay'\\]"):
        train(replace(cfg, steps=3, ema_decay=0.0), tmp_path / "run")
    # a checkpoint that lost its EMA is named, with the fix
    shutil.rmtree(result.checkpoint / "ema")
    with pytest.raises(FileNotFoundError, match="holds no EMA weights"):
        train(replace(cfg, steps=3), tmp_path / "run")
    with pytest.raises(ValueError, match="ema_decay must be 0"):
        replace(cfg, ema_decay=1.5)
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        replace(cfg, loss_weighting="snr")


def test_stage_two_is_the_bundled_recipe_continued_from_stage_one(phantom, tmp_path):
    cfg2 = continued_train_config("brain.zarr", "run/checkpoints/step_0002600", 2000, 0.999)
    stage1 = bundled_train_config("brain.zarr", 2000, BUNDLED_COOLDOWN, 0.999)
    assert cfg2.init == "run/checkpoints/step_0002600" and stage1.init is None
    assert cfg2.seed == BUNDLED_CONTINUE_SEED != stage1.seed  # new draws, not stage 1's again
    same = {k: v for k, v in cfg2.to_dict().items() if k not in ("init", "seed")}
    assert same == {k: v for k, v in stage1.to_dict().items() if k not in ("init", "seed")}
    # two real stages at micro size: the second loads the first's last checkpoint, trains on
    first = train(_config(phantom, steps=2), tmp_path / "run")
    second_cfg = replace(
        _config(phantom, steps=2, ema_decay=0.9, seed=BUNDLED_CONTINUE_SEED),
        init=str(first.checkpoint),
    )
    second = train(second_cfg, tmp_path / "continued")
    rec1, rec2 = stage_record(tmp_path / "run"), stage_record(tmp_path / "continued")
    assert "init" not in rec1 and rec2["init"] == "the previous stage's last checkpoint"
    assert rec1["steps"] == rec2["steps"] == 2 and rec2["ema_decay"] == 0.9
    assert rec1["train_seconds"] > 0 and rec2["train_seconds"] > 0
    start = load_checkpoint(first.checkpoint)[0].state_dict()
    end = load_checkpoint(second.checkpoint)[0].state_dict()
    assert any(not torch.equal(v, end[k]) for k, v in start.items())  # it trained on
    # ... from stage 1's weights: nearer them than the seeded weights it would start from alone
    fresh = build_model(replace(second_cfg, init=None))[0].state_dict()

    def dist(a, b):
        return sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a)

    assert dist(end, start) < 0.5 * dist(end, fresh)


def test_runs_started_before_new_options_still_resume(phantom, tmp_path):
    """A run.json written before ema_decay etc. existed reads them as their defaults."""
    cfg = _config(phantom, steps=3, batch_size=1, holdout_slices=())
    train(cfg, tmp_path / "run", max_steps_this_call=2)
    run_json = tmp_path / "run" / "run.json"
    old = {
        k: v
        for k, v in json.loads(run_json.read_text()).items()
        if k
        not in (
            "ema_decay",
            "loss_weighting",
            "snr_gamma",
            "keep_every",
            "gene_balance",
            "rarity_cap",
        )
    }
    run_json.write_text(json.dumps(old))
    assert train(cfg, tmp_path / "run").step == 3


def test_learning_curve_measures_raw_and_ema_per_cpu_hour(phantom, tmp_path, capsys):
    """benchmarks/learning_curve.py on a 2-step run: a point per kept checkpoint, both weights."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_curve.py"
    spec = importlib.util.spec_from_file_location("learning_curve", path)
    lc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lc)
    cfg = _config(phantom, steps=2, batch_size=1, ema_decay=0.9, checkpoint_every=1, keep_every=1)
    train(cfg, tmp_path / "run")
    rows = lc.curve(tmp_path / "run", loss_crops=2, gene_crops=1, ddim_steps=2)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert "ema" not in rows[0] and all("ema" in r for r in rows[1:])
    assert 0 < rows[1]["cpu_h"] < rows[2]["cpu_h"] and rows[2]["cpu_exact"]
    for r in rows[1:]:
        for which in ("raw", "ema"):
            assert np.isfinite(r[which]["heldout"]) and -1 <= r[which]["dapi_r"] <= 1
    assert rows[1]["raw"]["heldout"] != rows[1]["ema"]["heldout"]
    capsys.readouterr()
    assert lc.main(["--run", str(tmp_path / "run"), "--gene-crops", "0", "--loss-crops", "1",
                    "--no-initial", "--json", str(tmp_path / "lc.json")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "heldout" in printed and "lowest held-out loss" in printed and " ema " in printed
    assert [r["step"] for r in json.loads((tmp_path / "lc.json").read_text())] == [1, 2]


# --------------------------------------------------------------------------- convert-checkpoint


def test_convert_checkpoint_cli(tmp_path, capsys):
    dst = tmp_path / "converted"
    assert main(["convert-checkpoint", str(FIXTURES / "checkpoint.ckpt"), str(dst),
                 "--genes-from-panel", "609882"]) == 0  # fmt: skip
    model, info = load_checkpoint(dst)
    ref, _ = import_published_checkpoint(FIXTURES / "checkpoint.ckpt")
    assert info.gene_names == GenePanel.published("609882", info.config.n_genes).names
    assert info.provenance["converted_from"] == "checkpoint.ckpt"
    sa, sb = model.state_dict(), ref.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)
    capsys.readouterr()
    code = main(["convert-checkpoint", str(FIXTURES / "checkpoint.ckpt"), str(tmp_path / "x"),
                 "--n-genes", "13"])  # fmt: skip
    assert code == 2 and "13 gene names for a model of 12" in capsys.readouterr().err
