"""MMVP (Zhong et al., ICCV 2023, "MMVP: Motion-Matrix-based Video Prediction"): motion and appearance in two
streams. An image encoder embeds each context frame; the motion matrices (cosine similarities of every feature
patch of a frame with every patch of the next frame) are the only input of the motion predictor, which predicts
the matrices of the future frames; the future features are composed from the context features with the chained
matrices, decoded, and a last enhancer refines the decoded frame together with the context pixels composed the
same way.

Follows OpenSTL's `MMVP_Model` (openstl/models/mmvp_model.py, openstl/modules/mmvp_modules.py, openstl/utils/
mmvp_utils.py), itself the authors' model.py (github.com/Kay1794/MMVP-motion-matrix-based-video-prediction):
- Frames are pixel-unshuffled by 2; the encoder (a 3x3 convolution, `rrdb_encoder_num` RRDBs of ESRGAN, then
  strided residual blocks, one per factor of `downsample_setting`, each doubling the channels) keeps its last three
  scales (scale_in_use=3): mid, high (H/8 at 2,2,2) and low (H/16).
- A filter block (three 3x3 convolutions with BatchNorm and LeakyReLU) on the high and low features; their motion
  matrices between consecutive context frames: [B, Tc-1, hw, hw], features normalised over channels.
- The motion predictor (OpenSTL's `PredictModel` with `SimpleMatrixPredictor3DConv_direct`, the one its configs
  and the authors' README choose for Moving MNIST and KTH): each row of a high matrix is an image over the next
  frame's grid, embedded by a 3x3 convolution to `hid_T` channels, through 2-D and 3-D convolutions and a 1x1
  convolution from the Tc-1 past steps to the `future` steps, back to one channel. Future step t's matrix is read
  as the motion from the last context frame to frame Tc+t ("direct"); the low one is the high one resized
  (bilinear over the target grid, bicubic over the source grid).
- Every matrix goes through a softmax over all its hw*hw entries at once (not per row), as both codes do.
- Composition: for future step t, the past matrices chained with step t's (M_0 M_1 ... M_{Tc-2} P_t: context frame
  i to frame Tc+t), and each target patch is the average of all context frames' patches weighted by them; on the
  mid features (unshuffled to the high grid), the high and low features, and the context pixels.
- Decoder: U-Net up-blocks (transposed convolution, concatenated skip, 3x3 convolution and ReLU), RRDBs, a 1x1
  readout, pixel-shuffled; the enhancer (a 3x3 convolution, `rrdb_enhance_num` RRDBs, a 1x1 readout) maps the
  decoded frame and the composed pixels to the prediction.
Trained with the MSE of the prediction (OpenSTL's `MMVP.training_step`; the authors' default loss list is
['recon'] too).

The model predicts `future` frames per pass (the predictor's width depends on it); longer rollouts run
autoregressively, each pass on the last Tc frames so far.

Where OpenSTL differs:
- Its output is `permute(0, 2, 3, 1).reshape(B, T, C, H, W)`: the authors' channels-last layout read as channels-
  first, which for C > 1 scatters each pixel's colours across the frame (harmless at C = 1, the MMNIST and KTH
  configs). vpbench keeps the channels; `openstl_channel_order=True` reproduces OpenSTL (its checkpoints of colour
  frames set it).
- Its training step runs the model on the whole clip, context and future (`self(torch.cat((batch_x, batch_y)))`),
  and the model slices the context out only after the filter block: in training the filter block's BatchNorm
  normalises with statistics that include the future frames' features (the authors' module does the same). vpbench
  trains on the context alone (a predictor does not see the future it predicts); `future_in_batchnorm=True`
  reproduces OpenSTL's step. Evaluation, with running statistics, is the same either way.
- OpenSTL interpolates features whose size does not divide evenly; vpbench asks for frames divisible by
  2 * prod(downsample_setting), for which every such interpolation is the identity, and refuses others.
- Not built: the `MatrixPredictor3DConv` predictor (`use_direct_predictor=False`, the authors' UCF Sports setting).
  OpenSTL's `scale_fuser_1/2` and `predictor.fuse_conv` are created but never called: dropped from its checkpoints.

Costs: OpenSTL's table (docs/en/model_zoos/video_benchmarks.md) has no MMVP row; tests/test_mmvp.py counts the
mmnist preset's parameters by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, Predictor, ReferenceLayout, Rule, TrainConfig, UserError, VideoSpec, later_setting,
                     register_predictor, setting, tiny_preset)


@dataclass
class MMVPConfig(TrainConfig):
    # OpenSTL's names (configs/mmnist/MMVP.py), so that its config files read across.
    hid_S: int = setting(32, "encoder channels at the finest scale (doubled at each downsampling)", COUNT)
    hid_T: int = setting(192, "channels of the motion matrix predictor", COUNT)
    rrdb_encoder_num: int = setting(2, "RRDBs of the encoder", COUNT)
    rrdb_decoder_num: int = setting(2, "RRDBs of the decoder", COUNT)
    rrdb_enhance_num: int = setting(2, "RRDBs of the image enhancer", COUNT)
    downsample_setting: tuple[int, ...] = setting((2, 2, 2), "the encoder's downsampling factors (at least two), "
                                                  "after the pixel unshuffle by 2", Rule("2 or 4", lambda v: v in (2, 4)))
    openstl_channel_order: bool = later_setting(False, "reproduce OpenSTL's output reshape, which mixes the colours "
                                                       "of C > 1 frames (its checkpoints of colour frames set it)")
    future_in_batchnorm: bool = later_setting(False, "train as OpenSTL: the whole clip through the encoder, so the "
                                                     "filter block's BatchNorm statistics include the future frames")


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x)  # 0.01, the references' nn.LeakyReLU() default


class DenseBlock(nn.Module):
    """ESRGAN's residual dense block of four convolutions (OpenSTL's `ResidualDenseBlock_4C`)."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        for i in range(4):
            out = channels if i == 3 else growth
            self.add_module(f"conv{i + 1}", nn.Conv2d(channels + i * growth, out, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for i in range(1, 4):
            conv = getattr(self, f"conv{i}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return self.conv4(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, the sum scaled by 0.2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = (DenseBlock(channels, channels // 2) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class DownBlock(nn.Module):
    """Two convolutions, the first with stride 2, beside a strided 1x1 shortcut; a factor 4 max-pools once more."""

    def __init__(self, c_in: int, c_out: int, factor: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 2, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, 2)
        self.pool = nn.MaxPool2d(2) if factor == 4 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv2(F.relu(self.conv1(x)))) + self.shortcut(x)
        return _lrelu(self.pool(y))


class UpBlock(nn.Module):
    """A transposed convolution by `factor`, the skip concatenated before it (if any), a 3x3 convolution, ReLU."""

    def __init__(self, c_in: int, c_out: int, factor: int, skip: bool) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, factor, factor)
        self.conv = nn.Conv2d(c_out * (2 if skip else 1), c_out, 3, padding=1, bias=False)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = self.up(x)
        return F.relu(self.conv(x if skip is None else torch.cat([skip, x], 1)))


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU()]


