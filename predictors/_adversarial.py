"""The per-frame discriminator and the LP-loss GAN step that STIP (and STRPM, which shares them) train with.

Reference: ZhengChang467/STIPHR `core/models/model_factory.py` and STRPM's `core/models/Discriminator*.py`.
The discriminator's parameter names (`main.*`, `linear.0.*`) follow the reference, so its published
`model_d` checkpoints load strictly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import Trainer


def _halved(size: int, times: int) -> int:
    """Side length after `times` convolutions of kernel 3, stride 2, padding 1."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


class FrameDiscriminator(nn.Module):
    """Scores each frame of [B, T, C, h, w] patch tensors; returns the mean real-probability over frames [B]
    and the flattened last-layer features [B, T, D] that the LP-loss compares.

    floor(log2(h)) blocks of Conv(3, stride 2) + GroupNorm(4) + ReLU, then Linear -> sigmoid. The reference
    sizes the linear layer for square inputs and hard-codes 256 in a separate 4K class; computing the true
    flattened size gives both (64 at 256x256 grids, 2x2x64 = 256 at 272x480) from one class.
    """

    def __init__(self, channels: int, height: int, width: int, hidden: int = 64) -> None:
        super().__init__()
        blocks = max(1, int(math.log2(height)))
        self.main = nn.Sequential(nn.Conv2d(channels, hidden, 3, stride=2, padding=1), nn.GroupNorm(4, hidden),
                                  nn.ReLU())
        for i in range(1, blocks):
            self.main.add_module(f"conv_{i}", nn.Conv2d(hidden, hidden, 3, stride=2, padding=1))
            self.main.add_module(f"gn_{i}", nn.GroupNorm(4, hidden))
            self.main.add_module(f"relu_{i}", nn.ReLU())
        features = hidden * _halved(height, blocks) * _halved(width, blocks)
        self.linear = nn.Sequential(nn.Linear(features, 1), nn.Sigmoid())

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        b, t = frames.shape[:2]
        # All frames in one batch: GroupNorm is per sample, so this equals the reference's loop over frames.
        features = self.main(frames.flatten(0, 1)).reshape(b, t, -1)
        return self.linear(features).mean(dim=(1, 2)), features


def bce(probability: Tensor, real: bool) -> Tensor:
    """Binary cross-entropy of probabilities against an all-real or all-fake label, in float32 and
    outside autocast (torch refuses BCE on probabilities under fp16 autocast, and it is where fp16 underflows)."""
    with torch.autocast(probability.device.type, enabled=False):
        probability = probability.float()
        return F.binary_cross_entropy(probability, torch.full_like(probability, float(real)))


def adversarial_step(trainer: Trainer, discriminator: FrameDiscriminator | None, prediction: Tensor,
                     target: Tensor, *, lp_weight: float, adv_weight: float) -> dict[str, Tensor]:
    """One iteration of the reference's two updates on a rollout `prediction` of `target`.

    First the discriminator ("discriminator" optimizer): BCE(D(prediction), fake) + BCE(D(target), real).
    Then the predictor ("generator" optimizer) against the updated discriminator:
    MSE + lp_weight * MSE(phi(prediction), phi(target)) + adv_weight * BCE(D(prediction), real).
    The reference lets the predictor's loss put gradients into the discriminator and clears them before the
    next discriminator update; freezing the discriminator for that pass gives the same updates without them.
    With no discriminator (both weights 0) the step is plain MSE.
    """
    mse = F.mse_loss(prediction, target)
    if discriminator is None:
        trainer.backward(mse)
        trainer.step("generator")
        return {"loss": mse.detach()}

    d_loss = bce(discriminator(prediction.detach())[0], real=False) + bce(discriminator(target)[0], real=True)
    trainer.backward(d_loss)
    trainer.step("discriminator")

    discriminator.requires_grad_(False)
    try:
        probability, features = discriminator(prediction)
        adv = bce(probability, real=True)
        lp = torch.zeros((), device=mse.device)
        if lp_weight:
            with torch.no_grad():
                real_features = discriminator(target)[1]
            lp = F.mse_loss(features.float(), real_features.float())
    finally:
        discriminator.requires_grad_(True)
    loss = mse + lp_weight * lp + adv_weight * adv
    trainer.backward(loss)
    trainer.step("generator")
    return {"loss": loss.detach(), "mse": mse.detach(), "lp": lp.detach(), "adv": adv.detach(),
            "d_loss": d_loss.detach()}
