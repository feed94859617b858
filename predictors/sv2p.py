"""SV2P (Babaeizadeh, Finn, Erhan, Campbell and Levine, ICLR 2018, "Stochastic Variational Video Prediction"): Finn
et al.'s CDNA network (conv LSTMs that predict, for the next frame, convolution kernels applied to the current one,
a frame of new pixels, and masks that compose them) conditioned on a latent z, drawn from an inference network
q(z | x_0..T) that reads the whole clip while training and from N(0, 1) at test; trained on the ELBO with a
three-phase schedule.

Follows tensor2tensor's SV2P (tensorflow/tensor2tensor, commit bafdc1b, TF 1.x only: models/video/sv2p.py
`NextFrameSv2p`, `bottom_part_tower` and `construct_predictive_tower`; models/video/sv2p_params.py `next_frame_sv2p`;
models/video/base_vae.py; models/video/base.py `__process`; layers/common_video.py `conv_latent_tower`,
`cdna_transformation`, `beta_schedule`, `conv_lstm_2d`; layers/common_layers.py `cyclegan_upsample`), which the
paper's authors wrote (the paper's code link points there). Read, not run:
- Predictive tower, per step on the current frame x_t (TF "SAME" padding throughout, the 5x5 conv LSTMs are
  tf.contrib's ConvLSTMCell: one convolution of [input, h] to the four gates i, g, f, o, forget bias 1):
  5x5/2 conv 32 + ReLU, LN -> LSTM 32, LN -> LSTM 32, LN -> 3x3/2 conv + ReLU (`enc1`) -> LSTM 64, LN -> LSTM 64, LN
  -> 3x3/2 conv + ReLU, z concatenated -> 1x1 conv 64 + ReLU -> LSTM 128, LN (`hidden5`, at 1/8) -> 3x3/2 transposed
  conv + ReLU -> LSTM 64, LN, enc1 concatenated -> transposed conv + ReLU -> LSTM 32, LN, enc0 concatenated ->
  transposed conv + ReLU, LN (`enc6`, full size). LN is tf.contrib's layer_norm: statistics over channels and
  positions, a scale and shift per channel, epsilon 1e-12. The transposed convolutions are 3x3, stride 2, "VALID",
  their first row and column cut (`cyclegan_upsample`'s conv2d_transpose).
- Head: a new frame sigmoid(1x1 conv(enc6)); `num_masks` CDNA kernels of `dna_kernel_size`^2 taps from a dense layer
  on the flattened hidden5, each relu(k - relu_shift) + relu_shift and normalised to sum 1, each applied to every
  channel of x_t (zero padded); softmax masks from a 1x1 conv of enc6 (num_masks + 1 channels). The next frame is
  mask_0 * x_t + mask_1 * new frame + sum_i mask_(i+1) * CDNA_i(x_t). As in the reference (and Finn et al.'s
  prediction_model.py, whose composition it copies) the masks are one fewer than the candidates: the last CDNA
  kernel is computed (its weights are counted) but never used; here it is not applied.
- Latent: one z per clip (`multi_latent` False), `latent_channels` maps at 1/8 of the frame, concatenated at 1/8.
  The inference network reads every frame of the training clip stacked as channels: 3x3/2 conv 32 + ReLU, LN,
  3x3/2 conv 64 + ReLU, LN, 3x3 conv 64 + ReLU, LN, then 3x3/2 convs to the mean and to the log-variance
  (ReLU, + `latent_std_min`, a floor of -5 on log sigma^2). At test z ~ N(0, 1).
- Training (`training_loss`), every frame but the last fed in turn, predicting the next: context frames as they
  are, later ones by tensor2tensor's "count" scheduled sampling (round(B k / (k + exp(iteration / k))) of the
  batch's sequences, picked at random every step, read the true frame, the others their prediction).
  Loss: the MSE of the predicted future frames, plus (`internal_loss`) the MSE of the predicted context frames
  1..Tc-1, plus beta x KL(q || N(0, 1)) summed over z and averaged over the batch, divided by the T - 1 steps.
  The three phases: for `num_iterations_1st_stage` iterations z ~ N(0, 1) (the inference network unused), then
  for `num_iterations_2nd_stage` the posterior with beta = 0, then beta = `latent_loss_multiplier` ("constant",
  the reference's default) or rising linearly to it at `anneal_end` ("linear", the paper's annealing).
- Test (`forward`): the context frames fed in turn (their predictions dropped), then closed loop from the last,
  every sample its own z from the evaluation's generator (`samples=N`: N draws per sequence).
- Validation (`validation_loss`, what checkpoints are selected on, as cwvae's negative ELBO): the phase-3
  objective on whole validation clips: z from the posterior, closed loop after the context (the end of scheduled
  sampling), beta at its final value, so that every checkpoint is scored on the same objective.

Departures (none changes the architecture or its parameter count):
- Weights keep PyTorch's default initialisation (the reference: uniform unit scaling, gain 1.3), and Adam's beta2
  is vpbench's 0.999 (the reference: 0.997; beta1 0.85 and epsilon 1e-6 are set as there).
- The flattened hidden5 is read in PyTorch's channel-major order (the reference: channels last): a permutation of
  the dense layer's inputs, the same function class.
- Frames must be divisible by 8 (the reference pads odd sizes: `make_even_size`); the latent's map must match the
  tower's at 1/8, which the reference also requires.
- The reference's reward and action towers (for its RL problems) are left out: vpbench's clips have neither.

Parameter count: at the reference's `next_frame_sv2p` setting (64x64 RGB, 1 -> 3 frames: the inference network
reads 12 channels), 8,371,818 parameters, 60,386 of them in the inference network, which prediction does not use
and `bench profile` leaves out (8,311,432); tests/test_sv2p.py counts the reference's layers by hand, from the code
named above, and checks both. tensor2tensor's SV2P needs TensorFlow 1.x's tf.contrib (utils/contrib.py imports
tensorflow.contrib.rnn for the ConvLSTMCell), whose last release, 1.15, has no wheels for this project's Python 3.11,
so the reference was not run and its outputs could not be compared; the tests check the parts against independent
computations instead (the CDNA transformation against a loop over taps, TF's "SAME" padding, the KL against
torch.distributions, the schedules against their formulas). No published count exists to compare with.

The CDNA kernels' dense layer reads all of hidden5 (1/8 of the frame x 128 channels): its weights grow with the
frame's area. At STIP's sizes (RGB): ucf-sports (512x512) 137,335,432 parameters, human36m (1024x1024) 530,551,432,
sjtu4k (2160x3840) 4,153,463,432: 15.4 GiB of float32 weights (four times that to train with Adam), which the
model refuses to build, in one line, where they take over half the memory available. FLOPs at sjtu4k (4 -> 4,
batch 1): 25.00T (25,002,838,425,600: fvcore's count at 72x128 times 900; every count follows the area, the dense
layer's too: 72x128 counts exactly three times 24x128, tests/test_sv2p.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, FINITE, NON_NEGATIVE, ODD, StochasticConfig, StochasticPredictor, UserError, VideoSpec,
                     available_bytes, iterations, register_predictor, setting, tiny_preset)

from ._stip_schedules import stip_dataset_presets

LN_EPSILON = 1e-12  # tf.contrib.layers.layer_norm's variance_epsilon
FORGET_BIAS = 1.0  # tf.contrib.rnn.ConvLSTMCell's default
LSTM_KERNEL = 5  # common_video.conv_lstm_2d's default
SCALE = 8  # the tower's three stride-2 convolutions, and the inference network's


@dataclass
class SV2PConfig(StochasticConfig):
    # tensor2tensor's hparam names (sv2p_params.py, basic_stochastic.py), so that its settings read across.
    lstm_size: tuple[int, ...] = setting((32, 32, 64, 64, 128, 64, 32), "the seven conv LSTMs' widths, bottom to "
                                                                        "top (tinyify's array)", COUNT)
    conv_size: int = setting(32, "the first convolution's width", COUNT)
    latent_tower_size: tuple[int, ...] = setting((32, 64, 64), "the inference network's three convolutions", COUNT)
    num_masks: int = setting(10, "CDNA kernels (the masks: one more, for the current frame)", COUNT)
    dna_kernel_size: int = setting(5, "CDNA kernel size", ODD)
    relu_shift: float = setting(1e-12, "kernels are relu(k - shift) + shift before normalising", NON_NEGATIVE)
    latent_channels: int = setting(1, "channels of z, a map at 1/8 of the frame", COUNT)
    latent_std_min: float = setting(-5.0, "the floor of the posterior's log-variance", FINITE)
    num_iterations_1st_stage: int = iterations(15_000, "phase 1: z ~ N(0, 1), the inference network unused",
                                               NON_NEGATIVE)
    num_iterations_2nd_stage: int = iterations(15_000, "phase 2: z from the posterior, KL weight 0", NON_NEGATIVE)
    latent_loss_multiplier: float = setting(1e-3, "beta: the KL's final weight", NON_NEGATIVE)
    latent_loss_multiplier_schedule: Literal["constant", "linear"] = setting(
        "constant", "phase 3: beta from the end of phase 2 (constant), or rising linearly from 0 to it at anneal_end")
    anneal_end: int = iterations(50_000, "linear: the iteration beta reaches its final value")
    scheduled_sampling_k: int = iterations(900, "after the context, a share k / (k + exp(iteration / k)) of the "
                                                "batch reads true frames, the rest their predictions")
    internal_loss: bool = setting(True, "also train on the predictions of context frames 1..Tc-1")
    # sv2p_params.py next_frame_sv2p: true_adam at a constant 1e-3, batch 16; common_hparams.py: beta1 0.85, epsilon
    # 1e-6; basic_deterministic_params.py: clip_grad_norm 1.0.
    batch_size: int = 16
    lr: float = 1e-3
    adam_beta1: float = 0.85
    adam_eps: float = 1e-6
    grad_clip: float = 1.0
    eval_samples: int = 1


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) of one dimension: the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME" (zeros, the odd pixel at the end)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_padding(x.shape[2], k, s)
        left, right = _same_padding(x.shape[3], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class ChannelLayerNorm(nn.Module):
    """tf.contrib.layers.layer_norm on [B, C, H, W]: normalised over C, H and W, a scale and shift per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x, x.shape[1:], eps=LN_EPSILON)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


