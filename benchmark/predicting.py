"""`bench predict`: a trained predictor applied to the user's own video or frame folder.

A context window slides over the footage (`stride` frames at a time); each window's prediction is written as PNG
frames, the whole as an mp4 of context | prediction | ground truth side by side, and where the footage goes on
past a window the predicted steps are scored as `bench run` scores them (clamped predictions, vpbench's PSNR and
SSIM). Every input is checked before anything is written: bad input writes nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import Overrides
from .errors import UserError
from .evaluation import predict
from .footage import read_footage, side_by_side, to_model_frames, write_mp4, write_png
from .foreign import CHECKPOINT_KIND, configure, load_into, read_checkpoint
from .metrics.frame import score_frames
from .predictor import Predictor, predictor_overrides, resolve_config
from .registry import DATASETS, PREDICTORS
from .spec import Protocol, VideoSpec
from .store import load_checkpoint

MP4_NAME = "side_by_side.mp4"
FRAMES_DIR = "frames"


@dataclass(frozen=True)
class WeightsSource:
    """Where the predictor comes from: a run directory, or a checkpoint file with the names that place it."""

    run: Path | None = None
    checkpoint: Path | None = None
    model: str | None = None
    dataset: str | None = None
    protocol: str | None = None
    overrides: Overrides | None = None
    preset: str | None = None


@dataclass
class Described:
    """What building the predictor needs: its class, the protocol's clip shape, its settings and its weights."""

    cls: type[Predictor]
    spec: VideoSpec
    settings: dict[str, Any]
    preset_keys: tuple[str, ...]
    preset: str | None
    weights: Path


@dataclass(frozen=True)
class StepScore:
    step: int
    psnr: float
    ssim: float
    windows: int  # windows whose footage goes on to this step


def _vpbench_checkpoint(path: Path) -> dict | None:
    """The checkpoint's own record when it is one of vpbench's (its predictor and config), else None."""
    state = load_checkpoint(path)
    if isinstance(state, dict) and str(state.get("format", "")).startswith(CHECKPOINT_KIND):
        return {"predictor": state.get("predictor"), "config": state.get("config") or {}}
    return None


def _from_run(run: Path) -> Described:
    config_path, weights = run / "config.json", run / "checkpoints" / "best.pt"
    if not config_path.is_file():
        raise UserError(f"{run}: not a run directory (no config.json); --run takes runs/<dataset>/<predictor>/<id>")
    if not weights.is_file():
        raise UserError(f"{run}: no trained checkpoint ({weights}); run `bench train` or `bench run` first")
    identity = json.loads(config_path.read_text())
    protocol = Protocol(**identity["protocol"])  # as the run resolved it, --context / --horizon included
    own = _vpbench_checkpoint(weights) or {"config": {}}
    return Described(PREDICTORS.get(identity["predictor"]), protocol.spec, own["config"], (), None, weights)


def _from_checkpoint(source: WeightsSource) -> Described:
    if source.model is None or source.dataset is None:
        raise UserError("--checkpoint needs --model and --dataset (the protocol the weights were trained for)")
    if not source.checkpoint.is_file():
        raise UserError(f"checkpoint file not found: {source.checkpoint}")
    cls, dataset = PREDICTORS.get(source.model), DATASETS.get(source.dataset)
    overrides = source.overrides or Overrides()
    protocol = dataset.protocol_without_data(source.protocol, **overrides.dataset)
    settings = predictor_overrides(cls, overrides)
    own = _vpbench_checkpoint(source.checkpoint)
    if own is not None:
        if own["predictor"] not in (None, cls.registry_name):
            raise UserError(f"checkpoint {source.checkpoint} holds {own['predictor']} weights, not "
                            f"{cls.registry_name}'s: --model {own['predictor']}")
        settings = {**own["config"], **settings}  # the settings it was trained with; --set wins
    return Described(cls, protocol.spec, settings, dataset.presets_for(protocol), source.preset, source.checkpoint)


def load_predictor(source: WeightsSource, native: tuple[int, int] | None, device: torch.device) -> Predictor:
    """The predictor with its weights, on the protocol's frame size or, with `native` (height, width), on that."""
    if (source.run is None) == (source.checkpoint is None):
        raise UserError("give either --run DIR (a trained run) or --checkpoint FILE")
    described = _from_run(source.run) if source.run is not None else _from_checkpoint(source)
    cls, spec = described.cls, described.spec
    if native is not None:
        if not cls.fully_convolutional:
            raise UserError(f"{cls.registry_name} is not fully convolutional: its weights fit the protocol's "
                            f"{spec.height}x{spec.width} frames only; leave out --native-size to resize to them")
        spec = VideoSpec(spec.channels, native[0], native[1], spec.context, spec.future)
    checkpoint = read_checkpoint(described.weights, cls)
    settings = configure(checkpoint, spec, described.settings)
    resolved = resolve_config(cls, described.preset_keys, settings, preset=described.preset)
    model = resolved.build(spec).to(device)
    load_into(model, checkpoint)  # a checkpoint of another predictor fails here, in one line
    return model.eval()


