"""HFVP (Villegas, Pathak, Kannan, Erhan, Le and Lee, NeurIPS 2019, "High Fidelity Video Prediction with Large
Stochastic Recurrent Neural Networks"; the paper calls the model SVG'): SVG-LP (Denton and Fergus, ICML 2018) with
its fully connected LSTMs made convolutional, scaled up without optical flow, masks or other structure: a VGG-style
frame encoder and decoder whose widths are multiplied by K, convolutional LSTMs (frame predictor, learned prior,
inference posterior) whose widths are multiplied by M, a per-step latent z_t on the encoder's grid, trained on the
SVG-LP objective (reconstruction MSE + beta x KL(posterior || learned prior)).

The authors released no code. This follows s-tian/svg-prime (commit 6517c44, Stephen Tian's PyTorch SVG', built on
edenton/svg and used by the VP2 benchmark: svg_prime/models/shallow_vgg.py, conv_lstm.py, convlstm_cell.py,
train_svg_prime.py, utils.py `init_weights`), which its README calls "a quick and unverified implementation":
- Encoder: three VGG stages, 2, 2 and 3 layers of [3x3 conv, BatchNorm, LeakyReLU 0.2] with 64K, 128K and 256K
  channels, a 2x2 max-pool before each stage after the first and before a last 3x3 conv to g_dim (128) channels:
  frames of H x W give a feature [g_dim, H/8, W/8] and the stages' outputs (H, H/2, H/4) as skips.
- Decoder: a 3x3 conv g_dim -> 256K, nearest 2x upsampling; stages of 3, 2 and 1 VGG layers each reading the
  upsampled map concatenated with the encoder's skip of the same size (256K, 128K, 64K out), an upsampling between
  stages; a 3x3 transposed conv (stride 1, padding 1) to the frame's channels and a sigmoid.
- Each ConvLSTM network: a 3x3 conv embedding to int(rnn_size x M) channels, stacked ConvLSTM cells (one 3x3 conv of
  [x, h] to the gates i, f, o, g, with bias, no forget bias), then a head: the frame predictor's a 3x3 conv to g_dim
  and tanh; the prior's and the posterior's two 3x3 convs to the mean and log-variance of z_t [z_dim, H/8, W/8].
- Step t (SVG-LP's): h = E(x_{t-1}); the posterior reads E(x_t), the prior reads h; the frame predictor reads [h, z_t]
  and the decoder turns its output and the skips into x_t. The skips are those of the last step whose input was a
  context frame (x_{Tc-2} from the first predicted step on: SVG-LP's code, kept), or with `last_frame_skip` of
  x_{t-1}.
- Training: teacher forced over the whole clip, the posterior's z_t; loss = sum over steps of the mean squared error +
  beta x KL(q || p) summed over z and divided by the batch size. Test: the context filtered with posterior samples
  (the prior also stepped, its sample drawn and unused, as the reference does), then prior samples, each prediction
  fed back. Every draw is mean + exp(logvar / 2) x noise, the noise from the evaluation's generator (a sample per
  Gaussian network and step, posterior before prior: the reference's order). `samples=N` folds the samples into the
  batch (sequence b's samples are rows b*N .. b*N+N-1); the context is encoded once per sequence.
- Initialisation: every convolution N(0, 0.02) with zero bias, BatchNorm scales N(1, 0.02) (SVG's `init_weights`;
  `init_std` sets the 0.02, which only the `tiny` preset changes: see there).

Departures: the reference's states have a fixed size (its batch size, an 8x8 grid: 64x64 frames only) and an action
input (`a_dim`, tiled over the grid; VP2's robot data); here every state is sized from the input (any frame size
divisible by 8) and there are no actions (the reference's `--a_dim 0`). The reference encodes each training frame
twice (as target, then as the next step's input); here once, which gives the same outputs but moves BatchNorm's
running statistics once per frame instead of twice. Its KL is divided by the configured batch size; here by the
batch's. Its separate Adam optimizers of equal settings per network are one Adam over all of them.

What could not be verified: the paper's text (its architecture appendix) could not be read here, so the layer
widths (64K/128K/256K, rnn_size 512 x M, g_dim 128, an 8x down-sampled latent) are svg-prime's, not checked against
the paper's (svg-prime's encoder ends in 128 channels whatever g_dim says, so its checkpoints need g_dim 128); nor are
K and M of the paper's runs, z_dim and beta for STIP's datasets (STIP gives no HFVP settings).
`svg_prime` saves whole pickled modules; its checkpoints load once converted to a state dict of the five networks'
state dicts under their names (`{"encoder.c1.0.main.0.weight": ...}`: tests/fixtures/references/make_hfvp.py shows
how), `SVG_PRIME` renames them. That code's own modules wrote such a checkpoint and its predictions and training
loss (make_hfvp.py): loaded here, this predicts the same and computes the same loss (tests/test_hfvp.py).

Sizes (hand counts from svg-prime's layer list, tests/test_hfvp.py): at svg-prime's defaults (K = M = 1, 64x64 grey)
82,933,929 parameters, 75.5M of them in the four 512-channel ConvLSTM cells; at M = 3, K = 5 (recalled as the
paper's largest model, [unverified]: the paper could not be read here) 796,246,697. At sjtu4k's 2160x3840 RGB (K = M
= 1, 4 -> 4) 82,936,235 parameters and 81.81 TFLOPs (fvcore, batch 1: 818,086,625,280 at 216x384 times 100; every
operation follows the frame's area, and 72x128 counts exactly a ninth of 216x384).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, NON_NEGATIVE, POSITIVE, ReferenceLayout, StochasticConfig, StochasticPredictor,
                     UserError, VideoSpec, register_predictor, setting, tiny_preset)

from ._stip_schedules import stip_dataset_presets

LEAKY_SLOPE = 0.2  # SVG's vgg_layer
DOWNSAMPLING = 8  # three 2x2 max-pools

# One ConvLSTM layer's state (h, c).
Cell = tuple[Tensor, Tensor]


@dataclass
class HFVPConfig(StochasticConfig):
    # svg-prime's flag names (train_svg_prime.py), so that its runs' settings read across.
    K: float = setting(1.0, "encoder/decoder width multiplier (the paper's K): VGG stages of int(64K), int(128K), "
                            "int(256K) channels", POSITIVE)
    M: float = setting(1.0, "ConvLSTM width multiplier (the paper's M): int(rnn_size x M) channels", POSITIVE)
    rnn_size: int = setting(512, "ConvLSTM channels before the M multiplier", COUNT)
    g_dim: int = setting(128, "channels of the encoder's output and the frame predictor's", COUNT)
    z_dim: int = setting(10, "channels of the latent z_t (on the H/8 x W/8 grid)", COUNT)
    predictor_rnn_layers: int = setting(2, "ConvLSTM layers of the frame predictor", COUNT)
    prior_rnn_layers: int = setting(1, "ConvLSTM layers of the learned prior", COUNT)
    posterior_rnn_layers: int = setting(1, "ConvLSTM layers of the inference posterior", COUNT)
    beta: float = setting(1e-4, "weight of KL(posterior || prior) in the loss", NON_NEGATIVE)
    last_frame_skip: bool = setting(False, "decoder skips from the previous frame at every step (False: from the last "
                                           "step whose input was a context frame, SVG-LP's default)")
    init_std: float = setting(0.02, "standard deviation of the convolutions' initial weights (SVG's init_weights: "
                                    "0.02)", POSITIVE)
    lr: float = 3e-4  # train_svg_prime.py's default (its README: SVG-LP's 2e-3 trains SVG' worse)


def vgg_layer(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv, BatchNorm, LeakyReLU 0.2."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


def vgg_stage(widths: list[int]) -> nn.Sequential:
    return nn.Sequential(*(vgg_layer(a, b) for a, b in zip(widths, widths[1:])))


class Encoder(nn.Module):
    """[N, C, H, W] -> the feature [N, g_dim, H/8, W/8] and the three stages' outputs (the decoder's skips)."""

    def __init__(self, channels: int, g_dim: int, k: float) -> None:
        super().__init__()
        w1, w2, w3 = int(64 * k), int(128 * k), int(256 * k)
        self.stages = nn.ModuleList([vgg_stage([channels, w1, w1]), vgg_stage([w1, w2, w2]),
                                     vgg_stage([w2, w3, w3, w3])])
        self.head = nn.Conv2d(w3, g_dim, 3, 1, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        return self.head(F.max_pool2d(x, 2)), skips


class Decoder(nn.Module):
    """The frame predictor's output [N, g_dim, H/8, W/8] and the encoder's skips -> a frame in [0, 1]."""

    def __init__(self, channels: int, g_dim: int, k: float) -> None:
        super().__init__()
        w1, w2, w3 = int(64 * k), int(128 * k), int(256 * k)
        self.head = nn.Conv2d(g_dim, w3, 3, 1, 1)
        self.stages = nn.ModuleList([vgg_stage([2 * w3, w3, w3, w2]), vgg_stage([2 * w2, w2, w1]),
                                     vgg_stage([2 * w1, w1])])
        self.out = nn.ConvTranspose2d(w1, channels, 3, 1, 1)

    def forward(self, g: Tensor, skips: list[Tensor]) -> Tensor:
        x = self.head(g)
        for stage, skip in zip(self.stages, reversed(skips)):
            x = stage(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], 1))
        return torch.sigmoid(self.out(x))


class ConvLSTMCell(nn.Module):
    """One 3x3 conv of [x, h] to the gates i, f, o, g; c' = f c + i g, h' = o tanh(c')."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(2 * channels, 4 * channels, 3, 1, 1)

    def forward(self, x: Tensor, state: Cell | None) -> Cell:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.channels, *x.shape[2:])
            state = zeros, zeros
        h, c = state
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], 1)), self.channels, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMStack(nn.Module):
    """A 3x3 conv embedding and `layers` ConvLSTM cells; `run` returns the top hidden map and the new states."""

    def __init__(self, c_in: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(c_in, hidden, 3, 1, 1)
        self.cells = nn.ModuleList(ConvLSTMCell(hidden) for _ in range(layers))

    def run(self, x: Tensor, states: list[Cell] | None) -> tuple[Tensor, list[Cell]]:
        x = self.embed(x)
        new = []
        for i, cell in enumerate(self.cells):
            h_c = cell(x, None if states is None else states[i])
            new.append(h_c)
            x = h_c[0]
        return x, new


class FramePredictor(ConvLSTMStack):
    """[h, z] -> the next frame's feature, a 3x3 conv to g_dim and tanh."""

    def __init__(self, c_in: int, hidden: int, layers: int, g_dim: int) -> None:
        super().__init__(c_in, hidden, layers)
        self.out = nn.Conv2d(hidden, g_dim, 3, 1, 1)

    def forward(self, x: Tensor, states: list[Cell] | None) -> tuple[Tensor, list[Cell]]:
        top, states = self.run(x, states)
        return torch.tanh(self.out(top)), states


class GaussianConvLSTM(ConvLSTMStack):
    """A feature -> a sample of z_t, its mean and log-variance (3x3 convs of the top hidden map)."""

    def __init__(self, c_in: int, hidden: int, layers: int, z_dim: int) -> None:
        super().__init__(c_in, hidden, layers)
        self.mean = nn.Conv2d(hidden, z_dim, 3, 1, 1)
        self.logvar = nn.Conv2d(hidden, z_dim, 3, 1, 1)

    def forward(self, x: Tensor, states: list[Cell] | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, list[Cell]]:
        top, states = self.run(x, states)
        mean, logvar = self.mean(top), self.logvar(top)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return noise * torch.exp(0.5 * logvar) + mean, mean, logvar, states


def gaussian_kl(mean_q: Tensor, logvar_q: Tensor, mean_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mean_q, e^logvar_q) || N(mean_p, e^logvar_p)), summed over every element."""
    return (0.5 * (logvar_p - logvar_q) + (logvar_q.exp() + (mean_q - mean_p) ** 2) / (2 * logvar_p.exp())
            - 0.5).sum()


def svg_init(module: nn.Module, std: float) -> None:
    """SVG's init_weights (std 0.02): convolutions N(0, std), zero biases; BatchNorm scales N(1, std), zero shifts."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, std)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, std)
        nn.init.zeros_(module.bias)


