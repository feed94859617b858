"""What a predictor is built for and a dataset serves: the shape of the clips, the protocol (context, future,
size), and the files a split lost. Plain records without torch: a result holds them and is read without it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class VideoSpec:
    """Shape of one clip of a protocol. Frames are [C, H, W] floats in [0, 1]."""

    channels: int
    height: int
    width: int
    context: int
    future: int

    @property
    def length(self) -> int:
        return self.context + self.future

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Protocol:
    """One evaluation setting: how many frames are given, how many predicted, at what size.

    The size is declared, never read from the files (stored frames of another size are resized to it),
    so the clips' shape follows from the protocol and the options alone: `VideoDataset.protocol_without_data`."""

    name: str
    context: int
    future: int
    height: int
    width: int
    channels: int

    @property
    def spec(self) -> VideoSpec:
        return VideoSpec(self.channels, self.height, self.width, self.context, self.future)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DataProblem:
    """A file of a split that could not be used (missing, truncated, undecodable, ...): the split is
    that much smaller, so a result records these instead of silently scoring fewer sequences."""

    split: str
    file: str
    message: str