def window_starts(frames: int, context: int, stride: int) -> list[int]:
    """First frame of every context window that fits in the footage."""
    if frames < context:
        raise UserError(f"the footage has {frames} frames, fewer than the {context} context frames the model needs")
    return list(range(0, frames - context + 1, stride))


@torch.no_grad()
def predict_windows(model: Predictor, clip: Tensor, starts: list[int], seed: int = 0) -> Tensor:
    """Each window's prediction, clamped to [0, 1]: [windows, future, C, H, W] (a stochastic predictor's first
    sample, drawn from `seed`)."""
    spec, device = model.spec, next(model.parameters(), torch.empty(0)).device
    generator = torch.Generator(device).manual_seed(seed) if model.stochastic else None
    batch = max(1, model.config.eval_batch_size)
    outputs = []
    for first in range(0, len(starts), batch):
        context = torch.stack([clip[s: s + spec.context] for s in starts[first: first + batch]]).to(device)
        output, _ = predict(model, context, 1, generator, "fp32")
        outputs.append(output[:, 0].clamp(0, 1).cpu())
    return torch.cat(outputs)


def step_scores(prediction: Tensor, clip: Tensor, starts: list[int], context: int) -> list[StepScore]:
    """PSNR and SSIM per predicted step, the mean over the windows whose footage reaches that step."""
    scores = []
    for step in range(1, prediction.shape[1] + 1):
        at = [(w, s + context + step - 1) for w, s in enumerate(starts) if s + context + step - 1 < clip.shape[0]]
        if not at:
            break
        predicted = torch.stack([prediction[w, step - 1] for w, _ in at]).unsqueeze(1)
        truth = torch.stack([clip[t] for _, t in at]).unsqueeze(1)
        figures = score_frames(predicted, truth)
        scores.append(StepScore(step, figures["psnr"].mean().item(), figures["ssim"].mean().item(), len(at)))
    return scores


def write_predictions(out: Path, prediction: Tensor, clip: Tensor, starts: list[int], context: int) -> int:
    """PNG frames under out/frames/ and the side-by-side mp4; returns the mp4's frame count. Per window: its context
    frames, then its predicted steps; the ground-truth panel plays the footage and goes black where it ends."""
    frames = []
    for w, start in enumerate(starts):
        for step, frame in enumerate(prediction[w], 1):
            write_png(out / FRAMES_DIR / f"window{start:05d}_t{step:03d}.png", frame)
        last_context = clip[start + context - 1]
        for t in range(start, start + context + prediction.shape[1]):
            predicted = prediction[w, t - start - context] if t >= start + context else None
            truth = clip[t] if t < clip.shape[0] else None
            frames.append(side_by_side([clip[t] if t < start + context else last_context, predicted, truth],
                                       like=last_context))
    write_mp4(out / MP4_NAME, frames)
    return len(frames)


def run_predict(source: WeightsSource, footage: Path, out: Path, stride: int | None, native_size: bool,
                device: torch.device) -> tuple[list[StepScore], int, int]:
    """Load, predict, score, then write; returns the per-step scores, the number of windows and of mp4 frames."""
    frames = read_footage(footage)
    model = load_predictor(source, tuple(frames.shape[1:3]) if native_size else None, device)
    spec = model.spec
    clip = to_model_frames(frames, spec.channels, None if native_size else (spec.height, spec.width))
    starts = window_starts(clip.shape[0], spec.context, stride or spec.future)
    prediction = predict_windows(model, clip, starts)
    scores = step_scores(prediction, clip, starts, spec.context)
    count = write_predictions(out, prediction, clip, starts, spec.context)
    return scores, len(starts), count


def score_lines(scores: list[StepScore]) -> list[str]:
    if not scores:
        return ["no ground truth: every window predicts past the end of the footage"]
    lines = ["step  PSNR    SSIM    windows"]
    lines += [f"t+{s.step:<3d} {s.psnr:6.2f}  {s.ssim:.4f}  {s.windows}" for s in scores]
    return lines
