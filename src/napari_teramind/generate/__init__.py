"""Seamless generation: plans, initial noise, the tiled DDIM engine and the napari ROI API.

``generate_roi`` is the in-process entry point for napari; ``run_unit`` is the unit of work
that job executors distribute. Imports torch and zarr lazily.
"""

from napari_teramind.generate.engine import (
    DEFAULT_BATCH_SIZE,
    GeneSource,
    create_state_arrays,
    generate_global,
    open_state_arrays,
    predict_noise,
    read_state,
    run_unit,
    state_index,
    to_uint8,
    write_output_block,
)
from napari_teramind.generate.noise import initial_state, noise_seed, patch_noise
from napari_teramind.generate.plan import (
    HALO_PX,
    PATCH_PX,
    Block,
    GenerationPlan,
    SliceGroup,
    SliceScheme,
    normalize_slices,
    slice_groups,
    snap_region,
)
from napari_teramind.generate.roi import (
    SAMPLERS,
    RoiProgress,
    generate_roi,
    model_fingerprint,
    open_output_store,
)
from napari_teramind.generate.schemes import DEFAULT_SCHEME, SCHEMES, step_grids
from napari_teramind.generate.sources import check_source

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SCHEME",
    "HALO_PX",
    "PATCH_PX",
    "SAMPLERS",
    "SCHEMES",
    "Block",
    "GeneSource",
    "GenerationPlan",
    "RoiProgress",
    "SliceGroup",
    "SliceScheme",
    "check_source",
    "create_state_arrays",
    "generate_global",
    "generate_roi",
    "initial_state",
    "model_fingerprint",
    "noise_seed",
    "normalize_slices",
    "open_output_store",
    "open_state_arrays",
    "patch_noise",
    "predict_noise",
    "read_state",
    "run_unit",
    "slice_groups",
    "snap_region",
    "state_index",
    "step_grids",
    "to_uint8",
    "write_output_block",
]
