"""FVD (Unterthiner et al. 2018): the Frechet distance between I3D features of ground-truth and predicted clips.

One number per run and convention, not per step. Each convention reproduces one reference's preprocessing
(which frames make the clip, their range, their resize, the padding of short clips) in front of the I3D that
reference uses: StyleGAN-V's TorchScript port of the tf.hub I3D (`i3d_torchscript.pt`, called as
`detector(x, rescale=, resize=, return_features=True)` -> [B, 400] logits) for stylegan-v, mcvd and predbench-jit;
VideoGPT's PyTorch InceptionI3d with `i3d_pretrained_400.pt` (vpbench.metrics.i3d, `detector(x)` -> [B, 400]
logits averaged over time) for videogpt, tats and predbench-400. Features are extracted a few clips at a time, and the
preprocessing runs a few frames at a time, so a 4K clip costs one frame's copy at its own size on top of the
224x224 clip the I3D sees (the stylegan-v file resizes inside the detector: there one clip per call goes in at
its own size, as uint8). Their statistics are summed in float64 over batches and ranks (frechet.GaussianSums).

A stochastic predictor's N samples per sequence: `fvd` pools every sample against the ground truth (MCVD's
`avg_fvd`, runners/ncsn_runner.py:2218) and `fvd_sample_mean` is the mean over sample indices k of the FVD of
the k-th samples alone (MCVD's `fvd_traj_mean`, lines 2219-2225). There is no best of N: FVD compares two
distributions, so no sample can be chosen per sequence by it.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError
from ..spec import VideoSpec
from .conventions import choose
from .frechet import GaussianSums, frechet_of_sums
from .i3d import MIN_FRAMES as I3D_MIN_FRAMES
from .i3d import load_i3d
from .weights import I3D_PYTORCH, I3D_TORCHSCRIPT, Resolution, WeightFile, resolve

FEATURES = 400  # the I3D's Kinetics-400 logits, which every reference takes as the features
I3D_SIZE = 224
# Clips per detector call: a 16-frame clip at 224x224 is 2.4 M values; 4 of them bound the I3D's activations.
# The same count of values bounds the frames preprocessed at once at their own size.
VALUES_PER_FORWARD = 4 * 16 * 3 * I3D_SIZE * I3D_SIZE

Frames = Literal["context+prediction", "prediction"]
Resize = Literal["in the detector", "stretch to 224x224", "short side to 224, centre crop"]


def load_torchscript(path: Path, device: torch.device) -> torch.nn.Module:
    """The TorchScript I3D on `device`, in eval mode."""
    with warnings.catch_warnings():  # torch's deprecation notice for TorchScript: the references' file is one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


@dataclass(frozen=True)
class I3dDetector:
    """An I3D file the conventions read: the file, how it is loaded, and whether it takes StyleGAN-V's keywords."""

    weights: WeightFile
    load: Callable[[Path, torch.device], torch.nn.Module] = field(repr=False)
    keywords: bool  # detector(x, rescale=, resize=, return_features=True) rather than detector(x)


