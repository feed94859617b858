"""Retrospective Cycle GAN (Kwon & Park, "Predicting Future Frames using Retrospective Cycle GAN", CVPR 2019; the
"CycleGAN" row of STIP's Tables III and IV): one generator predicts the next frame from the last four and, fed the
same frames reversed, the previous one. Training asks the two directions to agree (the retrospective cycle) and
plays the generator against a frame discriminator and a sequence discriminator.

The authors published no code. This follows the one public implementation that builds the whole method,
va26/Retrospective-Cycle-GAN--tensorflow (TensorFlow 2, commit 95cb5bc: model.py, train.py, utils.py), layer for
layer; its generator and sequence discriminator were run with TensorFlow against this code (below). Its layers, with
TensorFlow's 'same' padding throughout (`_same_pad`: the extra row of an even padding goes after), frames in
[-1, 1], all convolutions without bias except the last of each network, weights drawn from N(0, 0.02):
- Generator: a 3D convolution over the 4 frames (kernel 4 x 7 x 7, `width` filters, no normalisation and no
  activation, as in its code), a 3D convolution of kernel 2 x 3 x 3 and stride 2 (time 4 -> 2), a convolution of
  kernel 1 x 3 x 3 and stride 2 to 2 x width (time 2 -> 1: kernel 1 at stride 2 reads the first of the two time
  slices, which has seen all four frames; written here as a 2D convolution of that slice), each followed by
  instance normalisation (per frame, over the image, with gain and offset) and ReLU; `residual_blocks` blocks x + [conv
  3x3, IN, ReLU, conv 3x3, IN](x); two stride-2 transposed 3x3 convolutions to width and then 2 x width channels
  (its order), each with IN and ReLU; a 7x7 convolution to the frame's channels, tanh.
- Frame discriminator (PatchGAN): stride-2 4x4 convolutions to d_width, 2 d_width, 4 d_width (LeakyReLU 0.2, IN
  after all but the first), a stride-1 one to 8 d_width, a stride-1 4x4 convolution to one score per patch.
- Sequence discriminator: the same on the 5-frame sequence with 3D kernels 4 x 4 x 4, the strides also in time
  (5 -> 3 -> 2 -> 1); its last layer's kernel is 1 x 4 x 4.
- Losses (train.py): a 5-frame window x_m..x_n; x'_n = G(x_m..x_{n-1}), x'_m = G(x_n..x_{m+1}) (reversed),
  x''_n = G(x'_m, x_{m+1}..x_{n-1}), x''_m = G(x'_n, x_{n-1}..x_{m+1}). Image loss: L1 + log_weight x L1 of the
  Laplacian of Gaussian of the grey frames, over the pairs (x_n, x'_n), (x_n, x''_n), (x'_n, x''_n) and the same
  for m. Frame discriminator on x_n, x_m against the four predictions; sequence discriminator on the window and
  the reversed window against each with its last frame replaced by a prediction. Least-squares GAN losses, weights
  0.005 (LoG), 0.003 (frame), 0.003 (sequence), Adam 3e-4 with beta1 0.5 for all three networks, batch 1.
- Prediction of several frames: each predicted frame joins the window of the last four (the generator is
  trained for the next frame only, as train.py trains it).

Departures from va26, the first three from what look like bugs in it (no switch restores them; the paper's text,
which we could not read in full, is [unverified] on every point of this docstring):
- The frame discriminator's kernels: its (1, 4, 4) in TensorFlow's (height, width, time) order give 1 x 4 spatial
  kernels (and four time taps of which one meets the single frame); here 4x4 spatial kernels, the same count.
- Adversarial losses: va26 adds its discriminators' own losses to the generator's (the generator is pushed to look
  fake) and scores some predictions as "real" against others; here the least-squares GAN: the generator minimises
  (D(fake) - 1)^2, each discriminator (D(real) - 1)^2 + D(fake)^2, means over its real and over its fake inputs.
- The LoG: va26 rescales each batch's LoG response to [0, 255] by its minimum and maximum (inverted) and writes
  the Gaussian's exponent as -z / 2 * sigma^2; here the LoG kernel (x^2 + y^2 - 2 s^2) / (2 pi s^6)
  exp(-(x^2 + y^2) / (2 s^2)) unscaled, `log_size` 7 and `log_sigma` 1 (its defaults).
- Its last discriminator convolutions are 'valid' (a map 3 smaller); here 'same', so that small frames work.
- va26 takes all three optimizer steps from one pass; here the generator steps first, then the discriminators
  on the same (detached) predictions: the same updates.
- Windows: va26 trains on every 5-frame window of its videos; here each step takes one window of every clip, its
  position cycling through the clip with the iteration.

Proof: va26's own TensorFlow generator and sequence discriminator (its model.py functions, every layer 1/16 as
wide), their weights random, predict and score what this code does with those weights: max differences 3.4e-6 and
2.7e-7 (tests/fixtures/references/make_retro_cyclegan.py, tests/test_retro_cyclegan.py). Parameters at va26's
configuration (RGB, width 128, 9 blocks, d_width 64), counted by TensorFlow from its model.py and here alike
(tests/test_retro_cyclegan.py restates them by hand): generator 11,920,131; frame discriminator 2,765,569;
sequence discriminator 11,032,321. The paper's own counts are not published [unverified].

At sjtu4k (2160x3840 RGB, 4 -> 4): 11,920,131 parameters and 41.81 TFLOPs (fvcore; counted at 216x384 and scaled
by the area, which every count here follows: 72x128 counts exactly a ninth of 216x384). Memory there: the first
convolution's output over the 4 frames is 17 GB in fp32 and its padded copy as much (about 34 GB), and on the CPU
torch's 3D convolution also unfolds its input: `bench profile --dataset ucf-sports` (512x512, 4 -> 6, 1 CPU thread)
peaked at 9.46 GB RSS, about 300 GB scaled to 4K. `bench profile` at sjtu4k was not run (a 23 GB machine); on the
CPU it would run out of memory, not print a line [unverified on a GPU].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, NON_NEGATIVE, ODD, POSITIVE, Predictor, TrainConfig, Trainer, UserError, VideoSpec,
                     register_predictor, setting, tiny_preset)

from ._stip_schedules import stip_dataset_presets

WINDOW = 4  # frames the generator reads: its time strides (2, then 2) bring 4 frames to 1
LUMA = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale, which va26's LoG applies to colour frames


@dataclass
class RetroCycleGanConfig(TrainConfig):
    """Defaults: va26's model.py and train.py (the paper's values there are [unverified])."""

    width: int = setting(128, "generator channels: its first two convolutions (2x in the residual trunk)", COUNT)
    residual_blocks: int = setting(9, "residual blocks of the generator", COUNT)
    d_width: int = setting(64, "channels of both discriminators' first layer (doubled per layer to 8x)", COUNT)
    d_layers: int = setting(3, "stride-2 layers of both discriminators", COUNT)
    log_weight: float = setting(0.005, "weight of the Laplacian-of-Gaussian L1 term of the image loss",
                                NON_NEGATIVE)
    frame_weight: float = setting(0.003, "weight of the frame discriminator's adversarial loss; 0: off",
                                  NON_NEGATIVE)
    sequence_weight: float = setting(0.003, "weight of the sequence discriminator's adversarial loss; 0: off",
                                     NON_NEGATIVE)
    log_size: int = setting(7, "side of the Laplacian-of-Gaussian kernel", ODD)
    log_sigma: float = setting(1.0, "sigma of the Laplacian-of-Gaussian kernel", POSITIVE)
    d_lr: float = setting(3e-4, "learning rate of both discriminators", POSITIVE)

    batch_size: int = 1
    lr: float = 3e-4
    adam_beta1: float = 0.5


def _same_pad(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> Tensor:
    """TensorFlow's 'same' padding of the last len(kernel) dims: ceil(size / stride) outputs, an odd pad's extra
    row after."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[-len(kernel):], kernel, stride))):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv2d(nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_same_pad(x, self.kernel_size, self.stride))


