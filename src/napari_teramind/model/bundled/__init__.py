"""The small model shipped with the package, trained on the default phantom brain.

The weights (``model.safetensors``) and their metadata (``model.json``: configuration, gene
panel, and in ``provenance.bundled_recipe`` the command, steps, wall time and losses of its
training) live next to this module. ``teramind train-bundled OUT`` retrains it from scratch
(see ``docs/training.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from napari_teramind.model.checkpoint import CheckpointInfo
    from napari_teramind.model.unet import TeraMindUNet

__all__ = ["bundled_checkpoint_path", "load_bundled_model"]

_WEIGHTS = "model.safetensors"


def bundled_checkpoint_path() -> Path:
    """Path of the bundled checkpoint's weights (``model.json`` lies beside it).

    Raises
    ------
    FileNotFoundError
        When the package was installed without its model files.
    """
    path = Path(__file__).resolve().parent / _WEIGHTS
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise FileNotFoundError(
            f"the bundled model is missing from {path.parent}; reinstall napari-teramind, or "
            "rebuild it with 'teramind train-bundled OUT --install'"
        )
    return path


def load_bundled_model(
    device: str | torch.device = "cpu",
) -> tuple[TeraMindUNet, CheckpointInfo]:
    """Load the bundled model (in ``eval()`` mode) and its :class:`CheckpointInfo`.

    Parameters
    ----------
    device
        Device of the returned model.
    """
    from napari_teramind.model.checkpoint import load_checkpoint

    return load_checkpoint(bundled_checkpoint_path(), map_location=device)
