"""Score generated brain stores against a real one, region by region and slice by slice."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_teramind.store.compute import compute

from .fid import (
    FEATURES,
    FeatureExtractor,
    RunningStats,
    fid_tiles,
    frechet_distance,
    rgb_view,
    sqrt_psd,
)
from .image_metrics import VIEWS, image_metrics
from .nuclei import ground_truth_stats, nuclei_stats, resolve_method, segment_nuclei
from .regions import (
    REGION_SIZE,
    Region,
    chunk_coverage,
    clip_size,
    grid_regions,
    sample_regions,
    tissue_mask,
    user_regions,
)

#: Metric names accepted by :func:`evaluate_stores`.
METRICS = ("psnr", "ssim", "nuclei", "fid", "sfid")
#: Trivial predictors computed from the real images (always evaluated as baselines).
TRIVIAL = ("mean", "blur")
#: Sigma (px) of the blurred-real baseline.
BLUR_SIGMA = 4.0
#: Default number of sampled regions per slice.
N_REGIONS = 4
#: Tile edge (px) of one FID sample (published: the 256-px tiles of a region).
FID_TILE = 256


@dataclass
class RegionEvaluation:
    """Metrics of one region of one slice, with what a viewer needs to show them.

    Attributes
    ----------
    region
        The region scored.
    metrics
        ``psnr_<view>``, ``ssim_<view>`` (views dapi, polyt, merged), ``nuclei_count_real``,
        ``nuclei_count``, ``nuclei_area_real``, ``nuclei_area`` (mean px), ``nuclei_method``,
        ``tissue_fraction``.
    real, generated
        ``(2, h, w)`` uint8 images.
    tissue
        Boolean ``(h, w)`` tissue mask the metrics are restricted to.
    labels_real, labels_generated
        Nuclei label images (int32), or None when nuclei were not scored.
    """

    region: Region
    metrics: dict[str, Any]
    real: np.ndarray
    generated: np.ndarray
    tissue: np.ndarray
    labels_real: np.ndarray | None = None
    labels_generated: np.ndarray | None = None


@dataclass
class EvaluationProgress:
    """Progress of :func:`iter_evaluation`; the last item carries the report."""

    done: int
    total: int
    message: str = ""
    report: Any = None


def _open(store, name: str):
    """Open a store given by path; the real one must be complete, generated ones may grow."""
    from napari_teramind.store import BrainStore

    if isinstance(store, BrainStore):
        return store
    if not isinstance(store, str | os.PathLike):
        raise TypeError(f"{name} must be a BrainStore or a path, not {type(store).__name__}")
    return BrainStore.open(store, allow_incomplete=None if name == "real" else True)


def _recorded_regions(real, stores: Mapping[str, Any], slices) -> list[Region] | None:
    """The regions and slices the generated store records covering, if it covers regions.

    None when it covers the whole canvas (regions are then sampled). Every other scored store
    must cover them too.
    """
    cov = stores["generated"].coverage if stores["generated"].complete else None
    if cov is None:
        return None
    regs = []
    for c in cov:
        zs = [z for z in c.slices if slices is None or z in slices]
        regs += user_regions(real, [c.region], zs)
    if not regs:
        raise ValueError(
            f"{stores['generated'].path} covers slices {stores['generated'].covered_slices()} "
            f"only, none of the slices asked for ({list(slices or [])}); choose covered slices"
        )
    gb = real.gene_block_px
    for name, st in stores.items():
        for r in regs:
            win = (slice(r.y0 // gb, -(-r.y1 // gb)), slice(r.x0 // gb, -(-r.x1 // gb)))
            if not chunk_coverage(st, r.z)[win].all():
                raise ValueError(
                    f"{name} store {st.path} holds no data for region {r} that the generated "
                    f"store {stores['generated'].path} covers; generate it there too or give "
                    "--region and --slices"
                )
    return regs


def _read(store, region: Region) -> np.ndarray:
    y0, y1, x0, x1 = region.box
    return compute(store.images()[:, region.z, y0:y1, x0:x1])


def _trivial(name: str, real: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    if name == "mean":
        sel = real[:, tissue] if tissue.any() else real.reshape(2, -1)
        mean = np.rint(sel.mean(axis=1)).astype(np.uint8)
        return np.broadcast_to(mean[:, None, None], real.shape).copy()
    if name == "blur":
        from scipy import ndimage as ndi

        out = ndi.gaussian_filter(real.astype(np.float32), sigma=(0, BLUR_SIGMA, BLUR_SIGMA))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown trivial baseline {name!r}; choose from {TRIVIAL}")


def _score(real, gen, tissue, metrics, nuclei_method, labels_real, cellpose_models):
    out: dict[str, Any] = {}
    im = tuple(m for m in ("psnr", "ssim") if m in metrics)
    if im:
        out.update(image_metrics(real, gen, tissue, metrics=im))
    labels = None
    if "nuclei" in metrics:
        labels = segment_nuclei(gen[0], nuclei_method, cellpose_models=cellpose_models)
        sr = nuclei_stats(labels_real, tissue)
        sg = nuclei_stats(labels, tissue)
        out["nuclei_method"] = nuclei_method
        out["nuclei_count_real"] = sr["count"]
        out["nuclei_count"] = sg["count"]
        out["nuclei_count_error"] = _relative(sg["count"], sr["count"], bool(sr["count"]))
        both = bool(sr["count"] and sg["count"])
        out["nuclei_area_real"] = sr["area_mean"]
        out["nuclei_area"] = sg["area_mean"]
        out["nuclei_area_error"] = _relative(sg["area_mean"], sr["area_mean"], both)
        out["nuclei_solidity_real"] = sr["solidity_mean"]
        out["nuclei_solidity"] = sg["solidity_mean"]
        out["nuclei_solidity_error"] = _relative(sg["solidity_mean"], sr["solidity_mean"], both)
    return out, labels


def _relative(found: float, real: float, defined: bool) -> float:
    """``(found - real) / real``, NaN where it is not defined (no nuclei to compare)."""
    return (found - real) / real if defined else float("nan")


def evaluate_region(
    real,
    generated,
    z: int,
    region: tuple[int, int, int, int],
    *,
    metrics: Sequence[str] = ("psnr", "ssim", "nuclei"),
    nuclei: str = "auto",
    cellpose_models=None,
) -> RegionEvaluation:
    """Score one region of one slice (for the napari evaluate widget).

    Parameters
    ----------
    real, generated
        Brain stores (or paths) of equal size; ``generated`` may also be the name of a trivial
        baseline (``"mean"``, ``"blur"``).
    z
        Slice index.
    region
        ``(y0, y1, x0, x1)`` in image pixels.
    metrics
        Subset of ``("psnr", "ssim", "nuclei")``.
    nuclei
        ``"classical"``, ``"cellpose"`` or ``"auto"``.
    """
    real = _open(real, "real")
    bad = set(metrics) - {"psnr", "ssim", "nuclei"}
    if bad:
        raise ValueError(f"evaluate_region scores psnr, ssim and nuclei, not {sorted(bad)}")
    if not 0 <= z < real.n_slices:
        raise ValueError(f"slice {z} outside 0..{real.n_slices - 1}")
    (reg,) = user_regions(real, [region], [z])
    r = _read(real, reg)
    tissue = tissue_mask(real, reg)
    if isinstance(generated, str) and generated in TRIVIAL:
        g = _trivial(generated, r, tissue)
    else:
        gen = _open(generated, "generated")
        _check_same_size(real, gen, "generated")
        g = _read(gen, reg)
    method = resolve_method(nuclei, cellpose_models)
    labels_real = (
        segment_nuclei(r[0], method, cellpose_models=cellpose_models)
        if "nuclei" in metrics
        else None
    )
    m, labels = _score(r, g, tissue, metrics, method, labels_real, cellpose_models)
    m["tissue_fraction"] = float(tissue.mean())
    return RegionEvaluation(reg, m, r, g, tissue, labels_real, labels)


def _check_same_size(real, other, name: str) -> None:
    if other.shape != real.shape:
        raise ValueError(
            f"{name} store {other.path} has shape {other.shape} (z, y, x) but the real store "
            f"{real.path} has {real.shape}; evaluate stores of the same brain canvas"
        )


@dataclass
class _FidState:
    slice_stats: dict = field(default_factory=dict)  # (set, view, kind) -> RunningStats
    pooled: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)

    def add(self, key, feats: np.ndarray) -> None:
        if feats.shape[0] == 0:
            return
        st = self.slice_stats.get(key)
        if st is None:
            st = self.slice_stats[key] = RunningStats(feats.shape[1])
        st.add(feats)

    def close_slice(self, z, sets) -> None:
        self._rows(z, self.slice_stats, sets)
        for key, st in self.slice_stats.items():
            if key not in self.pooled:
                self.pooled[key] = RunningStats(st.dim)
            self.pooled[key].merge(st)
        self.slice_stats = {}

    def close(self, sets) -> None:
        self._rows("all", self.pooled, sets)

    def _rows(self, z, stats, sets) -> None:
        roots: dict = {}
        for s in sets:
            for v in VIEWS:
                row: dict[str, Any] = {"set": s, "z": z, "view": v}
                for k in FEATURES:
                    a, b = stats.get(("real", v, k)), stats.get((s, v, k))
                    ok = a is not None and b is not None and a.count >= 2 and b.count >= 2
                    if ok and (v, k) not in roots:
                        roots[v, k] = sqrt_psd(a.mean_cov()[1])
                    row[k] = frechet_distance(a, b, roots[v, k]) if ok else float("nan")
                    row["n_real"] = a.count if a is not None else 0
                    row["n_generated"] = b.count if b is not None else 0
                self.rows.append(row)


def iter_evaluation(
    real,
    generated,
    *,
    baselines: Mapping[str, Any] | None = None,
    regions: Sequence[Sequence[int]] | str | None = None,
    region_size: int = REGION_SIZE,
    n_regions: int = N_REGIONS,
    seed: int = 0,
    slices: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
    feature_extractor: FeatureExtractor | None = None,
    nuclei: str = "auto",
    cellpose_models=None,
    trivial: Sequence[str] = TRIVIAL,
    min_tissue: float = 0.5,
    fid_tile: int = FID_TILE,
) -> Iterator[EvaluationProgress]:
    """Run an evaluation step by step; see :func:`evaluate_stores` for the parameters.

    Yields one :class:`EvaluationProgress` per region scored; the last one has ``report`` set.
    Closing the generator stops the evaluation between regions.
    """
    from .report import EvaluationReport

    real = _open(real, "real")
    gen = _open(generated, "generated")
    _check_same_size(real, gen, "generated")
    stores = {"generated": gen}
    for name, b in (baselines or {}).items():
        if name in ("generated", "real", *TRIVIAL):
            raise ValueError(f"baseline name {name!r} is reserved; choose another")
        stores[name] = _open(b, f"baseline {name!r}")
        _check_same_size(real, stores[name], f"baseline {name!r}")
    bad = set(trivial) - set(TRIVIAL)
    if bad:
        raise ValueError(f"unknown trivial baselines {sorted(bad)}; choose from {TRIVIAL}")
    sets = [*stores, *trivial]

    # metrics: FID/sFID by default only when features can be computed
    if metrics is None:
        metrics = ["psnr", "ssim", "nuclei"]
        if feature_extractor is not None or _weights_available(inception_weights):
            metrics += ["fid", "sfid"]
    metrics = tuple(metrics)
    bad = set(metrics) - set(METRICS)
    if bad:
        raise ValueError(f"unknown metrics {sorted(bad)}; choose from {METRICS}")
    want_fid = any(k in metrics for k in FEATURES)
    if want_fid and feature_extractor is None:
        from .fid import inception_features

        feature_extractor = inception_features(inception_weights)
    method = resolve_method(nuclei, cellpose_models) if "nuclei" in metrics else None

    recorded = None
    if regions is None:  # a store that covers regions is scored on them, not on samples
        recorded = _recorded_regions(real, stores, slices)
    if slices is None:
        slices = range(real.n_slices)
    slices = [int(z) for z in slices]
    for z in slices:
        if not 0 <= z < real.n_slices:
            raise ValueError(f"slice {z} outside 0..{real.n_slices - 1}")

    def covered(z):
        m = None
        for st in stores.values():
            c = chunk_coverage(st, z)
            m = c if m is None else m & c
        return m

    if recorded is not None:
        regs = recorded
    elif regions is None:
        regs = sample_regions(real, slices, n_regions, region_size, seed, min_tissue, covered)
    elif isinstance(regions, str):
        if regions != "all":
            raise ValueError(f"regions must be None, 'all' or a list of boxes, not {regions!r}")
        regs = grid_regions(real, slices, region_size, covered=covered)
    else:
        regs = user_regions(real, regions, slices)
    if not regs:
        raise ValueError(
            f"no evaluation region: no {clip_size(real, region_size)}-px square with at least "
            f"{min_tissue:.0%} tissue lies inside the data of every store on slices {slices}. "
            "Give a smaller --region-size, a lower tissue fraction, or --region y0,y1,x0,x1"
        )

    truth_spec = _phantom_spec(real) if method else None
    rows: list[dict[str, Any]] = []
    areas: list[dict[str, Any]] = []
    fid = _FidState()
    total = len(regs)
    by_slice: dict[int, list[Region]] = {}
    for r in regs:
        by_slice.setdefault(r.z, []).append(r)
    done = 0
    for z in sorted(by_slice):
        for reg in by_slice[z]:
            r = _read(real, reg)
            tissue = tissue_mask(real, reg)
            labels_real = (
                segment_nuclei(r[0], method, cellpose_models=cellpose_models) if method else None
            )
            if labels_real is not None:
                _areas(areas, "real", "real", reg, labels_real, tissue)
            truth = _truth_stats(truth_spec, reg, tissue) if truth_spec is not None else {}
            if want_fid:
                _features(fid, "real", r, tissue, feature_extractor, fid_tile)
            for s in sets:
                g = _read(stores[s], reg) if s in stores else _trivial(s, r, tissue)
                m, labels = _score(r, g, tissue, metrics, method, labels_real, cellpose_models)
                if labels is not None:
                    _areas(areas, s, s, reg, labels, tissue)
                if want_fid:
                    _features(fid, s, g, tissue, feature_extractor, fid_tile)
                rows.append(
                    {"set": s, "z": reg.z, "region": str(reg), "y0": reg.y0, "y1": reg.y1,
                     "x0": reg.x0, "x1": reg.x1, "tissue_fraction": float(tissue.mean()), **m,
                     **truth}
                )  # fmt: skip
            done += 1
            yield EvaluationProgress(done, total, f"slice {reg.z} region {reg}")
        if want_fid:
            fid.close_slice(z, sets)
    if want_fid:
        fid.close(sets)
    settings = {
        "real": str(real.path),
        "generated": str(gen.path),
        "baselines": {k: str(v.path) for k, v in stores.items() if k != "generated"},
        "trivial": list(trivial),
        "metrics": list(metrics),
        "nuclei_method": method,
        "region_size": clip_size(real, region_size),
        "n_regions": n_regions,
        "seed": seed,
        "slices": slices,
        "min_tissue": min_tissue,
        "fid_tile": fid_tile,
        "regions": [str(r) for r in regs],
    }
    report = EvaluationReport(rows, fid.rows, areas, settings)
    yield EvaluationProgress(done, total, "done", report)


def _phantom_spec(store):
    """The spec of a phantom store (whose ground-truth nuclei can be rendered), else None."""
    if store.kind != "phantom" or "phantom" not in store.metadata:
        return None
    from napari_teramind.phantom import spec_of

    return spec_of(store)


def _truth_stats(spec, reg: Region, tissue: np.ndarray) -> dict[str, float]:
    """Count and mean area of the phantom's ground-truth nuclei centred on tissue in ``reg``."""
    t = ground_truth_stats(spec, reg.z, reg.box, tissue)
    return {"nuclei_count_truth": t["count"], "nuclei_area_truth": t["area_mean"]}


