"""Report figures (matplotlib, Agg backend): metric distributions per slice and pooled."""

from __future__ import annotations

import io

import numpy as np

from .image_metrics import VIEWS


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _finite(values) -> np.ndarray:
    import pandas as pd

    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    return v[np.isfinite(v)]


def _legend_below(fig, ax, n: int) -> None:
    """The legend of ``ax``'s labelled artists under the figure: it never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=max(1, min(n, 6)),
                   fontsize=8, frameon=False)  # fmt: skip


def report_figures(report) -> dict[str, bytes]:
    """PNG bytes by file name: ``image_metrics.png``, ``nuclei.png`` and ``fid.png``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    figs = {}
    t = report.table
    sets = report.sets
    slices = sorted(t["z"].unique()) if len(t) else []
    cols = [m for m in ("psnr", "ssim") if f"{m}_{VIEWS[0]}" in t]
    if cols:
        figs["image_metrics.png"] = _image_figure(t, sets, slices, cols)
    if "nuclei_count" in t:
        figs["nuclei.png"] = _nuclei_figure(report, sets, slices)
    if len(report.fid):
        figs["fid.png"] = _fid_figure(report, sets)
    return figs


def _image_figure(t, sets, slices, metrics) -> bytes:
    """Per slice and pooled (last group) PSNR/SSIM per view and set: boxes, and a dot per region."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), len(VIEWS), figsize=(5 * len(VIEWS), 3.4 * len(metrics)),
                             squeeze=False, layout="constrained")  # fmt: skip
    groups = [*slices, "all"]
    width = 0.8 / max(len(sets), 1)
    colors = plt.cm.tab10(np.arange(len(sets)) % 10)
    for i, m in enumerate(metrics):
        for j, v in enumerate(VIEWS):
            ax = axes[i, j]
            for k, s in enumerate(sets):
                sub = t[t["set"] == s]
                data = [_finite(sub[sub["z"] == z][f"{m}_{v}"]) for z in slices]
                data.append(_finite(sub[f"{m}_{v}"]))
                pos = np.arange(len(groups)) + (k - (len(sets) - 1) / 2) * width
                keep = [n for n, d in enumerate(data) if d.size]
                if not keep:
                    continue
                bp = ax.boxplot([data[n] for n in keep], positions=pos[keep], widths=width * 0.9,
                                patch_artist=True, showfliers=False)  # fmt: skip
                for b in bp["boxes"]:
                    b.set_facecolor(colors[k])
                    b.set_alpha(0.7)
                for med in bp["medians"]:
                    med.set(color=colors[k], linewidth=2)
                for n in keep:  # every region as a dot: a box of one or two regions is a line
                    spread = np.linspace(-0.25, 0.25, data[n].size) if data[n].size > 1 else [0.0]
                    ax.scatter(pos[n] + width * np.asarray(spread), data[n], s=12, zorder=3,
                               color=colors[k], edgecolors="black", linewidths=0.4)  # fmt: skip
                ax.plot([], [], color=colors[k], lw=6, label=s)
            ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
            ax.set_xlabel("slice (all = pooled)")
            ax.set_title(f"{m.upper()} {v}")
    _legend_below(fig, axes[0, 0], len(sets))
    fig.suptitle("Image metrics against the real images, per slice and pooled")
    return _png(fig)


def _nuclei_figure(report, sets, slices) -> bytes:
    """Nucleus count per region (real vs each set) and pooled nucleus area distributions."""
    import matplotlib.pyplot as plt

    t = report.table
    a = report.nuclei_areas
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    ax = axes[0]
    names = ["real", *sets]
    colors = plt.cm.tab10(np.arange(len(names)) % 10)
    bars = ["ground truth", *names] if "nuclei_count_truth" in t else names
    width = 0.8 / len(bars)
    for k, s in enumerate(bars):
        if s in ("real", "ground truth"):
            col = "nuclei_count_real" if s == "real" else "nuclei_count_truth"
            sub = t[t["set"] == sets[0]]
        else:
            col, sub = "nuclei_count", t[t["set"] == s]
        color = "0.2" if s == "ground truth" else colors[names.index(s)]
        means = [_finite(sub[sub["z"] == z][col]).mean() if (sub["z"] == z).any() else np.nan
                 for z in slices]  # fmt: skip
        means.append(_finite(sub[col]).mean() if len(sub) else np.nan)
        ax.bar(np.arange(len(slices) + 1) + (k - (len(bars) - 1) / 2) * width, means,
               width=width, color=color, label=s)  # fmt: skip
    ax.set_xticks(np.arange(len(slices) + 1), [*map(str, slices), "all"])
    ax.set_xlabel("slice (all = pooled)")
    ax.set_ylabel("nuclei per region (mean)")
    ax.set_title("Nuclear count")
    _legend_below(fig, ax, len(bars))
    ax = axes[1]
    data = [a[a["set"] == s]["area"].to_numpy(float) for s in names]
    keep = [n for n, d in enumerate(data) if (d > 0).any()]
    if keep:  # log axis: a blurred image's merged blobs would squash the real sizes
        vp = ax.violinplot([np.log10(data[n][data[n] > 0]) for n in keep], positions=keep,
                           showmedians=True)  # fmt: skip
        for body, n in zip(vp["bodies"], keep, strict=True):
            body.set_facecolor(colors[n])
            body.set_alpha(0.6)
        ticks = [t for t in (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
                 if min(data[n][data[n] > 0].min() for n in keep) / 3 <= t
                 <= max(data[n].max() for n in keep) * 3]  # fmt: skip
        ax.set_yticks(np.log10(ticks), [str(t) for t in ticks])
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("nucleus area (px, log scale)")
    method = report.settings.get("nuclei_method")
    ax.set_title(f"Nuclear size, pooled ({method})")
    return _png(fig)


def _fid_figure(report, sets) -> bytes:
    """FID and sFID per slice and pooled, per view and set."""
    import matplotlib.pyplot as plt

    f = report.fid
    kinds = [k for k in ("fid", "sfid") if k in report.settings.get("metrics", ("fid", "sfid"))]
    fig, axes = plt.subplots(len(kinds), len(VIEWS), figsize=(5 * len(VIEWS), 3.2 * len(kinds)),
                             squeeze=False, layout="constrained")  # fmt: skip
    zs = [z for z in dict.fromkeys(f["z"]) if z != "all"] + ["all"]
    width = 0.8 / max(len(sets), 1)
    for i, k in enumerate(kinds):
        for j, v in enumerate(VIEWS):
            ax = axes[i, j]
            for n, s in enumerate(sets):
                sub = f[(f["set"] == s) & (f["view"] == v)].set_index("z")
                vals = [float(sub.loc[z, k]) if z in sub.index else np.nan for z in zs]
                ax.bar(np.arange(len(zs)) + (n - (len(sets) - 1) / 2) * width, vals,
                       width=width, label=s)  # fmt: skip
            ax.set_xticks(np.arange(len(zs)), zs)
            ax.set_title(f"{k.upper()} {v}")
    _legend_below(fig, axes[0, 0], len(sets))
    return _png(fig)
