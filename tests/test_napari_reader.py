"""npe2 contributions: manifest, reader, layer data and sample data."""

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

from _napari_helpers import make_store
from napari_teramind._reader import FORMAT_NAME, get_reader, is_brain_store
from napari_teramind.layers import brain_layers, gene_color, gene_layers, store_display_name
from napari_teramind.store import BrainStore
from napari_teramind.store.brainstore import FORMAT_NAME as STORE_FORMAT_NAME


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("reader") / "brain.zarr"
    make_store(path)
    return path


def test_manifest_validates_and_is_found_by_entry_point():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-teramind")
    assert pm.name == "napari-teramind" and pm.display_name == "Tera-MIND"
    contrib = pm.contributions
    assert [r.command for r in contrib.readers] == ["napari-teramind.get_reader"]
    assert contrib.readers[0].accepts_directories
    assert [(s.key, s.display_name) for s in contrib.sample_data] == [
        ("phantom_brain", "Phantom brain")
    ]
    assert [w.display_name for w in contrib.widgets] == [
        "Browse brain stores",
        "Generate a region",
        "Perturb genes",
        "Generation jobs",
        "Attention maps",
        "Evaluate generated vs real",
    ]
    assert all(cmd.id.startswith("napari-teramind.") for cmd in contrib.commands)
    from npe2 import PluginManager

    fresh = PluginManager()
    fresh.discover()  # what `napari` does at start-up: the entry point finds the manifest
    assert fresh.get_manifest("napari-teramind").display_name == "Tera-MIND"
    assert "Browse brain stores" in [w.display_name for w in fresh.iter_widgets()]
    res = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-teramind", "--imports"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_reader_format_marker_matches_the_store():
    assert FORMAT_NAME == STORE_FORMAT_NAME


def test_reader_declines_non_stores(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w", zarr_format=3)
    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "zarr.json").write_text("{not json")
    tif = tmp_path / "image.tif"
    tif.write_bytes(b"II*\x00")
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "zarr.json").write_text(json.dumps({"attributes": {"teramind": "x"}}))
    for p in (plain, tmp_path / "group.zarr", other, tif, foreign, tmp_path / "missing.zarr"):
        assert get_reader(str(p)) is None
        assert not is_brain_store(p)
    assert get_reader([]) is None


def test_reader_returns_aligned_multiscale_layers(store_path):
    reader = get_reader(str(store_path))
    assert reader is not None
    layers = reader(str(store_path))
    store = BrainStore.open(store_path)
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["brain DAPI", "brain PolyT", "brain regions"]
    assert [t for *_, t in layers] == ["image", "image", "labels"]
    for data, kw, _ in layers:
        assert isinstance(data, list) and len(data) == store.n_levels("images") > 1
        assert kw["multiscale"] is True
        assert data[0].shape == store.shape
        assert kw["scale"] == [store.slice_spacing_um, store.pixel_size_um, store.pixel_size_um]
        assert kw["units"] == ("um", "um", "um")
        assert kw["metadata"]["teramind_store"] == str(store.path)
    assert layers[0][1]["contrast_limits"] == (0.0, 255.0)
    assert layers[0][1]["blending"] == "additive"
    features = layers[2][1]["features"]
    assert features["name"][features["index"].index(10)] == "thalamus"
    # a list of paths reads every store
    assert len(reader([str(store_path), str(store_path)])) == 6


