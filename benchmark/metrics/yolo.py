"""Ultralytics YOLO in torch: its checkpoints read without side effects, and its predict pipeline batched on the
evaluation device.

Frames go through Ultralytics' own predict pipeline, re-done in torch so it runs batched on the evaluation
device: letterbox to 640 (aspect kept, bilinear, padded with grey 114 to a multiple of the stride), RGB in
[0, 1], fp32, NMS at IoU 0.7 and confidence 0.25 (its predict defaults). It differs from `YOLO(...).predict`
on image files only in that frames are not rounded to 8 bits.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMGSZ = 640  # Ultralytics' predict default
DETECT_CONF = 0.25  # Ultralytics' predict default: weaker detections are not reported at all
NMS_IOU = 0.7  # Ultralytics' predict default
MAX_DET = 300
PAD_VALUE = 114 / 255
FRAMES_PER_FORWARD = 32  # bounds memory at 640x640: 32 frames of activations at a time


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


def read_checkpoint(path: Path) -> tuple[dict | None, str]:
    """An Ultralytics checkpoint, or None and why it cannot be read. Read once per file version: it is checked
    when weights are resolved and loaded again for every device."""
    return _checkpoint(str(path), path.stat().st_mtime)


def model_of(ckpt: dict) -> nn.Module | None:
    """The network a checkpoint holds (its EMA weights where it kept them, as Ultralytics loads them)."""
    model = ckpt.get("ema") or ckpt.get("model")
    return model if isinstance(model, nn.Module) else None


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
        ckpt, error = read_checkpoint(path)
        if ckpt is None or model_of(ckpt) is None:
            raise ValueError(f"{path}: not an Ultralytics checkpoint ({error})")
        return cls(model_of(ckpt), device, imgsz)

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
