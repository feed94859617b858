"""What a predictor is built for: the shape of the clips and the split of context and future."""
from __future__ import annotations

from dataclasses import asdict, dataclass


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
