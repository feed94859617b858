"""Orchestrates `bench run / train / eval`: resolve names and configs, then train, evaluate and store."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Subset

from . import __version__
from .config import Overrides, config_to_dict, identity_dict
from .costs import measure_costs
from .data import SPLITS, VideoDataset
from .digest import sha256_file
from .errors import UserError
from .evaluation import evaluate
from .metrics.suite import MetricSuite
from .precision import Precision
from .predictor import Predictor, resolve_config
from .progress import console
from .registry import DATASETS, PREDICTORS
from .store import RESULT_SCHEMA, RunDir
from .training import load_weights, train

Mode = Literal["run", "train", "eval"]
# --quick scores a prefix of the test split, and the result says so: 256 sequences, fewer (down to 32) when the
# horizon is long, so that a 300-frame smoke run scores about as many frames as a 20-frame one.
QUICK_TEST_SEQUENCES, QUICK_MIN_SEQUENCES, QUICK_TEST_FRAMES = 256, 32, 5120


def quick_test_sequences(future: int) -> int:
    return min(QUICK_TEST_SEQUENCES, max(QUICK_MIN_SEQUENCES, QUICK_TEST_FRAMES // future))


@dataclass
class RunSettings:
    out: Path = Path("runs")
    device: str = "auto"
    seed: int = 0
    quick: bool = False
    precision: Precision = "fp32"
    workers: int = 0
    force: bool = False
    preset: str | None = None
    checkpoint: Path | None = None
    progress: bool = True
    lpips_weights: Path | None = None  # None: VPBENCH_LPIPS_WEIGHTS, else torchvision's cache under TORCH_HOME
    yolo_weights: str | None = None  # a file or an Ultralytics weights name; None: VPBENCH_YOLO_WEIGHTS, yolov5su.pt
    samples: int | None = None  # per sequence, for stochastic predictors; None: the predictor's `eval_samples`


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but this machine has no CUDA GPU visible to torch")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def build_dataset(name: str, protocol: str | None, options: dict[str, Any]) -> VideoDataset:
    return DATASETS.get(name).create(protocol, **options)


def predictor_overrides(cls: type[Predictor], overrides: Overrides) -> dict[str, Any]:
    """Keys set for every predictor apply where the predictor has them; scoped keys always apply."""
    known = {f.name for f in fields(cls.Config)}
    shared = {k: v for k, v in overrides.everyone.items() if k in known}
    return {**shared, **overrides.per_predictor.get(cls.registry_name, {})}


def check_shared_keys(classes: list[type[Predictor]], overrides: Overrides) -> None:
    known = set().union(*({f.name for f in fields(c.Config)} for c in classes))
    unknown = sorted(set(overrides.everyone) - known)
    if unknown:
        names = ", ".join(c.registry_name for c in classes)
        raise UserError(f"--set/--config key {unknown[0]!r} is not a setting of any of: {names}")


def _sampling_record(scores: dict) -> dict:
    """What a stochastic predictor's eval block adds: how its numbers were drawn and the best of N."""
    n = scores["samples"]
    return {"samples": n, "best_of_samples": scores["best_of_samples"],
            "sampling": f"per_step and mean: the mean over {n} samples per sequence; best_of_samples: per sequence "
                        f"and metric the sample with the best time-averaged score; detection: the first sample"}


def run_models(models: list[str], dataset_name: str, protocol: str | None, overrides: Overrides,
               settings: RunSettings, mode: Mode = "run") -> list[dict]:
    """Train and/or evaluate each model; returns the result records (empty dicts for train-only)."""
    if not models:
        raise UserError("no predictor named: pass --models a,b")
    classes = [PREDICTORS.get(name) for name in models]  # unknown names fail before any work
    dataset = build_dataset(dataset_name, protocol, overrides.dataset)
    check_shared_keys(classes, overrides)
    if settings.preset is not None and not any(settings.preset in c.presets for c in classes):
        raise UserError(f"no predictor of this run has a preset {settings.preset!r}")
    if settings.checkpoint is not None and not settings.checkpoint.is_file():
        raise UserError(f"checkpoint file not found: {settings.checkpoint}")
    device = resolve_device(settings.device)
    # Weights are found and checked before any training, so a mistyped --lpips-weights fails at once.
    perceptual = None if mode == "train" else MetricSuite(settings.lpips_weights, settings.yolo_weights)
    return [_run_one(cls, dataset, overrides, settings, device, mode, perceptual) for cls in classes]


