"""Sampling schemes: moved and fused grids keep tiled == global, resumability and the ROI API."""

import itertools

import numpy as np
import pytest

from _engine_helpers import run_blocks
from _model_helpers import micro_model, single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.evaluate import seam_ratio
from napari_teramind.generate import (
    SCHEMES,
    GenerationPlan,
    generate_global,
    generate_roi,
    step_grids,
)
from napari_teramind.generate.schemes import DEFAULT_SCHEME, FUSED_STEPS, QUAD_STEPS, fusion_weight
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore

SPEC = PhantomSpec(seed=5, n_slices=3, height=192, width=320)
REGION = (0, 128, 64, 256)  # touches the top canvas edge
SLICES = [0, 2]
STEPS = 4  # shifted-fused: the last 3 fuse two grids; shifted-fused-4: steps 1-2 fuse four
NEW = [s for s in SCHEMES if s != "collage"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("sch") / "p.zarr", SPEC, workers=1,
                         executor="thread")  # fmt: skip


@pytest.fixture(scope="module")
def gene_names(store):
    return list(store.panel.names[:5])


@pytest.fixture(scope="module")
def model(gene_names):
    return micro_model(len(gene_names))


def plan_of(store, scheme, block_px=64):
    return GenerationPlan(store.shape, REGION, SLICES, block_px=block_px, seed=3, steps=STEPS,
                          scheme=scheme)  # fmt: skip


def test_scheme_grids():
    assert step_grids("collage", 0, 15).passes == ((0, 0),)
    frames = [step_grids("shifted", s, 15).frame for s in range(15)]
    assert frames[-1] == (0, 0)  # the last step writes the output on the plan's blocks
    assert all(a != b for a, b in itertools.pairwise(frames))  # seams move each step
    assert all(p % 16 == 0 and 0 <= p < 64 for f in frames for p in f)  # whole gene blocks
    fused = [step_grids("shifted-fused", s, 15) for s in range(15)]
    assert [len(g.passes) for g in fused] == [1] * (15 - FUSED_STEPS) + [2] * FUSED_STEPS
    g = fused[-1]
    assert g.passes[0] == g.frame and g.passes[1] == (16, 16)
    # the two grids' weights: ~0 beside a grid's own seams, and they never both vanish
    wa, wb = fusion_weight(g.passes[0], 0, 64, 0, 64), fusion_weight(g.passes[1], 0, 64, 0, 64)
    assert wa[0, 16] < 0.01 and wa[31, 16] < 0.01 and wa[16, 16] > 0.99
    assert wb[16, 0] < 0.01 and wb[0, 0] > 0.99
    assert (wa + wb).min() > 0
    # four grids in the steps before the last: a pixel on one grid's row seam and the other
    # diagonal grid's column seam (where two grids are both on a seam) gets the grids with no
    # seam there; the weights of the four sum to one
    quad = [step_grids("shifted-fused-4", s, 15) for s in range(15)]
    assert [len(g.passes) for g in quad] == [1] * (14 - QUAD_STEPS) + [4] * QUAD_STEPS + [1]
    assert [g.frame for g in quad] == frames  # the same frames as "shifted"
    g = quad[-2]
    assert set(g.passes) == {((g.frame[0] + a) % 64, (g.frame[1] + b) % 64)
                             for a in (0, 16) for b in (0, 16)}  # fmt: skip
    w = [fusion_weight(q, 0, 64, 0, 64) for q in g.passes]
    assert np.allclose(sum(w), 1, atol=1e-5)
    f0, f1 = g.frame, ((g.frame[0] + 16) % 64, (g.frame[1] + 16) % 64)
    row = (-f0[0]) % 32  # on the frame grid's row seam ...
    col = (-f1[1]) % 32  # ... and the diagonal grid's column seam
    wa, wb = fusion_weight(f0, 0, 64, 0, 64), fusion_weight(f1, 0, 64, 0, 64)
    assert wa[row, col] / (wa[row, col] + wb[row, col]) > 0.2  # two grids: both on a seam
    clear = [wq[row, col] for q, wq in zip(g.passes, w, strict=True) if q not in (f0, f1)]
    assert max(clear) > 0.99  # four: one grid has no seam there and takes the pixel
    assert DEFAULT_SCHEME == "shifted-fused-4"
    with pytest.raises(ValueError, match="choose one of"):
        step_grids("diagonal", 0, 15)


def test_plan_scheme_geometry_and_serialisation(store):
    plan = plan_of(store, "shifted", 128)
    assert plan.state_shape == (2, 4, 128 + 64, 192 + 64)
    assert plan_of(store, "collage").state_shape == (2, 4, 128, 192)
    assert GenerationPlan.from_dict(plan.to_dict()) == plan
    old = {k: v for k, v in plan.to_dict().items() if k != "scheme"}
    assert GenerationPlan.from_dict(old).scheme == "collage"  # plans before schemes
    py, px = plan.grids(0).frame
    assert plan.extent(0, 0) == (-py, 128 + (64 if py else 0) - py, -px, 128 - px)
    assert plan.extent(STEPS - 1, 1) == (0, 128, 128, 192)
    with pytest.raises(ValueError, match="sampling scheme"):
        plan_of(store, "bogus")


