"""The bundled model and ``resolve_model``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _model_helpers import FIXTURES, MICRO, single_thread  # noqa: F401
from napari_teramind.model import TeraMindUNet, resolve_model, save_checkpoint
from napari_teramind.model.bundled import bundled_checkpoint_path, load_bundled_model
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.train.bundled import (
    BUNDLED_CONTINUE_EMA,
    BUNDLED_CONTINUE_STEPS,
    BUNDLED_STEPS,
    gene_following_scores,
)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bundled_model_loads_with_its_recipe():
    path = bundled_checkpoint_path()
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    assert path.stat().st_size < 5_000_000  # "a few MB at most"
    model, info = load_bundled_model()
    assert not model.training and len(info.gene_names) == model.config.n_genes == 48
    recipe = info.provenance["bundled_recipe"]
    assert recipe["command"].startswith("teramind train-bundled")
    assert recipe["steps"] == info.training_state["global_step"] > 0
    assert recipe["train_seconds"] > 0 and 0 < recipe["final_loss"] < 0.5
    # both stages of the shipped recipe, the second one's EMA weights exported
    stages = recipe["stages"]
    assert [st["steps"] for st in stages] == [BUNDLED_STEPS, BUNDLED_CONTINUE_STEPS]
    assert recipe["total_steps"] == BUNDLED_STEPS + BUNDLED_CONTINUE_STEPS
    assert recipe["weights"] == "ema" and stages[1]["ema_decay"] == BUNDLED_CONTINUE_EMA
    assert recipe["command"].endswith(f"--continue-steps {BUNDLED_CONTINUE_STEPS} "
                                      f"--continue-ema-decay {BUNDLED_CONTINUE_EMA}")  # fmt: skip
    follow = recipe["gene_following"]
    assert all(np.isfinite(follow[k]) for k in ("dapi_r", "dapi_r_blind", "polyt_r", "dapi_mae"))


@pytest.mark.slow
def test_bundled_model_follows_the_genes(tmp_path):
    """On a phantom it never saw (another seed and size), generated DAPI follows the genes.

    Four 256-px crops, DDIM-15, the same noise with real and with zero genes: the 64-px cell
    means track the real tissue, better than gene-blind in correlation and in absolute error,
    and the background (blocks where the genes count nothing) stays dark, as the real one is.
    """
    store = tmp_path / "p.zarr"
    write_phantom(store, PhantomSpec(n_slices=2, height=1024, width=1024, seed=5), workers=1,
                  executor="thread")  # fmt: skip
    model, info = load_bundled_model()
    s = gene_following_scores(model, store, info.gene_names, (), n_crops=4, steps=15)
    assert s["dapi_r"] > 0.5 and s["polyt_r"] > 0.5, s
    assert s["dapi_r"] > s["dapi_r_blind"] + 0.3, s
    assert s["dapi_mae"] < s["dapi_mae_blind"], s
    assert s["empty_fraction"] > 0.1 and s["dapi_empty"] < 25.0, s  # real: about 4 grey levels


def test_resolve_model_accepts_every_kind_of_spec(tmp_path):
    bundled, _ = load_bundled_model()
    for spec in (None, "bundled", "Bundled"):
        model, info = resolve_model(spec)
        assert _same_weights(model, bundled) and len(info.gene_names) == 48
    model, _ = resolve_model(bundled_checkpoint_path())  # the .safetensors file
    assert _same_weights(model, bundled)

    torch.manual_seed(0)
    micro = TeraMindUNet(MICRO)
    names = ("a", "b", "c")
    save_checkpoint(tmp_path / "native", micro, None, names)
    model, info = resolve_model(tmp_path / "native", device="cpu")
    assert _same_weights(model, micro) and info.gene_names == names and not model.training
    model, _ = resolve_model(str(tmp_path / "native" / "model.json"))
    assert _same_weights(model, micro)


def test_resolve_model_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="'bundled'"):
        resolve_model(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model("bundeld")  # a typo is not silently a path that exists
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        resolve_model(tmp_path / "empty")
    (tmp_path / "weights.npy").write_bytes(np.zeros(3).tobytes())
    with pytest.raises(ValueError, match="not a model checkpoint"):
        resolve_model(tmp_path / "weights.npy")


def test_resolve_model_imports_a_published_checkpoint():
    model, info = resolve_model(Path(FIXTURES / "checkpoint.ckpt"))
    assert info.provenance["source"] == "published-lightning-checkpoint"
    assert len(info.gene_names) == model.config.n_genes == 12
