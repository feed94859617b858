"""CrevNet (Yu et al., ICLR 2020, "Efficient and Information-Preserving Future Frame Prediction and Beyond"): a
conditionally reversible network. An invertible auto-encoder maps a clip of `window` consecutive frames to a latent
of the same size, a reversible predictive module (RPM) maps that latent to the next clip's, and the encoder run
backwards decodes it; nothing is lost on the way in or out.

Follows OpenSTL's CrevNet (branch OpenSTLv0.3.0, commit 0a0f36c: openstl/models/crevnet_model.py,
openstl/modules/crevnet_modules.py, openstl/methods/crevnet.py). Its modules are those of the 3D Moving MNIST code
in tamasino52/CrevNet (`layers_3d.py`, `model_mnist.py`: a copy, comments added, of code in the authors' style); the
authors' own public repository, gnosisyuw/CrevNet-Traffic4cast, holds only a 2D variant (GroupNorm, a deeper
attention) for Traffic4cast. Both were read, not run:
- Frames are squeezed 2x2 into 4x the channels (i-RevNet's psi: channel order row offset, column offset, colour:
  `vpbench.layers.patchify`), `window` of them stacked in time: [B, 4C, window, H/2, W/2], split into two halves
  along channels.
- `blocks[s]` i-RevNet blocks per stage s: (x1, x2) -> (x2, F(x2) + x1), F = [BatchNorm, ReLU,] 3x3x3 conv to
  out / mult channels, BatchNorm, ReLU, 3x3x3 conv, dropout, BatchNorm, ReLU, 3x3x3 conv to `out`, without biases
  (the first block of all has no leading BatchNorm and ReLU). The first block of every stage after the first
  halves the frame (F's first convolution with stride (1, 2, 2), both halves squeezed 2x2): a half holds
  2C x 4^s channels, the same number of values at every stage. Its inverse: x1 = y1 - F(x2).
- The RPM: `predictor_rnn_layers` layers, each an ST-ConvLSTM cell (PredRNN's two memories: gates from 3x3x3
  convolutions of [x, h, c] and of [x, m, c'], the output gate from [x, h, c', m], h = o * tanh(1x1 conv [c', m]))
  fed the first half, whose hidden state updates the second half through an attention gate,
  x2 <- (1 - g) x2 + g h with g = sigmoid(1x1 conv h), the halves then swapped. The spatiotemporal memory m runs
  from layer to layer and from step to step.
- Prediction: the decoded latent is the next clip; its last frame is the predicted frame, and the clip is fed
  back, its frames that the context holds replaced by the context's. Training is teacher-forced over every clip of
  the training clip (T - window steps), the loss the sum over steps of each decoded clip's MSE, as both references
  train.

Departures from OpenSTL, towards the authors' code:
- OpenSTL's test rollout (`CrevNet_Model.forward(training=False)`) starts the RPM from zero states at the last
  context clip: the earlier context clips are never read, though training runs the RPM over all of them. The
  authors' `plot()` (Traffic4cast's train.py, and model_mnist.py) warms the RPM up on every context clip first; so
  does this predictor.
  `reference_rollout=True` reproduces OpenSTL's rollout, and its checkpoints set it (so that they predict what
  OpenSTL predicted with them).
- OpenSTL returns channel 0 of the predicted frames only (`x_in[:, 0, 2]`), a grey frame for RGB input; here
  every channel. For one-channel frames the two agree.
- OpenSTL's states have a fixed shape (its config's batch size, window 3, an 8x8 latent: 64x64 frames only) and
  its `rnn_size` and `n_eval` settings must agree with the frames; here all of them follow from the input
  (the RPM's width is a half's channels, 2C x 4^(stages - 1): OpenSTL's `rnn_size` 32 for grey frames; its
  configs/human/CrevNet.py, rnn_size 32 for RGB, cannot build).
- OpenSTL trains the encoder and the RPM with two optimizers of equal settings stepping on one loss: the same
  as one optimizer over both, as here.

Checkpoints: OpenSTL 0.3.0's files (`checkpoint.pth`: the model's bare state dict, written by its Recorder;
`latest.pth`: {"state_dict": ...}) load through `--checkpoint` (`OPENSTL`), renamed to vpbench's names.
tests/fixtures/references/make_crevnet.py wrote one with OpenSTL's own method and its outputs; loaded here, it
predicts them exactly, and its training loss is OpenSTL's (tests/test_crevnet.py).

At sjtu4k's 2160x3840 RGB (its preset: OpenSTL's model, [unverified]), 44,960,100 parameters (a half of the latent
holds 96 channels on 3 x 270 x 480) and 90.07 TFLOPs for 4 -> 4 (counted at 216x384 and scaled by the area, which
every operation's count follows: 72x128 counts exactly a ninth of 216x384).

At the mmnist preset (OpenSTL's configs/mmnist/CrevNet.py, 64x64 grey, 10 -> 10): 4,997,444 parameters (RPM
4,892,928, auto-encoder 104,516) and 16.71 GFLOPs (fvcore, batch 1: 17 encodings, 17 RPM steps, 10 decodings).
OpenSTL's table prints 5.0M and 270.7G: its count runs the training pass (17 teacher-forced steps, each decoded,
BatchNorm in training mode) at its batch size 16, i.e. 16.92G a clip (tests/test_crevnet.py counts both by hand).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, Predictor, ReferenceLayout, TrainConfig, UserError, VideoSpec, between,
                     register_predictor, setting, tiny_preset)
from vpbench.layers import patchify, unpatchify

from ._stip_schedules import stip_dataset_presets

Pair = tuple[Tensor, Tensor]


@dataclass
class CrevNetConfig(TrainConfig):
    # OpenSTL's name for the RPM's depth, so that its config files read across.
    predictor_rnn_layers: int = setting(8, "reversible predictive module layers (ST-ConvLSTM cell + attention)",
                                        COUNT)
    blocks: tuple[int, ...] = setting((4, 5, 3), "i-RevNet blocks per stage; every stage after the first halves "
                                                  "the frame (the squeezed frames are at 1/2 before the first)", COUNT)
    mult: int = setting(2, "a block's bottleneck has its output channels / mult (at least 1)", COUNT)
    dropout: float = setting(0.0, "dropout inside each block's bottleneck", between(0, 1, high_open=True))
    window: int = setting(3, "frames per clip: the auto-encoder reads clips [C, window, H, W], each step predicts "
                             "the next clip", COUNT)
    reference_rollout: bool = setting(False, "OpenSTL's test rollout: zero states at the last context clip, the "
                                             "earlier ones unread (False: the RPM reads every context clip first, "
                                             "as the authors' code; OpenSTL's checkpoints set it)")


def _squeeze(x: Tensor) -> Tensor:
    """i-RevNet's psi: [B, C, T, H, W] -> [B, 4C, T, H/2, W/2], each frame's 2x2 blocks stacked as channels in
    `patchify`'s order (row offset, column offset, channel). Contiguous, as the reference's: a convolution of a
    strided view sums in another order, and the inverse blocks amplify that to 4e-6 over a few decodings."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // 2, 2, w // 2, 2).permute(0, 4, 6, 1, 2, 3, 5)
    return x.reshape(b, 4 * c, t, h // 2, w // 2)


def _unsqueeze(x: Tensor) -> Tensor:
    b, c, t, h, w = x.shape
    x = x.reshape(b, 2, 2, c // 4, t, h, w).permute(0, 3, 4, 5, 1, 6, 2)
    return x.reshape(b, c // 4, t, 2 * h, 2 * w)


class InvertibleBlock(nn.Module):
    """i-RevNet's block on a pair: (x1, x2) -> (x2, F(x2) + x1), both halves squeezed where it halves the frame."""

    def __init__(self, in_channels: int, out_channels: int, halves: bool, first: bool, mult: int,
                 dropout: float) -> None:
        super().__init__()
        self.halves = halves
        width = max(1, out_channels // mult)
        # OpenSTL's `bottleneck_block`, layer for layer (its checkpoints index into it).
        layers: list[nn.Module] = [] if first else [nn.BatchNorm3d(in_channels // 2), nn.ReLU(inplace=True)]
        layers += [nn.Conv3d(in_channels // 2, width, 3, stride=(1, 2, 2) if halves else 1, padding=1, bias=False),
                   nn.BatchNorm3d(width), nn.ReLU(inplace=True),
                   nn.Conv3d(width, width, 3, padding=1, bias=False), nn.Dropout(dropout),
                   nn.BatchNorm3d(width), nn.ReLU(inplace=True),
                   nn.Conv3d(width, out_channels, 3, padding=1, bias=False)]
        self.residual = nn.Sequential(*layers)

    def forward(self, pair: Pair) -> Pair:
        x1, x2 = pair
        residual = self.residual(x2)
        if self.halves:
            x1, x2 = _squeeze(x1), _squeeze(x2)
        return x2, residual + x1

    def inverse(self, pair: Pair) -> Pair:
        x2, y1 = pair
        if self.halves:
            x2 = _unsqueeze(x2)
        x1 = y1 - self.residual(x2)
        return (_unsqueeze(x1) if self.halves else x1), x2


class STConvLSTMCell(nn.Module):
    """The RPM's ConvRNN: PredRNN's spatiotemporal LSTM on 3D latents, and the attention that mixes its hidden
    state into the other half."""

    def __init__(self, channels: int) -> None:
        super().__init__()

        def conv(inputs: int) -> nn.Conv3d:
            return nn.Conv3d(inputs * channels, channels, 3, padding=1)

        self.input_gate, self.forget_gate, self.candidate = conv(3), conv(3), conv(3)  # of [x, h, c]
        self.memory_input_gate, self.memory_forget_gate, self.memory_candidate = conv(3), conv(3), conv(3)  # [x, m, c']
        self.output_gate = conv(4)  # of [x, h, c', m]
        self.fuse = nn.Conv3d(2 * channels, channels, 1)
        self.attention = nn.Conv3d(channels, channels, 1)

    def forward(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        stacked = torch.cat([x, h, c], dim=1)
        c_new = (torch.sigmoid(self.forget_gate(stacked)) * c
                 + torch.sigmoid(self.input_gate(stacked)) * torch.tanh(self.candidate(stacked)))
        stacked = torch.cat([x, m, c_new], dim=1)
        m = (torch.sigmoid(self.memory_forget_gate(stacked)) * m
             + torch.sigmoid(self.memory_input_gate(stacked)) * torch.tanh(self.memory_candidate(stacked)))
        o = torch.sigmoid(self.output_gate(torch.cat([x, h, c_new, m], dim=1)))
        return o * torch.tanh(self.fuse(torch.cat([c_new, m], dim=1))), c_new, m


# The RPM's states: (h, c) per layer and the memory m that runs through the layers.
State = tuple[list[tuple[Tensor, Tensor]], Tensor]

# OpenSTL 0.3.0's CrevNet_Model: `encoder.stack.N.bottleneck_block`, `frame_predictor.convlstm.N` (the cell) and
# `frame_predictor.att.N.0` (the attention, then a Sigmoid).
_GATES = {"in_gate": "input_gate", "remember_gate": "forget_gate", "cell_gate": "candidate",
          "in_gate1": "memory_input_gate", "remember_gate1": "memory_forget_gate", "cell_gate1": "memory_candidate",
          "out_gate": "output_gate", "w1": "fuse"}
OPENSTL = ReferenceLayout(
    "OpenSTL",
    renames=((r"encoder\.stack\.(\d+)\.bottleneck_block\.(.*)", r"blocks.\1.residual.\2"),
             (r"frame_predictor\.convlstm\.(\d+)\.(\w+)\.(weight|bias)",
              lambda m: f"cells.{m[1]}.{_GATES.get(m[2], m[2])}.{m[3]}"),
             (r"frame_predictor\.att\.(\d+)\.0\.(weight|bias)", r"cells.\1.attention.\2")),
    settings={"reference_rollout": (True, "OpenSTL's CrevNet predicts from zero states at the last context clip")})

# OpenSTL 0a0f36c configs/mmnist/CrevNet.py (lines 4-8: 8 RPM layers; lr 5e-3, batch 16, OneCycle) with
# CrevNet_Model's fixed auto-encoder (openstl/models/crevnet_model.py lines 29-33: nBlocks [4, 5, 3], mult 2) and
# OpenSTL's default 200 epochs (openstl/utils/parser.py line 171) x 625 iterations of 10,000 training clips.
MMNIST = dict(predictor_rnn_layers=8, blocks=(4, 5, 3), mult=2, batch_size=16, lr=5e-3, lr_schedule="onecycle",
              max_iterations=125_000, val_every=5_000)


# STIP's datasets [unverified]: STIP's paper (section IV) gives no CrevNet settings. OpenSTL's mmnist model (the only
# CrevNet configuration published for PyTorch) at OpenSTL's default lr and schedule (1e-3, OneCycle:
# openstl/utils/parser.py lines 183-184), trained as STIP trains its own model on the dataset: batch 1, the
# iterations and test batch of STIPHR's configs/<dataset>_configs.py (as stip's presets).
STIP_DATASETS = stip_dataset_presets(dict(MMNIST, batch_size=1, lr=1e-3, val_every=5_000))


@register_predictor("crevnet")
class CrevNet(Predictor):
    """CrevNet (Yu et al. 2020): an invertible 3D auto-encoder around reversible ST-ConvLSTM predictive modules."""

    Config = CrevNetConfig
    checkpoint_layouts = (OPENSTL,)
    fully_convolutional = True  # convolutions only, every state sized from the input
    presets = {
        "mmnist": MMNIST,
        # STIP's three datasets [unverified]: STIP compares with CrevNet but gives no settings for it: STIP_DATASETS.
        **STIP_DATASETS,
        # The embedded synthetic set, CPU-sized: two stages (a latent of 8 channels on 3 x 16 x 16), 2 RPM layers, clips
        # of the context and 2 frames (train_horizon 2: 9 teacher-forced one-step predictions a clip; the protocol's
        # 17 would add more of the same steps at twice the cost). Measured (1 thread, a loaded machine): the whole run
        # scores mean PSNR 15.42 dB on the 1000 test clips (t+1 18.57, t+10 14.38; mean-frame 15.00, copy-last's t+1
        # 14.72), SSIM 0.48; validation picked iteration 150 of 300 (MSE 0.0318, 0.0373 at 300): trained one step at a
        # time, the closed loop drifts as the one-step fit sharpens.
        "moving-digits": dict(predictor_rnn_layers=2, blocks=(2, 2), mult=2, batch_size=8, lr=3e-3,
                              lr_schedule="cosine", max_iterations=300, quick_iterations=150, val_every=150,
                              grad_clip=1.0, train_horizon=2),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(presets["moving-digits"], predictor_rnn_layers=2, blocks=(2, 2), lr=5e-3,
                                  train_horizon=0)

    def __init__(self, spec: VideoSpec, config: CrevNetConfig) -> None:
        super().__init__(spec, config)
        scale = 2 ** len(config.blocks)
        if spec.height % scale or spec.width % scale:
            raise UserError(f"crevnet: {len(config.blocks)} stages (blocks={list(config.blocks)}) halve the frame "
                            f"{len(config.blocks)} times; {spec.height}x{spec.width} is not divisible by {scale}")
        if spec.context < config.window:
            raise UserError(f"crevnet: window={config.window} frames per clip needs at least as many context frames; "
                            f"the protocol has {spec.context}")
        half = 2 * spec.channels  # a half of the squeezed frames
        blocks, in_channels = [], 2 * half
        for stage, count in enumerate(config.blocks):
            out = half * 4 ** stage
            for i in range(count):
                blocks.append(InvertibleBlock(in_channels, out, halves=stage > 0 and i == 0, first=not blocks,
                                              mult=config.mult, dropout=config.dropout))
                in_channels = 2 * out
        self.blocks = nn.ModuleList(blocks)
        self.cells = nn.ModuleList(STConvLSTMCell(in_channels // 2) for _ in range(config.predictor_rnn_layers))

    # --- the auto-encoder ----------------------------------------------------------------------------------
    def encode(self, clip: Tensor) -> Pair:
        """A squeezed clip [B, 4C, window, H/2, W/2] -> its latent pair."""
        half = clip.shape[1] // 2
        pair = (clip[:, :half], clip[:, half:])
        for block in self.blocks:
            pair = block(pair)
        return pair

    def decode(self, pair: Pair) -> Tensor:
        for block in reversed(self.blocks):
            pair = block.inverse(pair)
        return torch.cat(pair, dim=1)

    # --- the reversible predictive module ------------------------------------------------------------------
    def predict_latent(self, pair: Pair, state: State | None) -> tuple[Pair, State]:
        x1, x2 = pair
        if state is None:
            zeros = torch.zeros_like(x1)
            state = [(zeros, zeros)] * len(self.cells), zeros
        layers, m = state
        new_layers = []
        for cell, (h, c) in zip(self.cells, layers):
            h, c, m = cell(x1, h, c, m)
            new_layers.append((h, c))
            g = torch.sigmoid(cell.attention(h))
            x1, x2 = (1 - g) * x2 + g * h, x1
        return (x1, x2), (new_layers, m)

    def _clips(self, frames: Tensor) -> list[Tensor]:
        """Squeezed frames [B, T, 4C, h, w] -> every clip of `window` consecutive ones, [B, 4C, window, h, w]."""
        w = self.config.window
        return [frames[:, j:j + w].transpose(1, 2) for j in range(frames.shape[1] - w + 1)]

    def forward(self, context: Tensor, future: int) -> Tensor:
        frames = patchify(context, 2)
        clips, tc, w = self._clips(frames), context.shape[1], self.config.window
        state = None
        # The RPM reads the earlier context clips first; what it predicts from them the context holds, undecoded.
        for clip in [] if self.config.reference_rollout else clips[:-1]:
            _, state = self.predict_latent(self.encode(clip), state)
        clip, predicted = clips[-1], []
        for step in range(future):
            latent, state = self.predict_latent(self.encode(clip), state)
            clip = self.decode(latent)
            known = w - 1 - step  # the new clip's first frames are still context frames
            if known > 0:
                clip = torch.cat([frames[:, tc - known:].transpose(1, 2), clip[:, :, known:]], dim=2)
            predicted.append(clip[:, :, -1])
        return unpatchify(torch.stack(predicted, dim=1), 2, self.spec.channels)

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        """Teacher forcing over every clip of `clip` [B, T, C, H, W]: the sum over steps of the MSE between the
        decoded prediction and the true next clip (context clips included), as OpenSTL and the authors train."""
        clips = self._clips(patchify(clip, 2))
        state, loss = None, clip.new_zeros(())
        for current, following in zip(clips[:-1], clips[1:]):
            latent, state = self.predict_latent(self.encode(current), state)
            loss = loss + F.mse_loss(self.decode(latent), following)
        return loss
