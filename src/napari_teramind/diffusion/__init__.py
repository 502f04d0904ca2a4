"""Diffusion maths: noise schedule, training loss and DDIM sampling (torch only)."""

from napari_teramind.diffusion.ddim import DDIMSchedule, ddim_sample, ddim_step, ddim_timesteps
from napari_teramind.diffusion.losses import collage_training_losses, cut_window_patches
from napari_teramind.diffusion.parameterization import PREDICTIONS, to_eps, training_target
from napari_teramind.diffusion.schedule import NoiseSchedule

__all__ = [
    "PREDICTIONS",
    "DDIMSchedule",
    "NoiseSchedule",
    "collage_training_losses",
    "cut_window_patches",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "to_eps",
    "training_target",
]
