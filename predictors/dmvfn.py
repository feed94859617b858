"""DMVFN (Hu et al., CVPR 2023, "A Dynamic Multi-Scale Voxel Flow Network for Video Prediction"): the next frame is
the two last frames warped by a voxel flow and blended by a mask, the flow and mask refined by a stack of multi-scale
voxel flow blocks (MVFBs), of which a routing module picks a different sub-network for each input.

Follows OpenSTL's DMVFN (branch OpenSTLv0.3.0: openstl/models/dmvfn_model.py, openstl/modules/dmvfn_modules.py,
openstl/methods/dmvfn.py, openstl/utils/dmvfn_utils.py), which is the authors' code (hzwer/CVPR2023-DMVFN,
model/arch.py) with the number of blocks, their widths and scales made settings:
- Each block sees both frames, both frames warped by the flow so far, the mask so far (4 C + 1 channels) and the
  flow (4 channels: one 2-D flow per frame). A coarse branch shrinks them by the block's `scale`, then two stride-2
  3x3 convolutions, three 3x3 convolutions with a residual and a squeeze to a quarter of the width, upsampled back to
  half the frame; a fine branch, a stride-2 and a plain 3x3 convolution (8 channels) on the full frames; a transposed
  4x4 convolution of both gives the block's flow and mask increments. Every convolution but the last is followed
  by a PReLU.
- The routing module (two 3x3 convolutions, a ReLU between, global average pooling, a linear layer, a sigmoid) reads
  the two frames and gives each block a probability, scaled so that they sum to beta x num_block (clamped to [0, 1]);
  each block's gate is a Bernoulli sample of its probability (the paper's Fig. 2 (d), a "differentiable Bernoulli
  sample": in both references a straight-through estimator passes the gate's gradient to the probability; there is
  no Gumbel-softmax).
- Training (`training_loss`): every block runs on every consecutive triple of the clip (two frames in, the third the
  target, teacher forced), the flow and mask accumulating each block's increment times its gate; block i's output is
  the frames warped as if it had run on the accumulated state (the last block's: the accumulated state itself), and
  the loss is the sum over blocks of gamma^(num_block - 1 - i) x the L1 distance of Laplacian pyramids (5 levels for
  frames wider than 32 pixels, else 3, as OpenSTL).
- Test (`forward`): closed loop from the last two context frames; each sequence draws its gates, the blocks whose
  gate is 0 are skipped (the dynamic sub-network), and the prediction is the last run block's blend, clamped to [0, 1]
  (or, where no block ran, the older of the two frames, as both references do).
The gates are random at test too (both references draw them there as in training), so this is a stochastic predictor:
`--samples N` draws N routings per test sequence, every draw from the evaluation's seeded generator.

What differs from OpenSTL, and the settings that reproduce it:
- OpenSTL (and the authors' code) skip a block at test when the batch's FIRST sequence's gate is 0 (`ref[0, i]`), so
  a sequence's prediction depends on which sequences share its batch. Each sequence follows its own gates here, the
  paper's per-input sub-networks; `reference_routing=true` routes a batch by its first sequence as OpenSTL does. The
  weights do not depend on it (training gates per sequence in both), so OpenSTL checkpoints do not set it.
- Training: OpenSTL's `train_one_epoch` takes one optimizer step per triple (18 per 20-frame batch) while it zeroes the
  gradients once per batch, so each step applies the sum of the gradients of the triples so far; the authors train
  on batches of 3-frame clips, one step each. Here one step per batch on the mean loss over all its triples (the
  authors' step on a batch of B x (T - 2) triples), so the schedule counts batches as every vpbench predictor.
  OpenSTL's stepping is not reproduced: the harness steps a schedule with each optimizer step, once an iteration.
- Left out: the perceptual term of the loss, 0.5 (`coef`) x the distance of ImageNet VGG19 features (OpenSTL's and the
  authors' `VGGPerceptualLoss`), whose weights vpbench does not download; the authors' AdamW with warm-up and cosine
  (OpenSTL uses Adam with its configs' schedules, as the presets here).
OpenSTL's checkpoints (`checkpoint.pth`: the model's bare state dict, as its Recorder saves the best model; or a
`latest.pth` of a run, the state dict under `state_dict`) load through `checkpoint_layouts`.

Costs: OpenSTL's table counts one frame with every block run (its FLOP count traces a training forward: 0.2G at
mmnist), vpbench counts the whole rollout with the blocks its routing draws (`count_flops` draws from a fixed seed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, PROBABILITY, ReferenceLayout, Rule, StochasticConfig, StochasticPredictor, UserError,
                     VideoSpec, at_least, register_predictor, setting, tiny_preset)

ROUTING_EPS = 1e-6  # OpenSTL's, in the routing's normalisation
FINE_CHANNELS = 8  # the width of each block's full-resolution branch, fixed in both references


@dataclass
class DMVFNConfig(StochasticConfig):
    # OpenSTL's names, so that its config files read across.
    num_block: int = setting(9, "multi-scale voxel flow blocks", COUNT)
    num_features: tuple[int, ...] = setting((160, 160, 160, 80, 80, 80, 44, 44, 44),
                                            "each block's coarse-branch width (one per block)", at_least(4))
    scale: tuple[int, ...] = setting((4, 4, 4, 2, 2, 2, 1, 1, 1),
                                     "the factor each block's coarse branch shrinks the frames by (one per block)",
                                     COUNT)
    routing_out_channels: int = setting(32, "routing module channels", COUNT)
    beta: float = setting(0.5, "routing: the gates' probabilities sum to beta x num_block (the expected share of "
                               "blocks a prediction runs, before clamping)", Rule("in (0, 1]", lambda v: 0 < v <= 1))
    gamma: float = setting(0.8, "loss: block i's Laplacian L1 weighs gamma^(num_block - 1 - i)", PROBABILITY)
    reference_routing: bool = setting(False, "test: route a whole batch by its first sequence's gates, as OpenSTL's "
                                             "and the authors' `ref[0, i]` (False: each sequence by its own)")


def conv_prelu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1) and a PReLU per channel."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.PReLU(c_out))


class VoxelFlowBlock(nn.Module):
    """One MVFB: flow and mask increments [B, 4, H, W], [B, 1, H, W] from the frames and warps `x` and the flow."""

    def __init__(self, c_in: int, width: int) -> None:
        super().__init__()
        self.coarse = nn.Sequential(conv_prelu(c_in, width // 2, stride=2), conv_prelu(width // 2, width, stride=2))
        self.body = nn.Sequential(*(conv_prelu(width, width) for _ in range(3)))
        self.squeeze = conv_prelu(width, width // 4)
        self.fine = conv_prelu(c_in, FINE_CHANNELS, stride=2)
        self.fine_body = conv_prelu(FINE_CHANNELS, FINE_CHANNELS)
        self.head = nn.ConvTranspose2d(width // 4 + FINE_CHANNELS, 5, 4, stride=2, padding=1)

    def forward(self, x: Tensor, flow: Tensor, scale: int) -> tuple[Tensor, Tensor]:
        small_x, small_flow = x, flow
        if scale != 1:
            small_x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
            # a flow measured in pixels shrinks with the frame
            small_flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
        coarse = self.coarse(torch.cat([small_x, small_flow], 1))
        coarse = self.squeeze(self.body(coarse) + coarse)
        coarse = F.interpolate(coarse, scale_factor=scale * 2, mode="bilinear", align_corners=False)
        fine = self.fine_body(self.fine(torch.cat([x, flow], 1)))
        out = self.head(torch.cat([coarse, fine], 1))
        return out[:, :4], out[:, 4:5]


def warp(frames: Tensor, flow: Tensor) -> Tensor:
    """`frames` [B, C, H, W] sampled at each pixel plus `flow` [B, 2, H, W] (x, y in pixels), bilinear, borders
    repeated (the references' backward warp)."""
    b, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, 1, w).expand(b, -1, h, -1)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, 1, h, 1).expand(b, -1, -1, w)
    # pixels to grid_sample's [-1, 1] coordinates
    shift = torch.cat([flow[:, 0:1] / ((frames.shape[3] - 1.0) / 2.0),
                       flow[:, 1:2] / ((frames.shape[2] - 1.0) / 2.0)], 1)
    grid = (torch.cat([xs, ys], 1) + shift).permute(0, 2, 3, 1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)


