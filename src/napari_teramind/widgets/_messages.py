"""Messages for people: napari notifications whose text names controls, not Python.

The library's errors are written for scripts and the command line ("pass overwrite=True
(--overwrite)", "use snap_region()"); :func:`for_people` rewords those hints for the widgets
and drops Python exception names and reprs, so a notification reads as a sentence.
"""

from __future__ import annotations

import re

#: Library hints (for Python callers and the CLI) and what a widget user does instead.
_REWORDINGS: tuple[tuple[str, str], ...] = (
    (
        r"pass overwrite=True \(--overwrite\)|pass --overwrite|pass overwrite=True",
        "choose another Output (or Job name), or delete the existing one",
    ),
    (
        r"\(?use snap_region\(\)( to round it outwards)?\)?",
        "(Generate rounds the region outwards to whole 64 px patches; press Place rectangle "
        "to start from a snapped one)",
    ),
    (
        r"open it with allow_incomplete=True to inspect what is there\.?",
        "open it from 'Generation jobs' (Open) to see what is there.",
    ),
)


def for_people(exc: BaseException | str) -> str:
    """The text of ``exc`` for a notification: no exception class, no CLI flags or calls.

    A ``KeyError`` reads ``"'Foo'"`` in Python; it becomes ``"Foo was not found"``.
    """
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, KeyError) and len(exc.args) == 1:
        text = f"{exc.args[0]} was not found"
    else:
        text = str(exc).strip() or type(exc).__name__
    for pattern, words in _REWORDINGS:
        text = re.sub(pattern, words, text)
    return text


def notify_info(message: str) -> None:
    """Show ``message`` as a napari info notification."""
    from napari.utils.notifications import show_info

    show_info(message)


def notify_warning(message: str) -> None:
    """Show ``message`` as a napari warning notification."""
    from napari.utils.notifications import show_warning

    show_warning(message)


def notify_error(message: str, exc: BaseException | None = None) -> None:
    """Show ``message`` (and the cause ``exc``, worded by :func:`for_people`) as an error."""
    from napari.utils.notifications import show_error

    if exc is not None:
        message = f"{message}: {for_people(exc)}"
    show_error(message)
