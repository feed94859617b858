"""The metrics one command measures beyond MSE, MAE, PSNR and SSIM: those that need weight files (LPIPS,
detection, FVD when asked). Their files are resolved, checked and loaded once per command; each predictor then gets a fresh
metric list, and for whatever cannot be measured, the reason."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from ..spec import VideoSpec
from .base import Metric
from .detection import DetectionSource
from .fvd import FvdSource, FvdSums, resolve_fvd_conventions
from .lpips import LpipsSource


class MetricSource(Protocol):
    key: str  # the metric's name in `not_measured`

    def metric(self, spec: VideoSpec, device: torch.device) -> Metric | str: ...  # or why not measured

    def records(self) -> dict[str, dict]: ...  # weight file key -> Resolution.record()


@dataclass
class EvalMetrics:
    """What `evaluate` gets for one predictor, and what its result says about the rest."""

    metrics: list[Metric] = field(default_factory=list)
    not_measured: dict[str, str] = field(default_factory=dict)  # metric -> why
    weights: dict[str, dict] = field(default_factory=dict)  # weight file key -> Resolution.record()
    fvd: list[FvdSums] = field(default_factory=list)  # one per FVD convention that can be scored


class MetricSuite:
    """LPIPS and detection for a command. A weight file the user named that is missing or unusable stops
    the command here, before any training."""

    def __init__(self, lpips_weights: str | Path | None = None, yolo_weights: str | Path | None = None,
                 fvd: tuple[str, ...] = (), i3d_weights: dict[str, str | Path | None] | None = None) -> None:
        """`i3d_weights`: the FVD detector files the user named, by weight key (i3d-torchscript, i3d-pytorch)."""
        self.sources: list[MetricSource] = [LpipsSource(lpips_weights), DetectionSource(yolo_weights)]
        self.fvd = FvdSource(resolve_fvd_conventions(fvd), i3d_weights)

    def build(self, spec: VideoSpec, device: torch.device) -> EvalMetrics:
        out = EvalMetrics()
        for source in self.sources:
            made = source.metric(spec, device)
            if isinstance(made, str):
                out.not_measured[source.key] = made
            else:
                out.metrics.append(made)
                out.weights.update(source.records())
        out.fvd, why = self.fvd.sums(spec, device)
        out.not_measured.update(why)
        out.weights.update({sums.convention.detector.weights.key: sums.file for sums in out.fvd})
        return out
