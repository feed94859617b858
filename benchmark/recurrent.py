"""The shared base of patch-based recurrent predictors (ConvLSTM, PredRNN, PredRNN++, MIM, E3D-LSTM,
MotionRNN, STRPM, STIP): patching, scheduled sampling, the time loop and closed-loop rollouts are
written once here; a model only defines its initial state and one recurrent step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import COUNT, NON_NEGATIVE, PROBABILITY, TrainConfig, iterations, later_setting, setting
from .errors import UserError
from .predictor import Predictor
from .sharding import active_batch_shard
from .spec import VideoSpec


@dataclass
class RecurrentConfig(TrainConfig):
    """What `RecurrentPredictor` reads, on top of `TrainConfig`."""

    patch_size: int = setting(4, "frames are cut into patch_size x patch_size patches stacked as channels", COUNT)
    scheduled_sampling: bool = setting(True, "feed ground truth at future steps in training with a falling "
                                             "probability")
    sampling_start: float = setting(1.0, "scheduled sampling: the probability at iteration 0", PROBABILITY)
    # thuml's `sampling_changing_rate` = sampling_start / sampling_stop_iter.
    sampling_stop_iter: int = iterations(50000, "scheduled sampling: the probability falls linearly to 0 here")
    l1_weight: float = later_setting(0.0, "the training loss is MSE + l1_weight x L1 over the outputs (E3D-LSTM's "
                                          "reference: 1)", NON_NEGATIVE)


def patchify(frames: Tensor, patch: int) -> Tensor:
    """[B, T, C, H, W] -> [B, T, p*p*C, H/p, W/p] with the reference `reshape_patch` channel order
    (row offset, column offset, colour), so checkpoints trained by the reference code load as they are."""
    b, t, c, h, w = frames.shape
    x = frames.reshape(b, t, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 4, 6, 2, 3, 5)  # B, T, ph, pw, C, H/p, W/p
    return x.reshape(b, t, patch * patch * c, h // patch, w // patch)


def unpatchify(patches: Tensor, patch: int, channels: int) -> Tensor:
    """Inverse of `patchify`."""
    b, t, _, hp, wp = patches.shape
    x = patches.reshape(b, t, patch, patch, channels, hp, wp)
    x = x.permute(0, 1, 4, 5, 2, 6, 3)  # B, T, C, H/p, ph, W/p, pw
    return x.reshape(b, t, channels, hp * patch, wp * patch)


def gate_conv(in_channels: int, out_channels: int, kernel: int, grid: tuple[int, int], layer_norm: bool) -> nn.Sequential:
    """A 'same' convolution without bias, optionally followed by LayerNorm over [C, H, W]: the gate
    projection of every ConvLSTM-family cell. Kept as `Sequential` so parameter names (`conv_x.0.weight`,
    `conv_x.1.weight`) match the thuml / OpenSTL checkpoints."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)]
    if layer_norm:
        layers.append(nn.LayerNorm([out_channels, *grid]))
    return nn.Sequential(*layers)


# Summed gate convolutions run as one convolution over the concatenated inputs: the same multiply-adds in
# one kernel call instead of several plus additions. Measured on 2 CPU threads (fp32, benchmarks/speed.py):
# 1.2-1.6x faster for the convolutions of 16-64 channels (the moving-digits presets: 1.17x on the whole
# forward), but slower for 128 channels 5x5 at batch 1 (0.7x in training, where the backward of the wider
# convolution loses to two narrow ones, and 0.9-0.95x in a rollout). So the fused form is used up to this
# many weights.
FUSED_MAX_WEIGHTS = 1_000_000
_fuse_gate_convs = True


@contextlib.contextmanager
def unfused_gate_convs() -> Iterator[None]:
    """Every gate convolution on its own, as before the fused form existed: the plain path that benchmarks and
    tests compare the fast one with."""
    global _fuse_gate_convs
    saved, _fuse_gate_convs = _fuse_gate_convs, False
    try:
        yield
    finally:
        _fuse_gate_convs = saved


