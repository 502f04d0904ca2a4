"""Widget settings that persist between sessions.

napari's plugin settings (the manifest's ``configurations``; napari >= 0.9 shows them under
Preferences and keeps them next to its own settings). With an older napari, or when
``$TERAMIND_SETTINGS`` names a file, a small JSON file instead (``settings.json`` in
platformdirs' user config folder of napari-teramind, e.g. ``~/.config/napari-teramind``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Environment variable naming a JSON settings file, used instead of napari's plugin settings
#: (tests point it into a temporary directory).
SETTINGS_ENV = "TERAMIND_SETTINGS"
#: The plugin's name and the key of its widget settings in the manifest's ``configurations``.
PLUGIN_NAME = "napari-teramind"
SETTINGS_SECTION = "widgets"

#: Defaults of every setting (the same as the manifest's); a settings file only stores what
#: differs from these.
DEFAULT_SETTINGS: dict[str, Any] = {
    "device": "cpu",
    "model": "bundled",
    "model_path": "",
    "steps": 15,
    "seed": 0,
    "block_px": 256,
    "jobs_root": "",
    "scheduler": "",
}


def napari_settings() -> Any | None:
    """The plugin's section of napari's plugin settings, or None where the JSON file is used.

    None when ``$TERAMIND_SETTINGS`` names a file, when napari predates plugin settings
    (``napari.settings.get_plugin_settings``, napari 0.9), or when npe2 does not know the
    plugin (not installed).
    """
    if os.environ.get(SETTINGS_ENV):
        return None
    try:
        from napari.settings import get_plugin_settings
    except ImportError:
        return None
    try:
        return getattr(get_plugin_settings(PLUGIN_NAME), SETTINGS_SECTION)
    except (KeyError, AttributeError):
        return None


def settings_path() -> Path:
    """The file the settings live in: napari's plugin settings file or the JSON file."""
    env = os.environ.get(SETTINGS_ENV)
    if env:
        return Path(env).expanduser()
    if napari_settings() is not None:
        from napari.settings import get_plugin_settings

        path = get_plugin_settings(PLUGIN_NAME).config_path
        if isinstance(path, str | os.PathLike):
            return Path(path)
    from platformdirs import user_config_path

    return user_config_path(PLUGIN_NAME, appauthor=False) / "settings.json"


def load_settings() -> dict[str, Any]:
    """All settings: the defaults updated by what was saved (a broken JSON file is ignored)."""
    from napari_teramind.atomic import read_json

    values = dict(DEFAULT_SETTINGS)
    section = napari_settings()
    if section is not None:
        stored = section.model_dump()
        values.update({k: v for k, v in stored.items() if k in DEFAULT_SETTINGS})
        return values
    path = settings_path()
    if path.is_file():
        try:
            stored = read_json(path)
        except (OSError, ValueError):
            return values
        if isinstance(stored, dict):
            values.update(stored)
    return values


def get_setting(key: str) -> Any:
    """One setting (its default when never saved)."""
    return load_settings().get(key, DEFAULT_SETTINGS.get(key))


def save_settings(**values: Any) -> None:
    """Persist ``values`` (napari's plugin settings, or merged into the JSON file).

    napari saves its plugin settings file on every change; the JSON file is written atomically.

    Raises
    ------
    ValueError
        For a key that is not a setting, or (napari settings) a value the manifest's schema
        refuses.
    """
    from napari_teramind.atomic import write_json_atomic

    unknown = sorted(set(values) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
    section = napari_settings()
    if section is not None:
        for key, value in values.items():
            setattr(section, key, value)
        return
    path = settings_path()
    current = load_settings()
    current.update(values)
    stored = {k: v for k, v in current.items() if DEFAULT_SETTINGS.get(k, object()) != v}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, stored)