TORCHSCRIPT = I3dDetector(I3D_TORCHSCRIPT, load_torchscript, keywords=True)
PYTORCH = I3dDetector(I3D_PYTORCH, load_i3d, keywords=False)


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
    reference_clips: int | None  # how many clips the reference scores (None: the whole test set, or not stated)
    frame_input: Callable[[Tensor], Tensor] = field(repr=False, compare=False)  # the reference's per-frame steps
    detector: I3dDetector = TORCHSCRIPT
    rescale_in_detector: bool = False  # the TorchScript detector's own rescale (uint8 -> [-1, 1]) and resize

    def settings(self) -> dict[str, Any]:
        """What a result records about the convention its FVD was scored in."""
        if self.detector.keywords:
            call = (f"{self.detector.weights.filename}(rescale={self.rescale_in_detector}, "
                    f"resize={self.rescale_in_detector}, return_features=True)")
        else:
            call = f"VideoGPT's InceptionI3d with {self.detector.weights.filename}: logits averaged over time"
        return {"source": self.source, "frames": self.frames, "resize": self.resize, "range": self.value_range,
                "min_frames": self.min_frames, "short_clips": "zero-padded" if self.pad else "refused",
                "detector": call, "reference_clips": self.reference_clips}

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

    def prepare(self, *segments: Tensor) -> Tensor:
        """Clips [B, T, C, H, W] in [0, 1], given as consecutive pieces in time (context, then prediction) -> the
        detector's input [B, 3, T', H', W'] in this convention: the reference's steps on each frame, the pieces
        joined after them (at the detector's size, not at the clips'), laid out as [B, C, T, H, W], zero-padded
        in time where the convention pads, grey repeated to 3 channels (as every reference does)."""
        x = torch.cat([self._each_frame(segment) for segment in segments], dim=1).permute(0, 2, 1, 3, 4)
        if self.pad and x.shape[2] < self.min_frames:
            x = F.pad(x, (0, 0, 0, 0, 0, self.min_frames - x.shape[2]))
        return x.repeat(1, 3, 1, 1, 1) if x.shape[1] == 1 else x

    def _each_frame(self, clips: Tensor) -> Tensor:
        # A few frames at a time, as views of each clip: at 4K a frame's float copy is 100 MB and a clip's T times
        # that (flattening [B, T] would copy the batch whenever the clips are one sample of several).
        b, t = clips.shape[:2]
        step = max(1, VALUES_PER_FORWARD // clips[0, 0].numel())
        x = torch.cat([self.frame_input(part) for clip in clips for part in clip.split(step)])
        return x.view(b, t, *x.shape[1:])

    def detect(self, detector: Callable[..., Tensor], x: Tensor) -> Tensor:
        """The I3D features of prepared clips, called the way the reference calls its detector."""
        if self.detector.keywords:
            rescale = self.rescale_in_detector
            return detector(x, rescale=rescale, resize=rescale, return_features=True)
        return detector(x)


def _short_side_then_crop(frames: Tensor) -> Tensor:
    # MCVD's and VideoGPT's preprocess(): the shorter side bilinearly to 224, the other `math.ceil(w * scale)`,
    # then the centre 224x224 (the start rounded down)
    h, w = frames.shape[-2:]
    scale = I3D_SIZE / min(h, w)
    size = (I3D_SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), I3D_SIZE)
    x = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    top, left = (x.shape[-2] - I3D_SIZE) // 2, (x.shape[-1] - I3D_SIZE) // 2
    return x[..., top:top + I3D_SIZE, left:left + I3D_SIZE]


def _stretch(frames: Tensor) -> Tensor:
    return F.interpolate(frames, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)


def _uint8_as_saved(frames: Tensor) -> Tensor:
    # VideoGPT's and TATS's `(x * 255).astype(np.uint8)` of frames in [0, 1]: truncated, not rounded
    return (frames * 255).to(torch.uint8)


