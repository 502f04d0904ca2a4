"""Issue 18: slice schemes from the model config and the single-section human path, small."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_teramind.generate import GenerationPlan, check_source, generate_roi, slice_groups
from napari_teramind.model import ModelConfig
from napari_teramind.panels import human_orthologs, human_panel_names
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore, GenePanel, align_model_panel


def test_slice_groups_of_every_published_scheme():
    pairs = slice_groups(3, 4, 2)
    assert [(g.image, g.genes) for g in pairs] == [((0, 1), (-1, 0, 1, 2)), ((2, 3), (1, 2, 3, 4))]
    assert [(g.image, g.genes) for g in slice_groups(2, 1, 1)] == [((0,), (0,)), ((1,), (1,))]
    eight = slice_groups(8, 8, 4, slices=[5])
    assert [(g.image, g.genes) for g in eight] == [((4, 5, 6, 7), tuple(range(2, 10)))]
    # the plan's pairs are the 4-slice groups, and its dict is what it always was
    plan = GenerationPlan(canvas=(3, 64, 64), region=(0, 64, 0, 64), slices=None)
    assert plan.pairs == (0, 1) and plan.gene_slices(1) == (1, 2, 3, 4)
    assert "gene_depth" not in plan.to_dict() and plan.state_shape == (2, 4, 64, 64)
    one = GenerationPlan.for_model(
        ModelConfig.preset("tiny", 3).replace(gene_slices=1, image_depth=1),
        canvas=(3, 64, 64), region=(0, 64, 0, 64), slices=[0, 2],
    )  # fmt: skip
    assert one.pairs == (0, 2) and one.pair_slices(1) == (2,) and one.state_shape[:2] == (2, 2)
    assert GenerationPlan.from_dict(one.to_dict()) == one


def test_a_4_slice_model_refuses_one_section_before_any_work():
    config = ModelConfig.preset("tiny", 3)
    with pytest.raises(ValueError, match=r"1 section\(s\).*single-section model"):
        GenerationPlan.for_model(config, canvas=(1, 64, 64), region=(0, 64, 0, 64), slices=None)
    # a single-section model takes a 3D stack, one section at a time
    single = config.replace(gene_slices=1, image_depth=1)
    plan = GenerationPlan.for_model(single, canvas=(4, 64, 64), region=(0, 64, 0, 64), slices=None)
    assert len(plan.groups) == 4


def test_human_phantom_is_human_named(tmp_path):
    store = write_phantom(tmp_path / "h.zarr", PhantomSpec(seed=1, n_slices=1, height=64,
                          width=64, species="human"), workers=1, executor="thread")  # fmt: skip
    assert store.panel.names == human_panel_names()
    assert "SLC17A7" in store.panel and "TH" not in store.panel
    mouse = set(GenePanel.published("638850").names) | set(GenePanel.published("609882").names)
    assert not mouse & set(store.panel.names)  # nothing mouse-named
    genes = np.asarray(store.zarr_array("genes", 0)[:])
    assert genes[store.panel.index("SLC17A7")].sum() > 0
    programs = json.dumps(store.metadata["phantom"]["programs"])
    assert "Slc17a7" not in programs and "SLC17A7" in programs


def test_ortholog_report_and_too_few_genes():
    human = GenePanel(human_panel_names())
    report = align_model_panel(GenePanel.named("human-orthologs-81"), human)
    assert report.n_shared == 81 and report.orthologs["Slc17a7"] == "SLC17A7"
    assert "DOPA" in report.missing_pathways and "TH" in report.summary()
    wide = align_model_panel(GenePanel.published("638850", 229), human)
    with pytest.raises(ValueError, match=r"only 47 of the model's 229 genes.*DOPA lacks Th"):
        wide.check()


def test_read_orthologs_builtin_and_three_column_table(tmp_path):
    from napari_teramind.ingest import read_orthologs

    assert read_orthologs("human-orthologs-81") == human_orthologs()
    table = tmp_path / "o.csv"
    table.write_text("panel_index_60988,mouse_symbol,human_symbol\n75,Slc17a6,SLC17A6\n")
    assert read_orthologs(table) == {"Slc17a6": "SLC17A6"}


def test_whole_human_path(human_path, tmp_path):
    """Mouse phantom -> single-section model on the 81 ortholog genes -> human section."""
    human, model, info = human_path.human, human_path.model, human_path.info
    assert BrainStore.open(human).n_slices == 1
    assert (model.config.gene_slices, model.config.image_depth) == (1, 1)
    assert info.gene_names == tuple(human_orthologs())

    report = check_source(human, config=model.config, gene_names=info.gene_names)
    assert report.n_shared == 81 and report.uses_orthologs
    items = list(generate_roi(human, model, (0, 128, 0, 128), None, steps=2,
                              gene_names=info.gene_names, output=tmp_path / "gen.zarr",
                              preview=False))  # fmt: skip
    gen = BrainStore.open(items[-1].output)
    images = np.asarray(gen.zarr_array("images", 0)[:, 0])
    assert images.shape == (2, 128, 128) and images.std() > 0

    from napari_teramind.attention import compute_attention_maps

    shutil.copytree(human, tmp_path / "h.zarr")
    store = BrainStore.open(tmp_path / "h.zarr", mode="r+")
    name = compute_attention_maps(store, model, "GLUT", gene_names=info.gene_names)
    meta = store.attention_metadata(name)
    assert meta["kinds"] == ["all", "expr"]  # one slice: the one attention map defined
    with pytest.raises(KeyError, match=r"has no TH.*GLUT \(Slc17a6-Slc17a7\) can"):
        compute_attention_maps(store, model, "DOPA", gene_names=info.gene_names)

    from napari_teramind.evaluate import evaluate_region

    ev = evaluate_region(BrainStore.open(human), gen, 0, (0, 128, 0, 128), metrics=("psnr",))
    assert np.isfinite(ev.metrics["psnr_dapi"])


def test_attention_on_a_human_store_speaks_its_symbols(human_path, tmp_path):
    """Maps and contrast of the 81-gene model on a human section: the store's own symbols."""
    from napari_teramind.attention import compute_attention_maps
    from napari_teramind.attention.contrast import compute_contrast_maps, contrast_summary
    from napari_teramind.layers import attention_layers

    shutil.copytree(human_path.human, tmp_path / "h.zarr")
    store = BrainStore.open(tmp_path / "h.zarr", mode="r+")
    model, names = human_path.model, human_path.info.gene_names
    # genes under either symbol give the same map, named and channelled with human symbols
    name = compute_attention_maps(store, model, ["Slc17a6", "SLC17A7"], gene_names=names)
    assert name == "SLC17A6-SLC17A7"
    meta = store.attention_metadata(name)
    assert meta["channels"] == ["all:SLC17A6", "all:SLC17A7", "expr:SLC17A6", "expr:SLC17A7"]
    assert meta["genes"] == ["SLC17A6", "SLC17A7"]
    assert meta["model_genes"] == ["Slc17a6", "Slc17a7"]
    raw = np.asarray(store.attention(name)[:, 0])
    counts = np.asarray(store.genes()[store.panel.indices(["SLC17A6", "SLC17A7"]), 0])
    np.testing.assert_array_equal(raw[2:], counts[..., : raw.shape[-2], : raw.shape[-1]])
    layer_names = [d[1]["name"] for d in attention_layers(store, [name])]
    assert any(n.endswith("all:SLC17A6") for n in layer_names)
    assert not any("Slc17a6" in n for n in layer_names)
    # the contrast goes through the same alignment: it runs on the human store
    glut = compute_contrast_maps(store, model, "GLUT", null="random", draws=2, gene_names=names)
    cmeta = store.attention_metadata(glut)
    assert glut == "GLUT-contrast" and cmeta["genes"] == ["SLC17A6", "SLC17A7"]
    both = (counts > 0).all(axis=0)[..., : raw.shape[-2], : raw.shape[-1]]
    craw = np.asarray(store.attention(glut)[:, 0])
    np.testing.assert_array_equal(craw[4] > 0.5, both)
    assert contrast_summary(store, glut)["n_blocks"] == int(both.sum()) > 0
    # Nr4a2-Th: TH is not in the human panel, said in words (maps and contrast alike)
    for fn in (compute_attention_maps, compute_contrast_maps):
        with pytest.raises(KeyError, match=r"has no TH: human sections do not measure it|"
                           r"panel has no TH"):  # fmt: skip
            fn(store, model, "DOPA", gene_names=names)
        with pytest.raises(KeyError, match=r"panel has no TH"):
            fn(store, model, ["NR4A2", "Th"], gene_names=names)