class SameConv3d(nn.Conv3d):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(_same_pad(x, self.kernel_size, self.stride))


class SameConvTranspose2d(nn.ConvTranspose2d):
    """TensorFlow's 'same' transposed convolution: stride x the input's size, cropped as 'same' pads (from the
    start by the pad's smaller half)."""

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        (kh, kw), (sh, sw), (h, w) = self.kernel_size, self.stride, x.shape[-2:]
        top, left = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
        return out[..., top:top + h * sh, left:left + w * sw]


class InstanceNorm(nn.Module):
    """va26's InstanceNormalization: per sample, channel (and time slice) over the image, eps 1e-5, a gain and an
    offset per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, unbiased=False)
        shape = (-1,) + (1,) * (x.dim() - 2)
        return (x - mean) * torch.rsqrt(var + 1e-5) * self.weight.view(shape) + self.bias.view(shape)


def _norm_relu(channels: int) -> list[nn.Module]:
    return [InstanceNorm(channels), nn.ReLU()]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(SameConv2d(channels, channels, 3, bias=False), *_norm_relu(channels),
                                  SameConv2d(channels, channels, 3, bias=False), InstanceNorm(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Four frames [B, 4, C, H, W] in [-1, 1] -> the next frame [B, C, H, W] in [-1, 1]."""

    def __init__(self, channels: int, width: int, blocks: int) -> None:
        super().__init__()
        self.temporal = nn.Sequential(SameConv3d(channels, width, (WINDOW, 7, 7), bias=False),
                                      SameConv3d(width, width, (2, 3, 3), stride=2, bias=False), *_norm_relu(width))
        self.down = nn.Sequential(SameConv2d(width, 2 * width, 3, stride=2, bias=False), *_norm_relu(2 * width))
        self.trunk = nn.Sequential(*(ResidualBlock(2 * width) for _ in range(blocks)))
        self.up = nn.Sequential(SameConvTranspose2d(2 * width, width, 3, stride=2, bias=False), *_norm_relu(width),
                                SameConvTranspose2d(width, 2 * width, 3, stride=2, bias=False),
                                *_norm_relu(2 * width))
        self.head = SameConv2d(2 * width, channels, 7)

    def forward(self, frames: Tensor) -> Tensor:
        x = self.temporal(frames.transpose(1, 2))[:, :, 0]  # the first time slice: what va26's stride 2 reads
        return torch.tanh(self.head(self.up(self.trunk(self.down(x)))))


