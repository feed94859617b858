"""One evaluation loop: closed-loop rollouts over a split, metrics per predicted time step."""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .metrics import HIGHER_IS_BETTER, score_frames
from .precision import Precision, autocast
from .predictor import Predictor
from .sampling import SampleScores


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _FrameScorer:
    """MSE, MAE, PSNR and SSIM in the per-frame form `evaluate` collects from every scorer."""

    higher_is_better = HIGHER_IS_BETTER

    @staticmethod
    def score_frames(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return score_frames(pred, target)


@torch.no_grad()
def evaluate(model: Predictor, split: Dataset, *, device: torch.device, precision: Precision = "fp32",
             batch_size: int = 16, workers: int = 0, progress: object | None = None,
             extra_metrics: Sequence = (), samples: int = 1, seed: int = 0) -> dict:
    """Score `model` on every clip of `split`: the first `context` frames are given, the rest predicted.

    Predictions are clamped to [0, 1] before scoring (frames live there; the references clip too).
    A stochastic predictor draws `samples` predictions per clip from a generator seeded with `seed`, so
    the same seed gives the same samples; per-step and mean values are then the mean over samples, and
    "best_of_samples" holds the best of N (per sequence and metric, the sample with the best
    time-averaged score). A deterministic predictor is scored once.
    `extra_metrics` (LPIPS, detection) see the same clamped predictions in the same pass: those with
    `score_frames` (per-frame scores) are summarised like the frame metrics; the others
    (`update(pred, target)` / `compute() -> dict`) see the first sample and their per-step and mean
    values join the frame metrics', any other key of theirs (e.g. "detection") is returned as it is.
    """
    was_training = model.training
    model.eval()
    spec = model.spec
    scorers = [_FrameScorer(), *(m for m in extra_metrics if hasattr(m, "score_frames"))]
    accumulators = [m for m in extra_metrics if not hasattr(m, "score_frames")]
    scores = SampleScores({k: v for s in scorers for k, v in s.higher_is_better.items()}, spec.future, device)
    n = samples if model.stochastic else 1
    if n < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    generator = torch.Generator(device).manual_seed(seed) if model.stochastic else None
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
            if model.stochastic:
                prediction = model(context, spec.future, samples=n, generator=generator)
            else:
                prediction = model(context, spec.future).unsqueeze(1)
        _sync(device)
        forward_seconds += time.perf_counter() - tic
        prediction = prediction.float().clamp(0, 1)  # [B, N, T, C, H, W]
        flat_pred = prediction.flatten(0, 1)
        flat_target = target.unsqueeze(1).expand_as(prediction).flatten(0, 1)
        per_frame = {k: v.view(*prediction.shape[:3]) for s in scorers
                     for k, v in s.score_frames(flat_pred, flat_target).items()}
        scores.add(per_frame)
        for extra in accumulators:
            extra.update(prediction[:, 0], target)
        if progress is not None:
            progress.advance(clip.shape[0])
    model.train(was_training)
    summary = scores.compute()
    result = {**summary["mean_of_samples"], "sequences": summary["sequences"]}
    if model.stochastic:
        result["samples"] = n
        result["best_of_samples"] = summary["best_of_samples"]
    for extra in accumulators:
        for key, part in extra.compute().items():
            result.setdefault(key, {}).update(part)
    result["forward_seconds"] = forward_seconds
    return result
