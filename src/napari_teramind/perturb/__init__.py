"""In-silico perturbation: generate a region with edited genes and measure what changed.

* :func:`perturb` runs a generation job whose genes are edited (knock out, scale, transplant;
  :mod:`napari_teramind.generate.edits`), with the same noise as the unedited run, and returns
  the edited generated store. An empty edit list gives the bytes of ``teramind generate``.
* :func:`difference`: edited - unedited images.
* :func:`morphometric_change`: nuclei count, mean area and mean nuclear DAPI per region,
  unedited vs edited (the classical nuclei counter of :mod:`napari_teramind.evaluate.nuclei`).
* :func:`interaction_map`: the second-order map ``f(A,B) - f(A,0) - f(0,B) + f(0,0)`` of a pair.
* :class:`PerturbSettings`: seed, sampler, steps, ... of a perturbation, as ``teramind generate``.

No napari, no Qt: the ``teramind perturb`` command and the "Perturb genes" widget call these.
"""

from napari_teramind.generate.edits import GeneEdit, Knockout, Scale, Transplant
from napari_teramind.perturb.api import (
    InteractionMap,
    PerturbSettings,
    difference,
    edited_mask,
    interaction_map,
    iter_perturb,
    perturb,
)
from napari_teramind.perturb.morphometrics import (
    MorphometricRow,
    format_table,
    morphometric_change,
)

__all__ = [
    "GeneEdit",
    "InteractionMap",
    "Knockout",
    "MorphometricRow",
    "PerturbSettings",
    "Scale",
    "Transplant",
    "difference",
    "edited_mask",
    "format_table",
    "interaction_map",
    "iter_perturb",
    "morphometric_change",
    "perturb",
]
