"""GPU throughput of the generation engine, bf16 error against float32, whole-brain projection.

Usage (on a GPU machine: Python 3.12, its own torch, no napari needed)::

    python benchmarks/gpu.py                          # reference preset, bf16, cuda:0
    python benchmarks/gpu.py --block-px 2048 --batch-size 512 --json gpu.json
    python benchmarks/gpu.py --device cpu --tiny      # smoke test (tests/test_benchmarks_gpu.py)

It imports only ``napari_teramind.{store,model,diffusion,generate}`` (plus torch and numpy):
no store on disk is needed. The network is the reference preset (213.8 M parameters at 229
genes) with seeded random weights: throughput does not depend on the weight values.

1. **Throughput**: the engine's batched stream (``generate.engine.advance``, the code every
   job and ``generate_roi`` run) over whole blocks of one slice pair held in memory
   (``generate.resident.PairState``), ``--block-px`` px per block, ``--batch-size`` patches
   per call (default: what fits half the free GPU memory), under the project's one precision
   policy (``model.precision``; bf16 on CUDA). Reported as output patches per second (one
   output patch = one 64 x 64 px aligned patch of one slice pair, for one DDIM step; the halo
   re-encoding of the block border is included).
2. **GPU utilisation** during the timed steps: ``torch.cuda.utilization()`` (pynvml) or
   ``nvidia-smi``, sampled every 0.2 s.
3. **bf16 error**: a small region generated through all steps (``generate.resident.run_span``)
   in float32 and in bf16 from the same noise and genes: max and mean difference of the final
   images in uint8 grey levels, and of one step's noise prediction relative to its RMS.
4. **Projection**: a whole brain (50 slices of 73,216 x 105,984 px: 47.4 M output patches per
   step over the 25 slice pairs, 15 steps) on 8 GPUs of this kind at the measured rate, for the
   ``collage``, ``shifted-fused`` and default schemes (passes per step counted from the scheme), and
   scaled by dense bf16 peak FLOP/s to 8 x A100. A projection from a measurement, labelled so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from typing import Any

import numpy as np
import torch

#: Dense bf16 tensor peak FLOP/s by GPU name fragment (vendor data sheets).
BF16_PEAK = {
    "H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "A800": 312e12,
    "L40S": 362e12, "L40": 181e12, "A10": 125e12, "A6000": 155e12, "4090": 165e12,
}  # fmt: skip
A100_PEAK = BF16_PEAK["A100"]
BRAIN = {"slices": 50, "height": 73216, "width": 105984, "steps": 15}
#: Schemes projected: the published one, the two-grid fusion and the default (four grids).
PROJECTED = ("collage", "shifted-fused", "shifted-fused-4")


class RandomGenes:
    """Seeded synthetic gene counts with the engine's gene-source interface (no store)."""

    missing: tuple[str, ...] = ()

    def __init__(self, n_genes: int, seed: int = 0):
        self.gene_names = tuple(f"g{i}" for i in range(n_genes))
        self.n, self.seed = n_genes, seed

    def window(self, plan, pair, y0, y1, x0, x1) -> np.ndarray:
        gb = plan.gene_block_px
        rng = np.random.default_rng(
            [self.seed, pair, y0 + 2**20, x0 + 2**20, y1 + 2**20, x1 + 2**20]
        )
        counts = rng.poisson(0.3, size=(self.n, 4, (y1 - y0) // gb, (x1 - x0) // gb))
        return counts.astype(np.float32)


class Utilisation:
    """Samples GPU utilisation (%) in a thread while active."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.source = device, [], None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        try:
            value = float(torch.cuda.utilization(self.device))
            self.source = "torch.cuda.utilization"
            return value
        except Exception:
            pass
        if shutil.which("nvidia-smi"):
            idx = self.device.index or 0
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-i", str(idx)], capture_output=True, text=True, timeout=5,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.source = "nvidia-smi"
                return float(out.stdout.strip().splitlines()[0])
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            v = self._read()
            if v is None:
                return
            self.samples.append(v)
            self._stop.wait(0.2)

    def __enter__(self) -> Utilisation:
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def peak_of(name: str) -> float | None:
    """Dense bf16 peak of a GPU by name (None when unknown)."""
    for key, value in BF16_PEAK.items():
        if key.lower() in name.lower():
            return value
    return None


def passes_per_step(scheme: str, steps: int) -> float:
    """Mean passes per step of ``scheme`` (a fused step runs two or four)."""
    from napari_teramind.generate.schemes import step_grids

    return sum(len(step_grids(scheme, s, steps).passes) for s in range(steps)) / steps


def measure(model, n_genes: int, device: torch.device, block_px: int, blocks: int,
            batch_size: int, precision: str, steps_timed: int) -> dict[str, Any]:  # fmt: skip
    """Output patches per second of ``advance`` over ``blocks`` blocks of one slice pair."""
    from napari_teramind.diffusion import DDIMSchedule
    from napari_teramind.generate.engine import advance
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.generate.resident import PairState

    side = block_px * blocks
    plan = GenerationPlan((2, side, side), (0, side, 0, side), (0, 1), block_px=block_px,
                          steps=15, scheme="collage")  # fmt: skip
    genes = RandomGenes(n_genes)
    sched = DDIMSchedule.create(plan.steps)
    state = PairState.zeros(plan, (0,))
    state.arrays[0][:] = np.random.default_rng(0).standard_normal(state.arrays[0].shape)
    out = PairState.zeros(plan, (0,))

    def one_step(step: int) -> None:
        for _ in advance(plan, model, genes, state, out, step, plan.blocks, device=device,
                         batch_size=batch_size, precision=precision, schedule=sched):  # fmt: skip
            pass

    one_step(1)  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with Utilisation(device) as util:
        t0 = time.perf_counter()
        for s in range(steps_timed):
            one_step(1 + s)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    patches = plan.n_patches * steps_timed
    peak_mem = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"patches_per_s": patches / seconds, "seconds": seconds, "patches": patches,
            "utilisation_pct": util.mean, "utilisation_source": util.source,
            "peak_memory_bytes": peak_mem, "region_px": side}  # fmt: skip


def bf16_error(model, n_genes: int, device: torch.device, px: int, steps: int,
               batch_size: int) -> dict[str, float]:  # fmt: skip
    """Final images and one noise prediction, bf16 against float32, same noise and genes."""
    from napari_teramind.diffusion import DDIMSchedule
    from napari_teramind.generate.engine import predict_many, to_uint8
    from napari_teramind.generate.plan import GenerationPlan
    from napari_teramind.generate.resident import Span, run_span

    plan = GenerationPlan((2, px, px), (0, px, 0, px), (0, 1), block_px=min(px, 256),
                          steps=steps, scheme="collage")  # fmt: skip
    genes = RandomGenes(n_genes)
    sched = DDIMSchedule.create(steps)
    finals = {}
    for precision in ("fp32", "bf16"):
        x0 = np.zeros((4, px, px), np.float32)
        for step, blk, est, _ in run_span(plan, model, genes, Span((0,), 0, steps), None,
                                          device=device, batch_size=batch_size,
                                          precision=precision, schedule=sched):  # fmt: skip
            if blk is not None and step == steps - 1:
                x0[:, blk.y0 : blk.y1, blk.x0 : blk.x1] = est
        finals[precision] = to_uint8(x0).astype(int)
    rng = np.random.default_rng(1)
    window = rng.standard_normal((4, px + 64, px + 64)).astype(np.float32)
    g = genes.window(plan, 0, -32, px + 32, -32, px + 32)
    t = int(sched.timesteps[steps // 2])
    eps = {p: next(iter(predict_many(model, [(0, window, g)], t, batch_size=batch_size,
                                     device=device, precision=p)))[1].float().cpu()
           for p in ("fp32", "bf16")}  # fmt: skip
    rms = float(eps["fp32"].pow(2).mean().sqrt())
    d = np.abs(finals["fp32"] - finals["bf16"])
    return {"image_max_diff": int(d.max()), "image_mean_diff": float(d.mean()),
            "image_frac_over_2": float(np.mean(d > 2)),
            "eps_max_rel": float((eps["fp32"] - eps["bf16"]).abs().max()) / rms,
            "eps_rms_rel": float((eps["fp32"] - eps["bf16"]).pow(2).mean().sqrt()) / rms,
            "region_px": px, "steps": steps}  # fmt: skip


def projection(pps: float, n_gpus: int, peak: float | None) -> dict[str, Any]:
    """Whole-brain hours at ``pps`` per GPU on ``n_gpus``, per scheme; and on 8 A100."""
    pairs = BRAIN["slices"] // 2
    per_step = pairs * (BRAIN["height"] // 64) * (BRAIN["width"] // 64)
    out: dict[str, Any] = {"output_patches_per_step": per_step}
    for scheme in PROJECTED:
        work = per_step * BRAIN["steps"] * passes_per_step(scheme, BRAIN["steps"])
        hours = work / (pps * n_gpus) / 3600
        out[scheme] = {
            "hours_this_gpu_x8": hours,
            "hours_a100_x8": None if peak is None else hours * peak / A100_PEAK,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny preset, small sizes (smoke test)")
    ap.add_argument("--preset", default="reference")
    ap.add_argument("--genes", type=int, default=229)
    ap.add_argument("--block-px", type=int, default=1024)
    ap.add_argument("--blocks", type=int, default=2, help="blocks per side of the timed region")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps-timed", type=int, default=3)
    ap.add_argument("--precision", default=None, help="default: the policy (bf16 on CUDA)")
    ap.add_argument("--error-px", type=int, default=256)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    from napari_teramind.generate.devices import choose_batch_size
    from napari_teramind.model import ModelConfig, TeraMindUNet
    from napari_teramind.model.precision import default_precision

    if args.tiny:
        args.preset, args.genes, args.block_px, args.blocks = "tiny", 12, 128, 1
        args.steps_timed, args.error_px = 1, 64
    device = torch.device(args.device)
    args.precision = args.precision or default_precision(device)
    torch.manual_seed(0)
    model = TeraMindUNet(ModelConfig.preset(args.preset, args.genes)).to(device).eval()
    batch = args.batch_size or choose_batch_size(model, str(device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_of(name) if device.type == "cuda" else None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device {name}; torch {torch.__version__}; preset {args.preset} ({n_params:,} "
          f"parameters, {args.genes} genes); batch {batch}; "
          f"precision {args.precision}")  # fmt: skip
    thr = measure(model, args.genes, device, args.block_px, args.blocks, batch, args.precision,
                  args.steps_timed)  # fmt: skip
    util = "n/a" if thr["utilisation_pct"] is None else f"{thr['utilisation_pct']:.0f} %"
    print(f"throughput: {thr['patches_per_s']:.1f} output patches/s ({thr['patches']} patches, "
          f"{thr['region_px']} px region, {args.block_px} px blocks, {thr['seconds']:.2f} s); "
          f"GPU utilisation {util}")  # fmt: skip
    err = bf16_error(model, args.genes, device, args.error_px, 15 if not args.tiny else 2, batch)
    print(f"bf16 vs float32 ({err['region_px']} px, {err['steps']} steps): images max |diff| "
          f"{err['image_max_diff']}/255, mean {err['image_mean_diff']:.3f}, "
          f"{err['image_frac_over_2']:.2%} off by > 2; eps max {err['eps_max_rel']:.3g} x RMS, "
          f"RMS {err['eps_rms_rel']:.3g} x RMS")  # fmt: skip
    proj = projection(thr["patches_per_s"], args.gpus, peak)
    print(f"PROJECTION from this measurement: whole brain ({proj['output_patches_per_step']:,} "
          f"output patches per step, 15 steps)")  # fmt: skip
    for scheme in PROJECTED:
        p = proj[scheme]
        a100 = "n/a (unknown peak)" if p["hours_a100_x8"] is None else (
            f"{p['hours_a100_x8']:.1f} h")  # fmt: skip
        print(f"  {scheme:14} {args.gpus} x this device: {p['hours_this_gpu_x8']:.1f} h; "
              f"8 x A100 (scaled by bf16 peak): {a100}")  # fmt: skip
    result = {"device": name, "torch": torch.__version__, "preset": args.preset,
              "batch_size": batch, "precision": args.precision, "throughput": thr,
              "bf16_error": err, "projection": proj, "bf16_peak": peak}  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
