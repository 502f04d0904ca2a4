"""Browse gaps named by issue #8: region names on hover, shared slice shortcuts."""

import numpy as np

from _widget_helpers import isolated_settings, tiny_phantom  # noqa: F401 (fixtures)
from napari_teramind.widgets.browse import BrowseWidget


def test_region_name_shown_on_hover_and_slice_keys(make_napari_viewer, tmp_path):
    store = tiny_phantom(tmp_path / "brain.zarr")
    viewer = make_napari_viewer()
    w = BrowseWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.open_store(store.path, "real")
    regions = viewer.layers["brain regions"]
    labels = np.asarray(store.regions()[1].compute())
    y, x = (int(v[len(v) // 2]) for v in np.nonzero(labels))
    w.set_slice(1)
    z_world = float(viewer.dims.point[0])
    px = store.pixel_size_um
    status = regions.get_status((z_world, y * px, x * px), world=True)
    assert f"name: {store.region_names[int(labels[y, x])]}" in status["value"]

    from app_model.types import KeyBinding

    from napari_teramind.widgets._common import NEXT_SLICE_KEY, PREVIOUS_SLICE_KEY

    viewer.keymap[KeyBinding.from_str(NEXT_SLICE_KEY)](viewer)
    assert w.current_slice() == 2
    viewer.keymap[KeyBinding.from_str(PREVIOUS_SLICE_KEY)](viewer)
    assert w.current_slice() == 1
