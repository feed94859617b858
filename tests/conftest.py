import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vpbench.cpu import keep_freed_memory_for_reuse, usable_cpus
from vpbench.predictor import create_predictor
from vpbench.spec import VideoSpec

keep_freed_memory_for_reuse()

# pytest-xdist's workers (the README's `-n auto`: one a core) share the cores: each worker, and each command it
# runs, gets its share of them. Two threads each on two cores would put four busy OpenMP threads on two cores,
# which spin-waits into many times slower runs.
THREADS = max(1, usable_cpus() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["VPBENCH_THREADS"] = str(THREADS)  # read by every `bench` a test starts and by set_threads() in tests
torch.set_num_threads(THREADS)

# A convlstm small enough that a training run takes seconds on two CPU cores.
TINY = ["--set", "convlstm.num_layers=1", "--set", "convlstm.num_hidden=8", "--set", "convlstm.filter_size=3",
        "--set", "batch_size=4", "--set", "data.train_size=200", "--set", "data.val_size=8",
        "--set", "data.test_size=16"]


# Tests never judge speed (that is benchmarks/' job): a time limit only stops a hung command, and it is
# generous enough for a heavily loaded two-core machine.
HANG_GUARD_SECONDS = 3600


def run_bench(*args: str, cwd: Path, env: dict | None = None, check: bool = True,
              timeout: float = HANG_GUARD_SECONDS) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}  # os.environ holds THREADS as VPBENCH_THREADS (above)
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


# Moving MNIST's frames and protocol: the size the reference models are counted at.
MMNIST = VideoSpec(1, 64, 64, 10, 10)


def tiny(name: str, spec: VideoSpec = MMNIST, **overrides):
    """`name` at its `tiny` preset (the size the contract checks), seeded: what a test of one behaviour builds."""
    torch.manual_seed(0)
    return create_predictor(name, spec, preset="tiny", **overrides)


def readme_plugin_source() -> str:
    """The example plugin of the README's "Adding a predictor" section: tests run what users copy."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Adding a predictor"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)
