"""Slice schemes: which image slices a model generates together and which gene slices it reads.

A Tera-MIND model is fixed by two integers of its configuration
(:class:`~napari_teramind.model.ModelConfig`): ``gene_slices`` ``Z`` (gene slices per patch)
and ``image_depth`` ``D`` (image slices generated together). The published code trains
``rna_slc = Z`` in {1, 4, 8, 16} with ``D = ceil(Z / 2)`` (METHOD.md 1.6). The image slices
are the middle of the gene window: ``Z = 4`` reads slices ``s - 1 .. s + 2`` for images
``s, s + 1``; ``Z = 8`` reads ``s - 2 .. s + 5`` for ``s .. s + 3``; ``Z = 1`` reads slice ``s``
for image ``s`` (the single-section model of the published ``--to_hbr`` path).

A **slice group** ``k`` is image slices ``D k .. D k + D - 1`` with the gene window
``D k - o .. D k - o + Z - 1``, ``o = (Z - D) // 2``. Gene slices outside the stack are empty
(zero counts), as published; image slices of a group outside the stack are generated but
never written. For ``Z = 4, D = 2`` the groups are the slice pairs ``(2k, 2k + 1)`` with gene
windows ``2k - 1 .. 2k + 2``.

Training draws a group start ``s`` at every slice (not only at multiples of ``D``), so that
every image slice is trained at every position of the group.

This module is pure Python (no numpy, no torch): the generation plan, the training patches and
the attention maps all use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PUBLISHED_GENE_SLICES", "SliceGroup", "SliceScheme", "slice_groups"]

#: The gene-slice counts the published code trains (``rna_slc``).
PUBLISHED_GENE_SLICES: tuple[int, ...] = (1, 4, 8, 16)


@dataclass(frozen=True)
class SliceGroup:
    """One group of image slices and the gene window that conditions it.

    Attributes
    ----------
    k
        Group number: image slices ``D k .. D k + D - 1``.
    image
        The ``D`` image slices (the last ones may lie beyond the stack).
    genes
        The ``Z`` gene slices (may leave the stack on both sides; those are empty).
    """

    k: int
    image: tuple[int, ...]
    genes: tuple[int, ...]


@dataclass(frozen=True)
class SliceScheme:
    """The slice scheme of a model: ``gene_slices`` ``Z`` and ``image_depth`` ``D``.

    Parameters
    ----------
    gene_slices
        Gene slices per patch ``Z`` (>= ``image_depth``).
    image_depth
        Image slices generated together ``D``.
    """

    gene_slices: int = 4
    image_depth: int = 2

    def __post_init__(self) -> None:
        for name in ("gene_slices", "image_depth"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.gene_slices < self.image_depth:
            raise ValueError(
                f"gene_slices ({self.gene_slices}) must be >= image_depth ({self.image_depth})"
            )

    @classmethod
    def published(cls, gene_slices: int) -> SliceScheme:
        """The published scheme for ``rna_slc = gene_slices``: ``D = ceil(Z / 2)``."""
        return cls(int(gene_slices), math.ceil(int(gene_slices) / 2))

    @classmethod
    def of(cls, config: object) -> SliceScheme:
        """The scheme of a model configuration (anything with the two attributes)."""
        return cls(int(config.gene_slices), int(config.image_depth))  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ geometry
    @property
    def offset(self) -> int:
        """Gene slices before the first image slice in the window (``(Z - D) // 2``)."""
        return (self.gene_slices - self.image_depth) // 2

    @property
    def image_slots(self) -> tuple[int, ...]:
        """Positions of the image slices inside the gene window."""
        return tuple(range(self.offset, self.offset + self.image_depth))

    @property
    def single_section(self) -> bool:
        """One gene slice and one image slice: a model of single sections."""
        return self.gene_slices == 1 and self.image_depth == 1

    def gene_window(self, start: int) -> tuple[int, ...]:
        """Gene slices of the group whose first image slice is ``start``."""
        z0 = int(start) - self.offset
        return tuple(range(z0, z0 + self.gene_slices))

    def group(self, k: int) -> SliceGroup:
        """Group ``k`` (image slices ``D k .. D k + D - 1``)."""
        start = self.image_depth * int(k)
        return SliceGroup(
            int(k), tuple(range(start, start + self.image_depth)), self.gene_window(start)
        )

    def group_of(self, z: int) -> int:
        """Number ``k`` of the group holding image slice ``z``."""
        return int(z) // self.image_depth

    def groups(self, slices: Iterable[int]) -> tuple[SliceGroup, ...]:
        """The groups covering ``slices``, in order (each group once)."""
        return tuple(self.group(k) for k in sorted({self.group_of(z) for z in slices}))

    def training_starts(self, n_slices: int) -> tuple[int, ...]:
        """First image slices ``s`` a training crop may start at (the group inside the stack)."""
        return tuple(range(max(0, int(n_slices) - self.image_depth + 1)))

    # ------------------------------------------------------------------ checks
    def check_stack(self, n_slices: int, what: str = "the store") -> None:
        """Refuse a stack that this scheme cannot use, before any work.

        A model generating ``D > 1`` slices together needs at least ``D`` sections; a
        single-section model (``Z = D = 1``) takes any stack, one section at a time.

        Raises
        ------
        ValueError
            Naming the model's scheme, the stack and what to use instead.
        """
        if int(n_slices) < self.image_depth:
            raise ValueError(
                f"{what} has {n_slices} section(s), but the model generates "
                f"{self.image_depth} slices together from {self.gene_slices} gene slices "
                f"({self.describe()}); use a single-section model (gene_slices=1, "
                "image_depth=1, e.g. `teramind train --gene-slices 1`) for single sections, "
                f"or a store with at least {self.image_depth} sections"
            )

    def describe(self) -> str:
        """Short text, e.g. ``'4 gene slices -> 2 image slices'``."""
        if self.single_section:
            return "single-section: 1 gene slice -> 1 image slice"
        return f"{self.gene_slices} gene slices -> {self.image_depth} image slices"

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"gene_slices": self.gene_slices, "image_depth": self.image_depth}


def slice_groups(
    n_slices: int,
    gene_slices: int = 4,
    image_depth: int = 2,
    slices: Sequence[int] | None = None,
) -> tuple[SliceGroup, ...]:
    """The slice groups of a stack (or of some of its slices) under a model's scheme.

    Parameters
    ----------
    n_slices
        Sections in the stack.
    gene_slices, image_depth
        The model's ``Z`` and ``D`` (``ModelConfig.gene_slices``, ``ModelConfig.image_depth``).
    slices
        Requested slices (all by default); the groups holding them are returned.

    Examples
    --------
    >>> [g.image for g in slice_groups(3)]
    [(0, 1), (2, 3)]
    >>> slice_groups(3)[0].genes
    (-1, 0, 1, 2)
    >>> [(g.image, g.genes) for g in slice_groups(2, 1, 1)]
    [((0,), (0,)), ((1,), (1,))]
    """
    scheme = SliceScheme(gene_slices, image_depth)
    wanted = range(int(n_slices)) if slices is None else slices
    bad = [z for z in wanted if not 0 <= int(z) < n_slices]
    if bad:
        raise ValueError(f"slices {bad} are outside the stack 0..{n_slices - 1}")
    return scheme.groups(wanted)
