"""In-silico perturbation: edits, exactness against ``teramind generate``, resume, refusals, CLI.

A tiny phantom (4 slices of 256 x 384 px) and a seeded random tiny model saved as a native
checkpoint; 128 x 128 px regions of one slice pair, 2 DDIM steps, 64 px blocks (8 units).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.generate.edits import (
    EditedCounts,
    Knockout,
    Scale,
    Transplant,
    resolve_edits,
)
from napari_teramind.generate.executors import run_job
from napari_teramind.generate.job import JobSpec, create_job
from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
from napari_teramind.perturb import (
    PerturbSettings,
    difference,
    format_table,
    interaction_map,
    morphometric_change,
    perturb,
)
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore

REGION = (64, 192, 128, 256)
SLICES = (1,)
KW = dict(seed=3, steps=2, block_px=64)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("perturb-inputs")
    spec = PhantomSpec(seed=5, n_slices=4, height=256, width=384)
    store = write_phantom(d / "phantom.zarr", spec, workers=1, executor="thread")
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset("tiny", len(spec.gene_names))).eval()
    save_checkpoint(d / "model", model, None, list(spec.gene_names))
    return store, d / "model"


def _region_counts(store: BrainStore, z: int = 1) -> np.ndarray:
    y0, y1, x0, x1 = (v // 16 for v in REGION)
    return np.asarray(store.zarr_array("genes", 0)[:, z, y0:y1, x0:x1])


def _top_gene(store: BrainStore) -> str:
    """The gene with the most counts in the region (its edit surely changes the images)."""
    return store.panel.names[int(_region_counts(store).sum(axis=(1, 2)).argmax())]


def _arrays(path) -> tuple[np.ndarray, np.ndarray]:
    store = BrainStore.open(path)
    y0, y1, x0, x1 = REGION
    gy0, gy1, gx0, gx1 = (v // 16 for v in REGION)
    images = np.asarray(store.zarr_array("images", 0)[:, list(SLICES), y0:y1, x0:x1])
    genes = np.asarray(store.zarr_array("genes", 0)[:, list(SLICES), gy0:gy1, gx0:gx1])
    return images, genes


@pytest.fixture(scope="module")
def unedited(inputs, tmp_path_factory):
    """A plain generation job (what ``teramind generate`` runs) of the region."""
    store, model = inputs
    d = tmp_path_factory.mktemp("perturb-ref")
    spec = JobSpec(source=str(store.path), model=str(model), region=REGION, slices=SLICES,
                   output=str(d / "generated.zarr"), **KW)  # fmt: skip
    out = run_job(create_job(d / "job", spec).path)
    return out


def test_empty_edit_list_is_generate_bit_for_bit(inputs, unedited, tmp_path):
    store, model = inputs
    out = perturb(store, model, REGION, SLICES, [], output=tmp_path / "p.zarr", **KW)
    a_img, a_genes = _arrays(unedited)
    b_img, b_genes = _arrays(out.path)
    assert a_img.std() > 0
    assert np.array_equal(a_img, b_img) and np.array_equal(a_genes, b_genes)
    assert out.metadata["generated_regions"][-1]["edits"] == []


def test_edited_counts_apply_each_edit_where_masked(inputs):
    """The gene array units read: knockout, rounded scale, transplant of unedited counts."""
    store, _ = inputs
    names = list(store.panel.names)
    a, b, c = names[0], names[1], names[2]
    y0, y1, x0, x1 = REGION
    rect = (y0, y0 + 64, x0, x1)  # the top half of the region: 4 x 8 gene blocks
    tri = [np.array([[y0, x0], [y1, x0], [y1, x1 - 8]], float)]  # lower-left, off the centres
    edits = resolve_edits(
        [Knockout(a, rect), Scale(b, 1.5), Transplant(c, (-64, 64), tri)], store, REGION
    )
    raw = np.asarray(store.zarr_array("genes", 0))
    got = EditedCounts(store.zarr_array("genes", 0), edits)[:, 1, 0:16, 0:24]
    want = raw[:, 1, 0:16, 0:24].copy()
    by0, bx0 = y0 // 16, x0 // 16
    want[0, by0 : by0 + 4, bx0 : bx0 + 8] = 0
    box = (slice(by0, by0 + 8), slice(bx0, bx0 + 8))
    want[1][box] = np.floor(raw[1, 1][box] * 1.5 + 0.5).astype(np.uint16)
    from matplotlib.path import Path as Polygon

    ii, jj = np.mgrid[0:8, 0:8]
    centres = np.stack([y0 + 16 * (ii.ravel() + 0.5), x0 + 16 * (jj.ravel() + 0.5)], axis=1)
    inside = Polygon(tri[0]).contains_points(centres).reshape(8, 8)
    assert 0 < inside.sum() < 64
    for i, j in zip(*np.nonzero(inside), strict=True):
        want[2, by0 + i, bx0 + j] = raw[2, 1, by0 + i - 4, bx0 + j + 4]
    assert np.array_equal(got, want)
    assert not np.array_equal(got, raw[:, 1, 0:16, 0:24])


def test_knockout_changes_the_images_and_the_store_records_it(inputs, unedited, tmp_path):
    store, model = inputs
    gene = _top_gene(store)
    y0, y1, x0, _ = REGION
    mask = (y0, y1, x0, x0 + 64)  # the left half of the region
    out = perturb(store, model, REGION, SLICES, [Knockout(gene, mask)],
                  output=tmp_path / "ko.zarr", **KW)  # fmt: skip
    a_img, a_genes = _arrays(unedited)
    b_img, b_genes = _arrays(out.path)
    g = list(store.panel.names).index(gene)
    # the edited store holds the genes the model saw: zero in the mask, unchanged elsewhere
    assert a_genes[g, :, :, :4].sum() > 0 and not b_genes[g, :, :, :4].any()
    assert np.array_equal(b_genes[g, :, :, 4:], a_genes[g, :, :, 4:])
    others = [i for i in range(len(store.panel)) if i != g]
    assert np.array_equal(b_genes[others], a_genes[others])
    # the images changed, with the same noise: most pixels identical or close
    diff = difference(unedited, out)
    assert diff.shape == (2, 1, 128, 128) and diff.dtype == np.int16
    assert np.abs(diff).sum() > 0
    assert np.array_equal(diff, b_img.astype(np.int16) - a_img.astype(np.int16))
    (edit,) = out.metadata["generated_regions"][-1]["edits"]
    assert edit["kind"] == "knockout" and edit["gene"] == gene
    assert edit["mask"]["shape_blocks"] == [8, 8]
    rows = morphometric_change(unedited, out)
    names = [r.region for r in rows]
    assert names[:2] == ["all", "edited"]
    assert rows[1].pixels == 128 * 64
    assert "nuclei" in format_table(rows)


def test_a_stopped_perturbation_resumes_bit_exactly(inputs, tmp_path):
    store, model = inputs
    edits = [Scale(_top_gene(store), 3.0)]
    kw = dict(KW, memory_budget=0)  # per-block units: 2 steps x 4 blocks
    ref = perturb(store, model, REGION, SLICES, edits, output=tmp_path / "ref.zarr", **kw)

    class Stop(Exception):
        pass

    def stop_after_three(p):
        if p.units_done >= 3:
            raise Stop

    with pytest.raises(Stop):
        perturb(store, model, REGION, SLICES, edits, output=tmp_path / "r.zarr",
                progress=stop_after_three, **kw)  # fmt: skip
    job = tmp_path / "r.job"
    assert (job / "spec.json").is_file() and not (job / "complete.json").exists()
    out = perturb(store, model, REGION, SLICES, edits, output=tmp_path / "r.zarr", **kw)
    assert np.array_equal(_arrays(out.path)[0], _arrays(ref.path)[0])
    assert np.array_equal(_arrays(out.path)[1], _arrays(ref.path)[1])
    # resumed, not restarted: each of the 8 units was written once in all
    units = (job / "workers").glob("*.units")
    assert sum(len(p.read_text().splitlines()) for p in units) == 2 * 4


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (Knockout("Thh"), "unknown gene 'Thh'"),
        (Scale("Th", -1.0), "finite and >= 0"),
        (Scale("Th", float("inf")), "finite and >= 0"),
        (Scale("Th", float("nan")), "finite and >= 0"),
        (Knockout("Th", (0, 64, 0, 64)), "outside the region"),
        (Knockout("Th", [np.array([[64, 128], [64, 400], [100, 128]])]), "outside the region"),
        (Knockout("Th", np.zeros((8, 8), bool)), "covers no"),
        (Knockout("Th", np.ones((16, 24), bool)), "outside the region"),
        (Transplant("Th", (-128, 0)), "leaves the 256 x 384 px canvas"),
        (Transplant("Th", (8, 0)), "whole 16 px gene blocks"),
    ],
)
def test_bad_input_is_refused_before_any_work(inputs, tmp_path, edit, words):
    store, model = inputs
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("+", r"\+")) as e:
        perturb(store, model, REGION, SLICES, [edit], output=tmp_path / "x.zarr", **KW)
    if "unknown gene" in words:
        assert "close matches: Th" in str(e.value)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.job").exists()


def test_interaction_with_a_gene_absent_from_the_mask_is_exactly_zero(inputs, tmp_path):
    """B has no counts in the mask: f(A,0) = f(A,B), f(0,0) = f(0,B), the map is 0 everywhere."""
    store, model = inputs
    per_gene = np.stack([_region_counts(store, z) for z in range(4)], axis=1)  # gene slices 0-3
    b = int(per_gene.sum(axis=(1, 2, 3)).argmin())
    mask = ~per_gene[b].any(axis=0)  # the region's gene blocks where B is absent
    a = _top_gene(store)
    assert mask.sum() >= 16 and per_gene[store.panel.names.index(a)][:, mask].sum() > 0
    inter = interaction_map(store, model, REGION, SLICES, a, store.panel.names[b],
                            workdir=tmp_path, mask=mask, **KW)  # fmt: skip
    assert inter.map.shape == (2, 1, 128, 128) and not inter.map.any()
    assert sorted(inter.stores) == ["00", "0B", "A0", "AB"]
    ab = _arrays(inter.stores["AB"])[0].astype(int)
    zero_b = _arrays(inter.stores["0B"])[0].astype(int)
    assert np.abs(ab - zero_b).sum() > 0  # knocking out A alone does change the images
    # the same settings as one record, regenerated from scratch: the same four generations
    again = interaction_map(store, model, REGION, SLICES, a, store.panel.names[b],
                            workdir=tmp_path, mask=mask, settings=PerturbSettings(**KW),
                            overwrite=True)  # fmt: skip
    assert np.array_equal(_arrays(again.stores["0B"])[0], zero_b.astype(np.uint8))


def test_settings_travel_as_one_record(inputs, tmp_path):
    """``settings=PerturbSettings(...)`` and keywords build the same job; bad names refused."""
    from napari_teramind.perturb.api import prepare_perturbation

    store, model = inputs
    edits = [Knockout(_top_gene(store))]
    out = tmp_path / "s.zarr"
    by_kw = prepare_perturbation(store, model, REGION, SLICES, edits, output=out, **KW)
    rec = PerturbSettings(**KW)
    by_rec = prepare_perturbation(store, model, REGION, SLICES, edits, output=out, settings=rec)
    assert by_kw.to_dict() == by_rec.to_dict()
    assert (by_rec.seed, by_rec.steps, by_rec.block_px, by_rec.sampler) == (3, 2, 64, "ddim")
    # a keyword overrides the record; the record is left as it was
    later = prepare_perturbation(store, model, REGION, SLICES, edits, output=out,
                                 settings=rec, seed=4)  # fmt: skip
    assert later.seed == 4 and rec.seed == 3 and later.steps == 2
    with pytest.raises(TypeError, match=r"unknown perturbation setting 'stpes'.*steps"):
        perturb(store, model, REGION, SLICES, edits, output=out, stpes=2)
    assert not out.exists() and not (tmp_path / "s.job").exists()


def test_cli_perturb_end_to_end(inputs, unedited, tmp_path, capsys):
    """``teramind perturb``: its unedited store is ``teramind generate``'s bytes; the table."""
    from napari_teramind.cli import main

    store, model = inputs
    gene = _top_gene(store)
    region = [str(v) for v in REGION]
    common = ["--region", *region, "--slices", "1", "--model", str(model), "--seed", "3",
              "--steps", "2", "--block-px", "64", "--quiet"]  # fmt: skip
    gen = tmp_path / "gen.zarr"
    assert main(["generate", str(store.path), *common, "--out", str(gen)]) == 0
    out = tmp_path / "ko.zarr"
    code = main(["perturb", str(store.path), *common, "--knockout", gene, "--scale", "Th=2",
                 "--out", str(out), "--difference", str(tmp_path / "d.npy"),
                 "--table", str(tmp_path / "t.json")])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "nuclei" in text and "mean area px" in text and "all" in text
    base = tmp_path / "ko-unedited.zarr"
    for a, b in zip(_arrays(gen), _arrays(base), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(_arrays(base)[0], _arrays(unedited)[0])
    d = np.load(tmp_path / "d.npy")
    assert np.array_equal(d, difference(base, out)) and np.abs(d).sum() > 0
    rows = json.loads((tmp_path / "t.json").read_text())
    assert rows[0]["region"] == "all" and "count_change" in rows[0]
    # bad input: refused with the reason, nothing written
    assert main(["perturb", str(store.path), *common, "--knockout", "Thh",
                 "--out", str(tmp_path / "bad.zarr")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "unknown gene 'Thh'" in err and "Th" in err
    assert not (tmp_path / "bad.zarr").exists() and not (tmp_path / "bad-unedited.zarr").exists()
    assert main(["perturb", str(store.path), *common, "--out", str(tmp_path / "n.zarr")]) == 2
    assert "no edit given" in capsys.readouterr().err


def test_settings_defaults_are_the_job_defaults():
    """Every PerturbSettings default is JobSpec's, so a perturbation with no edit and no setting
    is exactly a ``teramind generate`` job (the two records declare the fields apart)."""
    from dataclasses import MISSING, fields

    from napari_teramind.generate.job import JobSpec

    job = {f.name: f for f in fields(JobSpec)}
    for f in fields(PerturbSettings):
        if f.name == "numerics":  # None here: the job's own default (job_fields leaves it out)
            assert f.default is None
            continue
        want = job[f.name].default
        if want is MISSING:
            want = job[f.name].default_factory()
        assert f.default == want, f"{f.name}: {f.default!r} here, {want!r} in JobSpec"
