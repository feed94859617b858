"""Will a run fit? An estimate before the first large allocation, so that a frame size or batch the machine
cannot hold ends with one line instead of the kernel's out-of-memory kill minutes later.

The estimate adds what is certain to be allocated: the clips of one training batch and of one evaluation batch
(float32, with the predictions), the weights with their gradients and Adam moments, and the activations a
training batch keeps for its backward: the tensors a dry forward at batch 1 saves for it, on frames small
enough to be cheap (the model built for them, at most DRY_CLIP_BYTES a clip), scaled by frame area and batch.
It is an estimate of the least the run needs: the run is refused only when even that does not fit, and warned
about when it takes over half the free memory. What it leaves out is real: the backward's gradient buffers and
the allocator's slack. A ConvLSTM training step (tiny preset, batch 4, 4096x64 and 16384x64 frames) peaked at
1.8-2.0x the estimate above the process's start, so a run the estimate puts near the limit may not fit.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch

from .errors import UserError
from .predictor import ResolvedConfig
from .spec import VideoSpec

FLOAT_BYTES = 4
# Adam: the weights, their gradients and two moments
TRAINING_COPIES = 4
# The dry forward runs on frames whose clip takes at most this: a fraction of a second, and far from
# exhausting any memory (the main job's clips take 0.3 MB).
DRY_CLIP_BYTES = 8 * 2**20
# Frame sizes tried for the dry forward (a model may refuse a size its patches do not divide), the smallest side.
MAX_CANDIDATES = 48
MIN_SIDE = 8


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**29 else f"{n / 2**20:.1f} MB"


def available_bytes(device: torch.device) -> tuple[int, str] | None:
    """Free memory where the run's tensors live, and what the number is; None when it cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"{torch.cuda.get_device_name(device)} has {gib(free)} free"
    try:
        with open("/proc/meminfo") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    return kib * 1024, f"this machine has {gib(kib * 1024)} available"


@dataclass
class MemoryNeed:
    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return " + ".join(f"{what} {gib(n)}" for what, n in self.parts.items() if n)


def clip_bytes(spec: VideoSpec) -> int:
    return spec.length * spec.channels * spec.height * spec.width * FLOAT_BYTES


def estimate(spec: VideoSpec, parameters: int, *, batch_size: int, eval_batch_size: int, samples: int,
             training: bool, activations_per_clip: int | None = None) -> MemoryNeed:
    frame = spec.channels * spec.height * spec.width * FLOAT_BYTES
    parts = {"weights": parameters * FLOAT_BYTES * (TRAINING_COPIES if training else 1)}
    if training:
        parts["training clips"] = batch_size * clip_bytes(spec)
        if activations_per_clip is not None:
            parts["activations"] = batch_size * activations_per_clip
    # evaluation: the clips, the predictions (float, every sample) and the clamped copy the metrics score
    evaluation = eval_batch_size * (clip_bytes(spec) + 2 * samples * spec.future * frame)
    parts["evaluation batch"] = evaluation if not training else max(0, evaluation - parts["training clips"])
    return MemoryNeed(parts)


# Above this share of the free memory the estimate is a warning: it leaves out the backward's buffers (above).
WARN_SHARE = 0.5


def check_fits(need: MemoryNeed, spec: VideoSpec, name: str, device: torch.device, *, batch_size: int) -> str | None:
    """Refuse the run in one line when `need` exceeds the free memory; a warning line when it takes over
    WARN_SHARE of it, else None."""
    free = available_bytes(device)
    if free is None or need.total <= WARN_SHARE * free[0]:
        return None
    what = (f"{name}: frames {spec.height}x{spec.width}x{spec.channels}, {spec.length} per clip, batch {batch_size}: "
            f"the run needs at least {gib(need.total)} ({need.describe()}), {free[1]}")
    if need.total <= free[0]:
        return f"{what}; the backward and the allocator may need up to twice that"
    raise UserError(f"{what}; lower batch_size / eval_batch_size or the frame size (--set data.height=...)")


def smaller_specs(spec: VideoSpec) -> Iterator[VideoSpec]:
    """`spec` if its clips are cheap, else frames whose sides divide the frame's sides, largest first (the closest
    to the frame's shape first among equals), whose clips are cheap: dividing keeps what a model's patches and
    strides need of the sides (2160x3840 gives 216x384, not the 270x480 that halving reaches and a patch of 4
    refuses)."""
    if clip_bytes(spec) <= DRY_CLIP_BYTES:
        yield spec
        return
    aspect = spec.height / spec.width
    sides = [(h, w) for h in _divided(spec.height) for w in _divided(spec.width)
             if clip_bytes(replace(spec, height=h, width=w)) <= DRY_CLIP_BYTES]
    sides.sort(key=lambda hw: (-hw[0] * hw[1], abs(math.log(hw[0] / hw[1] / aspect))))
    for height, width in sides[:MAX_CANDIDATES]:
        yield replace(spec, height=height, width=width)


