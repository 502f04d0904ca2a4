"""One language for regions and slices (library, every sub-command), presets, progress bars.

Issue 17 items 9 and 10: ``--region Y0 Y1 X0 X1`` and ``--slices 0-3,6`` read the same in
generate, attention, evaluate, ingest and train (and in the widgets, through the same library
functions); an unknown preset lists the presets; a generation job draws a live tqdm bar.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from napari_teramind.cli import build_parser, main
from napari_teramind.selection import parse_region, parse_slices, region_from_rectangle


# ---------------------------------------------------------------------- library parsers
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3,6", [0, 1, 2, 3, 6]),
        ("2 3", [2, 3]),
        (["2", "3"], [2, 3]),
        ("2-3", [2, 3]),
        ("0, 2-3", [0, 2, 3]),
        (["0-1", "1,4"], [0, 1, 4]),
        ("3,1,1", [1, 3]),
    ],
)
def test_parse_slices_forms(text, expected):
    assert parse_slices(text) == expected


def test_parse_slices_all_current_and_range():
    assert parse_slices("all", n_slices=3) == [0, 1, 2]
    assert parse_slices("", n_slices=4, current=2) == [2]
    assert parse_slices("current", n_slices=4, current=1) == [1]
    with pytest.raises(ValueError, match=r"outside the store's slices 0-3"):
        parse_slices("2-5", n_slices=4)
    with pytest.raises(ValueError, match=r"cannot read slices 'a-b'; write e\.g\. '2', '0-3'"):
        parse_slices("a-b")
    with pytest.raises(ValueError, match=r"runs backwards; write 1-3"):
        parse_slices("3-1")
    with pytest.raises(ValueError, match="cannot read slices '-1'"):
        parse_slices("-1")
    with pytest.raises(ValueError, match="no slices given"):
        parse_slices("")
    with pytest.raises(ValueError, match="needs the store"):
        parse_slices("all")


def test_parse_region_forms_and_messages():
    assert parse_region(["0", "64", "128", "256"]) == (0, 64, 128, 256)
    assert parse_region("0,64,128,256") == (0, 64, 128, 256)
    assert parse_region("0 64 128 256", height=64, width=256) == (0, 64, 128, 256)
    with pytest.raises(ValueError, match=r"Y0 Y1 X0 X1.*got 3 values"):
        parse_region("0 64 128")
    with pytest.raises(ValueError, match="whole numbers"):
        parse_region(["0", "6.5", "0", "64"])
    with pytest.raises(ValueError, match="y0 5000 >= y1 1024: the region is empty"):
        parse_region([5000, 1024, 0, 64])
    with pytest.raises(ValueError, match="x0 64 >= x1 64"):
        parse_region([0, 64, 64, 64])
    with pytest.raises(ValueError, match="y1 2048 > the canvas height 1024 px"):
        parse_region([0, 2048, 0, 64], height=1024, width=1024)
    with pytest.raises(ValueError, match="negative"):
        parse_region([-5, 64, 0, 64])


def test_region_from_rectangle_rounds_out_and_clips():
    rect = np.array([[10.2, 20.7], [10.2, 90.1], [60.5, 90.1], [60.5, 20.7]])
    assert region_from_rectangle(rect) == (10, 61, 20, 91)
    # a 3D Shapes layer (z, y, x): only the last two columns count; clipped to the canvas
    rect3 = np.c_[np.full(4, 2.0), rect - 30]
    assert region_from_rectangle(rect3, height=40, width=40) == (0, 31, 0, 40)
    with pytest.raises(ValueError, match="outside the canvas 40 x 40 px"):
        region_from_rectangle(rect + 100, height=40, width=40)
    with pytest.raises(ValueError, match="no corners"):
        region_from_rectangle(np.zeros((0, 2)))


# ---------------------------------------------------------------------- every sub-command
def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ("generate", "s.zarr", "--out", "o.zarr"),
        ("perturb", "s.zarr", "--knockout", "Th", "--out", "o.zarr"),
        ("attention", "s.zarr", "--pair", "GLUT"),
        ("evaluate", "r.zarr", "g.zarr", "--out", "ev"),
    ],
)
@pytest.mark.parametrize(
    ("slices", "expected"),
    [(["0-3,6"], [0, 1, 2, 3, 6]), (["2", "3"], [2, 3]), (["2-3"], [2, 3]), (["all"], None)],
)
def test_region_and_slices_read_the_same_everywhere(argv, slices, expected):
    ns = _parse(*argv, "--region", "0", "64", "128", "256", "--slices", *slices)
    region = ns.region[0] if argv[0] == "evaluate" else ns.region  # evaluate: repeatable
    assert region == (0, 64, 128, 256)
    assert ns.slices == expected


def test_evaluate_keeps_the_comma_form_and_repeats():
    ns = _parse("evaluate", "r.zarr", "g.zarr", "--out", "ev", "--region", "0,64,0,64",
                "--region=64,128,0,64", "--region", "0", "64", "64", "128")  # fmt: skip
    assert ns.region == [(0, 64, 0, 64), (64, 128, 0, 64), (0, 64, 64, 128)]
    assert _parse("evaluate", "r.zarr", "g.zarr", "--out", "ev").region is None


def test_other_commands_share_the_slices_syntax():
    ns = _parse("train", "s.zarr", "--out", "run", "--holdout", "20-21,23")
    assert ns.holdout == [20, 21, 23]
    assert _parse("train", "s.zarr", "--out", "run").holdout is None
    ns = _parse("ingest", "published", "--pixel-size", "0.108", "-o", "out.zarr",
                "--slices", "20", "22-23")  # fmt: skip
    assert ns.slices == [20, 22, 23]


def test_bad_region_and_slices_are_refused_with_the_fix(capsys):
    with pytest.raises(SystemExit) as exc:
        _parse("generate", "s.zarr", "--region", "64", "0", "0", "64")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --region: region y0 64 >= y1 0: the region is empty; write Y0 < Y1" in err
    with pytest.raises(SystemExit):
        _parse("attention", "s.zarr", "--pair", "DOPA", "--slices", "2-x")
    err = capsys.readouterr().err
    assert "argument --slices: cannot read slices '2-x'; write e.g. '2', '0-3', '0-3,6'" in err
    # a store path swallowed by --slices: the message says to put it first
    with pytest.raises(SystemExit):
        _parse("generate", "--slices", "0-1", "s.zarr")
    assert "give the store paths before --slices" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse("generate", "s.zarr", "--region", "0", "64", "0")
    assert "--region: expected 4 arguments" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["DOPAMINE", "glutamate"])
def test_unknown_preset_lists_the_presets(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["attention", "s.zarr", "--pair", name])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"unknown preset {name!r}" in err
    for preset, genes in (("GLUT", "Slc17a6 + Slc17a7"), ("DOPA", "Nr4a2 + Th"),
                          ("BLOD", "Cldn5 + Aqp4")):  # fmt: skip
        assert f"{preset} ({genes})" in err
    assert _parse("attention", "s.zarr", "--pair", "dopa").pair == "DOPA"


# ---------------------------------------------------------------------- progress bars
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2 x 128 x 192 px phantom and a seeded random tiny model checkpoint."""
    from napari_teramind.model import ModelConfig, TeraMindUNet, save_checkpoint
    from napari_teramind.phantom import PhantomSpec, write_phantom

    d = tmp_path_factory.mktemp("cli-lang")
    spec = PhantomSpec(seed=2, n_slices=2, height=128, width=192)
    write_phantom(d / "p.zarr", spec, workers=1, executor="thread")
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset("tiny", len(spec.gene_names))).eval()
    save_checkpoint(d / "model", model, None, list(spec.gene_names))
    return d


