"""MotionRNN (Wu et al., CVPR 2021) on PredRNN: MotionGRU units between the stacked ST-LSTM layers and a
motion highway, following the official code (thuml/MotionRNN: core/models/MotionRNN_PredRNN.py,
core/layers/MotionGRU.py, core/layers/SpatioTemporalLSTMCell_Motion_Highway.py).

- Each of the first L-1 ST-LSTM layers is followed by a MotionGRU at half the patch grid's resolution: a
  stride-2 convolution to h/4 channels; a GRU over the motion F (2 x k x k offsets, k = 3) whose update,
  reset and candidate come from 3x3 convolutions of [x, F_{t-1}]; the motion trend D_t = D_{t-1} +
  0.5 (F_{t-1} - D_{t-1}) added to the transient variation, F_t = F'_t + D_t; a warp of the features by F_t
  (a modulated deformable 3x3 convolution: bilinear samples at the k x k neighbours displaced by F_t, scaled
  by a sigmoid gate, then mixed by a 3x3 kernel); a transposed convolution back to h channels; and a gate
  (5x5 convolution of [warped, H]) between the warped and the original hidden state.
- Motion highway: every ST-LSTM adds (1 - o) times the state below it to its hidden state,
  H = o * tanh(W [C, M]) + (1 - o) * highway, the highway being the layer below's hidden state before its
  MotionGRU (for the first layer, a 1x1 convolution of the input frame).
- The ST-LSTM cell is PredRNN's (predictors/predrnn.py); parameter names match the reference's.

Departures from the reference code, towards the paper's intent:
- The reference starts every rollout from random states (`xavier_normal_` on h, c, M, the motion and its
  trend, the latter two the same tensor), so its predictions differ from call to call; here they start at
  zero, as in PredRNN.
- The reference registers backward hooks meant to scale the MotionGRU gates' and the warp gate's gradients
  by 0.1, but the hooks build generators and return nothing, so they change nothing; they are left out
  (under Adam a constant gradient scale would barely change the updates anyway).
- The warp is computed as a 1x1 convolution over the k*k samples stacked in channels, not as the
  reference's stride-k convolution over a k-times enlarged map: the same weights (`warp.conv.weight`,
  [C, C, k, k]), the same result and the same multiply-adds.

Checkpoints: the authors' files (`Model.save`: {"net_param": state dict}, the same names) load through
`--checkpoint` (`OFFICIAL`). tests/fixtures/references/make_motionrnn.py wrote one with the authors' code (thuml
002415f) and its outputs; loaded here, it predicts them to 1.2e-7 (tests/test_reference_checkpoints.py). The writer
replaces the reference's random initial states by zeros, as above: that departure is pinned by nothing but reading.

At the mmnist preset: 26,911,553 parameters (PredRNN's 23,838,720 plus 3,072,833) and 128.7 GFLOPs (fvcore,
batch 1, the 10 -> 10 rollout's 19 steps; tests/test_predrnn_family.py counts both by hand). OpenSTL has no
MotionRNN and no published figure to compare with; the reference code builds the same layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import ODD, ReferenceLayout, Rule, UserError, VideoSpec, at_least, register_predictor, setting

from .predrnn import PAPER_PRESETS, PredRNN, PredRNNConfig


@dataclass
class MotionRNNConfig(PredRNNConfig):
    num_layers: int = setting(4, "stacked ST-LSTM cells (MotionGRUs sit between them)", at_least(2))
    num_hidden: int = setting(128, "hidden channels of every cell (the MotionGRU runs at a quarter of them)",
                              Rule("a multiple of 4, >= 4", lambda v: v >= 4 and v % 4 == 0))
    neighbour: int = setting(3, "the warp's k x k neighbourhood; the motion has 2 k^2 channels", ODD)


def _axis_taps(position: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis of a map of `size` whose border row / column is zero padding: the lower
    and upper indices and their weights. Positions are clamped to the map, so anything outside reads zeros."""
    position = position.clamp(0, size - 1)
    low = position.detach().floor()
    high = (low + 1).clamp(max=size - 1)
    return low.long(), high.long(), 1 - (position - low), 1 - (high - position)