def blend(img0: Tensor, img1: Tensor, flow: Tensor, mask: Tensor) -> Tensor:
    """The prediction of a flow and mask: each frame warped by its half of the flow, mixed by sigmoid(mask)."""
    weight = torch.sigmoid(mask)
    return (warp(img0, flow[:, :2]) * weight + warp(img1, flow[:, 2:4]) * (1 - weight)).clamp(0, 1)


class _BernoulliGate(torch.autograd.Function):
    """A Bernoulli sample of each probability; its gradient passed to the probability unchanged (straight through)."""

    @staticmethod
    def forward(ctx, probabilities: Tensor, generator: torch.Generator | None) -> Tensor:  # noqa: ANN001
        return torch.bernoulli(probabilities, generator=generator)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001
        return grad, None


def gauss_kernel(channels: int, device: torch.device) -> Tensor:
    """The 5x5 binomial blur, one per channel [C, 1, 5, 5]."""
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device)
    return (taps[:, None] * taps[None, :] / 256.0).expand(channels, 1, 5, 5)


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_pyramid(frames: Tensor, levels: int) -> list[Tensor]:
    """`levels` band-pass images: at each level the frames minus their blurred, halved and re-expanded selves (zeros
    between the samples, blurred x4); the next level works on the halved frames."""
    kernel = gauss_kernel(frames.shape[1], frames.device)
    bands = []
    for _ in range(levels):
        down = _blur(frames, kernel)[:, :, ::2, ::2]
        up = down.new_zeros(frames.shape)
        up[:, :, ::2, ::2] = down
        bands.append(frames - _blur(up, 4 * kernel))
        frames = down
    return bands


