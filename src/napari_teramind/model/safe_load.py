"""Reading torch pickle checkpoints without ever executing code from the file.

:func:`read_torch_checkpoint` first tries ``torch.load(weights_only=True)``. Lightning
checkpoints can hold objects that loader refuses (an ``AttributeDict`` or a ``Namespace`` of
hyper-parameters, numpy scalars). Then it falls back to a restricted unpickler: only tensor
rebuild functions, ``OrderedDict``, ``torch.Size`` and dtypes resolve to real objects; every
other global becomes an inert placeholder that records its name and absorbs its state. No
constructor or function named by the file is ever called.
"""

from __future__ import annotations

import pickle
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from napari_teramind.model.checkpoint_info import CheckpointError

__all__ = ["OpaqueObject", "read_torch_checkpoint", "to_plain_data"]

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "Size"): torch.Size,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
}
for _name in ("_rebuild_tensor_v3", "_rebuild_parameter_with_state"):
    if hasattr(torch._utils, _name):
        _ALLOWED_GLOBALS[("torch._utils", _name)] = getattr(torch._utils, _name)


class OpaqueObject(dict):
    """Inert stand-in for an object whose class the restricted unpickler refused.

    It accepts any constructor arguments, keeps dictionary state and appended items, and
    remembers the refused global as :attr:`source`.
    """

    source = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        """Create an empty placeholder, ignoring the arguments."""
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        parts = state if isinstance(state, tuple) else (state,)
        for part in parts:
            if isinstance(part, dict):
                self.update(part)

    def append(self, item: Any) -> None:
        """Absorb an item of a list-like object."""
        self.setdefault("__items__", []).append(item)

    def extend(self, items: Any) -> None:
        """Absorb items of a list-like object."""
        self.setdefault("__items__", []).extend(items)

    def __repr__(self) -> str:
        return f"<opaque {self.source}>"


def _dtype_global(module: str, name: str) -> Any:
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name)) or _dtype_global(module, name)
        if allowed is not None:
            return allowed
        return type(name, (OpaqueObject,), {"source": f"{module}.{name}"})


_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="napari_teramind_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda f, **kw: _RestrictedUnpickler(f, **kw).load(),
)


def read_torch_checkpoint(path: str | Path) -> tuple[Any, bool]:
    """Read a torch-saved object onto the CPU without executing code from it.

    Parameters
    ----------
    path
        File written by ``torch.save``.

    Returns
    -------
    tuple
        The loaded object and whether the restricted fallback was needed.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated or not a torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint file {path} is empty (0 bytes): a download or copy was interrupted, "
            "or the disk was full when it was saved; fetch or copy it again"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError:
        pass  # refused by the weights-only loader: retry with the restricted unpickler
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    try:
        obj = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE
        )
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    return obj, True


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    """The error for a file torch cannot read; never a blank reason (``EOFError()`` has none)."""
    reason = str(exc).strip().rstrip(".") or {
        "EOFError": "the file ends too early (truncated)",
    }.get(type(exc).__name__, type(exc).__name__)
    return CheckpointError(
        f"cannot read {path} ({path.stat().st_size} bytes) as a torch checkpoint: {reason}; "
        "is it a complete .ckpt written by torch.save? Fetch or copy it again"
    )


def to_plain_data(obj: Any, _depth: int = 0) -> Any:
    """Convert loaded metadata to JSON-safe data.

    Dicts (including placeholders) become dicts with string keys, sequences become lists,
    0-d tensors become numbers, other tensors a short description, unknown objects their repr.
    """
    if _depth > 50:
        return "<too deep>"
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else str(obj)
    if isinstance(obj, torch.Tensor):
        return (
            to_plain_data(obj.item(), _depth + 1)
            if obj.numel() == 1
            else (f"<tensor {tuple(obj.shape)} {obj.dtype}>")
        )
    if isinstance(obj, dict):
        return {str(k): to_plain_data(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_plain_data(v, _depth + 1) for v in obj]
    return repr(obj)
