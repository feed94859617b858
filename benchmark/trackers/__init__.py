"""Experiment trackers (`--log tensorboard,mlflow,wandb`): one small interface, one module per tracker.

The training loop calls `train` and `validation` where it writes train.log, the runner calls `result` once
result.json is written; rank 0 alone tracks. Each tracker's package is optional (`pip install 'vpbench[mlflow]'`):
one that is asked for but not installed is refused before any work. A tracker that fails during a run (a server
gone away) is dropped with one warning: hours of training are not lost to a dashboard.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import UserError
from ..progress import console

# --log name -> (module here, the package it needs; the extra of the same name as the tracker installs it)
TRACKERS = {"tensorboard": ("tensorboard_log", "tensorboard"), "mlflow": ("mlflow_log", "mlflow"),
            "wandb": ("wandb_log", "wandb")}


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker names and records a run by."""

    name: str  # <predictor>-<run id>
    experiment: str  # vpbench-<dataset>-<protocol>: the runs one table compares
    path: Path  # the run directory
    params: dict[str, Any]  # the run's resolved config: config.json's contents


@dataclass(frozen=True)
class Outcome:
    """What a run measured, for `Tracker.result`."""

    per_step: dict[str, list[float]]  # test metric -> value per predicted step (step 1 first)
    mean: dict[str, float]
    files: list[Path]  # artifacts: result.json, the run's report
    strip: Any = None  # uint8 [H, W, 3] frame strip (context | truth over prediction), None when none was kept


class Tracker:
    """Every hook does nothing; a tracker overrides those it records."""

    def train(self, iteration: int, values: dict[str, float]) -> None:
        """Losses and learning rate at a logged iteration."""

    def validation(self, iteration: int, figures: dict[str, float]) -> None:
        """Validation scores at a validation iteration."""

    def result(self, outcome: Outcome) -> None:
        """The test scores and the result's files, once result.json is written."""

    def close(self) -> None:
        """End the tracker's run."""


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of `values` (a metric not measured is None): trackers take numbers only."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as dotted keys with text values (what MLflow and TensorBoard's text take)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def frame_strip(kept_frames: Path) -> Any:
    """The first kept test sequence as one uint8 [H, W, 3] image: its last context frames then the ground truth on
    top, the predictions beneath (under the context: black); None when the run kept no frames."""
    import numpy as np

    if not kept_frames.is_file():
        return None
    with np.load(kept_frames) as kept:
        context, target, prediction = kept["context"][0], kept["target"][0], kept["prediction"][0]
    top = np.concatenate([*context, *target], axis=1)
    bottom = np.concatenate([*np.zeros_like(context), *prediction], axis=1)
    strip = np.concatenate([top, bottom], axis=0)
    return np.repeat(strip, 3, axis=2) if strip.shape[2] == 1 else strip


def outcome_of(run_path: Path, result: dict[str, Any]) -> Outcome:
    """The tracked outcome of a finished run; its report (the run's row of `bench report`) is written beside
    result.json as report.md, for the trackers to store."""
    from vpbench.files import KEPT_FRAMES, write_text_atomic
    from vpbench.reports.tables import load_results, render

    report = run_path / "report.md"
    write_text_atomic(report, render(load_results(run_path)[0], "md"))
    evaluation = result["eval"]
    return Outcome(per_step=evaluation["per_step"], mean=evaluation["mean"],
                   files=[run_path / "result.json", report], strip=frame_strip(run_path / KEPT_FRAMES))


def check_trackers(names: list[str]) -> None:
    """Refuse an unknown tracker, or one whose package is not installed, before any work."""
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"unknown tracker {name!r} for --log; choose from {', '.join(TRACKERS)}")
        package = TRACKERS[name][1]
        if importlib.util.find_spec(package) is None:
            raise UserError(f"--log {name} needs the {package} package: pip install 'vpbench[{name}]'")


class _Fanout(Tracker):
    """Every tracker asked for; one that raises is dropped with a warning, and the run goes on."""

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self.trackers = trackers

    def _each(self, hook: str, *args: Any) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, hook)(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker's failure must not end the run
                del self.trackers[name]
                console.print(f"[yellow]warning:[/yellow] --log {name} stopped recording: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", highlight=False)

    def train(self, iteration: int, values: dict[str, float]) -> None:
        self._each("train", iteration, values)

    def validation(self, iteration: int, figures: dict[str, float]) -> None:
        self._each("validation", iteration, figures)

    def result(self, outcome: Outcome) -> None:
        self._each("result", outcome)

    def close(self) -> None:
        self._each("close")


@contextlib.contextmanager
def open_trackers(names: tuple[str, ...], run: TrackedRun | None) -> Iterator[Tracker]:
    """The trackers `names` started on `run` (None: this process does not track, as on ranks other than 0)."""
    if not names or run is None:
        yield Tracker()
        return
    fanout = _Fanout({})
    for name in names:
        module = importlib.import_module(f".{TRACKERS[name][0]}", __name__)
        try:
            fanout.trackers[name] = module.start(run)
        except Exception as exc:  # noqa: BLE001 - before training: no server, no login, a store it cannot open
            fanout.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(f"--log {name} could not start: {type(exc).__name__}: {first}") from exc
    try:
        yield fanout
    finally:
        fanout.close()
