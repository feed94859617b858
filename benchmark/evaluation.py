"""One evaluation loop: closed-loop rollouts over a split, metrics per predicted time step."""
from __future__ import annotations

import contextlib
import time
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .metrics import FrameMetrics
from .predictor import Predictor


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for fp16 / bf16 runs; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: Predictor, split: Dataset, *, device: torch.device, precision: str = "fp32",
             batch_size: int = 16, workers: int = 0, progress: object | None = None,
             extra_metrics: Sequence = ()) -> dict:
    """Score `model` on every clip of `split`: the first `context` frames are given, the rest predicted.

    Predictions are clamped to [0, 1] before scoring (frames live there; the references clip too).
    Returns FrameMetrics' per-step and mean values plus the number of sequences and the forward time.
    `extra_metrics` (LPIPS, detection: objects with `update(pred, target)` and `compute() -> dict`) see the
    same clamped predictions in the same pass; their per-step and mean values join FrameMetrics', any other
    key of theirs (e.g. "detection") is returned as it is.
    """
    was_training = model.training
    model.eval()
    spec = model.spec
    metrics = FrameMetrics(spec.future, device=device)
    # A private generator keeps validation from consuming the global RNG that training draws from.
    loader = DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    forward_seconds = 0.0
    for clip in loader:
        clip = clip.to(device, non_blocking=True)
        context, target = clip[:, : spec.context], clip[:, spec.context: spec.context + spec.future]
        _sync(device)
        tic = time.perf_counter()
        with autocast(device, precision):
            prediction = model(context, spec.future)
        _sync(device)
        forward_seconds += time.perf_counter() - tic
        prediction = prediction.float().clamp(0, 1)
        metrics.update(prediction, target)
        for extra in extra_metrics:
            extra.update(prediction, target)
        if progress is not None:
            progress.advance(clip.shape[0])
    model.train(was_training)
    result = metrics.compute()
    for extra in extra_metrics:
        for key, part in extra.compute().items():
            result.setdefault(key, {}).update(part)
    result["forward_seconds"] = forward_seconds
    return result
