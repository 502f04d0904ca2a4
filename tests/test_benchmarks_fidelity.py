"""benchmarks/fidelity.py: its SN/VTA large-cell count and its side-by-side models.

The count runs on real renders of the default-size held-out phantom (seed 1) and on labels
drawn by hand; the models are the bundled checkpoint and the seeded random null.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.phantom import PhantomSpec, planted_mask

SPEC = PhantomSpec(seed=1)


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity.py"
    spec = importlib.util.spec_from_file_location("bench_fidelity", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def densest_window(region: str, z: int = 2, side: int = 256) -> tuple[int, int, int, int]:
    """The 64-px aligned ``side`` px box of slice ``z`` holding most of ``region``."""
    k = side // 16
    density = uniform_filter(planted_mask(SPEC, region, z=z).astype(float), k)
    iy, ix = np.unravel_index(np.argmax(density), density.shape)
    y0 = max(0, (iy - k // 2) * 16 // 64 * 64)
    x0 = max(0, (ix - k // 2) * 16 // 64 * 64)
    return y0, y0 + side, x0, x0 + side


def test_large_cells_counts_big_labels_centred_in_the_mask(bench):
    labels = np.zeros((64, 96), np.int32)
    yy, xx = np.mgrid[:64, :96]
    labels[(yy - 16) ** 2 + (xx - 16) ** 2 <= 36] = 1  # r 6: 113 px, in the mask
    labels[(yy - 16) ** 2 + (xx - 48) ** 2 <= 16] = 2  # r 4: 49 px, in the mask
    labels[(yy - 48) ** 2 + (xx - 80) ** 2 <= 36] = 3  # r 6, outside the mask
    mask = np.zeros((64, 96), bool)
    mask[:32] = True
    assert bench.large_cells(labels, mask) == 1
    assert bench.large_cells(labels, np.ones_like(mask)) == 2
    assert bench.large_cells(np.zeros_like(labels), mask) == 0


def test_large_cells_truth_finds_the_planted_dopa_neurons(bench):
    z = 2
    y0, y1, x0, x1 = box = densest_window("SN/VTA", z)
    window = (y0, x0, y1 - y0, x1 - x0)
    dopa = planted_mask(SPEC, "DOPA", z=z, window=window, blocks=False)
    assert dopa.mean() > 0.1
    n = bench.large_cells_truth(SPEC, z, box, dopa)
    assert n >= 10  # the SN/VTA's large dopaminergic neurons
    assert bench.large_cells_truth(SPEC, z, box, np.zeros_like(dopa)) == 0
    # cortex L5 has large pyramidal nuclei too, but no DOPA tissue: none of them counts
    y0, y1, x0, x1 = cortex = densest_window("cortex L5", z)
    none = planted_mask(SPEC, "DOPA", z=z, window=(y0, x0, 256, 256), blocks=False)
    assert not none.any()
    assert bench.large_cells_truth(SPEC, z, cortex, np.ones_like(none)) > 0
    assert bench.large_cells_truth(SPEC, z, cortex, none) == 0


def test_models_side_by_side_with_a_seeded_random_null(bench):
    (a, bundled, info), (b, rnd, rinfo), (c, rnd2, _) = bench.load_models(
        ["shipped=bundled", "random", "null=random"]
    )
    assert (a, b, c) == ("shipped", "random", "null")
    assert rnd.config == bundled.config and rinfo.gene_names == info.gene_names
    w = dict(bundled.named_parameters())
    differ = [k for k, p in rnd.named_parameters() if not torch.equal(p, w[k])]
    assert len(differ) > len(w) // 2  # a fresh network, not the bundled weights
    for (k, p), (_, q) in zip(rnd.named_parameters(), rnd2.named_parameters(), strict=True):
        assert torch.equal(p, q), k  # the same seed: the same null


def test_patch_cost_follows_the_studied_count_of_four_grid_steps(bench, monkeypatch):
    from napari_teramind.generate import schemes

    # on a whole brain (n large) the border overhang vanishes: (15 + 3 k) passes in 15 steps
    for k, ratio in ((1, 18 / 15), (2, 21 / 15)):
        monkeypatch.setattr(schemes, "QUAD_STEPS", k)
        assert bench.patch_cost("shifted-fused-4", 15, 4000) == pytest.approx(ratio, abs=2e-3)
    assert bench.patch_cost("collage", 15, 8) == 1.0
    assert bench.patch_cost("shifted-fused-4", 15, 8) > 21 / 15  # small regions pay the overhang


def test_a_fixed_region_must_be_a_square_on_the_64_px_grid(bench):
    assert bench.fixed_region(["1024", "1536", "1152", "1664"]) == (1024, 1536, 1152, 1664)
    for bad in (["0", "512", "0", "256"], ["10", "522", "0", "512"]):
        with pytest.raises(SystemExit, match="square on the 64 px grid"):
            bench.fixed_region(bad)