# s-tian/svg-prime's five networks (encoder, decoder, frame_predictor, posterior, prior), each `state_dict()` under
# its name: vgg_layer's `main.0` / `main.1` are the conv and its BatchNorm; `c1..c3` the encoder's stages and `c4`
# its last conv; `upc1` the decoder's first conv, `upc2..upc4` its stages (upc4's `1` the transposed conv); the
# ConvLSTM networks' `lstm.N`, `output.0` (the frame predictor's head), `mu_net` and `logvar_net`.
def _decoder_name(m) -> str:  # noqa: ANN001 - a re.Match
    stage, rest = int(m[1]) - 2, m[2]
    if stage == 2 and rest.startswith("1."):
        return f"decoder.out.{rest[2:]}"
    return f"decoder.stages.{stage}.{rest.replace('main.', '')}"


SVG_PRIME = ReferenceLayout(
    "svg-prime",
    renames=((r"encoder\.c([123])\.(.*)", lambda m: f"encoder.stages.{int(m[1]) - 1}.{m[2].replace('main.', '')}"),
             (r"encoder\.c4\.(.*)", r"encoder.head.\1"),
             (r"decoder\.upc1\.(.*)", r"decoder.head.\1"),
             (r"decoder\.upc([234])\.(.*)", _decoder_name),
             (r"frame_predictor\.lstm\.(.*)", r"frame_predictor.cells.\1"),
             (r"frame_predictor\.output\.0\.(.*)", r"frame_predictor.out.\1"),
             (r"(prior|posterior)\.lstm\.(.*)", r"\1.cells.\2"),
             (r"(prior|posterior)\.mu_net\.(.*)", r"\1.mean.\2"),
             (r"(prior|posterior)\.logvar_net\.(.*)", r"\1.logvar.\2")),
    recognise=r"encoder\.c4\.weight")


