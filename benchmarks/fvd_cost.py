"""What FVD adds to an evaluation, per clip: I3D feature extraction in each convention, at a protocol's shape.

    python benchmarks/fvd_cost.py --i3d-weights i3d_torchscript.pt --i3d-pytorch-weights i3d_pretrained_400.pt \
        [--device cuda] [--repeats 5]

For the main job's clips (moving-digits 10 -> 10, 64x64 grey), sjtu4k's (4 -> 4, 2176x4096 RGB) and 4K clips long
enough for every convention (10 -> 10, 2160x3840 RGB), and each FVD convention that scores them and whose I3D file
is given, it times `vpbench.metrics.fvd.features` on --clips random clips (one at 4K: preprocessing and the
detector, as the evaluation calls them for the ground truth and again for every predicted sample) and prints the
median milliseconds per clip and the peak memory (CUDA allocator peak on a GPU, process peak RSS on the CPU; the
random clips themselves count in it). Nothing here was run to make the README's statements: they are counts,
not timings (README, "FVD").
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from vpbench.metrics.fvd import FVD_CONVENTIONS, features
from vpbench.spec import VideoSpec

SHAPES = {"moving-digits 10to10": VideoSpec(1, 64, 64, 10, 10), "sjtu4k 4to4": VideoSpec(3, 2176, 4096, 4, 4),
          "4K 10to10": VideoSpec(3, 2160, 3840, 10, 10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--i3d-weights", help="StyleGAN-V's i3d_torchscript.pt (stylegan-v, mcvd, predbench-jit)")
    parser.add_argument("--i3d-pytorch-weights", help="VideoGPT's i3d_pretrained_400.pt (videogpt, tats)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    files = {"i3d-torchscript": args.i3d_weights, "i3d-pytorch": args.i3d_pytorch_weights}
    detectors = {}
    for label, spec in SHAPES.items():
        for convention in FVD_CONVENTIONS.values():
            key = convention.detector.weights.key
            if (why := convention.problem(spec)) is not None or files[key] is None:
                print(f"{label:22} {convention.name:14} not scored: {why or 'no ' + convention.detector.weights.flag}")
                continue
            if key not in detectors:
                detectors[key] = convention.detector.load(files[key], device)
            detector = detectors[key]
            frames = convention.clip_frames(spec)
            count = args.clips if spec.height * spec.width <= 512 * 512 else 1  # a 20-frame 4K clip is 2 GB
            clips = torch.rand(count, frames, spec.channels, spec.height, spec.width, device=device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times = []
            for _ in range(args.repeats + 1):  # the first call warms up
                tic = time.perf_counter()
                features(detector, convention, clips)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append((time.perf_counter() - tic) * 1e3 / count)
            peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            print(f"{label:22} {convention.name:14} {frames:3} frames  {statistics.median(times[1:]):9.1f} ms/clip  "
                  f"peak {peak / 2**20:8.0f} MiB ({'CUDA allocator' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
