"""One evaluation loop: closed-loop rollouts over a split, metrics per predicted time step."""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .keep import KeptFrames
from .metrics.accumulate import MetricSums, Summary
from .metrics.base import Metric
from .metrics.conventions import Convention, ConventionMetric
from .metrics.frame import FrameMetric
from .precision import Precision, autocast, synchronize
from .predictor import Predictor, check_prediction
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


@torch.no_grad()
def evaluate(model: Predictor, split: Dataset, *, device: torch.device, precision: Precision = "fp32",
             batch_size: int = 16, workers: int = 0, progress: object | None = None,
             extra_metrics: Sequence[Metric] = (), samples: int = 1, seed: int = 0,
             conventions: Sequence[Convention] = (), keep_sequences: int = 0) -> dict:
    """Score `model` on every clip of `split`: the first `context` frames are given, the rest predicted.

    Predictions are clamped to [0, 1] before scoring (frames live there; OpenSTL and STIP clip too, while
    CW-VAE and HTSRM score their decoders' tanh outputs unclipped, which their `conventions` reproduce).
    A stochastic predictor draws `samples` predictions per clip from a generator seeded with `seed`, so
    the same seed gives the same samples; per-step and mean values are then the mean over samples, and
    "best_of_samples" holds the best of N (per sequence and metric, the sample with the best
    time-averaged score). A deterministic predictor is scored once.
    Under several processes each rank scores its `rank_share` and the sums are added over ranks.
    MSE, MAE, PSNR and SSIM are always measured; `extra_metrics` (LPIPS, detection) see the same clamped
    predictions in the same pass, those with `every_sample` False only the first sample. Every metric's
    per-step and mean figures are returned together; any other block of a metric's (e.g. "detection") as it is.
    Each of `conventions` (a reference's way of scoring, metrics/conventions.py) is scored in the same pass
    and returned apart, under "conventions" -> name -> its own per-step, mean and best of N figures.
    With `keep_sequences`, "kept_frames" holds the frames of that many sequences chosen from `seed` (vpbench.keep;
    on rank 0, None elsewhere).
    """
    was_training = model.training
    model.eval()
    spec = model.spec
    n = samples if model.stochastic else 1
    if n < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    sums = [MetricSums(metric, spec.future, device) for metric in (FrameMetric(), *extra_metrics)]
    convention_sums = {c.name: MetricSums(ConventionMetric(c), spec.future, device) for c in conventions}
    generator = torch.Generator(device).manual_seed(seed) if model.stochastic else None
    # A private generator keeps validation from consuming the global RNG that training draws from.
    share = rank_share(split, model.stochastic)
    keep = KeptFrames.for_split(len(split), share, keep_sequences, seed, spec.context, spec.future)
    loader = DataLoader(share, batch_size=batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))
    forward_seconds = 0.0
    for clip in loader:
        clip = clip.to(device, non_blocking=True)
        context, target = clip[:, : spec.context], clip[:, spec.context: spec.context + spec.future]
        synchronize(device)
        tic = time.perf_counter()
        with autocast(device, precision):
            if model.stochastic:
                prediction = model(context, spec.future, samples=n, generator=generator)
                check_prediction(model, prediction, context, spec.future, n)
            else:
                prediction = model(context, spec.future)
                check_prediction(model, prediction, context, spec.future)
                prediction = prediction.unsqueeze(1)
        synchronize(device)
        forward_seconds += time.perf_counter() - tic
        output = prediction.float()  # [B, N, T, C, H, W]
        prediction = output.clamp(0, 1)
        for metric_sums in (*sums, *convention_sums.values()):
            metric_sums.add(prediction if metric_sums.metric.clipped else output, target)
        keep.add(context, target, prediction)
        if progress is not None:
            progress.advance(clip.shape[0])
    model.train(was_training)
    if model.stochastic:
        distributed.barrier(patient=True)  # the other ranks wait here while rank 0 scores alone
    summaries = [metric_sums.summary() for metric_sums in sums]  # collective: every rank, in the same order
    by_convention = {name: metric_sums.summary() for name, metric_sums in convention_sums.items()}
    result: dict[str, Any] = {"per_step": {}, "mean": {}, "sequences": summaries[0].sequences}
    if model.stochastic:
        result["samples"] = n
        result["best_of_samples"] = {"per_step": {}, "mean": {}}
    for summary in summaries:
        _merge(result, summary.figures)
        if model.stochastic and summary.best_of_samples is not None:
            _merge(result["best_of_samples"], summary.best_of_samples)
    if conventions:
        result["conventions"] = {c.name: _convention_figures(c, by_convention[c.name], model.stochastic)
                                 for c in conventions}
    result["forward_seconds"] = forward_seconds
    result["kept_frames"] = keep.gather()  # collective, like the summaries
    return result


def _convention_figures(convention: Convention, summary: Summary, stochastic: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"settings": convention.settings(), **summary.figures}
    if stochastic and summary.best_of_samples is not None:
        figures["best_of_samples"] = summary.best_of_samples
    return figures
