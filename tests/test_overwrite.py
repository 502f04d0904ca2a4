"""Never lose or silently corrupt a user's data (#13 items 1, 6, 7).

1. ``overwrite`` replaces only what this project wrote, of the writer's kind, and never an input.
6. Generating into an existing generated store over a region that holds another generation is
   refused; the same generation again replaces its record.
7. A refused or failed write is one line (cause and fix) with exit status 2 (user error) or 1
   (failure), never a traceback; a job whose start failed can be resumed.

Generation runs a tiny seeded random model on a tiny phantom (2 slices of 128 x 256 px, one
128 px block, one DDIM step), so each job is a couple of units.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from _model_helpers import single_thread  # noqa: F401  (autouse fixture)
from napari_teramind.cli import main
from napari_teramind.generate import generate_roi
from napari_teramind.generate.executors import iter_job, run_job
from napari_teramind.generate.job import JobSpec, create_job, job_status
from napari_teramind.generate.numerics import DEFAULT_THREADS, Numerics
from napari_teramind.ingest import TableColumns, ingest_table
from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import (
    BrainStore,
    BrainStoreError,
    GenePanel,
    OverwriteRefused,
    check_replaceable,
    discard,
    identify,
)

REGION = (0, 128, 0, 128)
GEN = ["--region", *map(str, REGION), "--slices", "0-1", "--steps", "1", "--block-px", "128"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny phantom store, a tiny seeded random model (object and saved checkpoint)."""
    d = tmp_path_factory.mktemp("overwrite-inputs")
    spec = PhantomSpec(seed=5, n_slices=2, height=128, width=256)
    write_phantom(d / "phantom.zarr", spec, workers=1, executor="thread")
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset("tiny", len(spec.gene_names))).eval()
    save_checkpoint(d / "model", model, None, list(spec.gene_names))
    return d / "phantom.zarr", d / "model", model, list(spec.gene_names)


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (to show nothing was touched)."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _generate(inputs, out: Path, *extra: str) -> list[str]:
    src, ckpt, _, _ = inputs
    return ["generate", str(src), "--model", str(ckpt), "--out", str(out), "--quiet", *GEN, *extra]


