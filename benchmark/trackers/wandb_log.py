"""`--log wandb`: a Weights & Biases run (project WANDB_PROJECT, default vpbench; group vpbench-<dataset>-<protocol>),
its files under WANDB_DIR (default ./wandb: not under the runs directory, whose result.json copies `bench report` would
read). `WANDB_MODE=offline` keeps it on disk for `wandb sync`."""
from __future__ import annotations

import os

from . import Outcome, TrackedRun, Tracker, numbers


class WandbTracker(Tracker):
    def __init__(self, run: TrackedRun) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "vpbench"), name=run.name,
                              group=run.experiment, config=run.params)
        # W&B's own step must only grow: test curves are drawn over the predicted step instead
        self.run.define_metric("test/step")
        self.run.define_metric("test/*", step_metric="test/step")

    def train(self, iteration: int, values: dict[str, float]) -> None:
        self.run.log({f"train/{k}": v for k, v in numbers(values).items()}, step=iteration)

    def validation(self, iteration: int, figures: dict[str, float]) -> None:
        self.run.log({f"val/{k}": v for k, v in numbers(figures).items()}, step=iteration)

    def result(self, outcome: Outcome) -> None:
        steps = max((len(curve) for curve in outcome.per_step.values()), default=0)
        for step in range(1, steps + 1):
            values = numbers({m: c[step - 1] for m, c in outcome.per_step.items() if len(c) >= step})
            self.run.log({"test/step": step, **{f"test/{m}": v for m, v in values.items()}})
        self.run.summary.update({f"test_mean/{m}": v for m, v in numbers(outcome.mean).items()})
        if outcome.strip is not None:
            self.run.log({"strip": self.wandb.Image(outcome.strip)})
        for path in outcome.files:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self.run.finish()


def start(run: TrackedRun) -> Tracker:
    return WandbTracker(run)
