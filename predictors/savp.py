"""SAVP (Lee et al., "Stochastic Adversarial Video Prediction", arXiv 1804.01523, 2018): a convolutional-LSTM
encoder-decoder that predicts each frame as a mask-weighted mix of the previous frame moved by CDNA kernels, the
previous and the first frame, and a frame drawn from scratch, conditioned on a latent code z per step; trained as a
VAE (an encoder infers z from the frame pair it must predict) and as a GAN (samples from the prior fooling a video
discriminator), or both (SAVP).

Follows the authors' TensorFlow code, alexlee-gk/video_prediction (commit df43be5): video_prediction/models/
savp_model.py (generator_fn, SAVPCell, posterior_fn, discriminator_fn, and the defaults of
SAVPVideoPredictionModel.get_default_hparams_dict), models/networks.py (encoder, video_sn_discriminator),
models/base_model.py (the losses, Adam, the KL annealing), rnn_ops.py (BasicConv2DLSTMCell), ops.py (conv_pool2d,
upsample_conv2d, instance norm, spectral norm), losses.py, and hparams/{kth,bair_action_free}/ours_{savp,vae_l1,gan}/
model_hparams.json. At the reference's defaults (action-free, where_add=all, tile concat, learn_prior=false,
use_rnn_z, transformation cdna, conv_rnn lstm with instance norm):
- Generator step t (frames 0 .. T-2 in, frame t+1 out): z_t -> a fully connected LSTM (nz units, forget bias 1)
  -> z'_t, tiled over the image and concatenated to the input of every convolution of the encoder-decoder.
  Encoder: [frame_t, frame_0] -> conv-pool (5x5, then 3x3, each a convolution and a 2x2 average pool) + instance
  norm + ReLU, each level followed by a 5x5 conv-LSTM (instance norm on the gates and on the cell; no conv bias)
  where its spec says so. Decoder: bilinear x2 upsampling then 3x3 convolution + instance norm + ReLU (+ conv-LSTM),
  the matching encoder level concatenated (U-Net). Levels by the frame's smaller side: 3 at 64, 4 at 128, 5 at
  >= 256 (savp_model.py lines 182-232). Heads on the last decoder level: CDNA kernels (a dense layer on the
  flattened smallest level -> 4 normalised 5x5 kernels applied to the current frame, symmetric padding), a scratch
  frame (3x3 conv + IN + ReLU, 3x3 conv, sigmoid), masks (3x3 conv + IN + ReLU, then a 3x3 conv over it and the 7
  candidate frames, softmax over candidates): frame = sum of candidates x masks.
- z: the posterior is a 3-layer 4x4 stride-2 encoder (64/128/256, instance norm, leaky ReLU 0.2, global average
  pool) of the pair (frame_t, frame_t+1) -> mean and log variance (clipped to [-10, 10]); the prior is N(0, 1).
  The z of the context transitions (t < context - 1) come from the posterior at test time too (learn_prior=false).
- Losses: 100 x L1 of the posterior-z rollout (all T-1 frames) + kl_weight x KL(q || N(0, 1)), annealed linearly
  from iteration 50k to 100k; LSGAN losses of two video discriminators (spectral-normalised 3D convolutions on
  clips of 10 frames at random offsets, one for prior-z rollouts, one for posterior-z rollouts) and the cosine
  distance of the discriminator's features of real and fake clips; scheduled sampling with the inverse-sigmoid
  schedule (k = 900). Adam (lr 2e-4, beta1 0.5) for both; the discriminators step first, then the generator against
  the updated discriminators.

`variant` picks the losses: "savp" all of them; "vae" L1 + KL (SAVP-VAE, ours_vae_l1: no discriminator); "gan" L1 +
the prior-z GAN and its feature distance (SAVP-GAN, ours_gan: no KL, no posterior-z discriminator; as in the code,
the L1 term still reads the posterior-z rollout, so the encoder is trained by it alone). The `kth`, `kth-vae` and
`kth-gan` presets are the three hparams files of the reference; switching `variant` alone keeps the other weights.

Departures (none changes the architecture):
- Frames whose sides are not a multiple of 2^levels (sjtu4k's 2160 rows with 5 levels) are padded by repeating the
  border and the prediction cropped; the reference refuses them. The discriminators see the unpadded frames.
- The reference decays the learning rate linearly to 0 from iteration 200k to 300k; the harness has no such schedule,
  so the rate is constant (presets: max_iterations 300k, [departure]).
- Clips shorter than the discriminator's clip_length (STIP's 4 -> 4 sequences give 7 frames) use all their frames.
- Spectral norm is torch's (one power iteration per training forward, as the reference's).
- STIP's datasets: STIP's paper gives no SAVP settings; their presets take the KTH SAVP hparams with STIP's batch 1
  and iterations [unverified].

What could not be compared: the reference is TensorFlow 1.x (tf.contrib), so its outputs were not reproduced here;
the architecture follows its code layer by layer, and the parameter count at the published KTH configuration (64x64
grey, 10 -> 10, ngf 32, nef 64, nz 32) is counted by hand from the reference's layer list in tests/test_savp.py:
generator 8,217,669 (its CDNA dense layer 819,300 of them) and 2 discriminators of 5,142,273 each, equal to this
predictor's (and at BAIR's, 64x64 RGB, nz 8, likewise). No published parameter count exists to compare with.
At sjtu4k's 2160x3840 RGB (its preset: the KTH SAVP settings, padded to 2176x3840, 5 levels), 261,512,313
parameters, 208,896,100 of them the CDNA dense layer (the smallest level, 256 x 68 x 120, flattened), and 22.61
TFLOPs for 4 -> 4 (1,412,954,894,336 counted by `count_flops` at 544x960, a quarter of each side, times 16:
every count follows the padded area at a fixed number of levels, 272x480 (padded to 288x480) counting 3.78x
less than 544x960, i.e. 4 x 272 / 288). Not run at 4K: there is no GPU here, and on 2 CPU cores `bench profile
--models savp --dataset sjtu4k --repeats 1 --warmup 0` (1 thread, a loaded machine) had printed nothing when stopped
after 7 minutes (5.9 GB RSS by then).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from vpbench import (COUNT, NON_NEGATIVE, POSITIVE, ODD, StochasticConfig, StochasticPredictor, Trainer, UserError,
                     VideoSpec, at_least, iterations, register_predictor, setting, tiny_preset)

from ._stip_schedules import stip_dataset_presets

RELU_SHIFT = 1e-12  # the reference's lower bound on CDNA kernel taps
NORM_EPS = 1e-6  # the reference's fused instance norm


@dataclass
class SAVPConfig(StochasticConfig):
    variant: Literal["savp", "vae", "gan"] = setting("savp", "which losses train: savp (VAE + GAN), vae (L1 + KL), "
                                                             "gan (L1 + GAN on prior samples)")
    ngf: int = setting(32, "generator width (encoder-decoder levels are ngf x 1, 2, 4, 8, 8)", COUNT)
    nef: int = setting(64, "posterior encoder width (64 / 128 / 256 at the default)", COUNT)
    ndf: int = setting(32, "video discriminator width", COUNT)
    nz: int = setting(32, "latent code size per step (KTH 32; the reference's default, BAIR's, 8)", COUNT)
    num_transformed_images: int = setting(4, "CDNA kernels (transformed copies of the current frame)", COUNT)
    kernel_size: int = setting(5, "CDNA kernel side", ODD)
    l1_weight: float = setting(100.0, "weight of the L1 loss of the posterior-z rollout", NON_NEGATIVE)
    kl_weight: float = setting(0.01, "weight of KL(q(z) || N(0, 1)), reached at kl_anneal_end", NON_NEGATIVE)
    kl_anneal_start: int = iterations(50_000, "KL weight 0 until here, then linear", NON_NEGATIVE)
    kl_anneal_end: int = iterations(100_000, "KL weight full from here", NON_NEGATIVE)
    gan_weight: float = setting(0.1, "LSGAN weight of the discriminator of prior-z rollouts (savp, gan)",
                                NON_NEGATIVE)
    vae_gan_weight: float = setting(0.1, "LSGAN weight of the discriminator of posterior-z rollouts (savp)",
                                    NON_NEGATIVE)
    gan_feature_cdist_weight: float = setting(0.0, "cosine distance of discriminator features, prior-z rollouts",
                                              NON_NEGATIVE)
    vae_gan_feature_cdist_weight: float = setting(10.0, "cosine distance of discriminator features, posterior-z "
                                                        "rollouts", NON_NEGATIVE)
    clip_length: int = setting(10, "frames the video discriminators see (at most the T - 1 predicted)", at_least(4))
    schedule_sampling_k: float = setting(900.0, "inverse-sigmoid scheduled sampling: ground truth with probability "
                                                "k / (k + exp(iteration / k)), none below 0.001", POSITIVE)
    batch_size: int = 16
    lr: float = 2e-4
    adam_beta1: float = 0.5


def level_specs(min_side: int, ngf: int) -> tuple[list[tuple[int, bool]], list[tuple[int, bool]]]:
    """(width, has conv-LSTM) of the encoder and of the decoder levels by the frame's smaller side
    (savp_model.py SAVPCell.__init__)."""
    if min_side >= 256:
        return ([(ngf, False), (ngf * 2, False), (ngf * 4, True), (ngf * 8, True), (ngf * 8, True)],
                [(ngf * 8, True), (ngf * 4, True), (ngf * 2, False), (ngf, False), (ngf, False)])
    if min_side >= 128:
        return ([(ngf, False), (ngf * 2, True), (ngf * 4, True), (ngf * 8, True)],
                [(ngf * 8, True), (ngf * 4, True), (ngf * 2, False), (ngf, False)])
    if min_side >= 64:
        return [(ngf, True), (ngf * 2, True), (ngf * 4, True)], [(ngf * 2, True), (ngf, True), (ngf, False)]
    if min_side >= 32:
        return [(ngf, True), (ngf * 2, True)], [(ngf, True), (ngf, False)]
    raise UserError(f"savp: frames need a smaller side of at least 32 pixels, got {min_side}")


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, eps=NORM_EPS, affine=True)


def tile(x: Tensor, z: Tensor) -> Tensor:
    """x with z [B, nz] tiled over its positions as extra channels (the reference's tile_concat)."""
    return torch.cat([x, z[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)


class ConvPool(nn.Module):
    """ops.conv_pool2d: a 'same' convolution, then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.conv(x), 2)


class UpConv(nn.Module):
    """ops.upsample_conv2d: bilinear x2 upsampling (a transposed convolution with the fixed kernel [1, 3, 3, 1] / 4
    per axis) then a 3x3 convolution, which the reference fuses into one transposed convolution. Fused, the 3x3 taps
    at the border read the upsampling's values outside the frame, not zeros: the upsampling is run 'valid' (2H + 2
    rows) and the convolution unpadded, which is the same."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
        self.register_buffer("bilinear", (taps[:, None] * taps[None, :])[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        kernel = self.bilinear.to(x.dtype).expand(x.shape[1], 1, 4, 4)
        return self.conv(F.conv_transpose2d(x, kernel, stride=2, groups=x.shape[1]))


class ConvLSTMCell(nn.Module):
    """rnn_ops.BasicConv2DLSTMCell with instance norm: 5x5 gates (i, j, f, o) without bias, normalised together,
    forget bias 1, the new cell normalised."""

    def __init__(self, cin: int, hidden: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(cin + hidden, 4 * hidden, 5, padding=2, bias=False)
        self.gates_norm = instance_norm(4 * hidden)
        self.cell_norm = instance_norm(hidden)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        c, h = state
        i, j, f, o = self.gates_norm(self.gates(torch.cat([x, h], 1))).chunk(4, 1)
        c = self.cell_norm(c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j))
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, (c, h)


class LSTMCell(nn.Module):
    """tf.nn.rnn_cell.LSTMCell: one kernel over [x, h] with one bias (torch's LSTMCell has two), forget bias 1."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * units, 4 * units)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        c, h = state
        i, j, f, o = self.linear(torch.cat([x, h], 1)).chunk(4, 1)
        c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, (c, h)


class Level(nn.Module):
    """One encoder or decoder level: resampling convolution (z tiled into its input) + IN + ReLU, then optionally a
    conv-LSTM (z tiled into its input too)."""

    def __init__(self, resample: nn.Module, width: int, nz: int, recurrent: bool) -> None:
        super().__init__()
        self.resample, self.norm = resample, instance_norm(width)
        self.lstm = ConvLSTMCell(width + nz, width) if recurrent else None

    def forward(self, x: Tensor, z: Tensor, state: tuple[Tensor, Tensor] | None
                ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        h = torch.relu(self.norm(self.resample(tile(x, z))))
        if self.lstm is None:
            return h, None
        return self.lstm(tile(h, z), state)


def conv_norm_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), instance_norm(cout), nn.ReLU())


def symmetric_pad(x: Tensor, p: int) -> Tensor:
    """TF's SYMMETRIC padding: mirrored including the edge row (torch's 'reflect' leaves it out)."""
    x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], -2)
    return torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], -1)


def apply_cdna(image: Tensor, kernels: Tensor) -> Tensor:
    """Each sequence's frame [B, C, H, W] correlated with its own kernels [B, K, k, k], the same for every channel:
    [B, K, C, H, W]."""
    b, c, h, w = image.shape
    k = kernels.shape[-1]
    padded = symmetric_pad(image, k // 2).transpose(0, 1)  # channels as the batch, sequences as groups
    out = F.conv2d(padded, kernels.reshape(-1, 1, k, k), groups=b)
    return out.view(c, b, -1, h, w).permute(1, 2, 0, 3, 4)


class VideoDiscriminator(nn.Module):
    """networks.video_sn_discriminator: seven spectral-normalised 3D convolutions (padding 1, leaky ReLU 0.1) and a
    spectral-normalised dense layer; returns (logits [B, 1], the seven feature maps)."""

    def __init__(self, channels: int, ndf: int, frames: int, height: int, width: int) -> None:
        super().__init__()
        specs = [(channels, ndf, 3, 1), (ndf, 2 * ndf, 4, (1, 2, 2)), (2 * ndf, 2 * ndf, 3, 1),
                 (2 * ndf, 4 * ndf, 4, (1, 2, 2)), (4 * ndf, 4 * ndf, 3, 1), (4 * ndf, 8 * ndf, 4, 2),
                 (8 * ndf, 8 * ndf, 3, 1)]
        self.convs = nn.ModuleList(spectral_norm(nn.Conv3d(cin, cout, k, stride, padding=1))
                                   for cin, cout, k, stride in specs)
        size = [frames, height, width]
        for _, _, k, stride in specs:
            strides = stride if isinstance(stride, tuple) else (stride,) * 3
            size = [(n + 2 - k) // s + 1 for n, s in zip(size, strides)]
        self.fc = spectral_norm(nn.Linear(8 * ndf * math.prod(size), 1))

    def forward(self, clip: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = clip.transpose(1, 2)  # [B, C, T, H, W]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            features.append(x)
        return self.fc(x.flatten(1)), features


def lsgan(logits: Tensor, real: bool) -> Tensor:
    return (logits.float() - float(real)).pow(2).mean()


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """losses.cosine_distance over the channels (dim 1): half the mean squared distance of unit vectors."""
    a, b = F.normalize(a.float(), dim=1, eps=1e-10), F.normalize(b.float(), dim=1, eps=1e-10)
    return (a - b).pow(2).sum(1).mean() / 2


def kl_to_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """losses.kl_loss against N(0, 1): summed over z, averaged over steps and sequences."""
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(-1).mean()


# The reference's hparams files (hparams/kth/ours_*/model_hparams.json), KTH's sequences 64x64 grey, 10 -> 10; the
# 300k iterations are base_model.py's default max_steps.
KTH = {
    "savp": dict(variant="savp", max_iterations=300_000, batch_size=16, lr=2e-4, adam_beta1=0.5, l1_weight=100.0,
                 kl_weight=0.01, gan_weight=0.1, vae_gan_weight=0.1, vae_gan_feature_cdist_weight=10.0,
                 gan_feature_cdist_weight=0.0, nz=32),
    "vae": dict(variant="vae", max_iterations=300_000, batch_size=32, lr=1e-3, adam_beta1=0.9, l1_weight=1.0,
                kl_weight=1e-5, gan_weight=0.0, vae_gan_weight=0.0, vae_gan_feature_cdist_weight=0.0,
                gan_feature_cdist_weight=0.0, nz=32),
    "gan": dict(variant="gan", max_iterations=300_000, batch_size=16, lr=2e-4, adam_beta1=0.5, l1_weight=100.0,
                kl_weight=0.0, gan_weight=0.1, vae_gan_weight=0.0, vae_gan_feature_cdist_weight=0.0,
                gan_feature_cdist_weight=10.0, nz=32),
}
# CPU-sized (a quick run in minutes on one thread): a quarter of the widths, nz 4, batch 4, clips of the context and
# 2 frames (the discriminators see 6 of their 11 predicted frames), scheduled sampling over ~300 iterations (k 30:
# ground truth with probability 0.5 at iteration ~100), the KL annealed over the first 100 iterations; --quick
# trains 90 iterations, which keeps a quick run within minutes on one loaded core. benchmarks/quick_zoo.py: validation
# loss (100 x L1 + 0.01 x KL of the posterior-z closed loop) 8.51 at iteration 15, 4.82 at 90; t+1 PSNR of one
# sample 17.42 dB on the test clips scored (copy-last 14.72).
MOVING_DIGITS = dict(KTH["savp"], ngf=8, nef=16, ndf=8, nz=4, batch_size=4, lr=1e-3, clip_length=6,
                     schedule_sampling_k=30.0, kl_anneal_start=0, kl_anneal_end=100, max_iterations=300,
                     quick_iterations=90, val_every=50, train_horizon=2)


@register_predictor("savp")
class SAVP(StochasticPredictor):
    """SAVP (Lee et al. 2018): CDNA conv-LSTM generator with a learned posterior over z, VAE and video-GAN losses."""

    Config = SAVPConfig
    presets = {
        "kth": KTH["savp"], "kth-vae": KTH["vae"], "kth-gan": KTH["gan"],
        # hparams/bair_action_free/ours_savp/model_hparams.json (nz at the model default, 8; KL 1.0).
        "bair": dict(KTH["savp"], nz=8, kl_weight=1.0),
        # STIP's datasets [unverified]: STIP's paper gives no SAVP settings; the reference's KTH SAVP hparams, as
        # STIP trains its own model there: batch 1 and the iterations of STIPHR's configs/<dataset>_configs.py.
        **stip_dataset_presets(dict(KTH["savp"], batch_size=1)),
        "moving-digits": MOVING_DIGITS,
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(MOVING_DIGITS, ngf=4, nef=4, ndf=2, nz=2, clip_length=4, lr=3e-3,
                                  schedule_sampling_k=5.0, kl_anneal_end=10, train_horizon=0)

    def __init__(self, spec: VideoSpec, config: SAVPConfig) -> None:
        super().__init__(spec, config)
        cfg, c = config, spec.channels
        encoder, decoder = level_specs(min(spec.height, spec.width), cfg.ngf)
        unit = 2 ** len(encoder)
        self.padded = (-(-spec.height // unit) * unit, -(-spec.width // unit) * unit)
        nz = cfg.nz
        self.encoder = nn.ModuleList()
        cin = 2 * c
        for i, (width, recurrent) in enumerate(encoder):
            self.encoder.append(Level(ConvPool(cin + nz, width, 5 if i == 0 else 3), width, nz, recurrent))
            cin = width
        self.decoder = nn.ModuleList()
        for i, (width, recurrent) in enumerate(decoder):
            skip = encoder[len(encoder) - i - 1][0] if i else 0
            self.decoder.append(Level(UpConv(cin + skip + nz, width), width, nz, recurrent))
            cin = width
        smallest = (self.padded[0] // unit) * (self.padded[1] // unit) * encoder[-1][0]
        self.cdna = nn.Linear(smallest, cfg.kernel_size ** 2 * cfg.num_transformed_images)
        self.scratch = nn.Sequential(conv_norm_relu(cin, cfg.ngf), nn.Conv2d(cfg.ngf, c, 3, padding=1), nn.Sigmoid())
        candidates = cfg.num_transformed_images + 3  # CDNA copies, previous frame, first frame, scratch frame
        self.mask_features = conv_norm_relu(cin, cfg.ngf)
        self.masks = nn.Conv2d(cfg.ngf + candidates * c, candidates, 3, padding=1)
        self.rnn_z = LSTMCell(nz)
        nef = cfg.nef
        self.posterior = nn.Sequential(
            nn.Conv2d(2 * c, nef, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(nef, 2 * nef, 4, 2, 1), instance_norm(2 * nef), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * nef, 4 * nef, 4, 2, 1), instance_norm(4 * nef), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.z_mu, self.z_log_var = nn.Linear(4 * nef, nz), nn.Linear(4 * nef, nz)
        identity = torch.zeros(cfg.kernel_size, cfg.kernel_size)
        identity[cfg.kernel_size // 2, cfg.kernel_size // 2] = 1.0
        self.register_buffer("identity_kernel", identity, persistent=False)
        # The discriminators' clips: at most the T - 1 frames a training clip's rollout predicts.
        frames = min(cfg.clip_length, spec.context + (cfg.train_horizon or spec.future) - 1)
        if frames < 4:
            raise UserError(f"savp: the video discriminator needs clips of at least 4 frames; a training clip of "
                            f"{frames + 1} frames gives {frames}")
        self.clip_frames = frames
        gan, vae_gan = self._discriminator_weights()
        d_args = (c, cfg.ndf, frames, spec.height, spec.width)
        self.discriminator = VideoDiscriminator(*d_args) if gan else None
        self.vae_discriminator = VideoDiscriminator(*d_args) if vae_gan else None

    def _discriminator_weights(self) -> tuple[float, float]:
        """The GAN weights the variant keeps: (prior-z discriminator, posterior-z discriminator)."""
        cfg = self.config
        return (cfg.gan_weight if cfg.variant != "vae" else 0.0,
                cfg.vae_gan_weight if cfg.variant == "savp" else 0.0)

    # --- the generator ------------------------------------------------------------------------------------
    def init_state(self, batch: int, like: Tensor) -> dict[str, Any]:
        cells = []
        h, w = self.padded
        for level in [*self.encoder, *self.decoder]:
            if isinstance(level.resample, ConvPool):
                h, w = h // 2, w // 2
            else:
                h, w = h * 2, w * 2
            if level.lstm is not None:
                zeros = like.new_zeros(batch, level.norm.num_features, h, w)
                cells.append((zeros, zeros))
        z = like.new_zeros(batch, self.config.nz)
        return {"cells": cells, "z": (z, z)}

    def step(self, image: Tensor, first: Tensor, z: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """frame t + 1 [B, C, H', W'] from frame t, the first frame and z_t (padded frames)."""
        z, z_state = self.rnn_z(z, state["z"])
        cells, new_cells = iter(state["cells"]), []
        outputs = []
        x = torch.cat([image, first], 1)
        for level in self.encoder:
            x, cell = level(x, z, next(cells) if level.lstm is not None else None)
            new_cells += [cell] if cell is not None else []
            outputs.append(x)
        for i, level in enumerate(self.decoder):
            if i:
                x = torch.cat([x, outputs[len(self.encoder) - i - 1]], 1)
            x, cell = level(x, z, next(cells) if level.lstm is not None else None)
            new_cells += [cell] if cell is not None else []
        k, n = self.config.kernel_size, self.config.num_transformed_images
        kernels = self.cdna(outputs[-1].flatten(1)).view(-1, k, k, n).permute(0, 3, 1, 2) + self.identity_kernel
        kernels = torch.relu(kernels - RELU_SHIFT) + RELU_SHIFT
        kernels = kernels / kernels.sum((2, 3), keepdim=True)
        candidates = [*apply_cdna(image, kernels).unbind(1), image, first, self.scratch(x)]
        masks = torch.softmax(self.masks(torch.cat([self.mask_features(x), *candidates], 1)), 1)
        frame = sum(candidate * masks[:, i: i + 1] for i, candidate in enumerate(candidates))
        return frame, {"cells": new_cells, "z": z_state}

    def _pad(self, frames: Tensor) -> Tensor:
        bottom, right = self.padded[0] - frames.shape[-2], self.padded[1] - frames.shape[-1]
        if not (bottom or right):
            return frames
        return F.pad(frames.flatten(0, 1), (0, right, 0, bottom), mode="replicate").unflatten(0, frames.shape[:2])

    def posterior_z(self, frames: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(z, mean, log variance) [B, T-1, nz] of each transition of frames [B, T, C, H, W]; noise [B, T-1, nz]."""
        pairs = torch.cat([frames[:, :-1], frames[:, 1:]], 2)
        h = self.posterior(pairs.flatten(0, 1))
        mu = self.z_mu(h).view(*pairs.shape[:2], -1)
        log_var = self.z_log_var(h).view(*pairs.shape[:2], -1).clamp(-10, 10)
        return mu + (0.5 * log_var).exp() * noise, mu, log_var

    def rollout(self, frames: Tensor, zs: Tensor, context: int, truth: Tensor | None = None) -> Tensor:
        """Frames 1 .. S of the padded `frames` [B, >= context, C, H, W] from zs [B, S, nz]: ground truth in for the
        `context` first steps (and where `truth` [B, S] says so), else the previous prediction."""
        state = self.init_state(frames.shape[0], frames)
        first, predicted, previous = frames[:, 0], [], frames[:, 0]
        for t in range(zs.shape[1]):
            if t < context:
                image = frames[:, t]
            elif truth is not None:
                image = torch.where(truth[:, t, None, None, None], frames[:, t], previous)
            else:
                image = previous
            previous, state = self.step(image, first, zs[:, t], state)
            predicted.append(previous)
        return torch.stack(predicted, 1)[..., : self.spec.height, : self.spec.width]

    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        b, tc = context.shape[:2]
        n = 1 if samples is None else samples
        frames = self._pad(context).repeat_interleave(n, 0)
        steps = tc - 1 + future

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=generator, device=context.device, dtype=context.dtype)

        # The context's transitions take the posterior's z (learn_prior=false), the future ones the prior's.
        observed = self.posterior_z(frames, normal(b * n, tc - 1, self.config.nz))[0]
        zs = torch.cat([observed, normal(b * n, steps - (tc - 1), self.config.nz)], 1)
        out = self.rollout(frames, zs, tc)[:, tc - 1:]
        return out if samples is None else out.view(b, n, *out.shape[1:])

    # --- training -----------------------------------------------------------------------------------------
    def _kl_weight(self, iteration: int) -> float:
        cfg = self.config
        if cfg.variant == "gan":
            return 0.0
        if iteration >= cfg.kl_anneal_end:
            return cfg.kl_weight
        span = cfg.kl_anneal_end - cfg.kl_anneal_start
        return cfg.kl_weight * min(max((iteration - cfg.kl_anneal_start) / span, 0.0), 1.0) if span > 0 else 0.0

    def _ground_truth(self, batch: int, steps: int, iteration: int, device: torch.device) -> Tensor | None:
        """Scheduled sampling's choices [B, steps] (ground truth in where True), or None once the probability
        is below 0.001 (savp_model.py lines 309-334)."""
        k = self.config.schedule_sampling_k
        probability = k / (k + math.exp(min(iteration / k, 700.0)))
        if probability < 0.001:
            return None
        return torch.rand(batch, steps, device=device) < probability

    def _clip(self, frames: Tensor) -> Tensor:
        """A random window of clip_frames frames per sequence (discriminator_given_video_fn)."""
        b, t = frames.shape[:2]
        start = torch.randint(0, t - self.clip_frames + 1, (b,), device=frames.device)
        index = start[:, None] + torch.arange(self.clip_frames, device=frames.device)
        return frames[torch.arange(b, device=frames.device)[:, None], index]

    def _generate(self, clip: Tensor, iteration: int | None) -> dict[str, Tensor]:
        """The posterior-z and prior-z rollouts of a training clip, with scheduled sampling when `iteration` is
        given (training), closed loop after the context otherwise."""
        b, t = clip.shape[:2]
        tc, nz = self.spec.context, self.config.nz
        frames = self._pad(clip)
        z_post, mu, log_var = self.posterior_z(frames, torch.randn(b, t - 1, nz, device=clip.device, dtype=clip.dtype))

        def truth() -> Tensor | None:
            return None if iteration is None else self._ground_truth(b, t - 1, iteration, clip.device)

        out = {"posterior": self.rollout(frames, z_post, tc, truth()), "mu": mu, "log_var": log_var}
        if self.config.variant != "vae" and iteration is not None:
            prior = torch.randn(b, t - tc, nz, device=clip.device, dtype=clip.dtype)
            out["prior"] = self.rollout(frames, torch.cat([z_post[:, : tc - 1], prior], 1), tc, truth())
        return out

    def _training_clip(self, clip: Tensor) -> Tensor:
        horizon = self.config.train_horizon
        return clip[:, : self.spec.context + horizon] if horizon else clip

    def validation_loss(self, clip: Tensor) -> Tensor:
        # The VAE objective of the posterior-z rollout, closed loop after the context, at the full KL weight.
        with torch.no_grad():
            out = self._generate(clip, None)
            kl = kl_to_standard_normal(out["mu"], out["log_var"]) if self.config.variant != "gan" else 0.0
            return (self.config.l1_weight * F.l1_loss(out["posterior"], clip[:, 1:])
                    + self.config.kl_weight * kl)

    def training_step(self, clip: Tensor, trainer: Trainer) -> dict[str, Tensor]:
        cfg = self.config
        clip = self._training_clip(clip)
        real = clip[:, 1:]
        out = self._generate(clip, trainer.iteration)
        gan_weight, vae_gan_weight = self._discriminator_weights()
        pairs = [(self.discriminator, out.get("prior"), gan_weight, cfg.gan_feature_cdist_weight),
                 (self.vae_discriminator, out["posterior"], vae_gan_weight, cfg.vae_gan_feature_cdist_weight)]
        pairs = [p for p in pairs if p[0] is not None]
        logs: dict[str, Tensor] = {}
        if pairs:  # the discriminators first, on one loss and one optimizer
            d_loss = sum(weight * (lsgan(d(self._clip(real))[0], True) + lsgan(d(self._clip(fake.detach()))[0], False))
                         for d, fake, weight, _ in pairs)
            trainer.backward(d_loss)
            trainer.step("discriminator")
            logs["d_loss"] = d_loss.detach()

        l1 = F.l1_loss(out["posterior"], real)
        kl = kl_to_standard_normal(out["mu"], out["log_var"])
        loss = cfg.l1_weight * l1 + self._kl_weight(trainer.iteration) * kl
        for d, fake, weight, cdist_weight in pairs:  # against the updated discriminators, frozen for this pass
            d.requires_grad_(False)
            try:
                logits, fake_features = d(self._clip(fake))
                adversarial = lsgan(logits, True)
                loss = loss + weight * adversarial
                if cdist_weight:
                    with torch.no_grad():
                        real_features = d(self._clip(real))[1]
                    loss = loss + cdist_weight * sum(map(cosine_distance, fake_features, real_features))
            finally:
                d.requires_grad_(True)
        trainer.backward(loss)
        trainer.step("generator")
        return {"loss": loss.detach(), "l1": l1.detach(), "kl": kl.detach(), **logs}

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        outside = {id(p) for m in self.modules_outside_prediction() for p in m.parameters()}
        groups = {"generator": ([p for p in self.parameters() if id(p) not in outside], {})}
        if outside:  # the reference's discriminator optimizer has the generator's settings
            groups["discriminator"] = ([p for m in self.modules_outside_prediction() for p in m.parameters()], {})
        return groups

    def modules_outside_prediction(self) -> list[nn.Module]:
        return [d for d in (self.discriminator, self.vae_discriminator) if d is not None]
