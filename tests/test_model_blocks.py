"""Behaviour of the model's building blocks, configuration and decoders."""

from __future__ import annotations

import json

import pytest
import torch

from _model_helpers import MICRO as _MICRO3
from _model_helpers import single_thread  # noqa: F401
from napari_teramind.model import (
    EncoderFeatures,
    ModelConfig,
    TeraMindUNet,
    collage_patches,
    expand_timesteps,
    keep_gene_slices,
)
from napari_teramind.model.attention import get_attention_backend, set_attention_backend
from napari_teramind.model.cross_attention import (
    CrossAttentionBlock,
    from_window_tokens,
    to_window_tokens,
)
from napari_teramind.model.norms import ChannelRMSNorm, TokenRMSNorm
from napari_teramind.model.resblock import ResBlock

G = 6
#: A minimal network with the published geometry, to keep CPU tests fast.
MICRO = _MICRO3.replace(n_genes=G, gene_map_channels=(8, 4, 4))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    """Max-abs comparison (``torch.testing`` pulls in slow distributed imports)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = float((actual.detach().double() - expected.detach().double()).abs().max())
    assert diff <= atol, f"max |diff| = {diff:.3g} > {atol:.3g}"


@pytest.fixture(scope="module")
def tiny() -> TeraMindUNet:
    torch.manual_seed(0)
    model = TeraMindUNet(MICRO)
    # the second ResBlock conv starts at zero; randomise it so every path matters
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ResBlock):
                module.out_layers[3].weight.normal_(0, 0.05)
    return model.eval()


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, 64, 64, generator=gen) * 2 - 1
    genes = torch.poisson(torch.full((n, G, 4, 4, 4), 2.0), generator=gen)
    return x, genes


# --------------------------------------------------------------------------- config
def test_config_round_trips_through_json() -> None:
    for name in ("reference", "small", "tiny", "fixture"):
        config = ModelConfig.preset(name, 17)
        again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config
        assert hash(again) == hash(config)


def test_config_rejects_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="coarsest"):
        ModelConfig(n_genes=4, channel_mult=(1, 2, 4))
    with pytest.raises(ValueError, match="gene_map_channels"):
        ModelConfig(n_genes=4, gene_map_channels=(8, 8))
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"n_genes": 3, "colour": "red"})
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("huge", 3)


def test_reference_preset_derived_sizes() -> None:
    config = ModelConfig.preset("reference", 229)
    assert config.widths == (64, 128, 256, 512)
    assert config.resolutions == (64, 32, 16, 8)
    assert config.gene_channels_per_level == (32, 64, 128, 229)
    assert (config.gene_grid, config.gene_token_dim, config.gene_z_kernel) == (4, 64, 3)


def test_tiny_and_small_presets_are_small() -> None:
    tiny_params = sum(p.numel() for p in TeraMindUNet(ModelConfig.preset("tiny", 16)).parameters())
    small = TeraMindUNet(ModelConfig.preset("small", 16))
    small_params = sum(p.numel() for p in small.parameters())
    assert tiny_params * 4 < 2_000_000
    assert tiny_params < small_params
    assert small_params * 4 < 8_000_000


# --------------------------------------------------------------------------- norms
def test_channel_rmsnorm_is_per_voxel() -> None:
    norm = ChannelRMSNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1))
    x = torch.randn(2, 3, 2, 5, 5)
    expected = x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + 1e-6)
    expected = expected * torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1, 1)
    assert_close(norm(x), expected)
    # a voxel's output depends on that voxel only
    y = x.clone()
    y[..., 0, 0] = 100.0
    assert_close(norm(y)[..., 1:, 1:], norm(x)[..., 1:, 1:])
    assert norm.weight.shape == (1, 3, 1, 1)


def test_token_rmsnorm_keeps_dtype() -> None:
    norm = TokenRMSNorm(8)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    assert norm(x).shape == (4, 8)
    assert_close(norm(x.float()).pow(2).mean(-1), torch.ones(4), atol=1e-4)


# --------------------------------------------------------------------------- blocks
def test_resblock_skip_only_when_widths_differ() -> None:
    same = ResBlock(8, 16, 4, gene_channels=8)
    different = ResBlock(8, 16, 4, gene_channels=4)
    assert isinstance(same.skip_connection, torch.nn.Identity)
    assert not any("skip_connection" in k for k in same.state_dict())
    assert "skip_connection.weight" in different.state_dict()


def test_fresh_resblock_is_its_skip_path_and_resamples_hw_only() -> None:
    emb = torch.randn(2, 4)
    x = torch.randn(2, 8, 2, 8, 8)
    block = ResBlock(8, 8, 4)
    assert_close(block(x, emb), x)
    down = ResBlock(8, 8, 4, resample="down")
    up = ResBlock(8, 8, 4, resample="up")
    assert down(x, emb).shape == (2, 8, 2, 4, 4)
    assert up(x, emb).shape == (2, 8, 2, 16, 16)
    with pytest.raises(ValueError, match="gene map"):
        ResBlock(8, 8, 4, gene_channels=2)(x, emb)


def test_window_tokens_round_trip_and_locality() -> None:
    x = torch.randn(2, 5, 2, 8, 8)
    tokens = to_window_tokens(x, 2)
    assert tokens.shape == (8, 2 * 4 * 4, 5)
    assert_close(from_window_tokens(tokens, x.shape, 2), x)
    block = CrossAttentionBlock(dim=5, gene_channels=3).eval()
    genes = torch.randn(2, 3, 2, 8, 8)
    out = block(x, genes)
    changed = x.clone()
    changed[:, :, :, 4:, 4:] += 1.0  # bottom-right quadrant only
    out2 = block(changed, genes)
    assert_close(out2[..., :4, :], out[..., :4, :])
    assert_close(out2[..., :, :4], out[..., :, :4])
    assert not torch.allclose(out2[..., 4:, 4:], out[..., 4:, 4:])


def test_math_and_sdpa_attention_agree(tiny: TeraMindUNet) -> None:
    x, genes = _inputs(4)
    assert get_attention_backend() == "auto"
    with torch.no_grad():
        sdpa = tiny(x, genes, torch.tensor([300]), (1, 2, 2))
        set_attention_backend("math")
        try:
            math = tiny(x, genes, torch.tensor([300]), (1, 2, 2))
        finally:
            set_attention_backend("auto")
    for key in sdpa:
        assert_close(sdpa[key], math[key], atol=1e-5)


# --------------------------------------------------------------------------- grids
def test_collage_patches_recut_the_cropped_mosaic() -> None:
    b, p1, p2, r = 2, 3, 4, 4
    mosaic = torch.arange(b * 1 * p1 * r * p2 * r, dtype=torch.float32)
    mosaic = mosaic.reshape(b, 1, p1 * r, p2 * r)
    tiles = mosaic.reshape(b, 1, p1, r, p2, r).permute(0, 2, 4, 1, 3, 5).reshape(-1, 1, r, r)
    collage = collage_patches(tiles, (b, p1, p2))
    assert collage.shape == (b * (p1 - 1) * (p2 - 1), 1, r, r)
    for sample in range(b):
        for i in range(p1 - 1):
            for j in range(p2 - 1):
                n = (sample * (p1 - 1) + i) * (p2 - 1) + j
                top, left = r // 2 + r * i, r // 2 + r * j
                expected = mosaic[sample, :, top : top + r, left : left + r]
                assert torch.equal(collage[n], expected)


def test_expand_timesteps_sample_major() -> None:
    t = torch.tensor([7, 9])
    assert expand_timesteps(t, 2, 3, t.device).tolist() == [7, 7, 7, 9, 9, 9]
    assert expand_timesteps(5, 2, 2, t.device).tolist() == [5] * 4
    assert expand_timesteps(torch.arange(6), 2, 3, t.device).tolist() == list(range(6))
    with pytest.raises(ValueError, match="timesteps"):
        expand_timesteps(torch.arange(4), 2, 3, t.device)


# --------------------------------------------------------------------------- UNet API
def test_forward_returns_only_requested_decoders(tiny: TeraMindUNet) -> None:
    x, genes = _inputs(9)
    with torch.no_grad():
        both = tiny(x, genes, torch.tensor([10]), (1, 3, 3))
        collage_only = tiny(x, genes, 10, (1, 3, 3), decoders=("collage",))
    assert both["collage"].shape == (4, 4, 64, 64)
    assert both["tile"].shape == (9, 4, 64, 64)
    assert set(collage_only) == {"collage"}
    assert_close(collage_only["collage"], both["collage"])
    with pytest.raises(ValueError, match="decoders"):
        tiny(x, genes, 10, (1, 3, 3), decoders=("bogus",))
    with pytest.raises(ValueError, match="genes must be"):
        tiny(x, genes.permute(0, 2, 1, 3, 4), 10, (1, 3, 3))


def test_timestep_is_per_sample(tiny: TeraMindUNet) -> None:
    x, genes = _inputs(8)
    t = torch.tensor([900, 20])
    with torch.no_grad():
        joint = tiny(x, genes, t, (2, 2, 2))
        first = tiny(x[:4], genes[:4], t[:1], (1, 2, 2))
        second = tiny(x[4:], genes[4:], t[1:], (1, 2, 2))
    assert_close(joint["collage"], torch.cat([first["collage"], second["collage"]]))
    assert_close(joint["tile"], torch.cat([first["tile"], second["tile"]]))


def test_encoder_features_compose(tiny: TeraMindUNet) -> None:
    """Encoding patches in pieces and re-assembling them gives the same collage."""
    x, genes = _inputs(9, seed=3)
    with torch.no_grad():
        whole = tiny.encode(x, genes, 400)
        parts = EncoderFeatures.cat(
            [tiny.encode(x[:5], genes[:5], 400), tiny.encode(x[5:], genes[5:], 400)]
        )
        reordered = parts.select(torch.arange(9))
        expected = tiny.decode_collage(whole, (1, 3, 3), 400)
        got = tiny.decode_collage(reordered, (1, 3, 3), torch.tensor([400]))
    assert whole.num_patches == 9
    assert len(whole.gene_maps) == tiny.config.num_levels
    assert_close(got, expected, atol=1e-5)
    # a collage patch depends only on the 4 patches around its corner
    with torch.no_grad():
        corner = tiny(x[[0, 1, 3, 4]], genes[[0, 1, 3, 4]], 400, (1, 2, 2), ("collage",))
    assert_close(corner["collage"][0], expected[0], atol=1e-5)


def test_gene_attention_rows_and_slice_masking(tiny: TeraMindUNet) -> None:
    _, genes = _inputs(5)
    with torch.no_grad():
        full = tiny.gene_attention(genes)
        rows = tiny.gene_attention(genes, rows=torch.tensor([4, 1]))
        empty = tiny.gene_attention(torch.zeros_like(genes))
        up = tiny.gene_attention(keep_gene_slices(genes, (0, 1)))
    assert full.shape == (5, G, G) and rows.shape == (5, 2, G)
    assert_close(rows, full[:, [4, 1]], atol=1e-6)
    assert_close(empty, torch.full_like(empty, 1 / G))
    assert not torch.allclose(up, full)


def test_eval_disables_dropout_unless_asked() -> None:
    config = MICRO.replace(dropout=0.5)
    model = TeraMindUNet(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ResBlock):
                module.out_layers[3].weight.normal_(0, 0.1)
    x, genes = _inputs(4)
    model.eval()
    with torch.no_grad():
        a = model(x, genes, 50, (1, 2, 2), ("collage",))["collage"]
        b = model(x, genes, 50, (1, 2, 2), ("collage",))["collage"]
        assert torch.equal(a, b)
        model.dropout_at_inference = True
        model.eval()
        c = model(x, genes, 50, (1, 2, 2), ("collage",))["collage"]
    assert not torch.equal(a, c)


def test_backward_reaches_every_parameter(tiny: TeraMindUNet) -> None:
    model = TeraMindUNet(tiny.config)
    model.load_state_dict(tiny.state_dict())
    x, genes = _inputs(4)
    out = model(x, genes, torch.tensor([500]), (1, 2, 2))
    (out["collage"].square().mean() + out["tile"].square().mean()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


def _encoder_tensors(features: EncoderFeatures) -> list[torch.Tensor]:
    return [features.middle, *features.skips, *features.gene_maps]


def test_a_patch_encodes_and_decodes_the_same_at_any_batch_position():
    # The engine packs patches into fixed micro-batches, so a patch's batch position changes
    # with the block size; with 2 CPU threads a batched nn.Linear rounded the same row
    # differently at positions 0 and 1, which broke tiled == global bitwise.
    from _model_helpers import micro_model
    from napari_teramind.generate.numerics import Numerics

    model = micro_model(5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 64, 64, generator=gen)
    genes = torch.rand(3, 5, 4, 4, 4, generator=gen)
    with Numerics(threads=2).applied(), torch.inference_mode():
        first = model.encode(x[[0, 1]], genes[[0, 1]], 500)
        second = model.encode(x[[2, 0]], genes[[2, 0]], 500)
        for a, b in zip(
            _encoder_tensors(first.select([0])), _encoder_tensors(second.select([1])), strict=True
        ):
            assert torch.equal(a, b)
        patch = first.select([0])
        at_0 = model.decode_tiles(EncoderFeatures.cat([patch, second.select([0])]), 500)[0]
        at_1 = model.decode_tiles(EncoderFeatures.cat([second.select([0]), patch]), 500)[1]
        assert torch.equal(at_0, at_1)


def test_sample_linear_is_a_linear_layer_on_every_path():
    from napari_teramind.model.linear import SampleLinear

    torch.manual_seed(0)
    layer = SampleLinear(8, 5)
    plain = torch.nn.Linear(8, 5)
    plain.load_state_dict(layer.state_dict())  # same parameters, same checkpoint keys
    x = torch.randn(3, 7, 8)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x))  # per-sample path
    x.requires_grad_(True)
    out = layer(x)  # batched path, with autograd
    torch.testing.assert_close(out, plain(x))
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_batch_invariant_off_restores_the_batched_call(monkeypatch):
    from napari_teramind.model import linear

    layer = linear.SampleLinear(4, 3)
    calls = []
    real = linear.F.linear
    monkeypatch.setattr(linear.F, "linear", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        layer(x)
        assert calls == [1] * 5  # per-sample by default
        calls.clear()
        with linear.batch_invariant(False):
            layer(x)
        assert calls == [5]
        calls.clear()
        layer(x)  # restored on exit
        assert calls == [1] * 5
