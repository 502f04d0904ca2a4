"""Classical nuclei segmentation against the default phantom's ground-truth nuclei.

Tiles every slice of the default phantom (8 x 2048 x 3072 px) into 1,024-px regions, renders
each (bit-identical to the phantom store), segments DAPI with the classical fallback and compares
count and mean area with the ground truth. Prints per-slice and pooled figures.

Run: PYTHONPATH=src python benchmarks/evaluate_nuclei_phantom.py [--slices 0,1,...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_teramind.evaluate import compare_with_phantom
from napari_teramind.phantom import PhantomSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", default=None, help="comma-separated slices (all)")
    parser.add_argument("--region", type=int, default=1024)
    args = parser.parse_args()
    spec = PhantomSpec()
    slices = range(spec.n_slices) if args.slices is None else map(int, args.slices.split(","))
    rows = []
    t0 = time.perf_counter()
    for z in slices:
        for y0 in range(0, spec.height, args.region):
            for x0 in range(0, spec.width, args.region):
                box = (
                    y0,
                    min(y0 + args.region, spec.height),
                    x0,
                    min(x0 + args.region, spec.width),
                )
                r = compare_with_phantom(spec, z, box)
                if r["count_true"] < 100:  # mostly background
                    continue
                rows.append((z, *box, r))
                print(f"z{z} y{box[0]}-{box[1]} x{box[2]}-{box[3]}: true {r['count_true']:5d} "
                      f"found {r['count_found']:5d} ({100 * r['count_error']:+.1f}%), area "
                      f"{r['area_true']:.1f} vs {r['area_found']:.1f} px "
                      f"({100 * r['area_error']:+.1f}%)")  # fmt: skip
    true = sum(r[-1]["count_true"] for r in rows)
    found = sum(r[-1]["count_found"] for r in rows)
    ce = np.array([r[-1]["count_error"] for r in rows])
    ae = np.array([r[-1]["area_error"] for r in rows])
    print(f"\n{len(rows)} regions, {time.perf_counter() - t0:.0f} s")
    print(f"pooled count: true {true}, found {found} ({100 * (found - true) / true:+.1f}%)")
    print(
        f"per-region count error: mean {100 * ce.mean():+.1f}%, mean |.| "
        f"{100 * np.abs(ce).mean():.1f}%, worst {100 * ce[np.abs(ce).argmax()]:+.1f}%"
    )
    print(
        f"per-region mean-area error: mean {100 * ae.mean():+.1f}%, mean |.| "
        f"{100 * np.abs(ae).mean():.1f}%, worst {100 * ae[np.abs(ae).argmax()]:+.1f}%"
    )


if __name__ == "__main__":
    main()