def test_generate_draws_a_live_progress_bar(tiny, tmp_path, capsys):
    torch.set_num_threads(1)
    rc = main(["generate", str(tiny / "p.zarr"), "--region", "0", "128", "0", "128",
               "--slices", "0-1", "--model", str(tiny / "model"), "--steps", "2",
               "--block-px", "64", "--checkpoint-every", "1",
               "--out", str(tmp_path / "g.zarr")])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    frames = re.split(r"[\r\n]", captured.err)
    bars = [f for f in frames if f.startswith("generate:")]
    # a bar per unit of work (a span of one step of the slice pair, held in memory), with a
    # count, a rate/ETA and the step
    assert any(re.search(r"generate: +100%\|.*\| 2/2 \[\d\d:\d\d<00:00", f) for f in bars), bars
    assert any("step 2/2" in f for f in bars) and len(bars) >= 3
    assert "generated" in captured.out and "generate:" not in captured.out
    # --quiet: no bar at all
    rc = main(["generate", "--resume", str(tmp_path / "g.job"), "--quiet"])
    assert rc == 0 and "generate:" not in capsys.readouterr().err


def test_job_bar_moves_inside_a_unit(capsys):
    """Between two units of a whole-brain job lie minutes: the bar shows the blocks between."""
    from napari_teramind.cli._progress import JobBar

    jb = JobBar(quiet=False, done=1, total=4)
    jb.part(3, 8)  # 3 of the running unit's 8 block-steps
    jb.part(8, 8)  # the unit's end: its own JobProgress follows, nothing drawn
    jb.bar.close()
    err = capsys.readouterr().err
    assert "1.375/4" in err and "block-step 3/8" in err
    assert "2/4" not in err