def summed_gate_convs(owner: nn.Module, convs: Sequence[nn.Sequential], inputs: Sequence[Tensor]) -> Tensor:
    """`sum(conv(x) for conv, x in zip(convs, inputs))` for `gate_conv`s with equal outputs: as one convolution
    over the inputs concatenated along channels when none has a LayerNorm (which normalises each term on its
    own). Without gradients the concatenated weight is built once per weight update and kept on `owner` (not
    as a parameter: parameters and checkpoints keep the separate convolutions)."""
    layers = [conv[0] for conv in convs]
    weights = [layer.weight for layer in layers]
    fusable = (_fuse_gate_convs and all(len(conv) == 1 for conv in convs)
               and sum(w.numel() for w in weights) <= FUSED_MAX_WEIGHTS)
    if not fusable:
        total = convs[0](inputs[0])
        for conv, x in zip(convs[1:], inputs[1:]):
            total = total + conv(x)
        return total
    weight = _concatenated_weight(owner, weights)
    return F.conv2d(torch.cat(list(inputs), dim=1), weight, padding=layers[0].padding)


def _concatenated_weight(owner: nn.Module, weights: list[Tensor]) -> Tensor:
    # With gradients each call builds its own (cheap: only small weights fuse), so every graph owns its
    # concatenation; so does a compiled step, where the compiler folds it in.
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return torch.cat(weights, dim=1)
    device_type = weights[0].device.type
    cast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    # A weight's version changes with every in-place update (optimizer steps, load_state_dict), its data
    # pointer with .to(); autocast decides the dtype the cached tensor has.
    key = (torch.is_inference_mode_enabled(), cast, tuple((w.data_ptr(), w._version, w.dtype) for w in weights))
    cached = owner.__dict__.get("_fused_gate_weight")
    if cached is None or cached[0] != key:
        weight = torch.cat(weights, dim=1)
        cached = (key, weight if cast is None else weight.to(cast))
        owner.__dict__["_fused_gate_weight"] = cached
    return cached[1]


