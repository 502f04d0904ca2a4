"""``--region`` and ``--slices`` for every sub-command: one syntax, read by the library's parsers.

``--region Y0 Y1 X0 X1`` (the older ``--region y0,y1,x0,x1`` still reads) and ``--slices 0-3,6``
(or ``--slices 2 3``, ``--slices 2-3``, ``--slices all``), both through
:mod:`napari_teramind.selection`, so every sub-command and widget accepts and refuses the same
text with the same message.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from napari_teramind.selection import SLICE_FORMS, parse_region, parse_slices

_NUMBERS = re.compile(r"^[\d,\-]+$")
_COMMA_REGION = re.compile(r"^-?\d+(,-?\d+){3}$")
REGION_FLAG = "--region"


def expand_comma_regions(argv: Sequence[str]) -> list[str]:
    """``--region 0,64,0,64`` (or ``--region=0,64,0,64``) -> ``--region 0 64 0 64``."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok == REGION_FLAG:
            out.append(tok)
            nxt = next(it, None)
            if nxt is not None:
                out.extend(nxt.split(",") if _COMMA_REGION.match(nxt) else [nxt])
        elif tok.startswith(REGION_FLAG + "="):
            out.append(REGION_FLAG)
            out.extend(tok.split("=", 1)[1].split(","))
        else:
            out.append(tok)
    return out


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that also reads the comma form of ``--region``."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):  # type: ignore[override]
        args = sys.argv[1:] if args is None else args
        return super().parse_known_args(expand_comma_regions(list(args)), namespace)


def _hint(values: list[str], option: str | None) -> str:
    """Advice when a path was swallowed by a many-valued option (``--slices 0 store.zarr``)."""
    words = [v for v in values if not _NUMBERS.match(v)]
    if words:
        return f" ({words[0]!r} is not a slice: give the store paths before {option})"
    return ""


class RegionAction(argparse.Action):
    """Read ``--region`` with :func:`~napari_teramind.selection.parse_region`.

    ``repeatable=True``: each ``--region`` adds one region to a list.
    """

    def __init__(self, *args: Any, repeatable: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.repeatable = repeatable

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        try:
            region = parse_region(list(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        if self.repeatable:
            region = [*(getattr(namespace, self.dest, None) or []), region]
        setattr(namespace, self.dest, region)


class SlicesAction(argparse.Action):
    """Read ``--slices`` with :func:`~napari_teramind.selection.parse_slices` (``all``: None)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        values = [values] if isinstance(values, str) else list(values)
        if [v.lower() for v in values] == ["all"]:
            setattr(namespace, self.dest, None)
            return
        try:
            slices = parse_slices(values)
        except ValueError as exc:
            raise argparse.ArgumentError(self, f"{exc}{_hint(values, option_string)}") from None
        setattr(namespace, self.dest, slices)


def add_region_argument(
    parser: argparse.ArgumentParser,
    help: str = "region in image px (default: the whole canvas)",
    repeatable: bool = False,
) -> None:
    """Add ``--region Y0 Y1 X0 X1`` (``repeatable``: several ``--region``, a list of regions)."""
    parser.add_argument(
        REGION_FLAG,
        nargs=4,
        action=RegionAction,
        repeatable=repeatable,
        default=None,
        metavar=("Y0", "Y1", "X0", "X1"),
        help=help,
    )


def add_slices_argument(
    parser: argparse.ArgumentParser,
    help: str = "slices (default: all)",
    flag: str = "--slices",
) -> None:
    """Add ``--slices`` (``0-3,6``, ``2 3``, ``2-3``, ``all``)."""
    parser.add_argument(
        flag,
        nargs="+",
        action=SlicesAction,
        default=None,
        metavar="Z",
        help=f"{help}; {SLICE_FORMS}",
    )
