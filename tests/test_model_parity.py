"""Parity of the re-implementation with outputs of the published reference code.

Fixtures: ``tests/data/reference-parity``, a copy of the published code's tensors (override the
directory with ``TERAMIND_SHARED``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _model_helpers import FIXTURES, single_thread  # noqa: F401
from napari_teramind.model import (
    ModelConfig,
    TeraMindUNet,
    from_fixture_layout,
    from_reference_layout,
    keep_gene_slices,
    to_reference_layout,
)
from napari_teramind.model.checkpoint import import_published_checkpoint
from napari_teramind.model.time_embedding import sinusoidal_embedding


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    """Max-abs comparison (``torch.testing`` pulls in slow distributed imports)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = float((actual.detach().double() - expected.detach().double()).abs().max())
    assert diff <= atol, f"max |diff| = {diff:.3g} > {atol:.3g}"


ATOL_OUTPUT = 1e-4
ATOL_ATTENTION = 1e-5


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / "io.pt", weights_only=True)


@pytest.fixture(scope="module")
def model() -> TeraMindUNet:
    names = [f"gene{i}" for i in range(12)]
    net, _ = import_published_checkpoint(FIXTURES / "checkpoint.ckpt", gene_names=names)
    return net


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


def test_imported_config_is_the_fixture_config(model: TeraMindUNet) -> None:
    config = json.loads((FIXTURES / "config.json").read_text())
    assert model.config == ModelConfig.preset("fixture", 12)
    assert model.config == ModelConfig.from_reference_hparams(
        config["hyper_parameters_in_checkpoint"]
    )
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == config["derived"]["n_params"]
    assert len(model.state_dict()) == config["derived"]["n_state_dict_tensors"]
    assert not model.training


def test_training_style_call_matches_reference(model, io) -> None:
    x = io["train_x_int8"].float() * io["x_scale"]
    genes = from_fixture_layout(io["train_genes"])
    with torch.no_grad():
        out = model(x, genes, io["train_t"], grid=(2, 2, 2))
        temb = model.embed_timesteps(io["train_t"])
        block0, _ = model.rna_blocks.gene_block(genes)
    assert _max_diff(out["collage"], io["train_pred"]) <= ATOL_OUTPUT
    assert _max_diff(out["tile"], io["train_pred2"]) <= ATOL_OUTPUT
    assert _max_diff(temb, io["train_temb"]) <= ATOL_OUTPUT
    assert _max_diff(block0, io["train_gene_block0"]) <= ATOL_OUTPUT


def test_generation_style_call_matches_reference(model, io) -> None:
    x = io["gen_x_int8"].float() * io["x_scale"]
    genes = from_fixture_layout(io["gen_genes"])
    with torch.no_grad():
        out = model(x, genes, io["gen_t"], grid=(1, 5, 5), decoders=("collage",))
        temb = model.embed_timesteps(io["gen_t"])
    assert set(out) == {"collage"}
    assert _max_diff(out["collage"], io["gen_pred"]) <= ATOL_OUTPUT
    assert _max_diff(temb, io["gen_temb"]) <= ATOL_OUTPUT


def test_collage_of_a_subgrid_matches_the_full_grid(model, io) -> None:
    x = io["gen_x_int8"].float() * io["x_scale"]
    genes = from_fixture_layout(io["gen_genes"])
    tiles = [0, 1, 5, 6]
    with torch.no_grad():
        small = model(x[tiles], genes[tiles], io["gen_t"], grid=(1, 2, 2))
        features = model.encode(x, genes, io["gen_t"])
        tile_all = model.decode_tiles(features, io["gen_t"])
    assert _max_diff(small["collage"][0], io["gen_pred"][0]) <= ATOL_OUTPUT
    # the tile decoder is local to each patch
    assert _max_diff(small["tile"], tile_all[tiles]) <= ATOL_OUTPUT


def test_raw_sinusoidal_embedding_at_published_width(io) -> None:
    """Equal to the published table to float32 rounding of the arguments.

    ``t * f_i`` reaches 999 rad, where float32 values lie 6.1e-5 apart: one ulp of
    ``f_i = exp(...)`` from another vectorised ``exp`` moves ``sin``/``cos`` by up to that much.
    Measured: under 1e-5 on AVX2, 2.9e-5 on AVX-512 (torch picks the kernels by instruction
    set), so the bound is 1e-4, with the small timesteps held to 1e-6.
    """
    t = io["temb_table_t"]
    emb = sinusoidal_embedding(t, 64)
    assert _max_diff(emb, io["temb_table_dim64"]) <= 1e-4
    small = t.reshape(-1) < 16
    assert small.any() and _max_diff(emb[small], io["temb_table_dim64"][small]) <= 1e-6