def test_4_slice_model_on_human_section_is_refused(tmp_path):
    human = write_phantom(tmp_path / "h.zarr", PhantomSpec(seed=1, n_slices=1, height=64,
                          width=64, species="human"), workers=1, executor="thread")  # fmt: skip
    config = ModelConfig.preset("tiny", 229)
    with pytest.raises(ValueError, match="single-section model"):
        check_source(human, config=config, gene_names=GenePanel.published("638850", 229).names)
    single = config.replace(gene_slices=1, image_depth=1)
    with pytest.raises(ValueError, match=r"only 47 of the model's 229"):
        check_source(human, config=single, gene_names=GenePanel.published("638850", 229).names)


def test_cli_ingest_reports_the_ortholog_mapping(tmp_path, capsys):
    """`teramind ingest ... --orthologs` prints mapped, unmapped, shares and pathway genes."""
    import pandas as pd

    from napari_teramind.cli import main
    from napari_teramind.ingest import IngestReport

    orth = human_orthologs()
    others = [g for g in human_panel_names() if g not in set(orth.values())][:19]
    measured = [h for m, h in orth.items() if m != "Slc17a6"] + others  # 80 + 19 genes
    rng = np.random.default_rng(0)
    n = 4 * len(measured)
    pd.DataFrame({"gene": measured * 4, "x": rng.uniform(0, 63, n),
                  "y": rng.uniform(0, 63, n)}).to_csv(tmp_path / "h.csv", index=False)  # fmt: skip
    out = tmp_path / "h.zarr"
    args = ["ingest", "table", str(tmp_path / "h.csv"), "--out", str(out), "--pixel-size", "1",
            "--canvas", "64", "64", "--panel", "human-orthologs-81", "--orthologs",
            "human-orthologs-81", "--workers", "1", "--quiet"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "80 of the panel's 81 genes mapped (99 % of the model's panel)" in text
    assert "80 through their ortholog symbol" in text
    assert "80 of the 99 genes the sample measured (81 % of the sample's panel)" in text
    assert "unmapped: 1 panel genes the sample lacks (zero counts): Slc17a6 (SLC17A6)" in text
    assert "pathway GLUT (Slc17a6-Slc17a7) cannot be mapped: Slc17a6 not measured" in text
    assert "pathway DOPA (Nr4a2-Th) cannot be mapped: Th is not in the model's 81 genes" in text
    assert "panel has no TH" in text
    assert IngestReport.load(out).orthologs == orth  # the report keeps the mapping
    assert BrainStore.open(out).panel.names == tuple(orth)
