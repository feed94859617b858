"""The MetaFormer blocks OpenSTL puts in SimVP's translator (openstl/modules/simvp_modules.py and
openstl/modules/layers/, commit c74deb5): each maps [B, C, H, W] to itself, with OpenSTL's parameter names so that
its checkpoints load with the block level kept (`hid.N.block.*`).

OpenSTL subclasses timm's ConvNeXt, MLP-Mixer, Swin and ViT blocks from `timm.models.*` and rewrites their forward;
here they are built from `timm.layers` (public API) and the forward written once, so that a timm upgrade that
renames a model-internal class (as several did, OpenSTL issues 40, 138, 153, 178, 203) cannot break them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# timm.layers is imported where a block is built, not here: it imports torchvision (about 2 s of start-up), and
# every `bench` command that reads predictor names imports every built-in predictor.


def _drop_path(rate: float) -> nn.Module:
    from timm.layers import DropPath
    return DropPath(rate) if rate > 0 else nn.Identity()


def _tokens(x: Tensor) -> Tensor:
    return x.flatten(2).transpose(1, 2)  # [B, C, H, W] -> [B, H*W, C]


def _grid(tokens: Tensor, height: int, width: int) -> Tensor:
    b, _, c = tokens.shape
    return tokens.reshape(b, height, width, c).permute(0, 3, 1, 2)


class ConvMixerBlock(nn.Module):
    """ConvMixer: a residual depth-wise 11x11 convolution, then a point-wise one, each GELU then BatchNorm."""

    def __init__(self, dim: int, kernel: int = 11) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel, groups=dim, padding="same")
        self.act_1 = nn.GELU()
        self.norm_1 = nn.BatchNorm2d(dim)
        self.conv_pw = nn.Conv2d(dim, dim, 1)
        self.act_2 = nn.GELU()
        self.norm_2 = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.norm_1(self.act_1(self.conv_dw(x)))
        return self.norm_2(self.act_2(self.conv_pw(x)))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt: depth-wise 7x7, LayerNorm over channels, 1x1 MLP, layer scale 1e-6 (timm's block, conv_mlp=True)."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float) -> None:
        from timm.layers import ConvMlp, LayerNorm2d
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim), act_layer=nn.GELU)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.gamma.view(1, -1, 1, 1) * self.mlp(self.norm(self.conv_dw(x))))


class RecursiveGatedConv(nn.Module):
    """HorNet's g^n conv (order 4): a depth-wise 7x7 over a channel pyramid, gated order by order."""

    def __init__(self, dim: int, order: int = 4) -> None:
        super().__init__()
        self.dims = [dim // 2 ** i for i in reversed(range(order))]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), 7, padding=3, groups=sum(self.dims))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1))

    def forward(self, x: Tensor) -> Tensor:
        first, rest = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        gates = torch.split(self.dwconv(rest), self.dims, dim=1)
        x = first * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            x = pw(x) * gate
        return self.proj_out(x)


class HorNetBlock(nn.Module):
    """HorNet: LayerNorm, g^n conv, then a LayerNorm and a linear MLP over channels, both with layer scale 1e-6."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float) -> None:
        from timm.layers import LayerNorm2d
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = RecursiveGatedConv(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, int(mlp_ratio * dim))
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(int(mlp_ratio * dim), dim)
        self.gamma1 = nn.Parameter(torch.full((dim,), 1e-6))
        self.gamma2 = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.gamma1.view(-1, 1, 1) * self.gnconv(self.norm1(x)))
        y = self.pwconv2(self.act(self.pwconv1(self.norm2(x.permute(0, 2, 3, 1)))))
        return x + self.drop_path((self.gamma2 * y).permute(0, 3, 1, 2))


class MixerBlock(nn.Module):
    """MLP-Mixer: an MLP across the H*W positions (hidden dim / 2), then one across channels (timm's MixerBlock)."""

    def __init__(self, dim: int, positions: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        from timm.layers import Mlp
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(positions, int(0.5 * dim), drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, int(mlp_ratio * dim), drop=drop)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        t = _tokens(x)
        t = t + self.drop_path(self.mlp_tokens(self.norm1(t).transpose(1, 2)).transpose(1, 2))
        t = t + self.drop_path(self.mlp_channels(self.norm2(t)))
        return _grid(t, h, w)


class MultiOrderDWConv(nn.Module):
    """MogaNet's value branch: depth-wise 5x5, then 5x5 dilation 2 on 3/8 and 7x7 dilation 3 on 4/8 of the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dims = (dim - 3 * dim // 8 - dim // 2, 3 * dim // 8, dim // 2)
        self.DW_conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.DW_conv1 = nn.Conv2d(self.dims[1], self.dims[1], 5, padding=4, groups=self.dims[1], dilation=2)
        self.DW_conv2 = nn.Conv2d(self.dims[2], self.dims[2], 7, padding=9, groups=self.dims[2], dilation=3)
        self.PW_conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.DW_conv0(x)
        keep, first, second = torch.split(x, self.dims, dim=1)
        return self.PW_conv(torch.cat([keep, self.DW_conv1(first), self.DW_conv2(second)], dim=1))


class MultiOrderGatedAggregation(nn.Module):
    """MogaNet's spatial mixer: features pushed away from their spatial mean, a SiLU gate times the multi-order value."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.gate = nn.Conv2d(dim, dim, 1)
        self.value = MultiOrderDWConv(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)
        self.sigma = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        y = self.proj_1(x)
        y = F.silu(y + self.sigma * (y - F.adaptive_avg_pool2d(y, 1)))
        return self.proj_2(F.silu(self.gate(y)) * F.silu(self.value(y))) + x


class ChannelAggregationFFN(nn.Module):
    """MogaNet's MLP: 1x1, depth-wise 3x3, GELU, channels pushed away from their learned 1-channel summary, 1x1."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)
        self.decompose = nn.Conv2d(hidden, 1, 1)
        self.sigma = nn.Parameter(torch.full((1, hidden, 1, 1), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(F.gelu(self.dwconv(self.fc1(x))))
        x = x + self.sigma * (x - F.gelu(self.decompose(x)))
        return self.drop(self.fc2(x))


class ScaledResidualBlock(nn.Module):
    """x + drop_path(scale_1 * mixer(norm1(x))), then the same with the MLP: the MetaFormer pattern of MogaNet and
    PoolFormer, with OpenSTL's names (`layer_scale_1`, `token_mixer` / `attn`, ...)."""

    def mix(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1.view(1, -1, 1, 1) * self.mix(self.norm1(x)))
        return x + self.drop_path(self.layer_scale_2.view(1, -1, 1, 1) * self.mlp(self.norm2(x)))


class MogaBlock(ScaledResidualBlock):
    """MogaNet: BatchNorm, multi-order gated aggregation, BatchNorm, channel-aggregation MLP; layer scale 1e-5."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = MultiOrderGatedAggregation(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ChannelAggregationFFN(dim, int(dim * mlp_ratio), drop)
        self.layer_scale_1 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5))
        self.layer_scale_2 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-5))
        self.drop_path = _drop_path(drop_path)

    def mix(self, x: Tensor) -> Tensor:
        return self.attn(x)


class AveragePoolMixer(nn.Module):
    """PoolFormer's token mixer: 3x3 average pooling (padding not counted) minus the input."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False) - x


class PoolFormerBlock(ScaledResidualBlock):
    """PoolFormer: GroupNorm(1), pooling mixer, GroupNorm(1), 1x1 MLP; layer scale 1e-5."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        from timm.layers import Mlp
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.token_mixer = AveragePoolMixer()
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, use_conv=True)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), 1e-5))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), 1e-5))
        self.drop_path = _drop_path(drop_path)

    def mix(self, x: Tensor) -> Tensor:
        return self.token_mixer(x)


def relative_position_index(window: int) -> Tensor:
    """Swin's index into the (2w-1)^2 relative-position table for each pair of positions in a w x w window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside w x w windows with a learned relative-position bias (Swin)."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:  # [windows, n, n]; the batch is [frames x windows], windows inner
            bias = (bias + mask.unsqueeze(1)).repeat(b // mask.shape[0], 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def _windows(x: Tensor, window: int) -> Tensor:
    """[B, H, W, C] -> [B * windows, w*w, C]."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _unwindows(x: Tensor, window: int, h: int, w: int) -> Tensor:
    c = x.shape[-1]
    x = x.reshape(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> Tensor:
    """Swin's mask for shifted windows [windows, w*w, w*w]: -100 between positions that the cyclic shift brought
    together from opposite edges of the frame, so that no window attends across the wrap-around."""
    regions = torch.zeros(1, h, w, 1)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, rows, cols, :] = label
            label += 1
    ids = _windows(regions, window).squeeze(-1)
    return (ids.unsqueeze(1) != ids.unsqueeze(2)).float() * -100.0


class SwinBlock(nn.Module):
    """Swin Transformer: window attention (every second block shifted by half a window), then an MLP; 8 heads.
    Window side as OpenSTL picks it: 7 if it divides the grid's height, else max(4, height / 16), at most 8.

    `masked=False` is OpenSTL's `SwinSubBlock`, which calls the attention with `mask=None` in shifted blocks too
    (openstl/modules/simvp_modules.py, SwinSubBlock.forward): its windows attend across the frame's wrap-around
    seams, unlike Swin (Liu et al. 2021, Sec. 3.2) and timm's block it subclasses."""

    def __init__(self, dim: int, grid: tuple[int, int], shifted: bool, mlp_ratio: float, drop: float,
                 drop_path: float, masked: bool) -> None:
        from timm.layers import Mlp
        super().__init__()
        h, w = grid
        self.window = min(8, 7 if h % 7 == 0 else max(4, h // 16))
        if h % self.window or w % self.window:
            raise ValueError(f"the {h}x{w} grid does not split into {self.window}x{self.window} windows")
        self.shift = self.window // 2 if shifted else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, 8, self.window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = _drop_path(drop_path)
        mask = shifted_window_mask(h, w, self.window, self.shift) if masked and self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = _tokens(x)
        y = self.norm1(tokens).reshape(b, h, w, c)
        y = torch.roll(y, (-self.shift, -self.shift), (1, 2)) if self.shift else y
        y = _unwindows(self.attn(_windows(y, self.window), self.attn_mask), self.window, h, w)
        y = torch.roll(y, (self.shift, self.shift), (1, 2)) if self.shift else y
        tokens = tokens + self.drop_path(y.reshape(b, h * w, c))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return _grid(tokens, h, w)


class UniFormerConvBlock(nn.Module):
    """UniFormer's CBlock: positional depth-wise 3x3, then BatchNorm, 1x1, depth-wise 5x5, 1x1, then a 1x1 MLP."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        from timm.layers import Mlp
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, use_conv=True)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerBlock(nn.Module):
    """Pre-norm multi-head self-attention over all H*W positions (8 heads) and an MLP: ViT's block, and with a
    positional depth-wise 3x3 and layer scale 1e-6 UniFormer's SABlock (`pos_embed`, `gamma_1`, `gamma_2`)."""

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float, uniformer: bool) -> None:
        from timm.layers import Attention, Mlp
        super().__init__()
        if uniformer:
            self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, 8, qkv_bias=True, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        if uniformer:
            self.gamma_1 = nn.Parameter(torch.full((dim,), 1e-6))
            self.gamma_2 = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_path = _drop_path(drop_path)
        self.uniformer = uniformer

    def forward(self, x: Tensor) -> Tensor:
        if self.uniformer:
            x = x + self.pos_embed(x)
        _, _, h, w = x.shape
        t = _tokens(x)
        scale_1, scale_2 = (self.gamma_1, self.gamma_2) if self.uniformer else (1.0, 1.0)
        t = t + self.drop_path(scale_1 * self.attn(self.norm1(t)))
        t = t + self.drop_path(scale_2 * self.mlp(self.norm2(t)))
        return _grid(t, h, w)


class MetaLayer(nn.Module):
    """One translator layer: a block at width `dim`, then a 1x1 convolution to `out` where that differs
    (OpenSTL's `MetaBlock`)."""

    def __init__(self, block: nn.Module, dim: int, out: int) -> None:
        super().__init__()
        self.block = block
        self.reduction = nn.Conv2d(dim, out, 1) if out != dim else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.block(x)
        return x if self.reduction is None else self.reduction(x)


METAFORMERS = ("convmixer", "convnext", "hornet", "mlpmixer", "moganet", "poolformer", "swin", "uniformer", "vit")


def metaformer_block(kind: str, dim: int, out: int, index: int, grid: tuple[int, int], mlp_ratio: float,
                     drop: float, drop_path: float, swin_mask: bool) -> nn.Module:
    """Layer `index` of a translator of `kind` (one of METAFORMERS) at width `dim`, as OpenSTL's MetaBlock builds
    it (openstl/models/simvp_model.py, MetaBlock.__init__): ConvMixer's kernel 11 and no stochastic depth;
    UniFormer's self-attention only in the layers that keep their width after the first."""
    if kind == "convmixer":
        return ConvMixerBlock(dim)
    if kind == "convnext":
        return ConvNeXtBlock(dim, mlp_ratio, drop_path)
    if kind == "hornet":
        return HorNetBlock(dim, mlp_ratio, drop_path)
    if kind == "mlpmixer":
        return MixerBlock(dim, grid[0] * grid[1], mlp_ratio, drop, drop_path)
    if kind == "moganet":
        return MogaBlock(dim, mlp_ratio, drop, drop_path)
    if kind == "poolformer":
        return PoolFormerBlock(dim, mlp_ratio, drop, drop_path)
    if kind == "swin":
        return SwinBlock(dim, grid, index % 2 == 1, mlp_ratio, drop, drop_path, swin_mask)
    if kind == "uniformer" and (dim != out or index == 0):
        return UniFormerConvBlock(dim, mlp_ratio, drop, drop_path)
    if kind in ("uniformer", "vit"):
        return TransformerBlock(dim, mlp_ratio, drop, drop_path, uniformer=kind == "uniformer")
    raise ValueError(f"no MetaFormer translator {kind!r}")
