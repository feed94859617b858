"""blank: the all-black prediction, the SSIM floor of a dataset drawn on black (moving-digits)."""
from __future__ import annotations

import torch
from torch import Tensor

from vpbench import Predictor, register_predictor


@register_predictor("blank", aliases=("black",))
class Blank(Predictor):
    """Predicts an all-black frame at every step: the SSIM floor where the background is black.

    Not mean-frame: over moving-digits' 1000 test clips the training mean (0.047 on average) wins PSNR (15.00 dB
    against 14.39) but loses SSIM (0.23 against 0.76), since SSIM rewards the exactly black background that the
    mean's faint grey misses. A model must beat both to have learned motion.
    """

    trainable = False
    floor = True

    def forward(self, context: Tensor, future: int) -> Tensor:
        batch, _, *frame = context.shape
        return torch.zeros(batch, future, *frame, dtype=context.dtype, device=context.device)
