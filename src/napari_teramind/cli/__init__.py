"""The ``teramind`` command: one thin sub-command per task.

Every module of this package that defines ``register(subparsers)`` contributes one sub-command
(or a group of them). A sub-command only parses arguments, calls one library function and prints
its result; all logic lives in the library.

Errors are one line on stderr naming the cause and the fix, never a traceback: exit status 2
for a user error (a bad argument or input, an output that may not be written or replaced, not
enough free space predicted), 1 for a failure of the run (a full disk, an I/O error).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from napari_teramind import __version__
from napari_teramind.cli._args import Parser


class CommandError(Exception):
    """An error a sub-command reports as one line with a given exit status.

    Parameters
    ----------
    message
        The line: the cause and the fix.
    status
        2 for a user error (change the command), 1 for a failure of the run.
    """

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


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
    except CommandError as exc:
        print(f"teramind {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError, KeyError) as exc:
        # Library errors carry a message that names the problem and the fix.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"teramind {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only output, the free-space refusal
        from napari_teramind.store.errors import explain_os_error

        msg, user_error = explain_os_error(exc)
        print(f"teramind {args.command}: error: {msg}", file=sys.stderr)
        return 2 if user_error else 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
