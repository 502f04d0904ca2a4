"""The demo end to end on a small phantom: every stage runs and leaves its outputs."""

import numpy as np
import pandas as pd
import torch

from napari_teramind.cli import main
from napari_teramind.demo import demo_region, run_demo
from napari_teramind.store import BrainStore


def test_demo_runs_every_stage(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "demo"
    lines: list[str] = []
    seen: dict[str, tuple[int, int]] = {}
    result = run_demo(
        out,
        seed=3,
        n_slices=4,
        height=256,
        width=384,
        roi_px=128,
        roi_slices=(0, 1),
        log=lines.append,
        progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)),
    )
    # every long stage reported its units to the end (the CLI draws a bar per stage)
    stages = ("phantom", "generated", "gene-blind", "attention GLUT", "attention DOPA", "evaluate")
    assert set(seen) == set(stages) and all(d == t > 0 for d, t in seen.values()), seen
    # both pathways' AUCs are printed, as the README says
    for pathway in ("GLUT", "DOPA"):
        assert any(ln.strip().startswith(f"{pathway} map") for ln in lines), lines
    assert set(result.pathway_auc) == {"GLUT", "DOPA"}
    assert result.attention_auc == result.pathway_auc["DOPA"]
    real = BrainStore.open(result.real_store)
    assert result.overview_png.stat().st_size > 10_000
    assert result.comparison_png is not None and result.comparison_png.stat().st_size > 10_000
    # 1:1 crops: 3 columns (real, generated, gene-blind) x 2 rows of the region's 128 px
    import matplotlib.image as mpimg

    from napari_teramind.overview import crop_panel_origin

    crops = mpimg.imread(result.crops_png)
    top, left = crop_panel_origin(1, 2, 128)
    assert crops.shape[0] >= top + 128 and crops.shape[1] >= left + 128
    # the region lies on the patch grid and inside the canvas
    y0, y1, x0, x1 = result.region
    assert result.region == demo_region(real, 128, 0)
    assert (y1 - y0, x1 - x0) == (128, 128) and y0 % 64 == 0 and x0 % 64 == 0

    # generated and gene-blind stores hold images inside the region and nothing outside
    for path in (result.generated_store, result.gene_blind_store):
        gen = BrainStore.open(path)
        assert gen.kind == "generated"
        img = gen.images(0)[:, 0:2].compute()
        assert img[:, :, y0:y1, x0:x1].std() > 0
        outside = img.copy()
        outside[:, :, y0:y1, x0:x1] = 0
        assert not outside.any()
    blind = BrainStore.open(result.gene_blind_store).metadata["generated_regions"][-1]
    assert blind["gene_blind"] is True

    # attention maps written into the real store and scored against the planted programs
    assert set(result.attention) <= set(real.attention_names())
    assert result.attention_auc and all(0.5 < a <= 1.0 for a in result.attention_auc.values())

    # the evaluation table scores the generated store and the baselines on the region
    table = pd.read_csv(result.evaluation["table.csv"])
    assert {"generated", "gene-blind"} <= set(table["set"])
    assert np.isfinite(table.loc[table["set"] == "generated", "ssim_dapi"]).all()
    assert "gene-blind" in result.evaluation_summary

    # a second run reuses everything it wrote
    lines.clear()
    again = run_demo(
        out,
        seed=3,
        n_slices=4,
        height=256,
        width=384,
        roi_px=128,
        roi_slices=(0, 1),
        log=lines.append,
    )
    assert any("already written" in ln for ln in lines)
    assert any("already generated" in ln for ln in lines)
    assert again.generated_store == result.generated_store


def test_demo_cli_without_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--slices",
                "2",
                "--height",
                "128",
                "--width",
                "192",
                "--no-model",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert "demo finished" in printed and (out / "phantom_overview.png").is_file()
    assert "phantom: 100%" in captured.err  # the live bar of the phantom stage
    assert not (out / "generated.zarr").exists()
