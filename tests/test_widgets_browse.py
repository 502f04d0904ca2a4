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
    w.regions_box.setChecked(True)  # off by default
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

    assert w.slice_label.text() == "slice 2 of 4"  # counted from 1, of the store's slices
    viewer.keymap[KeyBinding.from_str(NEXT_SLICE_KEY)](viewer)
    assert w.current_slice() == 2
    viewer.keymap[KeyBinding.from_str(PREVIOUS_SLICE_KEY)](viewer)
    assert w.current_slice() == 1


def test_side_by_side_gives_every_layer_a_store_cell(make_napari_viewer, tmp_path):
    """#17 item 4: rectangle, previews and nuclei join the two cells; the rectangle is on both."""
    from _widget_helpers import grid_cell, grid_shape
    from napari_teramind.widgets._common import viewer_grid
    from napari_teramind.widgets.browse import SIDE_BY_SIDE
    from napari_teramind.widgets.generate import REGION_LAYER

    real = tiny_phantom(tmp_path / "brain.zarr")
    gen = tiny_phantom(tmp_path / "brain-generated.zarr", seed=3)
    viewer = make_napari_viewer(show=True)
    w = BrowseWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.open_store(real.path, "real")
    w.open_store(gen.path, "generated")
    px = real.pixel_size_um
    rect = viewer.add_shapes(
        [np.array([[32, 64], [32, 192], [160, 192], [160, 64]], float)],
        shape_type="rectangle", name=REGION_LAYER, scale=(px, px), face_color="transparent",
    )  # fmt: skip
    meta = {"teramind_role": "nuclei"}
    viewer.add_labels(np.ones((1, 8, 8), np.int32), name="nuclei real",
                      metadata={**meta, "teramind_channel": "real"})  # fmt: skip
    viewer.add_labels(np.ones((1, 8, 8), np.int32), name="nuclei generated",
                      metadata={**meta, "teramind_channel": "generated"})  # fmt: skip
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="x DAPI (preview, generating)",
                     metadata={"teramind_role": "preview"})  # fmt: skip
    w.set_mode(SIDE_BY_SIDE)
    grid = viewer_grid(viewer)
    layers = list(viewer.layers)
    assert grid_shape(grid, layers) == (1, 2)  # two cells, none empty, none extra
    cells = {layer.name: grid_cell(grid, i, layers) for i, layer in enumerate(layers)}
    mirror = f"{REGION_LAYER} (on generated)"
    real_cell, gen_cell = cells["brain DAPI"], cells["brain-generated DAPI"]
    assert real_cell != gen_cell
    assert cells[REGION_LAYER] == cells["nuclei real"] == real_cell
    assert cells[mirror] == cells["nuclei generated"] == cells["x DAPI (preview, generating)"]
    assert cells[mirror] == gen_cell
    # the copy follows the rectangle
    rect.data = [rect.data[0] + 32]
    assert np.array_equal(viewer.layers[mirror].data[0], rect.data[0])
