"""Diffusion maths: noise schedule, training loss and DDIM sampling (torch only)."""

from napari_teramind.diffusion.ddim import DDIMSchedule, ddim_sample, ddim_step, ddim_timesteps
from napari_teramind.diffusion.losses import (
    LOSS_WEIGHTINGS,
    collage_training_losses,
    cut_window_patches,
    min_snr_weights,
)
from napari_teramind.diffusion.parameterization import PREDICTIONS, to_eps, training_target
from napari_teramind.diffusion.schedule import NoiseSchedule

__all__ = [
    "LOSS_WEIGHTINGS",
    "PREDICTIONS",
    "DDIMSchedule",
    "NoiseSchedule",
    "collage_training_losses",
    "cut_window_patches",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "min_snr_weights",
    "to_eps",
    "training_target",
]
