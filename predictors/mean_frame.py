"""mean-frame: the floor a predictor must beat on a dataset whose background is mostly static."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vpbench import COUNT, Clips, Predictor, TrainConfig, UserError, VideoSpec, register_predictor, setting

# Measured on moving-digits (10,000 training clips of 20 frames): the mean over 2048 evenly spaced clips is within
# 6e-4 of the whole split's per pixel on average (5.9e-3 at worst), its test PSNR within 3e-4 dB; it reads them
# in 1.4 s on one core, the whole split in 7.3 s (1024 clips: 1.2e-3 on average, 0.8 s).
DEFAULT_CLIPS = 2048


@dataclass
class MeanFrameConfig(TrainConfig):
    mean_clips: int = setting(DEFAULT_CLIPS, "training clips the mean frame is taken over, evenly spaced across the "
                                             "split (all of them when it has fewer)", COUNT)


def evenly_spaced(size: int, count: int) -> list[int]:
    """`count` distinct indices spread over range(size) (all of them when count >= size): on a dataset cut from a
    few long videos, clips from every video, not the first video's."""
    count = min(count, size)
    return [i * size // count for i in range(count)]


@register_predictor("mean-frame", aliases=("meanframe", "train-mean"))
class MeanFrame(Predictor):
    """Predicts the training split's per-pixel mean frame at every step: the floor to beat where the background is static.

    On moving-digits that mean is near black (0.047 on average), so a model whose digits fade out scores about what
    this does, while copy-last, whose digits stand in the wrong place, scores below it: "beats copy-last" alone
    would hide a model that has learned no motion. It learns nothing (no parameters, no optimizer step): the mean
    is read by `fit_statistics` before the test and kept in a buffer, so checkpoints carry it and load with
    torch.load(weights_only=True). Not "blank": a blank frame is all zeros, the mean is not (a grey wall on KTH).
    Under several processes every rank reads the same clips and computes the same mean: no collective needed.
    """

    Config = MeanFrameConfig
    trainable = False
    floor = True

    def __init__(self, spec: VideoSpec, config: MeanFrameConfig) -> None:
        super().__init__(spec, config)
        self.register_buffer("mean", torch.zeros(spec.channels, spec.height, spec.width))

    def fit_statistics(self, train: Clips) -> str:
        if len(train) == 0:
            raise UserError("mean-frame: the training split has no clips to take the mean frame of")
        indices = evenly_spaced(len(train), self.config.mean_clips)
        total = torch.zeros(self.mean.shape, dtype=torch.float64)
        frames = 0
        for index in indices:  # one clip at a time: memory stays one clip, whatever the frame size
            clip = train[index]
            total += clip.sum(dim=0, dtype=torch.float64)
            frames += clip.shape[0]
        self.mean.copy_(total / frames)  # float64 sums: exact to float32 over any number of frames
        return f"none: the per-pixel mean of {frames} frames of {len(indices)} of {len(train)} training clips"

    def forward(self, context: Tensor, future: int) -> Tensor:
        batch = context.shape[0]
        return self.mean.to(context.dtype).expand(batch, future, *self.mean.shape).contiguous()
