"""Generation plan: the region, its patch grids, slice pairs, gene windows and blocks.

Geometry (all in image pixels of the source brain store)
--------------------------------------------------------
* The **region** ``(y0, y1, x0, x1)`` has sides that are multiples of the 64 px patch and an
  origin on the gene-block grid (a multiple of 16 px), so every patch's genes are whole
  gene blocks.
* The **aligned grid**: 64 px patches with corners at ``region origin + 64 k``. The collage
  decoder predicts the noise of these patches; they tile the region exactly.
* The **offset grid**: 64 px patches with corners at ``region origin - 32 + 64 k``. The encoder
  runs on these; aligned patch ``(i, j)`` is decoded from offset patches ``(i, j)``,
  ``(i, j + 1)``, ``(i + 1, j)`` and ``(i + 1, j + 1)``.
* A **block** is ``B x B`` aligned px (``B`` a multiple of 64; edge blocks may be smaller) of one
  **slice pair**. Computing it needs the state of the block plus a 32 px **halo**.
* **Slice groups** of the model's scheme (:mod:`napari_teramind.slices`) cover the requested
  slices: ``image_depth`` ``D`` image slices ``D k .. D k + D - 1`` with a window of
  ``gene_depth`` ``Z`` gene slices around them. For the published 4-slice model these are the
  **slice pairs** ``(2k, 2k + 1)`` reading gene slices ``2k - 1 .. 2k + 2``; for a
  single-section model (``Z = D = 1``) every slice is its own group. Gene slices outside the
  stack are empty (zero), as published. An image slice of a group that lies outside the stack
  (odd stacks) is generated but never written. The plan keeps the historical names: ``pairs``
  are the group numbers, ``pair_slices`` a group's image slices.

Halo rule: the state ``x_t`` is **zero outside the region** (training zero-pads ``x_t``), the
genes are the real counts wherever the canvas has them and zero outside the canvas. The tiled
engine and the global reference pass use the same rule, so tiling never changes the result.

Units of work are ``(step, block)``; the blocks of one step are independent.

Schemes (:mod:`~napari_teramind.generate.schemes`) other than the published ``"collage"`` move
the grids by a phase ``p`` at some steps. A step's blocks are then cut on its frame grid: block
``k`` covers region rows ``k B - p .. (k + 1) B - p`` (the last one up to the region's end plus
the overhang of its last patch), and the state it writes is stored ``p`` px further on, in
arrays 64 px larger than the region, so that the blocks of a step still write disjoint chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_teramind.slices import SliceGroup, SliceScheme, slice_groups

__all__ = [
    "HALO_PX",
    "PATCH_PX",
    "Block",
    "GenerationPlan",
    "SliceGroup",
    "SliceScheme",
    "normalize_slices",
    "slice_groups",
    "snap_region",
]

#: Side of one model patch in pixels.
PATCH_PX = 64
#: Halo around a block: half a patch.
HALO_PX = PATCH_PX // 2

Region = tuple[int, int, int, int]


def normalize_slices(
    slices: int | slice | range | Iterable[int] | None, n_slices: int
) -> tuple[int, ...]:
    """Turn a slice request into a sorted tuple of distinct slice indices.

    Parameters
    ----------
    slices
        ``None`` (every slice), one index, a ``slice``/``range``, or any iterable of indices.
        A two-element tuple is a list of two slices, not a range: use ``range(z0, z1)``.
    n_slices
        Slices in the stack.
    """
    if slices is None:
        out = list(range(n_slices))
    elif isinstance(slices, slice):
        out = list(range(n_slices))[slices]
    elif isinstance(slices, int):
        out = [slices]
    else:
        out = [int(z) for z in slices]
    if not out:
        raise ValueError("no slices requested; pass e.g. range(0, 4) or None for all slices")
    bad = [z for z in out if not 0 <= z < n_slices]
    if bad:
        raise ValueError(f"slices {bad} are outside the stack 0..{n_slices - 1}")
    return tuple(sorted(set(out)))


def snap_region(region: Sequence[int], height: int, width: int, patch: int = PATCH_PX) -> Region:
    """Round a region outwards to whole patches on the patch grid and clip it to the canvas.

    Use this for interactive selections; :class:`GenerationPlan` itself rejects regions that
    are not patch multiples rather than silently changing them.
    """
    y0, y1, x0, x1 = (int(v) for v in region)
    y0, x0 = max(0, y0 // patch * patch), max(0, x0 // patch * patch)
    y1 = min(height // patch * patch, -(-y1 // patch) * patch)
    x1 = min(width // patch * patch, -(-x1 // patch) * patch)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"region {tuple(region)} holds no whole {patch} px patch of the canvas")
    return y0, y1, x0, x1


@dataclass(frozen=True)
class Block:
    """One block of one slice pair: the spatial part of a ``(step, block)`` unit.

    Attributes
    ----------
    index
        Position in :attr:`GenerationPlan.blocks`.
    pair
        Index into :attr:`GenerationPlan.pairs` (not the pair number ``k``).
    row, col
        Block position in the region's block grid.
    y0, y1, x0, x1
        Aligned pixels of the block, **relative to the region origin**.
    """

    index: int
    pair: int
    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in px."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def n_patches(self) -> int:
        """Aligned 64 px patches of the block (collage-decoder outputs)."""
        return (self.y1 - self.y0) // PATCH_PX * ((self.x1 - self.x0) // PATCH_PX)

    @property
    def n_offset_patches(self) -> int:
        """Offset patches the encoder runs on (the block plus its halo)."""
        return ((self.y1 - self.y0) // PATCH_PX + 1) * ((self.x1 - self.x0) // PATCH_PX + 1)


@dataclass(frozen=True)
class GenerationPlan:
    """Everything that fixes the result of a generation, and how it is cut into units.

    The result depends on ``canvas, region, slices, seed, steps`` (and the model and source
    data) but **not** on ``block_px``: that only sets the unit size.

    Parameters
    ----------
    canvas
        ``(n_slices, height, width)`` of the source store.
    region
        ``(y0, y1, x0, x1)`` in image px; sides multiples of 64, origin a multiple of
        ``gene_block_px``, inside the canvas.
    slices
        Requested slices (see :func:`normalize_slices`); all slice pairs touching them are
        generated.
    block_px
        Block side ``B`` in px, a multiple of 64.
    seed
        Seed of the initial noise.
    steps
        DDIM steps.
    gene_block_px
        Gene block side of the store (16 for every published model).
    scheme
        Sampling scheme (:data:`~napari_teramind.generate.schemes.SCHEMES`); the dataclass
        default is the published ``"collage"``, the user-facing entry points default to
        :data:`~napari_teramind.generate.schemes.DEFAULT_SCHEME`.
    image_depth, gene_depth
        The model's slice scheme (``ModelConfig.image_depth`` and ``ModelConfig.gene_slices``;
        :meth:`for_model` fills them in). The default is the published 4-slice scheme.
    """

    canvas: tuple[int, int, int]
    region: Region
    slices: tuple[int, ...]
    block_px: int = 512
    seed: int = 0
    steps: int = 15
    gene_block_px: int = 16
    scheme: str = "collage"
    image_depth: int = 2
    gene_depth: int = 4
    blocks: tuple[Block, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n, h, w = (int(v) for v in self.canvas)
        object.__setattr__(self, "canvas", (n, h, w))
        if len(self.region) != 4:
            raise ValueError(f"region must be (y0, y1, x0, x1), got {self.region!r}")
        y0, y1, x0, x1 = (int(v) for v in self.region)
        object.__setattr__(self, "region", (y0, y1, x0, x1))
        object.__setattr__(self, "slices", normalize_slices(self.slices, n))
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(
                f"region {self.region} must lie inside the {h} x {w} px canvas with y0 < y1, "
                "x0 < x1"
            )
        if (y1 - y0) % PATCH_PX or (x1 - x0) % PATCH_PX:
            raise ValueError(
                f"region {self.region} is {y1 - y0} x {x1 - x0} px; both sides must be "
                f"multiples of {PATCH_PX} px (use snap_region() to round it outwards)"
            )
        gb = self.gene_block_px
        if y0 % gb or x0 % gb:
            raise ValueError(
                f"region origin ({y0}, {x0}) must be a multiple of the {gb} px gene block so "
                "that patches hold whole gene blocks (use snap_region())"
            )
        if self.block_px <= 0 or self.block_px % PATCH_PX:
            raise ValueError(
                f"block_px must be a positive multiple of {PATCH_PX}, got {self.block_px}"
            )
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        from napari_teramind.generate.schemes import PHASE_UNIT, check_scheme

        check_scheme(self.scheme)
        SliceScheme(self.gene_depth, self.image_depth)  # validates the pair of integers
        if self.scheme != "collage" and PHASE_UNIT % gb:
            raise ValueError(
                f"scheme {self.scheme!r} moves grids by {PHASE_UNIT} px, which is not a whole "
                f"number of {gb} px gene blocks; use scheme='collage'"
            )
        blocks = []
        for p in range(len(self.pairs)):
            for r, by in enumerate(range(0, y1 - y0, self.block_px)):
                for c, bx in enumerate(range(0, x1 - x0, self.block_px)):
                    blocks.append(
                        Block(
                            index=len(blocks),
                            pair=p,
                            row=r,
                            col=c,
                            y0=by,
                            y1=min(by + self.block_px, y1 - y0),
                            x0=bx,
                            x1=min(bx + self.block_px, x1 - x0),
                        )
                    )
        object.__setattr__(self, "blocks", tuple(blocks))

    # ------------------------------------------------------------------ geometry
    @property
    def height(self) -> int:
        """Region height in px."""
        return self.region[1] - self.region[0]

    @property
    def width(self) -> int:
        """Region width in px."""
        return self.region[3] - self.region[2]

    @property
    def slice_scheme(self) -> SliceScheme:
        """The model's slice scheme (:class:`~napari_teramind.slices.SliceScheme`)."""
        return SliceScheme(self.gene_depth, self.image_depth)

    @property
    def groups(self) -> tuple[SliceGroup, ...]:
        """The slice groups covering the requested slices (slice pairs for 4-slice models)."""
        return self.slice_scheme.groups(self.slices)

    @property
    def pairs(self) -> tuple[int, ...]:
        """Group numbers ``k`` covering the requested slices (pair ``k``: slices ``2k, 2k+1``)."""
        return tuple(g.k for g in self.groups)

    @property
    def channels(self) -> int:
        """State channels per group: ``2 * image_depth`` (DAPI slices, then PolyT slices)."""
        return 2 * self.image_depth

    def pair_slices(self, pair: int) -> tuple[int, ...]:
        """Image slices of group index ``pair`` (``(2k, 2k + 1)`` for slice pairs)."""
        return self.groups[pair].image

    def gene_slices(self, pair: int) -> tuple[int, ...]:
        """Gene slices of group index ``pair`` (``2k - 1 .. 2k + 2`` for pairs; may leave it)."""
        return self.groups[pair].genes

    def stain_channels(self, d: int) -> list[int]:
        """State channels ``[DAPI, PolyT]`` of the ``d``-th image slice of a group."""
        return [d, self.image_depth + d]

    def written_slices(self, pair: int) -> tuple[int, ...]:
        """Requested slices of pair index ``pair`` (the ones written to the output)."""
        return tuple(z for z in self.pair_slices(pair) if z in self.slices)

    @property
    def block_grid(self) -> tuple[int, int]:
        """Blocks per column and per row of one slice pair."""
        return -(-self.height // self.block_px), -(-self.width // self.block_px)

    @property
    def n_blocks(self) -> int:
        """Blocks per step (all pairs)."""
        return len(self.blocks)

    @property
    def n_units(self) -> int:
        """``(step, block)`` units of the whole generation."""
        return self.steps * self.n_blocks

    @property
    def n_patches(self) -> int:
        """Aligned patches per step (output patches), all pairs."""
        return len(self.pairs) * (self.height // PATCH_PX) * (self.width // PATCH_PX)

    @property
    def frame_pad(self) -> int:
        """Extra px of the state arrays below and right of the region (0 for ``"collage"``)."""
        return 0 if self.scheme == "collage" else PATCH_PX

    @property
    def state_shape(self) -> tuple[int, int, int, int]:
        """Shape of one state array: ``(groups, 2 D, height + pad, width + pad)`` float32.

        Channels are in model order (stain, slice), e.g. ``[DAPI 2k, DAPI 2k+1, PolyT 2k,
        PolyT 2k+1]`` for pairs; ``pad`` is :attr:`frame_pad`.
        """
        pad = self.frame_pad
        return len(self.pairs), self.channels, self.height + pad, self.width + pad

    def grids(self, step: int):
        """:class:`~napari_teramind.generate.schemes.StepGrids` of ``step`` (run order)."""
        from napari_teramind.generate.schemes import step_grids

        return step_grids(self.scheme, step, self.steps)

    def extent(self, step: int, block: int | Block) -> tuple[int, int, int, int]:
        """Region px ``(y0, y1, x0, x1)`` that ``block`` computes at ``step``.

        The plan's block moved by the step's frame phase ``p``: ``(block.y0 - p, ...)``. The
        last block of a row or column reaches the end of the frame grid (the region end plus
        ``64 - p`` when ``p > 0``), so the blocks of a step cover the region exactly once. The
        extent may leave the region by less than a patch; those pixels are computed and
        dropped. For ``"collage"`` (and at every last step) this is the block itself.
        """
        blk = self.block(block)
        py, px = self.grids(step).frame
        y1 = (self.height + (PATCH_PX if py else 0)) if blk.y1 == self.height else blk.y1
        x1 = (self.width + (PATCH_PX if px else 0)) if blk.x1 == self.width else blk.x1
        return blk.y0 - py, y1 - py, blk.x0 - px, x1 - px

    @property
    def state_chunks(self) -> tuple[int, int, int, int]:
        """Chunks of the state arrays: exactly one block each, so no two blocks share one."""
        return 1, self.channels, self.block_px, self.block_px

    def block(self, index: int | Block) -> Block:
        """The block with ``index`` (a :class:`Block` is returned as is after a check).

        A block with index ``-1`` is a **sub-block** (:meth:`sub_block`): any rectangle of
        whole patches inside the region, computed like a plan block of that shape.
        """
        if isinstance(index, Block):
            if index.index == -1:
                return self.sub_block(index.pair, index.y0, index.y1, index.x0, index.x1)
            if not 0 <= index.index < len(self.blocks) or self.blocks[index.index] != index:
                raise ValueError(f"{index} does not belong to this plan")
            return index
        if not 0 <= index < len(self.blocks):
            raise IndexError(f"block {index} outside 0..{len(self.blocks) - 1}")
        return self.blocks[index]

    def sub_block(self, pair: int, y0: int, y1: int, x0: int, x1: int) -> Block:
        """A block of any whole-patch rectangle of the region (``index == -1``).

        The engine computes a sub-block exactly as it computes a plan block of the same
        pixels (its results never depend on how the region is cut into blocks); tiled spans
        (:mod:`~napari_teramind.generate.tiles`) use them for the halo they grow.
        """
        if not 0 <= pair < len(self.pairs):
            raise IndexError(f"pair index {pair} outside 0..{len(self.pairs) - 1}")
        for lo, hi, side in ((y0, y1, self.height), (x0, x1, self.width)):
            if not (0 <= lo < hi <= side and lo % PATCH_PX == 0 and hi % PATCH_PX == 0):
                raise ValueError(
                    f"sub-block ({y0}, {y1}, {x0}, {x1}) must be whole {PATCH_PX} px patches "
                    f"inside the {self.height} x {self.width} px region"
                )
        return Block(-1, pair, -1, -1, y0, y1, x0, x1)

    def to_store(self, y: int, x: int) -> tuple[int, int]:
        """Region-relative ``(y, x)`` to store px."""
        return y + self.region[0], x + self.region[2]

    def output_chunk_safe(self, image_chunk: int) -> bool:
        """Whether blocks write disjoint chunks of an output store with ``image_chunk``.

        True when the region origin and the block side are multiples of the chunk, so
        concurrent workers never read-modify-write the same output chunk.
        """
        y0, _, x0, _ = self.region
        return self.block_px % image_chunk == 0 and y0 % image_chunk == 0 and x0 % image_chunk == 0

    def unit_window(self, step: int, block: int | Block) -> tuple[int, int, int, int]:
        """Region px ``(y0, y1, x0, x1)`` a unit writes: its :meth:`extent` inside the region."""
        y0, y1, x0, x1 = self.extent(step, block)
        return max(y0, 0), min(y1, self.height), max(x0, 0), min(x1, self.width)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (for job specs and provenance).

        The slice scheme is written only when it is not the published 4-slice one, so the
        description (and every job spec) of a 4-slice generation is what it always was.
        """
        out = {
            "canvas": list(self.canvas),
            "region": list(self.region),
            "slices": list(self.slices),
            "block_px": self.block_px,
            "seed": self.seed,
            "steps": self.steps,
            "gene_block_px": self.gene_block_px,
            "scheme": self.scheme,
        }
        if (self.gene_depth, self.image_depth) != (4, 2):
            out.update(gene_depth=self.gene_depth, image_depth=self.image_depth)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationPlan:
        """Inverse of :meth:`to_dict`; a dict without ``scheme`` (older) means ``"collage"``."""
        known = {"canvas", "region", "slices", "block_px", "seed", "steps", "gene_block_px",
                 "scheme", "gene_depth", "image_depth"}  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GenerationPlan fields: {unknown}")
        return cls(
            canvas=tuple(data["canvas"]),
            region=tuple(data["region"]),
            slices=tuple(data["slices"]),
            block_px=int(data.get("block_px", 512)),
            seed=int(data.get("seed", 0)),
            steps=int(data.get("steps", 15)),
            gene_block_px=int(data.get("gene_block_px", 16)),
            scheme=str(data.get("scheme", "collage")),
            image_depth=int(data.get("image_depth", 2)),
            gene_depth=int(data.get("gene_depth", 4)),
        )

    def check_model(self, config: Any) -> None:
        """Refuse a model whose slice scheme is not this plan's, or that cannot use the stack.

        Parameters
        ----------
        config
            The model's :class:`~napari_teramind.model.ModelConfig`.

        Raises
        ------
        ValueError
            A plan made for another scheme (build it with :meth:`for_model`), or a stack with
            fewer sections than the model generates together (a 4-slice model asked for one
            section).
        """
        model = SliceScheme.of(config)
        model.check_stack(self.canvas[0], "the source store")
        if model != self.slice_scheme:
            raise ValueError(
                f"the generation plan is for {self.slice_scheme.describe()}, but the model "
                f"has {model.describe()}; build the plan with GenerationPlan.for_model()"
            )

    @classmethod
    def for_model(cls, config: Any, **kwargs: Any) -> GenerationPlan:
        """A plan with the slice scheme of the model ``config``; refuses unusable stacks.

        ``kwargs`` are the other :class:`GenerationPlan` fields (``canvas``, ``region``, ...).
        """
        scheme = SliceScheme.of(config)
        plan = cls(image_depth=scheme.image_depth, gene_depth=scheme.gene_slices, **kwargs)
        plan.check_model(config)
        return plan

    def with_block_px(self, block_px: int) -> GenerationPlan:
        """The same generation cut into blocks of another size (same result)."""
        return GenerationPlan.from_dict({**self.to_dict(), "block_px": block_px})
