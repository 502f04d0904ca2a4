"""The Tera-MIND network: building blocks, the gene-conditioned UNet and checkpoints.

Imports only torch, numpy, safetensors and the standard library.
"""

from napari_teramind.model.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    convert_checkpoint,
    import_published_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from napari_teramind.model.config import PRESET_NAMES, ModelConfig
from napari_teramind.model.features import EncoderFeatures
from napari_teramind.model.gene_layout import (
    from_fixture_layout,
    from_reference_layout,
    keep_gene_slices,
    to_reference_layout,
)
from napari_teramind.model.grids import collage_grid, collage_patches, expand_timesteps
from napari_teramind.model.registry import resolve_model
from napari_teramind.model.unet import DECODERS, TeraMindUNet

__all__ = [
    "DECODERS",
    "PRESET_NAMES",
    "CheckpointError",
    "CheckpointInfo",
    "EncoderFeatures",
    "ModelConfig",
    "TeraMindUNet",
    "collage_grid",
    "collage_patches",
    "convert_checkpoint",
    "expand_timesteps",
    "from_fixture_layout",
    "from_reference_layout",
    "import_published_checkpoint",
    "keep_gene_slices",
    "latest_checkpoint",
    "load_checkpoint",
    "resolve_model",
    "save_checkpoint",
    "to_reference_layout",
]