class Conv3DBN(nn.Module):
    """A 3-D convolution over [B, T, C, H, W] (time as depth), BatchNorm3d, LeakyReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(channels, channels, 3, 1, 1)
        self.bn3d = nn.BatchNorm3d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return _lrelu(self.bn3d(self.conv3d(x.transpose(1, 2)))).transpose(1, 2)


class DirectMatrixPredictor(nn.Module):
    """OpenSTL's `SimpleMatrixPredictor3DConv_direct`: [N, Tc-1, hid, h, w] embedded matrix rows -> [N * future,
    hid, h, w], a U-shaped pair of 2-D/3-D convolutions with a 1x1 convolution from past to future steps."""

    def __init__(self, past: int, future: int, hidden: int) -> None:
        super().__init__()
        self.future = future
        self.conv_pre_1, self.conv_pre_2 = (nn.Conv2d(hidden, hidden, 3, 1, 1) for _ in range(2))
        self.bn_pre_1, self.bn_pre_2 = nn.BatchNorm2d(hidden), nn.BatchNorm2d(hidden)
        self.conv1_1 = nn.Conv2d(hidden, hidden, 3, 2, 1)
        self.bn1_1 = nn.BatchNorm2d(hidden)
        self.conv3d_1 = Conv3DBN(hidden)
        self.conv_translate = nn.Sequential(nn.Conv2d(hidden * past, hidden * future, 1), nn.LeakyReLU())
        self.bn_translate = nn.BatchNorm2d(hidden * future)
        self.conv2_1 = nn.Conv2d(hidden, hidden * 2, 3, 2, 1)
        self.bn2_1 = nn.BatchNorm2d(hidden * 2)
        # One future step has no time axis to convolve: the references use a 2-D convolution there.
        self.temporal_layer = (Conv3DBN(hidden * 2) if future > 1 else
                               nn.Sequential(nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1), nn.LeakyReLU()))
        self.conv3_1 = nn.Conv2d(hidden * 3, hidden, 3, 1, 1)
        self.bn3_1 = nn.BatchNorm2d(hidden)
        self.conv4_1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.bn4_1 = nn.BatchNorm2d(hidden)

    def forward(self, x: Tensor) -> Tensor:
        n, t, c, h, w = x.shape
        x = x.reshape(n * t, c, h, w)
        x = _lrelu(self.bn_pre_2(self.conv_pre_2(_lrelu(self.bn_pre_1(self.conv_pre_1(x))))))
        x1 = _lrelu(self.bn1_1(self.conv1_1(x)))
        x1 = self.conv3d_1(x1.reshape(n, t, *x1.shape[1:]))
        x1 = self.bn_translate(self.conv_translate(x1.flatten(1, 2)))
        x1 = x1.reshape(n * self.future, c, *x1.shape[2:])
        x2 = _lrelu(self.bn2_1(self.conv2_1(x1)))
        if self.future > 1:
            x2 = self.temporal_layer(x2.reshape(n, self.future, *x2.shape[1:])).flatten(0, 1)
        else:
            x2 = self.temporal_layer(x2)
        x3 = _lrelu(self.bn3_1(self.conv3_1(torch.cat([F.interpolate(x2, size=x1.shape[2:]), x1], 1))))
        return _lrelu(self.bn4_1(self.conv4_1(F.interpolate(x3, size=(h, w)))))


class MotionPredictor(nn.Module):
    """OpenSTL's `PredictModel`: the past motion matrices [B, Tc-1, hw, hw] -> the future ones [B, future, hw, hw],
    each matrix row (one source patch) an image over the target grid."""

    def __init__(self, past: int, future: int, hidden: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.conv1 = nn.Conv2d(1, hidden, 3, padding=1, bias=False)
        self.predictor = DirectMatrixPredictor(past, future, hidden)
        self.out_conv = nn.Conv2d(hidden, 1, 3, padding=1, bias=False)

    def forward(self, matrices: Tensor) -> Tensor:
        b, t, hw, _ = matrices.shape
        x = self.conv1(matrices.reshape(b * t * hw, 1, *self.grid))
        x = x.reshape(b, t, hw, *x.shape[1:]).transpose(1, 2).flatten(0, 1)  # [B * hw, Tc-1, hid, h, w]
        out = self.out_conv(self.predictor(x))  # [B * hw * future, 1, h, w]
        return out.reshape(b, hw, -1, hw).transpose(1, 2)


def motion_matrices(features: Tensor) -> Tensor:
    """[B, T, c, h, w] -> [B, T-1, hw, hw]: cosine similarity of each patch of frame t with each of frame t+1."""
    b, t, c, h, w = features.shape
    x = features.permute(0, 1, 3, 4, 2)
    x = (x / (x.norm(dim=-1, keepdim=True) + 1e-6)).reshape(b, t, h * w, c)
    return x[:, :-1] @ x[:, 1:].transpose(-1, -2)


def joint_softmax(matrices: Tensor) -> Tensor:
    """Softmax over each matrix's hw*hw entries together (the references' `sim_matrix_postprocess`)."""
    return F.softmax(matrices.flatten(2), dim=-1).reshape(matrices.shape)


def resize_matrices(matrices: Tensor, grid: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """[B, T, hw, hw] on `grid` -> on `target`: bilinear over the target patches, then bicubic over the source ones."""
    b, t = matrices.shape[:2]
    (h, w), (th, tw) = grid, target
    x = F.interpolate(matrices.reshape(-1, 1, h, w), target, mode="bilinear")  # target axes
    x = x.reshape(b, t, h, w, th, tw).permute(0, 1, 4, 5, 2, 3).reshape(-1, 1, h, w)
    x = F.interpolate(x, target, mode="bicubic")  # source axes
    return x.reshape(b, t, th, tw, th, tw).permute(0, 1, 4, 5, 2, 3).reshape(b, t, th * tw, th * tw)


def chained(matrices: Tensor) -> Tensor:
    """[B, T, hw, hw] -> [B, T, hw, hw], entry i the product M_i M_{i+1} ... M_{T-1}: frame i to the last target."""
    products = [matrices[:, -1]]
    for i in range(matrices.shape[1] - 2, -1, -1):
        products.insert(0, matrices[:, i] @ products[0])
    return torch.stack(products, 1)


def compose(features: Tensor, past: Tensor, future: Tensor) -> Tensor:
    """Future features [B, F, c, h, w] from the context's [B, Tc, c, h, w]: for each future step, every target
    patch the average of all context patches weighted by the past matrices [B, Tc-1, hw, hw] chained with that
    step's [B, F, hw, hw]."""
    b, t, c, h, w = features.shape
    source = features.permute(0, 1, 3, 4, 2).reshape(b, t * h * w, c)
    steps = []
    for step in range(future.shape[1]):
        weights = chained(torch.cat([past, future[:, step:step + 1]], 1)).reshape(b, t * h * w, h * w)
        total = weights.sum(1).unsqueeze(-1) + 1e-6  # [B, hw, 1]
        steps.append((weights.transpose(1, 2) @ source / total).transpose(1, 2).reshape(b, c, h, w))
    return torch.stack(steps, 1)


