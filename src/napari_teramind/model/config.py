"""Model configuration: :class:`ModelConfig` and its named presets.

The published Tera-MIND network is fully described by a handful of integers. The configuration
is a frozen dataclass so it can be hashed, compared and stored as JSON next to the weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from napari_teramind.diffusion.parameterization import PREDICTIONS

__all__ = ["PRESET_NAMES", "ModelConfig"]

#: Names accepted by :meth:`ModelConfig.preset`.
PRESET_NAMES: tuple[str, ...] = ("reference", "small", "tiny", "fixture")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the gene-conditioned Tera-MIND UNet.

    Parameters
    ----------
    n_genes
        Number of genes ``G`` the model reads per gene slice.
    model_channels
        Width of the first UNet level.
    channel_mult
        Width multiplier per UNet level, full resolution first. The number of levels must
        make the coarsest level twice the gene grid (8 px for the published 64 px patch).
    num_res_blocks
        ResBlocks per encoder level (the decoder has one more per level).
    embed_channels
        Width of the time embedding fed to every ResBlock.
    attention_resolutions
        Feature-map sizes (px) at which gene-to-morphology cross-attention follows each
        non-resampling ResBlock. The middle block always has one.
    num_heads
        Attention heads of the cross-attention blocks (published: 1).
    attention_windows
        Spatial windows per side for cross-attention (published: 2, i.e. quadrants).
    patch_size
        Side of one image patch in px.
    gene_block_px
        Side of one gene block in px (counts are summed over these blocks).
    gene_slices
        Gene slices per patch (the slices around and including the image slices).
    image_depth
        Image slices generated together (the depth axis of the 3D UNet).
    stains
        Image stains (DAPI and PolyT).
    dropout
        Dropout probability inside ResBlocks (active only in training mode).
    gene_map_channels
        Channels of the gene maps produced by the conv upscaling path, coarse to fine after
        the ``G``-channel map at the coarsest level (published: 128, 64, 32 at 16, 32, 64 px).
    time_embed_dim
        Width of the sinusoidal timestep embedding; ``None`` means ``model_channels``.
    mlp_ratio
        Hidden-width ratio of the transformer MLPs.
    prediction
        What the network outputs: ``"eps"``, the noise (published), or ``"v"``, the velocity
        (see :mod:`napari_teramind.diffusion.parameterization`).
    """

    n_genes: int
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    embed_channels: int = 512
    attention_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 1
    attention_windows: int = 2
    patch_size: int = 64
    gene_block_px: int = 16
    gene_slices: int = 4
    image_depth: int = 2
    stains: int = 2
    dropout: float = 0.1
    gene_map_channels: tuple[int, ...] = (128, 64, 32)
    time_embed_dim: int | None = None
    mlp_ratio: int = 4
    prediction: str = "eps"

    def __post_init__(self) -> None:
        for name in ("channel_mult", "attention_resolutions", "gene_map_channels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "dropout", float(self.dropout))
        self._validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_levels(self) -> int:
        """Number of UNet resolution levels."""
        return len(self.channel_mult)

    @property
    def widths(self) -> tuple[int, ...]:
        """Feature width per level, full resolution first."""
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map side per level in px, full resolution first."""
        return tuple(self.patch_size // 2**level for level in range(self.num_levels))

    @property
    def gene_grid(self) -> int:
        """Gene blocks per patch side (``gn_sz``, 4 for the published model)."""
        return self.patch_size // self.gene_block_px

    @property
    def gene_token_dim(self) -> int:
        """Feature size of one gene token in the gene-gene block (``Z * g * g``)."""
        return self.gene_slices * self.gene_grid**2

    @property
    def gene_z_kernel(self) -> int:
        """Depth of the kernel that reduces gene slices to the image depth."""
        return self.gene_slices - self.image_depth + 1

    @property
    def gene_channels_per_level(self) -> tuple[int, ...]:
        """Gene-map channels per UNet level, full resolution first."""
        return (*reversed(self.gene_map_channels), self.n_genes)

    @property
    def in_channels(self) -> int:
        """Image channels ``stains * image_depth`` ordered (stain, slice)."""
        return self.stains * self.image_depth

    @property
    def sinusoid_dim(self) -> int:
        """Width of the raw sinusoidal timestep embedding."""
        return self.model_channels if self.time_embed_dim is None else self.time_embed_dim

    @property
    def slice_scheme(self):
        """The :class:`~napari_teramind.slices.SliceScheme` (gene slices, image depth)."""
        from napari_teramind.slices import SliceScheme

        return SliceScheme.of(self)

    def attention_at_level(self, level: int) -> bool:
        """Whether encoder/decoder ResBlocks of ``level`` are followed by cross-attention."""
        return self.resolutions[level] in self.attention_resolutions

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        positive = {
            "n_genes": self.n_genes,
            "model_channels": self.model_channels,
            "num_res_blocks": self.num_res_blocks,
            "embed_channels": self.embed_channels,
            "num_heads": self.num_heads,
            "attention_windows": self.attention_windows,
            "patch_size": self.patch_size,
            "gene_block_px": self.gene_block_px,
            "gene_slices": self.gene_slices,
            "image_depth": self.image_depth,
            "stains": self.stains,
            "mlp_ratio": self.mlp_ratio,
        }
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"ModelConfig.prediction must be 'eps' or 'v', not {self.prediction!r}"
            )
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult must be non-empty and positive: {self.channel_mult}")
        if self.patch_size % self.gene_block_px:
            raise ValueError("patch_size must be a multiple of gene_block_px")
        coarsest = self.patch_size / 2 ** (self.num_levels - 1)
        if coarsest != 2 * self.gene_grid:
            levels_needed = int(math.log2(self.patch_size / (2 * self.gene_grid))) + 1
            raise ValueError(
                f"the coarsest UNet level ({coarsest:g} px) must be twice the gene grid "
                f"({self.gene_grid}); use {levels_needed} levels in channel_mult"
            )
        if len(self.gene_map_channels) != self.num_levels - 1:
            raise ValueError(
                f"gene_map_channels needs {self.num_levels - 1} entries (one per level finer "
                f"than the coarsest), got {self.gene_map_channels}"
            )
        if self.gene_slices < self.image_depth:
            raise ValueError("gene_slices must be >= image_depth")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for level, width in enumerate(self.widths):
            if self.attention_at_level(level) or level == self.num_levels - 1:
                if width % self.num_heads:
                    raise ValueError(f"width {width} is not divisible by num_heads")
                if self.resolutions[level] % self.attention_windows:
                    raise ValueError("attention_windows must divide the attention resolution")
        if self.sinusoid_dim < 2:
            raise ValueError("the sinusoidal time embedding needs at least 2 dimensions")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dictionary (lists instead of tuples)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a configuration from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, n_genes: int) -> ModelConfig:
        """Return a named preset.

        Parameters
        ----------
        name
            ``"reference"``: the published network (213,789,608 parameters at ``G = 229``).
            ``"small"``: a few MB, trainable on CPU for demos.
            ``"tiny"``: well under 2 MB for a small panel; a 64 px patch runs in milliseconds.
            ``"fixture"``: the configuration of the reference-parity fixture (``G = 12``).
        n_genes
            Number of genes ``G``.
        """
        if name == "reference":
            return cls(n_genes=n_genes)
        if name == "small":
            return cls(
                n_genes=n_genes,
                model_channels=16,
                channel_mult=(1, 1, 2, 2),
                num_res_blocks=1,
                embed_channels=64,
                gene_map_channels=(32, 16, 16),
            )
        if name == "tiny":
            return cls(
                n_genes=n_genes,
                model_channels=8,
                channel_mult=(1, 1, 2, 2),
                num_res_blocks=1,
                embed_channels=32,
                gene_map_channels=(16, 8, 8),
            )
        if name == "fixture":
            return cls(
                n_genes=n_genes,
                model_channels=4,
                channel_mult=(1, 2, 2, 2),
                embed_channels=32,
            )
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESET_NAMES}")

    @classmethod
    def from_reference_hparams(cls, hparams: Mapping[str, Any]) -> ModelConfig:
        """Build the configuration from a published run's ``hyper_parameters``.

        Parameters
        ----------
        hparams
            The ``hyper_parameters`` mapping of a Lightning checkpoint of the reference code
            (fields ``net_ch``, ``net_ch_mult``, ``net_num_res_blocks``,
            ``net_beatgans_embed_channels``, ``net_attn``, ``net_beatgans_attn_head``,
            ``rna_num``, ``rna_tpl``, ``gn_sz``, ``patch_size``, ``dropout``).
        """
        rna_tpl = hparams.get("rna_tpl", (0, 1, 2, 3))
        gene_slices = len(rna_tpl)
        patch = int(hparams.get("patch_size", hparams.get("image_size", 64)))
        gn_sz = int(hparams.get("gn_sz", 4))
        return cls(
            n_genes=int(hparams["rna_num"]),
            model_channels=int(hparams["net_ch"]),
            channel_mult=tuple(hparams["net_ch_mult"]),
            num_res_blocks=int(hparams.get("net_num_res_blocks", 2)),
            embed_channels=int(hparams["net_beatgans_embed_channels"]),
            attention_resolutions=tuple(hparams.get("net_attn", (16,))),
            num_heads=int(hparams.get("net_beatgans_attn_head", 1)),
            patch_size=patch,
            gene_block_px=patch // gn_sz,
            gene_slices=gene_slices,
            image_depth=math.ceil(gene_slices / 2),
            dropout=float(hparams.get("dropout", 0.1)),
        )
