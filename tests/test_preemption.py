"""A scheduler's SIGTERM / SIGUSR1 during training: last.pt at that iteration, one line, a non-zero exit, and the
same command resumes there to the numbers of an uninterrupted run; wall-time checkpoints.

The signal comes from inside the run (a plugin's training step sends it at a chosen iteration), so where it lands
is fixed, not a race between the test and the training loop."""
import json
import signal
from pathlib import Path

import pytest

from conftest import run_bench

SIGNALLING_PLUGIN = '''
import os
import signal

from vpbench import PREDICTORS, register_predictor


@register_predictor("signalled-convlstm")
class SignalledConvLSTM(PREDICTORS.get("convlstm")):
    """convlstm whose training step sends SIGNAL_NAME after iteration SIGNAL_AT, on rank SIGNAL_RANK, to this
    process or (SIGNAL_TO=launcher) to the process that started it."""

    def training_step(self, clip, trainer):
        losses = super().training_step(clip, trainer)
        env = os.environ
        if (env.get("SIGNAL_AT") and trainer.iteration + 1 == int(env["SIGNAL_AT"])
                and env.get("RANK", "0") == env.get("SIGNAL_RANK", "0")):
            target = os.getppid() if env.get("SIGNAL_TO") == "launcher" else os.getpid()
            os.kill(target, getattr(signal, env["SIGNAL_NAME"]))
        return losses
'''
ARGS = ["--models", "signalled-convlstm", "--dataset", "moving-digits", "--preset", "tiny", "--out", "R",
        "--plugin", "signalled.py", "--set", "data.train_size=40", "--set", "data.val_size=6",
        "--set", "data.test_size=6", "--set", "batch_size=4", "--set", "max_iterations=16", "--set", "val_every=8",
        "--set", "checkpoint_every=1000", "--set", "sampling_stop_iter=16",
        # small frames and short clips: seconds per run
        "--set", "data.height=32", "--set", "data.width=32", "--context", "4", "--horizon", "4"]


def events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, (run_dir / "train.log").read_text().splitlines()) if e["event"] == kind]


def signalled_run(tmp_path: Path, nproc: int, env: dict, *extra: str) -> tuple[Path, object]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "signalled.py").write_text(SIGNALLING_PLUGIN)
    nprocs = ["--nproc", str(nproc)] if nproc > 1 else []
    threads = {"VPBENCH_THREADS": "1"} if nproc > 1 else {}
    proc = run_bench("run", *ARGS, *nprocs, *extra, cwd=tmp_path, env={**threads, **env}, check=False)
    (run_dir,) = (tmp_path / "R" / "moving-digits" / "signalled-convlstm").iterdir()
    return run_dir, proc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run of each process count uninterrupted (made once, for every test of that count), checkpointing by wall
    time at every iteration: checkpoint_minutes is bookkeeping, so the run id stays the same."""
    runs: dict[int, Path] = {}

    def get(nproc: int) -> Path:
        if nproc not in runs:
            run_dir, proc = signalled_run(tmp_path_factory.mktemp(f"clean{nproc}"), nproc, {},
                                          "--set", "checkpoint_minutes=1e-8")
            assert proc.returncode == 0, proc.stderr
            runs[nproc] = run_dir
        return runs[nproc]

    return get


@pytest.mark.parametrize("nproc, env, stop_at", [
    (1, {"SIGNAL_NAME": "SIGTERM"}, 7),
    # Rank 1 alone gets the signal: rank 0 must stop at the same iteration, having saved last.pt.
    (2, {"SIGNAL_NAME": "SIGTERM", "SIGNAL_RANK": "1"}, 7),
    # SLURM's warning, to the launcher, which passes it on to both ranks.
    (2, {"SIGNAL_NAME": "SIGUSR1", "SIGNAL_RANK": "1", "SIGNAL_TO": "launcher"}, None),
], ids=["sigterm-1-process", "sigterm-to-rank-1-of-2", "sigusr1-to-the-launcher-of-2"])
def test_a_signal_saves_the_iteration_and_the_same_command_resumes_to_the_uninterrupted_numbers(
        tmp_path, uninterrupted, nproc, env, stop_at):
    signum = getattr(signal, env["SIGNAL_NAME"])
    run_dir, stopped = signalled_run(tmp_path / "stopped", nproc, {**env, "SIGNAL_AT": "7"})
    assert stopped.returncode == 128 + signum, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if "stopped by" in line]
    assert len(lines) == 1, stopped.stderr
    iteration = int(lines[0].split(" at iteration ")[1].split()[0])
    assert f"stopped by {env['SIGNAL_NAME']} at iteration {iteration} of 16" in lines[0]
    assert "error" not in stopped.stderr.lower() and "Traceback" not in stopped.stderr, stopped.stderr
    if stop_at is not None:
        assert iteration == stop_at
    assert 7 <= iteration < 16
    assert not (run_dir / "result.json").exists()
    # checkpoint_every=1000 and 10 minutes: none but val_every's 8 and the one the signal asked for
    assert [e["iteration"] for e in events(run_dir, "checkpoint")] == sorted({min(8, iteration), iteration})

    resumed = signalled_run(tmp_path / "stopped", nproc, {})[1]
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert result["train"]["resumed_from"] == iteration and result["train"]["iterations"] == 16

    clean_dir = uninterrupted(nproc)
    assert clean_dir.name == run_dir.name
    # a minute's hundred-millionth is shorter than any iteration: a checkpoint after each
    assert [e["iteration"] for e in events(clean_dir, "checkpoint")] == list(range(1, 17))
    clean = json.loads((clean_dir / "result.json").read_text())
    assert result["train"]["best_iteration"] == clean["train"]["best_iteration"]
    for metric, value in clean["eval"]["mean"].items():
        assert result["eval"]["mean"][metric] == pytest.approx(value, rel=1e-6, abs=1e-6), metric
    for metric, steps in clean["eval"]["per_step"].items():
        assert result["eval"]["per_step"][metric] == pytest.approx(steps, rel=1e-6, abs=1e-6), metric
