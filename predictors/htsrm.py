"""HTSRM, the hierarchical temporal-spatial residual model for long-term video prediction
(fengpany/Implicit_video_prediction, TF 2.4): CW-VAE (see `_clockwork.py`) with residual modelling.

What differs from CW-VAE, each a hook of the shared skeleton:
1. Residual posterior: mean_q = mean_p + d_mean(h, e), std_q = std_p + softplus(Dense(x + 0.54)), and the KL
   is between N(mean_p + d_mean, std_p + d_std) and N(mean_p, std_p) (cells.py `_posterior`).
2. Top-down context residual inside each prior: ctx' = ReLU(Dense_{z+h}(ctx)) + 0.1 * ctx (cells.py `_prior`).
3. Residual squeeze-excite cells after the encoder's first conv (31x31x32) and before the decoder's last
   transposed conv (30x30x32): Conv3x3 -> swish -> Conv3x3 -> swish -> SE (GAP -> Dense(max(C/16, 4)) ReLU
   -> Dense(C) sigmoid -> scale), output 0.1 * x + result (layers_myadd.py; its `spectral_norm` flag is
   never applied there, so the convolutions are plain).
4. Level-feature residual: level l's feature = its dense output + 0.1 * level (l-1)'s feature, before the
   temporal sum; the dense chain itself still reads the previous level's dense output (cnns.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import register_predictor, tiny_preset
from vpbench.predictors._clockwork import (KTH_TRAIN_CLIPS, MAZES_TRAIN_CLIPS, MMNIST_TRAIN_CLIPS, MOVING_DIGITS,
                                           TINY_WIDTHS, ClockworkConfig, ClockworkPredictor, reference_preset)

RES_SCALE = 0.1  # every residual skip of the reference
SE_RATIO = 16
SE_MIN = 4


@dataclass
class HTSRMConfig(ClockworkConfig):
    lr: float = 1e-4  # every HTSRM config


class SqueezeExcite(nn.Module):
    """Scale each channel by a gate computed from the globally averaged map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.squeeze = nn.Linear(channels, max(channels // SE_RATIO, SE_MIN))
        self.excite = nn.Linear(max(channels // SE_RATIO, SE_MIN), channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3))))))
        return x * gate[:, :, None, None]


class ResidualSECell(nn.Module):
    """Conv3x3 -> swish -> Conv3x3 -> swish -> squeeze-excite, plus 0.1 * input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.se = SqueezeExcite(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.silu(self.conv2(F.silu(self.conv1(x))))
        return RES_SCALE * x + self.se(y)


class ContextResidual(nn.Module):
    """ctx' = ReLU(Dense(ctx)) + 0.1 * ctx."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(size, size)

    def forward(self, context: Tensor) -> Tensor:
        return F.relu(self.dense(context)) + RES_SCALE * context


@register_predictor("htsrm")
class HTSRM(ClockworkPredictor):
    """HTSRM: CW-VAE with a residual posterior, context and level-feature residuals and SE residual cells."""

    Config = HTSRMConfig
    stochastic = True
    residual_posterior = True
    feature_skip = RES_SCALE
    presets = {
        # configs/mmnist.yml: dec_stddev 1.0, lr 1e-4, 60 epochs = 60 * 10,000 / 50 = 12,000 iterations.
        "mmnist": reference_preset(1.0, 1e-4, 60, MMNIST_TRAIN_CLIPS, val_every=2_000),
        # configs/kth.yml: 3 channels, dec_stddev 1.0, lr 1e-4, 300 epochs ~ 300 * 1,900 / 50 = 11,400 iterations.
        "kth-htsrm": reference_preset(1.0, 1e-4, 300, KTH_TRAIN_CLIPS, val_every=2_000),
        # configs/mazes.yml: dec_stddev 0.1, lr 1e-4, 50 epochs = 50 * 27,000 / 50 = 27,000 iterations.
        "mazes": reference_preset(0.1, 1e-4, 50, MAZES_TRAIN_CLIPS, val_every=5_000),
        # CPU-sized, the same as CW-VAE's, so the two compare on the synthetic set.
        "moving-digits": MOVING_DIGITS,
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(MOVING_DIGITS, **TINY_WIDTHS)

    def make_encoder_cell(self, channels: int) -> nn.Module:
        return ResidualSECell(channels)

    def make_decoder_cell(self, channels: int) -> nn.Module:
        return ResidualSECell(channels)

    def make_context_net(self, size: int) -> nn.Module:
        return ContextResidual(size)
