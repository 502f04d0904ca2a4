"""Fidelity per sampling scheme: seam ratios, cost, nuclei and PSNR/SSIM, side by side.

Usage::

    python benchmarks/fidelity.py                          # 512 px region, 15 steps, 1 thread
    python benchmarks/fidelity.py --size 256 --steps 6     # quicker
    python benchmarks/fidelity.py --schemes collage shifted-fused --png crops.png
    python benchmarks/fidelity.py --schemes shifted-fused --fused-steps 2 3 4 6 15

On a phantom the bundled model never trained on (seed 1; the bundled model trained on the
default phantom, seed 0, see ``train/bundled.py``), one region of ``--size`` px chosen like the
demo's (DOPA tissue mixed with other tissue, origin on the 64 px grid) is generated with every
scheme (same model, seed, genes, block size and threads), and the script prints per scheme:

* the seam ratio (worst residue mod 64 / median residue, rows and columns pooled) per stain,
  with the steps at 0 and 32 mod 64 (the collage lattice) over the median, next to the real
  image's own figures over the same region;
* seconds per output patch (one 64 px patch of one slice pair, all steps) and the cost ratio
  to the collage scheme;
* nuclei count and mean area (classical counter) vs the real image and the phantom's truth;
* PSNR and SSIM against the real image, next to the mean-image baseline.

``--png`` saves a 1:1 crop real | one column per scheme (DAPI above PolyT) to look at.
``--fused-steps`` studies how many of the last steps ``shifted-fused`` fuses (one row per
count; the library's default is :data:`~napari_teramind.generate.schemes.FUSED_STEPS`, which
the study sets for its rows only); ``--gene-blind`` generates without genes (what the
sampler and the model draw with no gene edges to follow).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_teramind.demo import demo_region
from napari_teramind.evaluate import image_metrics, nuclei_stats, seam_ratio, segment_nuclei
from napari_teramind.evaluate.nuclei import ground_truth_stats
from napari_teramind.evaluate.pipeline import _trivial
from napari_teramind.evaluate.regions import Region, tissue_mask
from napari_teramind.generate import SCHEMES, generate_roi, schemes
from napari_teramind.generate.numerics import Numerics
from napari_teramind.model import resolve_model
from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.store import BrainStore
from napari_teramind.store.compute import compute

#: The bundled model trained on the default phantom (seed 0); this one it never saw.
HELD_OUT_SEED = 1


def held_out_phantom(path: Path, seed: int) -> BrainStore:
    """The default-size phantom of ``seed`` at ``path`` (written once, then reused)."""
    spec = PhantomSpec(seed=seed)
    try:
        store = BrainStore.open(path)
        if store.metadata.get("phantom", {}).get("spec") == spec.to_dict():
            return store
    except Exception:  # missing or incomplete: write it
        pass
    return write_phantom(path, spec, overwrite=True, workers=1, executor="thread")


def seam_line(img: np.ndarray, origin: tuple[int, int]) -> tuple[float, float, float]:
    """``(ratio, step at 0 mod 64, step at 32 mod 64)``, the latter two over the median."""
    s = seam_ratio(img, origin=origin)
    return s.ratio, s.at(0), s.at(32)


def patch_cost(scheme: str, steps: int, n: int) -> float:
    """Model patches per step of ``scheme`` over ``n x n`` output patches, over the collage's.

    A pass on a grid moved in an axis needs one more patch row (or column) there; encoder
    ``(n + 1 + s)`` and decoder ``(n + s)`` patches per axis, counted alike (as in
    docs/generation.md). Exact by construction, unlike wall times on a shared machine.
    """

    def patches(phase: tuple[int, int]) -> int:
        sy, sx = int(phase[0] != 0), int(phase[1] != 0)
        return (n + 1 + sy) * (n + 1 + sx) + (n + sy) * (n + sx)

    grids = [schemes.step_grids(scheme, k, steps) for k in range(steps)]
    total = sum(patches(q) for g in grids for q in g.passes)
    return total / (steps * patches((0, 0)))


def save_crops(path: Path, columns: dict[str, np.ndarray], crop: int) -> None:
    """PNG of 1:1 crops: one column per image set, DAPI above PolyT, 8 px gaps."""
    from PIL import Image

    gap = 8
    names = list(columns)
    canvas = np.full((2 * crop + gap, len(names) * (crop + gap) - gap), 255, np.uint8)
    for i, name in enumerate(names):
        img = columns[name]
        for s in range(2):
            y = s * (crop + gap)
            canvas[y : y + crop, i * (crop + gap) : i * (crop + gap) + crop] = img[s, :crop, :crop]
    Image.fromarray(canvas).save(path)
    print(f"crops (left to right: {' | '.join(names)}; DAPI top, PolyT bottom): {path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantom", type=Path, help="held-out phantom store (written if missing)")
    ap.add_argument("--phantom-seed", type=int, default=HELD_OUT_SEED)
    ap.add_argument("--size", type=int, default=512, help="region side in px (multiple of 64)")
    ap.add_argument("--slice", type=int, default=2, help="slice scored (its pair is generated)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--block-px", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    ap.add_argument("--model", default="bundled")
    ap.add_argument(
        "--fused-steps",
        type=int,
        nargs="+",
        help="shifted-fused: one row per count of fused last steps (a study)",
    )
    ap.add_argument("--gene-blind", action="store_true", help="generate without genes")
    ap.add_argument("--png", type=Path, help="save 1:1 crops real | schemes")
    ap.add_argument("--crop", type=int, default=256, help="crop side of --png")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="teramind-fidelity-"))
    phantom_path = args.phantom or tmp / f"phantom-seed{args.phantom_seed}.zarr"
    store = held_out_phantom(phantom_path, args.phantom_seed)
    spec = PhantomSpec.from_dict(store.metadata["phantom"]["spec"])
    model, info = resolve_model(args.model)
    z = args.slice
    box = demo_region(store, args.size, z)
    y0, y1, x0, x1 = box
    region = Region(z, y0, y1, x0, x1)
    real = compute(store.images()[:, z, y0:y1, x0:x1])
    tissue = tissue_mask(store, region)
    n_patches = (y1 - y0) // 64 * ((x1 - x0) // 64)  # one slice pair
    truth = ground_truth_stats(spec, z, box, tissue)
    real_nuclei = nuclei_stats(segment_nuclei(real[0]), tissue)
    print(f"phantom seed {args.phantom_seed} (held out), slice {z}, region {box} "
          f"({n_patches} patches), {args.steps} steps, block {args.block_px} px, "
          f"{args.threads} thread(s), model {args.model}")  # fmt: skip

    rows = []
    columns = {"real": real}
    sr_real = [seam_line(real[s], (y0, x0)) for s in range(2)]
    rows.append(("real", sr_real, None, None, real_nuclei, image_metrics(real, real, tissue)))
    mean = _trivial("mean", real, tissue)
    rows.append(("mean image", None, None, None, None, image_metrics(real, mean, tissue)))
    runs = [(scheme, None) for scheme in args.schemes]
    if args.fused_steps and "shifted-fused" in args.schemes:
        i = args.schemes.index("shifted-fused")
        runs[i : i + 1] = [("shifted-fused", n) for n in args.fused_steps]
    numerics = Numerics(threads=args.threads)
    for scheme, fused in runs:
        name = scheme if fused is None else f"fused last {fused}"
        out = tmp / f"{name.replace(' ', '-')}.zarr"
        default_fused = schemes.FUSED_STEPS
        schemes.FUSED_STEPS = default_fused if fused is None else fused
        t0 = time.perf_counter()
        try:
            for item in generate_roi(store, model, box, [z], seed=args.seed, steps=args.steps,
                                     gene_names=info.gene_names, output=out,
                                     block_px=args.block_px, preview=False, scheme=scheme,
                                     gene_blind=args.gene_blind,
                                     numerics=numerics):  # fmt: skip
                last = item
            cost = patch_cost(scheme, args.steps, args.size // 64)
        finally:
            schemes.FUSED_STEPS = default_fused
        seconds = time.perf_counter() - t0
        scheme = name
        gen = compute(BrainStore.open(last.output).images()[:, z, y0:y1, x0:x1])
        columns[scheme] = gen
        sr = [seam_line(gen[s], (y0, x0)) for s in range(2)]
        nuc = nuclei_stats(segment_nuclei(gen[0]), tissue)
        rows.append((scheme, sr, seconds / n_patches, cost, nuc, image_metrics(real, gen, tissue)))
        print(f"  {scheme}: {seconds:.1f} s", flush=True)

    base = next((r[2] for r in rows if r[0] == "collage"), None)
    print()
    print(
        "seam ratio = worst residue mod 64 / median; @0, @32 = those residues / median; "
        "cost = s/patch over collage's (wall time), patch = by model patches (exact)"
    )
    print(f"{'set':14s} {'DAPI ratio @0 @32':>20s} {'PolyT ratio @0 @32':>21s} "
          f"{'s/patch':>8s} {'cost':>5s} {'patch':>5s} {'nuclei':>6s} {'area':>6s} {'solid':>5s} "
          f"{'PSNR D/P':>11s} {'SSIM D/P':>11s}")  # fmt: skip
    print(f"{'truth':14s} {'':>20s} {'':>21s} {'':>8s} {'':>5s} {'':>5s} "
          f"{truth['count']:6.0f} {truth['area_mean']:6.1f}")  # fmt: skip
    for name, sr, spp, by_patches, nuc, im in rows:
        d = f"{sr[0][0]:5.2f} {sr[0][1]:5.2f} {sr[0][2]:5.2f}" if sr else ""
        p = f"{sr[1][0]:5.2f} {sr[1][1]:5.2f} {sr[1][2]:5.2f}" if sr else ""
        cost = f"{spp / base:5.2f}" if spp and base else ""
        cost += f" {by_patches:5.2f}" if by_patches else ""
        n = (
            f"{nuc['count']:6.0f} {nuc['area_mean']:6.1f} {nuc['solidity_mean']:5.3f}"
            if nuc
            else ""
        )
        ps = f"{im['psnr_dapi']:5.1f}/{im['psnr_polyt']:5.1f}"
        ss = f"{im['ssim_dapi']:5.3f}/{im['ssim_polyt']:5.3f}"
        print(f"{name:14s} {d:>20s} {p:>21s} {spp or 0:8.3f} {cost:>5s} {n:>19s} "
              f"{ps:>11s} {ss:>11s}")  # fmt: skip
    goal = [max(1.15, sr_real[s][0] + 0.05) for s in range(2)]
    print(f"goal: seam ratio <= {goal[0]:.2f} (DAPI), {goal[1]:.2f} (PolyT); cost <= 1.30")
    if args.png:
        save_crops(args.png, columns, min(args.crop, args.size))


if __name__ == "__main__":
    main()
