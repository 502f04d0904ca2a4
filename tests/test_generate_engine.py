"""Generation engine: plan geometry, noise, gene windows, tiled == global, determinism, ROI API."""

import numpy as np
import pytest
import torch

from _engine_helpers import run_blocks
from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.generate import (
    PATCH_PX,
    GenerationPlan,
    GeneSource,
    create_state_arrays,
    generate_global,
    generate_roi,
    initial_state,
    patch_noise,
    run_unit,
    snap_region,
    state_index,
)
from napari_teramind.model import ModelConfig, TeraMindUNet
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore, OverwriteRefused

# 5 slices: an odd stack, so the last pair (4, 5) reaches outside it
SPEC = PhantomSpec(seed=5, n_slices=5, height=192, width=320)
# region of 2 x 3 aligned patches touching the top canvas edge: the halo leaves the canvas
REGION = (0, 128, 64, 256)
SLICES = [0, 4]  # the first and the last slice: gene windows -1..2 and 3..6
STEPS = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "phantom.zarr"
    return write_phantom(path, SPEC, workers=1, executor="thread")


@pytest.fixture(scope="module")
def gene_names(store):
    # a subset of the panel, out of order, plus one gene the store lacks
    return [*reversed(store.panel.names[:6]), "NotInPanel"]


@pytest.fixture(scope="module")
def model(gene_names):
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_genes=len(gene_names),
        model_channels=4,
        channel_mult=(1, 1, 1, 2),
        num_res_blocks=1,
        embed_channels=8,
        gene_map_channels=(4, 4, 4),
    )
    return TeraMindUNet(cfg).eval()


@pytest.fixture(scope="module")
def plan(store):
    return GenerationPlan(store.shape, REGION, SLICES, block_px=64, seed=7, steps=STEPS)


@pytest.fixture(scope="module")
def reference(plan, model, store, gene_names):
    return generate_global(plan, model, store, gene_names=gene_names)


# ---------------------------------------------------------------------------- plan
def test_plan_geometry(store, plan):
    assert plan.pairs == (0, 2)
    assert plan.pair_slices(1) == (4, 5)
    assert plan.gene_slices(0) == (-1, 0, 1, 2)
    assert plan.gene_slices(1) == (3, 4, 5, 6)
    assert plan.written_slices(1) == (4,)  # slice 5 is outside the stack
    assert plan.block_grid == (2, 3)
    assert plan.n_blocks == 2 * 6 and plan.n_units == STEPS * 12
    cover = np.zeros((2, plan.height, plan.width), int)
    for b in plan.blocks:
        cover[b.pair, b.y0 : b.y1, b.x0 : b.x1] += 1
    assert (cover == 1).all()
    big = plan.with_block_px(128)
    assert [b.shape for b in big.blocks[:3]] == [(128, 128), (128, 64), (128, 128)]
    assert big.state_chunks == (1, 4, 128, 128)
    assert GenerationPlan.from_dict(big.to_dict()) == big
    assert plan.output_chunk_safe(64) and not plan.output_chunk_safe(512)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"region": (0, 100, 0, 128)}, "multiples of 64"),
        ({"region": (8, 72, 0, 64)}, "gene block"),
        ({"region": (0, 320, 0, 64)}, "inside the 192 x 320"),
        ({"block_px": 100}, "multiple of 64"),
        ({"slices": [5]}, "outside the stack"),
        ({"slices": []}, "no slices"),
    ],
)
def test_plan_rejects_bad_input(store, kwargs, match):
    args = {"canvas": store.shape, "region": REGION, "slices": SLICES, **kwargs}
    with pytest.raises(ValueError, match=match):
        GenerationPlan(**args)


def test_snap_region():
    assert snap_region((10, 100, 70, 130), 256, 384) == (0, 128, 64, 192)
    assert snap_region((200, 300, 0, 500), 256, 384) == (192, 256, 0, 384)


