"""SimVP (Gao et al., CVPR 2022; SimVP.V2 / gSTA: Tan et al. 2022): a convolutional encoder, a translator
and a decoder that map the Tc context frames to the next Tc frames in one pass.

Follows OpenSTL's `SimVP_Model` (openstl/models/simvp_model.py, openstl/modules/simvp_modules.py):
- Encoder: N_S ConvSC blocks (3x3 conv, GroupNorm(2), SiLU), every second one with stride 2, applied to
  each frame; the first block's output is kept as a skip.
- Translator on the frames stacked along channels, [B, Tc * hid_S, H / 2^(N_S/2), W / 2^(N_S/2)], chosen by
  `translator` among OpenSTL's twelve `model_type`s:
  `incepu` (SimVP.V1): N_T Inception blocks down and N_T up with U-Net skips, each a 1x1 convolution
  then grouped 3/5/7/11 convolutions with GroupNorm and LeakyReLU(0.2), summed;
  `gsta` (SimVP.V2): N_T gated spatiotemporal attention blocks (large-kernel attention and a
  convolutional MLP, BatchNorm, layer scale, stochastic depth); `van`: the same with VAN's multiplicative
  large-kernel attention; the MetaFormer blocks of OpenSTL's MetaVP benchmark (`convmixer`, `convnext`, `hornet`,
  `mlpmixer`, `moganet`, `poolformer`, `swin`, `uniformer`, `vit`: predictors/_metaformer.py), N_T of them, the
  first reducing to hid_T and the last expanding back with a 1x1 convolution.
- Decoder: ConvSC blocks with PixelShuffle upsampling, the skip added before the last block, a 1x1 readout.
Trained with the MSE of the prediction (the harness's default step).

For `future != Tc` the model rolls out autoregressively in chunks of Tc frames, each chunk predicted
from the previous one, and the last chunk is cut to length, as OpenSTL's `SimVP._predict` does (in
training too, so a 10 -> 20 protocol back-propagates through two passes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn


from vpbench import (COUNT, EVEN, ODD, POSITIVE, Predictor, ReferenceLayout, TrainConfig, UserError, VideoSpec,
                     at_least, between, later_setting, register_predictor, setting, tiny_preset)
from vpbench.predictors._metaformer import METAFORMERS, MetaLayer, metaformer_block

# timm.layers is imported where a block is built, not here: it imports torchvision (about 2 s of start-up), and
# every `bench` command that reads predictor names imports every built-in predictor.

Translator = Literal["incepu", "gsta", "convmixer", "convnext", "hornet", "mlpmixer", "moganet", "poolformer", "swin",
                     "uniformer", "van", "vit"]
# Their blocks split channels into 8 heads (swin, uniformer, vit) or 8 parts (hornet's order-4 pyramid, moganet).
WIDTH_IN_EIGHTS = ("hornet", "moganet", "swin", "uniformer", "vit")


@dataclass
class SimVPConfig(TrainConfig):
    # OpenSTL's names, so that its config files read across.
    hid_S: int = setting(64, "spatial encoder channels", COUNT)
    hid_T: int = setting(512, "translator channels", COUNT)
    N_S: int = setting(4, "spatial encoder / decoder blocks (every second one halves the frame)", EVEN)
    N_T: int = setting(8, "translator blocks", at_least(2))
    spatio_kernel_enc: int = setting(3, "encoder kernel", ODD)
    spatio_kernel_dec: int = setting(3, "decoder kernel", ODD)
    translator: Translator = setting("incepu", "incepu (SimVP v1), gsta (SimVP v2), or one of OpenSTL's MetaFormer "
                                     "translators: convmixer, convnext, hornet, mlpmixer, moganet, poolformer, swin, "
                                     "uniformer, van, vit")
    mlp_ratio: float = setting(8.0, "all but incepu: MLP expansion ratio", POSITIVE)
    drop: float = setting(0.0, "all but incepu: dropout rate", between(0, 1, high_open=True))
    drop_path: float = setting(0.0, "all but incepu: stochastic depth rate", between(0, 1, high_open=True))
    swin_mask: bool = later_setting(True, "swin: mask the shifted windows' wrap-around as Swin does (False: OpenSTL, "
                                          "whose SwinSubBlock attends across it; its checkpoints set it)")


class ConvSC(nn.Module):
    """3x3 convolution (stride 2 to downsample, x4 channels and PixelShuffle(2) to upsample), GroupNorm(2), SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, down: bool = False, up: bool = False) -> None:
        super().__init__()
        stride = 2 if down else 1
        padding = (kernel - stride + 1) // 2
        conv = nn.Conv2d(c_in, c_out * 4 if up else c_out, kernel, stride=stride, padding=padding)
        nn.init.trunc_normal_(conv.weight, std=0.02)
        nn.init.zeros_(conv.bias)
        self.conv = nn.Sequential(conv, nn.PixelShuffle(2)) if up else conv
        self.norm = nn.GroupNorm(2, c_out)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class InceptionBlock(nn.Module):
    """OpenSTL's `gInception_ST`: 1x1 to c_hid, then the sum of grouped k x k convolutions (k in 3, 5, 7, 11),
    each followed by GroupNorm and LeakyReLU(0.2)."""

    def __init__(self, c_in: int, c_hid: int, c_out: int, kernels: tuple[int, ...] = (3, 5, 7, 11), groups: int = 8) -> None:
        super().__init__()
        groups = groups if c_hid % groups == 0 else 1
        self.conv1 = nn.Conv2d(c_in, c_hid, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_hid, c_out, k, padding=k // 2, groups=groups), nn.GroupNorm(groups, c_out),
                          nn.LeakyReLU(0.2))
            for k in kernels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return sum(branch(x) for branch in self.branches)


