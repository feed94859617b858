"""The shared base of patch-based recurrent predictors (ConvLSTM, PredRNN, PredRNN++, MIM, E3D-LSTM,
MotionRNN, STRPM, STIP): patching, scheduled sampling, the time loop and closed-loop rollouts are
written once here; a model only defines its initial state and one recurrent step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import COUNT, NON_NEGATIVE, PROBABILITY, TrainConfig, iterations, later_setting, setting
from .errors import UserError
from .layers import patchify, unpatchify
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
