"""The encoder-forecaster network of Shi et al. (NeurIPS 2017, "Deep Learning for Precipitation
Nowcasting: A Benchmark and A New Model") that ConvGRU and TrajGRU share, and their common GRU gating.

Structure, as the authors' code builds it (sxjscience/HKO-7 `nowcasting/encoder_forecaster.py`; the
PyTorch port Hzzone/Precipitation-Nowcasting follows it), for n RNN blocks:

    encoder:    conv(frame ++ x-grid ++ y-grid ++ ones) -> RNN_1 -> down_1 -> RNN_2 -> ... -> RNN_n
    forecaster: RNN_n (no input) -> up_n -> RNN_{n-1} -> ... -> RNN_1 -> deconv -> conv 3x3 -> conv 1x1

Each forecaster RNN_i starts from the last state of encoder RNN_i and never reads a frame, so the
forecast is open-loop in frames: scheduled sampling does not apply and the model trains on the MSE of
its forecast (the reference's MovingMNIST++ loss). Every activation but the gates' sigmoids is
LeakyReLU(0.2); convolutions have biases, transposed convolutions none; weights start from MXNet's
MSRAPrelu(0.2) initialisation, the flow-field convolution of TrajGRU from zeros (the reference's INIT_GRID).

On the shared recurrent base, one `step` is one time step of the whole stack: steps of context frames
run the encoder (and predict nothing, `None`), the step of the last context frame also runs the first
forecaster step, and later steps run the forecaster alone, ignoring the frame they are fed.

Where the Hzzone port differs from the authors' code we follow the authors: the input carries the
coordinate channels; upsampling keeps the channel count of the block it leaves (HKO-7's `fup`; the
port maps to the next block's); transposed convolutions have no bias; warps sample with
`align_corners=True` (MXNet's BilinearSampler; the port normalises by W-1 but calls `grid_sample` with
PyTorch's default `align_corners=False`, a half-pixel shift); the first forecaster RNN has no
input-to-state weights (the port creates them unused). Not reproduced: the reference clips the
encoder's and the forecaster's gradients separately (the harness clips both as one), and its
MXNet FactorScheduler floors the learning rate at 1e-6 (never reached within its 200k iterations).

Checkpoints: HKO-7's MXNet parameter files (`HKO7`: encoder_net / forecaster_net, read by vpbench.mxnet_params
without MXNet). The forward is pinned to HKO-7's own MXNet code, not the port: tests/fixtures/references/make_hko7.py
runs HKO-7 57b987b under MXNet 1.9.1 at a small size (32x32, 3 blocks of 8 filters) and saves its checkpoints and
predictions; loaded here they predict the same to 6e-7 (ConvGRU) and 1.2e-7 (TrajGRU), on both execution paths
(tests/test_reference_checkpoints.py). Only patch_size 1 is pinned so (HKO-7 has no patches).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (CONV_SPEC, COUNT, NON_NEGATIVE, ODD, Predictor, RecurrentConfig, RecurrentPredictor,
                     ReferenceLayout, UserError, VideoSpec, setting)

SLOPE = 0.2


def leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, SLOPE)


@dataclass
class EncoderForecasterConfig(RecurrentConfig):
    patch_size: int = 1
    scheduled_sampling: bool = False  # the forecaster never reads a frame
    num_filters: tuple[int, ...] = setting((64, 96, 96), "hidden channels of RNN blocks 1..n", COUNT)
    first_conv: tuple[int, ...] = setting((16, 3, 1, 1), "filters, kernel, stride, padding", CONV_SPEC)
    last_deconv: tuple[int, ...] = setting((16, 3, 1, 1), "filters, kernel, stride, padding of the last deconvolution",
                                           CONV_SPEC)
    down_kernel: tuple[int, ...] = setting((3, 3), "convolution after encoder block i (n-1 entries)", COUNT)
    down_stride: tuple[int, ...] = setting((2, 2), "its stride", COUNT)
    down_padding: tuple[int, ...] = setting((1, 1), "its padding", NON_NEGATIVE)
    up_kernel: tuple[int, ...] = setting((4, 4), "transposed convolution after forecaster block i+1", COUNT)
    up_stride: tuple[int, ...] = setting((2, 2), "its stride", COUNT)
    up_padding: tuple[int, ...] = setting((1, 1), "its padding", NON_NEGATIVE)
    i2h_kernel: tuple[int, ...] = setting((3, 3, 3), "input-to-hidden kernel of each RNN block", ODD)
    coord_channels: bool = setting(True, "append the normalised (x, y) grid and a ones channel to the input")
    adam_beta1: float = 0.5  # the reference's Adam momentum


# The tiny preset's codec (8 channels everywhere) and a plain Adam step: the forecast-only loss falls slowest.
TINY_CODEC = dict(patch_size=4, num_filters=(8, 8, 8), first_conv=(8, 3, 1, 1), last_deconv=(8, 3, 1, 1), lr=3e-3,
                  grad_clip=0.0)


class ZeroInitConv2d(nn.Conv2d):
    """A convolution that starts at zero (TrajGRU's flow output: every link starts as the identity warp)."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def msra_prelu_(module: nn.Conv2d | nn.ConvTranspose2d) -> None:
    """MXNet's `MSRAPrelu(slope=0.2)`: Gaussian, std sqrt(2 / (1 + slope^2) / mean(fan_in, fan_out)); zero bias."""
    receptive = math.prod(module.weight.shape[2:])
    fan_mean = (module.weight.shape[0] + module.weight.shape[1]) * receptive / 2
    nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / (1.0 + SLOPE**2) / fan_mean))
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class GRUCell(nn.Module):
    """The convolutional GRU update of HKO-7 (gates in the order reset, update, new memory):
    r = s(W_r x + R_r h), u = s(W_u x + R_u h), h' = leaky(W_h x + r * R_h h), h <- u h + (1 - u) h'.
    Subclasses say how the state-to-state term R h is computed; without an input the W terms vanish."""

    def __init__(self, in_channels: int | None, hidden: int, i2h_kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.i2h = None if in_channels is None else nn.Conv2d(in_channels, 3 * hidden, i2h_kernel,
                                                              padding=i2h_kernel // 2)

    def hidden_to_gates(self, x: Tensor | None, h: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor | None, h: Tensor) -> Tensor:
        reset, update, memory = torch.split(self.hidden_to_gates(x, h), self.hidden, dim=1)
        if x is not None:
            x_reset, x_update, x_memory = torch.split(self.i2h(x), self.hidden, dim=1)
            reset, update = reset + x_reset, update + x_update
            new = leaky(x_memory + torch.sigmoid(reset) * memory)
        else:
            new = leaky(torch.sigmoid(reset) * memory)
        update = torch.sigmoid(update)
        return update * h + (1 - update) * new


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _deconv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size - 1) * stride - 2 * padding + kernel


# HKO-7's names (ops.py, conv_rnn.py, traj_rnn.py) for a cell's tensors, and vpbench's.
_CELL_PARTS = {"i2h": "i2h", "h2h": "h2h", "i2f_conv1": "i2f", "h2f_conv1": "h2f", "f_out": "flows"}


def _hko7_cell(match: re.Match[str]) -> str:
    side = "encoder" if match[1] == "e" else "forecaster"
    return f"{side}.{int(match[2]) - 1}.{_CELL_PARTS[match[3]]}.{match[4]}"


# The authors' MXNet checkpoints (experiments/*/ *_main.py: `encoder_net.save_checkpoint(...)`, likewise the
# forecaster): two parameter files per iteration. They hold no architecture: kernels, strides and numbers of links
# must be set as the run was configured (a wrong kernel or link count fails on shapes; a wrong dilation would not).
HKO7 = ReferenceLayout(
    "HKO-7", container="mxnet", parts=("encoder_net", "forecaster_net"),
    renames=((r"([ef])brnn(\d+)_0_(i2h|h2h|i2f_conv1|h2f_conv1|f_out)_(weight|bias)", _hko7_cell),
             (r"edown(\d+)_conv_(weight|bias)", lambda m: f"down.{int(m[1]) - 1}.{m[2]}"),
             (r"fup(\d+)_deconv_weight", lambda m: f"up.{int(m[1]) - 1}.weight"),  # fup<i> leaves block i
             (r"econv1_(weight|bias)", r"stem.\1"),
             (r"fdeconv1_weight", "head_deconv.weight"),
             (r"conv_final_(weight|bias)", r"head_conv.\1"),
             (r"out_(weight|bias)", r"head_out.\1")),
    settings={"patch_size": (1, "HKO-7's networks read whole frames"),
              "coord_channels": (True, "HKO-7's networks read each frame with its coordinate grid and a ones "
                                       "channel")},
    refuse=((r"[ef]brnn\d+_[1-9]\d*_.*", "its RNN blocks stack several cells (STACK_NUM > 1); vpbench builds one "
                                        "cell per block"),))


class EncoderForecaster(RecurrentPredictor):
    """Base of the encoder-forecaster predictors: subclasses give `make_cell(in_channels, level)`."""

    Config = EncoderForecasterConfig
    checkpoint_layouts = (HKO7,)
    training_loss = Predictor.training_loss  # MSE of the open-loop forecast, as the reference trains

    def __init__(self, spec: VideoSpec, config: EncoderForecasterConfig) -> None:
        super().__init__(spec, config)
        self._check_lengths(config)
        filters, n = config.num_filters, len(config.num_filters)
        self.sizes = self._feature_sizes(config)
        in_channels = self.patch_channels + (3 if config.coord_channels else 0)
        first, kernel, stride, padding = config.first_conv
        self.stem = nn.Conv2d(in_channels, first, kernel, stride, padding)
        self.encoder = nn.ModuleList(self.make_cell(first if i == 0 else filters[i], i) for i in range(n))
        self.down = nn.ModuleList(
            nn.Conv2d(filters[i], filters[i + 1], config.down_kernel[i], config.down_stride[i], config.down_padding[i])
            for i in range(n - 1))
        # up[i] carries block i+1's state to block i with block i+1's channel count (HKO-7's `fup`).
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(filters[i + 1], filters[i + 1], config.up_kernel[i], config.up_stride[i],
                               config.up_padding[i], bias=False)
            for i in range(n - 1))
        self.forecaster = nn.ModuleList(self.make_cell(filters[i + 1] if i < n - 1 else None, i) for i in range(n))
        last, kernel, stride, padding = config.last_deconv
        self.head_deconv = nn.ConvTranspose2d(filters[0], last, kernel, stride, padding, bias=False)
        self.head_conv = nn.Conv2d(last, last, 3, padding=1)
        self.head_out = nn.Conv2d(last, self.patch_channels, 1)
        if config.coord_channels:
            self.register_buffer("coords", self._coordinates(*self.grid), persistent=False)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and not isinstance(module, ZeroInitConv2d):
                msra_prelu_(module)

    def make_cell(self, in_channels: int | None, level: int) -> GRUCell:
        raise NotImplementedError

    def _check_lengths(self, config: EncoderForecasterConfig) -> None:
        n = len(config.num_filters)
        expected = {"first_conv": 4, "last_deconv": 4, "i2h_kernel": n, **{
            key: n - 1 for key in ("down_kernel", "down_stride", "down_padding", "up_kernel", "up_stride",
                                   "up_padding")}}
        expected.update(self.per_block_fields(n))
        for key, length in expected.items():
            if len(getattr(config, key)) != length:
                raise UserError(f"{self.registry_name}: {key} needs {length} values for {n} RNN blocks, "
                                f"got {len(getattr(config, key))}")

    def per_block_fields(self, blocks: int) -> dict[str, int]:
        """Subclass settings that need one value per RNN block."""
        return {}

    def _feature_sizes(self, config: EncoderForecasterConfig) -> list[tuple[int, int]]:
        """(h, w) of each RNN block's state; the forecaster's upsampling must land on the encoder's sizes."""
        _, kernel, stride, padding = config.first_conv
        sizes = [tuple(_conv_out(s, kernel, stride, padding) for s in self.grid)]
        for i in range(len(config.num_filters) - 1):
            sizes.append(tuple(_conv_out(s, config.down_kernel[i], config.down_stride[i], config.down_padding[i])
                               for s in sizes[-1]))
        back = [tuple(_deconv_out(s, config.up_kernel[i], config.up_stride[i], config.up_padding[i])
                      for s in sizes[i + 1]) for i in range(len(sizes) - 1)]
        _, kernel, stride, padding = config.last_deconv
        out = tuple(_deconv_out(s, kernel, stride, padding) for s in sizes[0])
        if back != sizes[:-1] or out != self.grid or min(min(s) for s in sizes) < 1:
            raise UserError(f"{self.registry_name}: a {self.grid[0]}x{self.grid[1]} input gives block sizes "
                            f"{sizes}, which the forecaster's upsampling does not map back onto; change the "
                            f"frame size or the down/up kernels, strides and paddings")
        return sizes

    @staticmethod
    def _coordinates(height: int, width: int) -> Tensor:
        """[1, 3, h, w]: x and y normalised to [-1, 1], then ones (HKO-7's `_pre_encode_frame`)."""
        y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        return torch.stack([x, y, torch.ones_like(x)]).unsqueeze(0)

    def forward(self, context: Tensor, future: int) -> Tensor:
        if context.shape[1] != self.spec.context:
            # Which steps encode is fixed by the protocol's context length.
            raise UserError(f"{self.registry_name} was built for {self.spec.context} context frames, "
                            f"got {context.shape[1]}")
        return super().forward(context, future)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> tuple[int, list[Tensor]]:
        states = [torch.zeros(batch, f, *size, device=device, dtype=dtype)
                  for f, size in zip(self.config.num_filters, self.sizes)]
        return 0, states

    def step(self, frame: Tensor, state: tuple[int, list[Tensor]]) -> tuple[Tensor | None, Any]:
        t, states = state
        states = list(states)
        if t < self.spec.context:
            if self.config.coord_channels:
                frame = torch.cat([frame, self.coords.expand(frame.shape[0], -1, -1, -1).to(frame.dtype)], dim=1)
            x = leaky(self.stem(frame))
            for i, cell in enumerate(self.encoder):
                states[i] = cell(x, states[i])
                if i < len(self.down):
                    x = leaky(self.down[i](states[i]))
            if t + 1 < self.spec.context:
                return None, (t + 1, states)
        x = None
        for i in reversed(range(len(self.forecaster))):
            states[i] = self.forecaster[i](x, states[i])
            if i > 0:
                x = leaky(self.up[i - 1](states[i]))
        out = self.head_out(leaky(self.head_conv(leaky(self.head_deconv(states[0])))))
        return out, (t + 1, states)


def hko7_mmnist_preset(**architecture: Any) -> dict[str, Any]:
    """The HKO-7 MovingMNIST++ training settings (experiments/movingmnist/configurations/*.yml:
    10 -> 10 at 64x64, batch 4, Adam lr 1e-4 beta1 0.5, grad clip 1, 200k iterations, lr x0.7 every 20k)."""
    return dict(num_filters=(64, 96, 96), first_conv=(16, 3, 1, 1), last_deconv=(16, 3, 1, 1),
                down_kernel=(3, 3), down_stride=(2, 2), down_padding=(1, 1), up_kernel=(4, 4), up_stride=(2, 2),
                up_padding=(1, 1), i2h_kernel=(3, 3, 3), patch_size=1, batch_size=4, lr=1e-4, adam_beta1=0.5,
                grad_clip=1.0, max_iterations=200_000, lr_schedule="exponential", lr_gamma=0.7,
                lr_step_every=20_000, val_every=5_000, **architecture)