def _run_one(cls: type[Predictor], dataset: VideoDataset, overrides: Overrides, settings: RunSettings,
             device: torch.device, mode: Mode, perceptual: MetricSuite | None = None) -> dict:
    name = cls.registry_name
    resolved = resolve_config(cls, dataset.presets(), predictor_overrides(cls, overrides),
                              preset=settings.preset if settings.preset in cls.presets else None,
                              quick=settings.quick)
    identity = {
        "predictor": name, "dataset": dataset.registry_name, "protocol": dataset.protocol.to_dict(),
        "dataset_config": config_to_dict(dataset.config), "seed": settings.seed, "quick": settings.quick,
        "preset": resolved.preset, "precision": settings.precision, "config": identity_dict(resolved.config),
    }
    fingerprint = dataset.fingerprint()
    if fingerprint is not None:  # other files under the same root are other data: a new run, not a skip
        identity["data_fingerprint"] = fingerprint
    samples = (settings.samples or resolved.config.eval_samples) if cls.stochastic else 1
    if cls.stochastic:
        identity["samples"] = samples
    if settings.checkpoint is not None:
        identity["checkpoint_sha256"] = sha256_file(settings.checkpoint)[:16]
    run = RunDir(settings.out, dataset.registry_name, name, identity)
    existing = run.read_result()
    if existing is not None and not settings.force and mode != "train":
        console.print(f"[dim]{name}: result exists, skipped ({run.path}); --force redoes it[/dim]")
        return existing
    run.prepare(force=settings.force)

    torch.manual_seed(settings.seed)
    model = resolved.build(dataset.spec).to(device)
    train_summary = None
    if cls.trainable and settings.checkpoint is None and mode in ("run", "train"):
        train_summary = train(model, dataset.split("train"), dataset.split("val"), run, seed=settings.seed,
                              device=device, precision=settings.precision, workers=settings.workers,
                              show_progress=settings.progress)
    if mode == "train":
        console.print(f"{name}: trained, best checkpoint {run.best_checkpoint}")
        return {}

    checkpoint_used = "none (needs no training)"
    if settings.checkpoint is not None:
        load_weights(model, settings.checkpoint, device)
        checkpoint_used = str(settings.checkpoint)
    elif cls.trainable:
        if not run.best_checkpoint.is_file():
            raise UserError(f"{name}: no trained checkpoint in {run.path}; run `bench train` or `bench run` first")
        load_weights(model, run.best_checkpoint, device)
        checkpoint_used = "best on validation"

    test = dataset.split("test")
    scored = Subset(test, range(min(quick_test_sequences(dataset.spec.future), len(test)))) if settings.quick else test
    extra = (perceptual or MetricSuite()).build(dataset.spec, device)
    tic = time.perf_counter()
    scores = evaluate(model, scored, device=device, precision=settings.precision,
                      batch_size=model.config.eval_batch_size, workers=settings.workers, extra_metrics=extra.metrics,
                      samples=samples, seed=settings.seed)
    eval_seconds = time.perf_counter() - tic
    device_name = describe_device(device)
    costs = measure_costs(model, test[0], device, device_name, precision=settings.precision)
    result = {
        "schema": RESULT_SCHEMA, "run_id": run.id, **identity,
        "config": config_to_dict(model.config),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"vpbench": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "train": train_summary.to_dict() if train_summary else None,
        "eval": {
            "split": "test", "sequences": scores["sequences"], "split_size": len(test),
            "whole_split": scores["sequences"] == len(test), "checkpoint": checkpoint_used,
            "per_step": scores["per_step"], "mean": scores["mean"], "not_measured": extra.not_measured,
            "weights": extra.weights, **({"detection": scores["detection"]} if "detection" in scores else {}),
            **(_sampling_record(scores) if cls.stochastic else {}),
            "wall_seconds": round(eval_seconds, 3), "forward_seconds": round(scores["forward_seconds"], 3),
        },
        "costs": costs,
    }
    problems = dataset.problems()  # files a split lost (corrupt, truncated): counted, never silently dropped
    result["data"] = {"left_out": {split: sum(p.split == split for p in problems) for split in SPLITS},
                      "problems": [dataclasses.asdict(p) for p in problems]}
    run.write_result(result)
    mean = scores["mean"]
    lpips = f"  LPIPS {mean['lpips']:.4f}" if "lpips" in mean else ""
    console.print(f"{name}: PSNR {mean['psnr']:.2f}  SSIM {mean['ssim']:.4f}  MSE {mean['mse']:.3e}{lpips} "
                  f"over {scores['sequences']} test sequences -> {run.result_path}")
    return result
