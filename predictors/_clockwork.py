"""The clockwork skeleton shared by CW-VAE (`cwvae`) and HTSRM (`htsrm`): a hierarchy of RSSM cells, level l
ticking once every `tmp_abs_factor ** l` frames, trained on the ELBO.

Follows the CW-VAE reference (vaibhavsaxena11/cwvae, TF 2.4: cnns.py, cells.py, cwvae.py):
- Encoder: 4 x Conv(k4, s2, valid, LeakyReLU 0.2) with 32/64/128/256 channels, 64 -> 31 -> 14 -> 6 -> 2,
  flattened to 1024 features per frame: level 0's input. Level l >= 1 reads the previous level's dense
  output through [Dense 1000 ReLU] x 2 -> Dense 1024, zero-pads it in time to a multiple of 6^l and sums
  each block of 6^l frames: one feature per tick of level l.
- RSSM cell per level, state (z, h). Prior: x = ReLU(Dense([z_prev, ctx])), h = GRUCell(x, h_prev),
  x = ReLU(Dense(h)), mu = Dense(x), sigma = softplus(Dense(x + 0.54)) + 1e-4 (the reference adds 0.54 to
  the layer's input). Posterior: x = ReLU(Dense(ReLU(Dense([h, e])))), mu and sigma from x as above.
  ctx is the output [z, h] of the level above at its current tick (its block covers this frame); the top
  level gets zeros.
- Decoder of the bottom level's [z, h]: Dense 1024 -> 1x1 -> ConvT 128 k5, 64 k5, 32 k6 (LeakyReLU 0.2),
  C k6 with tanh, stride 2: 1 -> 5 -> 13 -> 30 -> 64. Its output is the mean of a Gaussian with the fixed
  std `dec_stddev`; as in the reference the targets are frames in [0, 1] and the tanh range is [-1, 1].
  `forward` returns the tanh outputs as they are: the harness clamps them to [0, 1] for vpbench's metrics,
  and the `cwvae` metric convention scores them unclipped, as CW-VAE's and HTSRM's evaluations do.
- Loss: (NLL + sum over levels and ticks of KL(q || p)) / T, NLL and KL summed per sequence and averaged
  over the batch, the Gaussian constant included.
- Keras initialisation (glorot-uniform kernels, orthogonal GRU recurrent kernels, zero biases).

Channel counts scale with `filters` (the reference's 32 x channels_mult); frames must be 64x64 (the
strides and kernels define the model for that size), other sizes are refused.

How the levels tick. One loop (`_clock`) serves training, context filtering and the rollout: at frame t
(counted from the first frame of the clip or training window) every level l with t % 6^l == 0 ticks, top
level first, so each level's prior sees the current output of the level above. A ticking level uses its
posterior when its block's feature is observed, else it samples the prior. The reference's level-by-level
unroll is the same computation in another order (level l's block j is conditioned on level l+1's block
j // 6, which in both is the state the level above had at frame j * 6^l).

Incomplete blocks. The reference's evaluation requires the context to be a multiple of 6^(levels-1)
(its open-loop split takes floor(context / 6^l) blocks per level). Here any context works: a level's
block is filtered by the posterior only when all of its frames are in the context; a block that the
context covers only in part is drawn from the prior, like every later block, while the levels below still
filter their complete blocks inside it. The posterior network reads a sum over its block's frames, so a
partial sum would be an input it has not been trained to read as "frames missing" (it sees one only at the
end of a training window, always at the same position), and it would stand for the whole block. The prior
is what the generative model says about the block given everything before it, and the lower levels then
condition on the observed frames. With 10 context frames and 3 levels the top level starts from its prior,
level 1 filters block 0 (frames 0-5) and level 0 filters all 10 frames. Training windows keep the
reference's behaviour (trailing partial blocks are zero-padded and observed).

Sampling. Every draw is `mean + std * randn(generator)`: posterior samples while filtering the context,
prior samples in the rollout. `samples=N` folds the samples into the batch (sequence b's samples are rows
b*N .. b*N+N-1); the encoder runs once per sequence. The rollout keeps only the per-level states and decodes
`DECODE_CHUNK` frames at a time into the output, so memory does not grow with the horizon beyond the output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import COUNT, NON_NEGATIVE, POSITIVE, StochasticConfig, StochasticPredictor, UserError, VideoSpec, setting

FRAME_SIZE = 64
LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default alpha
STD_SHIFT = 0.54  # added to the input of the std layers (softplus(0.54) ~ 1)
DECODE_CHUNK = 36  # frames decoded together in a rollout


@dataclass
class ClockworkConfig(StochasticConfig):
    # The reference's names (configs/base_config.yml), so its config files read across.
    levels: int = setting(3, "temporal levels of the hierarchy", COUNT)
    tmp_abs_factor: int = setting(6, "each level ticks this many times slower than the one below", COUNT)
    cell_stoch_size: int = setting(20, "stochastic latent units per level", COUNT)
    cell_deter_size: int = setting(200, "deterministic (GRU) units per level", COUNT)
    cell_embed_size: int = setting(200, "embedding units of the latent cell", COUNT)
    cell_min_stddev: float = setting(1e-4, "floor of the latent standard deviation", NON_NEGATIVE)
    enc_dense_layers: int = setting(3, "dense layers of the encoder above level 1", COUNT)
    enc_dense_embed_size: int = setting(1000, "units of those layers", COUNT)
    filters: int = setting(32, "first conv width; the reference's 32 * channels_mult", COUNT)
    dec_stddev: float = setting(1.0, "standard deviation of the decoder's Gaussian likelihood", POSITIVE)
    train_length: int = setting(100, "frames of a training window (the reference's seq_len)", COUNT)
    eval_samples: int = 1  # samples per test sequence (the reference eval scripts' --num-samples default)
    # The reference's optimiser: Adam(eps=1e-4), batch 50, global-norm clip 1e4.
    batch_size: int = 50
    lr: float = 3e-4
    adam_eps: float = 1e-4
    grad_clip: float = 1e4


def gaussian_kl(mean_q: Tensor, std_q: Tensor, mean_p: Tensor, std_p: Tensor) -> Tensor:
    """KL(N(mean_q, std_q) || N(mean_p, std_p)) of diagonal Gaussians, summed over the last dim."""
    var_ratio = (std_q / std_p) ** 2
    mahalanobis = ((mean_q - mean_p) / std_p) ** 2
    return 0.5 * (var_ratio + mahalanobis - 1.0 - torch.log(var_ratio)).sum(-1)


def gaussian_nll(target: Tensor, mean: Tensor, std: float) -> Tensor:
    """-log N(target; mean, std) per element, constant included."""
    return 0.5 * ((target - mean) / std) ** 2 + math.log(std) + 0.5 * math.log(2 * math.pi)


def block_sum(features: Tensor, period: int) -> Tensor:
    """[B, T, F] -> [B, ceil(T / period), F]: zero-pad time to a multiple of `period`, sum each block."""
    b, t, f = features.shape
    pad = -t % period
    if pad:
        features = F.pad(features, (0, 0, 0, pad))
    return features.view(b, -1, period, f).sum(2)


class ConvEncoder(nn.Module):
    """4 x Conv(k4, s2, valid) + LeakyReLU: [N, C, 64, 64] -> [N, 32 * filters]. `after_first` runs on the
    first layer's 31x31 output (HTSRM's residual cell; identity in CW-VAE)."""

    def __init__(self, channels: int, filters: int, after_first: nn.Module) -> None:
        super().__init__()
        widths = [channels, filters, 2 * filters, 4 * filters, 8 * filters]
        self.convs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2) for i in range(4))
        self.after_first = after_first

    def forward(self, x: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            if i == 0:
                x = self.after_first(x)
        return x.flatten(1)


class ConvDecoder(nn.Module):
    """Dense -> 1x1 -> 3 x ConvT + LeakyReLU -> ConvT + tanh: [N, state] -> [N, C, 64, 64]. `before_last`
    runs on the 30x30 map before the last layer (HTSRM's residual cell; identity in CW-VAE)."""

    def __init__(self, state_size: int, channels: int, filters: int, before_last: nn.Module) -> None:
        super().__init__()
        self.dense = nn.Linear(state_size, 32 * filters)
        self.deconvs = nn.ModuleList([
            nn.ConvTranspose2d(32 * filters, 4 * filters, 5, stride=2),
            nn.ConvTranspose2d(4 * filters, 2 * filters, 5, stride=2),
            nn.ConvTranspose2d(2 * filters, filters, 6, stride=2),
        ])
        self.before_last = before_last
        self.out = nn.ConvTranspose2d(filters, channels, 6, stride=2)

    def forward(self, state: Tensor) -> Tensor:
        x = self.dense(state)[:, :, None, None]
        for deconv in self.deconvs:
            x = F.leaky_relu(deconv(x), LEAKY_SLOPE)
        return torch.tanh(self.out(self.before_last(x)))


def level_net(features: int, hidden: int, layers: int) -> nn.Sequential:
    """[Dense hidden, ReLU] x (layers - 1) -> Dense features: one level's feature network."""
    modules: list[nn.Module] = []
    width = features
    for _ in range(layers - 1):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    modules.append(nn.Linear(width, features))
    return nn.Sequential(*modules)


class GaussianHead(nn.Module):
    """mean = Dense(x), std = softplus(Dense(x + 0.54))."""

    def __init__(self, embed: int, stoch: int) -> None:
        super().__init__()
        self.mean = nn.Linear(embed, stoch)
        self.std = nn.Linear(embed, stoch)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean(x), F.softplus(self.std(x + STD_SHIFT))


class RSSMCell(nn.Module):
    """One level's cell. `context_net` maps the context before the prior reads it (HTSRM's top-down
    residual; identity in CW-VAE). With `residual_posterior` the posterior is the prior plus a learned
    offset, mean_q = mean_p + d_mean, std_q = std_p + d_std (HTSRM); otherwise it is its own Gaussian."""

    def __init__(self, stoch: int, deter: int, embed: int, obs: int, min_std: float, context_net: nn.Module,
                 residual_posterior: bool) -> None:
        super().__init__()
        self.min_std = min_std
        self.residual_posterior = residual_posterior
        self.context_net = context_net
        self.prior_in = nn.Linear(stoch + stoch + deter, embed)  # [z_prev, ctx], ctx = [z, h] of the level above
        self.gru = nn.GRUCell(embed, deter)
        self.prior_out = nn.Linear(deter, embed)
        self.prior_head = GaussianHead(embed, stoch)
        self.posterior_net = nn.Sequential(nn.Linear(deter + obs, embed), nn.ReLU(), nn.Linear(embed, embed), nn.ReLU())
        self.posterior_head = GaussianHead(embed, stoch)

    def prior(self, z: Tensor, h: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(h, mean_p, std_p) of the next tick."""
        x = F.relu(self.prior_in(torch.cat([z, self.context_net(context)], -1)))
        h = self.gru(x, h)
        mean, std = self.prior_head(F.relu(self.prior_out(h)))
        return h, mean, std + self.min_std

    def posterior(self, h: Tensor, observation: Tensor, mean_p: Tensor, std_p: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = self.posterior_head(self.posterior_net(torch.cat([h, observation], -1)))
        if self.residual_posterior:
            return mean_p + mean, std_p + std
        return mean, std + self.min_std


# Training-set sizes the epoch counts of the references are converted with: one epoch is one pass over
# the training clips, batches of 50 drawn across epoch boundaries (the reference's tf.data repeat().batch()).
# [unverified] counts of the CW-VAE releases, from the paper's dataset description, not counted here:
MMNIST_TRAIN_CLIPS = 10_000  # moving_mnist_2digit/train-seq100: 10k videos of 100 frames
MAZES_TRAIN_CLIPS = 9_000 * 3  # gqn_mazes/train: 9k videos of 300 frames, 3 chunks of 100 each
# [unverified] KTH training clips, an estimate: persons 1-20 have 479 videos; the videos average about
# 400-500 frames (2391 four-second sequences in 599 videos, with gaps), so floor(length / 100) gives ~4 each.
KTH_TRAIN_CLIPS = 1_900
REFERENCE_BATCH = 50


def reference_preset(dec_stddev: float, lr: float, epochs: int, train_clips: int, val_every: int) -> dict:
    """A configs/*.yml of the references: z / h / embed 20 / 200 / 200, batch 50, seq_len 100, and
    `epochs` passes over `train_clips` clips as iterations, ceil(epochs * clips / 50)."""
    return dict(dec_stddev=dec_stddev, cell_stoch_size=20, cell_deter_size=200, cell_embed_size=200, lr=lr,
                batch_size=REFERENCE_BATCH, train_length=100, val_every=val_every,
                max_iterations=-(-epochs * train_clips // REFERENCE_BATCH))


# The CPU-sized model of the embedded synthetic set, for both models: the references' structure (3 levels,
# factor 6) with small widths, so that `bench run --models cwvae --dataset moving-digits --quick` takes about
# a minute on two cores. dec_stddev 0.1 (the mazes setting): with 1.0 this small model leaves its latents
# nearly unused within the quick schedule (KL ~5 nats per frame against ~30). For paper-scale runs use
# --preset mmnist.
MOVING_DIGITS = dict(levels=3, tmp_abs_factor=6, cell_stoch_size=8, cell_deter_size=64, cell_embed_size=64,
                     enc_dense_embed_size=128, filters=8, dec_stddev=0.1, train_length=36, batch_size=8, lr=1e-3,
                     max_iterations=2000, quick_iterations=200, val_every=500, eval_samples=4)
# The tiny preset's widths (the reference's 3 levels and factor 6) and a higher lr.
TINY_WIDTHS = dict(filters=4, cell_stoch_size=4, cell_deter_size=16, cell_embed_size=16, enc_dense_embed_size=32,
                   lr=3e-3)


# observe(level, block) -> that block's feature [B, F] when the posterior may read it, else None.
Observe = Callable[[int, int], Optional[Tensor]]


class ClockworkPredictor(StochasticPredictor):
    """Base of CW-VAE and HTSRM. Subclasses change the hooks: the residual cells around the conv stacks
    (`make_encoder_cell`, `make_decoder_cell`), the context map inside each prior (`make_context_net`), the
    posterior (`residual_posterior`) and the level-feature skip (`feature_skip`)."""

    Config = ClockworkConfig
    residual_posterior: ClassVar[bool] = False
    feature_skip: ClassVar[float] = 0.0  # level-l feature += feature_skip * level (l-1)'s feature

    def __init__(self, spec: VideoSpec, config: ClockworkConfig) -> None:
        super().__init__(spec, config)
        if (spec.height, spec.width) != (FRAME_SIZE, FRAME_SIZE):
            raise UserError(f"{type(self).registry_name}: the model is defined for {FRAME_SIZE}x{FRAME_SIZE} frames "
                            f"(its conv strides and kernels fix the size); got {spec.height}x{spec.width}")
        c = config
        features = 32 * c.filters
        self.encoder = ConvEncoder(spec.channels, c.filters, self.make_encoder_cell(c.filters))
        self.level_nets = nn.ModuleList(level_net(features, c.enc_dense_embed_size, c.enc_dense_layers)
                                        for _ in range(1, c.levels))
        self.state_size = c.cell_stoch_size + c.cell_deter_size
        self.cells = nn.ModuleList(
            RSSMCell(c.cell_stoch_size, c.cell_deter_size, c.cell_embed_size, features, c.cell_min_stddev,
                     self.make_context_net(self.state_size), self.residual_posterior)
            for _ in range(c.levels))
        self.decoder = ConvDecoder(self.state_size, spec.channels, c.filters, self.make_decoder_cell(c.filters))
        self.periods = [c.tmp_abs_factor ** level for level in range(c.levels)]
        self.apply(keras_init)

    # -- hooks ------------------------------------------------------------------------------------------
    def make_encoder_cell(self, channels: int) -> nn.Module:
        return nn.Identity()

    def make_decoder_cell(self, channels: int) -> nn.Module:
        return nn.Identity()

    def make_context_net(self, size: int) -> nn.Module:
        return nn.Identity()

    # -- the model ---------------------------------------------------------------------------------------
    def encode(self, frames: Tensor) -> list[Tensor]:
        """[B, T, C, 64, 64] -> per level l the features of its blocks, [B, ceil(T / 6^l), F]."""
        b, t = frames.shape[:2]
        hidden = self.encoder(frames.flatten(0, 1)).view(b, t, -1)
        out, previous = [hidden], hidden
        for net, period in zip(self.level_nets, self.periods[1:]):
            hidden = net(hidden)
            feature = hidden + self.feature_skip * previous if self.feature_skip else hidden
            out.append(block_sum(feature, period))
            previous = feature
        return out

    def initial_state(self, batch: int, like: Tensor) -> list[tuple[Tensor, Tensor]]:
        c = self.config
        z = like.new_zeros(batch, c.cell_stoch_size)
        h = like.new_zeros(batch, c.cell_deter_size)
        return [(z, h)] * c.levels

    def _tick(self, state: list[tuple[Tensor, Tensor]], t: int, observe: Observe,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Advance every level whose clock ticks at frame t, top first; `state` is updated in place.
        Returns the bottom level's output [z, h] for frame t and the KL of the posteriors drawn, [B]."""
        batch, like = state[0][0].shape[0], state[0][0]
        context = like.new_zeros(batch, self.state_size)  # the top level's context
        kl = like.new_zeros(batch)
        for level in reversed(range(self.config.levels)):
            period = self.periods[level]
            if t % period == 0:
                cell = self.cells[level]
                z, h = state[level]
                h, mean_p, std_p = cell.prior(z, h, context)
                observation = observe(level, t // period)
                if observation is None:
                    mean, std = mean_p, std_p
                else:
                    mean, std = cell.posterior(h, observation, mean_p, std_p)
                    kl = kl + gaussian_kl(mean, std, mean_p, std_p)
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
                state[level] = (mean + std * noise, h)
            context = torch.cat(state[level], -1)
        return context, kl

    def _clock(self, state: list[tuple[Tensor, Tensor]], start: int, steps: int, observe: Observe,
               generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        """The one time loop: frames start .. start + steps - 1."""
        for t in range(start, start + steps):
            yield self._tick(state, t, observe, generator)

    def decode(self, outputs: Tensor) -> Tensor:
        """[B, T, state] -> frame means [B, T, C, 64, 64] (tanh range)."""
        b, t = outputs.shape[:2]
        return self.decoder(outputs.flatten(0, 1)).view(b, t, self.spec.channels, FRAME_SIZE, FRAME_SIZE)

    # -- training ----------------------------------------------------------------------------------------
    def training_window(self, clip: Tensor) -> Tensor:
        """`train_length` consecutive frames of each clip at a random offset (torch's global RNG), or the
        whole clip when it is not longer."""
        b, t = clip.shape[:2]
        length = self.config.train_length
        if t <= length:
            return clip
        starts = torch.randint(t - length + 1, (b,), device=clip.device)
        index = starts[:, None] + torch.arange(length, device=clip.device)
        return clip[torch.arange(b, device=clip.device)[:, None], index]

    def elbo(self, frames: Tensor) -> dict[str, Tensor]:
        """Negative ELBO per frame of `frames` [B, T, C, H, W] with every block observed: {"loss", "nll", "kl"}."""
        b, t = frames.shape[:2]
        features = self.encode(frames)
        state = self.initial_state(b, frames)
        outputs, kl = [], frames.new_zeros(b)
        for output, kl_t in self._clock(state, 0, t, lambda level, block: features[level][:, block], None):
            outputs.append(output)
            kl = kl + kl_t
        mean = self.decode(torch.stack(outputs, 1))
        nll = gaussian_nll(frames, mean, self.config.dec_stddev).sum((1, 2, 3, 4)).mean() / t
        kl = kl.mean() / t
        return {"loss": nll + kl, "nll": nll, "kl": kl}

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        return self.elbo(self.training_window(clip))["loss"]

    def validation_loss(self, clip: Tensor) -> Tensor:
        # Checkpoints are selected on the objective, the negative ELBO of whole validation clips.
        return self.elbo(clip)["loss"]

    def training_step(self, clip: Tensor, trainer) -> dict[str, Tensor]:
        terms = self.elbo(self.training_window(clip))
        trainer.backward(terms["loss"])
        trainer.step("model")
        return {name: value.detach() for name, value in terms.items()}

    # -- prediction --------------------------------------------------------------------------------------
    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """[B, Tc, C, 64, 64] -> [B, future, C, 64, 64], or [B, samples, future, ...] when `samples` is given."""
        b, tc, c, height, width = context.shape
        if (height, width) != (FRAME_SIZE, FRAME_SIZE):
            raise UserError(f"{type(self).registry_name}: frames must be {FRAME_SIZE}x{FRAME_SIZE}, "
                            f"got {height}x{width}")
        if tc < 1:
            raise UserError(f"{type(self).registry_name}: needs at least one context frame")
        n = 1 if samples is None else samples
        if n < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        features = self.encode(context)
        periods = self.periods

        def observe(level: int, block: int) -> Tensor | None:
            if (block + 1) * periods[level] > tc:  # the context holds only part of this block
                return None
            feature = features[level][:, block]
            return feature.repeat_interleave(n, 0) if n > 1 else feature

        state = self.initial_state(b * n, context)
        for _ in self._clock(state, 0, tc, observe, generator):
            pass
        out = context.new_empty(b * n, future, c, FRAME_SIZE, FRAME_SIZE)
        rollout = self._clock(state, tc, future, lambda level, block: None, generator)
        for start in range(0, future, DECODE_CHUNK):
            steps = min(DECODE_CHUNK, future - start)
            outputs = torch.stack([next(rollout)[0] for _ in range(steps)], 1)
            out[:, start:start + steps] = self.decode(outputs)
        return out if samples is None else out.view(b, n, future, c, FRAME_SIZE, FRAME_SIZE)


def keras_init(module: nn.Module) -> None:
    """The reference's (Keras) initialisation: glorot-uniform kernels, orthogonal GRU recurrent kernels,
    zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.GRUCell):
        nn.init.xavier_uniform_(module.weight_ih)
        nn.init.orthogonal_(module.weight_hh)
        nn.init.zeros_(module.bias_ih)
        nn.init.zeros_(module.bias_hh)