@pytest.mark.parametrize(
    ("index", "slices"), [(0, (0, 1)), (1, (1, 2)), (2, (2, 3)), (3, (0, 1, 2, 3))]
)
def test_gene_gene_attention_matches_reference(model, io, index, slices) -> None:
    genes = keep_gene_slices(from_fixture_layout(io["train_genes"]), slices)
    with torch.no_grad():
        full = model.gene_attention(genes)
        rows = model.gene_attention(genes, rows=[5, 0, 11, 5])
    assert _max_diff(full, io["train_attn"][index]) <= ATOL_ATTENTION
    assert_close(rows, full[:, [5, 0, 11, 5]], atol=1e-6)
    assert_close(full.sum(-1), torch.ones(full.shape[:2]), atol=1e-6)


def test_gene_block_attention_path_matches_kernel_path(model, io) -> None:
    genes = from_fixture_layout(io["train_genes"])
    block = model.rna_blocks.gene_block
    with torch.no_grad():
        kernel, none = block(genes)
        explicit, weights = block(genes, return_attention=True)
    assert none is None
    assert weights.shape == (8, 12, 12)
    assert _max_diff(kernel, explicit) <= 1e-5


def test_reference_gene_layout_round_trip(io) -> None:
    genes = from_fixture_layout(io["train_genes"])
    reference = to_reference_layout(genes)
    assert reference.shape == (8, 4, 4, 2000)
    # slots G..499 are ignored by the reference model
    reference[..., 100:500] = 7.0
    assert torch.equal(from_reference_layout(reference, n_genes=12), genes)
    dense = torch.zeros(8, 4, 4, 4, 500)
    dense[..., :12] = io["train_genes"].float()
    assert torch.equal(from_reference_layout(dense.reshape(8, 4, 4, 2000), 12), genes)


def _published_shapes() -> dict:
    return json.loads((FIXTURES / "published_state_dict_shapes.json").read_text())


def test_reference_preset_has_the_published_names_and_shapes() -> None:
    published = _published_shapes()
    with torch.device("meta"):
        model = TeraMindUNet(ModelConfig.preset("reference", 229))
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    theirs = [(k.removeprefix("model."), s) for k, s in published["G229"]["state_dict"]]
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == published["G229"]["n_params"]
    assert "input_blocks.4.0.skip_connection.weight" not in dict(ours)
    assert "input_blocks.7.0.skip_connection.weight" not in dict(ours)


def test_reference_preset_at_500_genes() -> None:
    published = _published_shapes()
    with torch.device("meta"):
        model = TeraMindUNet(ModelConfig.preset("reference", 500))
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == published["G500_n_params"]
    for key, (_, shape500) in published["G_dependent_keys_G229_vs_G500"].items():
        assert list(state[key.removeprefix("model.")].shape) == shape500


def test_config_is_inferred_from_published_shapes_and_hparams() -> None:
    from napari_teramind.model.published import (
        infer_config_from_state_dict,
        strip_published_prefix,
    )

    published = _published_shapes()
    state = {
        name: torch.empty(shape, device="meta") for name, shape in published["G229"]["state_dict"]
    }
    state["ema_model.ignored"] = torch.empty(1, device="meta")
    hparams = published["hyper_parameters_638850_run"]
    reference = ModelConfig.preset("reference", 229)
    assert infer_config_from_state_dict(strip_published_prefix(state), hparams) == reference
    assert infer_config_from_state_dict(strip_published_prefix(state)) == reference
    assert ModelConfig.from_reference_hparams(hparams) == reference


def test_parity_fixture_ships_with_the_repository():
    """A fresh clone runs the parity tests: the fixture is in the repository's test data."""
    repo_copy = Path(__file__).resolve().parent / "data" / "reference-parity"
    for name in ("checkpoint.ckpt", "io.pt", "config.json", "published_state_dict_shapes.json"):
        assert (repo_copy / name).is_file(), name
    assert FIXTURES.is_dir()
