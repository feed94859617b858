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

from dataclasses import dataclass, replace
from typing import Iterator

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
# Halvings of the frame tried for the dry forward (a model may refuse a size its patches do not divide).
MAX_HALVINGS = 24


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
    """`spec` if its clips are cheap, else the frame halved (the longer side first) until they are."""
    height, width = spec.height, spec.width
    for _ in range(MAX_HALVINGS):
        candidate = replace(spec, height=height, width=width)
        if clip_bytes(candidate) <= DRY_CLIP_BYTES:
            yield candidate
        if height >= width and height >= 16:
            height //= 2
        elif width >= 16:
            width //= 2
        else:
            return


def activations_per_clip(resolved: ResolvedConfig, spec: VideoSpec, device: torch.device) -> int | None:
    """Bytes of the tensors a batch-1 forward with gradients saves for its backward (what a training step holds
    at its peak besides the weights), counted on the first cheap frame size the model accepts and scaled to
    `spec`'s frame area. Counted through autograd's saved-tensor hooks, each storage once and the weights left
    out: the same number on every device and at every call, whatever the allocator keeps. The model is built
    for the count and dropped, under a forked RNG, so the run that follows is the one it would have been
    without it. None when no size is accepted."""
    for small in smaller_specs(spec):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                model = resolved.build(small).to(device).eval()
            except UserError:  # e.g. patches that do not divide this size: try a smaller one
                continue
            saved = _saved_bytes(model, device)
        return round(saved * (spec.height * spec.width) / (small.height * small.width))
    return None


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


