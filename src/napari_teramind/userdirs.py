"""Per-user folders of napari-teramind (platformdirs), shared by the sample data and widgets."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["APP_NAME", "cache_dir"]

#: Application name of the per-user folders (platformdirs).
APP_NAME = "napari-teramind"


def cache_dir() -> Path:
    """Per-user cache directory of napari-teramind (created on demand by the writers).

    ``$TERAMIND_CACHE`` when set, else platformdirs' user cache folder of the application
    (which follows ``$XDG_CACHE_HOME`` on Linux).
    """
    env = os.environ.get("TERAMIND_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path(APP_NAME, appauthor=False)