def laplacian_l1(prediction: Tensor, target: Tensor, levels: int) -> Tensor:
    """OpenSTL's `LapLoss`: the sum over the pyramids' levels of the mean absolute difference."""
    return sum(F.l1_loss(a, b) for a, b in zip(laplacian_pyramid(prediction, levels),
                                                laplacian_pyramid(target, levels)))


def _take(full: Tensor, rows: Tensor | None) -> Tensor:
    """`full`'s `rows` (all of them when None)."""
    return full if rows is None else full.index_select(0, rows)


def _put(full: Tensor, rows: Tensor | None, part: Tensor) -> Tensor:
    """`full` with `part` in place of its `rows` (all of them when None)."""
    return part if rows is None else full.index_copy(0, rows, part)


# OpenSTLv0.3.0's DMVFN_Model: the blocks as `stu.N` with OpenSTL's part names, the routing as `routing.routing` and
# `l1`. Its runs save bare state dicts (Recorder: checkpoint.pth) and {"state_dict": ...} (latest.pth), unprefixed.
OPENSTL_PARTS = {"conv0": "coarse", "convblock": "body", "conv_sq": "squeeze", "conv1.0": "fine",
                 "convblock1.0": "fine_body", "lastconv": "head"}
OPENSTL = ReferenceLayout(
    "OpenSTL",
    renames=((r"stu\.(\d+)\.(conv0|convblock|conv_sq|conv1\.0|convblock1\.0|lastconv)\.(.*)",
              lambda m: f"blocks.{m[1]}.{OPENSTL_PARTS[m[2]]}.{m[3]}"),
             (r"routing\.routing\.(.*)", r"router.\1"),
             (r"l1\.(.*)", r"router_head.\1")),
    recognise=r"stu\.\d+\.lastconv\.weight")

