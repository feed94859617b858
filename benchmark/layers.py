"""Building blocks of predictors, public like timm.layers: a plugin imports them from here, as the built-ins do.

    patchify, unpatchify     frames <-> stacked patches, in the reference code's channel order
    gate_conv                the 'same' convolution (and optional LayerNorm) of a ConvLSTM-family gate
    summed_gate_convs        a sum of gate convolutions, run as one convolution where that is faster
    unfused_gate_convs       a context in which every gate convolution runs on its own (the plain path)
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["gate_conv", "patchify", "summed_gate_convs", "unfused_gate_convs", "unpatchify"]


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
    """Every gate convolution on its own: the plain path that benchmarks and tests compare the fused one with."""
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