# train_svg_prime.py's defaults (lines 13-44): K = M = 1, rnn_size 512, g_dim 128, z_dim 10, 1 prior / 1 posterior /
# 2 predictor layers, beta 1e-4, lr 3e-4, batch 100; 300 epochs of 600 iterations.
REFERENCE = dict(K=1.0, M=1.0, rnn_size=512, g_dim=128, z_dim=10, predictor_rnn_layers=2, prior_rnn_layers=1,
                 posterior_rnn_layers=1, beta=1e-4, lr=3e-4)


# STIP's datasets [unverified]: STIP's paper (section IV) gives no HFVP settings, nor does svg-prime for these sizes.
# svg-prime's default model (K = M = 1, the paper's smallest) trained as STIP trains its own model on the dataset:
# batch 1, the iterations and test batch of STIPHR's configs/<dataset>_configs.py (as stip's presets).
STIP_DATASETS = stip_dataset_presets(dict(REFERENCE, batch_size=1, val_every=5_000))


# CPU-sized (a few minutes on two cores): K = 1/8 (8/16/32 channels), 32-channel ConvLSTMs, z of 4 channels on the
# 8x8 grid; trained on the context and 4 future frames (train_horizon), a higher lr for the short schedule.
MOVING_DIGITS = dict(K=0.125, M=1.0, rnn_size=32, g_dim=32, z_dim=4, beta=1e-4, batch_size=8, lr=2e-3,
                     lr_schedule="cosine", max_iterations=600, quick_iterations=200, val_every=100, train_horizon=4,
                     grad_clip=1.0)


