"""Attention-map speed: rows-only vs full G x G attention, and whole-phantom wall time.

Usage::

    python benchmarks/attention.py                              # CPU, 2 threads
    python benchmarks/attention.py --phantom /tmp/phantom.zarr  # reuse a default phantom
    python benchmarks/attention.py --device cuda --autocast bf16

Part 1 times one gene window of patches through :func:`window_maps` twice in the same run:
with the rows-only path (``gene_attention(genes, rows)``, L = 2 rows, softmax over all G) and
with the full ``G x G`` matrix per patch (rows taken afterwards), for several ``G``; it prints
both and the ratio. Part 2 computes GLUT and DOPA maps of the whole default phantom
(8 x 2048 x 3072 px, 48 genes; written once with ``teramind phantom`` if missing) with the
seeded tiny model (or ``--model``) and prints the wall time of each and the planted-region AUC.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from napari_teramind.attention import compute_attention_maps, window_maps
from napari_teramind.model import ModelConfig, TeraMindUNet


def _time_pair(fn_a, fn_b, repeats: int, device: torch.device) -> tuple[float, float]:
    """Minimum times of two callables, run alternately (fair on a shared machine)."""

    def once(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    fn_a(), fn_b()
    a, b = [], []
    for _ in range(repeats):
        a.append(once(fn_a))
        b.append(once(fn_b))
    return min(a), min(b)


def rows_vs_full(n_genes_list, patches: int, device: torch.device, autocast, repeats: int) -> None:
    print(f"rows-only vs full G x G, one window of {patches} patches (L = 2 rows), {device}")
    print(f"{'G':>6} {'rows-only s':>12} {'full s':>10} {'full/rows':>10} {'max |diff|':>11}")
    side = round(patches**0.5)
    kw = dict(batch_size=1024, device=device, autocast=autocast)
    for g in n_genes_list:
        torch.manual_seed(0)
        model = TeraMindUNet(ModelConfig.preset("tiny", g)).eval().to(device)
        rng = np.random.default_rng(0)
        genes = rng.poisson(0.5, size=(g, 4, 4 * side, 4 * side)).astype(np.float32)
        rows = [0, g // 2]

        def full(x, r, model=model):
            return model.gene_attention(x)[:, r]

        def run_fast(genes=genes, rows=rows, model=model):
            return window_maps(genes, model.gene_attention, rows, **kw)[0]

        def run_full(genes=genes, rows=rows, full=full):
            return window_maps(genes, full, rows, **kw)[0]

        diff = float(np.abs(run_fast() - run_full()).max())
        t_fast, t_full = _time_pair(run_fast, run_full, repeats, device)
        print(f"{g:>6} {t_fast:>12.3f} {t_full:>10.3f} {t_full / t_fast:>10.2f} {diff:>11.2e}")


def whole_phantom(path: Path, model_spec: str | None, device, autocast) -> None:
    from napari_teramind.attention.validate import planted_auc, planted_overlap
    from napari_teramind.phantom import PhantomSpec, write_phantom
    from napari_teramind.store import BrainStore

    if not path.exists():
        print(f"writing the default phantom to {path} ...")
        write_phantom(path, PhantomSpec(), workers=2)
    work = path.with_name(path.stem + "-attention-bench.zarr")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(path, work)
    store = BrainStore.open(work, mode="r+")
    if model_spec:
        from napari_teramind.cli.attention import load_model

        model, info = load_model(model_spec, device="cpu")
        names, label = info.gene_names, model_spec
    else:
        torch.manual_seed(0)
        model = TeraMindUNet(ModelConfig.preset("tiny", len(store.panel))).eval()
        info, names, label = None, store.panel.names, "seeded random tiny model"
    print(f"whole phantom {store.shape} px, {len(store.panel)} genes, {label}, {device}")
    total = 0.0
    for pair in ("GLUT", "DOPA"):
        t = time.perf_counter()
        compute_attention_maps(
            store, model, pair, gene_names=names, checkpoint=info, device=device, autocast=autocast
        )
        dt = time.perf_counter() - t
        total += dt
        print(f"  {pair}: {dt:.1f} s (maps, pyramids, metadata)")
    print(f"  GLUT + DOPA: {total:.1f} s (bar: < 60 s on 2 CPU cores)")
    auc = planted_auc(store, "DOPA", "DOPA")
    base = planted_auc(store, "DOPA", "DOPA", kind="expr")
    print("  DOPA AUC vs planted SN/VTA + olfactory bulb per slice (map | expr baseline):")
    for (_, a), (_, b) in zip(auc.iterrows(), base.iterrows(), strict=True):
        print(f"    z={int(a['slice'])}: {a['auc']:.4f} | {b['auc']:.4f}")
    glut = planted_overlap(store, "GLUT")
    print(f"  GLUT vs planted Slc17a6/Slc17a7 overlap: Spearman {glut['spearman'].mean():.3f}, "
          f"AUC {glut['auc_high_overlap'].mean():.4f} (mean over slices)")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast", choices=("none", "fp16", "bf16"), default="none")
    p.add_argument("--genes", type=int, nargs="+", default=[48, 229, 500])
    p.add_argument("--patches", type=int, default=1024, help="patches per timed window")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--phantom", type=Path, default=Path("/tmp/attn-phantom.zarr"))
    p.add_argument("--model", default=None, help="checkpoint or 'bundled' (default: random tiny)")
    p.add_argument("--skip-phantom", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    autocast = None if args.autocast == "none" else args.autocast
    cast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.autocast)
    rows_vs_full(args.genes, args.patches, device, cast, args.repeats)
    if not args.skip_phantom:
        whole_phantom(args.phantom, args.model, str(device), autocast)


if __name__ == "__main__":
    main()
