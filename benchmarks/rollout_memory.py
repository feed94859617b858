"""Peak memory of a CW-VAE / HTSRM rollout against its horizon: one fresh process per horizon.

    python benchmarks/rollout_memory.py [--model cwvae] [--preset mmnist] [--context 36]
        [--horizons 1,100,300] [--batch 1] [--samples 4] [--device cpu]

Each horizon runs in its own subprocess (so one run's heap cannot hide another's), builds the model at the
preset, filters a random context and rolls out `horizon` frames without gradients. It prints the process's
peak RSS (`ru_maxrss`) and, on CUDA, `torch.cuda.max_memory_allocated`, with the size of the returned
frames: a rollout with memory flat in the horizon grows by little more than its output.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def measure(args: argparse.Namespace, horizon: int) -> dict:
    import torch

    import vpbench.predictors.cwvae  # noqa: F401
    import vpbench.predictors.htsrm  # noqa: F401
    from vpbench.predictor import create_predictor
    from vpbench.spec import VideoSpec

    torch.set_num_threads(1)
    device = torch.device(args.device)
    spec = VideoSpec(args.channels, 64, 64, args.context, horizon)
    model = create_predictor(args.model, spec, preset=args.preset).to(device).eval()
    context = torch.rand(args.batch, args.context, args.channels, 64, 64, device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        out = model(context, horizon, samples=args.samples, generator=generator)
    result = {"horizon": horizon, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "output_mib": out.numel() * out.element_size() / 2**20}
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cwvae")
    parser.add_argument("--preset", default="mmnist")
    parser.add_argument("--context", type=int, default=36)
    parser.add_argument("--horizons", default="1,100,300")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one horizon
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args, args.one)))
        return
    passed = [f"--{key}={getattr(args, key)}" for key in ("model", "preset", "context", "batch", "samples", "channels",
                                                         "device")]
    print(f"{args.model} at preset {args.preset}: context {args.context}, batch {args.batch} x {args.samples} "
          f"samples, {args.device}")
    for horizon in (int(h) for h in args.horizons.split(",")):
        line = subprocess.run([sys.executable, __file__, *passed, "--one", str(horizon)], check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(line)
        extra = f", CUDA peak {r['cuda_peak_mib']:.1f} MiB" if "cuda_peak_mib" in r else ""
        print(f"horizon {r['horizon']:>4}: peak RSS {r['peak_rss_mib']:.1f} MiB "
              f"(output {r['output_mib']:.1f} MiB){extra}")


if __name__ == "__main__":
    main()
