"""Per-user folders come from platformdirs (issue 17 item 12), with the env overrides kept."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from napari_teramind._sample_data import cache_dir


def test_cache_dir_is_platformdirs_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TERAMIND_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    expected = platformdirs.user_cache_path("napari-teramind", appauthor=False)
    assert cache_dir() == expected
    assert cache_dir() == tmp_path / "xdg-cache" / "napari-teramind"  # Linux: XDG honoured
    monkeypatch.setenv("TERAMIND_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_jobs_root_and_settings_file_use_platformdirs(tmp_path, monkeypatch):
    from napari_teramind.widgets import _settings as _common
    from napari_teramind.widgets.jobs import default_jobs_root

    monkeypatch.delenv("TERAMIND_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_jobs_root() == tmp_path / "c" / "napari-teramind" / "jobs"
    # the JSON settings file of a napari without plugin settings
    monkeypatch.delenv(_common.SETTINGS_ENV, raising=False)
    monkeypatch.setattr(_common, "napari_settings", lambda: None)
    path = _common.settings_path()
    assert path == platformdirs.user_config_path("napari-teramind", appauthor=False) / (
        "settings.json"
    )
    assert path == tmp_path / "cfg" / "napari-teramind" / "settings.json"
    _common.save_settings(steps=9)
    assert Path(path).is_file() and _common.load_settings()["steps"] == 9
