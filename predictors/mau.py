"""MAU (Chang et al., NeurIPS 2021, "MAU: A Motion-Aware Unit for Video Prediction and Beyond") on the shared
recurrent base, following the authors' code (ZhengChang467/MAU 9d0d9e8: core/models/MAU.py, core/layers/MAUCell.py)
and OpenSTL's copy of it (openstl/models/mau_model.py, openstl/modules/mau_modules.py): the same modules, names
and forward (OpenSTL also permutes its [B, T, H, W, C] input and returns the MSE).

- Encoder, at each step: a 1x1 convolution of the patch frame to `num_hidden` channels, then log2(sr_size)
  stride-2 3x3 convolutions, each followed by LeakyReLU(0.2): the cells run on a grid sr_size times smaller.
- Stacked MAU cells. Layer l keeps a temporal state T^l and passes a spatial state S up the layers (S^0 is the
  encoding). The attention module weighs the layer's last `tau` temporal states by how much the spatial input of
  their step resembles this one's: alpha = softmax_j(<S^{l-1}_{t-j}, W_q * S^{l-1}_t> / sqrt(C h w)), T_att =
  sum_j alpha_j T^l_{t-j}, blended with the last state by a gate, T_AMI = U T^l_{t-1} + (1 - U) T_att, U =
  sigmoid(W_u * T^l_{t-1}). The fusion module mixes T_AMI and S^{l-1}_t through two gated convolutions:
  T^l_t = g_T * (T->T) + (1 - g_T) * (S->T), S^l_t = g_S * (S->S) + (1 - g_S) * (T->S). Every convolution of a
  cell has a bias and a LayerNorm over [C, h, w] (hence weights tied to the frame size). `cell_mode=residual`
  adds S^{l-1}_t to S^l_t; the first tau steps attend over zero states, as in the references.
- Decoder: log2(sr_size) stride-2 transposed 3x3 convolutions with LeakyReLU(0.2) between them (`model_mode=recall`
  adds the encoder's level of the same size after each), then a 1x1 convolution to the patch frame.
- Training: MSE over all T-1 outputs with the base's scheduled sampling (truth fed at future steps with a
  probability falling linearly from 1 to 0 at `sampling_stop_iter`), as the authors train.

Parameter names are the references' (`cell_list.N.conv_t.0.weight`, `encoders.0.encoder_t_conv-1.weight`,
`decoders.0.c_decoder0.weight`, `srcnn.0.weight`), so OpenSTL's checkpoints (`OPENSTL`) and the authors' `net_param`
files (`OFFICIAL`) load through `--checkpoint`; both models also create `merge` and `conv_last_sr`, which no forward
calls (the authors' is commented out): they are dropped. Loaded, the weights predict what the reference code predicts
with them: OpenSTL's to 1e-6 (tests/test_foreign.py, fixtures by OpenSTL's own modules), the authors' likewise
(tests/test_reference_checkpoints.py, a fixture by the authors' code).

Where the references differ from each other or from this one (none changes what a given set of weights predicts):
- Scheduled sampling: OpenSTL's Lightning `MAU.training_step` (openstl/methods/mau.py, c74deb5) passes `self.eta`
  (1.0) to `schedule_sampling` and never stores the result, so it feeds truth with probability 0.99998 at every
  iteration up to `sampling_stop_iter` and never after. The authors' MAU_run.py and OpenSTL v0.3.0's
  `train_one_epoch` carry eta over, a linear fall to 0, which the base's schedule is; `lightning_sampling=true`
  trains with OpenSTL-Lightning's (training only: a checkpoint's weights predict the same either way).
- Patches: OpenSTL's MAU method feeds frames uncut while the model reads p*p*C channels, so patch_size > 1 fails
  there; the authors' data provider cuts none either (r = 1 in core/data_provider/mm.py), and every reference config
  uses 1. Here patch_size > 1 cuts patches as for the other RNNs (the references' `reshape_patch` order).
- Both references keep every past state of the rollout in growing lists; here only the last tau (the same outputs,
  memory flat over long rollouts). They take `stride` (1 in every config; other values break their shapes) and
  `layer_norm` (never read by MAU): neither is a setting here.

At the mmnist preset (4 x 64, filter 5, patch 1, sr_size 4, tau 5): 4,475,329 parameters (OpenSTL's model holds
4,483,588, the unused `merge` and `conv_last_sr` included; its table says 4.5M) and 17.79 GFLOPs (fvcore, batch 1,
a 10 -> 10 rollout's 19 steps, the LayerNorms counted as fvcore counts them; its table: 17.8G); tests/test_mau.py
counts both by hand.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from vpbench import (COUNT, ODD, POWER_OF_TWO, RecurrentConfig, RecurrentPredictor, ReferenceLayout, UserError,
                     VideoSpec, register_predictor, setting, tiny_preset)

from .stip import _decoder, _downsampling
from .strpm import _norm_conv


@dataclass
class MAUConfig(RecurrentConfig):
    patch_size: int = 1  # every reference config: the encoder downsamples instead
    num_layers: int = setting(4, "stacked MAU cells", COUNT)
    num_hidden: int = setting(64, "channels of every cell and of the encoder and decoder", COUNT)
    filter_size: int = setting(5, "kernel of the cells' convolutions", ODD)
    sr_size: int = setting(4, "the encoder's stride-2 convolutions shrink the patch grid this many times (log2 of "
                              "it of them); the decoder grows it back", POWER_OF_TWO)
    tau: int = setting(5, "past temporal states each cell attends to", COUNT)
    cell_mode: Literal["normal", "residual"] = setting("normal", "residual: each cell adds its spatial input to its "
                                                                 "spatial output")
    model_mode: Literal["normal", "recall"] = setting("normal", "recall: the decoder adds the encoder's level of the "
                                                                "same size after each upsampling")
    lightning_sampling: bool = setting(False, "OpenSTL's Lightning MAU method's schedule: ground truth fed with "
                                              "probability 1 - 1/sampling_stop_iter until sampling_stop_iter, then "
                                              "never (its eta is never stored)")


class MAUCell(nn.Module):
    """The motion-aware unit: attention over the last tau temporal states, then the gated fusion of T and S."""

    def __init__(self, hidden: int, filter_size: int, grid: tuple[int, int], residual: bool) -> None:
        super().__init__()
        self.hidden, self.residual = hidden, residual
        self.scale = math.sqrt(hidden * grid[0] * grid[1])
        self.conv_t = _norm_conv(hidden, 3 * hidden, filter_size, grid)
        self.conv_t_next = _norm_conv(hidden, hidden, filter_size, grid)  # the gate U between T_{t-1} and T_att
        self.conv_s = _norm_conv(hidden, 3 * hidden, filter_size, grid)
        self.conv_s_next = _norm_conv(hidden, hidden, filter_size, grid)  # the attention's query

    def forward(self, temporal: Tensor, spatial: Tensor, past_temporal: Tensor,
                past_spatial: Tensor) -> tuple[Tensor, Tensor]:
        """`past_*`: [tau, B, C, h, w], the layer's temporal states and spatial inputs of the last tau steps."""
        query = self.conv_s_next(spatial)
        # Elementwise products summed, as the references compute them: no matrix product for the FLOP counters.
        scores = (past_spatial * query).sum(dim=(2, 3, 4)) / self.scale  # [tau, B]
        weights = torch.softmax(scores, dim=0)[..., None, None, None]
        trend = (weights * past_temporal).sum(dim=0)
        gate = torch.sigmoid(self.conv_t_next(temporal))
        fused = temporal * gate + (1 - gate) * trend
        t_gate, t_to_t, t_to_s = torch.split(self.conv_t(fused), self.hidden, dim=1)
        s_gate, s_to_t, s_to_s = torch.split(self.conv_s(spatial), self.hidden, dim=1)
        t_gate, s_gate = torch.sigmoid(t_gate), torch.sigmoid(s_gate)
        temporal = t_gate * t_to_t + (1 - t_gate) * s_to_t
        new_spatial = s_gate * s_to_s + (1 - s_gate) * t_to_s
        return temporal, new_spatial + spatial if self.residual else new_spatial


