"""What pixel-aligned DAPI SSIM rewards: the real tissue displaced by d px vs flat images.

Renders a region of the default phantom (bit-identical to the demo's phantom store) with a
margin, and scores its DAPI with the evaluation's own SSIM (published settings, masked to tissue)
against: itself displaced by d px (the right nuclei, of the right size, density and brightness,
placed d px off), and flat images (black, the tissue's median = its nucleus-free level, its mean).
A generative model conditioned on 16-px gene blocks places nuclei within a block from the
transcripts' spread, not to the pixel: this table shows how close it must get to score above a
flat image.

Run: PYTHONPATH=src python benchmarks/dapi_ssim_placement.py [--region Y0 Y1 X0 X1] [--slices 2,3]
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_teramind.evaluate import ssim
from napari_teramind.phantom import PhantomSpec, render_chunk

#: The demo's generated region (``teramind demo`` prints it).
DEMO_REGION = (832, 1856, 1536, 2560)
SHIFTS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", type=int, nargs=4, default=DEMO_REGION)
    parser.add_argument("--slices", default="2,3", help="comma-separated slices")
    args = parser.parse_args()
    spec = PhantomSpec()
    y0, y1, x0, x1 = args.region
    m = max(SHIFTS)
    if y0 < m or x0 < m or y1 + m > spec.height or x1 + m > spec.width:
        raise SystemExit(f"the region needs a {m}-px margin inside the {spec.height} x "
                         f"{spec.width} phantom")  # fmt: skip
    rows: dict[str, list[float]] = {}
    for z in map(int, args.slices.split(",")):
        chunk = render_chunk(spec, z, y0 - m, x0 - m, y1 - y0 + 2 * m, x1 - x0 + 2 * m)
        dapi = chunk.images[0]
        inner = (slice(m, m + y1 - y0), slice(m, m + x1 - x0))
        real, tissue = dapi[inner], chunk.regions[inner] > 0
        for d in SHIFTS:
            moved = dapi[m + d : m + d + y1 - y0, m : m + x1 - x0]
            rows.setdefault(f"real displaced {d:2d} px", []).append(ssim(real, moved, tissue))
        for name, level in (
            ("flat black (0)", 0.0),
            ("flat tissue median", np.median(real[tissue])),
            ("flat tissue mean", real[tissue].mean()),
        ):
            flat = np.full_like(real, round(float(level)))
            rows.setdefault(name, []).append(ssim(real, flat, tissue))
    print(f"DAPI SSIM (published settings, masked to tissue), region {tuple(args.region)}, "
          f"slices {args.slices}")  # fmt: skip
    for name, v in rows.items():
        print(f"  {name:24s} {np.mean(v):.3f}  ({', '.join(f'{x:.3f}' for x in v)})")


if __name__ == "__main__":
    main()