def _areas(out, set_name, source, reg, labels, tissue) -> None:
    from skimage.measure import regionprops_table

    if labels.max() == 0:
        return
    p = regionprops_table(labels, properties=("area", "centroid"))
    cy = np.clip(np.asarray(p["centroid-0"]).astype(int), 0, labels.shape[0] - 1)
    cx = np.clip(np.asarray(p["centroid-1"]).astype(int), 0, labels.shape[1] - 1)
    for a in np.asarray(p["area"])[tissue[cy, cx]]:
        out.append({"set": set_name, "z": reg.z, "region": str(reg), "area": float(a)})


def _features(fid: _FidState, s, images, tissue, extractor, tile) -> None:
    for v in VIEWS:
        tiles = fid_tiles(rgb_view(images, v), tissue, tile)
        if len(tiles) == 0:
            continue
        feats = extractor(tiles)
        for k in FEATURES:
            fid.add((s, v, k), feats[k])


def _weights_available(path) -> bool:
    from .inception import resolve_weights

    try:
        resolve_weights(path)
    except FileNotFoundError:
        return False
    return True


def evaluate_stores(
    real,
    generated,
    *,
    baselines: Mapping[str, Any] | None = None,
    regions: Sequence[Sequence[int]] | str | None = None,
    region_size: int = REGION_SIZE,
    n_regions: int = N_REGIONS,
    seed: int = 0,
    slices: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
    inception_weights: str | os.PathLike[str] | None = None,
    feature_extractor: FeatureExtractor | None = None,
    nuclei: str = "auto",
    cellpose_models=None,
    trivial: Sequence[str] = TRIVIAL,
    min_tissue: float = 0.5,
    fid_tile: int = FID_TILE,
    progress: Callable[[int, int], None] | None = None,
):
    """Score a generated brain store (and baselines) against the real one.

    Parameters
    ----------
    real, generated
        Brain stores or their paths, of the same canvas. ``generated`` may be incomplete (a
        region generated so far): only regions where it has data are sampled.
    baselines
        Other generated stores to score the same way, by name (e.g. ``{"gene-blind": path}``).
    regions
        None: the regions and slices a generated store that covers regions records (its
        ``coverage``), or, for a store covering the whole canvas, ``n_regions`` regions per
        slice sampled inside tissue from ``seed``; ``"all"``:
        the whole brain tiled into ``region_size`` squares (every tile with tissue); or a list
        of ``(y0, y1, x0, x1)`` boxes, each evaluated on every slice.
    region_size
        Region edge in px (published: 1024), clipped to the store for small stores.
    n_regions, seed, min_tissue
        Sampling: regions per slice, random seed, minimum tissue fraction.
    slices
        Slices to evaluate (all by default).
    metrics
        Subset of ``("psnr", "ssim", "nuclei", "fid", "sfid")``. By default the first three,
        plus FID and sFID when a feature extractor or Inception weights are available.
    inception_weights
        The FID Inception weights file (else ``$TERAMIND_INCEPTION_WEIGHTS``).
    feature_extractor
        Replaces Inception (see :mod:`.fid`); used by tests.
    nuclei, cellpose_models
        Nuclei method (``"auto"``, ``"cellpose"``, ``"classical"``) and cellpose weights dir.
    trivial
        Trivial predictors to score as baselines (``"mean"``: the real region's mean per
        channel; ``"blur"``: the real images blurred with a Gaussian of sigma 4 px).
    fid_tile
        Tile edge of one FID sample.
    progress
        Called as ``progress(done, total)`` after each region.

    Returns
    -------
    EvaluationReport
    """
    it = iter_evaluation(
        real, generated, baselines=baselines, regions=regions, region_size=region_size,
        n_regions=n_regions, seed=seed, slices=slices, metrics=metrics,
        inception_weights=inception_weights, feature_extractor=feature_extractor, nuclei=nuclei,
        cellpose_models=cellpose_models, trivial=trivial, min_tissue=min_tissue,
        fid_tile=fid_tile,
    )  # fmt: skip
    report = None
    for p in it:
        if progress is not None:
            progress(p.done, p.total)
        report = p.report
    assert report is not None
    return report
