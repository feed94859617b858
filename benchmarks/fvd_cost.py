"""What FVD adds to an evaluation, per clip: I3D feature extraction in each convention, at a protocol's shape.

    python benchmarks/fvd_cost.py --i3d-weights i3d_torchscript.pt [--device cuda] [--repeats 5]

For the main job's clips (moving-digits 10 -> 10, 64x64 grey) and sjtu4k's (4 -> 4, 2176x4096 RGB), and each FVD
convention that scores them, it times `vpbench.metrics.fvd.features` on --clips random clips (preprocessing and
the detector, as the evaluation calls them for the ground truth and again for every predicted sample) and prints
the median milliseconds per clip and the peak memory (CUDA allocator peak on a GPU, process peak RSS on the CPU).
Nothing here was run to make the README's statements: they are counts, not timings (README, "FVD").
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from vpbench.metrics.fvd import FVD_CONVENTIONS, features, load_detector
from vpbench.spec import VideoSpec

SHAPES = {"moving-digits 10to10": VideoSpec(1, 64, 64, 10, 10), "sjtu4k 4to4": VideoSpec(3, 2176, 4096, 4, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--i3d-weights", required=True, help="StyleGAN-V's i3d_torchscript.pt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    detector = load_detector(args.i3d_weights, device)
    for label, spec in SHAPES.items():
        for convention in FVD_CONVENTIONS.values():
            if (why := convention.problem(spec)) is not None:
                print(f"{label:22} {convention.name:14} not scored: {why}")
                continue
            frames = convention.clip_frames(spec)
            clips = torch.rand(args.clips, frames, spec.channels, spec.height, spec.width, device=device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for _ in range(args.repeats + 1):  # the first call warms up
                tic = time.perf_counter()
                features(detector, convention, clips)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append((time.perf_counter() - tic) * 1e3 / args.clips)
            peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            print(f"{label:22} {convention.name:14} {frames:3} frames  {statistics.median(times[1:]):9.1f} ms/clip  "
                  f"peak {peak / 2**20:8.0f} MiB ({'CUDA allocator' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