class InceptionTranslator(nn.Module):
    """SimVP.V1's U-shaped stack: N_T Inception blocks down, N_T up, each up block but the first fed the
    concatenation with the matching down block's output."""

    def __init__(self, channels: int, hidden: int, blocks: int) -> None:
        super().__init__()
        half = hidden // 2
        self.enc = nn.ModuleList(InceptionBlock(channels if i == 0 else hidden, half, hidden) for i in range(blocks))
        self.dec = nn.ModuleList(
            InceptionBlock(hidden if i == 0 else 2 * hidden, half, channels if i == blocks - 1 else hidden)
            for i in range(blocks))

    def forward(self, z: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            z = block(z)
            if i < len(self.enc) - 1:
                skips.append(z)
        z = self.dec[0](z)
        for block in self.dec[1:]:
            z = block(torch.cat([z, skips.pop()], dim=1))
        return z


def _fan_out_normal_(module: nn.Module) -> None:
    """OpenSTL's gSTA initialisation: conv weights N(0, 2 / fan_out), biases zero."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class LargeKernelAttention(nn.Module):
    """Depth-wise 5x5, depth-wise 7x7 with dilation 3 (a 21x21 field), then 1x1, used as:
    `gsta`: a value and a sigmoid gate (1x1 to twice the width); `van`: a multiplier of the input (VAN's LKA);
    `tau`: a multiplier of the input, times a squeeze-excitation over channels (TAU's temporal attention, its
    bottleneck dim // max(dim // 16, 4) wide as OpenSTL's TemporalAttentionModule)."""

    def __init__(self, dim: int, kind: Literal["gsta", "van", "tau"] = "gsta") -> None:
        super().__init__()
        self.kind = kind
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, 2 * dim if kind == "gsta" else dim, 1)
        if kind == "tau":
            squeezed = dim // max(dim // 16, 4)
            self.fc = nn.Sequential(nn.Linear(dim, squeezed, bias=False), nn.ReLU(), nn.Linear(squeezed, dim, bias=False),
                                    nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        attn = self.conv1(self.conv_spatial(self.conv0(x)))
        if self.kind == "gsta":
            value, gate = torch.chunk(attn, 2, dim=1)
            return torch.sigmoid(gate) * value
        if self.kind == "tau":
            attn = attn * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]
        return attn * x


class GSTABlock(nn.Module):
    """SimVP.V2's gated spatiotemporal attention block (OpenSTL's `GASubBlock`, kernel 21; with `kind` "van" its
    `VANSubBlock`, "tau" its `TAUSubBlock`), optionally followed by a 1x1 convolution to another width (OpenSTL's
    `MetaBlock` reduction)."""

    def __init__(self, dim: int, out: int, mlp_ratio: float, drop: float, drop_path: float,
                 kind: Literal["gsta", "van", "tau"] = "gsta") -> None:
        from timm.layers import DropPath
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.BatchNorm2d(dim)
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.spatial_gating_unit = LargeKernelAttention(dim, kind)
        self.proj_2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
                                 nn.GELU(), nn.Dropout(drop), nn.Conv2d(hidden, dim, 1), nn.Dropout(drop))
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-2))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.apply(_fan_out_normal_)
        self.reduction = nn.Conv2d(dim, out, 1) if out != dim else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        attn = self.proj_2(self.spatial_gating_unit(nn.functional.gelu(self.proj_1(y)))) + y
        x = x + self.drop_path(self.layer_scale_1.view(1, -1, 1, 1) * attn)
        x = x + self.drop_path(self.layer_scale_2.view(1, -1, 1, 1) * self.mlp(self.norm2(x)))
        return x if self.reduction is None else self.reduction(x)