def neighbourhood_samples(x: Tensor, motion: Tensor, neighbour: int) -> Tensor:
    """x [B, C, H, W], motion [B, 2N, H, W] (N = neighbour^2 row offsets, then N column offsets) ->
    [B, C, N, H, W]: x sampled bilinearly (zero outside) at each position's N neighbours, each displaced by
    its offset. Neighbour n is at (n // k - r, n % k - r), r = (k - 1) / 2, as in the reference."""
    b, c, h, w = x.shape
    n, r = neighbour * neighbour, (neighbour - 1) // 2
    steps = torch.arange(-r, r + 1, device=x.device, dtype=motion.dtype)
    grid_rows = torch.arange(h, device=x.device, dtype=motion.dtype).view(1, 1, h, 1)
    grid_cols = torch.arange(w, device=x.device, dtype=motion.dtype).view(1, 1, 1, w)
    # Positions in the map padded by one zero row / column on each side (hence + 1).
    rows = grid_rows + steps.repeat_interleave(neighbour).view(1, n, 1, 1) + motion[:, :n] + 1
    cols = grid_cols + steps.repeat(neighbour).view(1, n, 1, 1) + motion[:, n:] + 1
    padded = F.pad(x, (1, 1, 1, 1)).flatten(2)  # [B, C, (H + 2) (W + 2)]
    row_taps, col_taps = _axis_taps(rows, h + 2), _axis_taps(cols, w + 2)
    out = x.new_zeros(b, c, n * h * w)
    for row, row_weight in ((row_taps[0], row_taps[2]), (row_taps[1], row_taps[3])):
        for col, col_weight in ((col_taps[0], col_taps[2]), (col_taps[1], col_taps[3])):
            index = (row * (w + 2) + col).view(b, 1, -1).expand(b, c, -1)
            out = out + (row_weight * col_weight).view(b, 1, -1) * padded.gather(2, index)
    return out.view(b, c, n, h, w)


class Warp(nn.Module):
    """The reference's `Warp`: a modulated deformable k x k convolution (no bias) driven by the motion."""

    def __init__(self, channels: int, neighbour: int) -> None:
        super().__init__()
        self.neighbour = neighbour
        self.conv = nn.Conv2d(channels, channels, neighbour, stride=neighbour, bias=False)
        self.warp_gate = nn.Conv2d(channels, neighbour * neighbour, 3, padding=1)
        nn.init.zeros_(self.warp_gate.weight)

    def forward(self, x: Tensor, motion: Tensor) -> Tensor:
        samples = neighbourhood_samples(x, motion, self.neighbour) * torch.sigmoid(self.warp_gate(x)).unsqueeze(1)
        b, c, n, h, w = samples.shape
        weight = self.conv.weight.reshape(self.conv.out_channels, c * n, 1, 1)  # [out, (c, kernel row, kernel col)]
        return F.conv2d(samples.reshape(b, c * n, h, w), weight)


