"""Detection figures from Ultralytics YOLO (`yolo.Detector`) on predicted and ground-truth frames.

Figures, per predicted step and pooled over all frames: mean confidence of the detections on predicted
frames (and on ground-truth frames, a reference that every predictor shares), detections at or above 0.8
(the STIP paper's threshold) per frame, and how well the detections on a predicted frame agree with those on
its ground-truth frame: boxes matched greedily by confidence at IoU >= 0.5 with the same class, precision
= matched / predicted-frame detections, recall = matched / ground-truth-frame detections. They are ratios of
counts pooled over frames, so the metric scores counts per frame and divides their sums in `summarise`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..spec import VideoSpec
from .base import Metric
from .weights import YOLO, resolve
from .yolo import DETECT_CONF, NMS_IOU, Detector

HIGH_CONF = 0.8  # the STIP paper's threshold
MATCH_IOU = 0.5

METRICS = ("det_conf", "det_high", "det_precision", "det_recall", "det_conf_gt", "det_high_gt")
_COUNTS = ("frames", "pred", "pred_conf", "pred_high", "gt", "gt_conf", "gt_high", "matched")


def matched_count(pred: Tensor, truth: Tensor, iou: float = MATCH_IOU) -> int:
    """Detections of `pred` matched one-to-one to detections of `truth` ([n, 6] each): in order of falling
    confidence, each takes the unmatched same-class box of highest IoU, if that IoU is at least `iou`."""
    if len(pred) == 0 or len(truth) == 0:
        return 0
    from torchvision.ops import box_iou

    overlap = box_iou(pred[:, :4], truth[:, :4])
    overlap[pred[:, 5, None] != truth[None, :, 5]] = -1.0
    taken = torch.zeros(len(truth), dtype=torch.bool, device=truth.device)
    matched = 0
    for i in torch.argsort(pred[:, 4], descending=True).tolist():
        row = overlap[i].masked_fill(taken, -1.0)
        best = int(row.argmax())
        if row[best] >= iou:
            taken[best] = True
            matched += 1
    return matched


class DetectionMetric(Metric):
    """Detection counts per frame, turned into per-step and pooled figures."""

    names = _COUNTS
    figures = METRICS
    # A stochastic predictor's first sample only: YOLO at 640 pixels costs more than the rollout itself, and a
    # best of N has no meaning for figures that are ratios of counts pooled over frames.
    every_sample = False

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def score_frames(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        b, t = pred.shape[:2]
        # Detections are a few small tensors per frame: counting and matching them on the CPU saves a device
        # synchronisation per number.
        found = [d.cpu() for d in self.detector(torch.cat([pred.flatten(0, 1), target.flatten(0, 1)]))]
        counts = torch.zeros(len(_COUNTS), b * t, dtype=torch.float64)
        for k, (p, g) in enumerate(zip(found[: b * t], found[b * t:])):
            counts[:, k] = torch.tensor([
                1, len(p), p[:, 4].sum().item(), (p[:, 4] >= HIGH_CONF).sum().item(),
                len(g), g[:, 4].sum().item(), (g[:, 4] >= HIGH_CONF).sum().item(), matched_count(p, g)],
                dtype=torch.float64)
        counts = counts.view(len(_COUNTS), b, t)
        return {name: counts[i] for i, name in enumerate(_COUNTS)}

    def summarise(self, totals: Mapping[str, Tensor], sequences: int) -> dict[str, dict[str, Any]]:
        """Per-step figures and their pooled values; None where a ratio has no denominator (no detections)."""
        n = {name: totals[name] for name in _COUNTS}  # each [horizon]

        def figures(c: dict[str, Tensor]) -> dict[str, Any]:
            ratio = lambda num, den: [None if d == 0 else v / d for v, d in zip(num.tolist(), den.tolist())]
            return {"det_conf": ratio(c["pred_conf"], c["pred"]), "det_high": ratio(c["pred_high"], c["frames"]),
                    "det_precision": ratio(c["matched"], c["pred"]), "det_recall": ratio(c["matched"], c["gt"]),
                    "det_conf_gt": ratio(c["gt_conf"], c["gt"]), "det_high_gt": ratio(c["gt_high"], c["frames"])}

        pooled = {k: v[0] for k, v in figures({k: v.sum().view(1) for k, v in n.items()}).items()}
        return {
            "per_step": figures(n), "mean": pooled,
            "detection": {
                "imgsz": self.detector.imgsz, "conf": DETECT_CONF, "nms_iou": NMS_IOU, "high_conf": HIGH_CONF,
                "match_iou": MATCH_IOU, "classes": len(self.detector.names),
                "frames": int(n["frames"].sum()), "detections": int(n["pred"].sum()),
                "detections_gt": int(n["gt"].sum()), "matched": int(n["matched"].sum()),
                "mean": "pooled over all predicted frames (not the mean of the per-step values)",
            },
        }


class DetectionSource:
    """Detection for one command: the YOLO file resolved and checked once, a detector loaded once per device."""

    key = "detection"

    def __init__(self, weights: str | Path | None = None) -> None:
        self.file = resolve(YOLO, weights)
        self._detectors: dict[torch.device, Detector] = {}

    def metric(self, spec: VideoSpec, device: torch.device) -> DetectionMetric | str:
        """The metric for frames of `spec` on `device`, or why it cannot be measured."""
        if not self.file.usable:
            return self.file.problem
        if device not in self._detectors:
            self._detectors[device] = Detector.load(self.file.path, device)
        return DetectionMetric(self._detectors[device])

    def records(self) -> dict[str, dict]:
        """What result.json keeps about the weight file used."""
        return {self.file.entry.key: self.file.record()}
