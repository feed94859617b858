"""PredRNN (Wang et al., NeurIPS 2017 / TPAMI 2022): spatiotemporal LSTM cells with a zigzag memory.

Each ST-LSTM cell keeps the usual temporal cell state C and updates a spatiotemporal memory M that
flows up the layers within a time step and from the top layer at t-1 to the bottom layer at t. The
cell follows OpenSTL's `SpatioTemporalLSTMCell` (thuml's current code): convolutions without bias,
LayerNorm optional, forget-gate bias 1; parameter names match it (`cell_list.N.conv_x.0.weight`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vpbench import (COUNT, ODD, RecurrentConfig, RecurrentPredictor, ReferenceLayout, VideoSpec, register_predictor,
                     setting, tiny_preset)
from vpbench.layers import gate_conv


@dataclass
class PredRNNConfig(RecurrentConfig):
    num_layers: int = setting(4, "stacked ST-LSTM cells", COUNT)
    num_hidden: int = setting(128, "hidden channels of every cell", COUNT)
    filter_size: int = setting(5, "gate convolution kernel", ODD)
    layer_norm: bool = setting(False, "LayerNorm after each gate convolution")


class SpatioTemporalLSTMCell(nn.Module):
    """ST-LSTM. Also returns the increments i*g of C and i'*g' of M, which PredRNN-V2 decouples."""

    def __init__(self, in_channels: int, hidden: int, filter_size: int, grid: tuple[int, int], layer_norm: bool) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv_x = gate_conv(in_channels, 7 * hidden, filter_size, grid, layer_norm)
        self.conv_h = gate_conv(hidden, 4 * hidden, filter_size, grid, layer_norm)
        self.conv_m = gate_conv(hidden, 3 * hidden, filter_size, grid, layer_norm)
        self.conv_o = gate_conv(2 * hidden, hidden, filter_size, grid, layer_norm)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor,
                highway: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """`highway`: MotionRNN's motion highway, H = o * tanh(W [C, M]) + (1 - o) * highway."""
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = torch.split(self.conv_x(x), self.hidden, dim=1)
        i_h, f_h, g_h, o_h = torch.split(self.conv_h(h), self.hidden, dim=1)
        i_m, f_m, g_m = torch.split(self.conv_m(m), self.hidden, dim=1)
        delta_c = torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        c = torch.sigmoid(f_x + f_h + 1.0) * c + delta_c
        delta_m = torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        m = torch.sigmoid(f_xm + f_m + 1.0) * m + delta_m
        memory = torch.cat([c, m], dim=1)
        gate = torch.sigmoid(o_x + o_h + self.conv_o(memory))
        h = gate * torch.tanh(self.conv_last(memory))
        if highway is not None:
            h = h + (1 - gate) * highway
        return h, c, m, delta_c, delta_m


PAPER_PRESETS = {
    # OpenSTL configs/mmnist/PredRNN.py and its defaults: 4 x 128, filter 5, patch 4, scheduled sampling
    # to 0 at 50k iterations, batch 16, lr 5e-4 (thuml's script: lr 3e-4, batch 8), OneCycle, 200 epochs.
    "mmnist": dict(num_layers=4, num_hidden=128, filter_size=5, patch_size=4, batch_size=16, lr=5e-4,
                   lr_schedule="onecycle", max_iterations=125_000, sampling_stop_iter=50_000, val_every=5_000),
    # OpenSTL configs/kth/PredRNN.py (10 -> 20 at 128x128): 4 x 128, filter 5, patch 2, batch 16, lr 1e-3,
    # OneCycle, sampling to 0 at 50k. OpenSTL trains epochs of the prepared split: max_iterations stays at the
    # harness default (likewise below).
    "kth-10to20": dict(num_layers=4, num_hidden=128, filter_size=5, patch_size=2, batch_size=16, lr=1e-3,
                       lr_schedule="onecycle", sampling_stop_iter=50_000),
    # OpenSTL configs/human/PredRNN.py (its 4 -> 4 at 256x256, the "openstl" protocol): patch 4, batch 16,
    # lr 1e-4, cosine.
    "human36m-openstl": dict(num_layers=4, num_hidden=128, filter_size=5, patch_size=4, batch_size=16, lr=1e-4,
                             lr_schedule="cosine", sampling_stop_iter=50_000),
    # UCF Sports, SJTU4K: no reference config (the STIP paper's comparison gives no settings for PredRNN).
    # CPU-sized, like convlstm's: learns motion on the embedded set in minutes.
    "moving-digits": dict(num_layers=2, num_hidden=32, filter_size=3, patch_size=4, batch_size=8, lr=2e-3,
                          lr_schedule="cosine", max_iterations=1000, quick_iterations=200, sampling_stop_iter=500,
                          val_every=200, grad_clip=1.0),
}
# The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
PAPER_PRESETS["tiny"] = tiny_preset(PAPER_PRESETS["moving-digits"], num_layers=2, num_hidden=8, lr=5e-3,
                                    sampling_stop_iter=15)


# OpenSTL's PredRNN_Model and PredRNNv2_Model (openstl/models/predrnn_model.py, predrnnv2_model.py): the same
# names and the same cell (its forget bias is added), so its checkpoints load as they are.
OPENSTL = ReferenceLayout("OpenSTL")


@register_predictor("predrnn")
class PredRNN(RecurrentPredictor):
    """PredRNN (Wang et al. 2017): ST-LSTM cells with a spatiotemporal memory zigzagging through layers and time."""

    Config = PredRNNConfig
    checkpoint_layouts = (OPENSTL,)
    presets = PAPER_PRESETS

    def __init__(self, spec: VideoSpec, config: PredRNNConfig) -> None:
        super().__init__(spec, config)
        widths = [self.patch_channels] + [config.num_hidden] * config.num_layers
        self.cell_list = nn.ModuleList(
            self.make_cell(widths[i], config) for i in range(config.num_layers))
        self.conv_last = nn.Conv2d(config.num_hidden, self.patch_channels, 1, bias=False)

    def make_cell(self, in_channels: int, config: PredRNNConfig) -> nn.Module:
        return SpatioTemporalLSTMCell(in_channels, config.num_hidden, config.filter_size, self.grid, config.layer_norm)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> dict:
        zeros = torch.zeros(batch, self.config.num_hidden, *self.grid, device=device, dtype=dtype)
        layers = self.config.num_layers
        return {"h": [zeros] * layers, "c": [zeros] * layers, "m": zeros}

    def stack(self, frame: Tensor, state: dict) -> tuple[dict, list[tuple[Tensor, Tensor]]]:
        """One step up the layers; returns the new state and each layer's (delta_c, delta_m)."""
        x, m, hs, cs, deltas = frame, state["m"], [], [], []
        for cell, h, c in zip(self.cell_list, state["h"], state["c"]):
            h, c, m, delta_c, delta_m = cell(x, h, c, m)
            hs.append(h)
            cs.append(c)
            deltas.append((delta_c, delta_m))
            x = h
        return {**state, "h": hs, "c": cs, "m": m}, deltas

    def step(self, frame: Tensor, state: dict) -> tuple[Tensor, dict]:
        state, _ = self.stack(frame, state)
        return self.conv_last(state["h"][-1]), state
