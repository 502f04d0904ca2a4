"""Phantom brain: determinism, exact tiling, planted programs, anatomy, store round trip, CLI."""

import numpy as np
import pytest

from napari_teramind.phantom import (
    CURATED_GENES,
    REGION_IDS,
    PhantomSpec,
    ground_truth_nuclei,
    planted_mask,
    region_gene_means,
    region_grid,
    render_chunk,
    spec_of,
    write_phantom,
)
from napari_teramind.phantom.hashing import poisson, uniform
from napari_teramind.phantom.programs import PANEL_638850_INDEX, PATHWAYS

# a small section: the same anatomy as the default, scaled to 512 x 768 px
SMALL = PhantomSpec(seed=3, n_slices=4, height=512, width=768)


@pytest.fixture(scope="module")
def small_slice():
    return render_chunk(SMALL, 1, 0, 0, 512, 768)


def test_spec_defaults_and_roundtrip():
    spec = PhantomSpec()
    assert spec.shape == (8, 2048, 3072)
    assert len(spec.gene_names) == len(CURATED_GENES) >= 32
    for g in ("Slc17a6", "Slc17a7", "Nr4a2", "Th", "Cldn5", "Aqp4"):
        assert g in spec.gene_names
    assert PhantomSpec.from_dict(spec.to_dict()) == spec
    assert len(PhantomSpec(n_genes=100).gene_names) == 100
    with pytest.raises(ValueError, match="multiples of 16"):
        PhantomSpec(height=1000)
    with pytest.raises(ValueError, match="at least 6"):
        PhantomSpec(n_genes=3)


def test_genes_come_from_the_published_panel_in_order():
    from napari_teramind.store import GenePanel

    panel = GenePanel.published("638850")
    for name, idx in PANEL_638850_INDEX.items():
        assert panel.index(name) == idx
    names = PhantomSpec(n_genes=64).gene_names
    assert list(panel.indices(names)) == sorted(panel.indices(names))


def test_deterministic_from_seed():
    a = render_chunk(SMALL, 2, 128, 256, 128, 160)
    b = render_chunk(SMALL, 2, 128, 256, 128, 160)
    for x, y in zip(
        (a.images, a.genes, a.regions, a.nuclei),
        (b.images, b.genes, b.regions, b.nuclei),
        strict=True,
    ):
        assert np.array_equal(x, y)
    c = render_chunk(PhantomSpec(seed=4, n_slices=4, height=512, width=768), 2, 128, 256, 128, 160)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.genes, c.genes)


