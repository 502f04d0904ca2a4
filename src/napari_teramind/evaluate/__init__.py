"""Evaluation of generated brains against real ones: PSNR, SSIM, FID, sFID, nuclei, reports.

>>> from napari_teramind.evaluate import evaluate_stores  # doctest: +SKIP
>>> report = evaluate_stores("real.zarr", "generated.zarr", region_size=1024)  # doctest: +SKIP
>>> print(report.summary_text()); report.write("eval/")  # doctest: +SKIP

This package imports neither napari nor Qt; torch is imported only for FID/sFID and cellpose.
See docs/evaluation.md for the metrics, their exact settings and how to read the report.
"""

from .fid import RunningStats, TorchFeatures, frechet_distance, inception_features
from .image_metrics import VIEWS, image_metrics, psnr, ssim
from .nuclei import compare_with_phantom, nuclei_stats, segment_nuclei
from .pipeline import (
    METRICS,
    EvaluationProgress,
    RegionEvaluation,
    evaluate_region,
    evaluate_stores,
    iter_evaluation,
)
from .regions import Region, grid_regions, sample_regions, tissue_mask
from .report import EvaluationReport
from .seams import SEAM_PERIOD, SeamRatio, seam_ratio

__all__ = [
    "METRICS",
    "SEAM_PERIOD",
    "VIEWS",
    "EvaluationProgress",
    "EvaluationReport",
    "Region",
    "RegionEvaluation",
    "RunningStats",
    "SeamRatio",
    "TorchFeatures",
    "compare_with_phantom",
    "evaluate_region",
    "evaluate_stores",
    "frechet_distance",
    "grid_regions",
    "image_metrics",
    "inception_features",
    "iter_evaluation",
    "nuclei_stats",
    "psnr",
    "sample_regions",
    "seam_ratio",
    "segment_nuclei",
    "ssim",
    "tissue_mask",
]
