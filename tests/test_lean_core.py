"""A lean core: the library and the ``teramind`` command run without napari, Qt or vispy.

``pip install napari-teramind`` installs neither (cluster and GPU workers); the plugin is the
``[napari]``/``[all]`` extra. These tests run Python in a subprocess whose import system
refuses the GUI packages, as if they were not installed, then import every library module and
run the command; ``lint-imports`` checks the same for imports inside functions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Packages a lean install does not have (napari and everything Qt or GUI that comes with it).
GUI_PACKAGES = (
    "napari",
    "npe2",
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "vispy",
    "magicgui",
    "superqt",
    "app_model",
)

#: Runs in the subprocess: a meta-path finder first in line refuses every GUI package.
BLOCKER = """
import importlib.abc, sys
BLOCKED = frozenset(sys.argv[1].split(","))

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
del sys.argv[1]
"""

IMPORT_ALL = """
import importlib, json, pkgutil, sys
import napari_teramind

imported = []
for info in pkgutil.walk_packages(napari_teramind.__path__, "napari_teramind."):
    name = info.name
    if name.startswith("napari_teramind.widgets") or name.endswith(".__main__"):
        continue  # the widgets are the plugin (napari and Qt); __main__ runs the command
    importlib.import_module(name)
    imported.append(name)
gui = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print(json.dumps({"imported": imported, "gui": gui}))
"""

#: Prints ``teramind <command> --help`` of every sub-command, in one process.
ALL_HELPS = """
import contextlib, io, json
from napari_teramind.cli import build_parser, main

sub = next(a for a in build_parser()._actions if a.dest == "command")
helps = {}
for name in sub.choices:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([name, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, (name, exc.code)
    helps[name] = buf.getvalue()
print(json.dumps(helps))
"""

RUN_CLI = """
import runpy
sys.argv[0] = "teramind"
runpy.run_module("napari_teramind.cli", run_name="__main__")
"""


def _lean_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python where the GUI packages cannot be imported."""
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("DISPLAY", None)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, ",".join(GUI_PACKAGES), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def test_blocker_really_blocks():
    proc = _lean_python("import napari")
    assert proc.returncode != 0
    assert "No module named 'napari' (blocked by the test)" in proc.stderr


def test_every_library_module_imports_without_the_gui():
    proc = _lean_python(IMPORT_ALL)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["gui"] == []
    packages = {name.split(".")[1] for name in result["imported"]}
    library = {"store", "panels", "phantom", "model", "diffusion", "train", "generate"}
    library |= {"attention", "evaluate", "ingest", "export", "cli"}
    top = {"demo", "overview", "layers", "_reader", "_sample_data"}
    assert library | top <= packages


def test_teramind_command_runs_without_the_gui(tmp_path):
    proc = _lean_python(RUN_CLI, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "phantom" in proc.stdout and "generate" in proc.stdout
    # every sub-command builds its parser and prints its help
    proc = _lean_python(ALL_HELPS)
    assert proc.returncode == 0, proc.stderr
    helps = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"demo", "phantom", "generate", "attention", "evaluate", "train"} <= set(helps)
    assert all(text.startswith(f"usage: teramind {name}") for name, text in helps.items())
    # real work: a small phantom brain store and the demo's phantom-only stage
    proc = _lean_python(
        RUN_CLI, "phantom", str(tmp_path / "p.zarr"), "--slices", "2", "--height", "256",
        "--width", "256",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.zarr" / "zarr.json").is_file()
    proc = _lean_python(
        RUN_CLI, "demo", "--no-model", "--out", str(tmp_path / "demo"), "--slices", "2",
        "--height", "256", "--width", "384",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert any((tmp_path / "demo").glob("*.png"))


def test_demo_napari_names_the_extra_before_any_work(tmp_path):
    out = tmp_path / "demo"
    proc = _lean_python(RUN_CLI, "demo", "--napari", "--no-model", "--out", str(out))
    assert proc.returncode == 2
    assert "--napari needs napari" in proc.stderr
    assert "napari-teramind[all]" in proc.stderr
    assert not out.exists()  # nothing was written before the check


def test_core_dependencies_carry_no_gui():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        out = set()
        for r in reqs:
            name = r.split(";")[0].strip()
            for sep in "[<>=!~ ":
                name = name.split(sep)[0]
            out.add(name.lower())
        return out

    gui = {p.lower() for p in GUI_PACKAGES}
    assert names(project["dependencies"]) & gui == set()
    extras = project["optional-dependencies"]
    assert {"napari", "qtpy", "npe2"} <= names(extras["napari"])
    assert "napari-teramind[napari]" in extras["all"]
    assert "napari-teramind[napari]" in extras["test"]
    assert any(r.startswith("napari[pyqt6]") for r in extras["test"])
    assert "import-linter" in names(extras["test"])


def test_import_contracts_are_kept():
    """Arrows point down and the library imports no GUI, also inside functions."""
    pytest.importorskip("importlinter", reason="import-linter comes with the [test] extra")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
