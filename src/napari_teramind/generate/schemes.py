"""Sampling schemes: where the patch grids sit at each DDIM step, and how predictions fuse.

A scheme fixes, for every step, a **frame** phase and a list of **pass** phases. A phase
``(py, px)`` (multiples of the 16 px gene block, in ``0..48``) moves the aligned grid so that
its patch corners sit at region coordinates ``64 k - p``; the offset grid the encoder runs on
moves with it (corners at ``64 k - p - 32``). Every pass predicts the noise of the whole
block on its own grid; several passes are fused pixel by pixel with weights that vanish on
each grid's own seams (the lines where its patches, and the four encoder patches inside each
of them, meet: every 32 px). The frame phase is the grid of the step's first pass: the
step's blocks are cut on it, so that pass never computes a patch twice.

* ``"collage"``: the published scheme. One pass at phase ``(0, 0)`` at every step: seams at
  0 and 32 mod 64 in every step, suppressed only by training.
* ``"shifted"``: one pass per step, its phase changing from step to step (a fixed sequence
  of the step index), so the seams of consecutive steps never lie on the same lines.
* ``"shifted-fused"``: ``"shifted"``, and in the last :data:`FUSED_STEPS` steps a second pass
  on the grid moved by ``(16, 16)`` px, whose seams lie half-way between the first's; the
  two noise predictions are fused with ``sin^2``/``cos^2`` weights (MultiDiffusion-style
  averaging), so the steps that shape the final image leave no seam line.
* ``"shifted-fused-4"`` (the default): ``"shifted"``, and in the :data:`QUAD_STEPS` steps
  before the last, four passes on the grids moved by ``(0, 0)``, ``(0, 16)``, ``(16, 0)`` and
  ``(16, 16)`` px from the frame. Two diagonal grids leave points where neither is clear of a
  seam: on one grid's row seam and the other's column seam (``"shifted-fused"`` draws a line
  there). With four, a pixel on any seam line takes its value from the grids that have no
  seam there (their ``sin^2`` products sum to one, and those of the grids with a seam there
  vanish). The last step (timestep 0, whose output is almost its input) is not fused: more
  passes there change almost nothing (measured: ``benchmarks/RESULTS.md``).

Everything is a function of the step index and region-relative pixel position, so a scheme
keeps the engine's guarantees (tiled == global bitwise across block sizes and orders,
resumable jobs, noise a function of seed, slice and position). The last step's frame is
``(0, 0)`` in every scheme: the blocks that write the output images are the plan's blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_SCHEME",
    "FUSED_STEPS",
    "LEGACY_SCHEME",
    "QUAD_STEPS",
    "SCHEMES",
    "StepGrids",
    "check_scheme",
    "fusion_weight",
    "step_grids",
]

#: Sampling schemes, the published one first.
SCHEMES = ("collage", "shifted", "shifted-fused", "shifted-fused-4")
#: The scheme of a job spec or generation record that names none (made before schemes existed).
LEGACY_SCHEME = "collage"
#: The scheme of new generations (chosen from benchmarks/fidelity.py; see docs/generation.md).
DEFAULT_SCHEME = "shifted-fused-4"
#: Last steps of ``"shifted-fused"`` that fuse two grids.
FUSED_STEPS = 3
#: Steps before the last of ``"shifted-fused-4"`` that fuse four grids.
QUAD_STEPS = 2
#: Period of a grid's seams: patch borders (64 px) and the encoder patches inside (32 px).
SEAM_SPACING = 32
#: Phases are whole gene blocks, so every patch still holds whole gene blocks.
PHASE_UNIT = 16

Phase = tuple[int, int]


@dataclass(frozen=True)
class StepGrids:
    """The grids of one step.

    Attributes
    ----------
    frame
        Phase of the step's blocks (and of the state the step writes).
    passes
        Phases of the grids whose noise predictions are fused (the first equals ``frame``).
    """

    frame: Phase
    passes: tuple[Phase, ...]


def check_scheme(scheme: str) -> str:
    """Return ``scheme`` if it is known, else raise an error naming the choices."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown sampling scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme


def _shift(step: int, steps: int) -> Phase:
    """Phase of ``step``: counted from the last step, which sits at ``(0, 0)``.

    ``py`` walks 0, 16, 32, 48 and ``px`` 0, 48, 32, 16, so consecutive steps put their seam
    lines (every 32 px from the phase) on alternate 16 px families in both axes.
    """
    j = steps - 1 - step
    return PHASE_UNIT * (j % 4), PHASE_UNIT * ((3 * j) % 4)


def step_grids(scheme: str, step: int, steps: int) -> StepGrids:
    """The frame and pass phases of ``step`` (run order, 0-based) of ``steps``."""
    check_scheme(scheme)
    if scheme == "collage":
        return StepGrids((0, 0), ((0, 0),))
    p = _shift(step, steps)
    if scheme == "shifted-fused" and step >= steps - FUSED_STEPS:
        return StepGrids(p, (p, _moved(p, 1, 1)))
    if scheme == "shifted-fused-4" and steps - 1 - QUAD_STEPS <= step < steps - 1:
        return StepGrids(p, (p, _moved(p, 0, 1), _moved(p, 1, 0), _moved(p, 1, 1)))
    return StepGrids(p, (p,))


def _moved(p: Phase, dy: int, dx: int) -> Phase:
    """``p`` moved by ``dy``, ``dx`` gene blocks (modulo the 64 px patch)."""
    return (p[0] + dy * PHASE_UNIT) % 64, (p[1] + dx * PHASE_UNIT) % 64


def _axis_weight(coords: np.ndarray, phase: int) -> np.ndarray:
    """``sin^2`` weight along one axis: about 0 beside the grid's seams, 1 half-way between."""
    u = (((coords + phase) % SEAM_SPACING) + 0.5) / SEAM_SPACING
    return np.sin(np.pi * u) ** 2


def fusion_weight(phase: Phase, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Weight ``(y1 - y0, x1 - x0)`` float32 of a pass's prediction over a region window.

    A grid of phase ``p`` has seams on the lines between pixels ``r - 1`` and ``r`` with
    ``(r + p) % 32 == 0`` (region coordinates); its weight is ``sin^2`` of the distance to
    them in each axis, the product of both axes. A grid moved by 16 px gets ``cos^2``: on
    one grid's seams the other has its full weight; the four grids moved by 0 or 16 px in
    each axis have weights that sum to one.
    """
    wy = _axis_weight(np.arange(y0, y1), phase[0])
    wx = _axis_weight(np.arange(x0, x1), phase[1])
    return np.outer(wy, wx).astype(np.float32)