def drop_path_rates(blocks: int, drop_path: float) -> list[float]:
    """Stochastic depth per translator layer, as OpenSTL's `MidMetaNet`: linear from 0.01 to `drop_path`, the last
    layer `drop_path` (so with drop_path 0 the first layers still drop a little)."""
    rates = torch.linspace(1e-2, drop_path, blocks).tolist()
    rates[-1] = drop_path
    return rates


class GSTATranslator(nn.Sequential):
    """N_T gSTA (or VAN, TAU) blocks: the first reduces to hid_T, the last expands back (OpenSTL's `MidMetaNet`)."""

    def __init__(self, channels: int, hidden: int, blocks: int, mlp_ratio: float, drop: float, drop_path: float,
                 kind: Literal["gsta", "van", "tau"] = "gsta") -> None:
        rates = drop_path_rates(blocks, drop_path)
        widths = [channels] + [hidden] * (blocks - 1) + [channels]
        super().__init__(*(GSTABlock(widths[i], widths[i + 1], mlp_ratio, drop, rates[i], kind) for i in range(blocks)))


class MetaTranslator(nn.Sequential):
    """N_T MetaFormer layers of one kind (predictors/_metaformer.py) over the [hh, ww] grid, widths as GSTATranslator."""

    def __init__(self, kind: str, channels: int, grid: tuple[int, int], config: SimVPConfig) -> None:
        blocks, rates = config.N_T, drop_path_rates(config.N_T, config.drop_path)
        widths = [channels] + [config.hid_T] * (blocks - 1) + [channels]
        super().__init__(*(MetaLayer(metaformer_block(kind, widths[i], widths[i + 1], i, grid, config.mlp_ratio,
                                                      config.drop, rates[i], config.swin_mask), widths[i], widths[i + 1])
                           for i in range(blocks)))


# OpenSTL's SimVP_Model (openstl/models/simvp_model.py, modules/simvp_modules.py): the encoder and decoder one
# level deeper (`enc.enc.N.conv.conv`), the translator's layers under `hid.enc.N`.
_CODEC = ((r"(enc|dec)\.\1\.(\d+)\.conv\.(conv|norm)\.(.*)", r"\1.\2.\3.\4"),
          (r"dec\.readout\.(.*)", r"readout.\1"))
