"""Fidelity per sampling scheme: seam ratios, cost, nuclei and PSNR/SSIM, side by side.

Usage::

    python benchmarks/fidelity.py                          # 512 px region, 15 steps, 1 thread
    python benchmarks/fidelity.py --size 256 --steps 6     # quicker
    python benchmarks/fidelity.py --schemes collage shifted-fused --png crops.png
    python benchmarks/fidelity.py --schemes shifted-fused --fused-steps 2 3 4 6 15
    python benchmarks/fidelity.py --schemes collage shifted-fused-4 --quad-steps 1 2
    python benchmarks/fidelity.py --schemes shifted-fused-4 --models bundled new=runs/b random

On a phantom the bundled model never trained on (seed 1; the bundled model trained on the
default phantom, seed 0, see ``train/bundled.py``), one region of ``--size`` px chosen like the
demo's (DOPA tissue mixed with other tissue, origin on the 64 px grid) is generated with every
scheme and every model of ``--models`` (same seed, genes, block size and threads; ``random`` is a
randomly initialised network of the first model's configuration, the null), and the script
prints per model and scheme:

* the seam ratio (worst residue mod 64 / median residue, rows and columns pooled) per stain,
  with the steps at 0 and 32 mod 64 (the collage lattice) over the median, next to the real
  image's own figures over the same region;
* seconds per output patch (one 64 px patch of one slice pair, all steps) and the cost ratio
  to the collage scheme;
* nuclei count, mean area and solidity (classical counter) vs the real image and the
  phantom's truth;
* the SN/VTA's large cells: nuclei of at least :data:`LARGE_AREA_PX` centred in the DOPA
  tissue, against the planted ones (truth) and those segmented in the real image;
* PSNR (DAPI, PolyT) and SSIM (DAPI, PolyT, merged) against the real image, next to the
  mean-image and blurred-real baselines.

``--png`` saves a 1:1 crop real | one column per scheme (DAPI above PolyT) to look at.
``--fused-steps`` studies how many of the last steps ``shifted-fused`` fuses (one row per
count; the library's default is :data:`~napari_teramind.generate.schemes.FUSED_STEPS`, which
the study sets for its rows only), ``--quad-steps`` the same for the four grids of
``shifted-fused-4`` (:data:`~napari_teramind.generate.schemes.QUAD_STEPS`); ``--gene-blind``
generates without genes (what the sampler and the model draw with no gene edges to follow).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_teramind.cli._args import add_region_argument
from napari_teramind.demo import demo_region
from napari_teramind.evaluate import image_metrics, nuclei_stats, seam_ratio, segment_nuclei
from napari_teramind.evaluate.nuclei import ground_truth_stats
from napari_teramind.evaluate.pipeline import _trivial
from napari_teramind.evaluate.regions import Region, tissue_mask
from napari_teramind.generate import SCHEMES, generate_roi, schemes
from napari_teramind.generate.numerics import Numerics
from napari_teramind.model import ModelConfig, TeraMindUNet, resolve_model
from napari_teramind.phantom import PhantomSpec, ground_truth_nuclei, planted_mask, write_phantom
from napari_teramind.selection import parse_region
from napari_teramind.store import BrainStore
from napari_teramind.store.compute import compute

#: The bundled model trained on the default phantom (seed 0); this one it never saw.
HELD_OUT_SEED = 1

#: Area (px) from which a nucleus counts as one of the SN/VTA's large cells: the planted midbrain
#: dopaminergic neurons are ellipses of about 113 px (radius 6 px, aspect 1.3), every other
#: SN/VTA type about 60-66 px or less (``phantom/programs.py``).
LARGE_AREA_PX = 80

#: Torch seed of the randomly initialised model (``--models random``), as in interactions.py.
RANDOM_SEED = 12345


def large_cells(labels: np.ndarray, mask: np.ndarray) -> int:
    """Segmented nuclei of at least :data:`LARGE_AREA_PX` whose centroid lies in ``mask``."""
    from skimage.measure import regionprops_table

    if labels.max() == 0:
        return 0
    props = regionprops_table(labels, properties=("area", "centroid"))
    cy = np.clip(np.asarray(props["centroid-0"]).astype(int), 0, labels.shape[0] - 1)
    cx = np.clip(np.asarray(props["centroid-1"]).astype(int), 0, labels.shape[1] - 1)
    big = np.asarray(props["area"]) >= LARGE_AREA_PX
    return int((big & mask[cy, cx]).sum())


def large_cells_truth(spec: PhantomSpec, z: int, box, mask: np.ndarray) -> int:
    """Planted nuclei of at least :data:`LARGE_AREA_PX` centred in ``mask`` (over ``box``)."""
    y0, y1, x0, x1 = box
    t = ground_truth_nuclei(spec, z, y0, x0, y1 - y0, x1 - x0)
    iy = np.clip(np.floor(t["y"]).astype(int) - y0, 0, y1 - y0 - 1)
    ix = np.clip(np.floor(t["x"]).astype(int) - x0, 0, x1 - x0 - 1)
    return int(((np.asarray(t["area_px"]) >= LARGE_AREA_PX) & mask[iy, ix]).sum())


def load_models(specs: list[str]) -> list[tuple[str, object, object]]:
    """``(label, model, info)`` per ``--models`` entry (``LABEL=SPEC`` names the row).

    ``random`` is a network of the first real model's configuration (the bundled one when
    ``random`` comes first) initialised with torch seed :data:`RANDOM_SEED`.
    """
    named = [m.split("=", 1) if "=" in m else (m, m) for m in specs]
    loaded: list[tuple[str, object, object]] = []
    for label, spec in named:
        if spec != "random":
            model, info = resolve_model(spec)
            loaded.append((label, model, info))
    if not loaded:
        loaded.append(("bundled",) + tuple(resolve_model("bundled")))  # type: ignore[arg-type]
    _, first, first_info = loaded[0]
    out = []
    for label, spec in named:
        if spec == "random":
            torch.manual_seed(RANDOM_SEED)
            rnd = TeraMindUNet(ModelConfig.from_dict(first.config.to_dict())).eval()
            out.append((label, rnd, first_info))
        else:
            out.append(next(m for m in loaded if m[0] == label))
    return out


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


def fixed_region(values) -> tuple[int, int, int, int]:
    """``--region``: a square whose origin and side are multiples of 64 px (the seam measure's)."""
    y0, y1, x0, x1 = parse_region(values)
    if y1 - y0 != x1 - x0 or any(v % 64 for v in (y0, y1, x0, x1)):
        raise SystemExit(f"--region {y0} {y1} {x0} {x1}: give a square on the 64 px grid")
    return y0, y1, x0, x1


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
    add_region_argument(
        ap,
        help="a square region on the 64 px grid instead of the demo's choice of one of --size "
        "px (e.g. one holding the SN/VTA, for its large cells)",
    )
    ap.add_argument("--slice", type=int, default=2, help="slice scored (its pair is generated)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--block-px", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    ap.add_argument(
        "--models",
        nargs="+",
        default=["bundled"],
        metavar="MODEL",
        help="models side by side: 'bundled', 'random' (randomly initialised, the null) or "
        "any checkpoint or run directory; LABEL=MODEL names the row",
    )
    ap.add_argument(
        "--fused-steps",
        type=int,
        nargs="+",
        help="shifted-fused: one row per count of fused last steps (a study)",
    )
    ap.add_argument(
        "--quad-steps",
        type=int,
        nargs="+",
        help="shifted-fused-4: one row per count of four-grid steps before the last (a study)",
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
    models = load_models(args.models)
    z = args.slice
    box = demo_region(store, args.size, z) if args.region is None else fixed_region(args.region)
    args.size = box[1] - box[0]
    y0, y1, x0, x1 = box
    region = Region(z, y0, y1, x0, x1)
    real = compute(store.images()[:, z, y0:y1, x0:x1])
    tissue = tissue_mask(store, region)
    n_patches = (y1 - y0) // 64 * ((x1 - x0) // 64)  # one slice pair
    truth = ground_truth_stats(spec, z, box, tissue)
    dopa = planted_mask(spec, "DOPA", z=z, window=(y0, x0, y1 - y0, x1 - x0), blocks=False)
    real_labels = segment_nuclei(real[0])
    real_nuclei = nuclei_stats(real_labels, tissue)
    print(f"phantom seed {args.phantom_seed} (held out), slice {z}, region {box} "
          f"({n_patches} patches, DOPA tissue {dopa.mean():.0%}), {args.steps} steps, "
          f"block {args.block_px} px, {args.threads} thread(s), "
          f"models {' '.join(args.models)}")  # fmt: skip

    rows = []
    columns = {"real": real}
    sr_real = [seam_line(real[s], (y0, x0)) for s in range(2)]
    truth["large"] = large_cells_truth(spec, z, box, dopa)
    real_nuclei["large"] = large_cells(real_labels, dopa)
    rows.append(("real", sr_real, None, None, real_nuclei, image_metrics(real, real, tissue)))
    for base_name in ("mean", "blur"):
        trivial = _trivial(base_name, real, tissue)
        label = "mean image" if base_name == "mean" else "blurred real"
        rows.append((label, None, None, None, None, image_metrics(real, trivial, tissue)))
    runs = [(scheme, None) for scheme in args.schemes]
    studies = (("shifted-fused", args.fused_steps), ("shifted-fused-4", args.quad_steps))
    for study, counts in studies:
        if counts and study in args.schemes:
            i = [r[0] for r in runs].index(study)
            runs[i : i + 1] = [(study, n) for n in counts]
    runs = [(m, scheme, fused) for m in models for scheme, fused in runs]
    numerics = Numerics(threads=args.threads)
    for (label, model, info), scheme, fused in runs:
        name = scheme
        if fused is not None:
            name = f"fused last {fused}" if scheme == "shifted-fused" else f"4 grids x {fused}"
        if len(models) > 1:
            name = f"{label} {name}"
        out = tmp / f"{name.replace(' ', '-').replace('/', '-')}.zarr"
        # a study row sets the count of fused steps of its scheme for its own run only
        knob = "FUSED_STEPS" if scheme == "shifted-fused" else "QUAD_STEPS"
        default_fused = getattr(schemes, knob)
        setattr(schemes, knob, default_fused if fused is None else fused)
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
            setattr(schemes, knob, default_fused)
        seconds = time.perf_counter() - t0
        gen = compute(BrainStore.open(last.output).images()[:, z, y0:y1, x0:x1])
        columns[name] = gen
        sr = [seam_line(gen[s], (y0, x0)) for s in range(2)]
        labels = segment_nuclei(gen[0])
        nuc = {**nuclei_stats(labels, tissue), "large": large_cells(labels, dopa)}
        rows.append((name, sr, seconds / n_patches, cost, nuc, image_metrics(real, gen, tissue)))
        print(f"  {name}: {seconds:.1f} s", flush=True)

    base = next((r[2] for r in rows if r[0].endswith("collage")), None)
    print()
    print(
        "seam ratio = worst residue mod 64 / median; @0, @32 = those residues / median; "
        "cost = s/patch over collage's (wall time), patch = by model patches (exact); "
        f"large = nuclei >= {LARGE_AREA_PX} px in the DOPA tissue; SSIM D/P/M: DAPI, PolyT, merged"
    )
    width = max(14, *(len(r[0]) for r in rows))
    print(f"{'set':{width}s} {'DAPI ratio @0 @32':>20s} {'PolyT ratio @0 @32':>21s} "
          f"{'s/patch':>8s} {'cost':>5s} {'patch':>5s} {'nuclei':>6s} {'area':>6s} {'solid':>5s} "
          f"{'large':>5s} {'PSNR D/P':>11s} {'SSIM D/P/M':>17s}")  # fmt: skip
    t = f"{truth['count']:6.0f} {truth['area_mean']:6.1f} {'':>5s} {truth['large']:5d}"
    print(f"{'truth':{width}s} {'':>20s} {'':>21s} {'':>8s} {'':>5s} {'':>5s} {t}")
    for name, sr, spp, by_patches, nuc, im in rows:
        d = f"{sr[0][0]:5.2f} {sr[0][1]:5.2f} {sr[0][2]:5.2f}" if sr else ""
        p = f"{sr[1][0]:5.2f} {sr[1][1]:5.2f} {sr[1][2]:5.2f}" if sr else ""
        cost = f"{spp / base:5.2f}" if spp and base else ""
        cost += f" {by_patches:5.2f}" if by_patches else ""
        n = (
            f"{nuc['count']:6.0f} {nuc['area_mean']:6.1f} {nuc['solidity_mean']:5.3f} "
            f"{nuc['large']:5d}"
            if nuc
            else ""
        )
        ps = f"{im['psnr_dapi']:5.1f}/{im['psnr_polyt']:5.1f}"
        ss = f"{im['ssim_dapi']:5.3f}/{im['ssim_polyt']:5.3f}/{im['ssim_merged']:5.3f}"
        print(f"{name:{width}s} {d:>20s} {p:>21s} {spp or 0:8.3f} {cost:>5s} {n:>25s} "
              f"{ps:>11s} {ss:>17s}")  # fmt: skip
    goal = [max(1.15, sr_real[s][0] + 0.05) for s in range(2)]
    print(f"goal: seam ratio <= {goal[0]:.2f} (DAPI), {goal[1]:.2f} (PolyT); cost <= 1.30; "
          f"large cells within 20 % of truth ({truth['large']}); merged SSIM and PolyT PSNR "
          "above both baselines")  # fmt: skip
    if args.png:
        save_crops(args.png, columns, min(args.crop, args.size))


if __name__ == "__main__":
    main()
