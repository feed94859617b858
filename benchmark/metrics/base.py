"""The one shape of a metric: per-frame scores, summed per predicted step, turned into reported figures.

`evaluate` runs every metric the same way: `score_frames` on each batch of predicted and ground-truth clips,
the scores summed per step over sequences in float64 (and over processes under torch.distributed), then
`summarise` on the sums. A figure that is a mean over frames (PSNR) sums the per-frame values; a figure that is
a ratio of pooled counts (detection precision) sums per-frame counts and divides in `summarise`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping

from torch import Tensor

from .direction import HIGHER_IS_BETTER


class Metric(ABC):
    """Scores clips [B, T, C, H, W] in [0, 1] per frame; subclasses set `names` and `score_frames`."""

    names: ClassVar[tuple[str, ...]]  # the per-frame rows `score_frames` returns
    # The figures `summarise` reports: by default the per-step means of the rows themselves.
    figures: ClassVar[tuple[str, ...] | None] = None
    # False: a stochastic predictor's first sample only. Metrics of every sample also get a best of N, which
    # needs figures that are the per-frame rows themselves, each with a direction.
    every_sample: ClassVar[bool] = True
    # False: the metric gets the predictions as the predictor output them, not clamped to [0, 1] (a
    # reference convention that scores unclipped outputs, see conventions.py).
    clipped: ClassVar[bool] = True

    @property
    def higher_is_better(self) -> dict[str, bool | None]:
        """For each reported figure, whether higher is better (None: a reference, never ranked)."""
        return {name: HIGHER_IS_BETTER[name] for name in self.figures or self.names}

    @abstractmethod
    def score_frames(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Per-frame scores of clips [B, T, C, H, W] -> {name: [B, T]} for every name of `names`."""

    def summarise(self, totals: Mapping[str, Tensor], sequences: int) -> dict[str, dict[str, Any]]:
        """Figures from the per-step sums over `sequences` sequences ({name: [T]}): {"per_step": {figure:
        [T values]}, "mean": {figure: value}}, plus any block of the metric's own. By default the per-step mean
        over sequences and its mean over steps."""
        per_step = {name: totals[name] / sequences for name in self.names}
        return {"per_step": {name: v.tolist() for name, v in per_step.items()},
                "mean": {name: v.mean().item() for name, v in per_step.items()}}