def test_chunking_independence(small_slice):
    """Rendering a window in one piece equals rendering it in four (or any) pieces."""
    y0, x0, h, w = 96, 224, 256, 320
    whole = render_chunk(SMALL, 1, y0, x0, h, w)
    assert np.array_equal(whole.images, small_slice.images[:, y0 : y0 + h, x0 : x0 + w])
    assert np.array_equal(whole.genes, small_slice.genes[:, y0 // 16 : (y0 + h) // 16,
                                                         x0 // 16 : (x0 + w) // 16])  # fmt: skip
    img = np.zeros_like(whole.images)
    genes = np.zeros_like(whole.genes)
    lab = np.zeros_like(whole.regions)
    ids = []
    for yy, hh in ((0, 112), (112, h - 112)):
        for xx, ww in ((0, 176), (176, w - 176)):
            c = render_chunk(SMALL, 1, y0 + yy, x0 + xx, hh, ww)
            img[:, yy : yy + hh, xx : xx + ww] = c.images
            genes[:, yy // 16 : (yy + hh) // 16, xx // 16 : (xx + ww) // 16] = c.genes
            lab[yy : yy + hh, xx : xx + ww] = c.regions
            ids.append(c.nuclei["id"])
    assert np.array_equal(img, whole.images)
    assert np.array_equal(genes, whole.genes)
    assert np.array_equal(lab, whole.regions)
    assert np.array_equal(np.sort(np.concatenate(ids)), np.sort(whole.nuclei["id"]))


def test_regions_shaped_like_a_section(small_slice):
    lab = small_slice.regions
    present = set(np.unique(lab).tolist())
    assert present == set(REGION_IDS.values()), set(REGION_IDS.values()) - present
    # background surrounds the tissue; cortex L1 is outermost
    assert lab[0].max() == 0 and lab[:, 0].max() == 0 and lab[-1].max() == 0
    col = lab[:, 768 // 2 - 140]  # a column through the dorsal cortex
    first = col[col > 0][0]
    assert first == REGION_IDS["cortex L1"]
    # bilateral symmetry (up to the seeded wobble)
    assert (lab == lab[:, ::-1]).mean() > 0.75


def test_regions_smooth_across_slices():
    spec = PhantomSpec(seed=1, n_slices=50, height=512, width=768)
    labs = [region_grid(spec, z, 0, 0, 512, 768) for z in (0, 1, 25, 26, 48, 49)]
    for a, b in zip(labs[::2], labs[1::2], strict=True):
        assert (a == b).mean() > 0.97
    assert (labs[0] != labs[-1]).mean() > 0.05  # but the anatomy does change along z
    # every region is present in every slice
    assert set(np.unique(labs[-1])) == set(np.unique(labs[0]))


def test_planted_programs_hold(small_slice):
    spec, c = SMALL, small_slice
    names = spec.gene_names
    lab_b = c.regions[8::16, 8::16]

    def mean_in(gene, regions):
        m = np.isin(lab_b, [REGION_IDS[r] for r in regions])
        return c.genes[names.index(gene)][m].mean()

    tissue = [r for r in REGION_IDS if r not in ("background", "ventricle")]
    dopa = ["SN/VTA", "olfactory bulb"]
    rest = [r for r in tissue if r not in dopa]
    for g in ("Th", "Nr4a2"):
        assert mean_in(g, dopa) > 8 * mean_in(g, rest), g
        assert mean_in(g, ["SN/VTA"]) > 3 and mean_in(g, ["olfactory bulb"]) > 3
    ctx = ["cortex L2/3", "cortex L4", "cortex L5", "cortex L6", "hippocampus CA",
           "dentate gyrus"]  # fmt: skip
    assert mean_in("Slc17a7", ctx) > 5 * mean_in("Slc17a7", ["striatum", "SN/VTA", "white matter"])
    assert mean_in("Slc17a6", ["thalamus"]) > 5 * mean_in("Slc17a6", ["striatum", "cortex L2/3"])
    # GLUT overlap: both transporters where planted
    for g in ("Slc17a6", "Slc17a7"):
        assert mean_in(g, ["cortex L4"]) > 3 and mean_in(g, ["thalamus"]) > 3
    # BLOD: Cldn5 follows the vessels
    vess = planted_mask(spec, "BLOD", z=1, window=(0, 0, 512, 768))
    cl = c.genes[names.index("Cldn5")]
    assert cl[vess].mean() > 5 * cl[~vess & (lab_b > 0)].mean()
    # Mog in white matter, Gpr88 in striatum
    assert mean_in("Mog", ["white matter"]) > 3 * mean_in("Mog", ["cortex L2/3"])
    assert mean_in("Gpr88", ["striatum"]) > 10 * mean_in("Gpr88", ["thalamus"])


def test_program_table_matches_pathways():
    genes = PhantomSpec().gene_names
    means = region_gene_means(genes)
    for pw in PATHWAYS.values():
        if pw.vessels:
            continue
        a, b = (genes.index(g) for g in pw.genes)
        both = np.minimum(means[:, a], means[:, b])
        planted = {REGION_IDS[r] for r in pw.regions}
        assert {int(i) for i in np.flatnonzero(both > 2.0)} == planted, pw.name


def test_planted_masks(small_slice):
    lab = small_slice.regions
    m = planted_mask(SMALL, "DOPA", z=1, window=(0, 0, 512, 768))
    assert m.shape == (32, 48)
    truth = np.isin(lab[8::16, 8::16], [REGION_IDS["SN/VTA"], REGION_IDS["olfactory bulb"]])
    assert (m == truth).mean() > 0.98
    px = planted_mask(SMALL, "GLUT", z=1, blocks=False)
    assert px.shape == (512, 768)
    assert np.array_equal(px, np.isin(lab, [REGION_IDS["cortex L4"], REGION_IDS["thalamus"]]))
    assert planted_mask(SMALL, "thalamus").shape == (4, 32, 48)
    with pytest.raises(KeyError, match="unknown program"):
        planted_mask(SMALL, "NOPE")


def test_images_have_nuclei_where_ground_truth_says(small_slice):
    c = small_slice
    dapi, polyt = c.images[0].astype(float), c.images[1].astype(float)
    nuc = ground_truth_nuclei(SMALL, 1, 0, 0, 512, 768)
    assert np.array_equal(nuc["id"], c.nuclei["id"])
    assert 1000 < nuc.size < 20000
    assert 2.5 <= np.median(nuc["radius"]) <= 6 and nuc["radius"].max() < 10
    iy, ix = nuc["y"].astype(int), nuc["x"].astype(int)
    at_centres = dapi[iy, ix]
    tissue = (c.regions > 0) & (c.regions != REGION_IDS["ventricle"])
    assert np.median(at_centres) > 4 * np.median(dapi[tissue])
    assert np.median(at_centres) > 100
    # outside the tissue: dark, no nuclei
    assert dapi[c.regions == 0].mean() < 8 and polyt[c.regions == 0].mean() < 8
    # PolyT is brighter around cells with many transcripts (here: DA vs oligodendrocytes)
    big = nuc["transcripts"] > np.quantile(nuc["transcripts"], 0.8)
    small = nuc["transcripts"] < np.quantile(nuc["transcripts"], 0.2)
    ring = polyt[np.clip(iy + 5, 0, 511), ix]
    assert ring[big].mean() > ring[small].mean() + 10
    # nuclei carry the transcripts: counts per block follow the nuclei in it
    tot = c.genes.sum(axis=0).astype(float)
    nb = np.zeros_like(tot)
    np.add.at(nb, (iy // 16, ix // 16), 1)
    assert np.corrcoef(tot.ravel(), nb.ravel())[0, 1] > 0.5


def test_poisson_sampler():
    lam = np.full(20000, 3.0)
    x = poisson(lam, uniform(0, np.arange(20000)))
    assert abs(x.mean() - 3) < 0.05 and abs(x.var() - 3) < 0.15
    big = poisson(np.full(20000, 200.0), uniform(1, np.arange(20000)))
    assert abs(big.mean() - 200) < 0.5


def test_write_roundtrip(tmp_path):
    from napari_teramind.store import BrainStore

    spec = PhantomSpec(seed=5, n_slices=2, height=256, width=384, n_genes=32)
    calls = []
    write_phantom(
        tmp_path / "p.zarr",
        spec,
        progress=lambda d, t: calls.append((d, t)),
        workers=2,
        executor="thread",
        image_chunk=128,
    )
    assert calls and calls[-1][0] == calls[-1][1]
    store = BrainStore.open(tmp_path / "p.zarr")
    assert store.kind == "phantom" and store.complete
    assert store.shape == (2, 256, 384)
    assert store.pixel_size_um == spec.pixel_size_um and store.gene_block_px == 16
    assert store.panel.names == spec.gene_names
    assert spec_of(store) == spec
    meta = store.metadata["phantom"]
    assert meta["programs"]["pathways"]["DOPA"]["regions"] == ["SN/VTA", "olfactory bulb"]
    assert store.region_names[REGION_IDS["thalamus"]] == "thalamus"
    ref = render_chunk(spec, 1, 0, 0, 256, 384)
    assert np.array_equal(store.images(0)[:, 1].compute(), ref.images)
    assert np.array_equal(store.genes(0)[:, 1].compute(), ref.genes)
    assert np.array_equal(store.regions(0)[1].compute(), ref.regions)
    assert planted_mask(tmp_path / "p.zarr", "DOPA").shape == (2, 16, 24)
    with pytest.raises(FileExistsError):
        write_phantom(tmp_path / "p.zarr", spec)


def test_cli_writes_a_store(tmp_path, capsys):
    from napari_teramind.cli import main
    from napari_teramind.store import BrainStore

    out = tmp_path / "cli.zarr"
    rc = main(["phantom", str(out), "--slices", "1", "--height", "256", "--width", "256",
               "--genes", "32", "--seed", "7", "--quiet", "--workers", "1"])  # fmt: skip
    assert rc == 0
    store = BrainStore.open(out)
    assert store.shape == (1, 256, 256) and len(store.panel) == 32
    assert spec_of(store).seed == 7
    assert "phantom" in capsys.readouterr().out
    assert main(["phantom", str(out), "--slices", "1", "--height", "256", "--width", "256"]) == 2
    with pytest.raises(SystemExit):
        main(["phantom", "--help"])
    assert "--pixel-size" in capsys.readouterr().out


def test_hash_keys_broadcast_equals_full_keys():
    from napari_teramind.phantom.hashing import hash_keys

    rows, cols = np.arange(-3, 5)[:, None], np.arange(6)[None, :]
    full_r, full_c = np.broadcast_arrays(rows, cols)
    a = hash_keys(7, 2, rows, cols, 11)
    b = hash_keys(np.full((8, 6), 7), 2, full_r.copy(), full_c.copy(), np.full((8, 6), 11))
    assert a.shape == (8, 6) and a.dtype == np.uint64
    np.testing.assert_array_equal(a, b)
    assert hash_keys(1, 2).shape == ()
    assert hash_keys(1, 2) == hash_keys(np.array([1]), 2)[0]
    assert len(np.unique(a)) == a.size


def test_vessel_grid_is_the_exact_distance_clipped_at_5px():
    from napari_teramind.phantom.anatomy import vessel_field, vessel_grid

    spec = PhantomSpec(seed=5, n_slices=2, height=4096, width=4096)
    y0, x0, h, w = 1024, 2048, 96, 128
    grid = vessel_grid(spec, 1, y0, x0, h, w)
    ys = np.arange(y0, y0 + h, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(x0, x0 + w, dtype=np.float64)[None, :] + 0.5
    d, _, _ = vessel_field(spec, 1, ys, xs)
    assert (grid < 5.0).any() and (grid == 5.0).any()  # the window crosses a vessel
    np.testing.assert_array_equal(grid, np.minimum(d, 5.0).astype(np.float32))
