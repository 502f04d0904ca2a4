"""Step-synchronous tiled DDIM: one ``(step, block)`` unit at a time, state on disk.

The state ``x_t`` of a generation lives in two float32 zarr arrays of shape
:attr:`GenerationPlan.state_shape` (ping-pong: step ``s`` reads ``x_s`` from one and writes
``x_{s+1}`` into the other; step 0 reads the initial noise, computed on the fly). The arrays
are chunked one block per chunk, so the blocks of a step write disjoint chunks and may run in
any order on any worker, concurrently.

A unit (:func:`run_unit`) reads its block plus a 32 px halo, encodes every offset patch of
that window exactly once, runs the **collage** decoder for the block's aligned patches (the
tile decoder never runs), applies :func:`~napari_teramind.diffusion.ddim_step` and writes the
block. At the last step it can also write uint8 images into an output brain store.

Determinism: every model call has exactly ``batch_size`` patches (the last micro-batch is
padded with zeros), so on CPU a patch's result does not depend on the block size or order:
tiled results are bitwise identical for every block size. Every unit runs under a
:class:`~napari_teramind.generate.numerics.Numerics` (fixed intra-op thread count, deterministic
algorithms, float32 matmul precision; the default unless one is given), because CPU kernels
split their reductions by thread count: the same unit under 1 and 2 ambient threads would
differ in the last bits. :func:`generate_global` is the
reference: one pass over the whole region in memory, with one encoder call over all offset
patches and one collage-decoder call over the whole grid.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_teramind.generate.noise import initial_state
from napari_teramind.generate.numerics import Numerics
from napari_teramind.generate.plan import HALO_PX, PATCH_PX, Block, GenerationPlan

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from napari_teramind.diffusion import DDIMSchedule
    from napari_teramind.model import TeraMindUNet
    from napari_teramind.store import BrainStore

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "GeneSource",
    "create_state_arrays",
    "fuse_passes",
    "generate_global",
    "open_state_arrays",
    "predict_noise",
    "read_state",
    "run_unit",
    "state_index",
    "to_uint8",
    "write_output_block",
]

#: Patches per model call on CPU (every call has exactly this many).
DEFAULT_BATCH_SIZE = 8
STATE_NAMES = ("state_a", "state_b")


# ---------------------------------------------------------------------- genes
@dataclass
class GeneSource:
    """Gene counts of a brain store, aligned by name to the model's genes.

    Parameters
    ----------
    store
        The source brain store.
    gene_names
        The model's genes, in model order (``CheckpointInfo.gene_names``).
    gene_blind
        Feed zero counts everywhere (the gene-blind evaluation baseline).

    Attributes
    ----------
    missing
        Model genes the store lacks; they are fed as zero counts.
    report
        The :class:`~napari_teramind.store.ModelPanelReport`: shared genes, the human
        orthologs used for a store named with human symbols, missing pathway genes. A human
        store sharing too few genes is refused (:meth:`ModelPanelReport.check`).
    """

    store: BrainStore
    gene_names: Sequence[str]
    gene_blind: bool = False

    def __post_init__(self) -> None:
        from napari_teramind.store import align_model_panel

        self.gene_names = tuple(self.gene_names)
        self.report = align_model_panel(self.gene_names, self.store.panel)
        if not self.gene_blind:
            self.report.check()
        self.alignment = self.report.alignment
        self.missing = self.alignment.missing
        if len(self.missing) == len(self.gene_names) and not self.gene_blind:
            raise ValueError(
                f"none of the model's {len(self.gene_names)} genes is in the store's panel "
                f"({len(self.store.panel)} genes): wrong model or store? Pass gene_blind=True "
                "to generate without genes on purpose."
            )
        self._array = self.store.array("genes", 0)
        self._present = np.flatnonzero(self.alignment.present)
        self._source_index = self.alignment.target_index[self._present]

    def window(
        self, plan: GenerationPlan, pair: int, y0: int, y1: int, x0: int, x1: int
    ) -> np.ndarray:
        """Counts ``(G, Z, (y1 - y0) / 16, (x1 - x0) / 16)`` float32 of a window.

        ``Z`` is the plan's gene window (``plan.gene_depth``, 4 for slice pairs).

        The window is relative to the region origin and may leave the region (real counts)
        or the canvas (zeros); gene slices outside the stack are zeros.
        """
        gb = plan.gene_block_px
        n_z, height, width = plan.canvas
        sy, sx = plan.to_store(y0, x0)
        if sy % gb or sx % gb or (y1 - y0) % gb or (x1 - x0) % gb:
            raise ValueError(f"gene window must be on the {gb} px gene-block grid")
        hb, wb = (y1 - y0) // gb, (x1 - x0) // gb
        by0, bx0 = sy // gb, sx // gb
        out = np.zeros((len(self.gene_names), plan.gene_depth, hb, wb), dtype=np.float32)
        if self.gene_blind or not len(self._present):
            return out
        cy0, cy1 = max(by0, 0), min(by0 + hb, height // gb)
        cx0, cx1 = max(bx0, 0), min(bx0 + wb, width // gb)
        if cy0 >= cy1 or cx0 >= cx1:
            return out
        for d, z in enumerate(plan.gene_slices(pair)):
            if not 0 <= z < n_z:
                continue
            counts = np.asarray(self._array[:, z, cy0:cy1, cx0:cx1])
            out[self._present, d, cy0 - by0 : cy1 - by0, cx0 - bx0 : cx1 - bx0] = counts[
                self._source_index
            ]
        return out


# ---------------------------------------------------------------------- state arrays
def create_state_arrays(plan: GenerationPlan, directory: str | os.PathLike[str]) -> tuple:
    """Create the two ping-pong state arrays (float32, one chunk per block) in ``directory``.

    Returns
    -------
    tuple of zarr arrays
        ``(state_a, state_b)``; see :func:`state_index` for which one a step reads and writes.
    """
    import zarr

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = []
    for name in STATE_NAMES:
        arrays.append(
            zarr.create_array(
                store=str(directory / f"{name}.zarr"),
                shape=plan.state_shape,
                chunks=plan.state_chunks,
                dtype="float32",
                fill_value=0.0,
                zarr_format=3,
                overwrite=True,
            )
        )
    return tuple(arrays)


def open_state_arrays(directory: str | os.PathLike[str], mode: str = "r+") -> tuple:
    """Open the arrays made by :func:`create_state_arrays`."""
    import zarr

    directory = Path(directory)
    return tuple(zarr.open_array(str(directory / f"{n}.zarr"), mode=mode) for n in STATE_NAMES)


def state_index(step: int) -> tuple[int | None, int]:
    """``(read, write)`` positions in the ping-pong pair for ``step``.

    Step ``s`` writes ``x_{s+1}`` into array ``s % 2`` and reads ``x_s`` from array
    ``(s - 1) % 2``; step 0 reads the initial noise (``None``).
    """
    return (None if step == 0 else (step - 1) % 2), step % 2


def read_state(
    plan: GenerationPlan, state_in: Any, step: int, pair: int, y0: int, y1: int, x0: int, x1: int
) -> np.ndarray:
    """State ``(2 D, y1 - y0, x1 - x0)`` of a window (region-relative, zero outside the region).

    Step 0 computes the initial noise; later steps read ``state_in``, written by step
    ``step - 1`` in its frame (stored that frame's phase further on, see
    :meth:`GenerationPlan.extent`).
    """
    if step == 0:
        return initial_state(plan, pair, y0, y1, x0, x1)
    oy, ox = plan.grids(step - 1).frame
    out = np.zeros((plan.channels, y1 - y0, x1 - x0), dtype=np.float32)
    cy0, cy1 = max(y0, 0), min(y1, plan.height)
    cx0, cx1 = max(x0, 0), min(x1, plan.width)
    if cy0 < cy1 and cx0 < cx1:
        out[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = state_in[
            pair, :, cy0 + oy : cy1 + oy, cx0 + ox : cx1 + ox
        ]
    return out


def _pass_window(
    extent: tuple[int, int, int, int], phase: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Aligned px ``(a0, a1, b0, b1)`` of the phase-``phase`` patches covering ``extent``."""
    y0, y1, x0, x1 = extent
    py, px = phase
    return (
        (y0 + py) // PATCH_PX * PATCH_PX - py,
        -(-(y1 + py) // PATCH_PX) * PATCH_PX - py,
        (x0 + px) // PATCH_PX * PATCH_PX - px,
        -(-(x1 + px) // PATCH_PX) * PATCH_PX - px,
    )


def fuse_passes(
    plan: GenerationPlan, step: int, extent: tuple[int, int, int, int], eps: list[torch.Tensor]
) -> torch.Tensor:
    """Fuse the noise predictions of a step's passes over ``extent`` (one pass: as is).

    Each pass is weighted by :func:`~napari_teramind.generate.schemes.fusion_weight` of its
    phase (a function of region-relative position only, so every block fuses the same way).
    """
    import torch

    from napari_teramind.generate.schemes import fusion_weight

    if len(eps) == 1:
        return eps[0]
    weights = [torch.from_numpy(fusion_weight(q, *extent)) for q in plan.grids(step).passes]
    num = sum(w * e for w, e in zip(weights, eps, strict=True))
    return num / sum(weights)


# ---------------------------------------------------------------------- model calls
def _cut_patches(window: torch.Tensor, size: int) -> torch.Tensor:
    """``(C, ..., P1*s, P2*s)`` -> ``(P1*P2, C, ..., s, s)``, row-major over patches."""
    *lead, h, w = window.shape
    p1, p2 = h // size, w // size
    k = len(lead)
    t = window.reshape(*lead, p1, size, p2, size)
    order = (k, k + 2, *range(k), k + 1, k + 3)
    return t.permute(order).reshape(p1 * p2, *lead, size, size)


def _assemble(patches: torch.Tensor, p1: int, p2: int) -> torch.Tensor:
    """``(P1*P2, C, s, s)`` -> ``(C, P1*s, P2*s)``."""
    c, s = patches.shape[1:3]
    return patches.reshape(p1, p2, c, s, s).permute(2, 0, 3, 1, 4).reshape(c, p1 * s, p2 * s)


def _padded(t: torch.Tensor, n: int) -> torch.Tensor:
    """Pad the first axis of ``t`` with zeros to ``n`` rows."""
    import torch

    if t.shape[0] == n:
        return t
    return torch.cat([t, t.new_zeros((n - t.shape[0], *t.shape[1:]))])


def _autocast(device: torch.device, bf16: bool):
    import torch

    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_noise(
    model: TeraMindUNet,
    window: np.ndarray | torch.Tensor,
    genes: np.ndarray | torch.Tensor,
    t: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    bf16: bool = False,
) -> torch.Tensor:
    """Noise prediction of the aligned patches inside a window of offset patches.

    Parameters
    ----------
    model
        The network (in ``eval()`` mode, on ``device``).
    window
        State ``(2 D, H + 64, W + 64)`` (``D`` the model's image depth): a block of
        ``H x W`` aligned px plus its 32 px halo.
    genes
        Counts ``(G, Z, (H + 64) / 16, (W + 64) / 16)`` of the same window (``Z`` gene
        slices).
    t
        Original DDPM timestep.
    batch_size
        Patches per model call; every call gets exactly this many (zero-padded).
    device
        Where the model runs.
    bf16
        bf16 autocast (CUDA only).

    Returns
    -------
    torch.Tensor
        ``eps`` of shape ``(2 D, H, W)``, float32 on CPU.
    """
    import torch

    from napari_teramind.diffusion import NoiseSchedule, to_eps
    from napari_teramind.model import EncoderFeatures

    device = torch.device(device)
    window = torch.as_tensor(window, dtype=torch.float32)
    genes = torch.as_tensor(genes, dtype=torch.float32)
    gb = window.shape[-1] // genes.shape[-1]
    p1, p2 = window.shape[-2] // PATCH_PX, window.shape[-1] // PATCH_PX
    if (p1 * PATCH_PX, p2 * PATCH_PX) != tuple(window.shape[-2:]) or min(p1, p2) < 2:
        raise ValueError(f"window {tuple(window.shape)} is not a grid of >= 2 x 2 offset patches")
    x = _cut_patches(window, PATCH_PX)  # (N, 4, 64, 64)
    g = _cut_patches(genes, PATCH_PX // gb)  # (N, G, 4, 4, 4)
    n = x.shape[0]
    with _autocast(device, bf16):
        feats = []
        for s in range(0, n, batch_size):
            xb = _padded(x[s : s + batch_size], batch_size).to(device)
            gbt = _padded(g[s : s + batch_size], batch_size).to(device)
            f = model.encode(xb, gbt, t)
            feats.append(f.select(slice(0, min(batch_size, n - s))))
        # Aligned patch (i, j) is the collage of offset patches (i, j), (i, j+1), (i+1, j),
        # (i+1, j+1): re-cut the whole block's features once (each value copied once, not
        # gathered four times per output patch), then decode them in fixed micro-batches.
        c1, c2 = p1 - 1, p2 - 1
        aligned_feats = EncoderFeatures.cat(feats).collage((1, p1, p2))
        del feats
        m = c1 * c2
        outs = []
        for s in range(0, m, batch_size):
            pad = max(0, s + batch_size - m)  # the last batch repeats its first patch
            index = [*range(s, m), *[s] * pad] if pad else slice(s, s + batch_size)
            sel = aligned_feats.select(index)
            out = model.decode_tiles(sel, t)  # each collaged patch from its own features
            outs.append(out[: batch_size - pad].float().cpu())
    out = _assemble(torch.cat(outs), c1, c2)
    aligned = window[:, HALO_PX : HALO_PX + out.shape[-2], HALO_PX : HALO_PX + out.shape[-1]]
    abar = NoiseSchedule.linear().alphas_cumprod[int(t)]
    return to_eps(model.config.prediction, out, aligned, abar)


# ---------------------------------------------------------------------- units
def to_uint8(x0: np.ndarray) -> np.ndarray:
    """``[-1, 1]`` float images to uint8 by ``(x + 1) * 127.5``, clipped and truncated."""
    return np.clip((np.asarray(x0, dtype=np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)


def write_output_block(
    plan: GenerationPlan, output: BrainStore, block: Block, x0: np.ndarray
) -> None:
    """Write the final ``x0`` ``(2 D, h, w)`` of ``block`` as uint8 images (requested slices)."""
    sy, sx = plan.to_store(block.y0, block.x0)
    for d, z in enumerate(plan.pair_slices(block.pair)):
        if z in plan.written_slices(block.pair):
            output.write_images(z, sy, sx, to_uint8(x0[plan.stain_channels(d)]))


def _schedule(plan: GenerationPlan) -> DDIMSchedule:
    from napari_teramind.diffusion import DDIMSchedule

    return DDIMSchedule.create(plan.steps)


def run_unit(
    plan: GenerationPlan,
    model: TeraMindUNet,
    source: BrainStore | GeneSource,
    state_in: Any,
    state_out: Any,
    step: int,
    block: int | Block,
    *,
    gene_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    gene_blind: bool = False,
    output: BrainStore | None = None,
    bf16: bool = False,
    schedule: DDIMSchedule | None = None,
    numerics: Numerics | None = None,
) -> np.ndarray:
    """Run one ``(step, block)`` unit of a generation.

    Parameters
    ----------
    plan
        The generation plan.
    model
        The network, already on ``device`` (it is put in ``eval()`` mode).
    source
        The source brain store, or a :class:`GeneSource` built once for many units.
    state_in
        State array holding ``x_step`` (ignored at step 0, where the initial noise is used).
    state_out
        State array receiving ``x_{step+1}`` for this block; may be ``None`` (e.g. at the last
        step when only the images are wanted).
    step
        DDIM step in run order, ``0 .. plan.steps - 1``.
    block
        Block index or :class:`Block`.
    gene_names
        The model's genes (required when ``source`` is a store).
    device, batch_size, bf16
        Where and how the model runs; see :func:`predict_noise`.
    gene_blind
        Zero gene counts (when ``source`` is a store).
    output
        A writable brain store: at the last step the block's images are written to it.
    schedule
        The DDIM schedule (built from ``plan.steps`` by default).
    numerics
        Thread count and precision settings the unit computes under (restored afterwards);
        :class:`~napari_teramind.generate.numerics.Numerics` defaults when None.

    Returns
    -------
    np.ndarray
        The clamped ``x0`` estimate ``(2 D, h, w)`` float32 (model channel order) over
        :meth:`GenerationPlan.unit_window` (the block itself for ``"collage"`` and at the last
        step; the block moved by the step's frame phase otherwise).
    """
    import torch

    blk = plan.block(block)
    plan.check_model(model.config)
    if not 0 <= step < plan.steps:
        raise IndexError(f"step {step} outside 0..{plan.steps - 1}")
    if isinstance(source, GeneSource):
        genes_src = source
    else:
        if gene_names is None:
            raise ValueError(
                "gene_names (the model's genes, CheckpointInfo.gene_names) is required"
            )
        genes_src = GeneSource(source, gene_names, gene_blind)
    if step > 0 and state_in is None:
        raise ValueError(f"step {step} needs the state array of step {step} (state_in)")
    sched = schedule or _schedule(plan)
    model.eval()
    grids = plan.grids(step)
    extent = plan.extent(step, blk)
    t = int(sched.timesteps[step])
    x_t = None
    eps_passes = []
    with (numerics or Numerics()).applied(), torch.inference_mode():
        for q in grids.passes:  # the first pass is the frame's: its window is the extent's
            a0, a1, b0, b1 = _pass_window(extent, q)
            wy0, wy1, wx0, wx1 = a0 - HALO_PX, a1 + HALO_PX, b0 - HALO_PX, b1 + HALO_PX
            window = read_state(plan, state_in, step, blk.pair, wy0, wy1, wx0, wx1)
            genes = genes_src.window(plan, blk.pair, wy0, wy1, wx0, wx1)
            eps = predict_noise(
                model, window, genes, t, batch_size=batch_size, device=device, bf16=bf16
            )
            ey0, ey1, ex0, ex1 = extent[0] - a0, extent[1] - a0, extent[2] - b0, extent[3] - b0
            eps_passes.append(eps[:, ey0:ey1, ex0:ex1])
            if x_t is None:
                x_t = torch.from_numpy(window[:, HALO_PX:-HALO_PX, HALO_PX:-HALO_PX].copy())
        eps = fuse_passes(plan, step, extent, eps_passes)
        x_next, x0 = ddim_step_cpu(x_t, eps, step, sched)
    x_next_np = x_next.numpy()
    x0_np = x0.numpy()
    y0, y1, x0_, x1 = extent
    inside = (
        slice(max(0, -y0), min(y1, plan.height) - y0),
        slice(max(0, -x0_), min(x1, plan.width) - x0_),
    )
    if state_out is not None:
        if (y0, y1, x0_, x1) != (blk.y0, blk.y1, blk.x0, blk.x1):  # a moved frame
            x_next_np = np.where(_inside_mask(x_next_np.shape, inside), x_next_np, 0.0)
        fy, fx = grids.frame
        state_out[blk.pair, :, y0 + fy : y1 + fy, x0_ + fx : x1 + fx] = x_next_np
    if output is not None and step == plan.steps - 1:
        write_output_block(plan, output, blk, x0_np)
    return x0_np[:, inside[0], inside[1]]


def _inside_mask(shape: tuple[int, ...], inside: tuple[slice, slice]) -> np.ndarray:
    """Boolean mask ``(1, h, w)``: True on the pixels of a moved extent inside the region."""
    mask = np.zeros((1, *shape[-2:]), dtype=bool)
    mask[:, inside[0], inside[1]] = True
    return mask


def ddim_step_cpu(x_t, eps, step: int, schedule):
    """:func:`~napari_teramind.diffusion.ddim_step` in float32 on CPU tensors."""
    from napari_teramind.diffusion import ddim_step

    return ddim_step(x_t.float(), eps.float(), step, schedule)


# ---------------------------------------------------------------------- reference pass
def generate_global(
    plan: GenerationPlan,
    model: TeraMindUNet,
    source: BrainStore | GeneSource,
    *,
    gene_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    gene_blind: bool = False,
    bf16: bool = False,
    numerics: Numerics | None = None,
) -> np.ndarray:
    """Reference: the whole region in one pass per step, in memory, no blocks.

    Each step encodes all offset patches of the region (plus halo) in one call and decodes the
    whole aligned grid with one :meth:`~TeraMindUNet.decode_collage` call. Same noise, same halo
    rule and same genes as the tiled engine; only the tiling differs. ``numerics`` as for
    :func:`run_unit`.

    Returns
    -------
    np.ndarray
        Final ``x0`` ``(groups, 2 D, height, width)`` float32.
    """
    import torch

    from napari_teramind.diffusion import to_eps

    plan.check_model(model.config)
    genes_src = (
        source if isinstance(source, GeneSource) else GeneSource(source, gene_names, gene_blind)
    )
    sched = _schedule(plan)
    device = torch.device(device)
    model.eval()
    h, w = plan.height, plan.width
    extent = (0, h, 0, w)
    results = []
    for pair in range(len(plan.pairs)):
        x = torch.from_numpy(initial_state(plan, pair, 0, h, 0, w))
        genes: dict[tuple[int, int], torch.Tensor] = {}
        x0 = x
        for step in range(plan.steps):
            t = int(sched.timesteps[step])
            eps_passes = []
            for q in plan.grids(step).passes:
                a0, a1, b0, b1 = _pass_window(extent, q)
                if q not in genes:
                    window = genes_src.window(
                        plan, pair, a0 - HALO_PX, a1 + HALO_PX, b0 - HALO_PX, b1 + HALO_PX
                    )
                    genes[q] = _cut_patches(
                        torch.from_numpy(window), PATCH_PX // plan.gene_block_px
                    ).to(device)
                p1, p2 = (a1 - a0) // PATCH_PX + 1, (b1 - b0) // PATCH_PX + 1
                pad = (HALO_PX - b0, b1 + HALO_PX - w, HALO_PX - a0, a1 + HALO_PX - h)
                padded = torch.nn.functional.pad(x, pad)
                with (numerics or Numerics()).applied(), torch.inference_mode(), \
                        _autocast(device, bf16):  # fmt: skip
                    feats = model.encode(_cut_patches(padded, PATCH_PX).to(device), genes[q], t)
                    out = model.decode_collage(feats, (1, p1, p2), t).float().cpu()
                aligned = padded[:, HALO_PX:-HALO_PX, HALO_PX:-HALO_PX]
                eps = to_eps(model.config.prediction, _assemble(out, p1 - 1, p2 - 1), aligned,
                             sched.alphas_cumprod[step])  # fmt: skip
                eps_passes.append(eps[:, -a0 : h - a0, -b0 : w - b0])
            eps = fuse_passes(plan, step, extent, eps_passes)
            x, x0 = ddim_step_cpu(x, eps, step, sched)
        results.append(x0.numpy())
    return np.stack(results)
