"""vpbench SSIM against scikit-image's per-frame loop: milliseconds and the ratio, per clip shape.

    python benchmarks/ssim_speed.py [--threads 2] [--repeats 5] [--exact] [--device cpu]

For each shape [B, T, C, H, W] (16x10x1x64x64, 4x4x3x512x512 and one 1080p frame pair) it times, alternately
in this one process, `vpbench.metrics.frame.ssim` on all B*T frames at once (on --device, timed to the result
on the CPU) and `skimage.metrics.structural_similarity` frame by frame in float64 numpy (the settings vpbench
reproduces), and prints the median of --repeats runs of each, the ratio and the largest difference between
the two. --exact also times `ssim(..., exact=True)`, the float64 grouped-convolution reference (slow).
Frames: uniform noise targets and predictions with noise of 0.1 added, clipped to [0, 1].
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np
import torch
from skimage.metrics import structural_similarity

from vpbench.cpu import keep_freed_memory_for_reuse
from vpbench.metrics.frame import ssim

SHAPES = [(16, 10, 1, 64, 64), (4, 4, 3, 512, 512), (1, 1, 3, 1080, 1920)]


def skimage_loop(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.array([structural_similarity(p, t, data_range=1, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, channel_axis=0)
                     for p, t in zip(pred, target)])


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    tic = time.perf_counter()
    out = fn()
    return (time.perf_counter() - tic) * 1e3, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exact", action="store_true", help="also time ssim(exact=True), the float64 reference")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    keep_freed_memory_for_reuse()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"median of {args.repeats} alternating repeats")
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        target = torch.rand(shape, generator=g).flatten(0, 1)
        pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
        pred_np, target_np = pred.double().numpy(), target.double().numpy()
        on_device = pred.to(device), target.to(device)
        runs: dict[str, Callable[[], np.ndarray]] = {
            "vpbench": lambda: ssim(*on_device).cpu().numpy(),
            "skimage": lambda: skimage_loop(pred_np, target_np)}
        if args.exact:
            runs["exact"] = lambda: ssim(*on_device, exact=True).cpu().numpy()
        runs["vpbench"]()  # warm-up: band matrices, allocator, BLAS threads
        times: dict[str, list[float]] = {name: [] for name in runs}
        outputs: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for name, run in runs.items():
                ms, outputs[name] = timed(run)
                times[name].append(ms)
        ms = {name: statistics.median(values) for name, values in times.items()}
        line = (f"{'x'.join(map(str, shape))}: vpbench {ms['vpbench']:.1f} ms, skimage loop {ms['skimage']:.1f} ms, "
                f"skimage/vpbench {ms['skimage'] / ms['vpbench']:.2f}x")
        if args.exact:
            line += f", exact {ms['exact']:.1f} ms ({ms['skimage'] / ms['exact']:.2f}x)"
        diff = np.abs(outputs["vpbench"] - outputs["skimage"]).max()
        print(f"{line}; max |vpbench - skimage| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