# OpenSTL's ConvLayer wraps its convolution twice (`conv.conv.0`); the tensors it creates but never calls are
# dropped.
OPENSTL = ReferenceLayout(
    "OpenSTL", renames=((r"(dec\..*)\.conv\.conv\.0\.weight", r"\1.conv.weight"),),
    unused=r"hid\.scale_fuser_[12]\..*|hid\.predictor\.fuse_conv\.weight",
    colour_settings={"openstl_channel_order": (True, "OpenSTL's output reshape mixes the colours of C > 1 frames")})


@register_predictor("mmvp")
class MMVP(Predictor):
    """MMVP (Zhong et al. 2023): motion matrices predicted apart from appearance, future features composed from them."""

    Config = MMVPConfig
    checkpoint_layouts = (OPENSTL,)
    presets = {
        # OpenSTL configs/mmnist/MMVP.py lines 3-12 (OneCycle; 200 epochs x 625 iterations at batch 16, OpenSTL's
        # default epochs as for its other mmnist rows).
        "mmnist": dict(hid_S=32, hid_T=192, rrdb_encoder_num=2, rrdb_decoder_num=2, rrdb_enhance_num=2,
                       downsample_setting=(2, 2, 2), batch_size=16, lr=1e-3, lr_schedule="onecycle",
                       max_iterations=125_000, val_every=5_000),
        # OpenSTL configs/kth/MMVP.py lines 3-12; iterations at the harness default.
        "kth-10to20": dict(hid_S=16, hid_T=96, rrdb_encoder_num=2, rrdb_decoder_num=2, rrdb_enhance_num=2,
                           downsample_setting=(2, 2, 2), batch_size=16, lr=1e-3, lr_schedule="onecycle"),
        # CPU-sized.
        "moving-digits": dict(hid_S=8, hid_T=16, rrdb_encoder_num=1, rrdb_decoder_num=1, rrdb_enhance_num=1,
                              batch_size=8, lr=2e-3, lr_schedule="cosine", max_iterations=1000,
                              quick_iterations=200, val_every=200, grad_clip=1.0),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    # The contract's most steps (100): in 30 no size tried beat copy-last (14.78 dB) by 0.5 dB at t+1 (hid_S 8 / hid_T 4
    # / lr 1e-2 / batch 2: 14.71; 16 / 8 / 1e-2 / 4: 14.86; 8 / 8 / 3e-3 / 4: 14.88: the matrices start near uniform);
    # in 60, 14.26; in 100, 15.60.
    presets["tiny"] = tiny_preset(presets["moving-digits"], hid_S=8, hid_T=8, lr=3e-3, batch_size=4, max_iterations=100)

    def __init__(self, spec: VideoSpec, config: MMVPConfig) -> None:
        super().__init__(spec, config)
        factors = config.downsample_setting
        if len(factors) < 2:
            raise UserError(f"mmvp: downsample_setting needs at least two factors, got {list(factors)}")
        scale = 2 * math.prod(factors)
        if spec.height % scale or spec.width % scale:
            raise UserError(f"mmvp: downsample_setting={','.join(map(str, factors))} and the pixel unshuffle divide "
                            f"the frame by {scale}; {spec.height}x{spec.width} is not divisible by {scale}")
        if spec.context < 2:
            raise UserError("mmvp: motion matrices need at least 2 context frames")
        c, hid, n = spec.channels, config.hid_S, len(factors)
        high = scale // factors[-1]
        self.grids = ((spec.height // high, spec.width // high), (spec.height // scale, spec.width // scale))
        self.enc = nn.Module()
        self.enc.inconv = nn.Conv2d(4 * c, hid, 3, 1, 1)
        self.enc.block_rrdb = nn.Sequential(*(RRDB(hid) for _ in range(config.rrdb_encoder_num)))
        self.enc.pre_downsample_block = nn.ModuleList(
            DownBlock(hid * 2 ** i, hid * 2 ** (i + 1), factors[i]) for i in range(n - 2))
        self.enc.downsample_high = DownBlock(hid * 2 ** (n - 2), hid * 2 ** (n - 1), factors[-2])
        self.enc.downsample_low = DownBlock(hid * 2 ** (n - 1), hid * 2 ** n, factors[-1])
        self.filter = nn.Module()
        self.filter.filter_block = nn.ModuleList(
            nn.Sequential(*_conv_bn(hid * 2 ** (n - 1 + k), width), *_conv_bn(width, width), *_conv_bn(width, width))
            for k, width in enumerate((hid, hid * 2)))
        self.hid = nn.Module()
        self.hid.predictor = MotionPredictor(spec.context - 1, spec.future, config.hid_T, self.grids[0])
        # Decoder: low -> high with the high skip, high -> mid with the mid skip, then up without skips.
        self.dec = nn.Module()
        self.dec.upsample_block_low2high = UpBlock(hid * 2 ** n, hid * 2 ** (n - 1), factors[-1], skip=True)
        self.dec.upsample_block = nn.ModuleList(
            UpBlock(hid * 2 ** (i + 1), hid * 2 ** i, factors[i], skip=i == n - 2) for i in range(n - 2, -1, -1))
        self.dec.rrdb_block = nn.Sequential(*(RRDB(hid) for _ in range(config.rrdb_decoder_num)))
        self.dec.outc = nn.Conv2d(hid, 4 * c, 1)
        self.enhance = nn.Module()
        self.enhance.model = nn.Sequential(nn.Conv2d(2 * c, hid, 3, 1, 1),
                                           *(RRDB(hid) for _ in range(config.rrdb_enhance_num)))
        self.enhance.outconv = nn.Conv2d(hid, c, 1)

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Unshuffled frames [N, 4C, H/2, W/2] -> the mid, high and low features."""
        enc = self.enc
        features = [enc.block_rrdb(enc.inconv(x))]
        for block in (*enc.pre_downsample_block, enc.downsample_high, enc.downsample_low):
            features.append(block(features[-1]))
        return features[-3], features[-2], features[-1]

    def predict_pass(self, frames: Tensor, context: int) -> Tensor:
        """The spec's `future` frames after the first `context` of `frames` [B, T, C, H, W]. Frames after those
        (OpenSTL's training input) change nothing but the filter block's BatchNorm statistics in training."""
        b, t, c, h, w = frames.shape
        factors = self.config.downsample_setting
        pixels = F.pixel_unshuffle(frames.reshape(b * t, c, h, w), 2)
        mid, high, low = self._encode(pixels)

        def clips(x: Tensor) -> Tensor:  # [B * T, ...] -> the context's [B, Tc, ...]
            return x.reshape(b, t, *x.shape[1:])[:, :context]

        past = [motion_matrices(clips(block(x)))
                for block, x in zip(self.filter.filter_block, (high, low))]
        predicted = self.hid.predictor(past[0])
        future = (joint_softmax(predicted), joint_softmax(resize_matrices(predicted, *self.grids)))
        past = [joint_softmax(m) for m in past]

        def composed(x: Tensor, scale: int, unshuffle: int) -> Tensor:  # [B * F, ...] future features
            x = clips(F.pixel_unshuffle(x, unshuffle) if unshuffle > 1 else x)
            y = compose(x, past[scale], future[scale]).flatten(0, 1)
            return F.pixel_shuffle(y, unshuffle) if unshuffle > 1 else y

        dec = self.dec
        y = dec.upsample_block_low2high(composed(low, 1, 1), composed(high, 0, 1))
        y = dec.upsample_block[0](y, composed(mid, 0, factors[-2]))
        for block in dec.upsample_block[1:]:
            y = block(y)
        decoded = F.pixel_shuffle(dec.outc(dec.rrdb_block(y)), 2)
        moved = F.pixel_shuffle(composed(pixels, 0, math.prod(factors[:-1])), 2)
        out = self.enhance.outconv(self.enhance.model(torch.cat([decoded, moved], 1)))
        if self.config.openstl_channel_order:
            out = out.permute(0, 2, 3, 1)  # read below as [C, H, W]: OpenSTL's layout
        return out.reshape(b, -1, c, h, w)

    def forward(self, context: Tensor, future: int) -> Tensor:
        tc = self.spec.context
        if context.shape[1] != tc:
            raise UserError(f"mmvp was built for {tc} context frames, got {context.shape[1]}")
        frames = context
        while frames.shape[1] < tc + future:
            frames = torch.cat([frames, self.predict_pass(frames[:, -tc:], tc)], 1)
        return frames[:, tc:tc + future]

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        tc, horizon = self.spec.context, clip.shape[1] - self.spec.context
        if not self.config.future_in_batchnorm or horizon != self.spec.future:
            return super().training_loss(clip, iteration)
        return F.mse_loss(self.predict_pass(clip, tc), clip[:, tc:])
