"""benchmarks/interactions.py: its perturbation score, on the library's interaction_map.

A small interaction phantom (4 slices of 256 x 384 px, so the held-out pair 2-3 exists) and a
seeded random tiny model; one 64 px region, one seed, 2 DDIM steps.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
from napari_teramind.phantom import PhantomSpec, planted_mask, write_phantom
from napari_teramind.phantom.interactions import INTERACTION_INDEX, INTERACTION_PAIRS

SPEC = PhantomSpec(seed=0, n_slices=4, height=256, width=384, n_genes=6, interactions=True)


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "interactions.py"
    spec = importlib.util.spec_from_file_location("bench_interactions", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_welch_t(bench):
    assert bench.welch_t(np.zeros(5), np.zeros(7)) == 0.0  # nothing anywhere: no signal
    assert bench.welch_t(np.array([1.0, 1.2, 0.8]), np.array([0.1, 0.0, -0.1])) > 5
    assert bench.welch_t(np.array([0.0, 0.1]), np.array([1.0, 1.1])) < 0
    assert np.isnan(bench.welch_t(np.array([1.0]), np.zeros(4)))


def test_regions_come_from_the_truth_alone(bench):
    """In tissue on both scored slices, not overlapping, about half both-high."""
    for name in ("AND1", "CTRL1"):
        pair = INTERACTION_INDEX[name]
        regions = bench.pair_regions(SPEC, pair, 2, side=64)
        assert len(regions) == 2
        (a0, a1, b0, b1), (c0, c1, d0, d1) = regions
        assert a1 - a0 == 64 and b1 - b0 == 64
        assert a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0  # disjoint
        for y0, y1, x0, x1 in regions:
            for z in bench.SCORE_SLICES:
                win = (y0, x0, y1 - y0, x1 - x0)
                assert bench._tissue_blocks(SPEC, z, win).mean() >= 0.95
                frac = planted_mask(SPEC, name, z=z, window=win).mean()
                assert 0.0 < frac < 1.0


def test_perturbation_score_runs_on_the_engine(bench, tmp_path):
    store = write_phantom(tmp_path / "p.zarr", SPEC, workers=1, executor="thread")
    direction, truth = bench.planted_direction(store)
    assert direction in (-1.0, 1.0) and sorted(truth) == sorted(p.name for p in INTERACTION_PAIRS)
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset("tiny", len(SPEC.gene_names))).eval()
    save_checkpoint(tmp_path / "model", model, None, list(SPEC.gene_names))
    pair = INTERACTION_INDEX["AND1"]
    regions = bench.pair_regions(SPEC, pair, 1, side=64)
    work = tmp_path / "work"
    row = bench.perturbation_scores(store.path, str(tmp_path / "model"), pair, regions, 1, 2,
                                    work, direction)  # fmt: skip
    assert sorted(work.joinpath("r0-s0").glob("*.zarr")) == [
        work / "r0-s0" / f"{n}.zarr" for n in ("00", "0B", "A0", "AB")
    ]
    assert row["blocks_inside"] > 0 and row["blocks_outside"] > 0
    assert row["blocks_inside"] + row["blocks_outside"] <= 2 * 16  # 2 slices x 4 x 4 blocks
    for key in ("perturbation", "perturbation_signed", "perturbation_mean_abs"):
        assert np.isfinite(row[key])
    assert 0.0 <= row["perturbation_joint_share"] <= 1.0
    # resumable: the finished generations are reused and give the same score
    again = bench.perturbation_scores(store.path, str(tmp_path / "model"), pair, regions, 1, 2,
                                      work, direction)  # fmt: skip
    assert again == row


def test_joint_share_tells_an_and_rule_from_additive_redundant_and_noise(bench):
    """The reference cases of ``perturbation_joint_share`` (``effect_sums``)."""
    rng = np.random.default_rng(0)
    base, d = rng.uniform(50, 100, (32, 32)), 10.0
    inside = np.ones((2, 2), bool)

    def share(ab, a0, ob, oo):
        e = bench.effect_sums({"AB": ab, "A0": a0, "0B": ob, "00": oo}, inside)
        return e["I"] / sum(e.values())

    assert share(base + d, base, base, base) == pytest.approx(1.0)  # AND: only jointly
    assert share(base + 2 * d, base + d, base + d, base) == pytest.approx(0.0)  # additive
    assert share(base, base, base, base - d) == pytest.approx(1 / 3)  # redundant genes
    noise = [base + rng.normal(0, 3, base.shape) for _ in range(4)]
    assert 0.3 < share(*noise) < 0.5  # independent responses of one size


def test_report_pools_the_phantom_seeds_and_gives_each_its_own_auc(bench, tmp_path):
    """AND over control AUC: over every scored layout together, and per phantom seed."""
    rows = []
    for ps, (and_v, ctrl_v) in {0: ((3, 4), (1, 2)), 1: ((1, 2), (3, 4))}.items():
        for v, kind in [(a, "and") for a in and_v] + [(c, "control") for c in ctrl_v]:
            rows.append({"model": "m", "kind": kind, "phantom_seed": ps, "perturbation": v})
    rows.append({"model": "m", "kind": "additive", "phantom_seed": 0, "perturbation": 99})
    bench._report(tmp_path, 5, rows, ["m"], {})
    auc = json.loads((tmp_path / "score.json").read_text())["auc"]
    assert auc["m perturbation phantom-seed0"] == 1.0
    assert auc["m perturbation phantom-seed1"] == 0.0
    assert auc["m perturbation"] == 0.5  # pooled: 8 of 16 comparisons; additive pairs left out
    # one seed (every earlier score.json): only the pooled key
    bench._report(tmp_path, 5, rows[:4], ["m"], {})
    auc = json.loads((tmp_path / "score.json").read_text())["auc"]
    assert auc == {"m perturbation": 1.0}


@pytest.mark.parametrize("fraction", [0.5, 0.3])
def test_phenotype_by_gene_count_is_the_planted_truth(bench, fraction):
    """The AND phenotype's share of blocks, overall and by how many genes are high."""
    from napari_teramind.phantom.interactions import high_states

    spec = PhantomSpec(
        seed=0, n_slices=1, height=512, width=768, n_genes=6, interactions=True,
        interaction_high_fraction=fraction,
    )  # fmt: skip
    table = bench.phenotype_by_gene_count(spec)
    ys = np.arange(8, 512, 16, dtype=np.float64)[:, None]
    xs = np.arange(8, 768, 16, dtype=np.float64)[None, :]
    states = np.asarray(high_states(0, ys + 0 * xs, xs + 0 * ys, fraction))
    ands = [k for k, p in enumerate(INTERACTION_PAIRS) if p.kind == "and"]
    pheno = np.any([states[2 * k] & states[2 * k + 1] for k in ands], axis=0)
    assert table["all"] == pytest.approx(pheno.mean())
    # the design's coverage, 1 - (1 - f^2)^4, within the sampling error of one small canvas
    assert abs(table["all"] - (1 - (1 - fraction**2) ** 4)) < 0.12
    bins = [k for k in table if k != "all"]
    assert bins and all(0.0 <= table[k] <= 1.0 for k in bins)
    # more high genes, more phenotype: the count alone predicts it (the confound measured)
    lo, hi = (
        min(bins, key=lambda k: int(k.split("-")[0])),
        max(bins, key=lambda k: int(k.split("-")[0])),
    )
    assert table[hi] > table[lo]