def test_gene_layer_blocks_centre_on_pixel_blocks(store_path):
    store = BrainStore.open(store_path)
    ((data, kw, kind),) = gene_layers(store, ["Slc17a7"])
    assert kind == "image" and kw["name"] == "brain Slc17a7"
    gb, px = store.gene_block_px, store.pixel_size_um
    level0 = data[0] if kw["multiscale"] else data  # one-level pyramids are plain arrays
    assert kw["multiscale"] == (store.n_levels("genes") > 1)
    assert level0.shape == (store.n_slices, store.height // gb, store.width // gb)
    scale, translate = np.array(kw["scale"]), np.array(kw["translate"])
    img_scale = np.array([store.slice_spacing_um, px, px])
    for by, bx in ((0, 0), (3, 5)):
        block_world = translate + scale * [1, by, bx]
        pixels = np.array([[1, by * gb + i, bx * gb + j] for i in range(gb) for j in range(gb)])
        centre_world = (pixels * img_scale).mean(axis=0)
        np.testing.assert_allclose(block_world, centre_world)
    lo, hi = kw["contrast_limits"]
    assert lo == 0 and hi >= 1
    assert kw["colormap"]["colors"][-1][:3] == list(gene_color("Slc17a7"))
    # GLUT's published yellow-green (METHOD.md appendix B) sat on PolyT's green: orange here
    assert gene_color("Slc17a7") == (1.0, 0.55, 0.0)  # #17 item 5
    with pytest.raises(KeyError, match="did you mean"):
        gene_layers(store, ["Slc17a8x"])


def test_brain_layers_options(store_path):
    store = BrainStore.open(store_path)
    layers = brain_layers(
        store, genes=["Th"], stains=["PolyT"], regions=False, name="x", metadata={"k": 1}
    )
    assert [kw["name"] for _, kw, _ in layers] == ["x PolyT", "x Th"]
    assert all(kw["metadata"]["k"] == 1 for _, kw, _ in layers)
    assert store_display_name(store) == "brain"


def test_layers_module_imports_neither_napari_nor_qt():
    code = (
        "import sys, napari_teramind.layers, napari_teramind._reader, "
        "napari_teramind._sample_data, napari_teramind.widgets;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt6', 'PySide6', 'magicgui')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_viewer_open_with_plugin(make_napari_viewer, store_path):
    viewer = make_napari_viewer()
    from napari.plugins import _npe2

    assert "napari-teramind" in _npe2.get_readers(str(store_path))
    layers = viewer.open(str(store_path), plugin="napari-teramind")
    assert [layer.name for layer in layers] == ["brain DAPI", "brain PolyT", "brain regions"]
    dapi = viewer.layers["brain DAPI"]
    assert dapi.multiscale and tuple(dapi.contrast_limits) == (0, 255)
    assert [str(u) for u in dapi.units] == ["micrometer"] * 3
    assert viewer.layers["brain regions"].get_status(
        viewer.layers["brain regions"].data_to_world((0, 256, 384)), world=True
    )["coordinates"]


def test_sample_data_writes_once_and_returns_layers(make_napari_viewer, tmp_path, monkeypatch):
    from napari_teramind import _sample_data

    monkeypatch.setenv("TERAMIND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        _sample_data, "SAMPLE_SPEC_KWARGS", {"seed": 0, "n_slices": 1, "height": 256, "width": 384}
    )
    layers = _sample_data.make_phantom_brain()
    names = [kw["name"] for _, kw, _ in layers]
    assert names[:3] == [f"{names[0].rsplit(' ', 1)[0]} {s}" for s in ("DAPI", "PolyT", "regions")]
    assert {kw["metadata"]["teramind_channel"] for _, kw, _ in layers} >= {"Slc17a6", "Slc17a7"}
    path = _sample_data.phantom_path(_sample_data.sample_spec())
    assert path.parent == tmp_path / "cache" and BrainStore.open(path).complete
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary leftovers
    mtime = (path / "zarr.json").stat().st_mtime_ns
    viewer = make_napari_viewer()
    viewer.open_sample("napari-teramind", "phantom_brain")
    assert [layer.name for layer in viewer.layers] == names
    assert (path / "zarr.json").stat().st_mtime_ns == mtime  # reused, not rewritten


def test_sample_data_is_written_in_the_background(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """#17 item 2: File > Open Sample no longer freezes napari while the phantom is written."""
    from _widget_helpers import EventLoopWatch, ThreadSpy, assert_responsive, idle_max_gap
    from napari_teramind import _sample_data

    monkeypatch.setenv("TERAMIND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        _sample_data, "SAMPLE_SPEC_KWARGS", {"seed": 0, "n_slices": 2, "height": 512, "width": 768}
    )
    viewer = make_napari_viewer(show=True)
    import napari_teramind.phantom as _spied

    spy = ThreadSpy(monkeypatch, _spied, "write_phantom")
    idle = idle_max_gap(qtbot)
    watch = EventLoopWatch(viewer)
    with watch:
        viewer.open_sample("napari-teramind", "phantom_brain")
        placeholder = [layer.name for layer in viewer.layers]
        qtbot.waitUntil(lambda: "phantom brain DAPI" in viewer.layers, timeout=240_000)
        qtbot.wait(200)
    assert len(placeholder) == 1 and "being written" in placeholder[0]
    names = [layer.name for layer in viewer.layers]
    assert names[:3] == ["phantom brain DAPI", "phantom brain PolyT", "phantom brain regions"]
    assert not any("being written" in n for n in names)  # the placeholder is gone
    assert not viewer.layers["phantom brain regions"].visible  # region tint on demand
    # the write ran off the GUI thread: the only long gaps are napari adding the layers
    assert len(watch.ticks) > 20
    assert_responsive(watch, idle, "sample data")  # the sample write froze napari 11-45 s
    spy.assert_off_gui_thread()  # the heavy work ran in a worker