def _err(capsys) -> str:
    """stderr of the last command: exactly one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _small_store(path: Path, kind: str = "real") -> BrainStore:
    return BrainStore.create(path, n_slices=1, height=64, width=64, panel=GenePanel(["Th"]),
                             pixel_size_um=1.0, slice_spacing_um=1.0, kind=kind)  # fmt: skip


# ---------------------------------------------------------------------- 1. the rules
def test_identify_and_check_replaceable_rules(tmp_path):
    _small_store(tmp_path / "real.zarr")
    _small_store(tmp_path / "gen.zarr", kind="generated")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("years of work")
    (tmp_path / "file.zarr").write_text("not a directory")
    (tmp_path / "empty").mkdir()
    kinds = {n: identify(tmp_path / n).kind for n in
             ("real.zarr", "gen.zarr", "mine", "file.zarr", "empty", "nothing")}  # fmt: skip
    assert kinds == {"real.zarr": "real", "gen.zarr": "generated", "mine": "other",
                     "file.zarr": "file", "empty": "empty", "nothing": "missing"}  # fmt: skip
    gen = dict(replaces=("generated",), overwrite=True)
    assert check_replaceable(tmp_path / "gen.zarr", **gen).kind == "generated"
    assert not check_replaceable(tmp_path / "empty", **gen).exists  # nothing to lose
    for name, what in [
        ("real.zarr", "an ingested"),
        ("mine", "did not write"),
        ("file.zarr", "a file"),
    ]:
        with pytest.raises(OverwriteRefused, match=f"refusing to overwrite.*{what}") as e:
            check_replaceable(tmp_path / name, **gen)
        assert "choose another" in str(e.value).lower()
    # without overwrite: --overwrite is suggested only where it would be allowed
    with pytest.raises(OverwriteRefused, match=r"Pass overwrite=True \(--overwrite\)"):
        check_replaceable(tmp_path / "gen.zarr", replaces=("generated",), overwrite=False)
    with pytest.raises(OverwriteRefused, match="will not replace it") as e:
        check_replaceable(tmp_path / "mine", replaces=("generated",), overwrite=False)
    assert "Pass overwrite" not in str(e.value)
    # an input, or a parent or child of one, is refused even when nothing is there yet
    src = tmp_path / "real.zarr"
    (tmp_path / "link.zarr").symlink_to(src)
    for target, rel in [(src, "is"), (tmp_path, "contains"), (src / "sub.zarr", "lies inside"),
                        (tmp_path / "link.zarr", "is")]:  # fmt: skip
        with pytest.raises(OverwriteRefused, match=f"it {rel} the source store"):
            check_replaceable(target, replaces=("real", "generated"), overwrite=True,
                              inputs=[("source store", src)])  # fmt: skip
    assert _tree(tmp_path / "mine") == {"thesis.docx": b"years of work"}


def test_discard_renames_aside_before_deleting(tmp_path, monkeypatch):
    """An interrupted deletion leaves nothing at the path that reads as a store."""
    import napari_teramind.store.overwrite as ow

    _small_store(tmp_path / "gen.zarr", kind="generated")
    real_rmtree = shutil.rmtree

    def interrupted(path, ignore_errors=False):
        raise KeyboardInterrupt  # killed while deleting

    monkeypatch.setattr(ow.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        discard(tmp_path / "gen.zarr")
    assert not (tmp_path / "gen.zarr").exists()
    with pytest.raises(FileNotFoundError):
        BrainStore.open(tmp_path / "gen.zarr")
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".teramind-discard-gen.zarr")]
    assert len(left) == 1 and BrainStore.open(left[0], allow_incomplete=True)  # all still there
    monkeypatch.setattr(ow.shutil, "rmtree", real_rmtree)
    _small_store(tmp_path / "gen.zarr", kind="generated")
    discard(tmp_path / "gen.zarr")  # also removes the leftover of the interrupted one
    assert list(tmp_path.iterdir()) == []


def test_brainstore_create_replaces_only_its_own_kind(tmp_path):
    real = _small_store(tmp_path / "a.zarr")
    real.write_images(0, 0, 0, np.full((2, 64, 64), 9, np.uint8))
    before = _tree(tmp_path / "a.zarr")
    with pytest.raises(OverwriteRefused, match="an ingested"):  # a phantom may not replace it
        BrainStore.create(tmp_path / "a.zarr", n_slices=1, height=64, width=64,
                          panel=GenePanel(["Th"]), pixel_size_um=1, slice_spacing_um=1,
                          kind="phantom", overwrite=True)  # fmt: skip
    assert _tree(tmp_path / "a.zarr") == before
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "n.txt").write_text("keep")
    kw = dict(n_slices=1, height=64, width=64, panel=GenePanel(["Th"]), pixel_size_um=1,
              slice_spacing_um=1, overwrite=True)  # fmt: skip
    with pytest.raises(OverwriteRefused, match="did not write"):
        BrainStore.create(tmp_path / "notes", **kw)
    assert (tmp_path / "notes" / "n.txt").read_text() == "keep"
    with pytest.raises(OverwriteRefused, match="it is the source"):
        BrainStore.create(tmp_path / "a.zarr", **kw, inputs=[("source", tmp_path / "a.zarr")])
    new = BrainStore.create(tmp_path / "a.zarr", **kw)  # the same kind: replaced
    assert not np.asarray(new.zarr_array("images")[:]).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "notes"]


# ---------------------------------------------------------------------- 1. the commands
def test_generate_overwrite_never_deletes_the_source(inputs, tmp_path, capsys):
    src = inputs[0]
    before = _tree(src)
    assert main(_generate(inputs, src, "--job-dir", str(tmp_path / "j"), "--overwrite")) == 2
    assert "it is the source store" in _err(capsys)
    assert _tree(src) == before and BrainStore.open(src).complete
    # nor a directory that holds the source
    assert main(_generate(inputs, src.parent, "--job-dir", str(tmp_path / "j"), "--overwrite")) == 2
    assert "contains the source store" in _err(capsys)
    assert _tree(src) == before
    # library API: the same rule
    spec = JobSpec(source=str(src), model=str(inputs[1]), region=REGION, slices=(0, 1),
                   output=str(src), steps=1, block_px=128)  # fmt: skip
    with pytest.raises(OverwriteRefused, match="the source store"):
        create_job(tmp_path / "j", spec, overwrite=True)
    with pytest.raises(OverwriteRefused, match="the model checkpoint"):
        create_job(tmp_path / "j", spec.replace(output=str(inputs[1])), overwrite=True)
    assert _tree(src) == before


def test_generate_job_dir_overwrite_replaces_only_a_job(inputs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("a,b\n1,2\n")
    args = _generate(inputs, tmp_path / "out.zarr", "--job-dir", str(mine))
    assert main(args) == 2  # without --overwrite: not suggested, it would not be allowed
    err = _err(capsys)
    assert "did not write" in err and "Pass overwrite" not in err
    assert main([*args, "--overwrite"]) == 2
    assert "refusing to overwrite the job directory" in _err(capsys)
    assert _tree(mine) == {"results.csv": b"a,b\n1,2\n"}
    with pytest.raises(OverwriteRefused, match="did not write"):
        create_job(mine, JobSpec(source=str(inputs[0]), model=str(inputs[1]), region=REGION,
                                 slices=(0, 1), output=str(tmp_path / "o.zarr"), steps=1,
                                 block_px=128), overwrite=True)  # fmt: skip
    # a real job (and its generated output) is replaced
    job = tmp_path / "job"
    assert main(_generate(inputs, tmp_path / "o2.zarr", "--job-dir", str(job))) == 0
    capsys.readouterr()
    assert main(_generate(inputs, tmp_path / "o2.zarr", "--job-dir", str(job))) == 2
    assert "--resume" in _err(capsys)
    assert main(_generate(inputs, tmp_path / "o2.zarr", "--job-dir", str(job), "--overwrite",
                          "--seed", "3")) == 0  # fmt: skip
    (rec,) = BrainStore.open(tmp_path / "o2.zarr").metadata["generated_regions"]
    assert rec["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".teramind-discard")]


def _tables_dir(d: Path) -> Path:
    d.mkdir()
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"gene": rng.choice(["Th", "Aqp4"], 500), "x": rng.uniform(0, 64, 500),
                       "y": rng.uniform(0, 64, 500)})  # fmt: skip
    df.to_csv(d / "t.csv", index=False)
    return d / "t.csv"


def test_ingest_overwrite_never_deletes_its_inputs(tmp_path, capsys):
    table = _tables_dir(tmp_path / "data")
    before = _tree(tmp_path / "data")
    cli = ["ingest", "table", str(table), "-o", str(tmp_path / "data"), "--pixel-size", "1",
           "--canvas", "64", "64", "--quiet"]  # fmt: skip
    assert main([*cli, "--overwrite"]) == 2
    assert "contains the transcript table" in _err(capsys)
    assert _tree(tmp_path / "data") == before
    cols = TableColumns("gene", "x", "y")
    with pytest.raises(OverwriteRefused, match="contains the transcript table"):
        ingest_table([table], tmp_path / "data", columns=cols, pixel_size_um=1.0,
                     canvas=(64, 64), overwrite=True)  # fmt: skip
    assert _tree(tmp_path / "data") == before
    # an ingested store is replaced; a phantom is not
    out = tmp_path / "brain.zarr"
    ingest_table([table], out, columns=cols, pixel_size_um=1.0, canvas=(64, 64))
    ingest_table([table], out, columns=cols, pixel_size_um=2.0, canvas=(64, 64), overwrite=True)
    assert BrainStore.open(out).pixel_size_um == 2.0
    write_phantom(tmp_path / "p.zarr", PhantomSpec(n_slices=1, height=64, width=64), workers=1,
                  executor="thread")  # fmt: skip
    with pytest.raises(OverwriteRefused, match="phantom brain store"):
        ingest_table([table], tmp_path / "p.zarr", columns=cols, pixel_size_um=1.0,
                     canvas=(64, 64), overwrite=True)  # fmt: skip
    assert BrainStore.open(tmp_path / "p.zarr").kind == "phantom"


def test_phantom_overwrite_replaces_only_a_phantom(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    cli = ["phantom", "--slices", "1", "--height", "64", "--width", "64", "--quiet",
           "--workers", "1"]  # fmt: skip
    assert main([*cli[:1], str(mine), *cli[1:], "--overwrite"]) == 2
    assert "did not write" in _err(capsys)
    assert (mine / "keep.txt").read_text() == "keep"
    _small_store(tmp_path / "real.zarr")
    assert main([*cli[:1], str(tmp_path / "real.zarr"), *cli[1:], "--overwrite"]) == 2
    assert "an ingested (real) brain store" in _err(capsys)
    assert BrainStore.open(tmp_path / "real.zarr", allow_incomplete=True).kind == "real"
    assert main([*cli[:1], str(tmp_path / "p.zarr"), *cli[1:]]) == 0
    assert main([*cli[:1], str(tmp_path / "p.zarr"), *cli[1:], "--seed", "3", "--overwrite"]) == 0
    assert BrainStore.open(tmp_path / "p.zarr").metadata["phantom"]["spec"]["seed"] == 3


# ---------------------------------------------------------------------- 6. seeds
def test_another_seed_over_a_generated_region_is_refused(inputs, tmp_path, capsys):
    src, _, model, genes = inputs
    out = tmp_path / "gen.zarr"
    kw = dict(steps=1, gene_names=genes, output=out, block_px=128, preview=False)
    list(generate_roi(src, model, REGION, [0, 1], seed=7, **kw))
    images = np.asarray(BrainStore.open(out).images())
    with pytest.raises(BrainStoreError, match=r"already holds slices 0-1, region y 0:128.*seed 7"):
        generate_roi(src, model, REGION, [0, 1], seed=8, **kw)
    with pytest.raises(BrainStoreError, match="seed 7"):  # any overlap counts
        generate_roi(src, model, (64, 128, 64, 192), [1], seed=7, **kw)
    # other thread counts change the last bits: not the same generation either
    other = 2 if DEFAULT_THREADS == 1 else 1  # the default: 4, or one per core below that
    with pytest.raises(BrainStoreError, match=rf"seed 7 \(ddim, .*, {DEFAULT_THREADS} threads?\)"):
        generate_roi(src, model, REGION, [0, 1], seed=7, numerics=Numerics(threads=other), **kw)
    assert main(_generate(inputs, out, "--job-dir", str(tmp_path / "j"), "--seed", "8")) == 2
    assert "would overwrite those images" in _err(capsys)
    store = BrainStore.open(out)
    assert np.array_equal(np.asarray(store.images()), images)
    assert [r["seed"] for r in store.metadata["generated_regions"]] == [7]
    # the same generation again is allowed and keeps one true record; elsewhere is free
    list(generate_roi(src, model, REGION, [0, 1], seed=7, **kw))
    list(generate_roi(src, model, (0, 128, 128, 256), [0, 1], seed=8, **kw))
    store = BrainStore.open(out)
    assert [r["seed"] for r in store.metadata["generated_regions"]] == [7, 8]
    assert np.array_equal(np.asarray(store.images()[..., :128]), images[..., :128])
    assert store.metadata["generating"] == []


def test_an_unfinished_job_holds_its_region(inputs, tmp_path):
    src, ckpt, _, _ = inputs
    spec = JobSpec(source=str(src), model=str(ckpt), region=REGION, slices=(0, 1),
                   output=str(tmp_path / "gen.zarr"), steps=2, block_px=128, seed=1)  # fmt: skip
    a = create_job(tmp_path / "a", spec)
    b = create_job(tmp_path / "b", spec.replace(seed=2))  # made before a started
    it = iter_job(a.path)
    next(it)  # a prepared its output and did one unit
    it.close()
    with pytest.raises(BrainStoreError, match=r"unfinished generation job .*/a is writing"):
        create_job(tmp_path / "c", spec.replace(seed=2))
    with pytest.raises(BrainStoreError, match="teramind generate --resume"):
        run_job(b.path)
    run_job(a.path)  # its own pending entry does not stop a resume
    meta = BrainStore.open(tmp_path / "gen.zarr").metadata
    assert [r["seed"] for r in meta["generated_regions"]] == [1] and meta["generating"] == []


# ---------------------------------------------------------------------- 7. messages
def test_free_space_refusal_is_one_line(tmp_path, capsys):
    panel = GenePanel([f"g{i}" for i in range(8)])
    big = BrainStore.create(tmp_path / "huge.zarr", n_slices=64, height=65536, width=65536,
                            panel=panel, pixel_size_um=1.0, slice_spacing_um=10.0)  # fmt: skip
    big.write_images(0, 0, 0, np.zeros((2, 512, 512), np.uint8))
    big.write_images(63, 65536 - 512, 65536 - 512, np.zeros((2, 512, 512), np.uint8))
    big.write_genes(0, 0, 0, np.zeros((8, 128, 128), np.uint16))
    big.write_genes(63, 4096 - 128, 4096 - 128, np.zeros((8, 128, 128), np.uint16))
    big.update_metadata({"complete": True})
    rc = main(["generate", str(tmp_path / "huge.zarr"), "--out", str(tmp_path / "o.zarr"),
               "--block-px", "2048", "--quiet"])  # fmt: skip
    assert rc == 2
    err = _err(capsys)
    assert "not enough disk space" in err and "Free space" in err
    assert not (tmp_path / "o.zarr").exists() and not (tmp_path / "o.job").exists()


@pytest.fixture
def immutable(tmp_path):
    """A directory nothing can be created in (``chattr +i``; root ignores chmod)."""
    d = tmp_path / "readonly"
    d.mkdir()
    try:
        subprocess.run(["chattr", "+i", str(d)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("chattr +i is not available here")
    try:
        (d / "probe").touch()
    except OSError:
        pass
    else:  # pragma: no cover
        subprocess.run(["chattr", "-i", str(d)], check=False)
        pytest.skip("chattr +i does not stop writes here")
    yield d
    subprocess.run(["chattr", "-i", str(d)], check=False)


def test_read_only_output_is_one_line_and_the_job_resumes(inputs, tmp_path, immutable, capsys):
    out = immutable / "gen.zarr"
    job = tmp_path / "job"
    assert main(_generate(inputs, out, "--job-dir", str(job))) == 2
    err = _err(capsys)
    assert "cannot write" in err and str(immutable) in err
    assert f"teramind generate --resume {job}" in err
    assert main(["phantom", str(immutable / "p.zarr"), "--slices", "1", "--height", "64",
                 "--width", "64", "--quiet", "--workers", "1"]) == 2  # fmt: skip
    assert "cannot write" in _err(capsys)
    subprocess.run(["chattr", "-i", str(immutable)], check=True)
    assert main(["generate", "--resume", str(job), "--quiet"]) == 0
    assert job_status(job).state == "complete"
    assert [r["seed"] for r in BrainStore.open(out).metadata["generated_regions"]] == [0]


def _full_disk_after(monkeypatch, n: int, under: Path) -> None:
    """Make zarr's single file-write function fail with ENOSPC after ``n`` writes under a path.

    A full disk cannot be made safely here; everything else (the store, the job) is real.
    """
    import zarr.storage._local as local

    real_put = local._put
    count = [0]

    def put(path, value, *a, **kw):
        if Path(under) in Path(path).parents:
            count[0] += 1
            if count[0] > n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_put(path, value, *a, **kw)

    monkeypatch.setattr(local, "_put", put)


def test_full_disk_is_one_line_and_a_failed_start_resumes(inputs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "gen.zarr"
    job = tmp_path / "job"
    _full_disk_after(monkeypatch, 6, out)  # the output store is half created
    assert main(_generate(inputs, out, "--job-dir", str(job))) == 1
    err = _err(capsys)
    assert "the disk is full" in err and f"teramind generate --resume {job}" in err
    assert out.exists()
    monkeypatch.undo()
    assert main(["generate", "--resume", str(job), "--quiet"]) == 0
    store = BrainStore.open(out)
    assert [r["seed"] for r in store.metadata["generated_regions"]] == [0]
    assert np.asarray(store.images()[:, :, :128, :128]).any()
    # the phantom writer too: exit status 1, one line; --overwrite replaces the half store
    _full_disk_after(monkeypatch, 10, tmp_path / "p.zarr")
    cli = ["phantom", str(tmp_path / "p.zarr"), "--slices", "1", "--height", "64", "--width",
           "64", "--quiet", "--workers", "1"]  # fmt: skip
    assert main(cli) == 1
    assert "the disk is full" in _err(capsys)
    monkeypatch.undo()
    assert main(cli) == 2
    assert "Pass overwrite=True (--overwrite)" in _err(capsys)
    assert main([*cli, "--overwrite"]) == 0
    assert BrainStore.open(tmp_path / "p.zarr").complete