LSTMState = tuple[Tensor, Tensor]  # (c, h)


class ConvLSTMCell(nn.Module):
    """tf.contrib.rnn.ConvLSTMCell: gates i, g, f, o from one convolution of [x, h]; c' = s(f + 1) c + s(i) tanh(g),
    h' = tanh(c') s(o)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = SameConv2d(in_channels + out_channels, 4 * out_channels, LSTM_KERNEL)

    def forward(self, x: Tensor, state: LSTMState | None) -> tuple[Tensor, LSTMState]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.out_channels, *x.shape[2:])
            state = zeros, zeros
        c, h = state
        i, g, f, o = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f + FORGET_BIAS) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, (c, h)


class Upsample(nn.ConvTranspose2d):
    """`cyclegan_upsample` (conv2d_transpose): 3x3, stride 2, "VALID", ReLU, the first row and column cut: 2x."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))[:, :, 1:, 1:]


def cdna_transform(image: Tensor, kernels: Tensor) -> Tensor:
    """Each sequence's kernels [B, M, k, k] correlated with every channel of its image [B, C, H, W], zero padded:
    [B, M, C, H, W]. One grouped convolution: the channels as the batch, the sequences as groups."""
    b, c, h, w = image.shape
    m, k = kernels.shape[1], kernels.shape[-1]
    out = F.conv2d(image.transpose(0, 1), kernels.reshape(b * m, 1, k, k), padding=k // 2, groups=b)
    return out.view(c, b, m, h, w).permute(1, 2, 0, 3, 4)


class PredictiveTower(nn.Module):
    """The CDNA network of one step: (frame x_t, z, states) -> (frame x_t+1, states)."""

    def __init__(self, spec: VideoSpec, config: SV2PConfig) -> None:
        super().__init__()
        c, s, conv = spec.channels, config.lstm_size, config.conv_size
        self.num_masks, self.kernel, self.relu_shift = config.num_masks, config.dna_kernel_size, config.relu_shift
        self.enc0 = SameConv2d(c, conv, 5, 2)
        self.norm1 = ChannelLayerNorm(conv)
        self.lstm1, self.norm2 = ConvLSTMCell(conv, s[0]), ChannelLayerNorm(s[0])
        self.lstm2, self.norm3 = ConvLSTMCell(s[0], s[1]), ChannelLayerNorm(s[1])
        self.enc1 = SameConv2d(s[1], s[1], 3, 2)
        self.lstm3, self.norm4 = ConvLSTMCell(s[1], s[2]), ChannelLayerNorm(s[2])
        self.lstm4, self.norm5 = ConvLSTMCell(s[2], s[3]), ChannelLayerNorm(s[3])
        self.enc2 = SameConv2d(s[3], s[3], 3, 2)
        self.enc3 = SameConv2d(s[3] + config.latent_channels, s[3], 1)
        self.lstm5, self.norm6 = ConvLSTMCell(s[3], s[4]), ChannelLayerNorm(s[4])
        self.up1 = Upsample(s[4])
        self.lstm6, self.norm7 = ConvLSTMCell(s[4], s[5]), ChannelLayerNorm(s[5])
        self.up2 = Upsample(s[5] + s[1])
        self.lstm7, self.norm8 = ConvLSTMCell(s[5] + s[1], s[6]), ChannelLayerNorm(s[6])
        self.up3 = Upsample(s[6] + conv)
        self.norm9 = ChannelLayerNorm(s[6] + conv)
        self.new_frame = nn.Conv2d(s[6] + conv, c, 1)  # the reference's 1x1 conv2d_transpose "convt4"
        self.cdna_params = nn.Linear(s[4] * (spec.height // SCALE) * (spec.width // SCALE),
                                     config.dna_kernel_size ** 2 * config.num_masks)
        self.masks = nn.Conv2d(s[6] + conv, config.num_masks + 1, 1)

    def kernels(self, hidden5: Tensor) -> Tensor:
        """The CDNA kernels [B, num_masks, k, k], each non-negative and summing to 1."""
        k = self.kernel
        raw = self.cdna_params(hidden5.flatten(1)).view(-1, k, k, self.num_masks).permute(0, 3, 1, 2)
        raw = F.relu(raw - self.relu_shift) + self.relu_shift
        return raw / raw.sum((2, 3), keepdim=True)

    def forward(self, image: Tensor, z: Tensor, states: list[LSTMState | None]) -> tuple[Tensor, list[LSTMState]]:
        states = list(states)

        def lstm(index: int, cell: ConvLSTMCell, norm: ChannelLayerNorm, x: Tensor) -> Tensor:
            h, states[index] = cell(x, states[index])
            return norm(h)

        enc0 = self.norm1(F.relu(self.enc0(image)))
        hidden2 = lstm(1, self.lstm2, self.norm3, lstm(0, self.lstm1, self.norm2, enc0))
        enc1 = F.relu(self.enc1(hidden2))
        hidden4 = lstm(3, self.lstm4, self.norm5, lstm(2, self.lstm3, self.norm4, enc1))
        enc2 = torch.cat([F.relu(self.enc2(hidden4)), z], 1)
        hidden5 = lstm(4, self.lstm5, self.norm6, F.relu(self.enc3(enc2)))
        hidden6 = torch.cat([lstm(5, self.lstm6, self.norm7, self.up1(hidden5)), enc1], 1)
        hidden7 = torch.cat([lstm(6, self.lstm7, self.norm8, self.up2(hidden6)), enc0], 1)
        enc6 = self.norm9(self.up3(hidden7))
        masks = torch.softmax(self.masks(enc6), 1)
        # The last kernel has no mask (see the module docstring): only the first num_masks - 1 are applied.
        moved = cdna_transform(image, self.kernels(hidden5)[:, : self.num_masks - 1])
        candidates = torch.cat([image[:, None], torch.sigmoid(self.new_frame(enc6))[:, None], moved], 1)
        return (masks[:, :, None] * candidates).sum(1), states


class LatentTower(nn.Module):
    """The inference network q(z | clip): (mean, log-variance) [B, latent_channels, H/8, W/8] of a clip's frames
    stacked as channels."""

    def __init__(self, in_channels: int, config: SV2PConfig) -> None:
        super().__init__()
        a, b, c = config.latent_tower_size
        self.convs = nn.ModuleList([SameConv2d(in_channels, a, 3, 2), SameConv2d(a, b, 3, 2), SameConv2d(b, c, 3)])
        self.norms = nn.ModuleList([ChannelLayerNorm(a), ChannelLayerNorm(b), ChannelLayerNorm(c)])
        self.mean = SameConv2d(c, config.latent_channels, 3, 2)
        self.log_var = SameConv2d(c, config.latent_channels, 3, 2)
        self.floor = config.latent_std_min

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        x = frames.flatten(1, 2)  # [B, T * C, H, W], frame after frame as tf.concat(tf.unstack(...)) stacks them
        for conv, norm in zip(self.convs, self.norms):
            x = norm(F.relu(conv(x)))
        return self.mean(x), F.relu(self.log_var(x)) + self.floor


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, exp(log_var)) || N(0, 1)) summed over a sequence's z, [B]."""
    return 0.5 * (log_var.exp() + mean ** 2 - 1.0 - log_var).flatten(1).sum(1)


