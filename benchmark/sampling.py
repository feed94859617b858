"""Scores of N predictions per sequence: the mean over samples and the best of N.

A deterministic predictor gives one sample, for which both are the same. For a stochastic one the
papers report the best of N samples, chosen per sequence and per metric by the sample's score averaged
over time (CW-VAE's and HTSRM's evaluation code does this); the mean over samples says what a single
draw is worth. Both are kept, as per-step sums in float64, so shards combine exactly.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from .accumulate import StepSums


class SampleScores:
    """Accumulates per-frame scores [B, N, T] of several metrics; `compute` gives both summaries."""

    def __init__(self, higher_is_better: Mapping[str, bool], horizon: int,
                 device: torch.device | str | None = None) -> None:
        self.higher_is_better = dict(higher_is_better)
        self.names = tuple(self.higher_is_better)
        # Rows: every metric's mean over samples, then its best of N, then the sequence count.
        self.sums = StepSums([*(f"mean:{n}" for n in self.names), *(f"best:{n}" for n in self.names), "count"],
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
        means, bests = [], []
        for name in self.names:
            values = scores[name].double()
            means.append(values.mean(dim=1).sum(dim=0))
            over_time = values.mean(dim=2)  # [B, N]
            chosen = over_time.argmax(dim=1) if self.higher_is_better[name] else over_time.argmin(dim=1)
            bests.append(values[torch.arange(values.shape[0], device=values.device), chosen].sum(dim=0))
        count = torch.full_like(means[0], float(shape[0]))
        self.sums.add(torch.stack([*means, *bests, count]))

    def compute(self) -> dict:
        """{"mean_of_samples": {"per_step", "mean"}, "best_of_samples": {...}, "sequences", "samples"}.
        Collective under torch.distributed (it sums the shards): call it once on every rank."""
        totals = self.sums.totals()
        count = totals[-1]
        if count[0].item() == 0:
            raise ValueError("SampleScores.compute() called before any add()")
        k = len(self.names)

        def summary(rows: Tensor) -> dict:
            per_step = rows / count
            return {"per_step": {n: per_step[i].tolist() for i, n in enumerate(self.names)},
                    "mean": {n: per_step[i].mean().item() for i, n in enumerate(self.names)}}

        return {"mean_of_samples": summary(totals[:k]), "best_of_samples": summary(totals[k:2 * k]),
                "sequences": int(count[0].item()), "samples": self.samples}