# IncepU: its branches as `layers.K.conv / .norm`; gSTA, VAN and TAU: the block's parts under `block.` (attention
# under `block.attn.`, the MLP as fc1 / dwconv.dwconv / fc2), flattened here. Told apart from the other translators
# by the IncepU branches or that MLP's `dwconv.dwconv`.
OPENSTL = ReferenceLayout(
    "OpenSTL",
    renames=(*_CODEC,
             (r"hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.conv\.(.*)", r"hid.\1.\2.branches.\3.0.\4"),
             (r"hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.norm\.(.*)", r"hid.\1.\2.branches.\3.1.\4"),
             (r"hid\.enc\.(\d+)\.block\.attn\.(.*)", r"hid.\1.\2"),
             (r"hid\.enc\.(\d+)\.block\.mlp\.fc1\.(.*)", r"hid.\1.mlp.0.\2"),
             (r"hid\.enc\.(\d+)\.block\.mlp\.dwconv\.dwconv\.(.*)", r"hid.\1.mlp.1.\2"),
             (r"hid\.enc\.(\d+)\.block\.mlp\.fc2\.(.*)", r"hid.\1.mlp.4.\2"),
             (r"hid\.enc\.(\d+)\.block\.(.*)", r"hid.\1.\2"),
             (r"hid\.enc\.(\d+)\.reduction\.(.*)", r"hid.\1.reduction.\2")),
    recognise=r"hid\.(enc\.\d+\.block\.mlp\.dwconv\.dwconv|dec\.\d+\.layers\.\d+\.conv)\.weight")
# The MetaFormer translators (predictors/_metaformer.py) keep OpenSTL's names below `hid.enc.N`.
_METAFORMER = (*_CODEC, (r"hid\.enc\.(\d+)\.(.*)", r"hid.\1.\2"))
# Swin: timm up to 0.9.2 saved the relative-position index (a constant the block rebuilds: files from later timm lack
# it, so the model keeps its own) and the shifted windows' mask, which OpenSTL's forward never passes.
OPENSTL_SWIN = ReferenceLayout(
    "OpenSTL", renames=_METAFORMER, recognise=r".*\.relative_position_bias_table",
    unused=r"hid\.enc\.\d+\.block\.attn_mask", own=r"hid\.\d+\.block\.attn\.relative_position_index",
    settings={"swin_mask": (False, "OpenSTL's SwinSubBlock attends across the shifted windows' wrap-around")})
OPENSTL_METAFORMER = ReferenceLayout("OpenSTL", renames=_METAFORMER)

# OpenSTL configs/mmnist/simvp/SimVP_IncepU.py (its 58.0M / 19.4G row) with OpenSTL's defaults: OneCycle, 200 epochs
# x 625 iterations.
MMNIST = dict(hid_S=64, hid_T=512, N_S=4, N_T=8, translator="incepu", batch_size=16, lr=1e-3, lr_schedule="onecycle",
              max_iterations=125_000, val_every=5_000)
# The other translators, `mmnist-<translator>`: OpenSTL's configs/mmnist/simvp/SimVP_<X>.py: model_type on line 5, lr on line 11; hid_S 64, hid_T 512, N_T 8, N_S 4,
# batch 16, drop_path 0, OneCycle as in SimVP_IncepU.py; mlp_ratio is SimVP_Model's default 8.
MMNIST_LR = {"gsta": 1e-3, "convmixer": 1e-2, "convnext": 1e-2, "hornet": 1e-3, "mlpmixer": 1e-3, "moganet": 1e-3,
             "poolformer": 1e-3, "swin": 1e-3, "uniformer": 5e-4, "van": 1e-3, "vit": 5e-4}