def _patch_discriminator(conv: type[nn.Module], channels: int, width: int, layers: int,
                         last_kernel: Any) -> nn.Sequential:
    """pix2pix's PatchGAN as va26 builds it: `layers` stride-2 4-kernels (IN after all but the first), one at
    stride 1 to 8x (as 2^layers x) the first width, then one score per patch."""
    out: list[nn.Module] = []
    widths = [channels] + [width * 2 ** i for i in range(layers + 1)]
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        out.append(conv(cin, cout, 4, stride=2 if i < layers else 1, bias=False))
        out += ([InstanceNorm(cout)] if i else []) + [nn.LeakyReLU(0.2)]
    out.append(conv(widths[-1], 1, last_kernel))
    return nn.Sequential(*out)


class SequenceDiscriminator(nn.Module):
    """A sequence [B, T, C, H, W] -> patch scores; 3D kernels, strides in time too."""

    def __init__(self, channels: int, width: int, layers: int) -> None:
        super().__init__()
        self.net = _patch_discriminator(SameConv3d, channels, width, layers, (1, 4, 4))

    def forward(self, frames: Tensor) -> Tensor:
        return self.net(frames.transpose(1, 2))


def log_kernel(size: int, sigma: float) -> Tensor:
    """The Laplacian of a Gaussian, sampled on size x size integer offsets."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    z = r[:, None] ** 2 + r[None, :] ** 2
    kernel = (z - 2 * sigma ** 2) / (2 * math.pi * sigma ** 6) * torch.exp(-z / (2 * sigma ** 2))
    return kernel.float()[None, None]


def _weights_init(module: nn.Module) -> None:
    """va26's initialisers: N(0, 0.02) kernels, zero biases, instance-norm gains N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, InstanceNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)


