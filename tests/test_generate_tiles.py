"""Tiled spans: a pair too large for memory, advanced tile by tile with a growing halo.

The engine's results never depend on how the region is cut into blocks, so a tile that
computes its grown halo at the earlier steps of a span ends with exactly the state the
per-block engine writes. Checked bit for bit for every scheme and several tile sizes and span
lengths, for a whole job (resumed after a stop), and the whole-brain figures of the defaults
(state I/O, memory, extra compute) are worked out from the geometry the job runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from _engine_helpers import run_blocks
from _model_helpers import micro_model, single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.generate import (
    SCHEMES,
    GenerationPlan,
    GeneSource,
    create_state_arrays,
    generate_global,
)
from napari_teramind.generate.resident import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_MEMORY_BUDGET,
    IOCounter,
)
from napari_teramind.generate.tiles import (
    TilePrefetcher,
    WindowState,
    _area,
    choose_tile_px,
    plan_tiles,
    run_tile_span,
    tile_geometry,
    tile_nbytes,
    tile_overhead,
    tile_state_io,
)
from napari_teramind.phantom import PhantomSpec, write_phantom

SPEC = PhantomSpec(seed=5, n_slices=3, height=256, width=384)
REGION = (0, 256, 64, 384)  # touches the top, bottom and right canvas edges
SLICES = [0, 2]
STEPS = 4


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("tiles") / "p.zarr", SPEC, workers=1,
                         executor="thread")  # fmt: skip


@pytest.fixture(scope="module")
def gene_names(store):
    return list(store.panel.names[:5])


@pytest.fixture(scope="module")
def model(gene_names):
    return micro_model(len(gene_names))


def _plan(store, scheme):
    return GenerationPlan(store.shape, REGION, SLICES, block_px=64, seed=3, steps=STEPS,
                          scheme=scheme)  # fmt: skip


def _run_tiles(plan, model, store, gene_names, tmp_path, tile_px, every, counter):
    """Every span of every tile, step-synchronous across tiles, as a job runs them."""
    states = create_state_arrays(plan, tmp_path)
    result = np.full(plan.state_shape[:2] + (plan.height, plan.width), np.nan, np.float32)
    genes = GeneSource(store, gene_names)
    for i, s0 in enumerate(range(0, plan.steps, every)):
        s1 = min(plan.steps, s0 + every)
        for tile in plan_tiles(plan, tile_px)[::-1]:  # any order within a span
            for step, blk, x0 in run_tile_span(
                plan, model, genes, tile, s0, s1, batch_size=2, counter=counter,
                state_in=states[(i - 1) % 2] if i else None,
                checkpoint=None if s1 == plan.steps else states[i % 2],
            ):  # fmt: skip
                if step == plan.steps - 1:
                    assert blk.index >= 0  # the last step computes the plan's own blocks
                    result[blk.pair, :, blk.y0 : blk.y1, blk.x0 : blk.x1] = x0
    return result


@pytest.mark.parametrize(
    ("scheme", "tile_px", "every"),
    [
        ("collage", 128, 2),
        ("shifted", 128, 3),
        ("shifted-fused", 128, 2),
        ("shifted-fused", 192, 4),
        ("shifted-fused-4", 128, 3),
    ],
)
def test_tiled_spans_equal_the_per_block_engine_bitwise(scheme, tile_px, every, store, model,
                                                   gene_names, tmp_path):  # fmt: skip
    assert scheme in SCHEMES
    plan = _plan(store, scheme)
    blocks = run_blocks(plan, model, store, gene_names, tmp_path / "blocks")
    counter = IOCounter()
    got = _run_tiles(plan, model, store, gene_names, tmp_path, tile_px, every, counter)
    assert not np.isnan(got).any()
    assert np.array_equal(got, blocks)  # the per-block engine's bytes
    # and one global pass, to float32 rounding: its single model call over every patch has
    # another batch size, and on some CPUs (AVX-512 oneDNN) a patch's result depends on that
    reference = generate_global(plan, model, store, gene_names=gene_names)
    assert np.abs(got - reference).max() < 2e-5
    # the I/O the spans did is what the geometry predicts
    per_patch_step = counter.total / (plan.n_patches * plan.steps)
    assert per_patch_step == pytest.approx(tile_state_io(plan, tile_px, every))
    # one span reads nothing back (the initial noise is computed) and writes no checkpoint
    assert (counter.read > 0 and counter.written > 0) == (every < STEPS)


def test_geometry_grows_backwards_and_stays_inside(store):
    plan = _plan(store, "shifted-fused")
    tile = plan_tiles(plan, 128)[1]  # an interior column of the first row
    geo = tile_geometry(plan, tile, 0, STEPS)
    assert [ts.step for ts in geo] == list(range(STEPS))
    assert {(b.y0, b.y1, b.x0, b.x1) for b in geo[-1].blocks} == {
        (b.y0, b.y1, b.x0, b.x1)
        for b in plan.blocks
        if b.pair == tile.pair and tile.y0 <= b.y0 < tile.y1 and tile.x0 <= b.x0 < tile.x1
    }
    areas = [sum((b.y1 - b.y0) * (b.x1 - b.x0) for b in ts.blocks) for ts in geo]
    assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1]  # the halo shrinks
    for ts in geo:  # reads never leave the region; genes may (real counts beyond it)
        y0, y1, x0, x1 = ts.reads
        assert 0 <= y0 < y1 <= plan.height and 0 <= x0 < x1 <= plan.width
    with pytest.raises(ValueError, match="multiple of block_px"):
        plan_tiles(plan, 100)
    with pytest.raises(ValueError, match="whole 64 px patches"):
        plan.sub_block(0, 0, 100, 0, 64)
    window = WindowState.zeros(plan, 0, (64, 128, 64, 128))
    with pytest.raises(IndexError, match="outside the tile's window"):
        window[0, :, 0:64, 64:128]  # a read the geometry did not provide for is a bug


def test_tiled_job_equals_the_per_block_job_and_resumes(store, model, gene_names, tmp_path):
    """A budget too small for a pair runs tiles; stopped mid-job and resumed: same bytes."""
    from napari_teramind.generate.executors import iter_job, run_job
    from napari_teramind.generate.job import JobSpec, create_job, job_status
    from napari_teramind.generate.resident import STATE_IO, resident_nbytes
    from napari_teramind.model import save_checkpoint
    from napari_teramind.store import BrainStore

    save_checkpoint(tmp_path / "model", model, None, gene_names)
    plan = _plan(store, "shifted-fused")
    n_genes = len(store.panel)
    budget = tile_nbytes(plan, 128, 2, n_genes)
    assert budget < resident_nbytes(plan, n_genes)  # one pair does not fit

    def spec(out, **kw):
        return JobSpec(source=str(store.path), model=str(tmp_path / "model"), region=REGION,
                       slices=tuple(SLICES), output=str(out), seed=3, steps=STEPS, block_px=64,
                       scheme="shifted-fused", **kw)  # fmt: skip

    def images(path):
        y0, y1, x0, x1 = REGION
        return np.asarray(BrainStore.open(path).images()[:, SLICES, y0:y1, x0:x1])

    whole = create_job(tmp_path / "whole", spec(tmp_path / "whole.zarr", memory_budget=0))
    run_job(whole.path)
    job = create_job(tmp_path / "job", spec(tmp_path / "out.zarr", memory_budget=budget,
                                            checkpoint_every=2))  # fmt: skip
    units = job.plan["units"]
    assert units["kind"] == "tiles" and units["tile_px"] == 128
    assert units["resident_nbytes"] <= budget
    n_tiles = len(plan_tiles(plan, 128))
    assert (job.n_steps, job.n_blocks) == (2, n_tiles)
    it = iter_job(job.path)
    for p in it:
        if p.units_done == n_tiles + 1:  # inside span 2: its tiles read span 1's checkpoint
            break
    it.close()
    status = job_status(job.path)
    assert status.state == "stopped"
    assert "span 2/2 (steps 3-4 of 4" in status.summary() and "tiles of 128 px" in status.summary()
    left = [t for t in plan_tiles(plan, 128) if not job.unit_done(1, t.index)]
    STATE_IO.reset()
    calls: list[tuple[int, int]] = []
    run_job(job.path, on_block=lambda done, total: calls.append((done, total)))
    # progress inside each remaining unit: 1..total block-steps of its grown geometry
    totals = sorted({t for _, t in calls})
    assert calls and all(d <= t for d, t in calls) and calls[-1][0] == calls[-1][1]
    assert sum(d == t for d, t in calls) == job.units_total - (n_tiles + 1)
    grown = {sum(len(ts.blocks) for ts in tile_geometry(plan, t, 2, STEPS))
             for t in plan_tiles(plan, 128)}  # fmt: skip
    assert set(totals) <= grown
    assert np.array_equal(images(job.spec.output), images(whole.spec.output))
    # each remaining unit read its grown window once (read ahead while the one before it
    # computed: the prefetch is used, never read twice)
    want = sum(_area(tile_geometry(plan, t, 2, STEPS)[0].reads) for t in left)
    assert STATE_IO.read == want * plan.channels * 4
    assert job_status(job.path).state == "complete"


def test_whole_brain_defaults_fit_memory_and_the_io_goal():
    """The CLI's defaults on a whole-brain slice pair (500 genes): tiles that fit 8 GiB,
    state I/O under 16 KB per output patch per step, under 15 % extra compute."""
    from napari_teramind.generate.schemes import DEFAULT_SCHEME

    plan = GenerationPlan((50, 73216, 105984), (0, 73216, 0, 105984), [0, 1], seed=0,
                          steps=15, scheme=DEFAULT_SCHEME)  # fmt: skip
    every = DEFAULT_CHECKPOINT_EVERY
    from napari_teramind.generate.job import JobSpec

    assert JobSpec("s", "m", (0, 64, 0, 64), (0,), "o").checkpoint_every == every
    tile_px = choose_tile_px(plan, every, 500, DEFAULT_MEMORY_BUDGET)
    assert tile_px is not None and tile_px < plan.width
    assert tile_nbytes(plan, tile_px, every, 500) <= DEFAULT_MEMORY_BUDGET
    assert tile_nbytes(plan, tile_px + plan.block_px, every, 500) > DEFAULT_MEMORY_BUDGET
    assert tile_state_io(plan, tile_px, every) <= 16_000
    assert tile_overhead(plan, tile_px, every) < 1.15  # the halo's extra patches


def test_prefetcher_hands_over_only_its_own_unit():
    pre = TilePrefetcher()
    try:
        pre.start((1, 2), lambda: "inputs of (1, 2)")
        assert pre.take((1, 3)) is None  # another unit: read it yourself
        assert pre.take((1, 2)) == "inputs of (1, 2)"
        assert pre.take((1, 2)) is None  # handed over once

        def broken():
            raise OSError("disk gone")

        pre.start((2, 0), broken)
        with pytest.raises(OSError, match="disk gone"):
            pre.take((2, 0))
    finally:
        pre.close()


def test_tile_side_can_be_chosen_and_is_checked(store, model, gene_names, tmp_path):
    from napari_teramind.generate.job import JobSpec, create_job
    from napari_teramind.model import save_checkpoint

    save_checkpoint(tmp_path / "model", model, None, gene_names)

    def spec(**kw):
        return JobSpec(source=str(store.path), model=str(tmp_path / "model"), region=REGION,
                       slices=tuple(SLICES), output=str(tmp_path / "o.zarr"), steps=STEPS,
                       block_px=64, **kw)  # fmt: skip

    job = create_job(tmp_path / "j", spec(tile_px=192))  # the pair would fit: tiles anyway
    assert job.plan["units"]["kind"] == "tiles" and job.plan["units"]["tile_px"] == 192
    assert job.n_blocks == len(plan_tiles(_plan(store, "shifted-fused"), 192))
    with pytest.raises(ValueError, match=r"multiple of the block size 64 px \(--tile-px\)"):
        create_job(tmp_path / "k", spec(tile_px=100))
    with pytest.raises(ValueError, match=r"more than the memory budget .*--tile-px"):
        create_job(tmp_path / "m", spec(tile_px=192, memory_budget=1000))
    assert not (tmp_path / "k").exists() and not (tmp_path / "m").exists()