def test_train_on_several_layouts_of_one_design(bench, tmp_path, monkeypatch):
    """``train --layouts 0,3 --high-fraction 0.3 --preset small --ema-decay 0.9``: one run
    over two seeds of the design, of the preset asked for, whose EMA weights score uses."""
    monkeypatch.setattr(bench, "SPEC", SPEC)  # the benchmark's phantom at test size
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--steps", "2", "--cooldown", "1", "--crop", "64",
            "--batch", "1", "--checkpoint-every", "2", "--threads", "1",
            "--preset", "small", "--ema-decay", "0.9",
            "--layouts", "0,3", "--high-fraction", "0.3"]  # fmt: skip
    bench.main(args)
    assert bench._trained_layouts(out) == {0, 3}
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["preset"] == "small" and run["ema_decay"] == 0.9
    from napari_teramind.train.loop import checkpoint_weights, latest_checkpoint

    assert checkpoint_weights(latest_checkpoint(out / "run")[1])[1] == "ema"
    from napari_teramind.phantom import spec_of

    design = spec_of(out / "phantom-seed3.zarr")
    assert design.seed == 3 and design.interaction_high_fraction == 0.3
    assert spec_of(out / "phantom.zarr").interaction_high_fraction == 0.3
    with pytest.raises(SystemExit, match="must include seed 0"):
        bench.main([*args[:-4], "--layouts", "3"])
    with pytest.raises(SystemExit, match="holds another phantom"):  # never mixes two designs
        bench.main([*args[:-2], "--high-fraction", "0.4"])
