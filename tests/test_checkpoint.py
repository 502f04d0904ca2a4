"""Checkpoints: our safetensors + JSON format and the published Lightning importer."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import pytest
import torch

from _model_helpers import FIXTURES, MICRO, single_thread  # noqa: F401
from napari_teramind.diffusion import DDIMSchedule, ddim_step
from napari_teramind.model import ModelConfig, TeraMindUNet, from_fixture_layout
from napari_teramind.model.checkpoint import (
    CheckpointError,
    convert_checkpoint,
    import_published_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from napari_teramind.model.safe_load import read_torch_checkpoint

CKPT = FIXTURES / "checkpoint.ckpt"
NAMES = tuple(f"gene{i}" for i in range(12))


def _sample_inputs(n: int, genes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(n, 4, 64, 64, generator=gen)
    counts = torch.poisson(torch.full((n, genes, 4, 4, 4), 1.5), generator=gen)
    return x, counts


def _outputs(model: TeraMindUNet, genes: int) -> dict[str, torch.Tensor]:
    x, counts = _sample_inputs(4, genes)
    with torch.no_grad():
        return model(x, counts, torch.tensor([321]), (1, 2, 2))


# --------------------------------------------------------------------------- own format
def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TeraMindUNet(MICRO).eval()
    info = save_checkpoint(
        tmp_path / "ckpt",
        model,
        None,
        ["Slc17a6", "Slc17a7", "Th"],
        training_state={"global_step": 12, "loss": 0.5},
        provenance={"source": "unit-test", "seed": 0},
    )
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "model.json",
        "model.safetensors",
    ]
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["provenance"]["weights_sha256"] == info.provenance["weights_sha256"]
    assert {"created", "package_version"} <= set(meta["provenance"])

    loaded, loaded_info = load_checkpoint(tmp_path / "ckpt")
    assert loaded_info.config == MICRO
    assert loaded_info.gene_names == ("Slc17a6", "Slc17a7", "Th")
    assert loaded_info.training_state == {"global_step": 12, "loss": 0.5}
    assert loaded_info.provenance["source"] == "unit-test"
    assert not loaded.training
    for key, value in _outputs(model, 3).items():
        assert torch.equal(_outputs(loaded, 3)[key], value)
    # no temporary files left behind
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")]


def test_file_pair_layout_and_validation(tmp_path: Path) -> None:
    model = TeraMindUNet(MICRO)
    save_checkpoint(tmp_path / "run.safetensors", model, MICRO, ["a", "b", "c"])
    assert (tmp_path / "run.json").is_file()
    _, info = load_checkpoint(tmp_path / "run.json")
    assert info.gene_names == ("a", "b", "c")
    with pytest.raises(ValueError, match="gene names"):
        save_checkpoint(tmp_path / "x", model, MICRO, ["a"])
    with pytest.raises(TypeError, match="training_state"):
        save_checkpoint(tmp_path / "x", model, MICRO, ["a", "b", "c"], {"t": torch.ones(1)})
    with pytest.raises(ValueError, match="config"):
        save_checkpoint(tmp_path / "x", model, MICRO.replace(dropout=0.0), ["a", "b", "c"])


def test_corrupted_truncated_and_missing_files_are_reported(tmp_path: Path) -> None:
    model = TeraMindUNet(MICRO)
    save_checkpoint(tmp_path / "c", model, None, ["a", "b", "c"])
    weights = tmp_path / "c" / "model.safetensors"
    data = weights.read_bytes()

    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_checkpoint(tmp_path / "c", verify=False)

    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "c")

    weights.write_bytes(data)
    (tmp_path / "c" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_weights_that_do_not_match_the_config_list_the_keys(tmp_path: Path) -> None:
    model = TeraMindUNet(MICRO)
    save_checkpoint(tmp_path / "c", model, None, ["a", "b", "c"])
    meta_path = tmp_path / "c" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["model_config"]["num_res_blocks"] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(tmp_path / "c")
    message = str(excinfo.value)
    assert "missing keys" in message
    assert "input_blocks.2.0" in message


# --------------------------------------------------------------------------- published format
def test_import_published_checkpoint_infers_config_and_metadata() -> None:
    model, info = import_published_checkpoint(CKPT, gene_names=NAMES)
    assert info.config == ModelConfig.preset("fixture", 12)
    assert info.gene_names == NAMES
    assert info.training_state == {"epoch": 3, "global_step": 120000}
    assert info.provenance["source"] == "published-lightning-checkpoint"
    assert info.provenance["reference_hyper_parameters"]["rna_num"] == 12
    assert len(info.provenance["source_sha256"]) == 64
    assert not model.training
    with pytest.raises(ValueError, match="gene names"):
        import_published_checkpoint(CKPT, gene_names=NAMES[:3])


def test_published_to_native_round_trip_is_bit_identical(tmp_path: Path) -> None:
    model, info = import_published_checkpoint(CKPT, gene_names=NAMES)
    written = convert_checkpoint(CKPT, tmp_path / "converted", gene_names=NAMES)
    assert written.provenance["converted_from"] == CKPT.name
    assert written.training_state == info.training_state
    loaded, loaded_info = load_checkpoint(tmp_path / "converted")
    assert loaded_info.config == info.config
    assert loaded_info.provenance["source_sha256"] == info.provenance["source_sha256"]
    expected = _outputs(model, 12)
    got = _outputs(loaded, 12)
    for key in expected:
        assert torch.equal(got[key], expected[key])


def test_unexpected_and_missing_published_keys_are_listed(tmp_path: Path) -> None:
    ckpt = torch.load(CKPT, weights_only=True)
    state = ckpt["state_dict"]
    state["model.input_blocks.4.0.skip_connection.extra"] = torch.zeros(1)
    del state["model.out.2.bias"]
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as excinfo:
        import_published_checkpoint(tmp_path / "bad.ckpt", gene_names=NAMES)
    message = str(excinfo.value)
    assert "missing keys (1)" in message and "out.2.bias" in message
    assert "unexpected keys (1)" in message and "skip_connection.extra" in message


def test_unreadable_published_files_are_reported(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(CKPT.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="cannot read"):
        import_published_checkpoint(truncated, gene_names=NAMES)
    with pytest.raises(CheckpointError, match="does not exist"):
        import_published_checkpoint(tmp_path / "missing.ckpt", gene_names=NAMES)
    not_a_model = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"model.weight": torch.ones(2)}}, not_a_model)
    with pytest.raises(CheckpointError, match="not a Tera-MIND state dict"):
        import_published_checkpoint(not_a_model, gene_names=NAMES)


def _side_effect(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class _Malicious:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (_side_effect, (str(self.path),))


def test_fallback_reads_tensors_without_running_code(tmp_path: Path) -> None:
    ckpt = torch.load(CKPT, weights_only=True)
    ckpt["hyper_parameters"] = argparse.Namespace(**ckpt["hyper_parameters"])
    marker = tmp_path / "ran.txt"
    ckpt["callbacks"] = {"evil": _Malicious(marker)}
    path = tmp_path / "lightning.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError):  # the weights-only loader refuses it
        torch.load(path, weights_only=True)

    obj, restricted = read_torch_checkpoint(path)
    assert restricted
    assert not marker.exists()
    assert obj["hyper_parameters"]["rna_num"] == 12

    model, info = import_published_checkpoint(path, gene_names=NAMES)
    assert not marker.exists()
    assert info.provenance["read_with_restricted_unpickler"] is True
    assert info.config == ModelConfig.preset("fixture", 12)
    reference, _ = import_published_checkpoint(CKPT, gene_names=NAMES)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key])


def test_default_gene_names_come_from_the_published_panel() -> None:
    try:
        from napari_teramind.store.panel import GenePanel  # noqa: F401
    except Exception as exc:  # the store package belongs to another layer
        pytest.skip(f"gene panels unavailable: {exc}")
    _, info = import_published_checkpoint(CKPT)
    assert info.gene_names[:6] == ("Syndig1", "Tmem132c", "Serpine2", "Pou3f1", "Rorb", "Nr4a2")
    assert len(info.gene_names) == 12


def test_one_ddim_step_with_the_imported_model() -> None:
    model, _ = import_published_checkpoint(CKPT, gene_names=NAMES)
    io = torch.load(FIXTURES / "io.pt", weights_only=True)
    schedule = DDIMSchedule.create(15)
    assert int(schedule.timesteps[0]) == int(io["gen_t"][0]) == 938
    x_patches = io["gen_x_int8"].float() * io["x_scale"]
    genes = from_fixture_layout(io["gen_genes"])
    with torch.no_grad():
        eps = model(x_patches, genes, schedule.timesteps[0], (1, 5, 5), ("collage",))["collage"]
    assert (eps - io["gen_pred"]).abs().max() <= 1e-4
    # the collage patches cover the central 256 x 256 of the 320 x 320 mosaic
    mosaic = x_patches.reshape(5, 5, 4, 64, 64).permute(2, 0, 3, 1, 4).reshape(4, 320, 320)
    state = mosaic[:, 32:288, 32:288]
    eps_mosaic = eps.reshape(4, 4, 4, 64, 64).permute(2, 0, 3, 1, 4).reshape(4, 256, 256)
    x_prev, x0 = ddim_step(state, eps_mosaic, 0, schedule)
    assert x_prev.shape == state.shape and torch.isfinite(x_prev).all()
    assert x0.abs().max() <= 1.0


# ---------------------------------------------------------------------- bad inputs (#13 item 8)
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path: Path, capsys) -> None:
    """NaN or inf weights: convert-checkpoint and every load refuse, naming the tensors."""
    from napari_teramind.cli import main

    ckpt = torch.load(CKPT, weights_only=True)
    ckpt["state_dict"]["model.out.2.bias"][1] = float("nan")
    ckpt["state_dict"]["model.out.2.weight"].view(-1)[:3] = float("inf")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    assert main(["convert-checkpoint", str(tmp_path / "nan.ckpt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "non-finite weights" in err and "in 2 tensors" in err and "nan.ckpt" in err
    assert "out.2.bias (2,): 1 NaN of 2 values" in err
    assert "out.2.weight" in err and "3 infinite" in err and "earlier checkpoint" in err
    assert not (tmp_path / "out").exists()
    # a native checkpoint whose weights went bad (a diverged run) is refused on load too
    model = TeraMindUNet(MICRO)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("-inf")
    save_checkpoint(tmp_path / "native", model, None, [f"g{i}" for i in range(MICRO.n_genes)])
    with pytest.raises(CheckpointError, match=r"(?s)non-finite weights .* 1 infinite"):
        load_checkpoint(tmp_path / "native")


def test_empty_ckpt_error_names_the_file_and_the_reason(tmp_path: Path, capsys) -> None:
    from napari_teramind.cli import main

    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert main(["convert-checkpoint", str(tmp_path / "empty.ckpt"), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty.ckpt'} is empty (0 bytes)" in err and "copy it again" in err
    # a file cut after its first bytes: torch raises EOFError() with no message
    (tmp_path / "cut.ckpt").write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match=r"cut\.ckpt \(2 bytes\).*ends too early"):
        read_torch_checkpoint(tmp_path / "cut.ckpt")


def test_checkpoint_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m", TeraMindUNet(MICRO), None,
                        [f"g{i}" for i in range(MICRO.n_genes)])  # fmt: skip
    finally:
        os.umask(old)
    for name in ("model.safetensors", "model.json"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o644, name
