"""Session-wide test safety: no test reads or writes the user's real plugin settings."""

import pytest

from _human_helpers import human_path  # noqa: F401  (the human path: stores and model, per module)


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    """Widget settings go to a JSON file in the test's tmp_path.

    napari's plugin settings are tested with napari's own ``plugin_settings`` fixture, which
    redirects them into the test's tmp_path as well.
    """
    monkeypatch.setenv("TERAMIND_SETTINGS", str(tmp_path / "user-settings" / "settings.json"))