def _divided(side: int) -> list[int]:
    """`side` divided by each of its divisors, down to MIN_SIDE."""
    return [side // d for d in range(1, side + 1) if side % d == 0 and side // d >= MIN_SIDE]


def _dry_count(resolved: ResolvedConfig, spec: VideoSpec, device: torch.device,
               count: Callable[[torch.nn.Module, torch.device], int]) -> int | None:
    """`count` of the model built for the first cheap frame size it accepts, scaled to `spec`'s frame area; the
    model is built under a forked RNG and dropped. None when no size is accepted."""
    for small in smaller_specs(spec):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                model = resolved.build(small).to(device).eval()
            except UserError:  # e.g. patches that do not divide this size: try a smaller one
                continue
            counted = count(model, device)
        return round(counted * (spec.height * spec.width) / (small.height * small.width))
    return None


def activations_per_clip(resolved: ResolvedConfig, spec: VideoSpec, device: torch.device) -> int | None:
    """Bytes of the tensors a batch-1 forward with gradients saves for its backward (what a training step holds
    at its peak besides the weights), counted on the first cheap frame size the model accepts and scaled to
    `spec`'s frame area. Counted through autograd's saved-tensor hooks, each storage once and the weights left
    out: the same number on every device and at every call, whatever the allocator keeps. The model is built
    for the count and dropped, under a forked RNG, so the run that follows is the one it would have been
    without it. None when no size is accepted."""
    return _dry_count(resolved, spec, device, _saved_bytes)


def forward_peak_bytes(resolved: ResolvedConfig, spec: VideoSpec, device: torch.device) -> int | None:
    """The peak of what a batch-1 forward without gradients allocates above what it starts with (the weights are
    already there), measured on the first cheap frame size the model accepts and scaled to `spec`'s frame area:
    an estimate, good where activations follow the area (convolutions), low where they grow faster (attention
    over every position), high where fixed-size buffers dominate the small frames. On the CPU it follows the
    allocator's events under torch.profiler (workspaces such as a convolution's unfolded input included); on a
    GPU, torch.cuda's peak statistics."""
    return _dry_count(resolved, spec, device, _forward_peak)


def _forward_peak(model: torch.nn.Module, device: torch.device) -> int:
    spec = model.spec
    clip = torch.zeros(1, spec.context, spec.channels, spec.height, spec.width, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            model(clip, spec.future)
        return torch.cuda.max_memory_allocated(device) - start
    with _quiet_stderr(), torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                                  profile_memory=True) as recorded:
        model(clip, spec.future)
    live = peak = 0
    # Each event's own allocations minus frees, in the order they happened: the live bytes over time.
    for event in sorted(recorded.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what the profiler's C++ side writes to file descriptor 2 (start/stop notes, a GPU probe's error on a
    machine without one): the user's terminal keeps one line per outcome."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_forward_fits(name: str, spec: VideoSpec, parameters: int, forward_peak: int | None,
                       device: torch.device) -> None:
    """Refuse, in one line, a batch-1 forward that `forward_peak_bytes` says needs more than the free memory (with
    the clip and the predictions; the weights are already allocated)."""
    free = available_bytes(device)
    if free is None or forward_peak is None:
        return
    frame = spec.channels * spec.height * spec.width * FLOAT_BYTES
    need = MemoryNeed({"clip": clip_bytes(spec), "predictions": spec.future * frame, "the forward": forward_peak})
    if need.total > free[0]:
        raise UserError(f"{name}: a batch-1 forward on {spec.height}x{spec.width}x{spec.channels} frames needs about "
                        f"{gib(need.total)} ({need.describe()}: its peak on smaller frames, scaled by the area) "
                        f"besides its {gib(parameters * FLOAT_BYTES)} of weights; {free[1]}")


def _saved_bytes(model: torch.nn.Module, device: torch.device) -> int:
    spec = model.spec
    clip = torch.zeros(1, spec.context, spec.channels, spec.height, spec.width, device=device)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, torch.Tensor] = {}  # held until the count ends, so that no address is reused meanwhile
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights and storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = tensor
            total += storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        prediction = model(clip, spec.future)
        total += prediction.untyped_storage().nbytes()
    return total