MODEL = dict(routing_out_channels=32, num_block=9, num_features=(160, 160, 160, 80, 80, 80, 44, 44, 44),
             scale=(4, 4, 4, 2, 2, 2, 1, 1, 1), beta=0.5, gamma=0.8)
# CPU-sized (a few minutes on two cores): four blocks, one per scale and two at the finest, narrow; trained on the
# triples of the context and the first future frame (9 a clip, one step ahead as every triple), a quarter of the
# mmnist routing width, whose full-frame convolutions would otherwise cost as much as the blocks.
MOVING_DIGITS = dict(routing_out_channels=8, num_block=4, num_features=(32, 24, 16, 16), scale=(4, 2, 1, 1), beta=0.5,
                     gamma=0.8, batch_size=4, train_horizon=1, lr=5e-3, lr_schedule="cosine", max_iterations=500,
                     quick_iterations=100, val_every=100, grad_clip=1.0)


@register_predictor("dmvfn")
class DMVFN(StochasticPredictor):
    """DMVFN (Hu et al. 2023): routed multi-scale voxel flow blocks warp and blend the last two frames."""

    Config = DMVFNConfig
    checkpoint_layouts = (OPENSTL,)
    fully_convolutional = True
    presets = {
        # OpenSTL (branch OpenSTLv0.3.0) configs/mmnist/DMVFN.py lines 3-16 (its 3.5M / 0.2G row; coef=0.5, the
        # perceptual term, left out): OneCycle, 200 epochs x 625 iterations.
        "mmnist": dict(MODEL, batch_size=16, lr=1e-4, lr_schedule="onecycle", max_iterations=125_000, val_every=5_000),
        # configs/kth/DMVFN.py lines 3-16 and configs/human/DMVFN.py lines 3-17 (RGB: in_planes 4 * 3 + 1 + 4, which
        # vpbench derives from the frames); iterations at the harness default.
        "kth-10to20": dict(MODEL, batch_size=16, lr=5e-5, lr_schedule="onecycle"),
        "human36m-openstl": dict(MODEL, batch_size=16, lr=1e-3, lr_schedule="cosine"),
        "moving-digits": MOVING_DIGITS,
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(MOVING_DIGITS, routing_out_channels=8, num_block=3, num_features=(16, 12, 8),
                                  scale=(4, 2, 1), train_horizon=0, lr=1e-2, max_iterations=60)

    def __init__(self, spec: VideoSpec, config: DMVFNConfig) -> None:
        super().__init__(spec, config)
        n = config.num_block
        if spec.context < 2:
            raise UserError(f"dmvfn predicts from the last two frames; the protocol's context is {spec.context}")
        if len(config.num_features) != n or len(config.scale) != n:
            raise UserError(f"dmvfn: num_features ({len(config.num_features)} values) and scale "
                            f"({len(config.scale)}) must give one value per block (num_block={n})")
        self.levels = 5 if spec.width > 32 else 3  # OpenSTL's Laplacian pyramid depth
        side = max(4 * max(config.scale), 2 ** self.levels)
        if spec.height % side or spec.width % side:
            raise UserError(f"dmvfn: frames {spec.height}x{spec.width} must be divisible by {side} (four times the "
                            f"largest scale, {max(config.scale)}, and 2^{self.levels} for the Laplacian loss)")
        c = spec.channels
        self.blocks = nn.ModuleList(VoxelFlowBlock(4 * c + 1 + 4, width) for width in config.num_features)
        self.router = nn.Sequential(nn.Conv2d(2 * c, config.routing_out_channels, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(config.routing_out_channels, config.routing_out_channels, 3, padding=1),
                                    nn.AdaptiveAvgPool2d(1))
        self.router_head = nn.Linear(config.routing_out_channels, n)

    def route(self, img0: Tensor, img1: Tensor) -> Tensor:
        """Each block's probability of running [B, num_block]."""
        v = torch.sigmoid(self.router_head(self.router(torch.cat([img0, img1], 1)).flatten(1)))
        v = self.config.beta * self.config.num_block * v / (v.sum(1, keepdim=True) + ROUTING_EPS)
        return v.clamp(0, 1)

    def block_outputs(self, img0: Tensor, img1: Tensor) -> list[Tensor]:
        """Training: every block run, its increments gated; each block's prediction (see the module docstring)."""
        gates = _BernoulliGate.apply(self.route(img0, img1), None)
        flow = img0.new_zeros(img0.shape[0], 4, *img0.shape[2:])
        mask = img0.new_zeros(img0.shape[0], 1, *img0.shape[2:])
        warped0, warped1 = img0, img1
        outputs = []
        for i, (block, scale) in enumerate(zip(self.blocks, self.config.scale)):
            flow_d, mask_d = block(torch.cat([img0, img1, warped0, warped1, mask], 1), flow, scale)
            gate = gates[:, i].view(-1, 1, 1, 1)
            if i < len(self.blocks) - 1:
                outputs.append(blend(img0, img1, flow + flow_d, mask + mask_d))
            flow, mask = flow + flow_d * gate, mask + mask_d * gate
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        outputs.append(blend(img0, img1, flow, mask))
        return outputs

    def next_frame(self, img0: Tensor, img1: Tensor, generator: torch.Generator | None) -> Tensor:
        """Test: the frame after `img1`, each sequence through the blocks its gates pick."""
        gates = torch.bernoulli(self.route(img0, img1), generator=generator)
        if self.config.reference_routing:
            gates = gates[:1].expand_as(gates)
        batch = img0.shape[0]
        flow = img0.new_zeros(batch, 4, *img0.shape[2:])
        mask = img0.new_zeros(batch, 1, *img0.shape[2:])
        warped0, warped1 = img0, img1
        ran = torch.zeros(batch, dtype=torch.bool, device=img0.device)
        for i, (block, scale) in enumerate(zip(self.blocks, self.config.scale)):
            on = gates[:, i] > 0
            if not on.any():
                continue
            # only the sequences that run the block compute it
            rows = None if on.all() else on.nonzero().squeeze(1)
            i0, i1, old_flow, old_mask = (_take(t, rows) for t in (img0, img1, flow, mask))
            x = torch.cat([i0, i1, _take(warped0, rows), _take(warped1, rows), old_mask], 1)
            flow_d, mask_d = block(x, old_flow, scale)
            new_flow = old_flow + flow_d
            flow, mask = _put(flow, rows, new_flow), _put(mask, rows, old_mask + mask_d)
            warped0 = _put(warped0, rows, warp(i0, new_flow[:, :2]))
            warped1 = _put(warped1, rows, warp(i1, new_flow[:, 2:4]))
            ran = ran | on
        weight = torch.sigmoid(mask)
        prediction = (warped0 * weight + warped1 * (1 - weight)).clamp(0, 1)
        return torch.where(ran.view(-1, 1, 1, 1), prediction, img0)

    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        if context.shape[1] < 2:
            raise UserError(f"dmvfn predicts from the last two frames; got a context of {context.shape[1]}")
        batch = context.shape[0]
        frames = context[:, -2:] if samples is None else context[:, -2:].repeat_interleave(samples, 0)
        img0, img1 = frames[:, 0], frames[:, 1]
        predicted = []
        for _ in range(future):
            img0, img1 = img1, self.next_frame(img0, img1, generator)
            predicted.append(img1)
        out = torch.stack(predicted, 1)
        return out if samples is None else out.view(batch, samples, *out.shape[1:])

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        # Every consecutive triple of the clip at once, a batch of B x (T - 2): the mean of their losses.
        img0, img1, target = (clip[:, i: clip.shape[1] - 2 + i].flatten(0, 1) for i in range(3))
        outputs = self.block_outputs(img0, img1)
        n = len(outputs)
        return sum(self.config.gamma ** (n - 1 - i) * laplacian_l1(out, target, self.levels)
                   for i, out in enumerate(outputs))
