"""Biological check of in-silico perturbation: knock out Nr4a2 and Th in the SN/VTA.

Usage::

    python benchmarks/perturb_dopa.py                                    # bundled model, CPU
    python benchmarks/perturb_dopa.py --phantom /tmp/phantom.zarr --seeds 0 1 2
    python benchmarks/perturb_dopa.py --device cuda --figure docs/images/perturb-dopa.png

The default phantom (8 x 2048 x 3072 px, written once if missing) plants the DOPA program in the
SN/VTA: 76 % of its nuclei are midbrain dopaminergic neurons (Th 20, Nr4a2 12, Slc6a3 12, ...
transcripts per nucleus), large (radius 6 px) and dim (DAPI 120), where the other cell types of
the region are smaller (radius 2.8-4.4 px) and brighter (135-215). A model that learned the
program should, when Nr4a2 and Th are knocked out there, draw fewer DOPA-like nuclei: a smaller
mean nucleus area and a brighter nuclear DAPI inside the SN/VTA, and little change outside it.

For each seed the script generates the region unedited and with both genes knocked out inside
the SN/VTA (the same noise), counts nuclei with the classical counter, and prints (and writes as
JSON) the change inside and outside the SN/VTA. The seed-to-seed change of the unedited images
(seed s vs seed s + 1000) is the noise floor of the figures. The ground truth of the region (the
phantom's own nuclei) is printed beside them: DOPA neurons vs the other SN/VTA types.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_teramind.perturb import Knockout, morphometric_change, perturb
from napari_teramind.perturb.api import read_images
from napari_teramind.phantom import PhantomSpec, planted_mask, spec_of, write_phantom

REGION = (1344, 1536, 1088, 1344)  # the left SN/VTA lobe of the default phantom, 192 x 256 px
SLICES = (2, 3)
GENES = ("Nr4a2", "Th")


def ground_truth(phantom, region) -> dict:
    """Planted nuclei of the SN/VTA in the region: DOPA neurons vs the other types."""
    from napari_teramind.phantom import ground_truth_nuclei
    from napari_teramind.phantom.programs import CELL_TYPE_INDEX

    spec = spec_of(phantom)
    dopa = CELL_TYPE_INDEX["midbrain dopaminergic neuron"]
    y0, y1, x0, x1 = region
    out = {}
    for z in SLICES:
        t = ground_truth_nuclei(spec, z, y0, x0, y1 - y0, x1 - x0)
        m = planted_mask(phantom, "SN/VTA", z, (y0, x0, y1 - y0, x1 - x0), blocks=False)
        iy = np.clip(np.floor(t["y"]).astype(int) - y0, 0, y1 - y0 - 1)
        ix = np.clip(np.floor(t["x"]).astype(int) - x0, 0, x1 - x0 - 1)
        inside = m[iy, ix]
        is_dopa = t["cell_type"] == dopa
        out[z] = {
            "nuclei": int(inside.sum()),
            "dopa_fraction": float(is_dopa[inside].mean()),
            "area_dopa": float(t["area_px"][inside & is_dopa].mean()),
            "area_other": float(t["area_px"][inside & ~is_dopa].mean()),
            "brightness_dopa": float(t["brightness"][inside & is_dopa].mean()),
            "brightness_other": float(t["brightness"][inside & ~is_dopa].mean()),
        }
    return out


def masks(phantom, region) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The knockout mask (SN/VTA gene blocks of the pair's gene slices) and per-slice px masks."""
    y0, y1, x0, x1 = region
    window = (y0, x0, y1 - y0, x1 - x0)
    k = SLICES[0] // 2
    blocks = np.zeros(((y1 - y0) // 16, (x1 - x0) // 16), bool)
    for z in range(2 * k - 1, 2 * k + 3):
        blocks |= planted_mask(phantom, "SN/VTA", z, window)
    px = {z: planted_mask(phantom, "SN/VTA", z, window, blocks=False) for z in SLICES}
    return blocks, px


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantom", default="/tmp/teramind-phantom-default.zarr")
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default="/tmp/teramind-perturb-dopa")
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--figure", default=None, help="PNG of unedited / edited / difference")
    args = ap.parse_args()

    phantom = Path(args.phantom)
    if not phantom.exists():
        t = time.perf_counter()
        write_phantom(phantom, PhantomSpec(), workers=2)
        print(f"wrote the default phantom {phantom} in {time.perf_counter() - t:.0f} s")
    block_mask, px_masks = masks(phantom, REGION)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    kw = dict(steps=args.steps, device=args.device, block_px=512)
    results = {"region": REGION, "slices": SLICES, "genes": GENES, "model": args.model,
               "steps": args.steps, "mask_blocks": int(block_mask.sum()), "runs": []}  # fmt: skip
    results["truth"] = ground_truth(phantom, REGION)
    for z, t in results["truth"].items():
        print(f"truth z={z}: {t}")

    for seed in args.seeds:
        t = time.perf_counter()
        base = perturb(phantom, args.model, REGION, SLICES, [], seed=seed,
                       output=work / f"unedited-{seed}.zarr", **kw)  # fmt: skip
        t_gen = time.perf_counter() - t
        edits = [Knockout(g, block_mask) for g in GENES]
        ko = perturb(phantom, args.model, REGION, SLICES, edits, seed=seed,
                     output=work / f"knockout-{seed}.zarr", **kw)  # fmt: skip
        other = perturb(phantom, args.model, REGION, SLICES, [], seed=seed + 1000,
                        output=work / f"unedited-{seed + 1000}.zarr", **kw)  # fmt: skip
        run = {"seed": seed, "seconds_per_generation": t_gen}
        for name, b in (("knockout", ko), ("other seed", other)):
            rows = morphometric_change(base, b, REGION, SLICES, source=phantom)
            run[name] = [r.to_dict() for r in rows]
            for r in rows:
                if r.region in ("SN/VTA", "all", "midbrain", "edited"):
                    area = f"{r.area_unedited:.1f}->{r.area_edited:.1f}"
                    dapi = f"{r.dapi_unedited:.1f}->{r.dapi_edited:.1f}"
                    print(f"seed {seed} {name:<10} z={r.slice} {r.region:<10} "
                          f"n {r.count_unedited}->{r.count_edited}  "
                          f"area {area} ({100 * r.area_change:+.1f}%)  "
                          f"DAPI {dapi} ({100 * r.dapi_change:+.1f}%)")  # fmt: skip
        a = read_images(base).astype(np.int16)
        d = read_images(ko).astype(np.int16) - a
        for i, z in enumerate(SLICES):
            m = px_masks[z]
            run.setdefault("mean_abs_diff", {})[z] = {
                "SN/VTA": float(np.abs(d[0, i][m]).mean()),
                "outside": float(np.abs(d[0, i][~m]).mean()),
            }
        print(f"seed {seed} mean |DAPI diff| {run['mean_abs_diff']}  ({t_gen:.0f} s/generation)")
        results["runs"].append(run)
        if args.figure and seed == args.seeds[0]:
            figure(a, read_images(ko), px_masks, Path(args.figure))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


def figure(unedited: np.ndarray, edited: np.ndarray, px_masks, path: Path) -> None:
    """Unedited / edited / difference DAPI of the first slice, the SN/VTA outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = px_masks[SLICES[0]]
    d = edited[0, 0].astype(int) - unedited[0, 0].astype(int)
    lim = max(1, int(np.percentile(np.abs(d), 99.5)))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    panels = ((axes[0], unedited[0, 0], "unedited DAPI"),
              (axes[1], edited[0, 0], f"{' + '.join(GENES)} knocked out in SN/VTA"))  # fmt: skip
    for ax, img, title in panels:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.contour(m, levels=[0.5], colors="gold", linewidths=0.8)
        ax.set_title(title)
    im = axes[2].imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].contour(m, levels=[0.5], colors="k", linewidths=0.8)
    axes[2].set_title("edited - unedited")
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure {path}")


if __name__ == "__main__":
    main()
