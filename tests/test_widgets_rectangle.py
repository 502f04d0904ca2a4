"""One rectangle, one reading: the four widgets that use the region rectangle agree.

The rectangle-to-region conversion lives in :func:`napari_teramind.selection.region_from_rectangle`
(issue 17); Generate, Generation jobs, Attention maps and Evaluate all read the same rectangle
through it, clipped to the canvas, in a real napari window.
"""

import numpy as np
import pytest

from _widget_helpers import isolated_settings, show_store, tiny_phantom  # noqa: F401
from napari_teramind.widgets.attention import AttentionWidget
from napari_teramind.widgets.evaluate import RECTANGLE, EvaluateWidget
from napari_teramind.widgets.generate import REGION_LAYER, GenerateWidget
from napari_teramind.widgets.jobs import JobsWidget


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return tiny_phantom(tmp_path_factory.mktemp("rect") / "brain.zarr", n_slices=2)


def test_four_widgets_read_the_rectangle_alike(make_napari_viewer, phantom, tmp_path):
    viewer = make_napari_viewer(show=True)
    show_store(viewer, phantom)
    gen = GenerateWidget(viewer)
    jobs = JobsWidget(viewer)
    att = AttentionWidget(viewer)
    ev = EvaluateWidget(viewer)
    for name, w in (("g", gen), ("j", jobs), ("a", att), ("e", ev)):
        viewer.window.add_dock_widget(w, name=name)
    jobs.root_edit.setText(str(tmp_path / "jobs"))
    gen.set_region((64, 192, 128, 256))
    layer = viewer.layers[REGION_LAYER]
    # a hand-drawn rectangle off the patch grid, hanging over the right edge of the canvas
    layer.data = [np.array([[70.4, 300.2], [70.4, 420.0], [150.6, 420.0], [150.6, 300.2]])]
    expected = (70, 151, 300, phantom.width)
    assert gen.region() == expected  # the spin boxes follow, clipped
    assert att._region(phantom) == expected
    ev.where_combo.setCurrentText(RECTANGLE)
    assert ev.region(phantom) == expected
    jobs.region_combo.setCurrentText("Region rectangle")
    assert jobs.job_spec()[1]["region"] == (64, 192, 256, phantom.width)  # snapped to patches
    # a rectangle dragged off the canvas is refused in words, the same everywhere
    layer.data = [np.array([[900.0, 900.0], [900.0, 990.0], [990.0, 990.0], [990.0, 900.0]])]
    for read in (lambda: att._region(phantom), lambda: ev.region(phantom)):
        with pytest.raises(ValueError, match="lies outside the canvas 256 x 384 px"):
            read()
    assert gen.region() == expected  # the fields keep the last region on the canvas
