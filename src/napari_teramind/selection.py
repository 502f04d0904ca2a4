"""One language for regions and slices, shared by every ``teramind`` command and every widget.

- :func:`parse_slices`: ``"0-3,6"``, ``"2 3"``, ``["2", "3"]``, ``"all"``, ``"current"``.
- :func:`parse_region`: ``Y0 Y1 X0 X1`` in image pixels (four values, or one string of four
  numbers separated by spaces or commas: the old ``y0,y1,x0,x1`` form still reads).
- :func:`region_from_rectangle`: the ``(y0, y1, x0, x1)`` pixel box around a drawn rectangle
  (napari Shapes data), clipped to the canvas.

Pure functions (no napari, no Qt): the CLI and the widgets turn their ``ValueError`` into an
argument error or a notification; the messages name the bad part and show the valid forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "REGION_FORMS",
    "SLICE_FORMS",
    "parse_region",
    "parse_slices",
    "region_from_rectangle",
]

Region = tuple[int, int, int, int]

#: How slices are written, for messages and help texts.
SLICE_FORMS = "e.g. '2', '0-3', '0-3,6' or '2 3'"
#: How a region is written, for messages and help texts.
REGION_FORMS = "four pixel coordinates Y0 Y1 X0 X1, e.g. '0 1024 0 2048'"

_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _tokens(text: str | Iterable[str | int]) -> list[str]:
    """Split on commas and white space (a string or several)."""
    parts = [text] if isinstance(text, str) else [str(t) for t in text]
    return [tok for p in parts for tok in re.split(r"[\s,]+", p.strip()) if tok]


def parse_slices(
    text: str | Iterable[str | int],
    n_slices: int | None = None,
    current: int | None = None,
) -> list[int]:
    """Slice indices from ``"2"``, ``"0-3"``, ``"0-3,6"``, ``"2 3"``, ``"all"`` or ``"current"``.

    Parameters
    ----------
    text
        One string, or several (the words of ``--slices 2 3``); parts are separated by commas
        or white space, a part is an index or an inclusive range ``a-b``.
    n_slices
        Number of slices of the store: enables ``"all"`` and the range check.
    current
        The slice on screen: enables ``"current"`` (and an empty text means it).

    Returns
    -------
    list of int
        Sorted, without repeats.

    Raises
    ------
    ValueError
        Naming the part that cannot be read (or lies outside the store) and the valid forms.
    """
    words = _tokens(text)
    low = [w.lower() for w in words]
    if not words or low == ["current"]:
        if current is None:
            raise ValueError(f"no slices given; write {SLICE_FORMS}")
        words = [str(current)]
    elif low == ["all"]:
        if n_slices is None:
            raise ValueError("'all' slices needs the store; write the slices, " + SLICE_FORMS)
        return list(range(n_slices))
    out: set[int] = set()
    for word in words:
        if word.isdigit():
            out.add(int(word))
            continue
        m = _RANGE.match(word)
        if m is None:
            extra = ", 'all'" if n_slices is not None else ""
            extra += ", 'current'" if current is not None else ""
            raise ValueError(f"cannot read slices {word!r}; write {SLICE_FORMS}{extra}")
        a, b = int(m.group(1)), int(m.group(2))
        if b < a:
            raise ValueError(f"slice range {word!r} runs backwards; write {b}-{a}")
        out.update(range(a, b + 1))
    if n_slices is not None:
        bad = sorted(k for k in out if k >= n_slices)
        if bad:
            raise ValueError(
                f"slices {bad} are outside the store's slices 0-{n_slices - 1}"
                if n_slices
                else "the store has no slices"
            )
    return sorted(out)


def parse_region(
    values: str | Sequence[str | int],
    height: int | None = None,
    width: int | None = None,
) -> Region:
    """A region ``(y0, y1, x0, x1)`` in image pixels from four numbers.

    Parameters
    ----------
    values
        Four values (``["0", "1024", "0", "2048"]``, the words of ``--region 0 1024 0 2048``),
        or one string holding four numbers separated by spaces or commas (``"0,1024,0,2048"``).
    height, width
        The canvas in pixels: when given, the region must lie inside it.

    Raises
    ------
    ValueError
        When there are not four whole numbers, the region is empty (``y1 <= y0`` or
        ``x1 <= x0``) or it leaves the canvas; the message names the coordinate.
    """
    words = _tokens(values)
    shown = " ".join(words)
    if len(words) != 4:
        raise ValueError(
            f"a region is {REGION_FORMS}; got {len(words)} value{'s' * (len(words) != 1)} "
            f"({shown!r})"
        )
    try:
        y0, y1, x0, x1 = (int(w) for w in words)
    except ValueError:
        raise ValueError(f"a region is {REGION_FORMS} (whole numbers); got {shown!r}") from None
    for name, v in (("y0", y0), ("y1", y1), ("x0", x0), ("x1", x1)):
        if v < 0:
            raise ValueError(f"region {name} = {v} is negative; pixel coordinates start at 0")
    if y1 <= y0:
        raise ValueError(f"region y0 {y0} >= y1 {y1}: the region is empty; write Y0 < Y1")
    if x1 <= x0:
        raise ValueError(f"region x0 {x0} >= x1 {x1}: the region is empty; write X0 < X1")
    if height is not None and y1 > height:
        raise ValueError(f"region y1 {y1} > the canvas height {height} px; write Y1 <= {height}")
    if width is not None and x1 > width:
        raise ValueError(f"region x1 {x1} > the canvas width {width} px; write X1 <= {width}")
    return y0, y1, x0, x1


def region_from_rectangle(
    corners: np.ndarray | Sequence[Sequence[float]],
    height: int | None = None,
    width: int | None = None,
) -> Region:
    """The pixel box ``(y0, y1, x0, x1)`` around a rectangle's corners, clipped to the canvas.

    Parameters
    ----------
    corners
        ``(n, d)`` vertex coordinates in image pixels (one shape of a napari Shapes layer in
        data coordinates); the last two columns are y and x. The box is rounded outwards.
    height, width
        The canvas: when given, the box is clipped to ``[0, height] x [0, width]``.

    Raises
    ------
    ValueError
        When there are no corners, or the rectangle lies outside the canvas.
    """
    pts = np.asarray(corners, dtype=float)
    if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] < 2:
        raise ValueError("the rectangle has no corners; draw or place a rectangle")
    pts = pts[:, -2:]
    y0, x0 = np.floor(pts.min(axis=0)).astype(int)
    y1, x1 = np.ceil(pts.max(axis=0)).astype(int)
    box = [int(y0), int(y1), int(x0), int(x1)]
    if height is not None:
        box[0], box[1] = (min(max(v, 0), height) for v in box[:2])
    if width is not None:
        box[2], box[3] = (min(max(v, 0), width) for v in box[2:])
    if box[1] <= box[0] or box[3] <= box[2]:
        canvas = f" {height} x {width} px" if height is not None and width is not None else ""
        raise ValueError(
            f"the rectangle (y {int(y0)}:{int(y1)}, x {int(x0)}:{int(x1)} px) lies outside the "
            f"canvas{canvas}; move it over the section"
        )
    return box[0], box[1], box[2], box[3]
