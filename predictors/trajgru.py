"""TrajGRU (Shi et al., NeurIPS 2017): a GRU whose state-to-state connections follow learned trajectories.

At each step a small network reads the input and the previous state and outputs L flow fields; the
previous state is warped along each (bilinear sampling at p - flow_l(p)), the L warped states are
concatenated and a 1x1 convolution gives the state-to-state gate terms. The cell is HKO-7's `TrajGRU`
(sxjscience/HKO-7 `nowcasting/operators/traj_rnn.py`, ported by Hzzone/Precipitation-Nowcasting):
i2f and h2f 5x5 convolutions to 32 channels, LeakyReLU, a 5x5 convolution to 2L flow channels (x, y
per link) that starts at zero, warps with zero padding outside the frame. The network around it is
`predictors/_encoder_forecaster.py`; the mmnist preset is the authors' MovingMNIST++ "TrajGRU-L13"
configuration (OpenSTL has no TrajGRU). HKO-7's MXNet checkpoints load (`--checkpoint`), and a pair written by
HKO-7's own MXNet code (not the port) predicts here what it predicted there (tests/fixtures/references/make_hko7.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import COUNT, register_predictor, setting, tiny_preset

from ._encoder_forecaster import (EncoderForecaster, EncoderForecasterConfig, GRUCell, TINY_CODEC,
                                  ZeroInitConv2d, hko7_mmnist_preset, leaky)


@dataclass
class TrajGRUConfig(EncoderForecasterConfig):
    links: tuple[int, ...] = setting((13, 13, 13), "L, flow fields per block", COUNT)
    flow_filters: int = setting(32, "channels of the flow generator", COUNT)


def warp(state: Tensor, flows: Tensor) -> Tensor:
    """Sample `state` [B, C, H, W] at p - flow_l(p) for each of the L flows [B, L, 2, H, W] (x then y, in
    pixels); returns [B, L*C, H, W], link after link, zeros outside the frame."""
    b, c, h, w = state.shape
    links = flows.shape[1]
    ys, xs = torch.meshgrid(torch.arange(h, device=state.device, dtype=state.dtype),
                            torch.arange(w, device=state.device, dtype=state.dtype), indexing="ij")
    x = (xs - flows[:, :, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    y = (ys - flows[:, :, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([x, y], dim=-1).reshape(b * links, h, w, 2)
    repeated = state.unsqueeze(1).expand(b, links, c, h, w).reshape(b * links, c, h, w)
    sampled = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled.reshape(b, links * c, h, w)


class TrajGRUCell(GRUCell):
    def __init__(self, in_channels: int | None, hidden: int, i2h_kernel: int, links: int, flow_filters: int) -> None:
        super().__init__(in_channels, hidden, i2h_kernel)
        self.links = links
        self.i2f = None if in_channels is None else nn.Conv2d(in_channels, flow_filters, 5, padding=2)
        self.h2f = nn.Conv2d(hidden, flow_filters, 5, padding=2)
        self.flows = ZeroInitConv2d(flow_filters, 2 * links, 5, padding=2)
        self.h2h = nn.Conv2d(links * hidden, 3 * hidden, 1)

    def hidden_to_gates(self, x: Tensor | None, h: Tensor) -> Tensor:
        features = self.h2f(h) if x is None else self.h2f(h) + self.i2f(x)
        flows = self.flows(leaky(features))
        b, _, height, width = flows.shape
        return self.h2h(warp(h, flows.view(b, self.links, 2, height, width)))


@register_predictor("trajgru")
class TrajGRU(EncoderForecaster):
    """TrajGRU encoder-forecaster (Shi et al. 2017, HKO-7): GRU state transitions along L learned warps."""

    Config = TrajGRUConfig
    presets = {
        "mmnist": hko7_mmnist_preset(links=(13, 13, 13)),
        # CPU-sized, as convgru's (same blocks, so the two compare like for like).
        "moving-digits": dict(patch_size=4, num_filters=(16, 32, 32), first_conv=(16, 3, 1, 1),
                              last_deconv=(16, 3, 1, 1), links=(5, 5, 5), flow_filters=16, batch_size=8, lr=2e-3,
                              lr_schedule="cosine", max_iterations=1000, quick_iterations=200,
                              val_every=200, grad_clip=1.0),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(presets["moving-digits"], **TINY_CODEC, links=(2, 2, 2), flow_filters=8)

    def per_block_fields(self, blocks: int) -> dict[str, int]:
        return {"links": blocks}

    def make_cell(self, in_channels: int | None, level: int) -> GRUCell:
        cfg = self.config
        return TrajGRUCell(in_channels, cfg.num_filters[level], cfg.i2h_kernel[level], cfg.links[level],
                           cfg.flow_filters)
