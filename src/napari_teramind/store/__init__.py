"""Brain stores: OME-Zarr (NGFF 0.5, zarr v3) groups of images, gene counts and labels.

This package imports neither torch nor napari.
"""

from .brainstore import CHANNELS, FORMAT_VERSION, BrainStore
from .chunks import CoveredRegion
from .errors import (
    BrainStoreError,
    DamagedStoreError,
    MissingChunkError,
    NotEnoughSpace,
    OverwriteRefused,
)
from .overwrite import check_replaceable, discard, identify, prepare_target
from .panel import PATHWAYS, GenePanel, ModelPanelReport, PanelAlignment, align_model_panel

__all__ = [
    "CHANNELS",
    "FORMAT_VERSION",
    "PATHWAYS",
    "BrainStore",
    "BrainStoreError",
    "CoveredRegion",
    "DamagedStoreError",
    "GenePanel",
    "MissingChunkError",
    "ModelPanelReport",
    "NotEnoughSpace",
    "OverwriteRefused",
    "PanelAlignment",
    "align_model_panel",
    "check_replaceable",
    "discard",
    "identify",
    "prepare_target",
]
