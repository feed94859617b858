"""STIP (Chang et al., "STIP: A SpatioTemporal Information-Preserving and Perception-Augmented Model for
High-Resolution Video Prediction", 2022) on the shared recurrent base, following the official code
(ZhengChang467/STIPHR: core/models/STIP.py, core/layers/STGRUCell.py, core/models/model_factory.py, configs/).

- MGST-AE: at each step two encoders (temporal "t", spatial "s") read the 2-frame clip [x_{t-1}, x_t]
  (x_{-1} = 0) with a Conv3d of kernel (2, 1, 1), then log2(sr_size) stride-2 convolutions whose outputs
  are kept. X-crossed decoders: the top temporal state goes through the "s" decoder and recalls the
  spatial encoder's levels, the final spatial state through the "t" decoder with the temporal encoder's
  levels (weight alpha, MGIR). A 1x1 head per decoder, concatenated, and a 1x1 fusion give the frame.
- STGRU: update and trend gates from LayerNorm'd 5x5 convolutions of the temporal state T (carried in
  time, per layer) and the spatial state S (starts as the top spatial encoding each step, flows up only).
- Training: per-frame discriminator, LP-loss and adversarial loss next to MSE (predictors/_adversarial.py),
  two Adam optimizers, lr x0.9 every 2000 iterations once scheduled sampling has ended.

Checkpoints: the predictor's parameter names and shapes are the reference `RNN`'s, including `merge`
and every cell's `conv_last`, which the reference defines but never calls, so the published `model_pm`
files ({"net_param": state_dict}) load strictly with `bench eval --checkpoint model_pm.ckpt-1`; the
discriminator's are the reference `Discriminator`'s (`model_d`). Those weights were trained on frames read
by OpenCV, i.e. in BGR order: loading one sets `channel_order=bgr` for colour frames and says so (`OFFICIAL`).

Parameter counts leave out the discriminator and the never-called modules (`modules_outside_prediction`).
Parameters that predict / reference state dict (+140,352 never called) / discriminator: ucf-sports
17,913,860 / 18,054,212 / 266,561; human36m 17,932,112 / 18,072,464 / 287,297; sjtu4k 22,218,496 /
22,358,848 / 370,433 (the STGRU LayerNorms grow with the 17x30 grid).

Where the paper and the code differ, this follows the code: ReLU (paper: LeakyReLU) in the discriminator,
5x5 convolutions with padding 2 in the STGRU, and learning rates 5e-3 / 5e-4 at every preset (the paper's
Table I lists 0.010 / 0.0010 for UCF Sports and Human3.6M in two columns whose headings did not survive).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, NON_NEGATIVE, ODD, POSITIVE, POWER_OF_TWO, RecurrentConfig, RecurrentPredictor,
                     ReferenceLayout, Trainer, UserError, VideoSpec, iterations, register_predictor, setting,
                     tiny_preset)
from vpbench.layers import patchify, unpatchify

from ._adversarial import FrameDiscriminator, adversarial_step


State = tuple[Tensor, list[Tensor]]  # (the previous input frame, the temporal state of each layer)


@dataclass
class StipConfig(RecurrentConfig):
    """Defaults are the reference's settings shared by its three datasets (configs/*_configs.py).

    Ablations (the paper's Tables VI and VIII): `sted=false` one encoder feeds both the temporal and the
    spatial path; `mgir=false` no recall skips; `lp_weight=0` no LP-loss; `adv_weight=0` no adversarial
    loss (with both 0 there is no discriminator and training is plain MSE).
    """

    num_layers: int = setting(16, "stacked ST-GRU cells", COUNT)
    num_hidden: int = setting(64, "hidden channels of every cell", COUNT)
    filter_size: int = setting(5, "gate convolution kernel", ODD)
    sr_size: int = setting(16, "total downsampling of the encoders: the STGRU grid is (H/p/sr_size, W/p/sr_size)",
                           POWER_OF_TWO)
    alpha: float = setting(0.1, "weight of the recalled encoder levels", NON_NEGATIVE)
    sted: bool = setting(True, "separate temporal and spatial encoders (MGST-AE); false: one shared encoder")
    mgir: bool = setting(True, "multi-grained information recall skips")
    lp_weight: float = setting(0.01, "weight of the learned perceptual (LP) loss; 0: off", NON_NEGATIVE)
    adv_weight: float = setting(0.001, "weight of the adversarial loss; 0: off", NON_NEGATIVE)
    d_hidden: int = setting(64, "discriminator channels", COUNT)
    d_lr: float = setting(5e-4, "discriminator learning rate", POSITIVE)
    # The colour order the weights expect. "bgr" for the official checkpoints, trained on frames read with
    # OpenCV: the model then reverses the colour axis of its input and of its output, so it still takes
    # and returns RGB like every vpbench predictor. Only for 3-channel data.
    channel_order: Literal["rgb", "bgr"] = "rgb"
    # Frames whose patch grid sr_size does not divide are padded at the bottom / right and the prediction
    # cropped back (SJTU4K: 2160 rows -> 2176, the reference's height). How the authors made 2176-row
    # frames is not in their code (datasets/sjtu4k.py says what was checked); "replicate" repeats the edge,
    # "zeros" pads black.
    pad_mode: Literal["replicate", "zeros"] = "replicate"
    lr_decay_start: int = iterations(20000)  # the exponential decay starts here (reference: sampling stop)

    patch_size: int = 2
    sampling_stop_iter: int = iterations(20000)
    batch_size: int = 1
    lr: float = 5e-3
    lr_schedule: Literal["constant", "cosine", "exponential", "onecycle"] = "exponential"
    lr_gamma: float = 0.9
    lr_step_every: int = iterations(2000)
    max_iterations: int = iterations(100000)


def _paper(patch: int, stop: int, total: int, eval_batch: int) -> dict[str, Any]:
    return dict(patch_size=patch, sampling_stop_iter=stop, lr_decay_start=stop, max_iterations=total,
                eval_batch_size=eval_batch)


def _small(patch: int, sr_size: int, batch: int) -> dict[str, Any]:
    """CPU-sized model and schedule for the synthetic sets; the objective stays the full LP-loss GAN."""
    return dict(num_layers=4, num_hidden=32, filter_size=3, patch_size=patch, sr_size=sr_size, batch_size=batch,
                lr=2e-3, d_lr=2e-4, d_hidden=32, max_iterations=1000, quick_iterations=200, sampling_stop_iter=500,
                lr_decay_start=500, lr_step_every=100, val_every=200, grad_clip=1.0)


class STGRUCell(nn.Module):
    """The reference cell; `conv_t` / `conv_s` are Conv(bias) + LayerNorm over [4h, H', W']."""

    def __init__(self, hidden: int, filter_size: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.hidden = hidden
        pad = filter_size // 2
        self.conv_t = nn.Sequential(nn.Conv2d(hidden, 4 * hidden, filter_size, padding=pad),
                                    nn.LayerNorm([4 * hidden, *grid]))
        self.conv_s = nn.Sequential(nn.Conv2d(hidden, 4 * hidden, filter_size, padding=pad),
                                    nn.LayerNorm([4 * hidden, *grid]))
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1)  # never called; in the published checkpoints

    def forward(self, temporal: Tensor, spatial: Tensor) -> tuple[Tensor, Tensor]:
        t_z, t_r, t_t, t_s = torch.split(self.conv_t(temporal), self.hidden, dim=1)
        s_z, s_r, s_t, s_s = torch.split(self.conv_s(spatial), self.hidden, dim=1)
        update = torch.sigmoid(t_z + s_z + 1.0)
        trend = torch.sigmoid(t_r + s_r)
        new_t = torch.tanh(t_t + trend * s_t)
        new_s = torch.tanh(s_s + trend * t_s)
        return (1 - update) * new_t + update * temporal, (1 - update) * new_s + update * spatial


def _encoder(branch: str, in_channels: int, hidden: int, levels: int) -> tuple[nn.Sequential, nn.ModuleList]:
    """The clip convolution and the downsampling blocks, named as the reference names them."""
    clip = nn.Sequential(OrderedDict([(f"encoder3d_{branch}_conv-1", nn.Conv3d(in_channels, hidden, (2, 1, 1))),
                                      (f"relu3d_{branch}_-1", nn.LeakyReLU(0.2))]))
    return clip, _downsampling(branch, hidden, levels)


def _downsampling(branch: str, hidden: int, levels: int) -> nn.ModuleList:
    """`levels` stride-2 3x3 convolutions, each followed by LeakyReLU(0.2), named as the authors' code names them
    (STIP's and MAU's encoders share them)."""
    return nn.ModuleList(
        nn.Sequential(OrderedDict([(f"encoder_{branch}{i}", nn.Conv2d(hidden, hidden, 3, stride=2, padding=1)),
                                   (f"encoder_{branch}_relu{i}", nn.LeakyReLU(0.2))]))
        for i in range(levels))


def _decoder(branch: str, hidden: int, levels: int) -> nn.ModuleList:
    """`levels` stride-2 3x3 transposed convolutions, LeakyReLU(0.2) between them (STIP's and MAU's decoders)."""
    blocks = []
    for i in range(levels):
        layers = [(f"{branch}_decoder{i}", nn.ConvTranspose2d(hidden, hidden, 3, stride=2, padding=1,
                                                               output_padding=1))]
        if i < levels - 1:  # the last block has no activation
            layers.append((f"{branch}_decoder_relu{i}", nn.LeakyReLU(0.2)))
        blocks.append(nn.Sequential(OrderedDict(layers)))
    return nn.ModuleList(blocks)


# The authors' published `model_pm` files: {"net_param": the RNN's state dict}, in this model's names; the
# discriminator (`model_d`, names `main.` / `linear.`) is another file, which evaluation does not need.
OFFICIAL = ReferenceLayout(
    "official STIP", container="net_param", own=r"discriminator\..*",
    colour_settings={"channel_order": ("bgr", "the authors trained on frames read by OpenCV, in BGR order")},
    refuse=((r"(main|linear)\..*", "this is the reference's discriminator checkpoint (model_d); evaluation takes "
                                   "the predictive model, model_pm"),))


@register_predictor("stip")
class STIP(RecurrentPredictor):
    """STIP (Chang et al. 2022): MGST-AE + STGRU, trained with the LP-loss GAN; official checkpoint layout."""

    Config = StipConfig
    checkpoint_layouts = (OFFICIAL,)
    presets = {
        # configs/{ucfsport,human36m,sjtu4k}_configs.py; sr_size 16, 16 layers x 64, batch 1 throughout.
        "ucf-sports": _paper(patch=2, stop=20_000, total=100_000, eval_batch=4),
        "human36m": _paper(patch=4, stop=50_000, total=100_000, eval_batch=2),
        "sjtu4k": _paper(patch=8, stop=20_000, total=40_000, eval_batch=1),
        # The embedded synthetic sets: CPU-sized model and schedule, like convlstm's.
        "moving-digits": _small(patch=4, sr_size=4, batch=8),
        "moving-shapes": _small(patch=8, sr_size=8, batch=4),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(presets["moving-digits"], num_layers=2, num_hidden=8, lr=5e-3,
                                  sampling_stop_iter=15, d_hidden=8, lr_decay_start=15)

    def __init__(self, spec: VideoSpec, config: StipConfig) -> None:
        super().__init__(spec, config)
        levels = self._model_space_geometry()
        h, f = config.num_hidden, self.patch_channels

        self.cell_list = nn.ModuleList(STGRUCell(h, config.filter_size, self.latent)
                                       for _ in range(config.num_layers))
        self.s_encoder3d, self.s_encoders = _encoder("s", f, h, levels)
        if config.sted:
            self.t_encoder3d, self.t_encoders = _encoder("t", f, h, levels)
        self.s_decoders = _decoder("s", h, levels)
        self.t_decoders = _decoder("t", h, levels)
        self.s_srcnn = nn.Sequential(nn.Conv2d(h, f, 1))
        self.t_srcnn = nn.Sequential(nn.Conv2d(h, f, 1))
        self.merge_t = nn.Conv2d(2 * h, h, 1)
        self.merge = nn.Conv2d(2 * h, h, 1)  # never called; in the published checkpoints
        self.conv_last_sr = nn.Conv2d(2 * f, f, 1)
        self.discriminator = (FrameDiscriminator(f, *self.patch_grid, config.d_hidden)
                              if config.lp_weight or config.adv_weight else None)

    # --- frames in the weights' space: padded, in their colour order ---------------------------------
    def _model_space_geometry(self) -> int:
        """Checks sr_size and the colour order; sets the padded frame size, the patch grid and the latent grid
        (STRPM shares them); returns the encoders' number of halvings, log2(sr_size)."""
        spec, config, name = self.spec, self.config, self.registry_name
        levels = config.sr_size.bit_length() - 1  # a power of two (its rule)
        if config.channel_order == "bgr" and spec.channels != 3:
            raise UserError(f"{name}: channel_order=bgr needs 3-channel frames, these have {spec.channels}")
        unit = config.patch_size * config.sr_size
        self.padded = (-(-spec.height // unit) * unit, -(-spec.width // unit) * unit)
        self.patch_grid = (self.padded[0] // config.patch_size, self.padded[1] // config.patch_size)
        self.latent = (self.patch_grid[0] // config.sr_size, self.patch_grid[1] // config.sr_size)
        return levels

    def _to_model_space(self, frames: Tensor) -> Tensor:
        if self.config.channel_order == "bgr":
            frames = frames.flip(2)
        bottom, right = self.padded[0] - frames.shape[-2], self.padded[1] - frames.shape[-1]
        if bottom or right:
            mode = "constant" if self.config.pad_mode == "zeros" else "replicate"
            frames = F.pad(frames.flatten(0, 1), (0, right, 0, bottom), mode=mode).unflatten(0, frames.shape[:2])
        return frames

    def _from_model_space(self, frames: Tensor) -> Tensor:
        frames = frames[..., : self.spec.height, : self.spec.width]
        return frames.flip(2) if self.config.channel_order == "bgr" else frames

    # --- the recurrent step ------------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        previous = torch.zeros(batch, self.patch_channels, *self.patch_grid, device=device, dtype=dtype)
        temporal = torch.zeros(batch, self.config.num_hidden, *self.latent, device=device, dtype=dtype)
        return previous, [temporal] * self.config.num_layers

    @staticmethod
    def _encode(previous: Tensor, frame: Tensor, clip_conv: nn.Sequential,
                downs: nn.ModuleList) -> tuple[Tensor, list[Tensor]]:
        """The top encoding of the clip [previous, frame] and the levels below it that the decoders recall."""
        # The Conv3d of kernel (2, 1, 1) is a sum of one 1x1 convolution per frame: computed that way it
        # needs no stacked clip (200 MB a step at 4K) and avoids CPU's slow 3D path (2x faster there).
        conv, activation = clip_conv
        x = activation(F.conv2d(previous, conv.weight[:, :, 0]) + F.conv2d(frame, conv.weight[:, :, 1], conv.bias))
        levels = []
        for down in downs:
            levels.append(x)
            x = down(x)
        return x, levels[1:]  # the clip convolution's output is not recalled

    def _decode(self, state: Tensor, decoders: nn.ModuleList, recalled: list[Tensor]) -> Tensor:
        x = state
        for i, block in enumerate(decoders):
            x = block(x)
            if self.config.mgir and i < len(decoders) - 1:
                x = x + self.config.alpha * recalled[-1 - i]
        return x

    def step(self, frame: Tensor, state: State) -> tuple[Tensor, State]:
        previous, temporal = state
        s_top, s_levels = self._encode(previous, frame, self.s_encoder3d, self.s_encoders)
        if self.config.sted:
            t_top, t_levels = self._encode(previous, frame, self.t_encoder3d, self.t_encoders)
        else:
            t_top, t_levels = s_top, s_levels
        temporal = [self.merge_t(torch.cat([temporal[0], t_top], dim=1)), *temporal[1:]]
        spatial = s_top
        for i, cell in enumerate(self.cell_list):
            temporal[i], spatial = cell(temporal[i], spatial)
        # X-crossing: the temporal state with the spatial encoder's levels, and vice versa.
        out_s = self.s_srcnn(self._decode(temporal[-1], self.s_decoders, s_levels))
        out_t = self.t_srcnn(self._decode(spatial, self.t_decoders, t_levels))
        return self.conv_last_sr(torch.cat([out_s, out_t], dim=1)), (frame, temporal)

    # --- prediction and training -------------------------------------------------------------------
    def forward(self, context: Tensor, future: int) -> Tensor:
        """The base's closed loop in model space. Written out rather than wrapped so that no full-clip copy
        outlives its use: at 4K each costs 400 MB (the padded context, its patches, the predictions)."""
        p, steps = self.config.patch_size, context.shape[1]
        truth = patchify(self._to_model_space(context), p)
        out = self.unroll(truth, steps + future - 1, torch.ones(context.shape[0], steps),
                          keep_from=steps - 1)
        del truth
        return self._from_model_space(unpatchify(out, p, self.spec.channels))

    def _teacher_forced(self, clip: Tensor, iteration: int) -> tuple[Tensor, Tensor]:
        """All T-1 outputs under scheduled sampling and their targets, as patch tensors in model space."""
        truth = patchify(self._to_model_space(clip), self.config.patch_size)
        mask = self.sampling_mask(iteration, clip.shape[0], clip.shape[1], clip.device)
        return self.unroll(truth, clip.shape[1] - 1, mask), truth[:, 1:]

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        """The MSE part of the objective (the whole of it with the discriminator off)."""
        return F.mse_loss(*self._teacher_forced(clip, iteration))

    def training_step(self, clip: Tensor, trainer: Trainer) -> dict[str, Tensor]:
        prediction, target = self._teacher_forced(clip, trainer.iteration)
        return adversarial_step(trainer, self.discriminator, prediction, target,
                                lp_weight=self.config.lp_weight, adv_weight=self.config.adv_weight)

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        generator = [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]
        groups = {"generator": (generator, {})}
        if self.discriminator is not None:
            groups["discriminator"] = (list(self.discriminator.parameters()), {"lr": self.config.d_lr})
        return groups

    def modules_outside_prediction(self) -> list[nn.Module]:
        unused = [self.merge, *(cell.conv_last for cell in self.cell_list)]
        return unused + ([self.discriminator] if self.discriminator is not None else [])