class RecurrentPredictor(Predictor):
    """Base class: subclasses implement `init_state` and `step` on patch tensors."""

    Config = RecurrentConfig

    def __init__(self, spec: VideoSpec, config: RecurrentConfig) -> None:
        super().__init__(spec, config)
        p = config.patch_size
        if p < 1 or spec.height % p or spec.width % p:
            raise UserError(f"{self.registry_name}: patch_size {p} does not divide the frame size "
                            f"{spec.height}x{spec.width}")
        self.patch_channels = spec.channels * p * p
        self.grid = (spec.height // p, spec.width // p)

    # --- what a model defines -------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Any:
        raise NotImplementedError

    def step(self, frame: Tensor, state: Any) -> tuple[Tensor | None, Any]:
        """One time step: patch frame [B, p*p*C, H/p, W/p] -> prediction of the next frame, new state.
        A step that predicts nothing (an encoder-forecaster's encoding steps) returns None; `forward`
        keeps outputs only from the last context step on, so such steps must come before it."""
        raise NotImplementedError

    # --- the time loop, shared -----------------------------------------------------------------
    def unroll(self, truth: Tensor, steps: int, feed_truth: Tensor, keep_from: int = 0) -> Tensor:
        """`rollout` without the final state."""
        return self.rollout(truth, steps, feed_truth, keep_from)[0]

    def rollout(self, truth: Tensor, steps: int, feed_truth: Tensor, keep_from: int = 0) -> tuple[Tensor, Any]:
        """Run `steps` recurrent steps over patch frames `truth` [B, T, F, h, w]; return the kept
        predictions and the final state (which may carry auxiliary terms, e.g. PredRNN-V2's decoupling loss).

        The input at step t is `feed_truth[:, t] * truth[:, t] + (1 - feed_truth[:, t]) * previous
        prediction`; `feed_truth` is [B, steps] in {0, 1} (scheduled sampling) and must be 1 wherever no
        earlier prediction exists. Steps beyond the end of `truth` always feed the prediction back, so a
        closed-loop rollout of any horizon needs no ground truth. Only outputs from step `keep_from` on
        are kept, which keeps long rollouts' memory flat.
        """
        batch = truth.shape[0]
        state = self.init_state(batch, truth.device, truth.dtype)
        prediction: Tensor | None = None
        kept = []
        # Which steps feed truth, prediction or a mix is decided on the host from one copy of the mask, so the
        # loop never waits for the device (a CPU mask, as `forward` passes, is not copied at all).
        all_truth, no_truth = (feed_truth == 1).all(dim=0).tolist(), (feed_truth == 0).all(dim=0).tolist()
        for t in range(steps):
            if t >= truth.shape[1]:
                frame = prediction
            elif prediction is None or all_truth[t]:
                frame = truth[:, t]
            elif no_truth[t]:
                frame = prediction
            else:
                use = feed_truth[:, t].to(truth.device, truth.dtype).view(batch, 1, 1, 1)
                frame = use * truth[:, t] + (1 - use) * prediction
            prediction, state = self.step(frame, state)
            if t >= keep_from:
                kept.append(prediction)
        return torch.stack(kept, dim=1), state

    def forward(self, context: Tensor, future: int) -> Tensor:
        """Closed-loop prediction of `future` frames after `context` [B, Tc, C, H, W]."""
        p, tc = self.config.patch_size, context.shape[1]
        truth = patchify(context, p)
        feed = torch.ones(context.shape[0], tc)  # on the host: the rollout reads it there
        out = self.unroll(truth, tc + future - 1, feed, keep_from=tc - 1)
        return unpatchify(out, p, self.spec.channels)

    def sampling_probability(self, iteration: int) -> float:
        """Probability of feeding ground truth at future steps during training."""
        cfg = self.config
        if not cfg.scheduled_sampling:
            return 0.0
        return max(0.0, cfg.sampling_start * (1.0 - iteration / max(1, cfg.sampling_stop_iter)))

    def sampling_mask(self, iteration: int, batch: int, length: int, device: torch.device) -> Tensor:
        """[B, length - 1]: 1 where the step is fed ground truth (`draw_sampling_mask`). In a training step of a
        multi-process run the mask is drawn for the global batch, the same draws on every rank from the shared
        RNG, and this rank's rows are kept: each clip gets the mask a 1-process run would give it."""
        shard = active_batch_shard(batch)
        if shard is None:
            return self.draw_sampling_mask(iteration, batch, length, device)
        return self.draw_sampling_mask(iteration, shard.global_size, length, device)[shard.start:shard.stop]

    def draw_sampling_mask(self, iteration: int, batch: int, length: int, device: torch.device) -> Tensor:
        """The mask of `batch` clips: context steps are always fed truth, future steps with the scheduled-
        sampling probability (PredRNN-V2's reverse schedule overrides this)."""
        mask = torch.ones(batch, length - 1, device=device)
        sampled = length - 1 - self.spec.context
        if sampled > 0:
            eta = self.sampling_probability(iteration)
            mask[:, self.spec.context:] = (torch.rand(batch, sampled, device=device) < eta).float()
        return mask

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        """MSE over all T-1 outputs, reconstructions of context frames included, as the references train,
        plus `auxiliary_loss` of the final state."""
        truth = patchify(clip, self.config.patch_size)
        mask = self.sampling_mask(iteration, clip.shape[0], clip.shape[1], clip.device)
        out, state = self.rollout(truth, clip.shape[1] - 1, mask)
        return self.frame_loss(out, truth[:, 1:]) + self.auxiliary_loss(state)

    def auxiliary_loss(self, state: Any) -> Tensor | float:
        """Terms a model adds to the reconstruction loss from what its steps gathered (e.g. decoupling)."""
        return 0.0

    def frame_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The reconstruction loss of the outputs: MSE, plus `l1_weight` x L1 when set."""
        loss = F.mse_loss(prediction, target)
        return loss + self.config.l1_weight * F.l1_loss(prediction, target) if self.config.l1_weight else loss
