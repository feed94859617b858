"""FVD (Unterthiner et al. 2018): the Frechet distance between I3D features of ground-truth and predicted clips.

One number per run and convention, not per step. Each convention reproduces one reference's preprocessing
(which frames make the clip, their range, their resize, the padding of short clips) in front of the same
detector, StyleGAN-V's TorchScript port of the tf.hub I3D (`i3d_torchscript.pt`, called as
`detector(x, rescale=, resize=, return_features=True)` -> [B, 400] logits). Features are extracted a few
clips at a time; their statistics are summed in float64 over batches and ranks (frechet.GaussianSums).

A stochastic predictor's N samples per sequence: `fvd` pools every sample against the ground truth (MCVD's
`avg_fvd`, runners/ncsn_runner.py:2218) and `fvd_sample_mean` is the mean over sample indices k of the FVD of
the k-th samples alone (MCVD's `fvd_traj_mean`, lines 2219-2225). There is no best of N: FVD compares two
distributions, so no sample can be chosen per sequence by it.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..spec import VideoSpec
from .conventions import choose
from .frechet import GaussianSums, frechet_of_sums
from .weights import I3D_TORCHSCRIPT, Resolution, resolve

FEATURES = 400  # the I3D's Kinetics-400 logits, which every reference takes as the features
I3D_SIZE = 224
# Clips per detector call: a 16-frame clip at 224x224 is 2.4 M values; 4 of them bound the I3D's activations.
VALUES_PER_FORWARD = 4 * 16 * 3 * I3D_SIZE * I3D_SIZE

Frames = Literal["context+prediction", "prediction"]
Resize = Literal["in the detector", "stretch to 224x224", "short side to 224, centre crop"]


@dataclass(frozen=True)
class FvdConvention:
    """How one reference turns clips into I3D inputs (see the module docstring and each convention's source)."""

    name: str
    source: str  # the reference lines it reproduces
    frames: Frames
    resize: Resize
    value_range: str  # what the detector is given
    min_frames: int  # shorter clips are padded (pad) or refused
    pad: bool  # zero-pad clips shorter than min_frames (PredBench), else refuse them
    rescale_in_detector: bool  # the detector's own rescale (uint8 -> [-1, 1]) and resize flags
    reference_clips: int | None  # how many clips the reference scores (None: the whole test set, or not stated)
    to_input: Callable[[Tensor], Tensor] = field(repr=False, compare=False)  # the reference's preprocessing

    def settings(self) -> dict[str, Any]:
        """What a result records about the convention its FVD was scored in."""
        return {"source": self.source, "frames": self.frames, "resize": self.resize, "range": self.value_range,
                "min_frames": self.min_frames, "short_clips": "zero-padded" if self.pad else "refused",
                "detector": f"{I3D_TORCHSCRIPT.filename}(rescale={self.rescale_in_detector}, "
                            f"resize={self.rescale_in_detector}, return_features=True)",
                "reference_clips": self.reference_clips}

    def clip_frames(self, spec: VideoSpec) -> int:
        return spec.context + spec.future if self.frames == "context+prediction" else spec.future

    def problem(self, spec: VideoSpec) -> str | None:
        """Why clips of this protocol cannot be scored in this convention, or None."""
        if spec.channels not in (1, 3):
            return f"I3D needs 1- or 3-channel frames, these have {spec.channels}"
        frames = self.clip_frames(spec)
        if frames < self.min_frames and not self.pad:
            return (f"clips of {frames} frames ({self.frames}) are shorter than the {self.min_frames} this "
                    f"convention feeds the I3D, and {self.name} does not pad them")
        return None

    def prepare(self, clips: Tensor) -> Tensor:
        """Clips [B, T, C, H, W] in [0, 1] -> the detector's input [B, 3, T', H', W'] in this convention."""
        return self.to_input(clips)


def _three_channels(x: Tensor) -> Tensor:
    # [B, C, T, H, W]: every reference repeats a grey channel three times
    return x.repeat(1, 3, 1, 1, 1) if x.shape[1] == 1 else x


def stylegan_v_input(clips: Tensor) -> Tensor:
    """StyleGAN-V metric_utils.py compute_feature_stats_for_generator(): a generator's [-1, 1] frames become
    `(img * 127.5 + 128).clamp(0, 255).to(torch.uint8)`, [B, C, T, H, W], grey repeated to 3 channels; range and
    resize are left to the detector (rescale=True, resize=True)."""
    x = ((clips * 2 - 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # frames in [0, 1] as its [-1, 1]
    return _three_channels(x.permute(0, 2, 1, 3, 4))


def mcvd_input(clips: Tensor) -> Tensor:
    """MCVD models/fvd/fvd.py preprocess_single(): the shorter side bilinearly to 224 (the other side
    `math.ceil(w * scale)`), the centre 224x224 cropped, `(video - 0.5) * 2`; grey repeated (ncsn_runner to_i3d)."""
    b, t, c, h, w = clips.shape
    scale = I3D_SIZE / min(h, w)
    size = (I3D_SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), I3D_SIZE)
    x = F.interpolate(clips.flatten(0, 1).float(), size=size, mode="bilinear", align_corners=False)
    top, left = (x.shape[-2] - I3D_SIZE) // 2, (x.shape[-1] - I3D_SIZE) // 2
    x = x[..., top:top + I3D_SIZE, left:left + I3D_SIZE]
    x = (x - 0.5) * 2
    return _three_channels(x.view(b, t, c, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4))


def predbench_input(clips: Tensor, min_frames: int = 10) -> Tensor:
    """PredBench perception_metrics.py process() (`pred * 2.0 - 1.0`, norm_01) and fvd.py FVDFeatureExtractor
    (bilinear to 224x224 without keeping the aspect, resize_crop=False; clips shorter than 10 frames zero-padded
    at the end, after the range change; grey repeated to 3 channels after padding)."""
    b, t, c, h, w = clips.shape
    x = clips.float() * 2 - 1
    x = F.interpolate(x.flatten(0, 1), size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
    x = x.view(b, t, c, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4)
    if t < min_frames:
        x = F.pad(x, (0, 0, 0, 0, 0, min_frames - t))
    return _three_channels(x)


STYLEGAN_V = FvdConvention(
    "stylegan-v", "StyleGAN-V src/metrics/frechet_video_distance.py compute_fvd() (detector_kwargs rescale=True, "
    "resize=True; fvd2048_16f: 2048 clips) and metric_utils.py (uint8 frames, grey x3); fvd-comparison verifies "
    "the port against the TF original",
    frames="context+prediction", resize="in the detector", value_range="uint8 0..255 (the detector rescales)",
    min_frames=10, pad=False, rescale_in_detector=True, reference_clips=2048, to_input=stylegan_v_input)
MCVD = FvdConvention(
    "mcvd", "MCVD models/fvd/fvd.py get_feats()/preprocess_single() (rescale=False, resize=False) and "
    "runners/ncsn_runner.py:1929-1951 (real and fake clips = conditioning frames + predicted frames)",
    frames="context+prediction", resize="short side to 224, centre crop", value_range="[-1, 1] float",
    min_frames=10, pad=False, rescale_in_detector=False, reference_clips=None, to_input=mcvd_input)
PREDBENCH = FvdConvention(
    "predbench-jit", "PredBench predbench/evaluation/perception_metrics/fvd/fvd.py FVDFeatureExtractor("
    "i3d_type='i3d_jit') and perception_metrics.py process() (norm_01: x*2-1; predicted frames only; "
    "clips under 10 frames zero-padded). Its default i3d_400 (a state dict for its InceptionI3d) is not reproduced",
    frames="prediction", resize="stretch to 224x224", value_range="[-1, 1] float, zero padding",
    min_frames=10, pad=True, rescale_in_detector=False, reference_clips=None, to_input=predbench_input)
FVD_CONVENTIONS: dict[str, FvdConvention] = {c.name: c for c in (STYLEGAN_V, MCVD, PREDBENCH)}
FVD_ALIASES = {"predbench": "predbench-jit", "fvd-comparison": "stylegan-v"}


def resolve_fvd_conventions(names: tuple[str, ...] | list[str]) -> tuple[FvdConvention, ...]:
    """FVD conventions from user-given names (aliases resolved, duplicates dropped); unknown: UserError."""
    return tuple(choose(names, FVD_CONVENTIONS, FVD_ALIASES, "FVD convention"))


def not_measured_key(convention: FvdConvention) -> str:
    """The name FVD in `convention` has in a result's not_measured and in the report's columns."""
    return f"fvd@{convention.name}"


@torch.no_grad()
def features(detector: torch.nn.Module, convention: FvdConvention, clips: Tensor) -> Tensor:
    """I3D features [B, 400] of clips [B, T, C, H, W] in [0, 1], a few clips per detector call (one at 4K); the
    conventions that resize before the detector hand it 224x224 clips, so at 4K the I3D costs what it costs at
    224x224 and the only extra memory is one float copy of one clip at its own size."""
    # Counted at the larger of the input and the I3D's size: a chunk's preprocessing copies its clips once.
    pixels = max(clips.shape[-2] * clips.shape[-1], I3D_SIZE * I3D_SIZE)
    chunk = max(1, VALUES_PER_FORWARD // (max(clips.shape[1], convention.min_frames) * 3 * pixels))
    rescale = convention.rescale_in_detector
    out = []
    for part in clips.split(chunk):
        got = detector(convention.prepare(part), rescale=rescale, resize=rescale, return_features=True)
        if got.shape != (part.shape[0], FEATURES):
            raise ValueError(f"the I3D detector returned {tuple(got.shape)} for {part.shape[0]} clips, "
                             f"expected [{part.shape[0]}, {FEATURES}]")
        out.append(got.double())
    return torch.cat(out)


@dataclass
class FvdSums:
    """One convention's feature sums over an evaluation: the ground truth, and each sample index's predictions."""

    convention: FvdConvention
    detector: torch.nn.Module
    file: dict[str, Any]  # the detector file's record (Resolution.record())
    device: torch.device
    real: GaussianSums = field(init=False)
    fake: list[GaussianSums] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.real = GaussianSums(FEATURES, self.device)

    def add(self, context: Tensor, prediction: Tensor, target: Tensor, samples: int) -> None:
        """One batch: context [B, Tc, ...], clamped predictions [B, N, T, ...] (N = `samples`, fixed by the
        run so that every rank keeps the same number of sums), targets [B, T, ...]."""
        while len(self.fake) < samples:
            self.fake.append(GaussianSums(FEATURES, self.device))
        whole = self.convention.frames == "context+prediction"
        truth = torch.cat([context, target], dim=1) if whole else target
        self.real.add(features(self.detector, self.convention, truth))
        for k in range(prediction.shape[1]):
            clip = torch.cat([context, prediction[:, k]], dim=1) if whole else prediction[:, k]
            self.fake[k].add(features(self.detector, self.convention, clip))

    def result(self, samples: int) -> dict[str, Any] | str:
        """FVD and what it was scored with, or why it has no value. Collective: every rank calls it once."""
        while len(self.fake) < samples:  # a rank that scored nothing still takes part in the sums
            self.fake.append(GaussianSums(FEATURES, self.device))
        real = self.real.reduced()
        fakes = [f.reduced() for f in self.fake]
        if real.count < 2:
            return f"FVD needs at least 2 clips for a covariance, {real.count} scored"
        pooled = GaussianSums(FEATURES, self.device)
        for f in fakes:
            pooled += f
        out: dict[str, Any] = {"fvd": frechet_of_sums(pooled, real), "clips": real.count,
                               "reference_clips": self.convention.reference_clips,
                               "settings": self.convention.settings(), "detector": self.file}
        if len(fakes) > 1:
            out["samples"] = len(fakes)
            per_sample = [frechet_of_sums(f, real) for f in fakes]
            out["fvd_sample_mean"] = sum(per_sample) / len(per_sample)
        return out


def load_detector(path: Path, device: torch.device) -> torch.nn.Module:
    """The TorchScript I3D on `device`, in eval mode."""
    with warnings.catch_warnings():  # torch's deprecation notice for TorchScript: the references' file is one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


class FvdSource:
    """FVD for one command: the I3D file resolved once, loaded once per device; one FvdSums per convention."""

    key = "fvd"

    def __init__(self, conventions: tuple[FvdConvention, ...], weights: str | Path | None = None) -> None:
        self.conventions = conventions
        self.file: Resolution | None = resolve(I3D_TORCHSCRIPT, weights) if conventions else None
        self._detectors: dict[torch.device, torch.nn.Module] = {}

    def sums(self, spec: VideoSpec, device: torch.device) -> tuple[list[FvdSums], dict[str, str]]:
        """The sums to fill for each convention that can be scored, and for the others why not."""
        made, why = [], {}
        for convention in self.conventions:
            assert self.file is not None
            reason = self.file.problem or convention.problem(spec)
            if reason is not None:
                why[not_measured_key(convention)] = reason
                continue
            if device not in self._detectors:
                self._detectors[device] = load_detector(self.file.path, device)
            made.append(FvdSums(convention, self._detectors[device], self.file.record(), device))
        return made, why

    def records(self) -> dict[str, dict]:
        return {} if self.file is None or not self.file.usable else {self.file.entry.key: self.file.record()}
