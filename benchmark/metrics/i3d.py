"""VideoGPT's I3D: the network `i3d_pretrained_400.pt` is a state dict of (VideoGPT videogpt/fvd/pytorch_i3d.py
`InceptionI3d`, a copy of piergiaj/pytorch-i3d; TATS tats/fvd/pytorch_i3d.py is the same network).

The Inception-v1 I3D of Carreira & Zisserman (2017): GoogLeNet's blocks with their kernels made 3-D. VideoGPT
converted DeepMind's tf.hub Kinetics-400 weights into that PyTorch class (videogpt/fvd/convert_tf_pretrained.py);
every module and tensor name here is the reference's (`Conv3d_1a_7x7.bn.running_var`, `Mixed_4b.b1b.conv3d.weight`,
`logits.conv3d.bias`), so the published file loads with `strict=True`. The converter writes no
`num_batches_tracked`; batch norm fills that buffer in itself for a state dict without version metadata.

What it computes, as the reference does:
- TF 'SAME' padding worked out from each input's size (timm's `get_same_padding`: k - s, or k - size % s; the odd
  cell at the end), before every convolution and max pool; the pools pad with zeros rather than TF's -inf, which
  changes nothing here because everything pooled comes out of a ReLU.
- Batch norm in eval mode with the running statistics, eps 1e-5 (the port's value).
- Features are the logits, as VideoGPT's `get_logits` calls `i3d(batch)`: a [2, 7, 7] average pool with stride 1,
  dropout (nothing in eval), a 1x1x1 convolution with bias, then the mean over the time steps left: [B, 400].
  The 7x7 pool needs 224x224 frames; the 2-step temporal pool needs at least 9 frames, time being halved three
  times rounding up (9 -> 5 -> 3 -> 2), so shorter clips cannot be scored at all (`MIN_FRAMES`).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_FRAMES = 9
CLASSES = 400
# GoogLeNet's inception widths (Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool
# proj); I3D keeps them and makes the "5x5" branch 3x3x3. The name is the endpoint's in the TF original.
MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

Triple = tuple[int, int, int]


def _triple(v: int | Triple) -> Triple:
    return (v, v, v) if isinstance(v, int) else v


def pad_same_3d(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """Zero padding of [B, C, T, H, W] so that a kernel/stride gives ceil(size / stride) outputs (TF 'SAME')."""
    from timm.layers import get_same_padding  # here: timm imports torchvision (about 2 s), and `bench run` imports this

    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad lists the last first
        total = get_same_padding(size, k, s, 1)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3d(nn.Module):
    """Same-padded convolution, then batch norm and ReLU; the logits layer has a bias and neither of those."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | Triple = 1, stride: int | Triple = 1,
                 head: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.head = _triple(kernel), _triple(stride), head
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(out_channels, eps=1e-5, momentum=0.001)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same_3d(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel: int | Triple, stride: int | Triple) -> None:
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same_3d(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An inception block: 1x1; 1x1 then 3x3x3; 1x1 then 3x3x3; 3x3x3 max pool then 1x1, concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3d(in_channels, widths[0])
        self.b1a, self.b1b = Unit3d(in_channels, widths[1]), Unit3d(widths[1], widths[2], 3)
        self.b2a, self.b2b = Unit3d(in_channels, widths[3]), Unit3d(widths[3], widths[4], 3)
        self.b3a, self.b3b = MaxPool3dSame(3, 1), Unit3d(in_channels, widths[5])

    @staticmethod
    def out_channels(widths: tuple[int, ...]) -> int:
        return widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Clips [B, 3, T, 224, 224] in [-1, 1] (T >= 9) -> Kinetics-400 logits averaged over time, [B, 400]."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        # The endpoints in the order they run; attribute names are the state dict's.
        self.Conv3d_1a_7x7 = Unit3d(3, 64, 7, 2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3d(64, 64)
        self.Conv3d_2c_3x3 = Unit3d(64, 192, 3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, widths in MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame(3, 2)
            elif name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame(2, 2)
            setattr(self, name, Mixed(channels, widths))
            channels = Mixed.out_channels(widths)
        self.logits = Unit3d(channels, classes, head=True)

    def trunk(self, x: Tensor) -> Tensor:
        """Every endpoint up to Mixed_5c: [B, 1024, ceil(T / 8), ceil(H / 32), ceil(W / 32)]."""
        for module in self.children():
            if module is self.logits:
                break
            x = module(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool3d(self.trunk(x), kernel_size=(2, 7, 7), stride=1)
        return self.logits(x).squeeze(4).squeeze(3).mean(dim=2)


def load_i3d(path: Path | str, device: torch.device | str = "cpu") -> InceptionI3d:
    """`i3d_pretrained_400.pt` (or a file of the same layout) loaded strictly, in eval mode, on `device`."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    network = InceptionI3d()
    network.load_state_dict(state, strict=True)
    return network.to(device).eval()
