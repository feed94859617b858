"""The metrics that need downloaded weights (LPIPS, detection): resolved once per command, then fresh
accumulators for each predictor, and for whatever cannot be measured, the reason."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .detection import Detector, DetectionMetrics
from .errors import UserError
from .lpips_metric import LpipsMetrics, build_lpips, lpips_problem
from .spec import VideoSpec
from .weights import ALEXNET, LPIPS_LINEAR, YOLO, Resolution, resolve


@dataclass
class Built:
    metrics: list = field(default_factory=list)  # objects with update(pred, target) and compute()
    not_measured: dict[str, str] = field(default_factory=dict)
    weights: dict[str, dict] = field(default_factory=dict)  # weight key -> Resolution.record()


class PerceptualMetrics:
    """LPIPS and detection for a command: weights found and checked (and loaded) once."""

    def __init__(self, lpips_weights: str | Path | None = None, yolo_weights: str | Path | None = None) -> None:
        self.lpips_files = [resolve(ALEXNET, lpips_weights), resolve(LPIPS_LINEAR)]
        self.yolo_file = resolve(YOLO, yolo_weights)
        self.lpips_net: torch.nn.Module | None = None
        self.lpips_reason = next((r.problem for r in self.lpips_files if not r.usable), None)
        if self.lpips_reason is None:
            backbone, linear = self.lpips_files
            try:
                self.lpips_net = build_lpips(backbone.path, linear.path)
            except ValueError as exc:
                if backbone.source == "explicit":
                    raise UserError(f"{ALEXNET.flag} {backbone.path}: {exc}") from None
                self.lpips_reason = f"{backbone.path} {exc}"
        self._detectors: dict[torch.device, Detector] = {}

    def build(self, spec: VideoSpec, device: torch.device) -> Built:
        out = Built()
        reason = self.lpips_reason or lpips_problem(spec)
        if reason is None:
            out.metrics.append(LpipsMetrics(self.lpips_net.to(device), spec.future, device))
            out.weights.update(self._records(self.lpips_files))
        else:
            out.not_measured["lpips"] = reason
        if self.yolo_file.usable:
            if device not in self._detectors:
                self._detectors[device] = Detector.load(self.yolo_file.path, device)
            out.metrics.append(DetectionMetrics(self._detectors[device], spec.future, device))
            out.weights.update(self._records([self.yolo_file]))
        else:
            out.not_measured["detection"] = self.yolo_file.problem
        return out

    @staticmethod
    def _records(files: list[Resolution]) -> dict[str, dict]:
        return {r.entry.key: r.record() for r in files}