def stylegan_v_frames(frames: Tensor) -> Tensor:
    """StyleGAN-V metric_utils.py compute_feature_stats_for_generator(): a generator's [-1, 1] frames become
    `(img * 127.5 + 128).clamp(0, 255).to(torch.uint8)`; range and resize are left to the detector
    (rescale=True, resize=True)."""
    return ((frames * 2 - 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # frames in [0, 1] as its [-1, 1]


def mcvd_frames(frames: Tensor) -> Tensor:
    """MCVD models/fvd/fvd.py preprocess_single(): the shorter side bilinearly to 224, the centre 224x224 cropped,
    `(video - 0.5) * 2`."""
    return (_short_side_then_crop(frames.float()) - 0.5) * 2


def predbench_frames(frames: Tensor) -> Tensor:
    """PredBench perception_metrics.py process() (`pred * 2.0 - 1.0`, norm_01) and fvd.py FVDFeatureExtractor
    (bilinear to 224x224 without keeping the aspect, resize_crop=False)."""
    return _stretch(frames.float() * 2 - 1)


def videogpt_frames(frames: Tensor) -> Tensor:
    """VideoGPT scripts/compute_fvd.py (`(fake * 255).astype('uint8')`), fvd/fvd.py preprocess() and data.py
    preprocess(): `/ 255.`, the shorter side bilinearly to 224, the centre 224x224, `-= 0.5`, then `* 2`."""
    x = _uint8_as_saved(frames).float() / 255.0
    return (_short_side_then_crop(x) - 0.5) * 2


def tats_frames(frames: Tensor) -> Tensor:
    """TATS scripts/sample_vqgan_transformer_short_videos.py (`(x * 255).astype(np.uint8)`) and tats/fvd/fvd.py
    preprocess(): the uint8 frames as floats, bilinear to 224x224 without keeping the aspect, `2. * x / 255. - 1`."""
    return 2.0 * _stretch(_uint8_as_saved(frames).float()) / 255.0 - 1


STYLEGAN_V = FvdConvention(
    "stylegan-v", "StyleGAN-V src/metrics/frechet_video_distance.py compute_fvd() (detector_kwargs rescale=True, "
    "resize=True; fvd2048_16f: 2048 clips) and metric_utils.py (uint8 frames, grey x3); fvd-comparison verifies "
    "the port against the TF original",
    frames="context+prediction", resize="in the detector", value_range="uint8 0..255 (the detector rescales)",
    min_frames=10, pad=False, rescale_in_detector=True, reference_clips=2048, frame_input=stylegan_v_frames)
MCVD = FvdConvention(
    "mcvd", "MCVD models/fvd/fvd.py get_feats()/preprocess_single() (rescale=False, resize=False) and "
    "runners/ncsn_runner.py:1929-1951 (real and fake clips = conditioning frames + predicted frames)",
    frames="context+prediction", resize="short side to 224, centre crop", value_range="[-1, 1] float",
    min_frames=10, pad=False, reference_clips=None, frame_input=mcvd_frames)
PREDBENCH = FvdConvention(
    "predbench-jit", "PredBench predbench/evaluation/perception_metrics/fvd/fvd.py FVDFeatureExtractor("
    "i3d_type='i3d_jit') and perception_metrics.py process() (norm_01: x*2-1; predicted frames only; "
    "clips under 10 frames zero-padded)",
    frames="prediction", resize="stretch to 224x224", value_range="[-1, 1] float, zero padding",
    min_frames=10, pad=True, reference_clips=None, frame_input=predbench_frames)
PREDBENCH_400 = dataclasses.replace(
    PREDBENCH, name="predbench-400", detector=PYTORCH,
    source="PredBench predbench/evaluation/perception_metrics/fvd/fvd.py FVDFeatureExtractor(i3d_type='i3d_400', "
    "its default and PerceptionMetrics' fvd_detector default: its i3d_pytorch.py InceptionI3d, VideoGPT's network), "
    "the same preprocessing as predbench-jit. Its pre_download/i3d/convert_tf_pretrained.py converts the tf.hub "
    "weights with VideoGPT's name mapping but pickles the whole module, which its own load_state_dict() cannot "
    "take: the weights read here are VideoGPT's state dict of the same conversion")
VIDEOGPT = FvdConvention(
    "videogpt", "VideoGPT scripts/compute_fvd.py eval_fvd() (whole sampled videos, conditioning frames "
    "included; 256 clips per trial), videogpt/fvd/fvd.py preprocess()/get_logits(), data.py preprocess(), "
    "download.py load_i3d_pretrained() (InceptionI3d(400) with i3d_pretrained_400.pt)",
    frames="context+prediction", resize="short side to 224, centre crop",
    value_range="uint8 (truncated), then [-1, 1] float", min_frames=I3D_MIN_FRAMES, pad=False,
    reference_clips=256, frame_input=videogpt_frames, detector=PYTORCH)
TATS = FvdConvention(
    "tats", "TATS scripts/sample_vqgan_transformer_short_videos.py (2048 whole generated videos, uint8 by "
    "truncation), tats/fvd/fvd.py preprocess()/get_logits()/load_fvd_model() (VideoGPT's InceptionI3d and "
    "i3d_pretrained_400.pt; its real clips come from the training split, ours are the test ground truth)",
    frames="context+prediction", resize="stretch to 224x224", value_range="uint8 (truncated), then [-1, 1] float",
    min_frames=I3D_MIN_FRAMES, pad=False, reference_clips=2048, frame_input=tats_frames, detector=PYTORCH)
FVD_CONVENTIONS: dict[str, FvdConvention] = {c.name: c for c in (STYLEGAN_V, MCVD, PREDBENCH, PREDBENCH_400, VIDEOGPT,
                                                                 TATS)}
FVD_ALIASES = {"predbench": "predbench-jit", "fvd-comparison": "stylegan-v"}
DETECTORS: dict[str, I3dDetector] = {d.weights.key: d for d in (TORCHSCRIPT, PYTORCH)}


def resolve_fvd_conventions(names: tuple[str, ...] | list[str]) -> tuple[FvdConvention, ...]:
    """FVD conventions from user-given names (aliases resolved, duplicates dropped); unknown: UserError."""
    return tuple(choose(names, FVD_CONVENTIONS, FVD_ALIASES, "FVD convention"))


def not_measured_key(convention: FvdConvention) -> str:
    """The name FVD in `convention` has in a result's not_measured and in the report's columns."""
    return f"fvd@{convention.name}"


@torch.no_grad()
def features(detector: Callable[..., Tensor], convention: FvdConvention, *segments: Tensor) -> Tensor:
    """I3D features [B, 400] of clips [B, T, C, H, W] in [0, 1] (given whole, or as consecutive pieces in time:
    context, then prediction), a few clips per detector call. The conventions that resize before the detector
    hand it 224x224 clips whatever the frame size, having preprocessed a few frames at a time and joined the
    pieces only then (FvdConvention.prepare), so at 4K the I3D's calls are those of 224x224 clips and no clip is
    copied whole at its own size; the one that leaves the resize to the detector (stylegan-v) hands it its clips
    at their own size, one at a time at 4K."""
    frames = sum(segment.shape[1] for segment in segments)
    height, width = segments[0].shape[-2:]
    pixels = height * width if convention.resize == "in the detector" else I3D_SIZE * I3D_SIZE
    chunk = max(1, VALUES_PER_FORWARD // (max(frames, convention.min_frames) * 3 * pixels))
    out = []
    for parts in zip(*(segment.split(chunk) for segment in segments)):
        got = convention.detect(detector, convention.prepare(*parts))
        if got.shape != (parts[0].shape[0], FEATURES):
            raise ValueError(f"the I3D detector returned {tuple(got.shape)} for {parts[0].shape[0]} clips, "
                             f"expected [{parts[0].shape[0]}, {FEATURES}]")
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
        first = (context,) if self.convention.frames == "context+prediction" else ()
        self.real.add(features(self.detector, self.convention, *first, target))
        for k in range(prediction.shape[1]):
            self.fake[k].add(features(self.detector, self.convention, *first, prediction[:, k]))

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


class FvdSource:
    """FVD for one command: each I3D file the asked conventions read resolved once and loaded once per device;
    one FvdSums per convention."""

    key = "fvd"

    def __init__(self, conventions: tuple[FvdConvention, ...],
                 weights: dict[str, str | Path | None] | None = None) -> None:
        """`weights`: the file the user named for each detector (I3dDetector.weights.key), None for its default."""
        self.conventions = conventions
        named = weights or {}
        self.files: dict[str, Resolution] = {}
        for convention in conventions:
            key = convention.detector.weights.key
            if key not in self.files:
                self.files[key] = resolve(convention.detector.weights, named.get(key))
        self._detectors: dict[tuple[str, torch.device], torch.nn.Module] = {}

    def sums(self, spec: VideoSpec, device: torch.device) -> tuple[list[FvdSums], dict[str, str]]:
        """The sums to fill for each convention that can be scored, and for the others why not."""
        made, why = [], {}
        for convention in self.conventions:
            file = self.files[convention.detector.weights.key]
            reason = file.problem or convention.problem(spec)
            if reason is not None:
                why[not_measured_key(convention)] = reason
                continue
            assert file.path is not None
            loaded = (file.entry.key, device)
            if loaded not in self._detectors:
                self._detectors[loaded] = convention.detector.load(file.path, device)
            made.append(FvdSums(convention, self._detectors[loaded], file.record(), device))
        return made, why


def check_named_files(conventions: tuple[FvdConvention, ...], named: dict[str, str | Path | None]) -> None:
    """A detector file named on the command line for conventions none of which reads it is a mix-up of the two
    I3D flags, not something to ignore: UserError naming what the file is for."""
    read = {c.detector.weights.key for c in conventions}
    for key, given in named.items():
        if given is None or key in read:
            continue
        entry = DETECTORS[key].weights
        users = ", ".join(c.name for c in FVD_CONVENTIONS.values() if c.detector.weights.key == key)
        asked = ",".join(c.name for c in conventions) or "(none)"
        wanted = {c.detector.weights.key: c.detector.weights for c in conventions}.values()
        raise UserError(f"{entry.flag} names {entry.filename}, which --fvd {asked} does not read (it is for "
                        f"{users}); " + ", ".join(f"{w.filename} is named by {w.flag}" for w in wanted))
