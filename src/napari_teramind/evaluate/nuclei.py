"""Nuclear count and size: cellpose (published) or a classical offline fallback.

* ``"cellpose"``: ``Cellpose(model_type="cyto")`` evaluated with ``diameter=None``,
  ``normalize=False``, ``channels=[0, 0]`` on the DAPI region as float 0..1 (METHOD.md 5.4), on
  the GPU when torch sees one. The weights (``cytotorch_0`` and ``size_cytotorch_0.npy``) must be
  in cellpose's model directory (``~/.cellpose/models`` or ``$CELLPOSE_LOCAL_MODELS_PATH``) or
  in a directory given as ``cellpose_models``; nothing is downloaded.
* ``"classical"``: Gaussian smoothing (sigma 1 px), a threshold (Otsu's, but never below
  :data:`MIN_NUCLEUS_LEVEL` on the 0..255 scale), markers at local intensity maxima at least
  2 px apart inside the foreground, and a watershed of the inverted smoothed image restricted to
  the foreground (scikit-image). Works offline; its error against the phantom's ground-truth
  nuclei is measured by :func:`compare_with_phantom`.
* ``"auto"``: cellpose when its weights are present, else classical.

The cellpose path reproduces ``Cellpose.eval`` (size model, then the mask model at the estimated
diameter) from its two parts, so that the size model file, a pickled dict of numpy arrays, is
read by :func:`read_size_model` (numpy arrays and numbers only) instead of
``np.load(allow_pickle=True)``: no file given by a user is ever unpickled.
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
from pathlib import Path

import numpy as np

METHODS = ("classical", "cellpose", "auto")
#: Classical parameters (chosen on the phantom, see docs/evaluation.md).
SMOOTH_SIGMA = 1.0
MIN_PEAK_DISTANCE = 2
MIN_AREA = 6
#: Absolute floor of the classical threshold (0..255 DAPI). Otsu's threshold adapts to any
#: image, so on an image without nuclei (dark tissue with faint specks) it splits the specks from
#: the background and "finds" nuclei there. The published count is absolute too: cellpose runs
#: with ``normalize=False`` on DAPI / 255. 32 (an eighth of the range) lies above the DAPI of
#: nucleus-free tissue (phantom: 3-18) and far below any nucleus (phantom types: 120-215;
#: ingest maps real DAPI's 99.9th percentile to 255), so on images with nuclei Otsu's threshold
#: (about 80 on the phantom) is the one used.
MIN_NUCLEUS_LEVEL = 32.0
#: Cellpose files of the ``cyto`` model.
CELLPOSE_FILES = ("cytotorch_0", "size_cytotorch_0.npy")


def cellpose_model_dir(cellpose_models: str | os.PathLike[str] | None = None) -> Path | None:
    """Directory holding the cellpose ``cyto`` weights, or None when they are not available."""
    candidates = []
    if cellpose_models is not None:
        candidates.append(Path(cellpose_models))
    if os.environ.get("CELLPOSE_LOCAL_MODELS_PATH"):
        candidates.append(Path(os.environ["CELLPOSE_LOCAL_MODELS_PATH"]))
    candidates.append(Path.home() / ".cellpose" / "models")
    for d in candidates:
        if all((d / f).is_file() for f in CELLPOSE_FILES):
            return d
    return None


def resolve_method(method: str, cellpose_models=None) -> str:
    """``"classical"`` or ``"cellpose"`` for a requested method (``"auto"`` resolved)."""
    if method not in METHODS:
        raise ValueError(f"nuclei method must be one of {METHODS}, not {method!r}")
    if method == "auto":
        return "cellpose" if _cellpose_ready(cellpose_models) else "classical"
    if method == "cellpose" and not _cellpose_ready(cellpose_models):
        raise FileNotFoundError(
            "cellpose nuclei segmentation needs the cellpose package (pip install "
            "'cellpose>=3.1.1,<4') and its 'cyto' weights "
            f"({', '.join(CELLPOSE_FILES)}) in ~/.cellpose/models, $CELLPOSE_LOCAL_MODELS_PATH "
            "or the directory given with --cellpose-models; run cellpose once on a machine with "
            "internet access to download them, or use --nuclei classical"
        )
    return method


def _cellpose_ready(cellpose_models) -> bool:
    try:
        import cellpose  # noqa: F401
    except ImportError:
        return False
    return cellpose_model_dir(cellpose_models) is not None


def segment_nuclei(
    dapi: np.ndarray, method: str = "classical", *, cellpose_models=None, device=None
) -> np.ndarray:
    """Label the nuclei of a DAPI image.

    Parameters
    ----------
    dapi
        uint8 ``(h, w)`` DAPI image.
    method
        ``"classical"``, ``"cellpose"`` or ``"auto"`` (see the module docstring).
    cellpose_models
        Directory with the cellpose ``cyto`` weights (cellpose's cache by default).
    device
        Torch device for cellpose; the GPU when there is one by default.

    Returns
    -------
    numpy.ndarray
        int32 labels ``(h, w)``, 0 = background, 1..n the nuclei.
    """
    dapi = np.asarray(dapi)
    if dapi.ndim != 2:
        raise ValueError(f"dapi must be a 2-D image, got shape {dapi.shape}")
    method = resolve_method(method, cellpose_models)
    if not dapi.any():  # all-black: skipped, as published
        return np.zeros(dapi.shape, np.int32)
    if method == "cellpose":
        return _cellpose(dapi, cellpose_models, device)
    return _classical(dapi)


def _classical(dapi: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage import feature, filters, segmentation

    im = filters.gaussian(dapi.astype(np.float32), sigma=SMOOTH_SIGMA, preserve_range=True)
    if float(im.max()) - float(im.min()) < 1.0:
        return np.zeros(dapi.shape, np.int32)
    fg = im > max(float(filters.threshold_otsu(im)), MIN_NUCLEUS_LEVEL)
    comp, _ = ndi.label(fg)
    sizes = np.bincount(comp.ravel())
    fg &= sizes[comp] >= MIN_AREA
    comp[~fg] = 0
    peaks = feature.peak_local_max(
        im, min_distance=MIN_PEAK_DISTANCE, labels=comp, exclude_border=False
    )
    markers = np.zeros(dapi.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = segmentation.watershed(-im, markers, mask=fg)
    return labels.astype(np.int32)


_CELLPOSE_CACHE: dict = {}
#: Keys of cellpose's size model (a linear regression from the style vector to the diameter).
SIZE_MODEL_KEYS = ("A", "smean", "diam_mean", "ymean")
#: The only globals a size model file may name: numpy's array and scalar rebuilders.
_NUMPY_GLOBALS = {
    (mod, name)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, numpy scalars and plain containers; refuses any other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def read_size_model(path: str | os.PathLike[str]) -> dict[str, np.ndarray | float]:
    """Read cellpose's size model (``size_cytotorch_0.npy``) without executing code from it.

    The file is an ``.npy`` of a 0-d object array holding a dict of numpy arrays; it is parsed
    with an unpickler that builds numpy arrays and scalars only.

    Raises
    ------
    ValueError
        When the file is not such a size model (it names the file and what was wrong).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
            if not dtype.hasobject:
                raise ValueError("it holds a plain array, not the size model's dict")
            obj = _NumpyOnlyUnpickler(f).load()
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(
            f"{path} is not a cellpose size model ({e}); take size_cytotorch_0.npy from "
            "cellpose's model directory (~/.cellpose/models)"
        ) from e
    params = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(params, dict) or any(k not in params for k in SIZE_MODEL_KEYS):
        raise ValueError(
            f"{path} is not a cellpose size model: expected a dict with keys "
            f"{', '.join(SIZE_MODEL_KEYS)}"
        )
    return params


@contextmanager
def _model_dir(path: Path):
    import cellpose.models as cm

    old = cm.MODEL_DIR
    cm.MODEL_DIR = path
    try:
        yield
    finally:
        cm.MODEL_DIR = old


def _cellpose_models(d: Path, gpu: bool):
    """The ``cyto`` mask model and size model of cellpose, loaded from ``d`` (cached)."""
    from cellpose import models

    key = (str(d), gpu)
    if key not in _CELLPOSE_CACHE:
        with _model_dir(d):  # weights via torch.load(weights_only=True) inside cellpose
            cp = models.CellposeModel(gpu=gpu, model_type="cyto", diam_mean=30.0, nchan=2)
        params = read_size_model(d / CELLPOSE_FILES[1])
        sz = models.SizeModel(cp_model=cp)  # no file: filled from the safely read dict
        sz.params, sz.diam_mean = params, float(params["diam_mean"])
        _CELLPOSE_CACHE[key] = (cp, sz)
    return _CELLPOSE_CACHE[key]


def _cellpose(dapi, cellpose_models, device) -> np.ndarray:
    """Published call ``Cellpose("cyto").eval(diameter=None, normalize=False, channels=[0, 0])``."""
    import torch

    d = cellpose_model_dir(cellpose_models)
    gpu = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    cp, sz = _cellpose_models(d, gpu)
    x = [dapi.astype(np.float32) / 255.0]
    kw = {"channels": [0, 0], "normalize": False, "invert": False, "batch_size": 8}
    diams, _ = sz.eval(x, channel_axis=None, **kw)
    masks, *_ = cp.eval(x, channel_axis=None, diameter=diams, do_3D=False, **kw)
    return np.asarray(masks[0], np.int32)


def nuclei_stats(labels: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Count, area (px) and solidity of labelled nuclei whose centroid is in ``mask``.

    Solidity is a nucleus's area over its convex hull's (1 for a convex shape; merged,
    worm-shaped blobs score lower: real nuclei are round or oval).
    """
    from skimage.measure import regionprops_table

    empty = {"count": 0, "area_mean": float("nan"), "area_std": float("nan"),
             "solidity_mean": float("nan")}  # fmt: skip
    if labels.max() == 0:
        return empty
    props = regionprops_table(labels, properties=("area", "centroid", "solidity"))
    area = np.asarray(props["area"], np.float64)
    solidity = np.asarray(props["solidity"], np.float64)
    if mask is not None:
        cy = np.clip(np.asarray(props["centroid-0"]).astype(int), 0, labels.shape[0] - 1)
        cx = np.clip(np.asarray(props["centroid-1"]).astype(int), 0, labels.shape[1] - 1)
        keep = np.asarray(mask)[cy, cx]
        area, solidity = area[keep], solidity[keep]
    if area.size == 0:
        return empty
    return {"count": int(area.size), "area_mean": float(area.mean()),
            "area_std": float(area.std()), "solidity_mean": float(solidity.mean())}  # fmt: skip


def ground_truth_stats(spec, z: int, box, mask: np.ndarray | None = None) -> dict[str, float]:
    """Count and mean area (px) of a phantom's ground-truth nuclei in ``box`` ``(y0, y1, x0, x1)``.

    With ``mask`` (``(h, w)`` over the box), only nuclei centred where it is True count, as
    :func:`nuclei_stats` counts segmented ones.
    """
    from napari_teramind.phantom import ground_truth_nuclei

    y0, y1, x0, x1 = box
    t = ground_truth_nuclei(spec, z, y0, x0, y1 - y0, x1 - x0)
    area = np.asarray(t["area_px"], np.float64)
    if mask is not None:
        iy = np.clip(np.floor(t["y"]).astype(int) - y0, 0, y1 - y0 - 1)
        ix = np.clip(np.floor(t["x"]).astype(int) - x0, 0, x1 - x0 - 1)
        area = area[np.asarray(mask)[iy, ix]]
    return {"count": int(area.size), "area_mean": float(area.mean()) if area.size else float("nan")}


def compare_with_phantom(
    source, z: int, box: tuple[int, int, int, int], method: str = "classical", images=None
) -> dict[str, float]:
    """Segment a phantom region and compare count and mean area with its ground-truth nuclei.

    Parameters
    ----------
    source
        A :class:`~napari_teramind.phantom.PhantomSpec`, phantom store or its path.
    z, box
        Slice and ``(y0, y1, x0, x1)`` (multiples of 16 px).
    method
        Segmentation method.
    images
        ``(2, h, w)`` images of the box; rendered from the spec when None.

    Returns
    -------
    dict
        ``count_true, count_found, count_error`` (relative), ``area_true, area_found,
        area_error`` (relative, mean areas in px).
    """
    from napari_teramind.phantom import render_chunk, spec_of

    spec = spec_of(source)
    y0, y1, x0, x1 = box
    if images is None:
        images = render_chunk(spec, z, y0, x0, y1 - y0, x1 - x0).images
    truth = ground_truth_stats(spec, z, box)
    found = nuclei_stats(segment_nuclei(images[0], method))
    n_true, a_true = truth["count"], truth["area_mean"]
    return {
        "count_true": n_true,
        "count_found": found["count"],
        "count_error": (found["count"] - n_true) / n_true if n_true else float("nan"),
        "area_true": a_true,
        "area_found": found["area_mean"],
        "area_error": (found["area_mean"] - a_true) / a_true if n_true else float("nan"),
    }
