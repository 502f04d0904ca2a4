"""benchmarks/gpu.py runs end to end in its CPU smoke mode, importing no GUI package."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import runpy, sys
sys.argv = ["gpu.py", "--device", "cpu", "--tiny", "--json", sys.argv[1]]
runpy.run_path(sys.argv[0] if False else {script!r}, run_name="__main__")
gui = sorted(m for m in sys.modules if m.split(".")[0] in ("napari", "qtpy", "PyQt5", "vispy",
                                                           "magicgui"))
print("GUI", gui)
"""


def test_gpu_benchmark_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    code = _RUN.format(script=str(ROOT / "benchmarks" / "gpu.py"))
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                       timeout=600, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "GUI []" in r.stdout, r.stdout
    assert "output patches/s" in r.stdout and "PROJECTION" in r.stdout
    fig = json.loads(out.read_text())
    assert fig["device"] == "cpu" and fig["throughput"]["patches_per_s"] > 0
    err = fig["bf16_error"]
    assert 0 <= err["image_max_diff"] <= 255 and err["eps_rms_rel"] >= 0
    hours = {k: fig["projection"][k]["hours_this_gpu_x8"] for k in ("collage", "shifted-fused")}
    hours["default"] = fig["projection"]["shifted-fused-4"]["hours_this_gpu_x8"]
    # passes per step: 1, 18/15 and 21/15 (counted from the schemes)
    assert hours["default"] > hours["shifted-fused"] > hours["collage"] > 0
    assert hours["default"] / hours["collage"] == pytest.approx(21 / 15)