# The paper's schedule is tensor2tensor's next_frame_sv2p (the class defaults); STIP (section IV) gives no SV2P
# settings, so its datasets [unverified] train the reference's model and schedule at STIP's batch 1 and iterations
# (STIPHR configs/<dataset>_configs.py, as stip's presets), phases and annealing at the reference's iterations.
STIP_DATASETS = stip_dataset_presets(dict(batch_size=1, val_every=5_000))


# The embedded synthetic set, CPU-sized: narrow LSTMs, 4 CDNA kernels, trained on the context and 4 frames; phases 1 and
# 2 take 100 iterations each, beta rises to 1e-3 at 300 of 600 (--quick: a third of each). Measured (quick, 200
# iterations, 1 thread, a loaded machine): the validation objective falls from 0.061 to 0.034; on 256 test clips,
# the mean of 4 samples, t+1 PSNR 18.00 dB (copy-last 14.72), t+10 14.06, mean PSNR 14.71 (best of 4: 15.13),
# SSIM 0.25: the closed loop blurs the digits towards the background within the quick schedule.
MOVING_DIGITS = dict(lstm_size=(8, 8, 16, 16, 32, 16, 8), conv_size=8, latent_tower_size=(8, 16, 16), num_masks=4,
                     batch_size=8, lr=2e-3, max_iterations=600, quick_iterations=200, val_every=100,
                     num_iterations_1st_stage=100, num_iterations_2nd_stage=100, latent_loss_multiplier_schedule="linear",
                     anneal_end=300, scheduled_sampling_k=40, train_horizon=4, eval_samples=4)


