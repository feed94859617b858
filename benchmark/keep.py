"""The frames of a few test sequences, kept beside result.json for the report's figures (`kept_frames.npz`).

Which sequences: `kept_indices`, drawn from the run's seed over the scored split, so every predictor of a
dataset/protocol (same split, same seed) keeps the same ones. What of them: the last KEPT_CONTEXT context
frames, and at the predicted steps of `kept_steps` the ground truth and the prediction (a stochastic
predictor's first sample: the one its detection figures are measured on). As uint8, channels last, in a
compressed .npz. Frames larger than REDUCED_LONG_SIDE are stored scaled down to it (antialiased), plus one
full-resolution CROP x CROP window from their centre, so that a 4K run keeps what a strip can show: at
2160x3840x3, 4 sequences of STIP's 4 -> 4 keep 4 x 10 frames of 288x512x3 + 256x256x3 = 25.6 MB before
compression.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from . import distributed

KEPT_CONTEXT = 2  # the strip's context columns
REDUCED_LONG_SIDE = 512
CROP = 256
ALL_STEPS_UP_TO = 20  # horizons up to this keep every step; longer ones the ladder below and the last step
_STEP_LADDER = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000)


def kept_indices(size: int, count: int, seed: int) -> list[int]:
    """`count` sequence indices of a split of `size`, drawn from `seed` alone, in increasing order."""
    if count <= 0 or size <= 0:
        return []
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:count].tolist())


def kept_steps(future: int) -> list[int]:
    """The predicted steps (1-based) kept: every one for short horizons, a ladder and the last for long ones."""
    if future <= ALL_STEPS_UP_TO:
        return list(range(1, future + 1))
    return [t for t in _STEP_LADDER if t < future] + [future]


def _positions(share: Dataset, size: int) -> Sequence[int]:
    """Where the clips of `share` (the split itself, or a Subset of it as `rank_share` makes) sit in the split."""
    return share.indices if isinstance(share, Subset) else range(size)  # type: ignore[return-value]


def _uint8(frames: Tensor) -> np.ndarray:
    """[..., C, H, W] in [0, 1] -> [..., H, W, C] uint8."""
    return (frames.float() * 255).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).cpu().numpy()


def _reduced(frames: Tensor) -> Tensor:
    h, w = frames.shape[-2:]
    scale = REDUCED_LONG_SIDE / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    flat = frames.reshape(-1, *frames.shape[-3:]).float()
    return F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False).view(
        *frames.shape[:-2], *size)


def _stored(name: str, frames: Tensor) -> dict[str, np.ndarray]:
    """One sequence's frames [T, C, H, W] as stored: as they are, or scaled down plus the centre crop. Done per
    sequence as it is seen, so that a 4K run never holds more than one sequence at full resolution."""
    h, w = frames.shape[-2:]
    if max(h, w) <= REDUCED_LONG_SIDE:
        return {name: _uint8(frames)}
    ch, cw = min(CROP, h), min(CROP, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return {name: _uint8(_reduced(frames)), f"crop_{name}": _uint8(frames[..., top:top + ch, left:left + cw]),
            "crop_box": np.array([top, left, ch, cw], dtype=np.int64), "full_size": np.array([h, w], dtype=np.int64)}


@dataclass
class KeptFrames:
    """Collects the kept sequences during `evaluate`; `gather` hands rank 0 all of them."""

    wanted: set[int]
    positions: Sequence[int]
    steps: list[int]
    context_length: int
    seen: int = 0
    kept: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def for_split(cls, split_size: int, share: Dataset, count: int, seed: int, context: int,
                  future: int) -> "KeptFrames":
        return cls(set(kept_indices(split_size, count, seed)), _positions(share, split_size), kept_steps(future),
                   min(KEPT_CONTEXT, context))

    def add(self, context: Tensor, target: Tensor, prediction: Tensor) -> None:
        """One batch, in loader order: context [B, Tc, C, H, W], target [B, T, ...], prediction [B, N, T, ...]."""
        steps = torch.tensor(self.steps, device=target.device) - 1
        for row in range(context.shape[0]):
            index = self.positions[self.seen + row]
            if index in self.wanted:
                self.kept[index] = {**_stored("context", context[row, -self.context_length:]),
                                    **_stored("target", target[row, steps]),
                                    **_stored("prediction", prediction[row, 0, steps])}
        self.seen += context.shape[0]

    def gather(self) -> dict[str, np.ndarray] | None:
        """The arrays of `kept_frames.npz` on rank 0 (None on the others, and where nothing was kept): `indices`,
        `steps`, `context`/`target`/`prediction` [K, T, H, W, C] uint8; for large frames those scaled down,
        `crop_*` the full-resolution window `crop_box` (top, left, height, width), `full_size` (height, width).
        A collective (every rank calls it) unless nothing is wanted, which every rank knows alike."""
        if not self.wanted:
            return None
        parts = distributed.gather_to_main(self.kept)
        if parts is None:
            return None
        kept = {k: v for part in parts for k, v in part.items()}
        if not kept:
            return None
        indices = sorted(kept)
        first = kept[indices[0]]
        out = {"indices": np.array(indices, dtype=np.int64), "steps": np.array(self.steps, dtype=np.int64)}
        for name in first:  # the same for every sequence: the frames' sizes are the protocol's
            out[name] = first[name] if name in ("crop_box", "full_size") else np.stack([kept[i][name] for i in indices])
        return out

