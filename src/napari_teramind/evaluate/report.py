"""The evaluation report: per-slice tables (CSV, Parquet), a summary and figures (PNG)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .image_metrics import VIEWS

IMAGE_COLUMNS = tuple(f"{m}_{v}" for m in ("psnr", "ssim") for v in VIEWS)
NUCLEI_COLUMNS = ("nuclei_count_error", "nuclei_area_error", "nuclei_solidity_error")


class EvaluationReport:
    """Results of :func:`~napari_teramind.evaluate.evaluate_stores`.

    Attributes
    ----------
    table
        One row per (set, slice, region): ``set`` (``generated``, a baseline name, ``mean``,
        ``blur``), ``z``, ``region``, ``y0, y1, x0, x1``, ``tissue_fraction``, PSNR and SSIM per
        view, and the nuclei columns (``nuclei_method``, counts, mean areas and relative errors
        against the real image). When the real store is a phantom, ``nuclei_count_truth`` and
        ``nuclei_area_truth`` give its ground-truth nuclei in the region, so the segmentation's
        own error on the real images can be read next to the scores.
    fid
        One row per (set, view, slice) and per (set, view) pooled over slices (``z == "all"``):
        ``fid``, ``sfid``, ``n_real``, ``n_generated`` (number of FID tiles).
    nuclei_areas
        One row per segmented nucleus: ``set`` (``real`` or a scored set), ``z``, ``region``,
        ``area`` (px).
    settings
        What was evaluated and how (JSON-able).
    """

    def __init__(self, rows, fid_rows, area_rows, settings: dict[str, Any]):
        import pandas as pd

        self.table = pd.DataFrame(rows)
        self.fid = pd.DataFrame(fid_rows, columns=["set", "z", "view", "fid", "sfid", "n_real",
                                                   "n_generated"])  # fmt: skip
        self.fid["z"] = self.fid["z"].astype(str)
        self.nuclei_areas = pd.DataFrame(area_rows, columns=["set", "z", "region", "area"])
        self.settings = settings

    @property
    def sets(self) -> list[str]:
        """Scored sets in table order."""
        return list(dict.fromkeys(self.table["set"]))

    def summary(self):
        """Per set: mean and std over regions and slices of every metric, and pooled FID.

        Non-finite values (PSNR of identical images, empty masks) are left out of the means,
        as the published aggregation leaves out empty entries.
        """
        import pandas as pd

        t = self.table
        out = []
        cols = [c for c in (*IMAGE_COLUMNS, "nuclei_count", "nuclei_count_real",
                            "nuclei_count_truth", "nuclei_area", "nuclei_area_real",
                            "nuclei_area_truth", *NUCLEI_COLUMNS) if c in t]  # fmt: skip
        for s in self.sets:
            sub = t[t["set"] == s]
            row: dict[str, Any] = {"set": s, "regions": len(sub)}
            for c in cols:
                v = pd.to_numeric(sub[c], errors="coerce").to_numpy(float)
                v = v[np.isfinite(v)]
                if c in NUCLEI_COLUMNS:
                    v = np.abs(v)
                row[c] = float(v.mean()) if v.size else float("nan")
                row[c + "_std"] = float(v.std()) if v.size else float("nan")
                row[c + "_n"] = int(v.size)
            if len(self.fid):
                pooled = self.fid[(self.fid["set"] == s) & (self.fid["z"] == "all")]
                for _, r in pooled.iterrows():
                    for k in ("fid", "sfid"):
                        if k in self.settings.get("metrics", ()):
                            row[f"{k}_{r['view']}"] = r[k]
            out.append(row)
        return pd.DataFrame(out).set_index("set")

    def summary_text(self) -> str:
        """The summary as a plain-text table: one row per metric, one column per set.

        Cells are ``mean +- sd (n=N)`` over the N regions with a finite value (sd: the
        population standard deviation; nuclei errors: mean absolute relative error against the
        real image); FID/sFID are pooled over slices.
        """
        s = self.summary()
        sets = list(s.index)
        metrics = [c for c in s.columns
                   if not c.endswith(("_std", "_n")) and c != "regions"]  # fmt: skip
        width = max(24, *(len(str(n)) + 2 for n in sets))
        lines = [f"{'metric':<20}" + "".join(f"{n!s:>{width}}" for n in sets)]
        lines.append(f"{'regions':<20}" + "".join(f"{int(s.loc[n, 'regions']):>{width}}"
                                                  for n in sets))  # fmt: skip
        for c in metrics:
            cells = []
            for n in sets:
                v, std = s.loc[n, c], s.loc[n].get(c + "_std")
                cell = _fmt(v)
                if std is not None and np.isfinite(float(std)) and np.isfinite(float(v)):
                    cell += f" +- {_fmt(std)} (n={int(s.loc[n, c + '_n'])})"
                cells.append(f"{cell:>{width}}")
            lines.append(f"{c:<20}" + "".join(cells))
        meth = self.settings.get("nuclei_method")
        if meth:
            lines.append(f"nuclei: {meth} segmentation"
                         + (" (offline fallback, not the published cellpose)"
                            if meth == "classical" else ""))  # fmt: skip
            err = self.segmentation_error()
            if err is not None:
                lines.append(f"nuclei of the real images vs the phantom's ground truth: count "
                             f"{100 * err['count']:+.1f} %, mean area {100 * err['area']:+.1f} % "
                             "(the segmentation's own error)")  # fmt: skip
        if not any(k in self.settings.get("metrics", ()) for k in ("fid", "sfid")):
            lines.append("FID/sFID: not computed (no Inception weights; see docs/evaluation.md)")
        return "\n".join(lines)

    def segmentation_error(self) -> dict[str, float] | None:
        """Mean relative error of the real images' nuclei against a phantom's ground truth.

        Returns ``{"count": ..., "area": ...}`` (signed, averaged over regions), or None when
        the real store is not a phantom.
        """
        import pandas as pd

        t = self.table
        if "nuclei_count_truth" not in t or not len(t):
            return None
        sub = t[t["set"] == self.sets[0]]
        out = {}
        for key in ("count", "area"):
            real = pd.to_numeric(sub[f"nuclei_{key}_real"], errors="coerce").to_numpy(float)
            truth = pd.to_numeric(sub[f"nuclei_{key}_truth"], errors="coerce").to_numpy(float)
            ok = np.isfinite(real) & np.isfinite(truth) & (truth > 0)
            out[key] = float(np.mean(real[ok] / truth[ok] - 1)) if ok.any() else float("nan")
        return out

    def write(self, out_dir: str | os.PathLike[str], figures: bool = True) -> dict[str, Path]:
        """Write the tables (CSV and Parquet), the summary, settings and (PNG) figures.

        Every file is written atomically. Returns file name -> path.
        """
        from napari_teramind.atomic import write_bytes_atomic, write_json_atomic

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        frames = {"table": self.table, "fid": self.fid, "nuclei_areas": self.nuclei_areas,
                  "summary": self.summary().reset_index()}  # fmt: skip
        for name, df in frames.items():
            if name == "fid" and not len(df):
                continue
            p = out / f"{name}.csv"
            write_bytes_atomic(p, df.to_csv(index=False).encode())
            paths[f"{name}.csv"] = p
            if name != "summary":
                buf = io.BytesIO()
                df.to_parquet(buf, index=False)
                p = out / f"{name}.parquet"
                write_bytes_atomic(p, buf.getvalue())
                paths[f"{name}.parquet"] = p
        p = out / "summary.txt"
        write_bytes_atomic(p, (self.summary_text() + "\n").encode())
        paths["summary.txt"] = p
        p = out / "settings.json"
        write_json_atomic(p, json.loads(json.dumps(self.settings, default=str)))
        paths["settings.json"] = p
        from .figures import report_figures

        for name, data in (report_figures(self) if figures else {}).items():
            p = out / name
            write_bytes_atomic(p, data)
            paths[name] = p
        return paths


def _fmt(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(v):
        return "-"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