@pytest.mark.parametrize("scheme", NEW)
def test_tiled_equals_global_bitwise_across_blocks_and_orders(
    scheme, store, model, gene_names, tmp_path
):
    plan = plan_of(store, scheme)
    reference = generate_global(plan, model, store, gene_names=gene_names)
    a = run_blocks(plan, model, store, gene_names, tmp_path / "a")
    b = run_blocks(plan.with_block_px(128), model, store, gene_names, tmp_path / "b", "reverse")
    c = run_blocks(plan.with_block_px(192), model, store, gene_names, tmp_path / "c", "shuffle")
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert np.abs(a - reference).max() < 2e-5
    collage = generate_global(plan_of(store, "collage"), model, store, gene_names=gene_names)
    assert np.abs(a - collage).max() > 1e-3  # the scheme really moves the grids


def test_roi_records_the_scheme_and_equals_the_engine(store, model, gene_names, tmp_path):
    plan = plan_of(store, "shifted-fused")
    reference = generate_global(plan, model, store, gene_names=gene_names)
    items = list(generate_roi(store, model, REGION, SLICES, seed=3, steps=STEPS,
                              gene_names=gene_names, output=tmp_path / "g.zarr", block_px=128,
                              batch_size=2, scheme="shifted-fused"))  # fmt: skip
    out = BrainStore.open(items[-1].output)
    assert out.metadata["generated_regions"][-1]["scheme"] == "shifted-fused"
    y0, y1, x0, x1 = REGION
    got = np.asarray(out.images())[:, SLICES, y0:y1, x0:x1]
    want = np.clip((reference + 1) * 127.5, 0, 255).astype(np.uint8)
    want = np.stack([want[:, 0], want[:, 2]])
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.array_equal(got, items[-1].preview)
    with pytest.raises(ValueError, match="sampling scheme"):
        next(generate_roi(store, model, REGION, SLICES, gene_names=gene_names, scheme="x"))


def test_seam_ratio_sees_a_lattice_and_not_a_smooth_image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    smooth = 128 + 60 * np.sin(yy / 9.0) * np.cos(xx / 13.0) + rng.normal(0, 3, (256, 256))
    smooth = np.clip(smooth, 0, 255).astype(np.uint8)
    flat = seam_ratio(smooth)
    assert flat.steps.shape == (64,) and flat.ratio < 1.1
    # patches with their own offsets: steps at 0 mod 64 (and 0 mod 32 inside) jump
    offsets = rng.normal(0, 12, (8, 8))
    lattice = smooth + np.kron(offsets, np.ones((32, 32)))
    lattice = np.clip(lattice, 0, 255).astype(np.uint8)
    s = seam_ratio(lattice)
    assert s.ratio > 2 and s.worst in (0, 32) and s.at(0) > 2 and s.at(32) > 2
    assert s.at(16) < 1.1
    # an origin off the lattice moves the residues
    moved = seam_ratio(lattice[16:, 16:], origin=(16, 16))
    assert moved.worst in (0, 32)
    with pytest.raises(ValueError, match="too small"):
        seam_ratio(smooth[:32, :32])


def test_job_resumes_with_its_scheme_and_old_specs_mean_collage(store, model, gene_names,
                                                                tmp_path):  # fmt: skip
    """A stopped default-scheme job resumes to the uninterrupted result; no scheme = collage."""
    import json

    from napari_teramind.generate.executors import iter_job, run_job
    from napari_teramind.generate.job import JobDir, JobSpec, create_job
    from napari_teramind.model import save_checkpoint

    save_checkpoint(tmp_path / "model", model, None, gene_names)

    def spec(out, **kw):
        return JobSpec(source=str(store.path), model=str(tmp_path / "model"), region=REGION,
                       slices=tuple(SLICES), output=str(out), seed=3, steps=STEPS,
                       block_px=128, **kw)  # fmt: skip

    def images(path):
        y0, y1, x0, x1 = REGION
        return np.asarray(BrainStore.open(path).images()[:, SLICES, y0:y1, x0:x1])

    assert JobSpec.from_dict(spec("x").to_dict()).scheme == DEFAULT_SCHEME
    # the per-block engine on disk state, uninterrupted ...
    whole = create_job(tmp_path / "whole", spec(tmp_path / "whole.zarr", memory_budget=0))
    run_job(whole.path)
    # ... equals resident spans (a checkpoint after every step), stopped and resumed
    job = create_job(tmp_path / "job", spec(tmp_path / "out.zarr", checkpoint_every=1))
    assert job.plan["generation"]["scheme"] == DEFAULT_SCHEME
    assert job.plan["units"]["kind"] == "pairs" and job.units_total == 2 * STEPS
    it = iter_job(job.path)
    for p in it:
        if p.units_done == 3:  # inside span 1 (2 pairs per span)
            break
    it.close()
    run_job(job.path)  # resume
    assert np.array_equal(images(tmp_path / "out.zarr"), images(tmp_path / "whole.zarr"))
    rec = BrainStore.open(tmp_path / "out.zarr").metadata["generated_regions"][-1]
    assert rec["scheme"] == DEFAULT_SCHEME
    # a spec.json written before schemes existed resumes with the published scheme
    old = create_job(tmp_path / "old", spec(tmp_path / "old.zarr", scheme="collage"))
    raw = json.loads((old.path / "spec.json").read_text())
    del raw["scheme"], raw["plan"]["generation"]["scheme"]
    (old.path / "spec.json").write_text(json.dumps(raw))
    assert JobDir(old.path).spec.scheme == "collage"
    run_job(old.path)
    want = generate_global(plan_of(store, "collage"), model, store, gene_names=gene_names)
    want = np.clip((want + 1) * 127.5, 0, 255).astype(np.uint8)
    got = images(tmp_path / "old.zarr")
    assert np.abs(got.astype(int) - np.stack([want[:, 0], want[:, 2]]).astype(int)).max() <= 1