def _least_squares(scores: list[Tensor], target: float) -> Tensor:
    """Mean over the inputs of the mean (score - target)^2, in float32."""
    return torch.stack([(s.float() - target).pow(2).mean() for s in scores]).mean()


@register_predictor("retro-cyclegan")
class RetroCycleGan(Predictor):
    """Retrospective Cycle GAN (Kwon & Park 2019): a 4-frame generator trained forwards and backwards in time."""

    Config = RetroCycleGanConfig
    fully_convolutional = True
    presets = {
        # STIP's datasets: va26's model and training, the config's defaults (model.py lines 180-202: width 128,
        # 9 blocks, discriminators from 64; train.py lines 22, 29-30, 54-56, 106-108: batch 1, LoG 7 / sigma 1,
        # weights 0.005 / 0.003 / 0.003, Adam 3e-4 with beta1 0.5), for as many iterations as STIP trains on each
        # (STIPHR configs/<dataset>_configs.py: 100k / 100k / 40k) [unverified: STIP gives no settings for it].
        **stip_dataset_presets(dict(val_every=5_000)),
        # The embedded synthetic set, CPU-sized [unverified: ours]: width 16, 2 blocks, lr 1e-3 (at 5e-3 the L1 loss
        # on the black background drove every output to tanh's -1 within 10 steps, where it stayed).
        "moving-digits": dict(width=16, residual_blocks=2, d_width=16, batch_size=8, lr=1e-3, d_lr=2e-4,
                              max_iterations=1000, quick_iterations=200, val_every=100, grad_clip=1.0),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(presets["moving-digits"], width=8, residual_blocks=1, d_width=8, d_layers=2)

    def __init__(self, spec: VideoSpec, config: RetroCycleGanConfig) -> None:
        super().__init__(spec, config)
        if spec.context < WINDOW:
            raise UserError(f"retro-cyclegan: its generator reads the last {WINDOW} frames; the protocol gives "
                            f"{spec.context} context frames")
        if spec.height % 4 or spec.width % 4:
            raise UserError(f"retro-cyclegan: two stride-2 stages need frames divisible by 4; "
                            f"{spec.height}x{spec.width} is not")
        c = spec.channels
        self.generator = Generator(c, config.width, config.residual_blocks)
        self.frame_discriminator = (_patch_discriminator(SameConv2d, c, config.d_width, config.d_layers, 4)
                                    if config.frame_weight else None)
        self.sequence_discriminator = (SequenceDiscriminator(c, config.d_width, config.d_layers)
                                       if config.sequence_weight else None)
        self.apply(_weights_init)
        grey = torch.tensor(LUMA if c == 3 else [1.0 / c] * c).view(1, c, 1, 1)
        self.register_buffer("grey", grey, persistent=False)
        self.register_buffer("log", log_kernel(config.log_size, config.log_sigma), persistent=False)

    def forward(self, context: Tensor, future: int) -> Tensor:
        window = context[:, -WINDOW:] * 2 - 1
        predicted = []
        for _ in range(future):
            frame = self.generator(window)
            predicted.append(frame)
            window = torch.cat([window[:, 1:], frame[:, None]], dim=1)
        return (torch.stack(predicted, dim=1) + 1) / 2

    # --- training ---------------------------------------------------------------------------------------
    def _window(self, clip: Tensor, iteration: int) -> Tensor:
        """One (WINDOW + 1)-frame window of the clips in [-1, 1], its start cycling through the clip."""
        starts = clip.shape[1] - WINDOW
        start = iteration % starts
        return clip[:, start:start + WINDOW + 1] * 2 - 1

    def _laplacian(self, frames: Tensor) -> Tensor:
        grey = (frames.float() * self.grey).sum(dim=1, keepdim=True)
        return F.conv2d(grey, self.log, padding=self.log.shape[-1] // 2)

    def _image_loss(self, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
        loss = torch.zeros((), device=pairs[0][0].device)
        for a, b in pairs:
            loss = loss + F.l1_loss(a.float(), b.float())
            if self.config.log_weight:
                loss = loss + self.config.log_weight * F.l1_loss(self._laplacian(a), self._laplacian(b))
        return loss

    def _cycle(self, window: Tensor) -> tuple[dict[str, Tensor], list[tuple[Tensor, Tensor]]]:
        """The four predictions of the retrospective cycle on a window x_m..x_n and the image loss's pairs."""
        middle = window[:, 1:WINDOW]
        x_m, x_n = window[:, 0], window[:, WINDOW]
        n1 = self.generator(window[:, :WINDOW])
        m1 = self.generator(window[:, 1:].flip(1))
        n2 = self.generator(torch.cat([m1[:, None], middle], dim=1))
        m2 = self.generator(torch.cat([n1[:, None], middle.flip(1)], dim=1))
        pairs = [(x_n, n1), (x_n, n2), (n1, n2), (x_m, m1), (x_m, m2), (m1, m2)]
        return {"n1": n1, "n2": n2, "m1": m1, "m2": m2}, pairs

    @staticmethod
    def _sequences(window: Tensor, fakes: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Real sequences (the window, forwards and backwards) and the fake ones: each with its last frame
        replaced by a prediction of that frame."""
        backward = window.flip(1)
        real = [window, backward]
        fake = [torch.cat([seq[:, :WINDOW], fakes[key][:, None]], dim=1)
                for seq, keys in ((window, ("n1", "n2")), (backward, ("m1", "m2"))) for key in keys]
        return real, fake

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        """The image loss of the retrospective cycle (the objective with both adversarial weights 0)."""
        return self._image_loss(self._cycle(self._window(clip, iteration))[1])

    def training_step(self, clip: Tensor, trainer: Trainer) -> dict[str, Tensor]:
        cfg = self.config
        window = self._window(clip, trainer.iteration)
        fakes, pairs = self._cycle(window)
        image = self._image_loss(pairs)
        real_frames = [window[:, WINDOW], window[:, 0]]
        real_sequences, fake_sequences = self._sequences(window, fakes)
        discriminators = [(self.frame_discriminator, cfg.frame_weight, real_frames, list(fakes.values()),
                           "frame"),
                          (self.sequence_discriminator, cfg.sequence_weight, real_sequences, fake_sequences,
                           "sequence")]
        # The generator against the current discriminators, their weights frozen for this pass.
        adversarial = {}
        for net, weight, _, fake, name in discriminators:
            if net is not None:
                net.requires_grad_(False)
                adversarial[name] = _least_squares([net(f) for f in fake], 1.0)
                net.requires_grad_(True)
        loss = image + sum(w * adversarial[name] for net, w, _, _, name in discriminators if net is not None)
        trainer.backward(loss)
        trainer.step("generator")
        out = {"loss": loss.detach(), "image": image.detach(),
               "mse": F.mse_loss(fakes["n1"].detach().float(), window[:, WINDOW].float()) / 4}
        for net, _, real, fake, name in discriminators:
            if net is None:
                continue
            d_loss = (_least_squares([net(r) for r in real], 1.0)
                      + _least_squares([net(f.detach()) for f in fake], 0.0))
            trainer.backward(d_loss)
            trainer.step(f"{name}_discriminator")
            out[f"{name}_adv"] = adversarial[name].detach()
            out[f"d_{name}"] = d_loss.detach()
        return out

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        groups = {"generator": (list(self.generator.parameters()), {})}
        for name, net in (("frame", self.frame_discriminator), ("sequence", self.sequence_discriminator)):
            if net is not None:
                groups[f"{name}_discriminator"] = (list(net.parameters()), {"lr": self.config.d_lr})
        return groups

    def modules_outside_prediction(self) -> list[nn.Module]:
        return [net for net in (self.frame_discriminator, self.sequence_discriminator) if net is not None]
