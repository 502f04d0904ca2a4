"""Ingest: MERSCOPE round trip of the phantom, generic tables, registration, panels, resume,
and a clear error or a reported drop for every bad input."""

from __future__ import annotations

import inspect
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_teramind.ingest import (
    IngestOptions,
    IngestReport,
    TableColumns,
    ingest_merscope,
    ingest_table,
    load_registration,
    read_orthologs,
)
from napari_teramind.ingest import pipeline as pipeline_mod
from napari_teramind.ingest.registration import as_affine
from napari_teramind.ingest.transcripts import BlockBinner, plan_bands
from napari_teramind.store import BrainStore, GenePanel

sys.path.insert(0, str(Path(__file__).parent))
from _ingest_helpers import M2P, write_merscope_dir

QUIET = dict(progress=False, chunk_rows=20_000)


def _opts(**kw) -> IngestOptions:
    return IngestOptions(**{**QUIET, **kw})


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from napari_teramind.phantom import PhantomSpec, write_phantom

    d = tmp_path_factory.mktemp("phantom")
    kw = {"executor": "thread"} if "executor" in inspect.signature(write_phantom).parameters else {}
    store = write_phantom(d / "ph.zarr", PhantomSpec(n_slices=2, height=512, width=768), **kw)
    genes = store.genes().compute()
    images = store.images().compute()
    return store, genes, images


@pytest.fixture(scope="module")
def merscope_dirs(phantom, tmp_path_factory):
    """The phantom in the MERSCOPE layout, with a non-identity micron-to-pixel transform."""
    store, genes, images = phantom
    px = store.pixel_size_um
    m2p = M2P.copy()
    m2p[0, 0] = m2p[1, 1] = 1 / px
    root = tmp_path_factory.mktemp("merscope")
    dirs = []
    for z in range(store.n_slices):
        d = root / f"region_{z}"
        write_merscope_dir(d, genes[:, z], store.panel.names, images[:, z], m2p=m2p, seed=z)
        dirs.append(d)
    return dirs


def test_merscope_round_trip_is_exact(phantom, merscope_dirs, tmp_path):
    store, genes, images = phantom
    report = ingest_merscope(merscope_dirs, tmp_path / "rt.zarr", options=_opts())
    out = BrainStore.open(tmp_path / "rt.zarr")
    assert out.complete and out.shape == store.shape
    assert out.pixel_size_um == pytest.approx(store.pixel_size_um)
    assert set(out.panel.names) == set(store.panel.names)  # aligned by name, not position
    idx = [store.panel.index(g) for g in out.panel.names]
    np.testing.assert_array_equal(out.genes().compute(), genes[idx])
    np.testing.assert_array_equal(out.images().compute(), images)
    # The report: every transcript read is binned or dropped as a blank, per slice and gene.
    assert report.binned == int(genes.sum())
    assert report.dropped == {"control_probe": 10}
    for z, s in report.slices.items():
        assert s.read == int(genes[:, z].sum()) + 5
        assert sum(s.controls.values()) == 5 and set(s.controls) <= {"Blank-1", "Blank-7"}
        assert s.per_gene["Slc17a7"] == int(genes[store.panel.index("Slc17a7"), z].sum())
        assert s.images["DAPI"]["mapping"]["method"] == "identity"
    saved = IngestReport.load(tmp_path / "rt.zarr")
    assert saved.binned == report.binned
    assert out.metadata["ingest"]["dropped"] == {"control_probe": 10}
    # A fixed panel keeps its order.
    ingest_merscope(merscope_dirs, tmp_path / "fixed.zarr", panel=store.panel, options=_opts())
    fixed = BrainStore.open(tmp_path / "fixed.zarr")
    assert fixed.panel == store.panel
    np.testing.assert_array_equal(fixed.genes().compute(), genes)


