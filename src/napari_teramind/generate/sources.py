"""Check a source store against a model before any work: slice scheme and gene panel."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from napari_teramind.model import ModelConfig
    from napari_teramind.store import BrainStore, ModelPanelReport

__all__ = ["check_source"]


def check_source(
    store: BrainStore | str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    *,
    config: ModelConfig | None = None,
    gene_names: Sequence[str] | None = None,
    gene_blind: bool = False,
) -> ModelPanelReport:
    """Refuse a source a model cannot generate from; report how its genes serve the model.

    Parameters
    ----------
    store
        The source brain store (or its path).
    model
        ``"bundled"``, a checkpoint or run directory (read without loading weights where it
        can); or give ``config`` and ``gene_names`` of a loaded model instead.
    config, gene_names
        The model's configuration and genes (``CheckpointInfo``).
    gene_blind
        Generation without genes: the panel is reported but not checked.

    Returns
    -------
    ModelPanelReport
        Shared genes, the human orthologs used (a store named with human symbols), missing
        genes and pathways; :meth:`~napari_teramind.store.ModelPanelReport.summary` is the text
        the CLI prints and the napari widgets show.

    Raises
    ------
    ValueError
        A model generating several slices together asked for fewer sections (a 4-slice model
        and one section), or a human store sharing too few of the model's genes.
    """
    from napari_teramind.store import BrainStore, align_model_panel

    source = store if isinstance(store, BrainStore) else BrainStore.open(store)
    if config is None or gene_names is None:
        from napari_teramind.model.registry import model_meta_of

        config, gene_names = model_meta_of(model)
    config.slice_scheme.check_stack(source.n_slices, f"the source store {source.path}")
    report = align_model_panel(tuple(gene_names), source.panel)
    if not gene_blind:
        report.check()
    return report
