"""MIM, Memory In Memory (Wang et al., CVPR 2019).

Layer 1 is an ST-LSTM (PredRNN's cell). In layers >= 2 the forget path of the temporal memory is
replaced by two cascaded modules: MIM-N, fed the difference of the first layer's hidden states between
consecutive steps (and, higher up, the MIM-N output below), models the non-stationary part; MIM-S,
fed MIM-N's output and the previous temporal memory, the stationary part. Both are LSTMs whose cell
state also enters the input, forget and output gates through learned per-position weights.

Follows OpenSTL's MIMBlock / MIMN, with two departures towards the paper: OpenSTL keeps the MIM-S cell
state as a module attribute, detached, that is never reset, so it leaks from one batch (and one test
sequence) into the next and requires train and test batches of one size; here it is part of the
sequence's state, starts at zero and carries gradients. OpenSTL's MIMN also creates a 1x1 `conv_last`
it never calls: at the mmnist setting OpenSTL counts 38.04M parameters, this model has 37.95M; FLOPs
are equal (179.2G).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vpbench import RecurrentPredictor, ReferenceLayout, VideoSpec, at_least, register_predictor, setting
from vpbench.layers import gate_conv

from .predrnn import PAPER_PRESETS, PredRNNConfig, SpatioTemporalLSTMCell


@dataclass
class MIMConfig(PredRNNConfig):
    num_layers: int = setting(4, "an ST-LSTM cell, then num_layers - 1 MIM blocks", at_least(2))


class MemoryCell(nn.Module):
    """The LSTM of MIM-N and MIM-S: gates from input and hidden convolutions plus the cell state
    weighted per position (`ct_weight` for input and forget gates, `oc_weight` for the output gate)."""

    def __init__(self, in_channels: int, hidden: int, filter_size: int, grid: tuple[int, int], layer_norm: bool) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv_h_concat = gate_conv(hidden, 4 * hidden, filter_size, grid, layer_norm)
        self.conv_x_concat = gate_conv(in_channels, 4 * hidden, filter_size, grid, layer_norm)
        self.ct_weight = nn.Parameter(torch.zeros(2 * hidden, *grid))
        self.oc_weight = nn.Parameter(torch.zeros(hidden, *grid))

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i_h, g_h, f_h, o_h = torch.split(self.conv_h_concat(h), self.hidden, dim=1)
        i_x, g_x, f_x, o_x = torch.split(self.conv_x_concat(x), self.hidden, dim=1)
        i_c, f_c = torch.split(c.repeat(1, 2, 1, 1) * self.ct_weight, self.hidden, dim=1)
        c = torch.sigmoid(f_h + f_c + f_x + 1.0) * c + torch.sigmoid(i_h + i_c + i_x) * torch.tanh(g_h + g_x)
        h = torch.sigmoid(o_h + o_x + c * self.oc_weight) * torch.tanh(c)
        return h, c


class MIMBlock(nn.Module):
    def __init__(self, in_channels: int, hidden: int, filter_size: int, grid: tuple[int, int], layer_norm: bool) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv_t_cc = gate_conv(hidden, 3 * hidden, filter_size, grid, layer_norm)
        self.conv_s_cc = gate_conv(hidden, 4 * hidden, filter_size, grid, layer_norm)
        self.conv_x_cc = gate_conv(in_channels, 4 * hidden, filter_size, grid, layer_norm)
        self.mims = MemoryCell(hidden, hidden, filter_size, grid, layer_norm)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(self, x: Tensor, diff: Tensor, h: Tensor, c: Tensor, m: Tensor,
                mims_c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        i_t, g_t, o_t = torch.split(self.conv_t_cc(h), self.hidden, dim=1)
        i_s, g_s, f_s, o_s = torch.split(self.conv_s_cc(m), self.hidden, dim=1)
        i_x, g_x, f_x, o_x = torch.split(self.conv_x_cc(x), self.hidden, dim=1)
        m = torch.sigmoid(f_x + f_s + 1.0) * m + torch.sigmoid(i_x + i_s) * torch.tanh(g_x + g_s)
        stationary, mims_c = self.mims(diff, c, mims_c)  # takes the place of f * C_{t-1}
        c = stationary + torch.sigmoid(i_x + i_t) * torch.tanh(g_x + g_t)
        h = torch.sigmoid(o_x + o_t + o_s) * torch.tanh(self.conv_last(torch.cat([c, m], dim=1)))
        return h, c, m, mims_c


# OpenSTL's MIM_Model (openstl/models/mim_model.py, modules/mim_modules.py) names the layers `stlstm_layer` (0: the
# ST-LSTM, i >= 1: MIM blocks, whose MIM-S weights sit on the block itself) and the MIM-N cells `stlstm_layer_diff`.
# Its MIM-S cell state outlives the sequence (module doc): on a model's first batch its outputs are these.
OPENSTL = ReferenceLayout(
    "OpenSTL",
    renames=((r"stlstm_layer\.0\.(.*)", r"stlstm.\1"),
             (r"stlstm_layer\.(\d+)\.((conv_h_concat|conv_x_concat)\..*|ct_weight|oc_weight)",
              lambda m: f"blocks.{int(m[1]) - 1}.mims.{m[2]}"),
             (r"stlstm_layer\.(\d+)\.(.*)", lambda m: f"blocks.{int(m[1]) - 1}.{m[2]}"),
             (r"stlstm_layer_diff\.(.*)", r"mimn.\1")),
    unused=r"stlstm_layer_diff\.\d+\.conv_last\.weight")


@register_predictor("mim")
class MIM(RecurrentPredictor):
    """MIM (Wang et al. 2019): ST-LSTM below, Memory-In-Memory blocks (MIM-N, MIM-S) above."""

    Config = MIMConfig
    checkpoint_layouts = (OPENSTL,)
    presets = {
        # OpenSTL configs/mmnist/MIM.py (4 x 128, filter 5, patch 4, batch 16, sampling to 0 at 50k) with
        # the lr the spec gives for the reference code, 5e-4.
        "mmnist": {**PAPER_PRESETS["mmnist"], "lr": 5e-4},
        # OpenSTL configs/kth/MIM.py: patch 4, batch 16, lr 1e-4, OneCycle; configs/human/MIM.py (256x256):
        # patch 4, batch 4, lr 1e-4, cosine; both 4 x 128, filter 5, sampling to 0 at 50k. UCF Sports, SJTU4K: no
        # reference config (the STIP paper's comparison gives no settings).
        "kth-10to20": {**PAPER_PRESETS["kth-10to20"], "patch_size": 4, "lr": 1e-4},
        "human36m-openstl": {**PAPER_PRESETS["human36m-openstl"], "batch_size": 4},
        "moving-digits": PAPER_PRESETS["moving-digits"],
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = PAPER_PRESETS["tiny"]

    def __init__(self, spec: VideoSpec, config: MIMConfig) -> None:
        super().__init__(spec, config)
        hidden, args = config.num_hidden, (config.filter_size, self.grid, config.layer_norm)
        self.stlstm = SpatioTemporalLSTMCell(self.patch_channels, hidden, *args)
        self.blocks = nn.ModuleList(MIMBlock(hidden, hidden, *args) for _ in range(config.num_layers - 1))
        self.mimn = nn.ModuleList(MemoryCell(hidden, hidden, *args) for _ in range(config.num_layers - 1))
        self.conv_last = nn.Conv2d(hidden, self.patch_channels, 1, bias=False)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> dict:
        zeros = torch.zeros(batch, self.config.num_hidden, *self.grid, device=device, dtype=dtype)
        layers, above = self.config.num_layers, self.config.num_layers - 1
        return {"h": [zeros] * layers, "c": [zeros] * layers, "m": zeros, "first": True,
                "diff_h": [zeros] * above, "diff_c": [zeros] * above, "mims_c": [zeros] * above}

    def step(self, frame: Tensor, state: dict) -> tuple[Tensor, dict]:
        h0, c0, m, _, _ = self.stlstm(frame, state["h"][0], state["c"][0], state["m"])
        diff_h, diff_c = state["diff_h"], state["diff_c"]
        if not state["first"]:  # MIM-N sees differences: none exist at the first step
            diff_h, diff_c, below = [], [], h0 - state["h"][0]
            for cell, dh, dc in zip(self.mimn, state["diff_h"], state["diff_c"]):
                below, dc = cell(below, dh, dc)
                diff_h.append(below)
                diff_c.append(dc)
        hs, cs, mims_cs, x = [h0], [c0], [], h0
        for block, diff, h, c, mims_c in zip(self.blocks, diff_h, state["h"][1:], state["c"][1:], state["mims_c"]):
            x, c, m, mims_c = block(x, diff, h, c, m, mims_c)
            hs.append(x)
            cs.append(c)
            mims_cs.append(mims_c)
        new_state = {"h": hs, "c": cs, "m": m, "first": False, "diff_h": diff_h, "diff_c": diff_c,
                     "mims_c": mims_cs}
        return self.conv_last(x), new_state
