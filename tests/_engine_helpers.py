"""The per-block engine run unit by unit, the reference the other execution paths must equal."""

from __future__ import annotations

import numpy as np

from napari_teramind.generate import GeneSource, create_state_arrays, run_unit, state_index


def run_blocks(
    plan, model, store, gene_names, tmp_path, order="forward", batch_size=2, return_states=False
):
    """Every unit through ``run_unit`` on disk state, in block ``order``; the final ``x0``.

    ``order``: ``"forward"``, ``"reverse"`` or ``"shuffle"`` (a fixed permutation). The units
    of every step must cover the region exactly once. With ``return_states`` the state arrays
    are returned too: ``(x0, states)``.
    """
    states = create_state_arrays(plan, tmp_path)
    genes = GeneSource(store, gene_names)
    blocks = list(plan.blocks)
    if order == "reverse":
        blocks = blocks[::-1]
    elif order == "shuffle":
        blocks = [blocks[i] for i in np.random.default_rng(4).permutation(len(blocks))]
    result = np.full(plan.state_shape[:2] + (plan.height, plan.width), np.nan, np.float32)
    cover = np.zeros((plan.steps, *result.shape[:1], plan.height, plan.width), int)
    for step in range(plan.steps):
        r, w = state_index(step)
        for blk in blocks:
            x0 = run_unit(plan, model, genes, None if r is None else states[r], states[w],
                          step, blk, batch_size=batch_size)  # fmt: skip
            y0, y1, x0_, x1 = plan.unit_window(step, blk)
            cover[step, blk.pair, y0:y1, x0_:x1] += 1
            result[blk.pair, :, y0:y1, x0_:x1] = x0
    assert (cover == 1).all()  # every step's units cover the region exactly once
    return (result, states) if return_states else result