@register_predictor("sv2p")
class SV2P(StochasticPredictor):
    """SV2P (Babaeizadeh et al. 2018): a CDNA network conditioned on a latent from an inference network, ELBO."""

    Config = SV2PConfig
    presets = {
        **STIP_DATASETS,
        "moving-digits": MOVING_DIGITS,
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(MOVING_DIGITS, lstm_size=(4, 4, 4, 4, 8, 4, 4), conv_size=4,
                                  latent_tower_size=(4, 4, 4), num_masks=2, train_horizon=0, lr=5e-3,
                                  num_iterations_1st_stage=5, num_iterations_2nd_stage=5, anneal_end=20,
                                  scheduled_sampling_k=10)

    def __init__(self, spec: VideoSpec, config: SV2PConfig) -> None:
        super().__init__(spec, config)
        if len(config.lstm_size) != 7 or len(config.latent_tower_size) != 3:
            raise UserError(f"sv2p: lstm_size takes 7 widths ({len(config.lstm_size)} given) and latent_tower_size 3 "
                            f"({len(config.latent_tower_size)} given)")
        if spec.height % SCALE or spec.width % SCALE:
            raise UserError(f"sv2p: frames {spec.height}x{spec.width} must be divisible by {SCALE} (three stride-2 "
                            f"convolutions, and z's map at 1/{SCALE})")
        start = config.num_iterations_1st_stage + config.num_iterations_2nd_stage
        if config.latent_loss_multiplier_schedule == "linear" and config.anneal_end < start:
            raise UserError(f"sv2p: anneal_end={config.anneal_end} comes before the end of phase 2 (iteration {start})")
        self._check_memory(spec, config)
        # The inference network reads the frames of a training clip: the context and the frames trained on.
        self.latent_frames = spec.context + (config.train_horizon or spec.future)
        self.tower = PredictiveTower(spec, config)
        self.latent_tower = LatentTower(self.latent_frames * spec.channels, config)

    @staticmethod
    def _check_memory(spec: VideoSpec, config: SV2PConfig) -> None:
        """One line instead of an out-of-memory kill where the CDNA layer's weights cannot be held: refused when
        they take over half the memory available (a forward at such sizes needs several GB of activations more)."""
        weights = 4 * config.lstm_size[4] * (spec.height // SCALE) * (spec.width // SCALE) * config.num_masks \
            * config.dna_kernel_size ** 2
        # Checked here, before the weights are made (on the CPU, whatever the run's device), not by the harness's
        # memory estimate, which measures a forward of the built model.
        available = available_bytes(torch.device("cpu"))
        if available is not None and weights > available[0] / 2:
            raise UserError(f"sv2p at {spec.height}x{spec.width}: the CDNA kernels' dense layer reads all of the "
                            f"{spec.height // SCALE}x{spec.width // SCALE}x{config.lstm_size[4]} hidden state: "
                            f"{weights / 2**30:.1f} GiB of float32 weights (x4 to train with Adam), plus the "
                            f"activations; {available[1]}")

    def modules_outside_prediction(self) -> list[nn.Module]:
        return [self.latent_tower]  # the posterior: training only, z ~ N(0, 1) at test

    # -- the schedules ---------------------------------------------------------------------------------------
    def beta(self, iteration: int) -> float:
        """The KL's weight at `iteration` (common_video.beta_schedule)."""
        c = self.config
        start = c.num_iterations_1st_stage + c.num_iterations_2nd_stage
        if iteration < start:
            return 0.0
        if c.latent_loss_multiplier_schedule == "constant" or iteration > c.anneal_end:
            return c.latent_loss_multiplier
        return c.latent_loss_multiplier * (iteration - start) / max(c.anneal_end - start, 1)

    def true_frames_read(self, batch: int, iteration: int) -> int:
        """Sequences of the batch that read their true frame after the context (tensor2tensor's "count" mode)."""
        k = self.config.scheduled_sampling_k
        exponent = iteration / k
        return 0 if exponent > 700 else round(batch * k / (k + math.exp(exponent)))

    # -- the model -------------------------------------------------------------------------------------------
    def rollout(self, frames: Tensor, z: Tensor, steps: int, context: int, true_frames: int = 0) -> Tensor:
        """Predictions of frames 1..steps from frames[:, 0] on, [B, steps, C, H, W]. Inputs: the `context` frames
        as they are; later, for `true_frames` sequences picked at random each step, the true frame (which `frames`
        must then hold), for the others their prediction (closed loop: all of them when `true_frames` is 0)."""
        states: list[LSTMState | None] = [None] * 7
        image, predicted = frames[:, 0], []
        for t in range(steps):
            prediction, states = self.tower(image, z, states)
            predicted.append(prediction)
            if t + 1 < context:
                image = frames[:, t + 1]
            elif true_frames:
                rows = torch.randperm(frames.shape[0], device=frames.device)[:true_frames]
                image = prediction.index_copy(0, rows, frames[rows, t + 1])
            else:
                image = prediction
        return torch.stack(predicted, 1)

    def objective(self, clip: Tensor, iteration: int | None) -> dict[str, Tensor]:
        """The training loss of `clip` at `iteration` (None: the phase-3 objective, closed loop after the context:
        what validation scores), with its terms."""
        frames = clip[:, : self.latent_frames]
        if frames.shape[1] < self.latent_frames:
            raise UserError(f"sv2p: training clips of {clip.shape[1]} frames; its inference network reads "
                            f"{self.latent_frames} (context {self.spec.context} + the frames trained on)")
        b, t = frames.shape[:2]
        final = iteration is None
        if not final and iteration < self.config.num_iterations_1st_stage:
            z = torch.randn(b, self.config.latent_channels, self.spec.height // SCALE, self.spec.width // SCALE,
                            device=clip.device, dtype=clip.dtype)
            kl = clip.new_zeros(b)
        else:
            mean, log_var = self.latent_tower(frames)
            z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
            kl = gaussian_kl(mean, log_var)
        true_frames = 0 if final else self.true_frames_read(b, iteration)
        tc = self.spec.context
        predicted = self.rollout(frames, z, t - 1, tc, true_frames)
        mse = F.mse_loss(predicted[:, tc - 1:], frames[:, tc:])
        if self.config.internal_loss and tc > 1:
            mse = mse + F.mse_loss(predicted[:, : tc - 1], frames[:, 1:tc])
        beta = self.config.latent_loss_multiplier if final else self.beta(iteration)
        kl = kl.mean() / (t - 1)
        return {"loss": mse + beta * kl, "mse": mse, "kl": kl}

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        return self.objective(clip, iteration)["loss"]

    def training_step(self, clip: Tensor, trainer) -> dict[str, Tensor]:
        terms = self.objective(clip, trainer.iteration)
        trainer.backward(terms["loss"])
        trainer.step("model")
        return {name: value.detach() for name, value in terms.items()}

    def validation_loss(self, clip: Tensor) -> Tensor:
        return self.objective(clip, None)["loss"]

    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        b, tc, c, h, w = context.shape
        if (h, w) != (self.spec.height, self.spec.width):
            raise UserError(f"sv2p: built for {self.spec.height}x{self.spec.width} frames (its CDNA layer reads the "
                            f"whole hidden state), got {h}x{w}")
        n = 1 if samples is None else samples
        frames = context.repeat_interleave(n, 0) if n > 1 else context
        z = torch.randn(b * n, self.config.latent_channels, h // SCALE, w // SCALE, generator=generator,
                        device=context.device, dtype=context.dtype)
        # The context read in turn (what the tower predicts of it is dropped), then closed loop.
        out = self.rollout(frames, z, tc - 1 + future, tc)[:, tc - 1:]
        return out if samples is None else out.view(b, n, future, c, h, w)
