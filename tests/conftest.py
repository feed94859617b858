import os
import subprocess
import sys
from pathlib import Path

import pytest

from vpbench.cpu import keep_freed_memory_for_reuse

keep_freed_memory_for_reuse()

# A convlstm small enough that a training run takes seconds on two CPU cores.
TINY = ["--set", "convlstm.num_layers=1", "--set", "convlstm.num_hidden=8", "--set", "convlstm.filter_size=3",
        "--set", "batch_size=4", "--set", "data.train_size=200", "--set", "data.val_size=8",
        "--set", "data.test_size=16"]


# Tests never judge speed (that is benchmarks/' job): a time limit only stops a hung command, and it is
# generous enough for a heavily loaded two-core machine.
HANG_GUARD_SECONDS = 3600


def run_bench(*args: str, cwd: Path, env: dict | None = None, check: bool = True,
              timeout: float = HANG_GUARD_SECONDS) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "VPBENCH_THREADS": "2", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "vpbench", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def bench(tmp_path):
    def call(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_bench(*args, cwd=kwargs.pop("cwd", tmp_path), **kwargs)

    return call


def assert_learns_and_rolls_out(model, batch_size: int, iterations: int, ratio: float, key: str = "loss") -> None:
    """Train `model` on one fixed batch of moving-digits clips: the mean of the last 5 `key` losses must be
    below `ratio` times the first 5; then a closed-loop rollout of 3x the 10-frame horizon must be finite."""
    import torch

    from vpbench.registry import DATASETS
    from vpbench.training import TrainContext

    torch.set_num_threads(1)
    data = DATASETS.get("moving-digits").create(train_size=64).split("train")
    batch = torch.stack([data[i] for i in range(batch_size)])
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    losses = []
    for trainer.iteration in range(iterations):
        losses.append(float(model.training_step(batch, trainer)[key]))
    assert sum(losses[-5:]) < ratio * sum(losses[:5]), losses
    model.eval()
    with torch.no_grad():
        out = model(batch[:, :10], 30)
    assert out.shape == (batch_size, 30, 1, 64, 64) and torch.isfinite(out).all()
