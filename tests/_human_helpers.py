"""Shared pieces of the human-path tests (issue 18): a human section and a single-section model.

The model is trained the way a user does it (``teramind train --gene-slices 1 --panel
human-orthologs-81`` on a mouse phantom holding the 81 ortholog genes), for two steps: small
and fast, but a real checkpoint that every part of the chain (CLI, library, napari) loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: A network small enough to train two steps on two shared cores.
MICRO = {
    "model_channels": 2,
    "channel_mult": [1, 1, 1, 2],
    "embed_channels": 8,
    "gene_map_channels": [2, 2, 2],
    "num_res_blocks": 1,
}

#: Edge of the human section and of the mouse phantom the model is trained on (px).
SIZE = 128


@dataclass(frozen=True)
class HumanPath:
    """A mouse phantom, a human section and a single-section model trained on the first."""

    mouse: Path
    human: Path
    run: Path
    model: Any
    info: Any


def write_mouse_ortholog_phantom(path: Path, size: int = SIZE) -> Path:
    """A 2-section mouse phantom holding the 81 ortholog genes (and the programs' genes)."""
    from napari_teramind.panels import human_orthologs
    from napari_teramind.phantom import PhantomSpec, write_phantom
    from napari_teramind.phantom.programs import REQUIRED_GENES

    orth = human_orthologs()
    genes = (*orth, *(g for g in REQUIRED_GENES if g not in orth))
    write_phantom(path, PhantomSpec(seed=2, n_slices=2, height=size, width=size, genes=genes),
                  workers=1, executor="thread")  # fmt: skip
    return path


def write_human_section(path: Path, size: int = SIZE) -> Path:
    """One human section with the human panel's symbols, through ``teramind phantom --human``."""
    from napari_teramind.cli import main

    assert main(["phantom", str(path), "--human", "--height", str(size), "--width", str(size),
                 "--seed", "4", "--workers", "1", "--quiet"]) == 0  # fmt: skip
    return path


def train_single_section(mouse: Path, run: Path, size: int = SIZE) -> tuple[Any, Any]:
    """``teramind train --gene-slices 1 --panel human-orthologs-81``, 2 steps; the checkpoint."""
    from napari_teramind.cli import main
    from napari_teramind.model import latest_checkpoint, load_checkpoint

    assert main(["train", str(mouse), "--out", str(run), "--gene-slices", "1", "--panel",
                 "human-orthologs-81", "--model-json", json.dumps(MICRO), "--steps", "2",
                 "--batch-size", "1", "--crop", str(size), "--lr", "3e-3", "--device", "cpu",
                 "--quiet"]) == 0  # fmt: skip
    return load_checkpoint(latest_checkpoint(run)[1])


def make_human_path(root: Path) -> HumanPath:
    """Write both stores under ``root`` and train the single-section model."""
    mouse = write_mouse_ortholog_phantom(root / "mouse.zarr")
    human = write_human_section(root / "human.zarr")
    model, info = train_single_section(mouse, root / "run")
    return HumanPath(mouse, human, root / "run", model, info)


@pytest.fixture(scope="module")
def human_path(tmp_path_factory) -> HumanPath:
    """The human path's stores and model, made once per test module (copy a store to write)."""
    return make_human_path(tmp_path_factory.mktemp("human"))
