"""`--log mlflow`: a run in MLflow's tracking store (MLFLOW_TRACKING_URI; default a file: store in ./mlruns, where
`mlflow ui` looks, and not under the runs directory, whose result.json copies `bench report` would read), experiment
vpbench-<dataset>-<protocol>; params are the run's resolved config, result.json and the report artifacts."""
from __future__ import annotations

import os
import time
from pathlib import Path

from . import Outcome, TrackedRun, Tracker, flat_params, numbers

BATCH = 100  # MLflow's log_batch takes at most 100 params (and 1000 metrics) per call
MAX_VALUE = 6000  # characters of a param value MLflow stores


class MlflowTracker(Tracker):
    def __init__(self, run: TrackedRun) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store only on request; a local file: store is what --log mlflow offers
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(run.experiment)
        experiment = found.experiment_id if found is not None else self.client.create_experiment(run.experiment)
        self.run_id = self.client.create_run(experiment, run_name=run.name).info.run_id
        params = [Param(k, v[:MAX_VALUE]) for k, v in flat_params(run.params).items()]
        for first in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[first:first + BATCH])
        self.client.set_tag(self.run_id, "vpbench.run_dir", str(run.path))

    def _metrics(self, values: dict[str, float], prefix: str, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{prefix}/{k}", v, now, step) for k, v in numbers(values).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def train(self, iteration: int, values: dict[str, float]) -> None:
        self._metrics(values, "train", iteration)

    def validation(self, iteration: int, figures: dict[str, float]) -> None:
        self._metrics(figures, "val", iteration)

    def result(self, outcome: Outcome) -> None:
        for metric, curve in outcome.per_step.items():  # step = the predicted frame, 1 first
            for step, value in enumerate(curve, 1):
                self._metrics({metric: value}, "test", step)
        self._metrics(outcome.mean, "test_mean", 0)
        for path in outcome.files:
            self.client.log_artifact(self.run_id, str(path))
        if outcome.strip is not None:
            self.client.log_image(self.run_id, outcome.strip, "strip.png")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def start(run: TrackedRun) -> Tracker:
    return MlflowTracker(run)
