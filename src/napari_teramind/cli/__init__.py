"""The ``teramind`` command: one thin sub-command per task.

Every module of this package that defines ``register(subparsers)`` contributes one sub-command
(or a group of them). A sub-command only parses arguments, calls one library function and prints
its result; all logic lives in the library.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from napari_teramind import __version__
from napari_teramind.cli._args import Parser


def build_parser() -> argparse.ArgumentParser:
    """Build the ``teramind`` argument parser with every registered sub-command."""
    parser = Parser(
        prog="teramind",
        description=(
            "Tera-MIND brain stores, phantom brains, generation, attention maps and evaluation. "
            "Run 'teramind <command> --help' for the options of a command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"napari-teramind {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``teramind`` command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError, KeyError) as exc:
        # Library errors carry a message that names the problem and the fix.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"teramind {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
