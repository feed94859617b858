"""Several processes (torchrun through `bench --nproc 2`, gloo on the CPU) give a 1-process run's numbers.

Every test here starts real processes: 2 ranks of 1 thread each, on splits and models small enough for seconds.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import HANG_GUARD_SECONDS, run_bench
from vpbench.launch import without_nproc
from vpbench.predictor import create_predictor
from vpbench.registry import DATASETS
from vpbench.sharding import shard_bounds
from vpbench.store import load_checkpoint

ONE_THREAD = {"VPBENCH_THREADS": "1"}
SMALL_DATA = ["--set", "data.train_size=50", "--set", "data.val_size=6"]
# convlstm at its contract size, an odd global batch (3 + 2 clips on 2 ranks), scheduled sampling falling from
# 1 to 0 over the 20 iterations (a mixed mask at most of them), gradient clipping on (the tiny preset's 1.0).
CONVLSTM_20 = ["--models", "convlstm", "--dataset", "moving-digits", "--preset", "tiny", *SMALL_DATA,
               "--set", "batch_size=5", "--set", "max_iterations=20", "--set", "sampling_stop_iter=20",
               "--set", "val_every=10", "--set", "log_every=1"]


def bench_in(n: int, *args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """`bench ARGS` in n processes (--nproc n) or in one."""
    nproc = ["--nproc", str(n)] if n > 1 else []
    return run_bench(*args, *nproc, cwd=cwd, env={**ONE_THREAD, **kwargs.pop("env", {})}, **kwargs)


def only_run(root: Path) -> Path:
    (run_dir,) = root.iterdir()
    return run_dir


def train_losses(run_dir: Path) -> dict[int, float]:
    lines = map(json.loads, (run_dir / "train.log").read_text().splitlines())
    return {e["iteration"]: e["loss"] for e in lines if e["event"] == "train"}


def assert_weights_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def assert_metrics_close(one: dict, two: dict, atol: float, metrics=("psnr", "ssim", "mse")) -> None:
    for metric in metrics:
        assert two["mean"][metric] == pytest.approx(one["mean"][metric], abs=atol), metric
        assert len(two["per_step"][metric]) == len(one["per_step"][metric])
        for a, b in zip(one["per_step"][metric], two["per_step"][metric]):
            assert b == pytest.approx(a, abs=atol), metric


def test_shards_partition_in_order_and_differ_by_at_most_one():
    for size in range(0, 12):
        for world in range(1, 5):
            bounds = [shard_bounds(size, r, world) for r in range(world)]
            assert [i for start, stop in bounds for i in range(start, stop)] == list(range(size))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_the_started_processes_get_the_command_without_nproc():
    assert without_nproc(["run", "--nproc", "2", "--models", "a", "--nproc=3", "--quick"]) == \
        ["run", "--models", "a", "--quick"]


def test_evaluating_fixed_weights_on_two_ranks_equals_one_rank(tmp_path):
    spec = DATASETS.get("moving-digits").create(None).spec
    torch.manual_seed(3)
    model = create_predictor("convlstm", spec, preset="tiny")
    torch.save({"model": model.state_dict()}, tmp_path / "weights.pt")
    # 7 sequences: 4 + 3 on two ranks, in batches of 2 (so the ranks' batches differ from one process's too)
    args = ["eval", "--models", "convlstm", "--dataset", "moving-digits", "--preset", "tiny", "--checkpoint",
            "weights.pt", *SMALL_DATA, "--set", "data.test_size=7", "--set", "eval_batch_size=2",
            "--set", "eval.keep_sequences=5"]  # 5 of 7: frames kept on both ranks
    bench_in(1, *args, "--out", "one", cwd=tmp_path)
    bench_in(2, *args, "--out", "two", cwd=tmp_path)
    one = json.loads((only_run(tmp_path / "one" / "moving-digits" / "convlstm") / "result.json").read_text())
    two = json.loads((only_run(tmp_path / "two" / "moving-digits" / "convlstm") / "result.json").read_text())
    assert one["run_id"] == two["run_id"]
    assert one["eval"]["sequences"] == two["eval"]["sequences"] == 7
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert_metrics_close(one["eval"], two["eval"], atol=1e-6, metrics=("psnr", "ssim", "mse", "mae"))
    kept = [np.load(only_run(tmp_path / out / "moving-digits" / "convlstm") / "kept_frames.npz")
            for out in ("one", "two")]
    assert len(kept[0]["indices"]) == 5 and (kept[0]["indices"] == kept[1]["indices"]).all()
    for name in ("context", "target", "prediction"):  # rank 0 gathered the other rank's sequences in place
        assert np.abs(kept[0][name].astype(int) - kept[1][name].astype(int)).max() <= 1, name


def test_a_rank_with_no_sequence_to_score_still_takes_part(tmp_path):
    # mean-frame too: every rank reads the same training clips for its mean, so the mean is the 1-process one
    args = ["eval", "--models", "copy-last,mean-frame", "--dataset", "moving-digits", *SMALL_DATA,
            "--set", "data.test_size=1"]
    bench_in(1, *args, "--out", "one", cwd=tmp_path)
    bench_in(2, *args, "--out", "two", cwd=tmp_path)
    for name in ("copy-last", "mean-frame"):
        one, two = (json.loads((only_run(tmp_path / out / "moving-digits" / name) / "result.json").read_text())
                    for out in ("one", "two"))
        assert two["eval"]["sequences"] == 1 and two["eval"]["checkpoint"] == one["eval"]["checkpoint"]
        assert_metrics_close(one["eval"], two["eval"], atol=1e-6)


def test_twenty_iterations_of_convlstm_on_two_ranks_follow_the_one_rank_run(tmp_path):
    bench_in(1, "train", *CONVLSTM_20, "--out", "one", cwd=tmp_path)
    bench_in(2, "train", *CONVLSTM_20, "--out", "two", cwd=tmp_path)
    one = only_run(tmp_path / "one" / "moving-digits" / "convlstm")
    two = only_run(tmp_path / "two" / "moving-digits" / "convlstm")
    assert one.name == two.name  # the run id does not depend on the number of processes
    losses_one, losses_two = train_losses(one), train_losses(two)
    assert sorted(losses_one) == sorted(losses_two) == list(range(1, 21))
    for iteration, loss in losses_one.items():
        assert losses_two[iteration] == pytest.approx(loss, abs=1e-5), iteration
    assert_weights_close(load_checkpoint(one / "checkpoints" / "last.pt")["model"],
                         load_checkpoint(two / "checkpoints" / "last.pt")["model"], atol=1e-4)


def test_one_stip_step_on_two_ranks_equals_one_rank(tmp_path):
    # Both optimizers (discriminator, then generator), the LP and adversarial losses, scheduled sampling.
    args = ["train", "--models", "stip", "--dataset", "moving-digits", "--preset", "tiny", *SMALL_DATA,
            "--set", "batch_size=3", "--set", "max_iterations=1", "--set", "log_every=1"]
    bench_in(1, *args, "--out", "one", cwd=tmp_path)
    bench_in(2, *args, "--out", "two", cwd=tmp_path)
    one = only_run(tmp_path / "one" / "moving-digits" / "stip")
    two = only_run(tmp_path / "two" / "moving-digits" / "stip")
    assert train_losses(two)[1] == pytest.approx(train_losses(one)[1], abs=1e-6)
    a, b = load_checkpoint(one / "checkpoints" / "last.pt"), load_checkpoint(two / "checkpoints" / "last.pt")
    assert any(key.startswith("discriminator.") for key in a["model"])
    # Equal up to float32 rounding (sums over 3 clips against 2 + 1: measured 1.3e-6 at most)
    assert_weights_close(a["model"], b["model"], atol=1e-5)
    for name in ("generator", "discriminator"):  # Adam's first moments: the same global gradients went in
        states_a = a["trainer"]["optimizers"][name]["state"]
        states_b = b["trainer"]["optimizers"][name]["state"]
        assert states_a.keys() == states_b.keys()  # the parameters no rank gave a gradient have no state
        for key in states_a:
            torch.testing.assert_close(states_a[key]["exp_avg"], states_b[key]["exp_avg"], rtol=1e-4, atol=1e-6)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_rank_training_killed_resumes_and_finishes(tmp_path):
    args = ["--models", "convlstm", "--dataset", "moving-digits", "--preset", "tiny", *SMALL_DATA, "--out", "R",
            "--set", "data.test_size=4", "--set", "max_iterations=100", "--set", "val_every=50",
            "--set", "checkpoint_every=5"]
    proc = subprocess.Popen([sys.executable, "-m", "vpbench", "run", "--nproc", "2", *args], cwd=tmp_path,
                            env={**os.environ, **ONE_THREAD}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    root = tmp_path / "R" / "moving-digits" / "convlstm"
    deadline = time.time() + HANG_GUARD_SECONDS
    killed_at, ranks = None, []
    while time.time() < deadline and proc.poll() is None:
        lasts = list(root.glob("*/checkpoints/last.pt"))
        if lasts and load_checkpoint(lasts[0])["iteration"] >= 20:
            ranks = _children(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's process group, as a scheduler ends a job
            proc.wait()
            killed_at = load_checkpoint(lasts[0])["iteration"]
            break
        time.sleep(0.2)
    assert killed_at is not None and killed_at < 100, "training finished before it could be killed"
    assert len(ranks) == 2
    # The ranks live in sessions of their own (torchrun's doing): they must die with their launcher anyway.
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
              for pid in ranks) and time.time() < deadline:
        time.sleep(0.2)
    run_dir = only_run(root)
    assert not (run_dir / "result.json").exists()

    bench_in(2, "run", *args, cwd=tmp_path)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["train"]["iterations"] == 100 and result["train"]["resumed_from"] == killed_at
    assert result["world_size"] == 2
    resumes = [e for e in map(json.loads, (run_dir / "train.log").read_text().splitlines()) if e["event"] == "resume"]
    assert [e["iteration"] for e in resumes] == [killed_at]


FAILS_ON_RANK_1 = '''
import os

import torch
from torch import nn

from vpbench import Predictor, register_predictor


@register_predictor("fails-on-rank-1")
class FailsOnRank1(Predictor):
    """Scales the last context frame by one weight; its training step raises on rank 1 only."""

    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, context, future):
        return (context[:, -1:] * self.scale).clamp(0, 1).expand(-1, future, -1, -1, -1)

    def training_step(self, clip, trainer):
        if os.environ["RANK"] == "1" and trainer.iteration == 3:
            raise RuntimeError("this predictor fails on rank 1")
        return super().training_step(clip, trainer)
'''


def test_a_rank_that_raises_ends_the_job_with_one_error_line(tmp_path):
    """The launcher ends the other rank: it does not wait out its collective timeout (which would print an error
    line of its own), training stops at the failed step, and nothing is scored."""
    (tmp_path / "fails.py").write_text(FAILS_ON_RANK_1)
    proc = bench_in(2, "run", "--plugin", "fails.py", "--models", "fails-on-rank-1", "--dataset", "moving-digits",
                    *SMALL_DATA, "--set", "batch_size=2", "--set", "max_iterations=1000", "--set", "log_every=1",
                    "--out", "runs", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stdout + proc.stderr
    assert "rank 1" in errors[0] and "this predictor fails on rank 1" in errors[0]
    run_dir = only_run(tmp_path / "runs" / "moving-digits" / "fails-on-rank-1")
    events = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()]
    assert [e["iteration"] for e in events] == [1, 2, 3]  # the steps before the one rank 1 failed in; no "done"
    assert not list((tmp_path / "runs").rglob("result.json"))


def test_bad_input_under_nproc_is_one_error_line_and_exit_code_2(tmp_path):
    proc = bench_in(2, "run", "--models", "no-such-model", "--dataset", "moving-digits", cwd=tmp_path, check=False,
                    timeout=120)
    assert proc.returncode == 2
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "no-such-model" in errors[0], proc.stdout + proc.stderr


@pytest.mark.slow
def test_quick_run_with_nproc_2_equals_one_process(tmp_path):
    args = ["run", "--models", "convlstm,copy-last", "--dataset", "moving-digits", "--quick", *SMALL_DATA,
            "--set", "data.test_size=9", "--set", "quick_iterations=20", "--set", "convlstm.num_hidden=8"]
    bench_in(1, *args, "--out", "one", cwd=tmp_path)
    two_proc = bench_in(2, *args, "--out", "two", cwd=tmp_path)
    assert two_proc.stdout.count("| convlstm") == 1  # rank 0 alone prints the table
    for name in ("convlstm", "copy-last"):
        one = json.loads((only_run(tmp_path / "one" / "moving-digits" / name) / "result.json").read_text())
        two = json.loads((only_run(tmp_path / "two" / "moving-digits" / name) / "result.json").read_text())
        assert one["run_id"] == two["run_id"]
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert one["eval"]["sequences"] == two["eval"]["sequences"] == 9
        assert_metrics_close(one["eval"], two["eval"], atol=1e-5, metrics=list(one["eval"]["mean"]))