class MotionGRU(nn.Module):
    """Transient variation by a convolutional GRU over the motion, plus the motion trend; warps its input."""

    def __init__(self, channels: int, neighbour: int) -> None:
        super().__init__()
        motion = 2 * neighbour * neighbour
        self.update = nn.Conv2d(channels + motion, motion, 3, padding=1)
        self.reset = nn.Conv2d(channels + motion, motion, 3, padding=1)
        self.output = nn.Conv2d(channels + motion, motion, 3, padding=1)
        for conv in (self.update, self.reset, self.output):
            nn.init.zeros_(conv.weight)  # the reference's initialisation: the motion starts from its biases
        self.warp = Warp(channels, neighbour)

    def forward(self, x: Tensor, motion: Tensor, trend: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        stacked = torch.cat([x, motion], dim=1)
        update = torch.sigmoid(self.update(stacked))
        reset = torch.sigmoid(self.reset(stacked))
        transient = torch.tanh(self.output(torch.cat([x, reset * motion], dim=1)))
        trend = trend + 0.5 * (motion - trend)
        motion = (1 - update) * motion + update * transient + trend
        return self.warp(x, motion), motion, trend


# The authors' files (core/models/model_factory.py `Model.save`): {"net_param": the RNN's state dict}, in this
# model's names. Their weights need nothing set: the initial states are the one difference (see the module doc).
OFFICIAL = ReferenceLayout("thuml MotionRNN", container="net_param")


@register_predictor("motionrnn", aliases=("motion-rnn",))
class MotionRNN(PredRNN):
    """MotionRNN (Wu et al. 2021): PredRNN with MotionGRU units between layers and a motion highway."""

    Config = MotionRNNConfig
    checkpoint_layouts = (OFFICIAL,)  # OpenSTL has no MotionRNN: PredRNN's layout is not this model's
    presets = {
        # OpenSTL has no MotionRNN; its fork duyhlzu/GMG adds one with configs/mmnist/MotionRNN.py: 4 x 128,
        # filter 5, patch 4, scheduled sampling to 0 at 50k, batch 16, lr 3e-4 (thuml's own script's lr too),
        # OneCycle; 200 epochs x 625 iterations as OpenSTL's other mmnist RNNs.
        "mmnist": {**PAPER_PRESETS["mmnist"], "lr": 3e-4},
        # thuml/MotionRNN human_script/MotionRNN_PredRNN_human_train.sh: Human3.6M at 128x128, chosen by name
        # (`--preset human36m-128 --protocol openstl --set data.height=128 --set data.width=128`), 4 -> 4, 4 x 64, filter 5, patch 4, scheduled sampling
        # to 0 at 50k, lr 3e-4, batch 8, 80k iterations. The script also trains on each clip reversed in time
        # (reverse_input 1); vpbench does not.
        "human36m-128": dict(num_layers=4, num_hidden=64, filter_size=5, patch_size=4, batch_size=8, lr=3e-4,
                             max_iterations=80_000, sampling_stop_iter=50_000),
        # No reference config for KTH, UCF Sports or SJTU4K (the STIP paper compares MotionRNN on the latter
        # two without giving its settings): no preset.
        # CPU-sized, as predrnn's.
        "moving-digits": PAPER_PRESETS["moving-digits"],
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = PAPER_PRESETS["tiny"]

    def __init__(self, spec: VideoSpec, config: MotionRNNConfig) -> None:
        super().__init__(spec, config)
        hidden, k = config.num_hidden, config.filter_size
        if self.grid[0] % 2 or self.grid[1] % 2:
            raise UserError(f"motionrnn: the patch grid {self.grid[0]}x{self.grid[1]} must be even (the MotionGRU "
                            "runs at half size)")
        between = range(config.num_layers - 1)
        self.enc_list = nn.ModuleList(nn.Conv2d(hidden, hidden // 4, k, stride=2, padding=k // 2) for _ in between)
        self.motion_list = nn.ModuleList(MotionGRU(hidden // 4, config.neighbour) for _ in between)
        self.dec_list = nn.ModuleList(nn.ConvTranspose2d(hidden // 4, hidden, 4, stride=2, padding=1) for _ in between)
        self.gate_list = nn.ModuleList(nn.Conv2d(2 * hidden, hidden, k, padding=k // 2) for _ in between)
        self.conv_first_v = nn.Conv2d(self.patch_channels, hidden, 1, bias=False)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> dict:
        half = (self.grid[0] // 2, self.grid[1] // 2)
        zeros = torch.zeros(batch, 2 * self.config.neighbour ** 2, *half, device=device, dtype=dtype)
        between = self.config.num_layers - 1
        return {**super().init_state(batch, device, dtype), "motion": [zeros] * between, "trend": [zeros] * between}

    def step(self, frame: Tensor, state: dict) -> tuple[Tensor, dict]:
        x, m, highway = frame, state["m"], self.conv_first_v(frame)
        hs, cs, motions, trends = [], [], [], []
        for layer, (cell, h, c) in enumerate(zip(self.cell_list, state["h"], state["c"])):
            h, c, m, _, _ = cell(x, h, c, m, highway=highway)
            highway = h
            if layer < len(self.motion_list):
                warped, motion, trend = self.motion_list[layer](
                    self.enc_list[layer](h), state["motion"][layer], state["trend"][layer])
                warped = self.dec_list[layer](warped)
                gate = torch.sigmoid(self.gate_list[layer](torch.cat([warped, h], dim=1)))
                h = gate * warped + (1 - gate) * h
                motions.append(motion)
                trends.append(trend)
            hs.append(h)
            cs.append(c)
            x = h
        return self.conv_last(x), {"h": hs, "c": cs, "m": m, "motion": motions, "trend": trends}
