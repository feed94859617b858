"""One evaluation loop: closed-loop rollouts over a split, metrics per predicted time step."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .keep import KeptFrames
from .metrics.accumulate import MetricSums, MetricSummary
from .metrics.base import Metric
from .metrics.conventions import Convention, ConventionMetric
from .metrics.frame import FrameMetric
from .metrics.fvd import FvdSums, not_measured_key
from .precision import Precision, autocast, synchronize
from .predictor import Predictor, check_prediction
from .result import Summary
from .sharding import shard_bounds


def _merge(into: dict[str, Any], figures: dict[str, dict[str, Any]]) -> None:
    for key, part in figures.items():
        into.setdefault(key, {}).update(part)


def rank_share(split: Dataset, stochastic: bool) -> Dataset:
    """The sequences this rank scores: a contiguous share of `split`, every sequence exactly once over the
    ranks (the whole split in a single process). A stochastic predictor's samples come from one generator
    drawn in sequence order, so a share of its own would give its sequences other draws than one process
    gives them: rank 0 scores those alone and the other ranks wait."""
    world = distributed.current()
    if not world.several:
        return split
    if stochastic:
        start, stop = (0, len(split)) if world.is_main else (0, 0)
    else:
        start, stop = shard_bounds(len(split), world.rank, world.world_size)
    return Subset(split, range(start, stop))


@dataclass
class Scores:
    """What one evaluation measured: every metric's figures per predicted step and their means (a stochastic
    predictor's over its samples, and their best of N), in the names result.json gives them."""

    summary: Summary  # by metric; a stochastic predictor's: the mean over its samples
    sequences: int
    forward_seconds: float  # the rollouts' time, without scoring
    samples: int | None = None  # per sequence, for a stochastic predictor
    best_of_samples: Summary | None = None  # a stochastic predictor's best of N, per sequence and metric
    detection: dict[str, Any] | None = None  # the detection metric's settings and counts, where it was measured
    # name -> the figures scored in that reference convention: {"settings", "per_step", "mean"[, "best_of_samples"]}
    conventions: dict[str, dict[str, Any]] | None = None
    kept_frames: dict[str, np.ndarray] | None = None  # the kept sequences' frames (rank 0 only), vpbench.keep
    # FVD convention -> its figure and what it was scored with (metrics/fvd.py); the rest say why not measured
    fvd: dict[str, dict[str, Any]] | None = None
    fvd_not_measured: dict[str, str] | None = None