def test_registration_places_transcripts_and_images(phantom, merscope_dirs, tmp_path):
    store, genes, images = phantom
    h, w = store.height, store.width
    # slice 0: whole-pixel shift; slice 1: 90-degree rotation (x' = y, y' = W - x) onto a
    # W x H canvas part. Transcripts sit at block centres and pixel centres map to pixel
    # centres, so both are exact.
    shift = np.array([[1, 0, 32], [0, 1, 16], [0, 0, 1]], float)
    rot = np.array([[0, 1, 0], [-1, 0, w], [0, 0, 1]], float)
    reg_file = tmp_path / "reg.json"
    reg_file.write_text(json.dumps({"slices": {"0": shift.tolist(), "1": rot.tolist()}}))
    regs = load_registration(reg_file)
    canvas = (max(h, w) + 16, max(h, w) + 32)
    ingest_merscope(
        merscope_dirs,
        tmp_path / "reg.zarr",
        panel=store.panel,
        canvas=canvas,
        registration=regs,
        options=_opts(),
    )
    out = BrainStore.open(tmp_path / "reg.zarr")
    g = out.genes().compute()
    im = out.images().compute()
    np.testing.assert_array_equal(g[:, 0, 1 : 1 + h // 16, 2 : 2 + w // 16], genes[:, 0])
    assert g[:, 0].sum() == genes[:, 0].sum()
    np.testing.assert_array_equal(im[:, 0, 16 : 16 + h, 32 : 32 + w], images[:, 0])
    # rotation: canvas (y', x') = (W - 1 - x, y) for pixel indices
    rot_g = np.rot90(genes[:, 1], k=1, axes=(1, 2))
    np.testing.assert_array_equal(g[:, 1, : w // 16, : h // 16], rot_g)
    rot_i = np.rot90(images[:, 1], k=1, axes=(1, 2))
    np.testing.assert_array_equal(im[:, 1, :w, :h], rot_i)
    # the inverse direction reads the same file as canvas-to-source matrices
    inv = load_registration(reg_file, direction="canvas_to_source")
    np.testing.assert_allclose(inv[1] @ regs[1], np.eye(3), atol=1e-12)


def test_resume_after_interruption(phantom, merscope_dirs, tmp_path, monkeypatch):
    store, genes, images = phantom
    calls = []
    real = pipeline_mod._write_images

    def failing(st, s, rep, options, bars):
        calls.append(s.z)
        if s.z == 1:
            raise KeyboardInterrupt("simulated kill")
        return real(st, s, rep, options, bars)

    monkeypatch.setattr(pipeline_mod, "_write_images", failing)
    with pytest.raises(KeyboardInterrupt):
        ingest_merscope(merscope_dirs, tmp_path / "r.zarr", panel=store.panel, options=_opts())
    state = json.loads((tmp_path / "r.zarr" / "ingest_state.json").read_text())
    assert list(state["done"]) == ["0"]
    monkeypatch.setattr(pipeline_mod, "_write_images", real)
    binned = []
    real_bin = pipeline_mod._bin_group
    monkeypatch.setattr(
        pipeline_mod,
        "_bin_group",
        lambda st, group, *a: (binned.extend(s.z for s in group), real_bin(st, group, *a)),
    )
    report = ingest_merscope(merscope_dirs, tmp_path / "r.zarr", panel=store.panel, options=_opts())
    assert binned == [1]  # slice 0 was not redone
    out = BrainStore.open(tmp_path / "r.zarr")
    np.testing.assert_array_equal(out.genes().compute(), genes)
    np.testing.assert_array_equal(out.images().compute(), images)
    assert report.binned == int(genes.sum()) and sorted(report.slices) == [0, 1]
    # A different configuration never silently reuses the store.
    with pytest.raises(FileExistsError, match="different ingest"):
        ingest_merscope(
            merscope_dirs,
            tmp_path / "r.zarr",
            panel=store.panel,
            panel_mode="union",
            z_plane=0,
            options=_opts(),
        )


def test_cli_ingest_and_export(merscope_dirs, tmp_path, capsys):
    from napari_teramind.cli import main

    out = tmp_path / "cli.zarr"
    rc = main(["ingest", "merscope", *map(str, merscope_dirs), "-o", str(out), "--quiet"])
    assert rc == 0
    assert "blank or control barcode" in capsys.readouterr().out
    tif = tmp_path / "s0.ome.tif"
    rc = main(["export", "ome-tiff", str(out), "-o", str(tif), "--slice", "0", "--quiet"])
    assert rc == 0
    with tifffile.TiffFile(tif) as f:
        assert f.is_ome
        np.testing.assert_array_equal(
            f.series[0].asarray(), BrainStore.open(out).images()[:, 0].compute()
        )
    rc = main(
        ["ingest", "merscope", str(tmp_path / "nope"), "-o", str(tmp_path / "x.zarr"), "--quiet"]
    )
    assert rc == 2 and "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------- generic tables
def _table_rows(rng, genes, n, h, w, slices=None):
    df = pd.DataFrame(
        {
            "target": rng.choice(genes, n),
            "cx": rng.uniform(0, w, n),
            "cy": rng.uniform(0, h, n),
        }
    )
    if slices is not None:
        df["section"] = rng.choice(slices, n)
    return df


def _expected(df, genes, h, w, z_of=None, nz=1, scale=1.0):
    out = np.zeros((len(genes), nz, h // 16, w // 16), np.uint16)
    gi = df["target"].map({g: i for i, g in enumerate(genes)}).to_numpy()
    x, y = df["cx"].to_numpy() * scale, df["cy"].to_numpy() * scale
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h) & ~np.isnan(x) & ~np.isnan(y)
    z = np.zeros(len(df), int) if z_of is None else df["section"].map(z_of).to_numpy()
    np.add.at(out, (gi[ok], z[ok], (y[ok] // 16).astype(int), (x[ok] // 16).astype(int)), 1)
    return out


def test_parquet_with_slice_column_in_micrometres(tmp_path):
    rng = np.random.default_rng(1)
    genes = ["Th", "Slc17a7", "Nr4a2", "Aqp4"]
    h, w = 160, 224
    df = _table_rows(rng, genes, 20_000, h * 0.5, w * 0.5, slices=[10, 2, 7])  # in um
    df.to_parquet(tmp_path / "t.parquet")
    report = ingest_table(
        [tmp_path / "t.parquet"],
        tmp_path / "p.zarr",
        columns=TableColumns("target", "cx", "cy", "section"),
        pixel_size_um=0.5,
        units="um",
        canvas=(h, w),
        options=_opts(chunk_rows=3000),
    )
    out = BrainStore.open(tmp_path / "p.zarr")
    assert out.n_slices == 3  # slice values 2, 7, 10 in numeric order
    exp = _expected(df, sorted(genes), h, w, z_of={2: 0, 7: 1, 10: 2}, nz=3, scale=2.0)
    np.testing.assert_array_equal(out.genes().compute(), exp)
    assert report.binned == len(df)
    assert report.slices[0].source.endswith("[section=2]")


def test_banded_binning_equals_one_pass(tmp_path):
    rng = np.random.default_rng(2)
    genes = [f"G{i}" for i in range(3)]
    h, w = 4096, 512  # 256 block rows: a tiny budget forces 2 bands of 128
    df = _table_rows(rng, genes, 30_000, h, w)
    df.to_csv(tmp_path / "t.csv", index=False)
    cols = TableColumns("target", "cx", "cy")
    assert len(plan_bands(1, 3, 256, 32, budget=3 * 128 * 32 * 4)) == 2
    ingest_table(
        [tmp_path / "t.csv"],
        tmp_path / "b.zarr",
        columns=cols,
        pixel_size_um=1,
        canvas=(h, w),
        options=_opts(budget=3 * 128 * 32 * 4),
    )
    ingest_table(
        [tmp_path / "t.csv"],
        tmp_path / "o.zarr",
        columns=cols,
        pixel_size_um=1,
        canvas=(h, w),
        options=_opts(),
    )
    a = BrainStore.open(tmp_path / "b.zarr").genes().compute()
    np.testing.assert_array_equal(a, BrainStore.open(tmp_path / "o.zarr").genes().compute())
    np.testing.assert_array_equal(a, _expected(df, genes, h, w))
    rep = IngestReport.load(tmp_path / "b.zarr")
    assert rep.binned == len(df) and rep.read == len(df)  # counted once, not once per band


def test_count_overflow_is_clipped_and_reported():
    b = BlockBinner(1, 1, 16, 16, 16, [np.eye(3)])
    from napari_teramind.ingest.report import SliceReport

    rep = SliceReport(z=0)
    n = 70_000
    b.add(np.zeros(n, np.int32), np.full(n, 3.0), np.full(n, 4.0), None, [rep])
    out = b.result([rep])
    assert out.dtype == np.uint16 and out[0, 0, 0, 0] == 65535
    assert rep.dropped["count_overflow"] == n - 65535 and rep.binned == 65535


# ------------------------------------------------------------------------- bad input
def test_unknown_columns_error_names_the_columns(tmp_path):
    pd.DataFrame({"gene": ["Th"], "global_x": [1.0], "global_y": [2.0]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    with pytest.raises(ValueError, match=r"no column 'globl_x' \(did you mean 'global_x'"):
        ingest_table(
            [tmp_path / "t.csv"],
            tmp_path / "x.zarr",
            columns=TableColumns("gene", "globl_x", "global_y"),
            pixel_size_um=1,
            canvas=(32, 32),
            options=_opts(),
        )
    assert not (tmp_path / "x.zarr").exists()
    pd.DataFrame({"gene": ["Th"], "global_x": ["left"], "global_y": [2.0]}).to_csv(
        tmp_path / "s.csv", index=False
    )
    with pytest.raises(ValueError, match=r"s\.csv"):
        ingest_table(
            [tmp_path / "s.csv"],
            tmp_path / "y.zarr",
            columns=TableColumns("gene", "global_x", "global_y"),
            pixel_size_um=1,
            canvas=(32, 32),
            options=_opts(),
        )


def test_nan_and_outside_coordinates_are_reported_drops(tmp_path):
    df = pd.DataFrame(
        {
            "target": ["Th", "Th", "Aqp4", "Aqp4", "Th", "Blank-3", ""],
            "cx": [5.0, np.nan, 20.0, 500.0, -1.0, 3.0, 4.0],
            "cy": [5.0, 3.0, np.inf, 10.0, 2.0, 3.0, 4.0],
        }
    )
    df.to_csv(tmp_path / "t.csv", index=False)
    report = ingest_table(
        [tmp_path / "t.csv"],
        tmp_path / "n.zarr",
        columns=TableColumns("target", "cx", "cy"),
        pixel_size_um=1,
        canvas=(32, 64),
        options=_opts(),
    )
    s = report.slices[0]
    assert s.read == 7 and s.binned == 1
    assert dict(s.dropped) == {
        "nan_coordinate": 2,
        "outside_canvas": 2,
        "control_probe": 1,
        "missing_gene_name": 1,
    }
    g = BrainStore.open(tmp_path / "n.zarr").genes().compute()
    assert g.sum() == 1


def test_slices_with_different_panels(tmp_path):
    a = pd.DataFrame({"gene": ["Th", "Aqp4", "Th"], "x": [1.0, 2, 3], "y": [1.0, 2, 3]})
    b = pd.DataFrame({"gene": ["Th", "Cldn5"], "x": [1.0, 2], "y": [1.0, 2]})
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    kw = dict(
        columns=TableColumns("gene", "x", "y"), pixel_size_um=1, canvas=(32, 32), options=_opts()
    )
    with pytest.raises(ValueError, match=r"different gene panels.*union.*intersection"):
        ingest_table([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "s.zarr", **kw)
    report = ingest_table(
        [tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "u.zarr", panel_mode="union", **kw
    )
    u = BrainStore.open(tmp_path / "u.zarr")
    assert u.panel.names == ("Aqp4", "Cldn5", "Th")
    assert u.metadata["missing_genes"] == {"0": ["Cldn5"], "1": ["Aqp4"]}
    assert report.slices[1].missing_genes == ["Aqp4"]
    report = ingest_table(
        [tmp_path / "a.csv", tmp_path / "b.csv"],
        tmp_path / "i.zarr",
        panel_mode="intersection",
        **kw,
    )
    assert BrainStore.open(tmp_path / "i.zarr").panel.names == ("Th",)
    assert report.slices[0].dropped["gene_not_in_panel"] == 1
    assert report.slices[0].unknown_genes == {"Aqp4": 1}


def test_human_sample_aligns_to_mouse_model_through_orthologs(tmp_path):
    df = pd.DataFrame(
        {
            "gene": ["SLC17A7", "SLC17A7", "NR4A2", "GFAP"],
            "x": [1.0, 17, 40, 3],
            "y": [1.0, 1, 2, 3],
        }
    )
    df.to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "orth.csv").write_text("mouse,human\nSlc17a7,SLC17A7\nNr4a2,NR4A2\nTh,TH\n")
    model = GenePanel(["Slc17a7", "Th", "Nr4a2"])
    report = ingest_table(
        [tmp_path / "h.csv"],
        tmp_path / "h.zarr",
        columns=TableColumns("gene", "x", "y"),
        pixel_size_um=1,
        canvas=(32, 64),
        panel=model,
        orthologs=read_orthologs(tmp_path / "orth.csv"),
        options=_opts(),
    )
    out = BrainStore.open(tmp_path / "h.zarr")
    assert out.panel == model
    g = out.genes().compute()
    assert g[0, 0, 0, 0] == 1 and g[0, 0, 0, 1] == 1 and g[2, 0, 0, 2] == 1 and g[1].sum() == 0
    assert report.model_genes_missing == ["Th"]
    assert out.metadata["missing_genes"] == {"0": ["Th"]}
    assert report.slices[0].unknown_genes == {"GFAP": 1}
    # case-insensitive matching needs no table
    report = ingest_table(
        [tmp_path / "h.csv"],
        tmp_path / "c.zarr",
        columns=TableColumns("gene", "x", "y"),
        pixel_size_um=1,
        canvas=(32, 64),
        panel=model,
        case_sensitive=False,
        options=_opts(),
    )
    assert report.model_genes_missing == ["Th"] and report.binned == 3


def test_truncated_tiff_is_a_clear_error(merscope_dirs, tmp_path):
    d = tmp_path / "trunc"
    shutil.copytree(merscope_dirs[0], d)
    tif = d / "images" / "mosaic_DAPI_z3.tif"
    data = tif.read_bytes()
    tif.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match="truncated"):
        ingest_merscope([d], tmp_path / "t.zarr", options=_opts())


def test_non_invertible_affine_is_a_clear_error(tmp_path):
    f = tmp_path / "reg.csv"
    f.write_text("slice,a00,a01,a02,a10,a11,a12\n0,1,2,0,2,4,0\n")
    with pytest.raises(ValueError, match="not invertible"):
        load_registration(f)
    with pytest.raises(ValueError, match="not invertible"):
        as_affine([[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="last row"):
        as_affine([[1, 0, 0], [0, 1, 0], [0.1, 0, 1]])
    g = tmp_path / "bad.csv"
    g.write_text("slice,a00,a01\n0,1,2\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_registration(g)


def test_missing_merscope_pieces_are_clear_errors(merscope_dirs, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(merscope_dirs[0], d)
    (d / "images" / "micron_to_mosaic_pixel_transform.csv").unlink()
    with pytest.raises(FileNotFoundError, match="micron-to-mosaic"):
        ingest_merscope([d], tmp_path / "x.zarr", options=_opts())
    with pytest.raises(FileNotFoundError, match=r"no detected_transcripts\.csv"):
        ingest_merscope([d / "images"], tmp_path / "x.zarr", options=_opts())


def test_binner_buffering_and_segments_do_not_change_counts(monkeypatch):
    """A tiny key buffer (many flushes) and tiny bincount segments give the same counts."""
    rng = np.random.default_rng(5)
    n, g, h, w = 20_000, 3, 160, 96
    codes = rng.integers(-2, g, n).astype(np.int32)
    x, y = rng.uniform(-5, w + 5, n), rng.uniform(-5, h + 5, n)
    expect = np.zeros((g, h // 16, w // 16), np.int64)
    ok = (codes >= 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    np.add.at(expect, (codes[ok], (y[ok] // 16).astype(int), (x[ok] // 16).astype(int)), 1)

    def run(**kw):
        b = BlockBinner(1, g, h, w, 16, [np.eye(3)], **kw)
        for s in range(0, n, 3_000):  # several chunks
            b.add(codes[s : s + 3_000], x[s : s + 3_000], y[s : s + 3_000], None)
        return b.result()[0]

    np.testing.assert_array_equal(run(), expect)
    np.testing.assert_array_equal(run(key_capacity=1_000), expect)  # flush every chunk or more
    monkeypatch.setattr(BlockBinner, "SEGMENT", 7)  # the count buffer in 7-entry segments
    np.testing.assert_array_equal(run(key_capacity=500), expect)


def test_arrow_columns_to_numpy_views_slices_nulls_and_narrow_types(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from napari_teramind.ingest.tables import _dict_column, _float_column, _to_numpy, iter_chunks

    a = pa.array([1.0, 2.0, 3.0, 4.0]).slice(1, 2)  # an offset into the buffer
    np.testing.assert_array_equal(_to_numpy(a, np.float64), [2.0, 3.0])
    x = _float_column(pa.array([1.5, None, 2.5], pa.float32()), tmp_path, "x")
    assert x.dtype == np.float64 and np.isnan(x[1]) and x[2] == 2.5
    names, idx = _dict_column(pa.array(["Th", None, "Aqp4", "Th"]).dictionary_encode())
    assert [names[i] if i >= 0 else None for i in idx] == ["Th", None, "Aqp4", "Th"]
    # a Parquet table with float32 coordinates and a null gene name reads the same
    pq.write_table(
        pa.table(
            {
                "gene": ["Th", None, "Th"],
                "global_x": pa.array([1.25, 2.5, 3.75], pa.float32()),
                "global_y": pa.array([0.5, 1.5, 2.5], pa.float32()),
            }
        ),
        tmp_path / "t.parquet",
    )
    (ch,) = iter_chunks(tmp_path / "t.parquet", TableColumns())
    np.testing.assert_array_equal(ch.x, [1.25, 2.5, 3.75])
    assert ch.x.dtype == np.float64 and ch.gene_idx[1] == -1


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_csv_read_in_blocks_gives_every_row_once(tmp_path, name):
    """Blocks are cut at newlines (last line without one), each parsed with the header."""
    import gzip

    from napari_teramind.ingest.tables import iter_chunks

    rng = np.random.default_rng(9)
    n = 12_000  # ~300 kB: several 64 kB blocks
    df = pd.DataFrame(
        {
            "gene": rng.choice(["Th", "Aqp4", "Blank-1", ""], n),
            "global_x": rng.uniform(0, 1e4, n).round(3),
            "global_y": rng.uniform(0, 1e4, n).round(3),
        }
    )
    text = df.to_csv(index=False).rstrip("\n")  # no newline at the end of the file
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    chunks = list(iter_chunks(path, TableColumns(), chunk_rows=1))
    assert len(chunks) > 3
    genes = [c.genes[i] if i >= 0 else "" for c in chunks for i in c.gene_idx]
    assert genes == df["gene"].tolist()
    np.testing.assert_array_equal(np.concatenate([c.x for c in chunks]), df["global_x"])
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), df["global_y"])


def test_empty_and_unusable_tables_are_errors(tmp_path, capsys):
    """#13 item 8: an empty table, an all-NaN table and a table whose every row is dropped are
    errors naming the table and the reason, with exit status 2; no complete store is made."""
    from napari_teramind.cli import main

    panel = tmp_path / "panel.csv"
    pd.DataFrame({"gene": ["Th", "Aqp4"]}).to_csv(panel, index=False)
    nan = [np.nan] * 3
    tables = {
        "empty": pd.DataFrame({"gene": [], "x": [], "y": []}),
        "allnan": pd.DataFrame({"gene": nan, "x": nan, "y": nan}),
        "nancoords": pd.DataFrame({"gene": ["Th", "Aqp4", "Th"], "x": nan, "y": nan}),
        "outside": pd.DataFrame({"gene": ["Th", "Aqp4"], "x": [100.0, 5.0], "y": [5.0, -3.0]}),
    }
    expected = {  # (without a panel, with --panel): what the message says
        "empty": ("the table has no rows", "has no transcript rows: the table is empty"),
        "allnan": ("its 3 rows have an empty 'gene'",
                   "none of its 3 transcript rows is usable (empty gene name: 3)"),
        "nancoords": ("none of its 3 transcript rows is usable (NaN or infinite coordinate: 3)",)
        * 2,
        "outside": ("none of its 2 transcript rows is usable (outside the canvas after "
                    "registration: 2)",) * 2,
    }  # fmt: skip
    for name, df in tables.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
        for k, extra in enumerate(([], ["--panel", str(panel)])):
            out = tmp_path / f"{name}-{k}.zarr"
            argv = ["ingest", "table", str(tmp_path / f"{name}.csv"), "--pixel-size", "1",
                    "--canvas", "32", "32", "-o", str(out), "--quiet", *extra]  # fmt: skip
            assert main(argv) == 2, (name, extra)
            err = capsys.readouterr().err
            assert f"{name}.csv" in err and expected[name][k] in err, (name, extra, err)
            if out.exists():  # created before binning found nothing: left incomplete, said so
                assert not BrainStore.open(out, allow_incomplete=True).complete
                assert "left incomplete" in err and "--overwrite" in err
    # the library says the same (a slice column selecting no row is an error too)
    pd.DataFrame({"gene": ["Th"], "x": [1.0], "y": [1.0], "s": ["a"]}).to_csv(
        tmp_path / "sliced.csv", index=False
    )
    with pytest.raises(ValueError, match=r"rows with s = 'b'\) has no transcript rows"):
        ingest_table([tmp_path / "sliced.csv"], tmp_path / "s.zarr",
                     columns=TableColumns("gene", "x", "y", "s"), slice_values=["a", "b"],
                     panel=GenePanel(["Th"]), pixel_size_um=1, canvas=(32, 32),
                     options=_opts())  # fmt: skip