@register_predictor("simvp")
class SimVP(Predictor):
    """SimVP (Gao et al. 2022): CNN encoder, a translator over stacked frames (IncepU, gSTA, or a MetaFormer), CNN decoder."""

    Config = SimVPConfig
    checkpoint_layouts = (OPENSTL, OPENSTL_SWIN, OPENSTL_METAFORMER)
    presets = {
        "mmnist": MMNIST,
        # OpenSTL configs/kth/simvp/SimVP_IncepU.py (OneCycle) and configs/human/simvp/SimVP_IncepU.py (cosine);
        # drop_path only acts in the translators other than IncepU. OpenSTL trains 200 epochs, whose iterations depend on the prepared split's size:
        # max_iterations stays at the harness default.
        "kth-10to20": dict(hid_S=64, hid_T=256, N_S=2, N_T=4, translator="incepu", batch_size=8, lr=1e-3,
                           lr_schedule="onecycle"),
        "human36m-openstl": dict(hid_S=64, hid_T=512, N_S=4, N_T=6, translator="incepu", batch_size=16, lr=1e-3,
                                 lr_schedule="cosine"),
        # CPU-sized.
        "moving-digits": dict(hid_S=8, hid_T=64, N_S=4, N_T=4, batch_size=8, lr=2e-3, lr_schedule="cosine",
                              max_iterations=1000, quick_iterations=200, val_every=200, grad_clip=1.0),
    }
    presets.update({f"mmnist-{kind}": {**MMNIST, "translator": kind, "lr": lr} for kind, lr in MMNIST_LR.items()})
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(presets["moving-digits"], hid_S=8, hid_T=32, N_S=2, N_T=2, lr=5e-3, batch_size=2)

    def __init__(self, spec: VideoSpec, config: SimVPConfig) -> None:
        super().__init__(spec, config)
        scale = 2 ** (config.N_S // 2)
        if spec.height % scale or spec.width % scale:
            raise UserError(f"simvp: N_S={config.N_S} halves the frame {config.N_S // 2} times; "
                            f"{spec.height}x{spec.width} is not divisible by {scale}")
        hid, c = config.hid_S, spec.channels
        downs = [i % 2 == 1 for i in range(config.N_S)]  # False, True, False, True, ...
        self.enc = nn.ModuleList(
            ConvSC(c if i == 0 else hid, hid, config.spatio_kernel_enc, down=d) for i, d in enumerate(downs))
        self.dec = nn.ModuleList(ConvSC(hid, hid, config.spatio_kernel_dec, up=u) for u in reversed(downs))
        self.readout = nn.Conv2d(hid, c, 1)
        channels = spec.context * hid
        kind = config.translator
        if kind in WIDTH_IN_EIGHTS and (channels % 8 or config.hid_T % 8):
            raise UserError(f"simvp: the {kind} translator needs widths in multiples of 8; context x hid_S = "
                            f"{channels} and hid_T = {config.hid_T}")
        if kind == "incepu":
            self.hid = InceptionTranslator(channels, config.hid_T, config.N_T)
        elif kind in METAFORMERS:
            try:
                self.hid = MetaTranslator(kind, channels, (spec.height // scale, spec.width // scale), config)
            except ValueError as exc:
                raise UserError(f"simvp: {kind}: {exc}") from None
        else:
            self.hid = GSTATranslator(channels, config.hid_T, config.N_T, config.mlp_ratio, config.drop,
                                      config.drop_path, kind)

    def predict_chunk(self, frames: Tensor) -> Tensor:
        """The Tc frames after `frames` [B, Tc, C, H, W]."""
        b, t, c, h, w = frames.shape
        x = frames.reshape(b * t, c, h, w)
        skip = x = self.enc[0](x)
        for block in self.enc[1:]:
            x = block(x)
        _, hid, hh, ww = x.shape
        z = self.hid(x.reshape(b, t * hid, hh, ww)).reshape(b * t, hid, hh, ww)
        for block in self.dec[:-1]:
            z = block(z)
        y = self.readout(self.dec[-1](z + skip))
        return y.reshape(b, t, c, h, w)

    def forward(self, context: Tensor, future: int) -> Tensor:
        if context.shape[1] != self.spec.context:
            raise UserError(f"simvp was built for {self.spec.context} context frames, got {context.shape[1]}")
        chunks, frames = [], context
        for _ in range(math.ceil(future / self.spec.context)):
            frames = self.predict_chunk(frames)
            chunks.append(frames)
        return torch.cat(chunks, dim=1)[:, :future]
