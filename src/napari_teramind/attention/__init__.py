"""Gene-gene attention maps: compute, normalise, plot and validate (METHOD.md section 4).

Imports numpy and the store at import time; torch only when maps are computed, matplotlib only
when plots are drawn. Never imports napari or Qt.
"""

from napari_teramind.attention.maps import (
    KINDS,
    PRESETS,
    AttentionProgress,
    channel_names,
    compute_attention_maps,
    iter_attention_maps,
    preset_genes,
    resolve_genes,
    window_maps,
    window_slices,
)

__all__ = [
    "KINDS",
    "PRESETS",
    "AttentionProgress",
    "channel_names",
    "compute_attention_maps",
    "iter_attention_maps",
    "preset_genes",
    "resolve_genes",
    "window_maps",
    "window_slices",
]
