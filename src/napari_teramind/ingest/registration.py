"""Per-slice 2D affine transforms: reading, checking, composing and applying them.

Every matrix here is a 3 x 3 homogeneous affine acting on column vectors ``(x, y, 1)``
(x = column, y = row), the convention of MERSCOPE's ``micron_to_mosaic_pixel_transform.csv``.
A *registration* matrix maps a slice's own pixel coordinates (its mosaic) onto the shared
canvas. Tools that export the inverse (canvas to slice, as ABBA and the paper's inverse
registration transform do) are read with ``direction="canvas_to_source"``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: Condition number above which an affine counts as not invertible.
MAX_CONDITION = 1e10
DIRECTIONS = ("source_to_canvas", "canvas_to_source")


def as_affine(matrix, what: str = "affine") -> np.ndarray:
    """Return ``matrix`` as a checked, invertible 3 x 3 float64 affine.

    Parameters
    ----------
    matrix
        A 3 x 3 homogeneous matrix, or the 2 x 3 top part of one.
    what
        Name used in error messages (file and slice).

    Raises
    ------
    ValueError
        When the matrix has the wrong shape, non-finite entries, a last row other than
        ``(0, 0, 1)``, or is not invertible.
    """
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: not a numeric matrix ({exc})") from None
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    if m.shape != (3, 3):
        raise ValueError(f"{what}: expected a 3 x 3 (or 2 x 3) affine matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{what}: the matrix has NaN or infinite entries")
    if not np.allclose(m[2], [0.0, 0.0, 1.0]):
        raise ValueError(
            f"{what}: the last row must be (0, 0, 1) for a 2D affine, got {m[2].tolist()}; "
            "projective transforms are not supported"
        )
    lin = m[:2, :2]
    det = float(np.linalg.det(lin))
    if det == 0.0 or not np.isfinite(det) or np.linalg.cond(lin) > MAX_CONDITION:
        raise ValueError(
            f"{what}: the affine is not invertible (determinant {det:.3g}); a registration "
            "must map the slice onto the canvas one to one. Check the matrix export."
        )
    return m


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a checked affine."""
    return np.linalg.inv(as_affine(matrix))


def is_identity(matrix: np.ndarray, atol: float = 1e-9) -> bool:
    """Whether ``matrix`` is the identity (to ``atol``)."""
    return bool(np.allclose(matrix, np.eye(3), atol=atol, rtol=0))


def integer_translation(matrix: np.ndarray, atol: float = 1e-9) -> tuple[int, int] | None:
    """``(dx, dy)`` when ``matrix`` is a pure whole-pixel translation, else ``None``."""
    m = np.asarray(matrix)
    if not np.allclose(m[:2, :2], np.eye(2), atol=atol, rtol=0):
        return None
    t = m[:2, 2]
    r = np.round(t)
    if not np.allclose(t, r, atol=atol, rtol=0):
        return None
    return int(r[0]), int(r[1])


def apply(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply an affine to point coordinates; returns ``(x', y')`` as float64."""
    m = matrix
    xo = m[0, 0] * x + m[0, 1] * y + m[0, 2]
    yo = m[1, 0] * x + m[1, 1] * y + m[1, 2]
    return xo, yo


def pixel_size_of(micron_to_pixel: np.ndarray) -> float:
    """Pixel size in micrometres implied by a micron-to-pixel affine (isotropic mean)."""
    det = abs(float(np.linalg.det(micron_to_pixel[:2, :2])))
    return float(1.0 / np.sqrt(det))


def read_matrix_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one 3 x 3 matrix from a text file (MERSCOPE ``micron_to_mosaic_pixel_transform.csv``).

    Rows are lines; entries are separated by spaces, tabs or commas.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transform file {path} does not exist")
    rows = []
    for line in path.read_text().splitlines():
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise ValueError(f"{path}: cannot read {line!r} as numbers") from None
    try:
        return as_affine(rows, what=str(path))
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "not a numeric" in str(exc):
            raise ValueError(f"{path}: expected 3 rows of 3 numbers") from None
        raise


def _slice_key(key) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        raise ValueError(f"slice key {key!r} is not an integer slice index") from None


def load_registration(
    path: str | os.PathLike[str], direction: str = "source_to_canvas"
) -> dict[int, np.ndarray]:
    """Read per-slice registration affines from a JSON or CSV file.

    Parameters
    ----------
    path
        JSON: ``{"direction": ..., "slices": {"0": [[a, b, c], [d, e, f], [0, 0, 1]], ...}}``,
        or just the ``{"0": matrix, ...}`` mapping, or a list of matrices (slice = position).
        CSV: a header with ``slice`` and ``a00, a01, a02, a10, a11, a12`` (and optionally
        ``a20, a21, a22``), one row per slice.
    direction
        ``"source_to_canvas"`` when the matrices map slice pixels onto the canvas;
        ``"canvas_to_source"`` when they map canvas pixels into the slice (they are inverted).
        A ``direction`` key in the JSON file overrides this.

    Returns
    -------
    dict
        Slice index to source-to-canvas 3 x 3 affine, in pixels.

    Raises
    ------
    ValueError
        On unknown layouts, missing columns, or a matrix that is not an invertible affine.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"registration file {path} does not exist")
    raw: Mapping[int, object]
    if path.suffix.lower() == ".json":
        from napari_teramind.atomic import read_json

        obj = read_json(path)
        if isinstance(obj, dict) and "slices" in obj:
            direction = obj.get("direction", direction)
            obj = obj["slices"]
        if isinstance(obj, list):
            raw = dict(enumerate(obj))
        elif isinstance(obj, dict):
            raw = {_slice_key(k): v for k, v in obj.items()}
        else:
            raise ValueError(f"{path}: expected a mapping of slice to matrix or a list")
    else:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in reader.fieldnames or []]
            need = ["slice", "a00", "a01", "a02", "a10", "a11", "a12"]
            missing = [c for c in need if c not in cols]
            if missing:
                raise ValueError(
                    f"{path}: registration CSV lacks columns {missing} (has {cols}); expected "
                    "slice, a00, a01, a02, a10, a11, a12 (row-major 2 x 3 affine)"
                )
            raw = {}
            for row in reader:
                row = {k.strip(): v for k, v in row.items()}
                m = [[row[f"a{i}{j}"] for j in range(3)] for i in range(2)]
                if all(f"a2{j}" in row for j in range(3)):
                    m.append([row[f"a2{j}"] for j in range(3)])
                raw[_slice_key(row["slice"])] = m
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    out = {}
    for z, m in raw.items():
        a = as_affine(m, what=f"{path} slice {z}")
        out[z] = np.linalg.inv(a) if direction == "canvas_to_source" else a
    return out


def save_registration(path: str | os.PathLike[str], affines: Mapping[int, np.ndarray]) -> None:
    """Write source-to-canvas affines as a registration JSON file."""
    from napari_teramind.atomic import write_json_atomic

    write_json_atomic(
        path,
        {
            "direction": "source_to_canvas",
            "slices": {str(z): np.asarray(m).tolist() for z, m in sorted(affines.items())},
        },
    )


def dumps(matrix: np.ndarray) -> str:
    """Compact JSON of a matrix (for metadata)."""
    return json.dumps(np.asarray(matrix).tolist())
