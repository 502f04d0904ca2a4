"""Figures fit for a paper (issue 17 item 11): grid layout, scale bars, colour bars, legends.

Real figures of a real (small) phantom store: the overview is a grid near 4:3 rather than a
strip, every image panel carries a micrometre scale bar sized from the store's pixel size,
intensity panels carry labelled colour bars, and legends sit outside the axes.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from napari_teramind.overview import (
    comparison_figure,
    grid_shape,
    nice_length,
    overview_figure,
    save_overview,
)
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fig") / "p.zarr"
    spec = PhantomSpec(seed=1, n_slices=2, height=256, width=384, pixel_size_um=2.0)
    write_phantom(path, spec, workers=1, executor="thread")
    return BrainStore.open(path)


def _bars(ax) -> list[AnchoredSizeBar]:
    return [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]


def test_nice_length_and_grid_shape():
    assert [nice_length(v) for v in (0.9, 3.0, 7.0, 153.6, 1999)] == [0.5, 2, 5, 100, 1000]
    assert grid_shape(7, 1.5) == (3, 3)  # not 1 x 7
    assert grid_shape(4, 1.0) == (2, 2)
    assert grid_shape(2, 0.5)[1] == 2


def test_overview_is_a_grid_with_scale_and_colour_bars(store, tmp_path):
    fig = overview_figure(store, 1)
    w, h = fig.get_size_inches()
    assert 1.0 <= w / h <= 2.0, (w, h)  # a page, not a 2464 x 234 strip
    images = [ax for ax in fig.axes if ax.images and not ax.get_label() == "<colorbar>"]
    assert len(images) == 7  # composite, DAPI, regions, four genes
    # rows: panels are laid out in a grid of at least two rows
    rows = {round(ax.get_position().y0, 2) for ax in images}
    assert len(rows) >= 2
    for ax in images:
        (bar,) = _bars(ax)
        texts = [t.get_text() for t in bar.txt_label.get_children()]
        assert texts and texts[0].endswith(("\u00b5m", "mm"))
    # the scale bar's length in data px times the level's pixel size is the labelled length
    k_ax = images[0]
    (bar,) = _bars(k_ax)
    width_px = k_ax.images[0].get_array().shape[1]
    um_px = store.pixel_size_um * store.width / width_px
    assert bar.scale_bar_um == nice_length(0.2 * width_px * um_px)
    assert f"{bar.scale_bar_um:g} \u00b5m" in [t.get_text() for t in bar.txt_label.get_children()]
    # colour bars: DAPI and each gene, labelled
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert labels.count("log2(1 + count)") == 4 and "DAPI intensity" in labels
    plt.close(fig)
    png = save_overview(store, tmp_path / "ov.png", 1)
    from PIL import Image

    pw, ph = Image.open(png).size
    assert pw <= 1600 and ph >= 600 and 1.0 <= pw / ph <= 2.0, (pw, ph)


def test_comparison_figure_has_scale_bars_and_dapi_colour_bar(store):
    fig = comparison_figure(store, {"copy": store}, (64, 192, 64, 256), 0)
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(images) == 4 and all(len(_bars(ax)) == 1 for ax in images)
    (bar,) = _bars(images[0])
    assert bar.scale_bar_um == nice_length(0.2 * 192 * store.pixel_size_um)  # 50 um
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert labels == ["DAPI intensity (0-255)"]
    plt.close(fig)


def test_report_legends_sit_outside_the_axes_and_summary_says_n(store, tmp_path):
    from napari_teramind.evaluate import evaluate_stores
    from napari_teramind.evaluate import figures as figures_mod

    rep = evaluate_stores(store, store, regions=[(0, 128, 128, 256)], slices=[0, 1],
                          nuclei="classical", metrics=["psnr", "ssim", "nuclei"])  # fmt: skip
    text = rep.summary_text()
    assert re.search(r"\+- \S+ \(n=2\)", text), text
    drawn = []
    real_png = figures_mod._png

    def keep(fig):
        drawn.append(fig)
        return real_png(fig)

    figures_mod._png = keep
    try:
        figs = figures_mod.report_figures(rep)
    finally:
        figures_mod._png = real_png
    assert set(figs) >= {"image_metrics.png", "nuclei.png"}
    assert drawn and all(fig.legends for fig in drawn)
    for fig in drawn:
        assert all(ax.get_legend() is None for ax in fig.axes)
        # the figure legend lies below every axes
        fig.canvas.draw()
        box = fig.legends[0].get_window_extent()
        assert all(box.y1 <= ax.get_window_extent().y0 + 1 for ax in fig.axes)


def test_crops_png_holds_the_store_pixels_at_one_to_one(store, tmp_path):
    """The 1:1 crops PNG shows every image pixel as one PNG pixel, values unchanged."""
    import matplotlib.image as mpimg

    from napari_teramind.overview import crop_panel_origin, crop_window, save_crops

    region = (0, 256, 64, 384)
    path = save_crops(store, {"again": store}, region, 1, tmp_path / "crops.png", size=128)
    png = np.round(mpimg.imread(path)[..., :3] * 255).astype(int)
    y0, y1, x0, x1 = crop_window(region, 128)
    assert (y1 - y0, x1 - x0) == (128, 128) and (y0 - 0) % 64 == 0 and (x0 - 64) % 64 == 0
    for row in range(2):
        want = np.asarray(store.images(0)[row, 1, y0:y1, x0:x1]).astype(int)
        for col in range(2):
            top, left = crop_panel_origin(row, col, 128)
            got = png[top : top + 128, left : left + 128]
            # away from the scale bar (lower right), the panel is the store's grey values
            assert np.abs(got[:90, :, 0] - want[:90]).max() <= 1
            assert (got[:90, :, 0] == got[:90, :, 1]).all()