# ---------------------------------------------------------------------------- noise, genes
def test_noise_is_a_function_of_seed_slice_and_global_patch(store, plan):
    a = patch_noise(7, 4, 64, 128)
    assert a.shape == (2, PATCH_PX, PATCH_PX) and a.dtype == np.float32
    assert np.array_equal(a, patch_noise(7, 4, 64, 128))
    assert not np.array_equal(a, patch_noise(8, 4, 64, 128))
    assert not np.array_equal(a, patch_noise(7, 3, 64, 128))
    assert not np.array_equal(a, patch_noise(7, 4, 64, 192))
    full = initial_state(plan, 1, -32, 160, -32, 224)
    # windows cut anywhere agree with the full window; zero outside the region (halo rule)
    part = initial_state(plan, 1, 40, 100, 10, 150)
    assert np.array_equal(part, full[:, 72:132, 42:182])
    assert (full[:, :32] == 0).all() and (full[:, -32:] == 0).all() and (full[..., :32] == 0).all()
    # channel order [DAPI 4, DAPI 5, PolyT 4, PolyT 5]; region origin (0, 64) in store px
    assert np.array_equal(full[[0, 2], 32 + 64 : 32 + 128, 32 + 64 : 32 + 128], a)
    # another region with the same patch grid sees the same noise at the same store px
    other = GenerationPlan(store.shape, (64, 192, 128, 320), [4], seed=7)
    assert np.array_equal(initial_state(other, 0, 0, 64, 0, 64)[[0, 2]], a)


def test_gene_window_alignment_and_padding(store, plan, gene_names):
    src = GeneSource(store, gene_names)
    assert src.missing == ("NotInPanel",)
    win = src.window(plan, 0, -32, 160, -32, 224)  # pair (0, 1): gene slices -1..2
    assert win.shape == (len(gene_names), 4, 12, 16)
    counts = store.zarr_array("genes")[:]  # (G, z, yb, xb)
    assert (win[:, 0] == 0).all()  # slice -1 is outside the stack
    assert (win[-1] == 0).all()  # missing gene zero-filled
    assert (win[:, :, :2] == 0).all()  # rows above the canvas
    for g, name in enumerate(gene_names[:-1]):
        gi = store.panel.index(name)
        # halo rows/cols inside the canvas carry real counts, also left of the region
        np.testing.assert_array_equal(win[g, 1:, 2:, :], counts[gi, 0:3, 0:10, 2:18])
    assert win.sum() > 0
    last = src.window(plan, 1, 0, 64, 0, 64)  # gene slices 3..6 of a 5-slice stack
    assert (last[:, 2:] == 0).all() and last[:, :2].sum() > 0
    blind = GeneSource(store, gene_names, gene_blind=True).window(plan, 0, 0, 64, 0, 64)
    assert (blind == 0).all()
    with pytest.raises(ValueError, match="none of the model's"):
        GeneSource(store, ["A", "B"])


# ---------------------------------------------------------------------------- engine
def test_v_model_tiles_equal_its_global_pass(plan, model, store, gene_names, reference, tmp_path):
    """A velocity-predicting model goes through the same engine (outputs converted to eps)."""
    v_model = TeraMindUNet(model.config.replace(prediction="v")).eval()
    v_model.load_state_dict(model.state_dict())
    v_reference = generate_global(plan, v_model, store, gene_names=gene_names)
    x0 = run_blocks(plan.with_block_px(128), v_model, store, gene_names, tmp_path, "reverse")
    assert np.abs(x0 - v_reference).max() < 2e-5
    assert np.abs(v_reference - reference).max() > 0.1  # the same weights read as v differ


def test_tiled_equals_global_and_is_bitwise_deterministic(
    plan, model, store, gene_names, reference, tmp_path
):
    assert reference.shape == plan.state_shape and np.isfinite(reference).all()
    runs = [
        (64, "forward"),
        (128, "reverse"),
        (192, "shuffle"),  # one block per pair: the whole region
    ]
    results = []
    for block_px, order in runs:
        p = plan.with_block_px(block_px)
        x0, states = run_blocks(
            p, model, store, gene_names, tmp_path / f"b{block_px}", order, return_states=True
        )
        assert np.abs(x0 - reference).max() < 2e-5, (block_px, np.abs(x0 - reference).max())
        results.append(x0)
        # the final state array holds x_T-steps, equal to x0 (abar_prev = 1 at the last step)
        np.testing.assert_array_equal(np.asarray(states[state_index(p.steps - 1)[1]][:]), x0)
    for other in results[1:]:
        assert np.array_equal(results[0], other)
    # the generation is not trivial: pairs and seeds differ, values are in range
    assert not np.array_equal(results[0][0], results[0][1])
    assert np.abs(results[0]).max() <= 1 and results[0].std() > 0.1


