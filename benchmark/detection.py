"""Detection confidence with Ultralytics YOLO on predicted and ground-truth frames, batched on the device.

Frames go through Ultralytics' own predict pipeline, re-done in torch so it runs batched on the evaluation
device: letterbox to 640 (aspect kept, bilinear, padded with grey 114 to a multiple of the stride), RGB in
[0, 1], fp32, NMS at IoU 0.7 and confidence 0.25 (its predict defaults). It differs from `YOLO(...).predict`
on image files only in that frames are not rounded to 8 bits.

Figures, per predicted step and pooled over all frames: mean confidence of the detections on predicted
frames (and on ground-truth frames, a reference that every predictor shares), detections at or above 0.8
(the STIP paper's threshold) per frame, and how well the detections on a predicted frame agree with those on
its ground-truth frame: boxes matched greedily by confidence at IoU >= 0.5 with the same class, precision
= matched / predicted-frame detections, recall = matched / ground-truth-frame detections.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .accumulate import StepSums
from .weights import Check

IMGSZ = 640  # Ultralytics' predict default
DETECT_CONF = 0.25  # Ultralytics' predict default: weaker detections are not reported at all
NMS_IOU = 0.7  # Ultralytics' predict default
MAX_DET = 300
HIGH_CONF = 0.8  # the STIP paper's threshold
MATCH_IOU = 0.5
PAD_VALUE = 114 / 255
FRAMES_PER_FORWARD = 32  # bounds memory at 640x640: 32 frames of activations at a time

METRICS = ("det_conf", "det_high", "det_precision", "det_recall", "det_conf_gt", "det_high_gt")
_COUNTS = ("frames", "pred", "pred_conf", "pred_high", "gt", "gt_conf", "gt_high", "matched")


@functools.lru_cache(maxsize=1)
def ultralytics_settings() -> Any:
    """Import Ultralytics without network access or side effects on this process's threads.

    It checks connectivity and may send events or pip-install packages unless told not to, and its import
    sets OMP_NUM_THREADS=1; torch's thread count and that variable are put back afterwards.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        from ultralytics.utils import SETTINGS
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
    # In memory only: the user's settings file is theirs. With YOLO_OFFLINE nothing is sent anyway.
    dict.__setitem__(SETTINGS, "sync", False)
    return SETTINGS


def _load_checkpoint(path: Path) -> dict:
    ultralytics_settings()
    from ultralytics.nn.tasks import torch_safe_load

    try:  # weights_only with Ultralytics' allow-list of its own classes
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except Exception:  # older checkpoints pickle other objects: load them as Ultralytics itself does
        ckpt, _ = torch_safe_load(str(path))
    return ckpt


@functools.lru_cache(maxsize=4)
def _checkpoint(path: str, mtime: float) -> tuple[dict | None, str]:
    try:
        return _load_checkpoint(Path(path)), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _model_of(ckpt: dict) -> nn.Module | None:
    model = ckpt.get("ema") or ckpt.get("model")
    return model if isinstance(model, nn.Module) else None


def check_checkpoint(path: Path) -> Check:
    """An Ultralytics detection checkpoint that records its training (released weights keep `train_args`;
    a model built from a yaml and saved untrained does not)."""
    ckpt, error = _checkpoint(str(path), path.stat().st_mtime)
    if ckpt is None:
        return Check(False, f"not an Ultralytics checkpoint ({error})", usable=False)
    model = _model_of(ckpt)
    task = getattr(model, "task", None)
    if model is None or task != "detect":
        return Check(False, f"not an Ultralytics detection model (task {task!r})", usable=False)
    classes = len(getattr(model, "names", {}))
    if not ckpt.get("train_args"):
        return Check(False, f"checkpoint records no training (an untrained model?), {classes} classes")
    return Check(True, f"trained Ultralytics detection checkpoint (train_args recorded), {classes} classes, "
                       f"saved by ultralytics {ckpt.get('version', '?')}")


class Detector:
    """A loaded YOLO model and Ultralytics' predict-time pre- and post-processing, batched in torch."""

    def __init__(self, model: nn.Module, device: torch.device, imgsz: int = IMGSZ) -> None:
        self.model = model.float().eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.imgsz = imgsz
        self.stride = int(max(getattr(model, "stride", torch.tensor([32.0])).max().item(), 32))
        self.end2end = bool(getattr(model, "end2end", False))
        self.names = dict(getattr(model, "names", {}))

    @classmethod
    def load(cls, path: Path, device: torch.device, imgsz: int = IMGSZ) -> "Detector":
        ckpt, error = _checkpoint(str(path), path.stat().st_mtime)
        if ckpt is None or _model_of(ckpt) is None:
            raise ValueError(f"{path}: not an Ultralytics checkpoint ({error})")
        return cls(_model_of(ckpt), device, imgsz)

    def letterbox(self, frames: Tensor) -> tuple[Tensor, float, int, int]:
        """Ultralytics' LetterBox(auto=True) of predict: scale the long side to imgsz, pad to the stride.
        Returns the frames, the scale and the left and top padding."""
        h, w = frames.shape[-2:]
        r = min(self.imgsz / h, self.imgsz / w)
        new_h, new_w = max(round(h * r), 1), max(round(w * r), 1)
        if (new_h, new_w) != (h, w):
            frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)
        dh, dw = (self.imgsz - new_h) % self.stride / 2, (self.imgsz - new_w) % self.stride / 2
        left, top = round(dw - 0.1), round(dh - 0.1)
        return F.pad(frames, (left, round(dw + 0.1), top, round(dh + 0.1)), value=PAD_VALUE), r, left, top

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> list[Tensor]:
        """Frames [N, C, H, W] in [0, 1] (C = 1 or 3, RGB) -> per frame [n, 6]: x1, y1, x2, y2, conf, class,
        boxes in frame pixels and clipped to the frame, as Ultralytics' results give them."""
        from ultralytics.utils.nms import non_max_suppression

        h, w = frames.shape[-2:]
        out: list[Tensor] = []
        for chunk in frames.split(FRAMES_PER_FORWARD):
            chunk = chunk.to(self.device, torch.float32)
            if chunk.shape[1] == 1:
                chunk = chunk.expand(-1, 3, -1, -1)
            boxed, r, left, top = self.letterbox(chunk)
            # No time limit: Ultralytics' default gives up on the rest of a batch after ~2 s, which on a slow
            # machine would silently drop every later frame's detections.
            found = non_max_suppression(self.model(boxed), DETECT_CONF, NMS_IOU, max_det=MAX_DET,
                                        end2end=self.end2end, max_time_img=float("inf"))
            for det in found:
                det[:, [0, 2]] = ((det[:, [0, 2]] - left) / r).clamp(0, w)
                det[:, [1, 3]] = ((det[:, [1, 3]] - top) / r).clamp(0, h)
            out += found
        return out


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


class DetectionMetrics:
    """Per-step detection figures over an evaluation, for `evaluate(..., extra_metrics=[...])`."""

    def __init__(self, detector: Detector, horizon: int, device: torch.device | None = None) -> None:
        self.detector = detector
        self.horizon = horizon
        self.sums = StepSums(_COUNTS, horizon, device)

    def update(self, pred: Tensor, target: Tensor) -> None:
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
        self.sums.add(counts.view(len(_COUNTS), b, t).sum(dim=1))

    def compute(self) -> dict:
        """Per-step figures and their pooled values; None where a ratio has no denominator (no detections)."""
        totals = self.sums.totals()
        n = dict(zip(_COUNTS, totals))  # each [horizon]

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
