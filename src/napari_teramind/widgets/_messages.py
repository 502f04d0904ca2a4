"""Messages for people: napari notifications whose text names controls, not Python."""

from __future__ import annotations


def notify_info(message: str) -> None:
    """Show ``message`` as a napari info notification."""
    from napari.utils.notifications import show_info

    show_info(message)


def notify_error(message: str, exc: BaseException | None = None) -> None:
    """Show ``message`` (and the cause ``exc``) as a napari error notification."""
    from napari.utils.notifications import show_error

    if exc is not None:
        message = f"{message}: {type(exc).__name__}: {exc}"
    show_error(message)