MAUState = dict[str, list]

# Both models create a 1x1 `merge` of [T, S] and a `conv_last_sr` of two frames that no forward calls.
_UNUSED = r"(merge|conv_last_sr)\.(weight|bias)"
# OpenSTL's MAU_Model (Lightning checkpoints, `model.` prefix): the authors' names.
OPENSTL = ReferenceLayout("OpenSTL", unused=_UNUSED)
# The authors' files (core/models/model_factory.py `Model.save`: {"net_param": the RNN's state dict}).
OFFICIAL = ReferenceLayout("official MAU", container="net_param", unused=_UNUSED)


@register_predictor("mau")
class MAU(RecurrentPredictor):
    """MAU (Chang et al. 2021): strided encoder, motion-aware units attending over past temporal states, decoder."""

    Config = MAUConfig
    checkpoint_layouts = (OPENSTL, OFFICIAL)
    presets = {
        # OpenSTL configs/mmnist/MAU.py with its defaults: num_hidden '64,64,64,64', filter 5, patch 1, sr_size 4,
        # tau 5, cell_mode / model_mode 'normal', scheduled sampling to 0 at 50k, batch 16, lr 1e-3, OneCycle,
        # 200 epochs x 625 iterations (its table's 4.5M / 17.8G row).
        "mmnist": dict(num_layers=4, num_hidden=64, filter_size=5, patch_size=1, sr_size=4, tau=5,
                       cell_mode="normal", model_mode="normal", batch_size=16, lr=1e-3, lr_schedule="onecycle",
                       max_iterations=125_000, sampling_stop_iter=50_000, val_every=5_000),
        # OpenSTL configs/kth/MAU.py (10 -> 20 at 128x128): sr_size 2, lr 5e-4, OneCycle; configs/human/MAU.py
        # (4 -> 4 at 256x256): sr_size 4, lr 1e-4, cosine; both 4 x 64, filter 5, patch 1, tau 5, batch 16, sampling
        # to 0 at 50k. OpenSTL trains epochs of the prepared split: max_iterations stays at the harness default.
        "kth-10to20": dict(num_layers=4, num_hidden=64, filter_size=5, patch_size=1, sr_size=2, tau=5, batch_size=16,
                           lr=5e-4, lr_schedule="onecycle", sampling_stop_iter=50_000),
        "human36m-openstl": dict(num_layers=4, num_hidden=64, filter_size=5, patch_size=1, sr_size=4, tau=5,
                                 batch_size=16, lr=1e-4, lr_schedule="cosine", sampling_stop_iter=50_000),
        # The authors' Moving MNIST training (configs/mnist_train_configs.py, chosen by name: `--preset
        # mmnist-authors`): the same model; Adam at 1e-3, x0.90 every 2000 iterations once scheduled sampling has
        # ended at 50k (model_factory.py's ExponentialLR, stepped when itr >= sampling_stop_iter and itr % 2000 ==
        # 0), 80k iterations of batch 16, MSE.
        "mmnist-authors": dict(num_layers=4, num_hidden=64, filter_size=5, patch_size=1, sr_size=4, tau=5,
                               batch_size=16, lr=1e-3, lr_schedule="exponential", lr_gamma=0.9, lr_step_every=2000,
                               lr_decay_start=50_000, max_iterations=80_000, sampling_stop_iter=50_000,
                               val_every=5_000),
        # CPU-sized for the embedded set: 2 cells x 32 on 4x4 patches with one stride-2 level (cells on an 8x8 grid),
        # 3x3 filters, tau 3, 1000 iterations of batch 8. One run, scored on the whole 1000-clip test split: 17.50 dB
        # mean PSNR, 16.59 at t+10 (every floor 15.00 or below), SSIM 0.57 (below the blank frame's 0.76, as
        # ConvLSTM's main-job 0.64 is). In quick runs (200 iterations) 2x2 patches (cells on 16x16) reached the same
        # t+1 PSNR as these (17.98 against 18.08 dB) for four times the cells' multiply-adds.
        "moving-digits": dict(num_layers=2, num_hidden=32, filter_size=3, patch_size=4, sr_size=2, tau=3,
                              batch_size=8, lr=2e-3, lr_schedule="cosine", max_iterations=1000, quick_iterations=200,
                              sampling_stop_iter=500, val_every=200, grad_clip=1.0),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core. At 8
    # channels 30 steps reached 15.1 dB at t+1, not 0.5 dB above copy-last's 14.8; 16 channels reach 16.4.
    presets["tiny"] = tiny_preset(presets["moving-digits"], num_layers=2, num_hidden=16, lr=5e-3,
                                  sampling_stop_iter=15, tau=2)

    def __init__(self, spec: VideoSpec, config: MAUConfig) -> None:
        super().__init__(spec, config)
        sr, (height, width) = config.sr_size, self.grid
        if height % sr or width % sr:
            raise UserError(f"mau: sr_size {sr} does not divide the patch grid {height}x{width} (frames "
                            f"{spec.height}x{spec.width} cut into {config.patch_size}x{config.patch_size} patches)")
        self.latent = (height // sr, width // sr)
        levels, h = sr.bit_length() - 1, config.num_hidden  # sr_size is a power of two (its rule)
        first = nn.Sequential(OrderedDict([("encoder_t_conv-1", nn.Conv2d(self.patch_channels, h, 1)),
                                           ("relu_t_-1", nn.LeakyReLU(0.2))]))
        self.encoders = nn.ModuleList([first, *_downsampling("t", h, levels)])
        self.cell_list = nn.ModuleList(MAUCell(h, config.filter_size, self.latent, config.cell_mode == "residual")
                                       for _ in range(config.num_layers))
        self.decoders = _decoder("c", h, levels)
        self.srcnn = nn.Sequential(nn.Conv2d(h, self.patch_channels, 1))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> MAUState:
        zeros = torch.zeros(batch, self.config.num_hidden, *self.latent, device=device, dtype=dtype)
        layers, window = self.config.num_layers, (zeros,) * self.config.tau
        # Per layer: the temporal state, and the last tau temporal states and spatial inputs, oldest first.
        return {"temporal": [zeros] * layers, "past_temporal": [window] * layers, "past_spatial": [window] * layers}

    def step(self, frame: Tensor, state: MAUState) -> tuple[Tensor, MAUState]:
        levels, x = [], frame
        for block in self.encoders:
            x = block(x)
            levels.append(x)
        spatial = x
        new: MAUState = {"temporal": [], "past_temporal": [], "past_spatial": []}
        for cell, temporal, past_t, past_s in zip(self.cell_list, state["temporal"], state["past_temporal"],
                                                  state["past_spatial"]):
            temporal, above = cell(temporal, spatial, torch.stack(past_t), torch.stack(past_s))
            new["temporal"].append(temporal)
            new["past_temporal"].append((*past_t[1:], temporal))
            new["past_spatial"].append((*past_s[1:], spatial))
            spatial = above
        out = spatial
        for i, block in enumerate(self.decoders):
            out = block(out)
            if self.config.model_mode == "recall":
                out = out + levels[-2 - i]  # the encoder's level of this size (below the top one)
        return self.srcnn(out), new

    def sampling_probability(self, iteration: int) -> float:
        cfg = self.config
        if cfg.scheduled_sampling and cfg.lightning_sampling:
            # Every step lowers OpenSTL's constant starting eta by one sampling_changing_rate.
            stop = max(1, cfg.sampling_stop_iter)
            return cfg.sampling_start * (1 - 1 / stop) if iteration < stop else 0.0
        return super().sampling_probability(iteration)
