"""`--log tensorboard`: event files in <run dir>/tensorboard (`tensorboard --logdir runs` shows every run)."""
from __future__ import annotations

import json

from . import Outcome, TrackedRun, Tracker, numbers

LOG_DIR = "tensorboard"


class TensorBoardTracker(Tracker):
    def __init__(self, run: TrackedRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.path / LOG_DIR))
        self.writer.add_text("config", f"```\n{json.dumps(run.params, indent=2)}\n```")

    def train(self, iteration: int, values: dict[str, float]) -> None:
        for name, value in numbers(values).items():
            self.writer.add_scalar(f"train/{name}", value, iteration)

    def validation(self, iteration: int, figures: dict[str, float]) -> None:
        for name, value in numbers(figures).items():
            self.writer.add_scalar(f"val/{name}", value, iteration)

    def result(self, outcome: Outcome) -> None:
        # per-step curves: the x axis is the predicted step (1 = the first frame after the context)
        for metric, curve in outcome.per_step.items():
            for step, value in enumerate(curve, 1):
                if value is not None:
                    self.writer.add_scalar(f"test/{metric}", value, step)
        for metric, value in numbers(outcome.mean).items():
            self.writer.add_scalar(f"test_mean/{metric}", value, 0)
        if outcome.strip is not None:
            self.writer.add_image("test/strip", outcome.strip, 0, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def start(run: TrackedRun) -> Tracker:
    return TensorBoardTracker(run)
