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

Batches: :func:`predict_many` streams the offset patches of any number of windows (blocks,
passes, slice pairs) through fixed micro-batches of ``batch_size`` patches that span window
boundaries, so only the last call of a whole step is partial. On CPU that call is padded to
``batch_size`` (a patch's float32 result depends on the batch size there: measured), and
the model's linear layers compute each patch in its own call on CPU
(:class:`~napari_teramind.model.linear.SampleLinear`: with 2 threads a batched product rounded
a patch differently at different batch positions), so tiled results are bitwise identical
for every block size and order; on CUDA it is padded only to a multiple of 8
(:func:`pad_multiple`).
Every unit runs under a :class:`~napari_teramind.generate.numerics.Numerics` (fixed
intra-op thread count, deterministic algorithms, float32 matmul precision; the default unless
one is given), because CPU kernels split their reductions by thread count: the same unit
under 1 and 2 ambient threads would differ in the last bits. :func:`generate_global` is the
reference: one pass over the whole region in memory, with one
encoder call over all offset patches and one collage-decoder call over the whole grid.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    "GeneCache",
    "GeneSource",
    "advance",
    "create_state_arrays",
    "fuse_passes",
    "generate_global",
    "open_state_arrays",
    "pad_multiple",
    "predict_many",
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
    counts
        The level-0 gene array to read, ``(genes, z, hb, wb)`` in the store's panel order and
        indexed like it (``counts[:, z, ys, xs]``); the store's own by default. A perturbation
        passes :class:`~napari_teramind.generate.edits.EditedCounts` (edited genes).

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
    counts: Any = None

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
        self._array = self.store.array("genes", 0) if self.counts is None else self.counts
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


class GeneCache:
    """Gene counts of some slice pairs read once and kept in memory (they never change).

    Windows inside the cached area (the region plus :attr:`MARGIN` px, enough for every halo
    and grid phase of every scheme) are sliced from memory; any other window is read from
    the :class:`GeneSource`. The counts are the same bytes either way.

    Parameters
    ----------
    source
        The gene source.
    plan
        The generation plan.
    pairs
        Pair indices to cache.
    area
        Region px ``(y0, y1, x0, x1)`` to cache (on the gene-block grid); by default the
        whole region plus :attr:`MARGIN` px. A tiled span caches only what its tile reads.
    """

    #: Cached px around the region (a multiple of every gene block): halo 32 + phase < 64 +
    #: the overhang of a moved grid.
    MARGIN = 192

    def __init__(
        self,
        source: GeneSource,
        plan: GenerationPlan,
        pairs: Sequence[int],
        area: tuple[int, int, int, int] | None = None,
    ):
        self.source = source
        self.missing = source.missing
        self.gene_names = source.gene_names
        m = self.MARGIN
        self.area = (-m, plan.height + m, -m, plan.width + m) if area is None else area
        self._cache = {p: source.window(plan, p, *self.area) for p in pairs}

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        return sum(a.nbytes for a in self._cache.values())

    @staticmethod
    def estimate_nbytes(plan: GenerationPlan, n_genes: int, n_pairs: int = 1) -> int:
        """Bytes a cache of ``n_pairs`` pairs holds, before reading any."""
        m, gb = GeneCache.MARGIN, plan.gene_block_px
        return (
            n_pairs * n_genes * 4 * 4 * ((plan.height + 2 * m) // gb) * ((plan.width + 2 * m) // gb)
        )

    def window(
        self, plan: GenerationPlan, pair: int, y0: int, y1: int, x0: int, x1: int
    ) -> np.ndarray:
        """Like :meth:`GeneSource.window`, from memory when the pair and window are cached."""
        gb = plan.gene_block_px
        ay0, ay1, ax0, ax1 = self.area
        cached = self._cache.get(pair)
        inside = ay0 <= y0 and y1 <= ay1 and ax0 <= x0 and x1 <= ax1
        if cached is None or not inside or (y0 % gb) or (x0 % gb):
            return self.source.window(plan, pair, y0, y1, x0, x1)
        return cached[
            :, :, (y0 - ay0) // gb : (y1 - ay0) // gb, (x0 - ax0) // gb : (x1 - ax0) // gb
        ].copy()


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
    dev = eps[0].device
    weights = [torch.from_numpy(fusion_weight(q, *extent)).to(dev) for q in plan.grids(step).passes]
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


def pad_multiple(device: str | torch.device, batch_size: int) -> int:
    """What the last (partial) model call of a stream is padded to a multiple of.

    On CPU the whole ``batch_size``: there a patch's float32 result depends on how many
    patches the call has (measured: batch sizes 1, 3, 7, 9, 16 differ from 8 in the last bits);
    with the per-sample linear layers (:class:`~napari_teramind.model.linear.SampleLinear`)
    not on which other patches it has nor on its position, so fixed-size calls keep results
    independent of blocks and order. Elsewhere 8 (tensor-core friendly), never more than the
    batch: a partial call costs at most 7 patches of padding instead of up to ``batch_size - 1``.
    """
    import torch

    if torch.device(device).type == "cpu":
        return int(batch_size)
    return max(1, min(8, int(batch_size)))


def _autocast(device: torch.device, bf16: bool | str | None):
    from napari_teramind.model.precision import autocast

    return autocast(device, bf16)


class _Window:
    """One window of :func:`predict_many` on its way through the encoder and decoder."""

    __slots__ = ("aligned", "c1", "c2", "feats", "g", "key", "n", "n_dec", "n_enc", "outs",
                 "p1", "p2", "window", "x")  # fmt: skip

    def __init__(self, key: Any, window: torch.Tensor, genes: torch.Tensor):
        p1, p2 = window.shape[-2] // PATCH_PX, window.shape[-1] // PATCH_PX
        if (p1 * PATCH_PX, p2 * PATCH_PX) != tuple(window.shape[-2:]) or min(p1, p2) < 2:
            raise ValueError(
                f"window {tuple(window.shape)} is not a grid of >= 2 x 2 offset patches"
            )
        gb = window.shape[-1] // genes.shape[-1]
        self.key, self.window, self.p1, self.p2 = key, window, p1, p2
        self.c1, self.c2 = p1 - 1, p2 - 1
        self.x = _cut_patches(window, PATCH_PX)  # (N, 4, 64, 64)
        self.g = _cut_patches(genes, PATCH_PX // gb)  # (N, G, 4, 4, 4)
        self.n = self.x.shape[0]
        self.n_enc = self.n_dec = 0
        self.feats: list = []
        self.aligned = None
        self.outs: list = []


def predict_many(
    model: TeraMindUNet,
    items: Iterable[tuple[Any, np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
    t: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    precision: bool | str | None = None,
    pad_to: int | None = None,
) -> Iterator[tuple[Any, torch.Tensor]]:
    """Noise predictions of many windows, batched across windows, in input order.

    Every window (a block plus its 32 px halo, of any pass or slice pair) is cut into offset
    patches; the patches of consecutive windows fill fixed micro-batches of ``batch_size``
    for the encoder, and the collaged aligned patches fill the decoder's the same way. As
    soon as a window's patches are decoded its ``eps`` is yielded, so memory holds the
    features of about one micro-batch plus one window.

    Parameters
    ----------
    model
        The network (``eval()``, on ``device``).
    items
        ``(key, window, genes)``: state ``(4, H + 64, W + 64)`` and counts
        ``(G, 4, (H + 64) / 16, (W + 64) / 16)`` of the same window. Read lazily.
    t
        Original DDPM timestep (one per stream).
    batch_size
        Patches per model call.
    device
        Where the model runs.
    precision
        ``"fp32"`` (default), ``"bf16"`` (``True``), see
        :func:`~napari_teramind.model.precision.autocast`.
    pad_to
        The last call of each network is padded to a multiple of this (default
        :func:`pad_multiple`); never past the next multiple.

    Yields
    ------
    tuple
        ``(key, eps)``: ``eps`` ``(4, H, W)`` float32 on ``device``.
    """
    import torch

    from napari_teramind.diffusion import NoiseSchedule, to_eps
    from napari_teramind.model import EncoderFeatures

    device = torch.device(device)
    batch_size = int(batch_size)
    pad_to = pad_multiple(device, batch_size) if pad_to is None else max(1, min(pad_to, batch_size))
    abar = NoiseSchedule.linear().alphas_cumprod[int(t)]
    prediction = model.config.prediction
    enc: deque[_Window] = deque()  # windows with offset patches still to encode
    dec: deque[_Window] = deque()  # windows with aligned patches still to decode
    pending = {"enc": 0, "dec": 0}

    def padded_size(n: int) -> int:
        return n if n == batch_size else min(batch_size, -(-n // pad_to) * pad_to)

    def encode(force: bool) -> None:
        while pending["enc"] >= batch_size or (force and pending["enc"]):
            parts, xs, gs, n = [], [], [], 0
            while n < batch_size and enc:
                w = enc[0]
                k = min(batch_size - n, w.n - w.n_enc)
                xs.append(w.x[w.n_enc : w.n_enc + k])
                gs.append(w.g[w.n_enc : w.n_enc + k])
                parts.append((w, k))
                w.n_enc += k
                n += k
                if w.n_enc == w.n:
                    enc.popleft()
            pending["enc"] -= n
            size = padded_size(n)
            xb = _padded(torch.cat(xs), size).to(device)
            gbt = _padded(torch.cat(gs), size).to(device)
            with torch.inference_mode(), _autocast(device, precision):
                f = model.encode(xb, gbt, t)
            off = 0
            for w, k in parts:
                w.feats.append(f.select(slice(off, off + k)))
                off += k
                if w.n_enc == w.n:  # re-cut the window's features once into aligned patches
                    w.aligned = EncoderFeatures.cat(w.feats).collage((1, w.p1, w.p2))
                    w.feats = []
                    dec.append(w)
                    pending["dec"] += w.c1 * w.c2

    def decode(force: bool) -> Iterator[tuple[Any, torch.Tensor]]:
        while pending["dec"] >= batch_size or (force and pending["dec"]):
            parts, sels, n = [], [], 0
            while n < batch_size and dec:
                w = dec[0]
                m = w.c1 * w.c2
                k = min(batch_size - n, m - w.n_dec)
                sels.append(w.aligned.select(slice(w.n_dec, w.n_dec + k)))
                parts.append((w, k))
                w.n_dec += k
                n += k
                if w.n_dec == m:
                    dec.popleft()
            pending["dec"] -= n
            size = padded_size(n)
            if size > n:  # repeat the batch's first patch
                sels.append(sels[0].select([0] * (size - n)))
            with torch.inference_mode(), _autocast(device, precision):
                out = model.decode_tiles(EncoderFeatures.cat(sels), t).float()
            off = 0
            for w, k in parts:
                w.outs.append(out[off : off + k])
                off += k
                if w.n_dec == w.c1 * w.c2:
                    with torch.inference_mode():
                        full = _assemble(torch.cat(w.outs), w.c1, w.c2)
                        win = w.window.to(device)
                        aligned = win[:, HALO_PX : HALO_PX + full.shape[-2],
                                      HALO_PX : HALO_PX + full.shape[-1]]  # fmt: skip
                        eps = to_eps(prediction, full, aligned, abar)
                    w.aligned, w.outs = None, []
                    yield w.key, eps

    for key, window, genes in items:
        w = _Window(
            key,
            torch.as_tensor(window, dtype=torch.float32),
            torch.as_tensor(genes, dtype=torch.float32),
        )
        enc.append(w)
        pending["enc"] += w.n
        encode(False)
        yield from decode(False)
    encode(True)
    yield from decode(True)


def predict_noise(
    model: TeraMindUNet,
    window: np.ndarray | torch.Tensor,
    genes: np.ndarray | torch.Tensor,
    t: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    bf16: bool | str | None = False,
) -> torch.Tensor:
    """Noise prediction of the aligned patches inside one window of offset patches.

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
        Patches per model call; the last call is padded as :func:`pad_multiple` says.
    device
        Where the model runs.
    bf16
        bf16 autocast (``True`` or a precision name, see :func:`predict_many`).

    Returns
    -------
    torch.Tensor
        ``eps`` of shape ``(2 D, H, W)``, float32 on CPU.
    """
    ((_, eps),) = predict_many(
        model, [(None, window, genes)], t, batch_size=batch_size, device=device, precision=bf16
    )
    return eps.cpu()


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


def _gene_source(source: Any, gene_names: Sequence[str] | None, gene_blind: bool) -> Any:
    """A :class:`GeneSource` (or :class:`GeneCache`) from a store or an existing source."""
    if hasattr(source, "window") and hasattr(source, "missing"):
        return source
    if gene_names is None:
        raise ValueError("gene_names (the model's genes, CheckpointInfo.gene_names) is required")
    return GeneSource(source, gene_names, gene_blind)


def advance(
    plan: GenerationPlan,
    model: TeraMindUNet,
    genes: GeneSource | GeneCache,
    state_in: Any,
    state_out: Any,
    step: int,
    blocks: Iterable[int | Block],
    *,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: bool | str | None = None,
    output: BrainStore | None = None,
    schedule: DDIMSchedule | None = None,
    pad_to: int | None = None,
    write_output: Callable[[Block, np.ndarray], None] | None = None,
    numerics: Numerics | None = None,
) -> Iterator[tuple[Block, np.ndarray]]:
    """Run ``step`` for several blocks (of any slice pairs), batched across them.

    Each block computes what :func:`run_unit` computes for it (the same bytes on CPU); the
    blocks' windows of every pass share one :func:`predict_many` stream, and the fusion and
    DDIM update run on ``device``. ``state_in``/``state_out`` are anything indexable like
    the state arrays (zarr arrays, :class:`~napari_teramind.generate.resident.PairState`).

    Yields
    ------
    tuple
        ``(block, x0)`` after each block's state (and, at the last step, images) is written;
        ``x0`` as :func:`run_unit` returns it.

    The whole step computes under ``numerics`` (:class:`Numerics` defaults when None; the
    settings hold in the consuming thread until the generator ends, then are restored).
    """
    with (numerics or Numerics()).applied():
        yield from _advance(plan, model, genes, state_in, state_out, step, blocks, device,
                            batch_size, precision, output, schedule, pad_to,
                            write_output)  # fmt: skip


def _advance(plan, model, genes, state_in, state_out, step, blocks, device, batch_size,
             precision, output, schedule, pad_to, write_output):  # fmt: skip
    import torch

    if not 0 <= step < plan.steps:
        raise IndexError(f"step {step} outside 0..{plan.steps - 1}")
    if step > 0 and state_in is None:
        raise ValueError(f"step {step} needs the state array of step {step} (state_in)")
    blks = [plan.block(b) for b in blocks]
    sched = schedule or _schedule(plan)
    model.eval()
    dev = torch.device(device)
    grids = plan.grids(step)
    t = int(sched.timesteps[step])
    n_pass = len(grids.passes)

    def items():
        for i, blk in enumerate(blks):
            extent = plan.extent(step, blk)
            for j, q in enumerate(grids.passes):
                a0, a1, b0, b1 = _pass_window(extent, q)
                wy0, wy1, wx0, wx1 = a0 - HALO_PX, a1 + HALO_PX, b0 - HALO_PX, b1 + HALO_PX
                window = read_state(plan, state_in, step, blk.pair, wy0, wy1, wx0, wx1)
                g = genes.window(plan, blk.pair, wy0, wy1, wx0, wx1)
                if j == 0:  # the frame pass's window is the extent plus the halo
                    frames[i] = window[:, HALO_PX:-HALO_PX, HALO_PX:-HALO_PX].copy()
                yield (i, j, (a0, b0)), window, g

    eps_passes: list[torch.Tensor] = []
    frames: dict[int, np.ndarray] = {}
    stream = predict_many(model, items(), t, batch_size=batch_size, device=dev,
                          precision=precision, pad_to=pad_to)  # fmt: skip
    for (i, j, (a0, b0)), eps in stream:
        blk = blks[i]
        extent = plan.extent(step, blk)
        ey0, ey1, ex0, ex1 = extent[0] - a0, extent[1] - a0, extent[2] - b0, extent[3] - b0
        eps_passes.append(eps[:, ey0:ey1, ex0:ex1])
        if j < n_pass - 1:
            continue
        x_t = torch.from_numpy(frames.pop(i)).to(dev)
        with torch.inference_mode():
            fused = fuse_passes(plan, step, extent, eps_passes)
            x_next, x0 = ddim_step_cpu(x_t, fused, step, sched)
            x_next_np, x0_np = x_next.cpu().numpy(), x0.cpu().numpy()
        eps_passes = []
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
        if step == plan.steps - 1:
            if write_output is not None:
                write_output(blk, x0_np)
            elif output is not None:
                write_output_block(plan, output, blk, x0_np)
        yield blk, x0_np[:, inside[0], inside[1]]


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
    bf16: bool | str | None = False,
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
    blk = plan.block(block)
    plan.check_model(model.config)
    if not 0 <= step < plan.steps:
        raise IndexError(f"step {step} outside 0..{plan.steps - 1}")
    genes_src = _gene_source(source, gene_names, gene_blind)
    ((_, x0),) = advance(plan, model, genes_src, state_in, state_out, step, [blk], device=device,
                         batch_size=batch_size, precision=bf16, output=output,
                         schedule=schedule, numerics=numerics)  # fmt: skip
    return x0


def _inside_mask(shape: tuple[int, ...], inside: tuple[slice, slice]) -> np.ndarray:
    """Boolean mask ``(1, h, w)``: True on the pixels of a moved extent inside the region."""
    mask = np.zeros((1, *shape[-2:]), dtype=bool)
    mask[:, inside[0], inside[1]] = True
    return mask


def ddim_step_cpu(x_t, eps, step: int, schedule):
    """:func:`~napari_teramind.diffusion.ddim_step` in float32, on the tensors' device."""
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
    genes_src = _gene_source(source, gene_names, gene_blind)
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
