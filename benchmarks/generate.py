"""Generation throughput: our tiled engine vs the published tile scheme, same model, one run.

Usage::

    python benchmarks/generate.py                         # tiny preset (or bundled), 2 threads
    python benchmarks/generate.py --tiles 2 --repeats 2   # quicker
    python benchmarks/generate.py --tiles 1 2 4 6 --roi-px 0   # the saving by region size
    python benchmarks/generate.py --roi-px 1024 --roi-slices 4 --roi-steps 15   # the ROI bar

Part 1 (patch throughput, one DDIM step, one slice pair): a region of ``tiles x tiles``
256 px tiles is predicted

* by our engine (:func:`napari_teramind.generate.predict_noise` per block of ``--block-px``
  (512) px with its 32 px halo, as a job runs: every offset patch of a block encoded once,
  collage decoder only), and
* by the published scheme: per 256 px tile plus 32 px halo, the 5 x 5 offset patches through
  the encoder and BOTH decoders (the tile decoder output is discarded), ring patches
  recomputed by the neighbouring tiles.

Both use the same model, weights, inputs, device and threads; the figure is output (aligned)
patches per second, and the ratio is the saving from avoided work alone.

Part 2: wall time of :func:`napari_teramind.generate.generate_roi` on a ``--roi-px`` square
region of ``--roi-slices`` slices of a phantom.

Part 3: a PROJECTION (not a measurement) of whole-brain time on 8 GPUs, from the FLOP figures
of METHOD.md Appendix C.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_teramind.generate import predict_noise

# METHOD.md Appendix C (reference preset, G = 229)
ENC_GFLOP = 48.0  # gene branch + encoder + middle, per 64 px patch
DEC_GFLOP = 127.0  # one decoder pass, per patch
WHOLE_BRAIN_PATCHES = 1144 * 1656 * 25  # output patches x slice pairs
PUBLISHED_SECONDS = 7 * 24 * 3600  # "about one week on one 8 x A100 DGX"
A100_BF16_DENSE = 312e12
H100_BF16_DENSE = 989e12


def load_model(preset: str, n_genes: int):
    """The bundled model when it exists and ``preset == "bundled"``, else a seeded preset."""
    from napari_teramind.model import ModelConfig, TeraMindUNet

    if preset == "bundled":
        try:
            from napari_teramind.model.bundled import load_bundled_model

            model, info = load_bundled_model()
            return model.eval(), list(info.gene_names), "bundled"
        except (ImportError, FileNotFoundError) as exc:
            print(f"(no bundled model: {exc}; using the tiny preset)")
            preset = "tiny"
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset(preset, n_genes)).eval()
    return model, None, preset


def published_tile(model, window, genes, t):
    """The published per-tile call: 5 x 5 offset patches, both decoders, crop the collage."""
    from napari_teramind.generate.engine import _assemble, _cut_patches

    x = _cut_patches(torch.as_tensor(window), 64)
    g = _cut_patches(torch.as_tensor(genes), 4)
    out = model(x, g, t, (1, 5, 5), decoders=("collage", "tile"))
    return _assemble(out["collage"], 4, 4)  # out["tile"] is discarded, as published


def bench_throughput(model, n_genes, tiles, batch_size, repeats, block_px=512):
    rng = np.random.default_rng(0)
    side = 256 * tiles
    window = rng.standard_normal((4, side + 64, side + 64)).astype(np.float32)
    genes = rng.poisson(2.0, (n_genes, 4, (side + 64) // 16, (side + 64) // 16)).astype(np.float32)
    t = 500
    n_out = (side // 64) ** 2
    bp = min(block_px, side)

    def ours():
        """The engine's unit of work: blocks of ``bp`` px, each with its own 32 px halo."""
        out = torch.empty(4, side, side)
        for y in range(0, side, bp):
            for x in range(0, side, bp):
                h, w = min(bp, side - y), min(bp, side - x)
                win = window[:, y : y + h + 64, x : x + w + 64]
                gen = genes[:, :, y // 16 : (y + h + 64) // 16, x // 16 : (x + w + 64) // 16]
                out[:, y : y + h, x : x + w] = predict_noise(model, win, gen, t,
                                                             batch_size=batch_size)  # fmt: skip
        return out

    def published():
        rows = []
        for i in range(tiles):
            cols = []
            for j in range(tiles):
                w = window[:, 256 * i : 256 * i + 320, 256 * j : 256 * j + 320]
                g = genes[:, :, 16 * i : 16 * i + 20, 16 * j : 16 * j + 20]
                cols.append(published_tile(model, w, g, t))
            rows.append(torch.cat(cols, dim=-1))
        return torch.cat(rows, dim=-2)

    with torch.inference_mode():
        a, b = ours(), published()  # warm-up and agreement check
        diff = float((a - b).abs().max())
        times = {"ours": [], "published": []}
        for _ in range(repeats):
            for name, fn in (("ours", ours), ("published", published)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    t_ours = statistics.median(times["ours"])
    t_pub = statistics.median(times["published"])
    n_blocks = math.ceil(side / bp) ** 2
    enc_block = (bp // 64 + 1) ** 2
    enc_ours = n_blocks * enc_block
    enc_padded = n_blocks * math.ceil(enc_block / batch_size) * batch_size
    print(f"## Patch throughput: {tiles} x {tiles} tiles of 256 px = {n_out} output patches")
    print(f"  max |ours - published| eps = {diff:.2e} (same maths, different batching)")
    print(
        f"  ours:      {n_out / t_ours:8.2f} patches/s ({t_ours:.2f} s; {enc_ours} encoder "
        f"(+{enc_padded - enc_ours} zero padding of the last micro-batch) + {n_out} "
        f"collage-decoder patch passes, {n_blocks} block(s) of {bp} px, "
        f"micro-batch {batch_size})"
    )
    print(
        f"  published: {n_out / t_pub:8.2f} patches/s ({t_pub:.2f} s; {25 * tiles**2} encoder + "
        f"{16 * tiles**2} collage + {25 * tiles**2} tile-decoder patch passes)"
    )
    print(f"  speed-up from saved work: {t_pub / t_ours:.2f}x (goal >= 2x)")
    return t_pub / t_ours


def bench_roi(model, gene_names, preset, px, n_slices, steps, block_px, batch_size):
    from napari_teramind.generate import generate_roi
    from napari_teramind.generate.numerics import Numerics
    from napari_teramind.phantom import PhantomSpec, write_phantom

    with tempfile.TemporaryDirectory() as tmp:
        spec = PhantomSpec(seed=1, n_slices=n_slices, height=px, width=px)
        store = write_phantom(Path(tmp) / "p.zarr", spec, workers=1, executor="thread")
        names = gene_names or list(store.panel.names)
        start = time.perf_counter()
        items = generate_roi(
            store, model, (0, px, 0, px), range(n_slices), steps=steps, gene_names=names,
            output=Path(tmp) / "g.zarr", block_px=block_px, batch_size=batch_size,
            workdir=Path(tmp) / "work", preview=False,
            numerics=Numerics(threads=torch.get_num_threads()),  # units fix their threads
        )  # fmt: skip
        last = None
        for last in items:  # noqa: B007 (the last item carries the totals)
            pass
        elapsed = time.perf_counter() - start
    print(f"## ROI: {px} x {px} px, {n_slices} slices, {steps} DDIM steps, model {preset}")
    print(
        f"  {elapsed:.1f} s on {torch.get_num_threads()} threads "
        f"({last.units_total} units, block {block_px} px, batch {batch_size}); "
        f"{elapsed / steps:.1f} s per step"
    )
    return elapsed


def projection():
    print("## PROJECTION (arithmetic from METHOD.md Appendix C, not a measurement; no GPU lent)")
    ours = ENC_GFLOP * (1 + 1 / 32) ** 2 + DEC_GFLOP  # offset patches per output at B = 2048
    pub = (25 * ENC_GFLOP + 41 * DEC_GFLOP) / 16
    flop_ours = WHOLE_BRAIN_PATCHES * 15 * ours * 1e9
    flop_pub = WHOLE_BRAIN_PATCHES * 15 * pub * 1e9
    print(f"  per output patch and step: ours {ours:.0f} GFLOP, published {pub:.0f} GFLOP")
    print(f"  whole brain: {WHOLE_BRAIN_PATCHES:,} output patches x 15 steps")
    print(
        f"    ours {flop_ours:.3g} FLOP, published {flop_pub:.3g} FLOP "
        f"({flop_pub / flop_ours:.2f}x)"
    )
    util_pub = flop_pub / (PUBLISHED_SECONDS * 8 * A100_BF16_DENSE)
    print(f"  published: 1 week on 8 x A100 = {util_pub:.1%} of bf16 dense peak (312 TFLOP/s)")
    for gpu, peak in (("A100", A100_BF16_DENSE), ("H100", H100_BF16_DENSE)):
        for util in (util_pub, 0.40, 0.60):
            sec = flop_ours / (8 * peak * util)
            print(
                f"    8 x {gpu} at {util:.0%} of peak: {sec / 3600:6.1f} h "
                f"-> {PUBLISHED_SECONDS / sec:5.1f}x faster than the published week"
            )
    print("  (utilisation above the published 19% is an assumption until measured on a GPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="bundled", help="bundled, tiny, small, reference")
    parser.add_argument("--genes", type=int, default=48, help="G for a preset model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--tiles", type=int, nargs="+", default=[2], help="tiles per side, part 1 (a sweep)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-px", type=int, default=512, help="our engine's block, part 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--roi-px", type=int, default=1024, help="0 skips part 2")
    parser.add_argument("--roi-slices", type=int, default=4)
    parser.add_argument("--roi-steps", type=int, default=15)
    parser.add_argument("--roi-block", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, gene_names, preset = load_model(args.preset, args.genes)
    n_genes = model.config.n_genes
    print(f"# Generation benchmark: model {preset} (G = {n_genes}), {args.threads} threads, CPU")
    ratios = {t: bench_throughput(model, n_genes, t, args.batch_size, args.repeats,
                                  args.block_px) for t in args.tiles}  # fmt: skip
    if len(ratios) > 1:
        print("## Speed-up from saved work by region size (published / ours, same run)")
        for t, r in ratios.items():
            print(f"  {t} x {t} tiles ({256 * t} px): {r:.2f}x")
    if args.roi_px:
        if gene_names is None and n_genes != 48:
            print("(part 2 needs G = 48 for a preset model: the phantom panel)")
        else:
            bench_roi(
                model, gene_names, preset, args.roi_px, args.roi_slices, args.roi_steps,
                args.roi_block, args.batch_size,
            )  # fmt: skip
    projection()


if __name__ == "__main__":
    main()
