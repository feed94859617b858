"""LPIPS (Zhang et al. 2018) with the `lpips` package: AlexNet backbone, v0.1 linear layers, per time step.

Frames in [0, 1] are mapped to [-1, 1] and grey frames tiled to 3 channels, as the reference evaluations
do; the distance is the package's default (spatial average of each layer, summed over layers), batched on
the evaluation device in float32. The backbone comes from a checked file rather than from torchvision's
loader, which would take whatever file sits in its cache under the release's name.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UserError
from ..spec import VideoSpec
from .base import Metric
from .weights import ALEXNET, LPIPS_LINEAR, resolve

MIN_SIZE = 31  # AlexNet's stride-4 convolution and two max-pools leave nothing of smaller frames
FRAMES_PER_FORWARD = 64


def build_lpips(backbone: Path, linear: Path) -> torch.nn.Module:
    """The lpips package's LPIPS(net="alex", version="0.1") with the backbone read from `backbone`, a
    torchvision AlexNet state dict. Raises ValueError if the file does not hold one."""
    import lpips

    with warnings.catch_warnings():  # torchvision's deprecation notice for `pretrained=`
        warnings.simplefilter("ignore")
        # pnet_rand builds the backbone without asking torchvision for weights; they are copied in below.
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, model_path=str(linear), verbose=False)
    try:
        state = torch.load(backbone, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot be read as a state dict ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise ValueError("does not hold a state dict")
    with torch.no_grad():
        # lpips keeps torchvision's layer indices (`slice2.3.weight` is `features.3.weight`).
        for name, param in net.net.named_parameters():
            _, index, kind = name.split(".")
            key = f"features.{index}.{kind}"
            if key not in state or state[key].shape != param.shape:
                raise ValueError(f"is not a torchvision AlexNet state dict ({key} missing or of another shape)")
            param.copy_(state[key])
    for param in net.parameters():
        param.requires_grad_(False)
    return net.eval()


def lpips_problem(spec: VideoSpec) -> str | None:
    """Why LPIPS cannot score frames of this shape, or None."""
    if spec.channels not in (1, 3):
        return f"LPIPS (AlexNet) needs 1- or 3-channel frames, these have {spec.channels}"
    if min(spec.height, spec.width) < MIN_SIZE:
        return f"frames of {spec.height}x{spec.width} are smaller than the {MIN_SIZE}x{MIN_SIZE} AlexNet needs"
    return None


def _to_lpips_input(frames: Tensor) -> Tensor:
    frames = frames.float() * 2 - 1
    return frames.expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames


@torch.no_grad()
def lpips_distance(net: torch.nn.Module, pred: Tensor, target: Tensor) -> Tensor:
    """LPIPS of image pairs [N, C, H, W] in [0, 1] -> [N]."""
    parts = [net(_to_lpips_input(a), _to_lpips_input(b)).flatten()
             for a, b in zip(pred.split(FRAMES_PER_FORWARD), target.split(FRAMES_PER_FORWARD))]
    return torch.cat(parts)


class LpipsMetric(Metric):
    """LPIPS of every predicted frame."""

    names = ("lpips",)

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def score_frames(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        b, t = pred.shape[:2]
        return {"lpips": lpips_distance(self.net, pred.flatten(0, 1), target.flatten(0, 1)).view(b, t)}


class LpipsSource:
    """LPIPS for one command: its two weight files resolved and checked, and the network built, once.

    A backbone the user named that cannot be loaded stops the command (UserError); a default one that cannot
    leaves LPIPS not measured, with the reason."""

    key = "lpips"

    def __init__(self, backbone: str | Path | None = None) -> None:
        self.files = [resolve(ALEXNET, backbone), resolve(LPIPS_LINEAR)]
        self.net: torch.nn.Module | None = None
        self.problem = next((r.problem for r in self.files if not r.usable), None)
        if self.problem is None:
            backbone_file, linear_file = self.files
            try:
                self.net = build_lpips(backbone_file.path, linear_file.path)
            except ValueError as exc:
                if backbone_file.source == "explicit":
                    raise UserError(f"{ALEXNET.flag} {backbone_file.path}: {exc}") from None
                self.problem = f"{backbone_file.path} {exc}"

    def metric(self, spec: VideoSpec, device: torch.device) -> LpipsMetric | str:
        """The metric for frames of `spec` on `device`, or why it cannot be measured."""
        reason = self.problem or lpips_problem(spec)
        if reason is not None:
            return reason
        return LpipsMetric(self.net.to(device))

    def records(self) -> dict[str, dict]:
        """What result.json keeps about the weight files used."""
        return {r.entry.key: r.record() for r in self.files}
