"""Brain store: creation, lazy reading, pyramids, NGFF metadata and clear errors."""

import json
import shutil

import numpy as np
import pytest
import zarr

from napari_teramind.store import (
    BrainStore,
    BrainStoreError,
    DamagedStoreError,
    GenePanel,
    MissingChunkError,
)
from napari_teramind.store.pyramid import downsample2

Z, H, W = 2, 320, 480


def _make(path, complete=True, regions=True, seed=0, n_slices=Z):
    Z = n_slices
    panel = GenePanel.published("638850", 12)
    store = BrainStore.create(
        path,
        n_slices=Z,
        height=H,
        width=W,
        panel=panel,
        pixel_size_um=0.5,
        slice_spacing_um=100.0,
        kind="real",
        region_names={1: "cortex", 2: "thalamus"} if regions else None,
        image_chunk=128,
    )
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (2, Z, H, W), dtype=np.uint8)
    genes = rng.poisson(0.3, (12, Z, H // 16, W // 16)).astype(np.uint16)
    lab = rng.integers(0, 3, (Z, H, W)).astype(np.uint16)
    for z in range(Z):
        store.write_images(z, 0, 0, img[:, z])
        store.write_genes(z, 0, 0, genes[:, z])
        if regions:
            store.write_regions(z, 0, 0, lab[z])
    if complete:
        store.finalize()
    return store, img, genes, lab


def test_roundtrip_lazy_and_pyramids(tmp_path):
    path = tmp_path / "b.zarr"
    _, img, genes, lab = _make(path)
    store = BrainStore.open(path)
    assert store.shape == (Z, H, W)
    assert store.complete and store.kind == "real"
    np.testing.assert_array_equal(store.images(0).compute(), img)
    np.testing.assert_array_equal(store.genes(0).compute(), genes)
    np.testing.assert_array_equal(store.regions(0).compute(), lab)
    # level 1 is the rounded 2x2 mean of level 0, genes the 2x2 max, labels nearest
    np.testing.assert_array_equal(store.images(1).compute(), downsample2(img, "mean"))
    expected_mean = (
        img[..., ::2, ::2].astype(int)
        + img[..., 1::2, ::2]
        + img[..., ::2, 1::2]
        + img[..., 1::2, 1::2]
        + 2
    ) // 4
    np.testing.assert_array_equal(store.images(1).compute(), expected_mean)
    assert store.n_levels("genes") == 1  # 30 blocks fit one 128-block chunk
    np.testing.assert_array_equal(
        downsample2(genes, "max"),
        np.maximum.reduce([genes[..., a::2, b::2] for a in (0, 1) for b in (0, 1)]),
    )
    np.testing.assert_array_equal(store.regions(1).compute(), lab[:, ::2, ::2])
    assert store.n_levels("images") == 3  # 480 -> 240 -> 120 <= 128
    assert store.gene("Nr4a2").shape == (Z, H // 16, W // 16)
    np.testing.assert_array_equal(store.gene("Nr4a2").compute(), genes[5])
    assert store.validate(deep=True) == []


def test_levels_align_in_micrometres(tmp_path):
    store, *_ = _make(tmp_path / "b.zarr")
    img0, img1 = store.levels("images")[:2]
    assert img0.scale == (1.0, 100.0, 0.5, 0.5)
    assert img1.scale == (1.0, 100.0, 1.0, 1.0)
    # centre of level-1 pixel 0 is between level-0 pixels 0 and 1
    assert img1.translation[2:] == (0.25, 0.25)
    g0 = store.levels("genes")[0]
    assert g0.scale[2:] == (8.0, 8.0)
    assert g0.translation[2:] == (7.5 * 0.5, 7.5 * 0.5)


def test_second_ngff_reader_sees_axes_and_scales(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    _make(tmp_path / "b.zarr")
    for name, n_channels in (("images", 2), ("genes", 12)):
        node = next(iter(Reader(parse_url(tmp_path / "b.zarr" / name))()))
        assert node.load(Multiscales) is not None
        axes = [a["name"] for a in node.metadata["axes"]]
        assert axes == ["c", "z", "y", "x"]
        assert [a.get("unit") for a in node.metadata["axes"]][1:] == ["micrometer"] * 3
        assert node.data[0].shape[0] == n_channels
        scale0 = node.metadata["coordinateTransformations"][0][0]["scale"]
        assert scale0[2] == (0.5 if name == "images" else 8.0)
    assert [c["label"] for c in node.metadata.get("channel_names", [])] in ([], ["DAPI", "PolyT"])


def test_published_panel_and_alignment():
    main, supp = GenePanel.published("638850"), GenePanel.published("609882")
    assert len(main) == len(supp) == 500
    assert main.names[:229] == supp.names[:229] and main.names[229] != supp.names[229]
    for gene, idx in {
        "Nr4a2": 5,
        "Slc17a6": 75,
        "Cldn5": 94,
        "Aqp4": 145,
        "Th": 154,
        "Slc17a7": 191,
    }.items():
        assert main.index(gene) == idx == supp.index(gene)
    model_panel = GenePanel.published("638850", 229)
    al = model_panel.align(supp)
    assert al.present.all() and al.missing == ()
    # a shuffled source aligns by name, not position
    src = GenePanel(["Th", "Gfap", "Slc17a7"])
    al = GenePanel(["Slc17a7", "Th", "Nr4a2"]).align(src)
    assert al.target_index.tolist() == [2, 0, -1]
    assert al.missing == ("Nr4a2",) and al.unused == ("Gfap",)
    counts = np.array([[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(al.take(counts, fill=np.nan)[:2], [[3.0], [1.0]])
    assert np.isnan(al.take(counts, fill=np.nan)[2, 0])
    human = GenePanel(["SLC17A7", "NR4A2"])
    al = GenePanel(["Slc17a7", "Nr4a2", "Th"]).align(
        human, orthologs={"Slc17a7": "SLC17A7"}, case_sensitive=False
    )
    assert al.target_index.tolist() == [0, 1, -1] and al.missing == ("Th",)


def test_panel_errors():
    with pytest.raises(ValueError, match="more than once"):
        GenePanel(["Th", "Th"])
    with pytest.raises(KeyError, match="did you mean Slc17a7"):
        GenePanel.published("638850").index("slc17a7")
    with pytest.raises(KeyError, match="no published panel"):
        GenePanel.published("123")


def test_missing_path_and_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BrainStore.open(tmp_path / "nope.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BrainStoreError, match="not a zarr v3 group"):
        BrainStore.open(tmp_path / "empty")
    zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=3)
    with pytest.raises(BrainStoreError, match="not a napari-teramind brain store"):
        BrainStore.open(tmp_path / "plain.zarr")
    zarr.open_group(tmp_path / "v2.zarr", mode="w", zarr_format=2)
    with pytest.raises(BrainStoreError, match="zarr v2"):
        BrainStore.open(tmp_path / "v2.zarr")


def test_unknown_version_and_corrupt_metadata(tmp_path):
    path = tmp_path / "b.zarr"
    _make(path, regions=False)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["teramind"]["format_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(BrainStoreError, match="format version 99"):
        BrainStore.open(path)
    (path / "zarr.json").write_text("{ truncated")
    with pytest.raises(BrainStoreError, match="cannot be opened"):
        BrainStore.open(path)


def test_truncated_and_inconsistent_stores(tmp_path):
    path = tmp_path / "b.zarr"
    _make(path, regions=False)
    shutil.rmtree(path / "images" / "s1")
    with pytest.raises(BrainStoreError, match="images/s1 is missing"):
        BrainStore.open(path)

    path = tmp_path / "c.zarr"
    _make(path, regions=False)
    shutil.rmtree(path / "genes")
    with pytest.raises(BrainStoreError, match="lacks the 'genes'"):
        BrainStore.open(path)

    path = tmp_path / "d.zarr"
    _make(path, regions=False)
    arr_meta = json.loads((path / "images" / "s0" / "zarr.json").read_text())
    arr_meta["shape"][2] = H + 16
    (path / "images" / "s0" / "zarr.json").write_text(json.dumps(arr_meta))
    with pytest.raises(BrainStoreError, match="disagree"):
        BrainStore.open(path)


def test_missing_chunks_are_never_zero_filled(tmp_path):
    path = tmp_path / "b.zarr"
    _make(path, regions=False)
    # a chunk at the edge is caught at open
    (path / "images" / "s0" / "c" / "1" / "1" / "2" / "3").unlink()
    with pytest.raises(BrainStoreError, match="truncated"):
        BrainStore.open(path)
    path = tmp_path / "c.zarr"
    _make(path, regions=False)
    (path / "images" / "s0" / "c" / "0" / "0" / "1" / "1").unlink()
    store = BrainStore.open(path)
    assert store.images(0)[:, :, :128, :128].compute().any()  # untouched chunk reads fine
    with pytest.raises(BrainStoreError, match=r"chunk 0/0/1/1 .* is missing"):
        store.images(0)[:, :, 128:256, 128:256].compute()
    assert any("chunks missing" in p for p in store.validate(deep=True))


def test_incomplete_store_refused_unless_asked(tmp_path):
    path = tmp_path / "b.zarr"
    _make(path, complete=False, regions=False)
    with pytest.raises(BrainStoreError, match="incomplete"):
        BrainStore.open(path)
    store = BrainStore.open(path, allow_incomplete=True)
    assert not store.complete


def test_create_rejects_bad_input(tmp_path):
    panel = GenePanel(["Th"])
    kw = dict(n_slices=1, panel=panel, pixel_size_um=1, slice_spacing_um=1)
    with pytest.raises(ValueError, match="multiples of the gene block"):
        BrainStore.create(tmp_path / "a.zarr", height=100, width=64, **kw)
    BrainStore.create(tmp_path / "a.zarr", height=64, width=64, **kw)
    with pytest.raises(FileExistsError, match="overwrite"):
        BrainStore.create(tmp_path / "a.zarr", height=64, width=64, **kw)
    store = BrainStore.open(tmp_path / "a.zarr", mode="r+")
    with pytest.raises(ValueError, match="outside"):
        store.write_images(0, 32, 0, np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        store.write_images(0, 0, 0, np.zeros((2, 64, 64), np.float32))
    ro = BrainStore.open(tmp_path / "a.zarr", allow_incomplete=True)
    with pytest.raises(BrainStoreError, match="read-only"):
        ro.write_images(0, 0, 0, np.zeros((2, 64, 64), np.uint8))


def test_derived_attention_map(tmp_path):
    store, *_ = _make(tmp_path / "b.zarr")
    store = BrainStore.open(tmp_path / "b.zarr", mode="r+")
    arrays = store.create_derived("GLUT", ["all:Slc17a6", "all:Slc17a7"], attrs={"genes": ["a"]})
    arrays[0][:] = 1.5
    store.build_pyramids(names=["attention/GLUT"])
    assert store.attention_names() == ["GLUT"]
    assert float(store.attention("GLUT", 0)[0, 0, 0, 0].compute()) == 1.5
    assert store.attention_metadata("GLUT")["genes"] == ["a"]


def test_compute_leaves_napari_dask_cache_alone(tmp_path):
    # napari registers a global dask cache; plain .compute() from worker threads, concurrent
    # with napari's own (GUI thread) computations, swaps the global callbacks and can leave the
    # cache unregistered or fail in its _posttask with a KeyError. compute() never touches them.
    import threading

    from dask.cache import Cache
    from dask.callbacks import Callback

    from napari_teramind.store.compute import compute

    store, _, genes, _ = _make(tmp_path / "b.zarr")
    arr = store.genes(0)
    cache = Cache(1e7)
    cache.register()
    errors: list[BaseException] = []

    def run(fn):
        try:
            for _ in range(150):
                np.testing.assert_array_equal(fn(arr[:, 0]), genes[:, 0])
        except BaseException as e:  # any failure in a thread fails the test
            errors.append(e)

    try:
        threads = [threading.Thread(target=run, args=(np.asarray,))]  # as napari slices
        threads += [threading.Thread(target=run, args=(compute,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert cache._callback in Callback.active  # still registered for napari
    finally:
        Callback.active.discard(cache._callback)
    np.testing.assert_array_equal(compute(np.arange(3)), np.arange(3))


# ---------------------------------------------------------------------- missing and damaged chunks
def _validate_cli(path, *extra):
    from napari_teramind.cli import main

    return main(["validate", str(path), *extra])


def test_missing_middle_chunk_is_an_error_on_every_read_path(tmp_path, capsys):
    """A chunk lost from a complete store raises wherever it is read (#13 item 2)."""
    from napari_teramind.generate.engine import GeneSource
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.layers import brain_layers
    from napari_teramind.train.patches import read_gene_window, read_image_pair

    path = tmp_path / "b.zarr"
    _, img, genes, _ = _make(path, regions=False, n_slices=3)
    # middle chunks: neither the first nor the last of their arrays, so open() cannot see them
    (path / "images" / "s0" / "c" / "0" / "1" / "1" / "1").unlink()
    (path / "genes" / "s0" / "c" / "0" / "1" / "0" / "0").unlink()
    store = BrainStore.open(path)
    assert _validate_cli(path) == 1  # listed without reading: not "ok"
    out = capsys.readouterr().out
    assert "images/s0: 1 of 72 chunks missing (first: chunk 0/1/1/1" in out
    assert "genes/s0: 1 of 3 chunks missing" in out

    def raises_naming(array, chunk):
        return pytest.raises(MissingChunkError, match=rf"chunk {chunk} of array {array} is missing")

    # raw reads, generation's gene source, training patches, lazy and napari layer data
    with raises_naming("genes/s0", "0/1/0/0"):
        store.array("genes")[:, 1, :4, :4]
    plan = GenerationPlan(canvas=store.shape, region=(0, 64, 0, 64), slices=[0, 1],
                          block_px=64, seed=0, steps=1, gene_block_px=16)  # fmt: skip
    with raises_naming("genes/s0", "0/1/0/0"):
        GeneSource(store, list(store.panel.names)).window(plan, 0, 0, 64, 0, 64)
    with raises_naming("genes/s0", "0/1/0/0"):
        read_gene_window(store, 0, 0, 0, 4, np.arange(12))
    with raises_naming("images/s0", "0/1/1/1"):
        read_image_pair(store, 0, 128, 128, 64)
    with raises_naming("images/s0", "0/1/1/1"):
        store.images(0)[:, 1, 130:140, 130:140].compute()
    (dapi, *_), *_ = brain_layers(store)
    with raises_naming("images/s0", "0/1/1/1"):
        np.asarray(dapi[0][1, 128:256, 128:256])
    # what is there still reads; an incomplete store being written shows the gap as empty
    np.testing.assert_array_equal(store.array("images")[:, 0], img[:, 0])
    np.testing.assert_array_equal(store.array("genes")[:, 2], genes[:, 2])
    live = BrainStore.open(path, mode="r+")
    live.update_metadata({"complete": False})
    growing = BrainStore.open(path, allow_incomplete=True)
    assert not growing.array("images")[0, 1, 128:256, 128:256].any()


def test_truncated_chunk_is_named_and_found_by_deep_validate(tmp_path, capsys):
    """A truncated chunk names its file; only ``validate --deep`` decodes (#13 items 2, 3)."""
    path = tmp_path / "b.zarr"
    _make(path, regions=False, n_slices=3)
    chunk = path / "images" / "s0" / "c" / "1" / "1" / "1" / "2"
    chunk.write_bytes(chunk.read_bytes()[:20])
    store = BrainStore.open(path)
    with pytest.raises(DamagedStoreError) as info:
        store.images(0)[1, 1, 100:300, 200:300].compute()
    msg = str(info.value)
    assert f"chunk 1/1/1/2 of array images/s0 cannot be decoded ({chunk}" in msg
    assert "Zstd" in msg and "validate --deep" in msg and "re-run the command" in msg
    assert info.value.file == chunk and info.value.array == "images/s0"
    assert store.validate() == []  # the file exists: only decoding finds the damage
    assert _validate_cli(path, "--deep") == 1
    out = capsys.readouterr().out
    assert "images/s0: 1 damaged chunks (first:" in out and str(chunk) in out


def test_garbage_array_metadata_names_the_file(tmp_path, capsys):
    """A garbage ``zarr.json`` of an array or group names the store, array and file (#13 item 3)."""
    from napari_teramind._reader import read_brain_stores

    for node in ("images/s1", "genes"):
        path = tmp_path / f"{node.replace('/', '-')}.zarr"
        _make(path, regions=False)
        meta = path / node / "zarr.json"
        meta.write_bytes(bytes(range(128, 256)) * 2)
        for opener in (BrainStore.open, read_brain_stores):
            with pytest.raises(DamagedStoreError) as info:
                opener(path)
            msg = str(info.value)
            assert msg.startswith(f"{path}: the metadata of array or group {node} ({meta})")
            assert "UnicodeDecodeError" in msg and "validate --deep" in msg
        assert _validate_cli(path) == 1
        assert f"problem: {path}: the metadata of array or group {node}" in capsys.readouterr().out


def test_atomic_writes_follow_the_umask(tmp_path):
    """#13 item 8: an atomically written file gets mode 0666 less the umask, as ``open()``
    gives, also when it replaces a file (``mkstemp`` made every such output 0600)."""
    import os

    from napari_teramind.atomic import read_json, write_bytes_atomic, write_json_atomic

    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            write_bytes_atomic(tmp_path / "a.bin", b"x")
            write_json_atomic(tmp_path / "b.json", {"k": umask})
        finally:
            os.umask(old)
        for name in ("a.bin", "b.json"):
            assert (tmp_path / name).stat().st_mode & 0o777 == mode, (name, oct(umask))
    assert read_json(tmp_path / "b.json") == {"k": 0o077}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]  # no temporaries
