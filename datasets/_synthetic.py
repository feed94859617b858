"""What the procedural datasets share: per-clip seeding, bouncing motion and lazily generated splits.

A procedural dataset subclasses `SyntheticVideoDataset` and implements `clip(split, index)`; every
clip is a pure function of (seed, split, index), so DataLoader workers and resumed runs agree.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from vpbench import COUNT, NON_NEGATIVE, SEED, SPLITS, DatasetConfig, Split, UserError, VideoDataset, setting

SPLIT_IDS: dict[str, int] = {name: number for number, name in enumerate(SPLITS)}


def split_id(name: str) -> int:
    """The number that separates a split's random streams from the other splits'."""
    try:
        return SPLIT_IDS[name]
    except KeyError:
        raise UserError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}") from None


def clip_rng(seed: int, split: str, index: int, *stream: int) -> np.random.Generator:
    """The random stream of item `index` of `split`, a pure function of the arguments.

    `stream` names an independent sub-stream (a spawn key, as `SeedSequence.spawn` makes), so a part
    of a clip that draws a resolution-dependent amount of numbers cannot shift the other parts.
    """
    sequence = np.random.SeedSequence([seed, split_id(split), index], spawn_key=stream)
    return np.random.Generator(np.random.PCG64(sequence))


def bounce(start: Any, velocity: Any, steps: int, low: Any, high: Any) -> np.ndarray:
    """Positions [steps, *start.shape] of points at constant velocity that reflect off [low, high]."""
    start, velocity = np.asarray(start, float), np.asarray(velocity, float)
    low = np.asarray(low, float)
    span = np.maximum(np.asarray(high, float) - low, 1e-9)  # a zero span pins the point to `low`
    t = np.arange(steps, dtype=float).reshape(-1, *([1] * start.ndim))
    # Reflecting in [0, L] is free motion folded by a triangle wave of period 2L: exact, and no loop.
    folded = np.mod(start - low + velocity * t, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


@dataclass
class SyntheticConfig(DatasetConfig):
    """Options of every procedural dataset; subclasses change the split-size defaults."""

    seed: int = setting(0, "the data seed: which clips make up the splits (not the training seed)", SEED)
    train_size: int = setting(1000, "training clips", COUNT)
    val_size: int = setting(100, "validation clips (0: no validation; the last checkpoint is tested)", NON_NEGATIVE)
    test_size: int = setting(100, "test clips", COUNT)


class ClipSplit(Dataset):
    """`size` clips of one split, each generated when it is read."""

    def __init__(self, dataset: "SyntheticVideoDataset", name: Split, size: int) -> None:
        self.dataset = dataset
        self.name = name
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        index = operator.index(index)
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"clip {index} out of range for the {self.name} split of {self.size}")
        return self.dataset.clip(self.name, index)


class SyntheticVideoDataset(VideoDataset):
    """Base of datasets generated from a seed; subclasses implement `clip`."""

    Config: ClassVar[type] = SyntheticConfig

    def __init__(self, config: Any, protocol: str | None = None) -> None:
        super().__init__(config, protocol)

    def split(self, name: Split) -> ClipSplit:
        split_id(name)
        self.prepare(name)
        return ClipSplit(self, name, getattr(self.config, f"{name}_size"))

    def prepare(self, split: Split) -> None:
        """Load or build what the clips of `split` need, so that bad inputs fail here, not in a worker."""

    def clip(self, split: Split, index: int) -> torch.Tensor:
        """Clip `index` of `split`: float32 [T, C, H, W] in [0, 1]."""
        raise NotImplementedError
