"""The planted biology of the phantom: regions, cell types and their gene programs, as data.

Everything a later test may want to check against lives here as plain tables:

* :data:`REGIONS`: region id -> name, nucleus density and cell-type mixture;
* :data:`CELL_TYPES`: cell type -> nucleus shape/brightness and mean transcripts per nucleus of
  each gene (the *gene program* of the type);
* :data:`PATHWAYS`: the planted co-expression programs (GLUT, DOPA, BLOD) and where they are;
* :func:`region_gene_means`: the expected transcripts per nucleus of every gene in every region
  (mixture-weighted), i.e. the region -> gene -> mean table exported in the store metadata.

Gene names are those of the published MERFISH panel of mouse 638850 (``PANEL_638850_INDEX``
records their positions there), so a phantom's panel is a subset of the real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

#: Positions of the curated phantom genes in the published 638850 panel (METHOD.md, app. A).
PANEL_638850_INDEX: dict[str, int] = {
    "Slc1a3": 14, "Rorb": 4, "Nr4a2": 5, "Nrn1": 11, "Penk": 12, "Ddc": 16, "Tshz2": 21,
    "Pax6": 22, "Crym": 23, "Vip": 24, "Calb2": 28, "Sp8": 46, "Rasgrp1": 57, "Prkcq": 62,
    "C1ql3": 67, "Gad2": 69, "Slc17a6": 75, "Adgrf5": 87, "Ctss": 90, "Cldn5": 94,
    "Sox10": 113, "Otof": 116, "Mog": 118, "Bcl11b": 119, "Gfap": 129, "Lamp5": 134,
    "Aqp4": 145, "Tcf7l2": 146, "Pdyn": 149, "Th": 154, "Ndnf": 157, "Pvalb": 165,
    "Synpr": 170, "Calb1": 173, "Gja1": 180, "Kcnj8": 188, "Slc17a7": 191, "Gpr88": 211,
    "Syt6": 228, "Ret": 264, "En1": 301, "Fibcd1": 320, "Klk6": 366, "Drd1": 370,
    "Slc6a3": 394, "Opalin": 405, "Drd2": 451, "Slc32a1": 473,
}  # fmt: skip

#: Curated genes in priority order: a phantom with ``n_genes`` genes takes the first ones.
CURATED_GENES: tuple[str, ...] = (
    # the six genes of the published pathway pairs, always present
    "Slc17a6", "Slc17a7", "Nr4a2", "Th", "Cldn5", "Aqp4",
    # main class markers
    "Gad2", "Mog", "Gfap", "Ctss", "Slc6a3", "Ddc", "Tcf7l2", "Gpr88", "Penk", "Rorb",
    "Bcl11b", "Syt6", "Lamp5", "Fibcd1", "C1ql3", "Pvalb", "Sox10", "Slc1a3", "Drd1", "Drd2",
    "Sp8", "Calb2", "Pax6", "Prkcq", "Slc32a1", "Kcnj8",
    # refinements
    "Otof", "Nrn1", "Crym", "Vip", "Ndnf", "Calb1", "Pdyn", "Ret", "En1", "Gja1", "Opalin",
    "Klk6", "Adgrf5", "Rasgrp1", "Synpr", "Tshz2",
)  # fmt: skip

#: Genes every phantom carries (the published pathway pairs).
REQUIRED_GENES: tuple[str, ...] = CURATED_GENES[:6]


@dataclass(frozen=True)
class CellType:
    """A cell type: nucleus appearance and gene program.

    Attributes
    ----------
    name
        Human-readable name.
    radius_px
        Mean nucleus radius (equivalent circle) in pixels.
    aspect
        Mean ratio of the long to the short nucleus axis.
    brightness
        Mean DAPI intensity of the nucleus (0..255 scale, before texture and noise).
    genes
        Mean transcripts per nucleus of each expressed gene (all others: 0).
    """

    name: str
    radius_px: float
    aspect: float
    brightness: float
    genes: dict[str, float] = field(default_factory=dict)


#: Cell types. Order matters (it is the type index stored in nucleus tables).
CELL_TYPES: tuple[CellType, ...] = (
    CellType("L2/3 IT neuron", 4.0, 1.15, 165,
             {"Slc17a7": 12, "Lamp5": 6, "Otof": 3, "Nrn1": 4, "Rasgrp1": 3, "Calb1": 2}),
    CellType("L4 IT neuron", 3.5, 1.1, 185,
             {"Slc17a7": 10, "Rorb": 9, "Slc17a6": 6, "Nrn1": 3, "Rasgrp1": 2}),
    CellType("L5 PT neuron", 5.2, 1.25, 145,
             {"Slc17a7": 14, "Bcl11b": 9, "Tshz2": 3, "Nrn1": 5, "Crym": 2}),
    CellType("L6 CT neuron", 4.2, 1.2, 165,
             {"Slc17a7": 10, "Syt6": 8, "Crym": 4, "Nr4a2": 0.6, "Synpr": 2}),
    CellType("cortical interneuron", 4.2, 1.15, 150,
             {"Gad2": 10, "Slc32a1": 4, "Pvalb": 4, "Vip": 2, "Ndnf": 2}),
    CellType("CA pyramidal neuron", 4.6, 1.2, 160,
             {"Slc17a7": 14, "Fibcd1": 8, "Nrn1": 4, "Crym": 2, "Calb1": 1}),
    CellType("dentate granule cell", 3.1, 1.1, 205,
             {"Slc17a7": 6, "C1ql3": 7, "Calb1": 5, "Pdyn": 2}),
    CellType("thalamic relay neuron", 4.8, 1.15, 150,
             {"Slc17a6": 14, "Tcf7l2": 8, "Prkcq": 5, "Slc17a7": 7, "Synpr": 3}),
    CellType("striatal D1 MSN", 4.0, 1.1, 170,
             {"Gad2": 8, "Gpr88": 8, "Drd1": 8, "Pdyn": 5, "Penk": 1, "Rasgrp1": 2}),
    CellType("striatal D2 MSN", 4.0, 1.1, 170,
             {"Gad2": 8, "Gpr88": 8, "Drd2": 7, "Penk": 10}),
    CellType("midbrain dopaminergic neuron", 6.0, 1.3, 120,
             {"Th": 20, "Nr4a2": 12, "Slc6a3": 12, "Ddc": 8, "Ret": 4, "En1": 4, "Slc17a6": 2}),
    CellType("midbrain GABA neuron", 4.4, 1.15, 155,
             {"Gad2": 8, "Slc32a1": 5, "Calb1": 2, "Synpr": 1}),
    CellType("midbrain glutamatergic neuron", 4.6, 1.15, 150,
             {"Slc17a6": 9, "Tcf7l2": 2, "Synpr": 2}),
    CellType("OB periglomerular DA neuron", 3.2, 1.1, 195,
             {"Th": 12, "Nr4a2": 8, "Ddc": 6, "Calb2": 4, "Sp8": 3, "Pax6": 3}),
    CellType("OB granule cell", 3.0, 1.1, 210,
             {"Gad2": 6, "Sp8": 5, "Pax6": 4, "Calb2": 3}),
    CellType("astrocyte", 3.6, 1.25, 135,
             {"Aqp4": 6, "Gfap": 4, "Slc1a3": 8, "Gja1": 4}),
    CellType("perivascular astrocyte", 3.6, 1.35, 135,
             {"Aqp4": 16, "Gfap": 6, "Slc1a3": 5, "Gja1": 3}),
    CellType("oligodendrocyte", 2.8, 1.1, 215,
             {"Mog": 10, "Sox10": 4, "Opalin": 3, "Klk6": 2}),
    CellType("microglia", 2.8, 1.7, 200, {"Ctss": 8}),
    CellType("endothelial cell", 3.0, 2.8, 185, {"Cldn5": 14, "Adgrf5": 4, "Kcnj8": 2}),
)  # fmt: skip

CELL_TYPE_INDEX: dict[str, int] = {c.name: i for i, c in enumerate(CELL_TYPES)}
ENDOTHELIAL = CELL_TYPE_INDEX["endothelial cell"]
ASTROCYTE = CELL_TYPE_INDEX["astrocyte"]
PERIVASCULAR_ASTROCYTE = CELL_TYPE_INDEX["perivascular astrocyte"]


@dataclass(frozen=True)
class Region:
    """An anatomical region of the phantom.

    Attributes
    ----------
    id
        Label value (0 is background, outside the tissue).
    name
        Region name as stored in the labels layer.
    density
        Probability that a cell of the 8-px nucleus grid holds a nucleus (before thinning).
    mixture
        Cell type name -> fraction of the region's nuclei (sums to 1).
    polyt
        Neuropil (out-of-cell) PolyT level, 0..255.
    dapi
        Tissue (out-of-nucleus) DAPI level, 0..255.
    """

    id: int
    name: str
    density: float
    mixture: dict[str, float]
    polyt: float
    dapi: float


_GLIA = {"astrocyte": 0.06, "oligodendrocyte": 0.04, "microglia": 0.03}

#: Regions, by id. 0 is the background outside the tissue.
REGIONS: dict[int, Region] = {
    r.id: r
    for r in (
        Region(0, "background", 0.0, {}, 2, 3),
        Region(1, "cortex L1", 0.10,
               {"astrocyte": 0.45, "cortical interneuron": 0.35, "microglia": 0.2}, 26, 12),
        Region(2, "cortex L2/3", 0.55, {"L2/3 IT neuron": 0.74, "cortical interneuron": 0.13,
                                       **_GLIA}, 40, 14),
        Region(3, "cortex L4", 0.65, {"L4 IT neuron": 0.8, "cortical interneuron": 0.07,
                                     **_GLIA}, 44, 14),
        Region(4, "cortex L5", 0.38, {"L5 PT neuron": 0.72, "cortical interneuron": 0.15,
                                     **_GLIA}, 38, 13),
        Region(5, "cortex L6", 0.5, {"L6 CT neuron": 0.7, "cortical interneuron": 0.08,
                                    "astrocyte": 0.07, "oligodendrocyte": 0.12,
                                    "microglia": 0.03}, 36, 14),
        Region(6, "white matter", 0.32, {"oligodendrocyte": 0.8, "astrocyte": 0.12,
                                        "microglia": 0.08}, 16, 18),
        Region(7, "hippocampus CA", 0.75, {"CA pyramidal neuron": 0.88,
                                          "cortical interneuron": 0.05, "astrocyte": 0.04,
                                          "microglia": 0.03}, 46, 14),
        Region(8, "dentate gyrus", 0.95, {"dentate granule cell": 0.94, "astrocyte": 0.03,
                                         "cortical interneuron": 0.03}, 42, 15),
        Region(9, "hippocampal strata", 0.12, {"astrocyte": 0.45, "cortical interneuron": 0.3,
                                              "microglia": 0.15, "oligodendrocyte": 0.1},
               28, 12),
        Region(10, "thalamus", 0.48, {"thalamic relay neuron": 0.78, "astrocyte": 0.07,
                                      "oligodendrocyte": 0.11, "microglia": 0.04}, 34, 13),
        Region(11, "striatum", 0.55, {"striatal D1 MSN": 0.44, "striatal D2 MSN": 0.42,
                                      "cortical interneuron": 0.03, "astrocyte": 0.05,
                                      "oligodendrocyte": 0.04, "microglia": 0.02}, 38, 14),
        Region(12, "ventricle", 0.0, {}, 5, 6),
        Region(13, "midbrain", 0.36, {"midbrain GABA neuron": 0.36,
                                      "midbrain glutamatergic neuron": 0.34, "astrocyte": 0.1,
                                      "oligodendrocyte": 0.15, "microglia": 0.05}, 30, 13),
        Region(14, "SN/VTA", 0.32, {"midbrain dopaminergic neuron": 0.76,
                                    "midbrain GABA neuron": 0.12, "astrocyte": 0.06,
                                    "oligodendrocyte": 0.04, "microglia": 0.02}, 34, 12),
        Region(15, "olfactory bulb", 0.8, {"OB granule cell": 0.55,
                                           "OB periglomerular DA neuron": 0.35,
                                           "astrocyte": 0.05, "oligodendrocyte": 0.03,
                                           "microglia": 0.02}, 40, 15),
        Region(16, "other subcortical", 0.34, {"midbrain GABA neuron": 0.4,
                                               "midbrain glutamatergic neuron": 0.3,
                                               "astrocyte": 0.12, "oligodendrocyte": 0.13,
                                               "microglia": 0.05}, 30, 13),
    )
}  # fmt: skip

REGION_IDS: dict[str, int] = {r.name: i for i, r in REGIONS.items()}
VENTRICLE = REGION_IDS["ventricle"]


@dataclass(frozen=True)
class Pathway:
    """A planted co-expression program.

    Attributes
    ----------
    name
        ``"GLUT"``, ``"DOPA"`` or ``"BLOD"`` (the published pathway names).
    genes
        The gene pair.
    regions
        Names of the regions where both genes are co-expressed (empty for BLOD, which follows
        the vessels rather than regions).
    vessels
        True when the program is planted on the vessel network.
    """

    name: str
    genes: tuple[str, str]
    regions: tuple[str, ...]
    vessels: bool = False


#: The planted pathway programs (METHOD.md 4.1: GLUT, DOPA, BLOD).
PATHWAYS: dict[str, Pathway] = {
    "GLUT": Pathway("GLUT", ("Slc17a6", "Slc17a7"), ("cortex L4", "thalamus")),
    "DOPA": Pathway("DOPA", ("Nr4a2", "Th"), ("SN/VTA", "olfactory bulb")),
    "BLOD": Pathway("BLOD", ("Cldn5", "Aqp4"), (), vessels=True),
}


def _filler_program(gene: str) -> dict[str, float]:
    """A low, gene-specific program for panel genes beyond the curated ones (name-seeded)."""
    h = int.from_bytes(gene.encode(), "little") % (2**32)
    rng = np.random.default_rng(h)
    n = int(rng.integers(1, 4))
    types = rng.choice(len(CELL_TYPES), size=n, replace=False)
    return {CELL_TYPES[int(t)].name: float(rng.uniform(0.5, 4.0)) for t in types}


@lru_cache(maxsize=32)
def type_gene_means(genes: tuple[str, ...], planted: tuple[str, ...] = ()) -> np.ndarray:
    """Mean transcripts per nucleus, ``(n_cell_types, n_genes)`` float64, for ``genes``.

    Curated genes follow :data:`CELL_TYPES`; any other gene gets a weak program in one to three
    cell types, chosen from the gene name (the same for every seed). Genes in ``planted`` (the
    interaction genes of an interaction phantom) have no cell-type program: their expression
    follows :mod:`.interactions` instead.
    """
    out = np.zeros((len(CELL_TYPES), len(genes)))
    for j, g in enumerate(genes):
        if g in planted:
            continue
        if g in PANEL_638850_INDEX:
            for i, ct in enumerate(CELL_TYPES):
                out[i, j] = ct.genes.get(g, 0.0)
        else:
            for name, mean in _filler_program(g).items():
                out[CELL_TYPE_INDEX[name], j] = mean
    out.setflags(write=False)
    return out


def region_mixture_matrix() -> np.ndarray:
    """Cell-type fractions per region, ``(n_regions, n_cell_types)`` (0 rows: no nuclei)."""
    m = np.zeros((max(REGIONS) + 1, len(CELL_TYPES)))
    for rid, reg in REGIONS.items():
        for name, frac in reg.mixture.items():
            m[rid, CELL_TYPE_INDEX[name]] = frac
    return m


def region_gene_means(genes: tuple[str, ...], planted: tuple[str, ...] = ()) -> np.ndarray:
    """Expected transcripts per nucleus of each gene in each region, ``(n_regions, n_genes)``.

    This is the mixture-weighted average of the cell-type programs (vessel-bound endothelial
    cells and perivascular astrocytes excluded); the planted *region -> gene -> mean* table.
    """
    return region_mixture_matrix() @ type_gene_means(genes, planted)


def programs_metadata(genes: tuple[str, ...], planted: tuple[str, ...] = ()) -> dict[str, Any]:
    """The planted programs as a JSON-able dict (stored under ``attrs['teramind']['phantom']``).

    ``planted``: interaction genes, whose expression is not a cell-type program (see
    :mod:`.interactions`).
    """
    means = region_gene_means(genes, planted)
    tmeans = type_gene_means(genes, planted)
    return {
        "regions": {
            str(rid): {
                "name": reg.name,
                "nucleus_density": reg.density,
                "cell_types": dict(reg.mixture),
                "gene_means_per_nucleus": {
                    g: round(float(means[rid, j]), 4) for j, g in enumerate(genes) if means[rid, j]
                },
            }
            for rid, reg in REGIONS.items()
        },
        "cell_types": [
            {
                "name": ct.name,
                "radius_px": ct.radius_px,
                "aspect": ct.aspect,
                "dapi_brightness": ct.brightness,
                "gene_means_per_nucleus": {
                    g: float(tmeans[i, j]) for j, g in enumerate(genes) if tmeans[i, j]
                },
            }
            for i, ct in enumerate(CELL_TYPES)
        ],
        "pathways": {
            p.name: {"genes": list(p.genes), "regions": list(p.regions), "vessels": p.vessels}
            for p in PATHWAYS.values()
        },
    }
