"""Do attention statistics (or perturbations) find planted gene-gene interactions?

Usage::

    python benchmarks/interactions.py train --out /work/train-runs/interaction --steps 400 \
        [--high-fraction 0.3] [--expression tissue] [--layouts 0,3,4]
    python benchmarks/interactions.py score --out /work/train-runs/interaction \
        [--score-dir DIR] [--checkpoint CKPT] [--models trained,random] [--skip-attention] \
        [--phantom-seeds 0,1,2]

``train`` writes the interaction phantom (``PhantomSpec(interactions=True)``: 4 x 1024 x 1536
px, the 6 required genes + the 20 interaction genes) to ``OUT/phantom.zarr`` and trains the
``tiny`` preset (``--preset small``: the wider one; ``--ema-decay``: an EMA, whose weights
``score`` uses) on it with the bundled recipe (:func:`~napari_teramind.train.bundled.
bundled_train_config`, fewer steps, slice 3 held out) into ``OUT/run`` (resumable).
``--high-fraction`` and ``--expression`` set the design's ``interaction_high_fraction`` (0.3:
the sparser one) and ``interaction_expression`` (``tissue``: counts that say nothing of nuclei);
``--layouts`` trains on more seeds of the same design (``OUT/phantom-seed<N>.zarr``), so that
what the model learns is the planted rule rather than one layout's chance correlations.

``score`` ranks every planted pair (4 AND, 4 control, 2 additive) by

(a) the published map: mean over the blocks where both genes are expressed of the normalised
    ``all`` channels of ``attention/<pair>`` (log2(1 + G A.E), masked, smoothed);
(b) the attention contrast of :mod:`napari_teramind.attention.contrast` against a randomly
    initialised model null (mean z over the same blocks) and against the gene-identity
    permutation null;
(c) the perturbation interaction score, from the library's
    :func:`~napari_teramind.perturb.interaction_map` (the whole-region generation engine:
    ``f(A,B) - f(A,0) - f(0,B) + f(0,0)`` of generated DAPI, the same noise for all four), on
    ``--regions`` 128 px regions per pair (chosen from the truth alone: in tissue, both-high
    fraction closest to one half) x ``--seeds`` noise seeds, held-out slices 2-3. Defined from
    the planted design, not from any model's answer: the AND phenotype acts only where both
    genes are high, so the score is the Welch t of block ``|I|`` inside the pair's both-high
    mask against tissue blocks away from it (``perturbation``; the model's own second-order
    noise is the reference), with the signed variant along the planted direction measured on
    the phantom's own images (``perturbation_signed``) and the uncalibrated mean ``|I|``
    inside (``perturbation_mean_abs``); see :func:`perturbation_scores`.

With ``--phantom-seeds``, every score is also taken on other seeds of the same
interaction phantom (new layouts, unseen tissue) and the AUCs pool their pairs; ``score`` also
prints how the AND phenotype's share depends on the number of high genes
(:func:`phenotype_by_gene_count`). It prints the ROC AUC of the AND pairs over the controls
for the trained model and for a randomly initialised one (the null: ``TeraMindUNet`` seeded
12345, saved as a checkpoint in the score directory). Everything is resumable (finished
generations are reused); results go to ``SCORE_DIR/score.json`` after every row. Numbers go
to docs/attention.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_teramind.phantom import PhantomSpec, write_phantom
from napari_teramind.phantom.interactions import EXPRESSION_MODES, INTERACTION_PAIRS

SPEC = PhantomSpec(seed=0, n_slices=4, height=1024, width=1536, n_genes=6, interactions=True)
HOLDOUT = (3,)
#: Sampling scheme of the perturbation generations: the one every recorded row used (the
#: library's default until 2026-12-02), so that checkpoints and the random model compare.
SCORE_SCHEME = "shifted-fused"
#: Slices scored: the held-out pair (gene window 1).
SCORE_SLICES = (2, 3)


def _phantom(out: Path, spec: PhantomSpec = SPEC) -> Path:
    """``OUT/phantom.zarr`` (the training phantom, ``SPEC.seed``), or ``OUT/phantom-seed<N>.zarr``.

    Written from ``spec`` when absent or incomplete (deterministic from the spec); a store
    that exists must have been written from ``spec``.
    """
    from napari_teramind.phantom import spec_of
    from napari_teramind.store import BrainStore

    path = out / ("phantom.zarr" if spec.seed == SPEC.seed else f"phantom-seed{spec.seed}.zarr")
    try:
        BrainStore.open(path)
    except Exception:
        write_phantom(path, spec, overwrite=True, workers=1)
    found = spec_of(path)
    if found != spec:
        have, want = found.to_dict(), spec.to_dict()
        keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        diff = ", ".join(f"{k} {have.get(k)} (wanted {want.get(k)})" for k in keys)
        raise SystemExit(f"{path} holds another phantom ({diff}); remove it or pick another OUT")
    return path


def cmd_train(args: argparse.Namespace) -> None:
    from napari_teramind.train.bundled import bundled_train_config
    from napari_teramind.train.loop import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    design = dataclasses.replace(
        SPEC,
        interaction_high_fraction=args.high_fraction,
        interaction_expression=args.expression,
    )
    layouts = _int_list(args.layouts)
    if SPEC.seed not in layouts:
        raise SystemExit(f"--layouts must include seed {SPEC.seed} (OUT/phantom.zarr, scored)")
    stores = [_phantom(out, dataclasses.replace(design, seed=s)) for s in layouts]
    cfg = bundled_train_config(
        stores[0], steps=args.steps, cooldown_steps=args.cooldown, ema_decay=args.ema_decay
    )
    cfg = dataclasses.replace(
        cfg,
        preset=args.preset,
        stores=tuple(str(p) for p in stores),
        holdout_slices=HOLDOUT,
        checkpoint_every=args.checkpoint_every,
        crop=args.crop,
        batch_size=args.batch,
    )
    t0 = time.perf_counter()

    def progress(step: int, total: int, logs: dict[str, float]) -> None:
        if step % 10 == 0:
            print(f"step {step}/{total} loss {logs.get('loss', float('nan')):.4f} "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip

    res = train(cfg, out / "run", device="cpu", progress=progress)
    print(f"trained to step {res.step} in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default="/work/train-runs/interaction")
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--cooldown", type=int, default=100)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--crop", type=int, default=256, help="crop px (the bundled recipe: 256)")
    t.add_argument("--batch", type=int, default=4, help="crops per step (bundled: 4)")
    t.add_argument("--checkpoint-every", type=int, default=50)
    t.add_argument(
        "--preset",
        choices=("tiny", "small"),
        default="tiny",
        help="model preset (default tiny, the bundled model's; small: 4x the width)",
    )
    t.add_argument(
        "--ema-decay",
        type=float,
        default=0.0,
        help="TrainConfig.ema_decay (default 0: none; e.g. 0.999); score uses the EMA weights",
    )
    t.add_argument(
        "--expression",
        choices=EXPRESSION_MODES,
        default=SPEC.interaction_expression,
        help="PhantomSpec.interaction_expression (default nucleus; tissue: no interaction "
        "gene tells where nuclei are)",
    )
    t.add_argument(
        "--layouts",
        default=str(SPEC.seed),
        help="comma list of phantom seeds to train on (default: 0 only; e.g. 0,3,4: three "
        "layouts of one design, so that no chance correlation of one layout's fields is "
        "learnt; score's seeds 1 and 2 stay unseen)",
    )
    t.add_argument(
        "--high-fraction",
        type=float,
        default=SPEC.interaction_high_fraction,
        help="PhantomSpec.interaction_high_fraction of the phantom (default 0.5; 0.3: the AND "
        "phenotype on about a third of the tissue); score takes it from OUT/phantom.zarr",
    )
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("score")
    s.add_argument("--out", default="/work/train-runs/interaction", help="the train --out")
    s.add_argument("--score-dir", help="where score.json and the generations go (default: --out)")
    s.add_argument("--checkpoint", help="score this checkpoint (default: the run's latest)")
    s.add_argument("--models", help="comma list of 'trained', 'random' (default: both)")
    s.add_argument("--null-draws", type=int, default=4)
    s.add_argument("--skip-attention", action="store_true", help="perturbation scores only")
    s.add_argument(
        "--keep-store",
        action="store_true",
        help="reuse SCORE_DIR/score.zarr (attention maps of an earlier run)",
    )
    s.add_argument("--regions", type=int, default=2, help="regions per pair (0: no perturbation)")
    s.add_argument("--region-px", type=int, default=REGION_PX)
    s.add_argument("--seeds", type=int, default=2, help="noise seeds per region")
    s.add_argument("--ddim-steps", type=int, default=8)
    s.add_argument(
        "--scheme",
        default=SCORE_SCHEME,
        help=f"sampling scheme of the perturbations (default {SCORE_SCHEME}: the "
        "scheme of every row recorded so far, so checkpoints compare)",
    )
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--pairs", type=int, default=len(INTERACTION_PAIRS), help="first N pairs")
    s.add_argument(
        "--phantom-seeds",
        default=str(SPEC.seed),
        help="comma list of phantom seeds scored (default 0, the training phantom); another "
        "seed is a new layout of the same planted design, and the AUC pools the pairs of "
        "every seed",
    )
    s.set_defaults(func=cmd_score)
    args = ap.parse_args(argv)
    args.func(args)


def _published_score(store, name: str) -> float:
    """Mean normalised ``all`` score of the published map over blocks where both genes count."""
    from napari_teramind.attention.validate import map_score
    from napari_teramind.store.compute import compute

    score = map_score(store, name, "all", slices=SCORE_SLICES)
    meta = store.attention_metadata(name)
    raw = compute(store.attention(name)[:, list(SCORE_SLICES)]).astype(np.float32)
    expr = np.stack([raw[meta["channels"].index(f"expr:{g}")] for g in meta["genes"]])
    both = (expr > 0).all(axis=0)
    return float(score[both].mean()) if both.any() else float("nan")


# ---------------------------------------------------------------------- perturbation score
#: Side (px) of a scored region; 8 x 8 gene blocks, the lattice step of the expression fields.
REGION_PX = 128


def _tissue_blocks(spec, z: int, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Tissue gene blocks (not background, not ventricle) of slice ``z`` in ``(y0, x0, h, w)``."""
    from napari_teramind.phantom.anatomy import region_at
    from napari_teramind.phantom.programs import VENTRICLE

    y0, x0, h, w = window or (0, 0, spec.height, spec.width)
    ys = np.arange(y0 + 8, y0 + h, 16, dtype=np.float64)[:, None]
    xs = np.arange(x0 + 8, x0 + w, 16, dtype=np.float64)[None, :]
    lab = region_at(spec, z, ys, xs)
    return (lab != 0) & (lab != VENTRICLE)


