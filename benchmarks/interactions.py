"""Do attention statistics (or perturbations) find planted gene-gene interactions?

Usage::

    python benchmarks/interactions.py train --out /work/train-runs/interaction --steps 400
    python benchmarks/interactions.py score --out /work/train-runs/interaction

``train`` writes the interaction phantom (``PhantomSpec(interactions=True)``: 4 x 1024 x 1536
px, the 6 required genes + the 20 interaction genes) to ``OUT/phantom.zarr`` and trains the
``tiny`` preset on it with the bundled recipe (:func:`~napari_teramind.train.bundled.
bundled_train_config`, fewer steps, slice 3 held out) into ``OUT/run`` (resumable).

``score`` ranks every planted pair (4 AND, 4 control, 2 additive) by

(a) the published map: mean over the blocks where both genes are expressed of the normalised
    ``all`` channels of ``attention/<pair>`` (log2(1 + G A.E), masked, smoothed);
(b) the attention contrast of :mod:`napari_teramind.attention.contrast` against a randomly
    initialised model null (mean z over the same blocks) and against the gene-identity
    permutation null;
(c) the perturbation interaction score f(A,B) - f(A,0) - f(0,B) + f(0,0): the mean absolute
    DAPI difference of crops generated with the pair's counts kept / knocked out (same noise),
    over crops where both genes are high. TODO(#16 item 2): switch to h-j's
    ``napari_teramind.generate.edits.perturb`` when it lands; the crops here use
    :func:`~napari_teramind.train.loop.sample_crop` on edited gene tensors, which is the same
    model and sampler but not the whole-region engine.

and prints the ROC AUC of the AND pairs over the controls for the trained model and for a
randomly initialised one (the null). Numbers go to docs/attention.md.
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
from napari_teramind.phantom.interactions import INTERACTION_PAIRS

SPEC = PhantomSpec(seed=0, n_slices=4, height=1024, width=1536, n_genes=6, interactions=True)
HOLDOUT = (3,)
#: Slices scored: the held-out pair (gene window 1).
SCORE_SLICES = (2, 3)


def _phantom(out: Path) -> Path:
    from napari_teramind.store import BrainStore

    path = out / "phantom.zarr"
    try:
        BrainStore.open(path)
    except Exception:  # absent or incomplete: deterministic from the spec
        write_phantom(path, SPEC, overwrite=True, workers=1)
    return path


def cmd_train(args: argparse.Namespace) -> None:
    from napari_teramind.train.bundled import bundled_train_config
    from napari_teramind.train.loop import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    store = _phantom(out)
    cfg = bundled_train_config(store, steps=args.steps, cooldown_steps=args.cooldown)
    cfg = dataclasses.replace(
        cfg,
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
    t.set_defaults(func=cmd_train)
    s = sub.add_parser("score")
    s.add_argument("--out", default="/work/train-runs/interaction")
    s.add_argument("--null-draws", type=int, default=4)
    s.add_argument("--crops", type=int, default=4, help="crops per pair for the perturbation")
    s.add_argument("--ddim-steps", type=int, default=10)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--checkpoint", help="score this checkpoint (default: the run's latest)")
    s.add_argument("--pairs", type=int, default=len(INTERACTION_PAIRS), help="first N pairs")
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


def _crop_genes(store, pair, z: int, side_blocks: int = 8, margin: int = 2):
    """Genes ``(G, 4, s + 2m, s + 2m)`` of the crop of slices ``(z, z + 1)`` where the pair's
    both-high mask is densest (the margin holds the real neighbouring counts)."""
    from napari_teramind.phantom import planted_mask
    from napari_teramind.store.compute import compute

    mask = planted_mask(store, pair.name, z=z).astype(np.float32)
    hb, wb = mask.shape
    best, where = -1.0, (0, 0)
    for y in range(margin, hb - side_blocks - margin + 1, 4):
        for x in range(margin, wb - side_blocks - margin + 1, 4):
            frac = float(mask[y : y + side_blocks, x : x + side_blocks].mean())
            if frac > best:
                best, where = frac, (y, x)
    y, x = where
    n = side_blocks + 2 * margin
    out = np.zeros((len(store.panel), 4, n, n), dtype=np.float32)
    for k, zz in enumerate(range(z - 1, z + 3)):
        if 0 <= zz < store.n_slices:
            out[:, k] = compute(
                store.genes()[:, zz, y - margin : y - margin + n, x - margin : x - margin + n]
            )
    return torch.from_numpy(out), best


def perturbation_score(model, store, pair, z: int, steps: int, seeds: int) -> float:
    """Mean |f(A,B) - f(A,0) - f(0,B) + f(0,0)| of DAPI (grey levels) over one crop.

    TODO(#16 item 2): use ``napari_teramind.generate.edits.perturb`` (h-j) over a region once
    it lands; this knocks the genes out of the crop's gene tensor (all four gene slices, the
    margin included) and generates with the same noise per seed via ``sample_crop``.
    """
    from napari_teramind.train.loop import sample_crop

    genes, _ = _crop_genes(store, pair, z)
    ia, ib = store.panel.indices(pair.genes)
    total = 0.0
    for seed in range(seeds):
        f = {}
        for keep_a in (True, False):
            for keep_b in (True, False):
                g = genes.clone()
                if not keep_a:
                    g[ia] = 0
                if not keep_b:
                    g[ib] = 0
                f[keep_a, keep_b] = sample_crop(model, g, steps, seed=seed)[:2]
        inter = f[True, True] - f[True, False] - f[False, True] + f[False, False]
        total += float(inter.abs().mean()) * 127.5
    return total / seeds


def cmd_score(args: argparse.Namespace) -> None:
    import shutil

    from napari_teramind.attention import compute_attention_maps
    from napari_teramind.attention.contrast import compute_contrast_maps, contrast_summary
    from napari_teramind.model import ModelConfig, TeraMindUNet
    from napari_teramind.model.checkpoint import load_checkpoint
    from napari_teramind.store import BrainStore
    from napari_teramind.train.loop import checkpoint_weights, latest_checkpoint

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.checkpoint:
        step, ckpt = None, Path(args.checkpoint)
    else:
        found = latest_checkpoint(out / "run")
        if found is None:
            raise SystemExit(f"{out / 'run'} holds no checkpoint yet; run `train` first")
        step, ckpt = found
    trained, info = load_checkpoint(checkpoint_weights(ckpt)[0])
    trained.eval()
    torch.manual_seed(12345)
    random = TeraMindUNet(ModelConfig.from_dict(trained.config.to_dict())).eval()
    work = out / "score.zarr"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(out / "phantom.zarr", work)
    store = BrainStore.open(work, mode="r+")
    genes = list(info.gene_names)
    rows = []
    t0 = time.perf_counter()
    first = "trained" if not args.checkpoint else Path(args.checkpoint).name
    ands = [p for p in INTERACTION_PAIRS if p.kind == "and"]
    ctrls = [p for p in INTERACTION_PAIRS if p.kind == "control"]
    order = [p for pair in zip(ands, ctrls, strict=True) for p in pair]
    order += [p for p in INTERACTION_PAIRS if p.kind == "additive"]
    for p in order[: args.pairs]:  # AND1, CTRL1, AND2, ...: a partial run stays balanced
        for label, model in ((first, trained), ("random", random)):
            name = f"{label}-{p.name}"
            kw = {"gene_names": genes, "slices": list(SCORE_SLICES)}
            compute_attention_maps(store, model, list(p.genes), name=name, **kw)
            cname = compute_contrast_maps(store, model, list(p.genes), null="random",
                                          draws=args.null_draws, name=f"{name}-contrast",
                                          **kw)  # fmt: skip
            pname = compute_contrast_maps(store, model, list(p.genes), null="permuted",
                                          draws=2, name=f"{name}-permuted", **kw)  # fmt: skip
            row = {
                "model": label,
                "pair": p.name,
                "kind": p.kind,
                "published": _published_score(store, name),
                "contrast_z": contrast_summary(store, cname)["z"],
                "permuted_z": contrast_summary(store, pname)["z"],
            }
            if args.crops:
                row["perturbation"] = perturbation_score(
                    model, store, p, 2, args.ddim_steps, args.crops
                )
            rows.append(row)
            print(json.dumps(row), f"{time.perf_counter() - t0:.0f} s", flush=True)
            _report(out, step, rows, first)


def _report(out: Path, step: int | None, rows: list[dict], first: str) -> None:
    """AUC of AND over control pairs per model and score; ``OUT/score.json`` (after each row)."""
    from napari_teramind.attention.validate import roc_auc

    report: dict = {"checkpoint_step": step, "rows": rows, "auc": {}}
    for label in (first, "random"):
        sub = [r for r in rows if r["model"] == label and r["kind"] in ("and", "control")]
        y = np.array([r["kind"] == "and" for r in sub])
        if not sub:
            continue
        for key in ("published", "contrast_z", "permuted_z", "perturbation"):
            if key in sub[0]:
                report["auc"][f"{label} {key}"] = roc_auc(np.array([r[key] for r in sub]), y)
    print(json.dumps(report["auc"]), flush=True)
    (out / "score.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
