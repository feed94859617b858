"""Per-step sums over sequences of a metric's per-frame scores, for the mean over samples and the best of N.

Sums are kept in float64 so that shards evaluated by several processes combine exactly. A deterministic
predictor gives one sample, for which the mean and the best are the same. For a stochastic one the papers
report the best of N samples, chosen per sequence and per metric by the sample's score averaged over time
(CW-VAE's and HTSRM's evaluation code does this); the mean over samples says what a single draw is worth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from .base import Metric


class StepSums:
    """Named rows of per-step sums: `add` a [rows, horizon] tensor per batch, read the `totals` once."""

    def __init__(self, names: Sequence[str], horizon: int, device: torch.device | str | None = None) -> None:
        self.names = tuple(names)
        self.horizon = horizon
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self._sums = torch.zeros(len(self.names), horizon, dtype=torch.float64, device=self.device)

    def add(self, rows: Tensor) -> None:
        if rows.shape != self._sums.shape:
            raise ValueError(f"expected sums of shape {tuple(self._sums.shape)} ({', '.join(self.names)} x steps), "
                             f"got {tuple(rows.shape)}")
        self._sums += rows.to(self.device, torch.float64)

    def totals(self) -> Tensor:
        """The sums over every process ([rows, horizon], CPU). Collective under torch.distributed: every rank
        calls it exactly once."""
        sums = self._sums.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)
        return sums.cpu()


@dataclass(frozen=True)
class SampleTotals:
    """Per-step sums over sequences ({name: [horizon]}) of each score's mean over samples and best of N."""

    mean: dict[str, Tensor]
    best: dict[str, Tensor]
    sequences: int
    samples: int | None


class MeanAndBestOfN:
    """Sums per-frame scores [B, N, T]: every name's mean over the N samples, and for the names in `best`
    (name -> higher is better) the best of N."""

    def __init__(self, names: Sequence[str], best: Mapping[str, bool | None], horizon: int,
                 device: torch.device | str | None = None) -> None:
        unranked = [name for name, higher in best.items() if higher is None or name not in names]
        if unranked:
            raise ValueError(f"a best of N needs per-frame scores with a better direction, not {unranked}")
        self.names = tuple(names)
        self.best = dict(best)
        self.sums = StepSums([*(f"mean:{n}" for n in self.names), *(f"best:{n}" for n in self.best), "count"],
                             horizon, device)
        self.samples: int | None = None

    @torch.no_grad()
    def add(self, scores: Mapping[str, Tensor]) -> None:
        """Per-frame scores of one batch, each [B, N, T] (N samples of each of B sequences)."""
        if set(scores) != set(self.names):
            raise ValueError(f"expected scores of {sorted(self.names)}, got {sorted(scores)}")
        shape = next(iter(scores.values())).shape
        if any(s.shape != shape for s in scores.values()) or len(shape) != 3:
            raise ValueError(f"expected per-frame scores of one shape [B, N, T], got "
                             f"{ {k: tuple(v.shape) for k, v in scores.items()} }")
        if self.samples not in (None, shape[1]):
            raise ValueError(f"batches disagree on the number of samples: {self.samples} and {shape[1]}")
        self.samples = shape[1]
        values = {name: scores[name].double() for name in self.names}
        means = [values[name].mean(dim=1).sum(dim=0) for name in self.names]
        bests = []
        for name, higher in self.best.items():
            over_time = values[name].mean(dim=2)  # [B, N]
            chosen = over_time.argmax(dim=1) if higher else over_time.argmin(dim=1)
            bests.append(values[name][torch.arange(shape[0], device=over_time.device), chosen].sum(dim=0))
        count = torch.full_like(means[0], float(shape[0]))
        self.sums.add(torch.stack([*means, *bests, count]))

    def totals(self) -> SampleTotals:
        """Collective under torch.distributed (it sums the shards): call it once on every rank."""
        totals = self.sums.totals()
        sequences = int(totals[-1, 0].item())
        if sequences == 0:
            raise ValueError("MeanAndBestOfN.totals() called before any add()")
        k = len(self.names)
        return SampleTotals(mean=dict(zip(self.names, totals[:k])), best=dict(zip(self.best, totals[k:-1])),
                            sequences=sequences, samples=self.samples)


@dataclass(frozen=True)
class MetricSummary:
    """A metric's figures over an evaluation: over the mean of samples, and over the best of N (None for a
    metric of the first sample only)."""

    figures: dict[str, dict[str, Any]]
    best_of_samples: dict[str, dict[str, Any]] | None
    sequences: int


class MetricSums:
    """One metric over an evaluation: `add` each batch of predictions, read the `summary` once at the end."""

    def __init__(self, metric: Metric, horizon: int, device: torch.device | str | None = None) -> None:
        self.metric = metric
        best = metric.higher_is_better if metric.every_sample else {}
        self.sums = MeanAndBestOfN(metric.names, best, horizon, device)

    @torch.no_grad()
    def add(self, prediction: Tensor, target: Tensor) -> None:
        """Predictions [B, N, T, C, H, W] (N samples of each clip) and the clips' targets [B, T, C, H, W]."""
        if prediction.ndim != 6 or prediction.shape[:1] + prediction.shape[2:] != target.shape:
            raise ValueError(f"expected predictions [B, N, T, C, H, W] of targets [B, T, C, H, W], got "
                             f"{tuple(prediction.shape)} and {tuple(target.shape)}")
        if not self.metric.every_sample:
            prediction = prediction[:, :1]
        b, n, t = prediction.shape[:3]
        scores = self.metric.score_frames(prediction.flatten(0, 1),
                                          target.unsqueeze(1).expand_as(prediction).flatten(0, 1))
        self.sums.add({name: v.view(b, n, t) for name, v in scores.items()})

    def summary(self) -> MetricSummary:
        """Collective under torch.distributed: call it once on every rank."""
        totals = self.sums.totals()
        best = self.metric.summarise(totals.best, totals.sequences) if self.metric.every_sample else None
        return MetricSummary(self.metric.summarise(totals.mean, totals.sequences), best, totals.sequences)