def test_block_writes_own_chunks(plan, tmp_path):
    p = plan.with_block_px(128)
    state = create_state_arrays(p, tmp_path)[0]
    chunk_sets = []
    for b in p.blocks:
        ys = range(b.y0 // 128, -(-b.y1 // 128))
        xs = range(b.x0 // 128, -(-b.x1 // 128))
        chunk_sets.append({(b.pair, y, x) for y in ys for x in xs})
    assert state.chunks == (1, 4, 128, 128)
    assert all(len(c) == 1 for c in chunk_sets)
    assert len(set().union(*chunk_sets)) == len(chunk_sets)


def test_seam_statistic(reference):
    """Gradient across the 64 px patch and block borders vs inside patches.

    On the random test model (no trained model here) the output is noise-like; this checks that
    the collage construction adds no edge of its own at patch or block borders.
    """
    dy = np.abs(np.diff(reference, axis=-2))
    dx = np.abs(np.diff(reference, axis=-1))
    by = np.arange(1, reference.shape[-2]) % PATCH_PX == 0
    bx = np.arange(1, reference.shape[-1]) % PATCH_PX == 0
    border = np.concatenate([dy[..., by, :].ravel(), dx[..., bx].ravel()]).mean()
    inside = np.concatenate([dy[..., ~by, :].ravel(), dx[..., ~bx].ravel()]).mean()
    assert abs(border / inside - 1) < 0.05, border / inside


def test_run_unit_checks_its_inputs(plan, model, store, gene_names):
    with pytest.raises(ValueError, match="gene_names"):
        run_unit(plan, model, store, None, None, 0, 0)
    with pytest.raises(ValueError, match="state_in"):
        run_unit(plan, model, store, None, None, 1, 0, gene_names=gene_names)
    with pytest.raises(IndexError):
        run_unit(plan, model, store, None, None, STEPS, 0, gene_names=gene_names)


# ---------------------------------------------------------------------------- ROI API
def test_generate_roi_writes_a_generated_store(store, model, gene_names, reference, tmp_path):
    out_path = tmp_path / "gen.zarr"
    items = list(
        generate_roi(
            store, model, REGION, SLICES, seed=7, steps=STEPS, gene_names=gene_names,
            output=out_path, block_px=128, batch_size=2, workdir=tmp_path / "work",
            scheme="collage",
        )
    )  # fmt: skip
    assert len(items) == STEPS * 2 * 2
    assert [i.units_done for i in items] == list(range(1, len(items) + 1))
    assert all(i.output is None for i in items[:-1]) and items[-1].output == out_path
    assert items[-1].missing_genes == ("NotInPanel",)
    assert items[0].preview.shape == (2, 2, 128, 192) and items[0].preview.dtype == np.uint8
    assert list((tmp_path / "work").iterdir()) == []  # temporary state removed
    out = BrainStore.open(out_path)
    assert out.kind == "generated" and out.shape == store.shape and out.panel == store.panel
    images = np.asarray(out.images())
    y0, y1, x0, x1 = REGION
    expected = np.clip((reference + 1) * 127.5, 0, 255).astype(np.uint8)
    got = images[:, SLICES, y0:y1, x0:x1]
    # slice 0 = DAPI/PolyT channels 0/2 of pair 0; slice 4 = channels 0/2 of pair 1
    want = np.stack([expected[:, 0], expected[:, 2]])  # (2 stains, 2 slices, h, w)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.array_equal(got, items[-1].preview)
    outside = images.copy()
    outside[:, SLICES, y0:y1, x0:x1] = 0
    assert (outside == 0).all()  # nothing outside the region or the requested slices
    rec = out.metadata["generated_regions"][-1]
    assert rec["region"] == list(REGION) and rec["seed"] == 7 and rec["sampler"] == "ddim"
    assert rec["steps"] == STEPS and len(rec["model_sha256"]) == 64
    assert rec["source_store"].endswith("phantom.zarr")
    np.testing.assert_array_equal(
        np.asarray(out.genes()[:, 4, 0:8, 4:16]), np.asarray(store.genes()[:, 4, 0:8, 4:16])
    )


def test_generate_roi_cancel_and_errors(store, model, gene_names, tmp_path):
    out_path = tmp_path / "gen.zarr"
    gen = generate_roi(
        store, model, REGION, [1], seed=1, steps=STEPS, gene_names=gene_names,
        output=out_path, block_px=256, batch_size=2, workdir=tmp_path / "work",
    )  # fmt: skip
    first = next(gen)
    assert first.units_done == 1 and first.units_total == STEPS
    gen.close()  # cancel between blocks
    assert list((tmp_path / "work").iterdir()) == []
    out = BrainStore.open(out_path)
    assert "generated_regions" not in out.metadata
    assert not np.asarray(out.images()).any()
    with pytest.raises(ValueError, match="sampler"):
        generate_roi(store, model, REGION, [1], sampler="ddpm", gene_names=gene_names)
    with pytest.raises(OverwriteRefused, match="it is the source store"):
        generate_roi(store, model, REGION, [1], gene_names=gene_names, output=store.path)
