"""Shared pieces of the model, checkpoint and diffusion tests."""

import os
from pathlib import Path

import pytest
import torch

from napari_teramind.model import ModelConfig


def fixture_dir() -> Path:
    """The reference-parity fixtures, kept in the repository's test data.

    ``tests/data/reference-parity`` is a copy of the tensors and checkpoint the published code
    produced (see its README), so the parity and checkpoint-import tests run on every clone.
    ``$TERAMIND_SHARED`` points at another copy (``<dir>/fixtures/reference-parity``).
    """
    shared = os.environ.get("TERAMIND_SHARED")
    if shared:
        return Path(shared) / "fixtures" / "reference-parity"
    return Path(__file__).resolve().parent / "data" / "reference-parity"


FIXTURES = fixture_dir()
if not (FIXTURES / "checkpoint.ckpt").is_file() or not (FIXTURES / "io.pt").is_file():
    # The fixture ships with the repository: a missing one is a broken checkout, not a skip.
    raise FileNotFoundError(
        f"reference-parity fixtures not found at {FIXTURES}: restore tests/data/reference-parity "
        "from git (or unset TERAMIND_SHARED)"
    )


#: A network small enough for fast unit tests of every block.
MICRO = ModelConfig(
    n_genes=3,
    model_channels=4,
    channel_mult=(1, 1, 1, 2),
    num_res_blocks=1,
    embed_channels=8,
    gene_map_channels=(4, 4, 4),
)


def micro_model(n_genes: int, seed: int = 1):
    """A seeded, randomly initialised :data:`MICRO` network for ``n_genes`` genes, in eval."""
    import dataclasses

    from napari_teramind.model import TeraMindUNet

    torch.manual_seed(seed)
    return TeraMindUNet(dataclasses.replace(MICRO, n_genes=n_genes)).eval()


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These tensors are tiny; one thread avoids OpenMP overhead on busy CI machines."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