def _block_means(img: np.ndarray, gb: int = 16) -> np.ndarray:
    h, w = img.shape
    return img.reshape(h // gb, gb, w // gb, gb).mean(axis=(1, 3))


def pair_regions(spec, pair, n: int, side: int = REGION_PX, stride: int = 64) -> list[tuple]:
    """``n`` non-overlapping ``(y0, y1, x0, x1)`` regions for ``pair``, chosen from the truth only.

    Candidates lie wholly in tissue on both scored slices; they are ranked by how close the
    pair's both-high fraction is to one half (as many blocks where the planted joint effect can
    act as blocks where it cannot: the two sides the score compares), then taken greedily
    without overlap.
    """
    from napari_teramind.phantom import planted_mask

    s = side // 16
    both = [planted_mask(spec, pair.name, z=z) for z in SCORE_SLICES]
    tissue = [_tissue_blocks(spec, z) for z in SCORE_SLICES]
    cands = []
    for y in range(0, spec.height - side + 1, stride):
        for x in range(0, spec.width - side + 1, stride):
            win = (slice(y // 16, y // 16 + s), slice(x // 16, x // 16 + s))
            if min(float(t[win].mean()) for t in tissue) < 0.95:
                continue
            frac = float(np.mean([b[win].mean() for b in both]))
            cands.append((abs(frac - 0.5), y, x))
    picked: list[tuple[int, int]] = []
    for _, y, x in sorted(cands):
        if all(abs(y - py) >= side or abs(x - px) >= side for py, px in picked):
            picked.append((y, x))
        if len(picked) == n:
            break
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} tissue regions of {side} px for {pair.name}")
    return [(y, y + side, x, x + side) for y, x in picked]


def planted_direction(store) -> tuple[float, dict[str, float]]:
    """Sign of the AND phenotype in block-mean DAPI, measured on the phantom's own images.

    The observational interaction contrast of each pair on the real images of the scored
    slices, ``D(A,B) - D(A,-) - D(-,B) + D(-,-)`` (mean DAPI of tissue blocks where both, only
    one or neither gene is high; blocks where *another* AND pair is jointly high are left out),
    is the planted truth's answer to the question the perturbation asks the model. Its mean over
    the AND pairs gives the direction along which the signed perturbation score is read; the
    per-pair contrasts (controls near 0) are reported with it.
    """
    from napari_teramind.phantom import spec_of

    spec = spec_of(store)
    states = _block_states(spec)
    joint = {p.name: states[2 * k] & states[2 * k + 1] for k, p in enumerate(INTERACTION_PAIRS)}
    out: dict[str, float] = {}
    for k, p in enumerate(INTERACTION_PAIRS):
        a, b = states[2 * k], states[2 * k + 1]
        other = np.zeros_like(a)
        for q in INTERACTION_PAIRS:
            if q.kind == "and" and q.name != p.name:
                other |= joint[q.name]
        vals = []
        for z in SCORE_SLICES:
            img = np.asarray(store.array("images", 0)[0, z], dtype=np.float64)
            dapi = _block_means(img)
            keep = _tissue_blocks(spec, z) & ~other

            cells = [keep & m for m in (a & b, a & ~b, ~a & b, ~a & ~b)]
            if all(c.any() for c in cells):  # a slice lacking one of the four says nothing
                d = [float(dapi[c].mean()) for c in cells]
                vals.append(d[0] - d[1] - d[2] + d[3])
        out[p.name] = float(np.mean(vals)) if vals else float("nan")
    ands = [out[p.name] for p in INTERACTION_PAIRS if p.kind == "and"]
    ands = [v for v in ands if np.isfinite(v)]
    if not ands:
        raise SystemExit("no AND pair has blocks of all four expression states; a larger phantom")
    return float(np.sign(np.mean(ands))), out


def _block_states(spec: PhantomSpec) -> np.ndarray:
    """:func:`~napari_teramind.phantom.interactions.high_states` at every gene block's centre."""
    from napari_teramind.phantom.interactions import high_states

    ys = np.arange(8, spec.height, 16, dtype=np.float64)[:, None]
    xs = np.arange(8, spec.width, 16, dtype=np.float64)[None, :]
    return high_states(spec.seed, ys + 0 * xs, xs + 0 * ys, spec.interaction_high_fraction)


def phenotype_by_gene_count(spec: PhantomSpec) -> dict[str, float]:
    """How often the AND phenotype is planted, by how many interaction genes are high.

    Per gene block of the canvas: the number of the 20 interaction genes whose field is high,
    and whether the phantom plants the phenotype there (``phenotype_factors``: any AND pair
    jointly high). A model blind to *which* genes are high can predict the phenotype from *how
    many* are, and then answers a control pair's double knockout with a joint effect too; this
    table says how much that pays.
    Keys: ``"all"`` (the phenotype's share of blocks) and ``"<k>-<k+1>"`` for k high genes.
    """
    from napari_teramind.phantom.interactions import phenotype_factors

    states = _block_states(spec)
    pheno = phenotype_factors(states)[0] > 1.0  # the AND radius factor
    count = states.sum(axis=0)
    out = {"all": float(pheno.mean())}
    for k in range(0, len(states) + 1, 2):
        sel = (count >= k) & (count < k + 2)
        if sel.sum() >= 20:
            out[f"{k}-{k + 1}"] = float(pheno[sel].mean())
    return out


def welch_t(inside: np.ndarray, outside: np.ndarray) -> float:
    """``(mean_in - mean_out) / its standard error`` (Welch); 0 when both sides are constant."""
    a, b = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan")
    se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    diff = float(a.mean() - b.mean())
    return 0.0 if se == 0 else diff / se


def effect_sums(gen: dict[str, np.ndarray], inside: np.ndarray) -> dict[str, float]:
    """Sums over the ``inside`` blocks of block-mean ``|I|``, ``|e_A|`` and ``|e_B|``.

    ``gen``: the four generations ``"AB"``, ``"A0"`` (B knocked out), ``"0B"``, ``"00"`` of
    one slice (``(h, w)``, the same noise); see :func:`perturbation_scores`.
    """
    inter = gen["AB"] - gen["A0"] - gen["0B"] + gen["00"]
    terms = {"I": inter, "A": gen["A0"] - gen["00"], "B": gen["0B"] - gen["00"]}
    return {k: float(_block_means(np.abs(v))[inside].sum()) for k, v in terms.items()}


def perturbation_scores(source, model: str, pair, regions, seeds: int, steps: int,
                        workdir: Path, direction: float,
                        scheme: str = SCORE_SCHEME) -> dict[str, float]:  # fmt: skip
    """Perturbation interaction scores of ``pair`` from the library's :func:`interaction_map`.

    For each region and noise seed, ``I = f(A,B) - f(A,0) - f(0,B) + f(0,0)`` of the generated
    DAPI (grey levels; the four generations of the whole-region engine share the noise, the
    knockouts cover the region). Per gene block of each scored slice, ``|I|`` and ``I`` are
    averaged; *inside* are the tissue blocks where both genes are high (where the planted
    phenotype acts), *outside* the tissue blocks at least one block away from them (where
    the truth has no joint effect). Pooled over regions, seeds and slices:

    * ``perturbation``: Welch t of block ``|I|`` inside vs outside (a joint effect beyond the
      model's own second-order noise);
    * ``perturbation_signed``: Welch t of ``direction * I`` inside vs outside (the joint effect
      along the planted direction, :func:`planted_direction`);
    * ``perturbation_mean_abs``: mean block ``|I|`` inside (uncalibrated, grey levels);
    * ``perturbation_joint_share``: inside, ``sum |I| / (sum |I| + sum |e_A| + sum |e_B|)``
      over blocks, with the single-gene effects ``e_A = f(A,0) - f(0,0)`` and ``e_B = f(0,B) -
      f(0,0)`` (each gene alone, the other knocked out). The share of the pair's effect that
      neither gene has alone: 1 for the planted AND rule (nothing alone, all jointly), 0 for
      additive effects, 1/3 for redundant genes (either alone suffices: ``|I| = |e_A| =
      |e_B|``), about 0.4 for responses that are sampler noise (independent changes of one
      size). Unlike the Welch t, whose reference (blocks where no gene changes) has no input
      change at all, it does not grow with how strongly a model responds to each gene alone.
    """
    from scipy.ndimage import binary_dilation

    from napari_teramind.perturb import interaction_map
    from napari_teramind.perturb.api import read_images
    from napari_teramind.phantom import planted_mask, spec_of

    spec = spec_of(source)
    ins_abs, out_abs, ins_sig, out_sig = [], [], [], []
    single = {"A": 0.0, "B": 0.0, "I": 0.0}
    for r, region in enumerate(regions):
        y0, y1, x0, x1 = region
        window = (y0, x0, y1 - y0, x1 - x0)
        for seed in range(seeds):
            where = workdir / f"r{r}-s{seed}"
            im = interaction_map(source, model, region, list(SCORE_SLICES), *pair.genes,
                                 workdir=where, seed=seed, steps=steps,
                                 scheme=scheme)  # fmt: skip
            dapi = im.map[0].astype(np.float64)
            gen = {n: read_images(im.stores[n], im.region, im.slices)[0].astype(np.float64)
                   for n in ("AB", "A0", "0B", "00")}  # fmt: skip
            for k, z in enumerate(im.slices):
                inside = planted_mask(spec, pair.name, z=z, window=window)
                outside = _tissue_blocks(spec, z, window) & ~binary_dilation(inside)
                absb, sigb = _block_means(np.abs(dapi[k])), _block_means(dapi[k]) * direction
                ins_abs.append(absb[inside])
                out_abs.append(absb[outside])
                for key, v in effect_sums({n: g[k] for n, g in gen.items()}, inside).items():
                    single[key] += v
                ins_sig.append(sigb[inside])
                out_sig.append(sigb[outside])
    cat = np.concatenate
    return {
        "perturbation": welch_t(cat(ins_abs), cat(out_abs)),
        "perturbation_signed": welch_t(cat(ins_sig), cat(out_sig)),
        "perturbation_mean_abs": float(cat(ins_abs).mean()),
        "perturbation_joint_share": single["I"] / max(sum(single.values()), 1e-12),
        "blocks_inside": int(cat(ins_abs).size),
        "blocks_outside": int(cat(out_abs).size),
    }


def _models(args: argparse.Namespace, out: Path, score_dir: Path):
    """``(label, checkpoint path, step)`` of the scored models; the random one is saved once."""
    from napari_teramind.model import ModelConfig, TeraMindUNet
    from napari_teramind.model.checkpoint import (
        is_native_checkpoint,
        load_checkpoint,
        save_checkpoint,
    )
    from napari_teramind.train.loop import checkpoint_weights, latest_checkpoint

    if args.checkpoint:
        step, ckpt = None, Path(args.checkpoint)
    else:
        found = latest_checkpoint(out / "run")
        if found is None:
            raise SystemExit(f"{out / 'run'} holds no checkpoint yet; run `train` first")
        step, ckpt = found
    weights = checkpoint_weights(ckpt)[0]
    trained, info = load_checkpoint(weights)
    random_path = score_dir / "random-init"
    if not is_native_checkpoint(random_path):
        torch.manual_seed(12345)
        random = TeraMindUNet(ModelConfig.from_dict(trained.config.to_dict()))
        prov = {"init": "TeraMindUNet default init, torch seed 12345"}
        save_checkpoint(random_path, random, None, list(info.gene_names), provenance=prov)
    label = f"step{step}" if step is not None else Path(args.checkpoint).name
    models = {label: weights, "random": random_path}
    wanted = [m.strip() for m in args.models.split(",")] if args.models else list(models)
    wanted = [label if m == "trained" else m for m in wanted]
    unknown = [m for m in wanted if m not in models]
    if unknown:
        raise SystemExit(f"unknown --models {unknown}; choose from 'trained', 'random'")
    return [(m, models[m]) for m in wanted], step, label


def cmd_score(args: argparse.Namespace) -> None:
    import shutil

    from napari_teramind.phantom import spec_of
    from napari_teramind.store import BrainStore

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    score_dir = Path(args.score_dir or args.out)
    score_dir.mkdir(parents=True, exist_ok=True)
    models, step, _ = _models(args, out, score_dir)
    train_spec = spec_of(out / "phantom.zarr")  # the design trained on (its high fraction)
    trained_on = _trained_layouts(out)

    def working_copy(source: Path, work: Path) -> BrainStore:
        """A copy of ``source`` the attention maps are written into (kept with --keep-store)."""
        if not args.keep_store or not work.exists():
            if work.exists():
                shutil.rmtree(work)
            shutil.copytree(source, work)
        return BrainStore.open(work, mode="r+")

    rows: list[dict] = []
    t0 = time.perf_counter()
    ands = [p for p in INTERACTION_PAIRS if p.kind == "and"]
    ctrls = [p for p in INTERACTION_PAIRS if p.kind == "control"]
    order = [p for pair in zip(ands, ctrls, strict=True) for p in pair]
    order += [p for p in INTERACTION_PAIRS if p.kind == "additive"]
    meta: dict = {"seeds": args.seeds, "ddim_steps": args.ddim_steps, "scheme": args.scheme,
                  "region_px": args.region_px, "regions": {}, "phantom_seeds": {}}  # fmt: skip
    for ps in _int_list(args.phantom_seeds):
        if ps == SPEC.seed:
            store = working_copy(out / "phantom.zarr", score_dir / "score.zarr")
            source = store.path  # what the perturbations generate from (as every earlier row)
        else:  # another layout of the same planted design: every field and nucleus new
            source = _phantom(score_dir, dataclasses.replace(train_spec, seed=ps))
            store = (BrainStore.open(source, mode="r") if args.skip_attention
                     else working_copy(source, score_dir / f"score-seed{ps}.zarr"))  # fmt: skip
        spec = spec_of(store)
        direction, truth = planted_direction(store)
        tag = "" if ps == SPEC.seed else f"seed{ps}-"
        print(f"phantom seed {ps}: planted direction {direction:+.0f}; real-image interaction "
              f"contrast per pair (grey levels): "
              f"{json.dumps({k: round(v, 3) for k, v in truth.items()})}", flush=True)  # fmt: skip
        by_count = phenotype_by_gene_count(spec)
        print(
            f"phantom seed {ps}: AND phenotype share of blocks, by high interaction genes: "
            f"{json.dumps({k: round(v, 3) for k, v in by_count.items()})}",
            flush=True,
        )
        if ps == SPEC.seed:  # the keys every earlier score.json has
            meta.update(direction=direction, truth_contrast=truth)
        seen = ps in trained_on
        print(f"phantom seed {ps}: {'a training layout' if seen else 'unseen'}", flush=True)
        meta["phantom_seeds"][str(ps)] = {
            "trained_on": seen,
            "direction": direction,
            "truth_contrast": truth,
            "phenotype_by_gene_count": by_count,
        }
        for p in order[: args.pairs]:  # AND1, CTRL1, AND2, ...: a partial run stays balanced
            regions = pair_regions(spec, p, args.regions, args.region_px) if args.regions else []
            meta["regions"][tag + p.name] = regions
            for label, ckpt in models:
                row: dict = {"model": label, "pair": p.name, "kind": p.kind, "phantom_seed": ps}
                if not args.skip_attention:
                    row.update(_attention_scores(store, ckpt, label, p, args.null_draws))
                if regions:
                    row.update(perturbation_scores(
                        source, str(ckpt), p, regions, args.seeds, args.ddim_steps,
                        score_dir / "perturb" / label / (tag + p.name), direction,
                        args.scheme))  # fmt: skip
                rows.append(row)
                print(json.dumps(row), f"{time.perf_counter() - t0:.0f} s", flush=True)
                _report(score_dir, step, rows, [m for m, _ in models], meta)


def _attention_scores(store, ckpt, label: str, pair, null_draws: int) -> dict[str, float]:
    """Scores (a) and (b) of ``pair``: the published map and the two attention contrasts."""
    from napari_teramind.attention import compute_attention_maps
    from napari_teramind.attention.contrast import compute_contrast_maps, contrast_summary
    from napari_teramind.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(ckpt)
    model.eval()
    name = f"{label}-{pair.name}"
    kw = {"gene_names": list(info.gene_names), "slices": list(SCORE_SLICES)}
    compute_attention_maps(store, model, list(pair.genes), name=name, **kw)
    cname = compute_contrast_maps(store, model, list(pair.genes), null="random",
                                  draws=null_draws, name=f"{name}-contrast", **kw)  # fmt: skip
    pname = compute_contrast_maps(store, model, list(pair.genes), null="permuted",
                                  draws=2, name=f"{name}-permuted", **kw)  # fmt: skip
    return {
        "published": _published_score(store, name),
        "contrast_z": contrast_summary(store, cname)["z"],
        "permuted_z": contrast_summary(store, pname)["z"],
    }


def _trained_layouts(out: Path) -> set[int]:
    """Phantom seeds of the stores ``OUT/run`` trained on (its ``run.json``)."""
    from napari_teramind.phantom import spec_of

    run = json.loads((out / "run" / "run.json").read_text())
    return {spec_of(p).seed for p in run["stores"]}


def _int_list(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def _report(out: Path, step: int | None, rows: list[dict], labels: list[str],
            meta: dict) -> None:  # fmt: skip
    """AUC of AND over control pairs per model and score; ``OUT/score.json`` (after each row)."""
    from napari_teramind.attention.validate import roc_auc

    report: dict = {"checkpoint_step": step, **meta, "rows": rows, "auc": {}}
    keys = ("published", "contrast_z", "permuted_z", "perturbation", "perturbation_signed",
            "perturbation_mean_abs", "perturbation_joint_share")  # fmt: skip
    seeds = sorted({r.get("phantom_seed", SPEC.seed) for r in rows})
    for label in labels:
        for ps in [None, *seeds] if len(seeds) > 1 else [None]:
            sub = [r for r in rows if r["model"] == label and r["kind"] in ("and", "control")
                   and (ps is None or r.get("phantom_seed", SPEC.seed) == ps)]  # fmt: skip
            if not sub:
                continue
            y = np.array([r["kind"] == "and" for r in sub])
            where = "" if ps is None else f" phantom-seed{ps}"
            for key in keys:
                if all(key in r for r in sub):
                    values = np.array([r[key] for r in sub])
                    report["auc"][f"{label} {key}{where}"] = roc_auc(values, y)
    print(json.dumps(report["auc"]), flush=True)
    (out / "score.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