@register_predictor("hfvp")
class HFVP(StochasticPredictor):
    """HFVP / SVG' (Villegas et al. 2019): SVG-LP with convolutional LSTMs and a VGG encoder/decoder, scaled by K, M."""

    Config = HFVPConfig
    checkpoint_layouts = (SVG_PRIME,)
    fully_convolutional = True  # convolutions only, every state sized from the input
    presets = {
        # train_svg_prime.py's defaults (REFERENCE), its smmnist setting: 64x64 grey, batch 100, 300 epochs x 600
        # iterations (lines 15, 23, 25). It trains 5 -> 10 (n_past, n_future); vpbench's mmnist protocol is 10 -> 10.
        "mmnist": dict(REFERENCE, batch_size=100, max_iterations=180_000, val_every=6_000),
        # STIP's three datasets [unverified]: see STIP_DATASETS.
        **STIP_DATASETS,
        "moving-digits": MOVING_DIGITS,
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    # Its init is 10x SVG's: the contract draws samples from the untrained model in eval mode, where BatchNorm's unit
    # running variance leaves the signal shrinking about 8x a layer under N(0, 0.02) at these widths, so that every
    # frame is sigmoid(0) = 0.5 to float precision whatever z is (training moves the statistics; a trained model's
    # samples differ).
    presets["tiny"] = tiny_preset(MOVING_DIGITS, K=0.0625, rnn_size=8, g_dim=8, z_dim=2, train_horizon=0, lr=3e-3,
                                  init_std=0.2)

    def __init__(self, spec: VideoSpec, config: HFVPConfig) -> None:
        super().__init__(spec, config)
        c = config
        if spec.height % DOWNSAMPLING or spec.width % DOWNSAMPLING:
            raise UserError(f"hfvp: the encoder halves the frame 3 times; {spec.height}x{spec.width} is not divisible "
                            f"by {DOWNSAMPLING}")
        if spec.context < 2:
            raise UserError(f"hfvp: the decoder's skips come from a step whose input is a context frame, which needs "
                            f"2 context frames; the protocol has {spec.context}")
        hidden = int(c.rnn_size * c.M)
        if int(64 * c.K) < 1 or hidden < 1:
            raise UserError(f"hfvp: K={c.K} and M={c.M} leave a layer without channels (64K = {int(64 * c.K)}, "
                            f"rnn_size x M = {hidden})")
        self.encoder = Encoder(spec.channels, c.g_dim, c.K)
        self.decoder = Decoder(spec.channels, c.g_dim, c.K)
        self.frame_predictor = FramePredictor(c.g_dim + c.z_dim, hidden, c.predictor_rnn_layers, c.g_dim)
        self.posterior = GaussianConvLSTM(c.g_dim, hidden, c.posterior_rnn_layers, c.z_dim)
        self.prior = GaussianConvLSTM(c.g_dim, hidden, c.prior_rnn_layers, c.z_dim)
        self.apply(lambda module: svg_init(module, c.init_std))

    def objective(self, clip: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """SVG-LP's loss on clips [B, T, C, H, W], teacher forced: the sum over steps of the MSE of the decoded
        frame and beta x the KL summed over z, divided by the batch size."""
        batch, steps = clip.shape[:2]
        encoded = self.encoder(clip[:, 0])
        states: dict[str, list[Cell] | None] = dict.fromkeys(("predictor", "posterior", "prior"))
        mse, kl = clip.new_zeros(()), clip.new_zeros(())
        skips = encoded[1]
        for t in range(1, steps):
            h = encoded[0]
            if self.config.last_frame_skip or t < self.spec.context:
                skips = encoded[1]
            encoded = self.encoder(clip[:, t])
            z, mean_q, logvar_q, states["posterior"] = self.posterior(encoded[0], states["posterior"], generator)
            _, mean_p, logvar_p, states["prior"] = self.prior(h, states["prior"], generator)
            g, states["predictor"] = self.frame_predictor(torch.cat([h, z], 1), states["predictor"])
            mse = mse + F.mse_loss(self.decoder(g, skips), clip[:, t])
            kl = kl + gaussian_kl(mean_q, logvar_q, mean_p, logvar_p) / batch
        return {"loss": mse + self.config.beta * kl, "mse": mse / (steps - 1), "kl": kl / (steps - 1)}

    def training_step(self, clip: Tensor, trainer) -> dict[str, Tensor]:  # noqa: ANN001 - vpbench.Trainer
        terms = self.objective(clip)
        trainer.backward(terms["loss"])
        trainer.step("model")
        return {name: value.detach() for name, value in terms.items()}

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        return self.objective(clip)["loss"]

    def validation_loss(self, clip: Tensor) -> Tensor:
        # Checkpoints are selected on the objective (posterior noise from a fixed seed, so scores compare).
        return self.objective(clip, torch.Generator(clip.device).manual_seed(0))["loss"]

    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        batch, tc = context.shape[:2]
        copies = samples or 1

        def encode(frame: Tensor) -> tuple[Tensor, list[Tensor]]:
            # deterministic: once per sequence, then repeated for its samples
            h, skips = self.encoder(frame)
            if copies == 1:  # no copy: at 4K a skip is gigabytes
                return h, skips
            return h.repeat_interleave(copies, 0), [s.repeat_interleave(copies, 0) for s in skips]

        states: dict[str, list[Cell] | None] = dict.fromkeys(("predictor", "posterior", "prior"))
        encoded = encode(context[:, 0])
        skips = encoded[1]
        for t in range(1, tc):  # the context, filtered with the posterior
            h, skips = encoded
            encoded = encode(context[:, t])
            z, _, _, states["posterior"] = self.posterior(encoded[0], states["posterior"], generator)
            _, _, _, states["prior"] = self.prior(h, states["prior"], generator)
            _, states["predictor"] = self.frame_predictor(torch.cat([h, z], 1), states["predictor"])
        predicted = []
        for _ in range(future):
            h, last_skips = encoded
            if self.config.last_frame_skip:
                skips = last_skips
            z, _, _, states["prior"] = self.prior(h, states["prior"], generator)
            g, states["predictor"] = self.frame_predictor(torch.cat([h, z], 1), states["predictor"])
            frame = self.decoder(g, skips)
            predicted.append(frame)
            if len(predicted) < future:
                encoded = self.encoder(frame)
        out = torch.stack(predicted, 1)
        return out if samples is None else out.view(batch, samples, *out.shape[1:])
