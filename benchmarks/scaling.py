"""Training throughput (clips per second) of the harness's own train loop in 1 and 2 processes.

    python benchmarks/scaling.py [--model convlstm] [--iterations 40] [--batch 8] [--device cpu|cuda]

Each configuration runs `vpbench.training.train` (the loop `bench train` runs: the global batch drawn per
iteration, each rank's slice, the gradient sum in `TrainContext.step`, rank 0's checkpoint writes) on
moving-digits at the model's moving-digits preset, started through torch.distributed.run as `bench --nproc`
starts it; throughput is global clips per second of training wall time (the loop, one last 2-sequence
validation and the final checkpoint). On the CPU: 1 process with every core, 1 process with half of them, and 2
processes (gloo) with half each. With --device cuda: 1 process on 1 GPU (and 2 when there are two GPUs).
Run it on an otherwise idle machine: figures taken under load are not figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER_FLAG = "--worker"


def worker(args: argparse.Namespace) -> None:
    """One rank: train and, on rank 0, print the throughput as one JSON line."""
    import torch

    from vpbench import distributed
    from vpbench.predictor import resolve_config
    from vpbench.devices import resolve_device
    from vpbench.runner import build_dataset
    from vpbench.store import RunDir
    from vpbench.training import train

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    world = distributed.init_from_environment(device)
    dataset = build_dataset("moving-digits", None, {"train_size": 256, "val_size": 2})
    overrides = {"max_iterations": args.iterations, "batch_size": args.batch, "val_every": args.iterations,
                 "checkpoint_every": args.iterations, "val_sequences": 2}
    resolved = resolve_config(args.model, dataset.presets(), overrides)
    torch.manual_seed(0)
    model = resolved.build(dataset.spec).to(device)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(distributed.broadcast_object(scratch))  # rank 0's directory: one run, one writer
        run = RunDir(root, "moving-digits", args.model, {"scaling": world.world_size}, writes=world.is_main)
        run.prepare(force=False)
        distributed.barrier()
        summary = train(model, dataset.split("train"), dataset.split("val"), run, seed=0, device=device,
                        show_progress=False)
        distributed.barrier()  # rank 0's directory goes when it leaves: not before the others are done
    if world.is_main:
        print(json.dumps({"processes": world.world_size, "threads": args.threads,
                          "clips_per_second": args.iterations * args.batch / summary.wall_seconds}), flush=True)
    distributed.shutdown()


def measure(processes: int, threads: int, args: argparse.Namespace) -> float:
    """Global clips per second of `processes` ranks of `threads` threads each."""
    script = [str(Path(__file__).resolve()), WORKER_FLAG, "--model", args.model, "--iterations",
              str(args.iterations), "--batch", str(args.batch), "--device", args.device, "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               *script]
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{processes} processes failed:\n{out.stderr[-3000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    return json.loads(line)["clips_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="convlstm")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="the global batch, the same in every configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    cores = os.cpu_count() or 1
    if args.device == "cpu":
        configurations = [(1, cores), (1, max(1, cores // 2)), (2, max(1, cores // 2))]
    else:
        import torch

        configurations = [(1, 1)] + ([(2, 1)] if torch.cuda.device_count() >= 2 else [])
    print(f"{args.model}, moving-digits preset, global batch {args.batch}, {args.iterations} iterations, "
          f"device {args.device}, {cores} cores")
    base = None
    for processes, threads in configurations:
        rate = measure(processes, threads, args)
        base = base or rate
        print(f"{processes} process(es) x {threads} thread(s): {rate:7.2f} clips/s  ({rate / base:.2f}x the first)",
              flush=True)


if __name__ == "__main__":
    main()
