"""Save and restore optimizer state without pickle (safetensors + JSON)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from napari_teramind.atomic import write_bytes_atomic


def save_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike[str]) -> None:
    """Write ``optimizer.state_dict()`` as ``<path>.safetensors`` + ``<path>.json``, atomically."""
    from safetensors.torch import save

    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        plain["state"][str(idx)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
                plain["state"][str(idx)][key] = {"tensor": f"{idx}.{key}"}
            else:
                plain["state"][str(idx)][key] = value
    path = Path(path)
    write_bytes_atomic(path.with_suffix(".safetensors"), save(tensors))
    write_bytes_atomic(path.with_suffix(".json"), json.dumps(plain).encode())


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike[str]) -> None:
    """Restore state written by :func:`save_optimizer` into ``optimizer``."""
    from safetensors.torch import load_file

    path = Path(path)
    plain = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path.with_suffix(".safetensors")))
    state = {}
    for idx, entry in plain["state"].items():
        state[int(idx)] = {
            k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
            for k, v in entry.items()
        }
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})