@torch.no_grad()
def evaluate(model: Predictor, split: Dataset, *, device: torch.device, precision: Precision = "fp32",
             batch_size: int = 16, workers: int = 0, progress: object | None = None,
             extra_metrics: Sequence[Metric] = (), samples: int = 1, seed: int = 0,
             conventions: Sequence[Convention] = (), keep_sequences: int = 0, fvd: Sequence[FvdSums] = ()) -> Scores:
    """Score `model` on every clip of `split`: the first `context` frames are given, the rest predicted.

    Predictions are clamped to [0, 1] before scoring (frames live there; OpenSTL and STIP clip too, while
    CW-VAE and HTSRM score their decoders' tanh outputs unclipped, which their `conventions` reproduce).
    A stochastic predictor draws `samples` predictions per clip from a generator seeded with `seed`, so
    the same seed gives the same samples; per-step and mean values are then the mean over samples, and
    `best_of_samples` holds the best of N (per sequence and metric, the sample with the best
    time-averaged score). A deterministic predictor is scored once.
    Under several processes each rank scores its `rank_share` and the sums are added over ranks.
    MSE, MAE, PSNR and SSIM are always measured; `extra_metrics` (LPIPS, detection) see the same clamped
    predictions in the same pass, those with `every_sample` False only the first sample.
    Each of `conventions` (a reference's way of scoring, metrics/conventions.py) is scored in the same pass
    and returned apart. With `keep_sequences`, `kept_frames` holds the frames of that many sequences chosen from
    `seed` (vpbench.keep). Each of `fvd` gathers I3D feature sums of the ground-truth and the clamped predicted
    clips of every sequence (every sample), for one FVD number per convention.
    """
    n = samples if model.stochastic else 1
    if n < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    spec = model.spec
    sums = [MetricSums(metric, spec.future, device) for metric in (FrameMetric(), *extra_metrics)]
    by_convention = [(c, MetricSums(ConventionMetric(c), spec.future, device)) for c in conventions]
    generator = torch.Generator(device).manual_seed(seed) if model.stochastic else None
    share = rank_share(split, model.stochastic)
    keep = KeptFrames.for_split(len(split), share, keep_sequences, seed, spec.context, spec.future)
    # A private generator keeps validation from consuming the global RNG that training draws from.
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    every = [*sums, *(convention_sums for _, convention_sums in by_convention)]
    was_training = model.training
    model.eval()
    forward_seconds = 0.0
    for clip in loader:
        clip = clip.to(device, non_blocking=True)
        context, target = clip[:, : spec.context], clip[:, spec.context: spec.context + spec.future]
        output, seconds = predict(model, context, n, generator, precision)
        forward_seconds += seconds
        prediction = output.clamp(0, 1)
        for metric_sums in every:
            metric_sums.add(prediction if metric_sums.metric.clipped else output, target)
        for fvd_sums in fvd:
            fvd_sums.add(context, prediction, target, n)
        keep.add(context, target, prediction)
        if progress is not None:
            progress.advance(clip.shape[0])
    model.train(was_training)
    if model.stochastic:
        distributed.barrier(patient=True)  # the other ranks wait here while rank 0 scores alone
    scores = collect(sums, by_convention, n if model.stochastic else None, forward_seconds, keep)
    results = [(fvd_sums.convention, fvd_sums.result(n)) for fvd_sums in fvd]  # collective, in the same order
    scores.fvd = {c.name: r for c, r in results if not isinstance(r, str)} or None
    scores.fvd_not_measured = {not_measured_key(c): r for c, r in results if isinstance(r, str)} or None
    return scores


def predict(model: Predictor, context: Tensor, samples: int, generator: torch.Generator | None,
            precision: Precision) -> tuple[Tensor, float]:
    """The rollout of one batch as float32 [B, N, T, C, H, W], unclamped (N is 1 for a deterministic predictor),
    and its time in seconds; the shape is checked against the contract."""
    future, device = model.spec.future, context.device
    synchronize(device)
    tic = time.perf_counter()
    with autocast(device, precision):
        if model.stochastic:
            prediction = model(context, future, samples=samples, generator=generator)
            check_prediction(model, prediction, context, future, samples)
        else:
            prediction = model(context, future)
            check_prediction(model, prediction, context, future)
            prediction = prediction.unsqueeze(1)
    synchronize(device)
    return prediction.float(), time.perf_counter() - tic


def collect(sums: list[MetricSums], by_convention: list[tuple[Convention, MetricSums]], samples: int | None,
            forward_seconds: float, keep: KeptFrames) -> Scores:
    """The figures of every metric and convention, summed over ranks; `samples` None for a deterministic
    predictor. Collective: every rank calls it once."""
    summaries = [metric_sums.summary() for metric_sums in sums]  # every rank, in the same order
    conventions = [(c, metric_sums.summary()) for c, metric_sums in by_convention]
    figures: dict[str, dict[str, Any]] = {"per_step": {}, "mean": {}}
    best: dict[str, dict[str, Any]] = {"per_step": {}, "mean": {}}
    for summary in summaries:
        _merge(figures, summary.figures)
        if summary.best_of_samples is not None:
            _merge(best, summary.best_of_samples)
    stochastic = samples is not None
    return Scores(
        summary=Summary(figures["per_step"], figures["mean"]), sequences=summaries[0].sequences,
        forward_seconds=forward_seconds, samples=samples,
        best_of_samples=Summary(best["per_step"], best["mean"]) if stochastic else None,
        detection=figures.get("detection"),
        conventions={c.name: _convention_figures(c, summary, stochastic) for c, summary in conventions} or None,
        kept_frames=keep.gather())  # collective, like the summaries


def _convention_figures(convention: Convention, summary: MetricSummary, stochastic: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"settings": convention.settings(), **summary.figures}
    if stochastic and summary.best_of_samples is not None:
        figures["best_of_samples"] = summary.best_of_samples
    return figures
