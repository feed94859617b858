"""Running where researchers run (issue 26): progress lines without a terminal, train.log times, the threads the
scheduler gave, file modes under the user's umask, bad input that writes nothing, --no-wait."""
import datetime
import fcntl
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HANG_GUARD_SECONDS, THREADS, TINY, run_bench
from vpbench.config import TrainConfig, apply_overrides
from vpbench.cpu import cgroup_cpu_quota, thread_count, usable_cpus
from vpbench.errors import UserError
from vpbench.files import write_text_atomic
from vpbench.progress import progress_bar, progress_style

RUN = ["run", "--models", "convlstm", "--dataset", "moving-digits", "--out", "R", *TINY,
       "--set", "max_iterations=12", "--set", "val_every=6", "--set", "data.test_size=8",
       "--set", "data.height=32", "--set", "data.width=32", "--context", "4", "--horizon", "4"]
COPY_LAST = ["run", "--models", "copy-last", "--dataset", "moving-digits", "--out", "R", "--set", "data.test_size=4",
             "--set", "data.height=32", "--set", "data.width=32"]


def bare_env(**extra: str) -> dict:
    """The environment without the thread settings the test session runs under, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VPBENCH_THREADS", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "VPBENCH_PROGRESS")}
    return {**env, **extra}


def bench_raw(*args: str, cwd: Path, env: dict, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`bench ARGS` with exactly `env` (run_bench passes conftest's VPBENCH_THREADS), stderr a pipe: no terminal."""
    return subprocess.run([*prefix, sys.executable, "-m", "vpbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD_SECONDS)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One short training run under umask 022 with a progress line at every chance (VPBENCH_PROGRESS_SECONDS=0),
    and its report; the same run again under --quiet in another folder."""
    root = tmp_path_factory.mktemp("logged")
    previous = os.umask(0o022)
    try:
        loud = run_bench(*RUN, cwd=root, env={"VPBENCH_PROGRESS_SECONDS": "0"})
        quiet_dir = root / "quiet"
        quiet_dir.mkdir()
        quiet = run_bench(*RUN, "--quiet", cwd=quiet_dir, env={"VPBENCH_PROGRESS_SECONDS": "0"})
        run_bench("report", "--runs", "R", "--out", "report/report.md", cwd=root)
    finally:
        os.umask(previous)
    (run_dir,) = (root / "R" / "moving-digits" / "convlstm").iterdir()
    return root, run_dir, loud.stderr, quiet.stderr


def test_without_a_terminal_a_run_writes_a_start_line_progress_lines_and_an_end_line(logged_run):
    root, run_dir, stderr, _ = logged_run
    run_dir = run_dir.relative_to(root)  # as --out names it
    start = [line for line in stderr.splitlines() if "] start convlstm" in line]
    assert len(start) == 1, stderr
    threads = f"{THREADS} thread{'s' * (THREADS > 1)} x 1 process"
    for part in ("on moving-digits", "protocol ", str(run_dir), "device cpu", threads, "12 iterations"):
        assert part in start[0], (part, start[0])
    progress = re.findall(r"\] train convlstm (\d+)/12  loss \S+.*  \S+ it/s  elapsed \d+:\d\d:\d\d  "
                          r"ETA \d+:\d\d:\d\d$", stderr, re.M)
    assert [int(n) for n in progress] == list(range(1, 12)), stderr  # every iteration but the last: interval 0
    assert re.search(r"\] train convlstm 12/12 .* done$", stderr, re.M), stderr
    assert re.search(r"\] test convlstm 8/8  \S+ seq/s .* done$", stderr, re.M), stderr
    assert re.search(rf"\] end convlstm: result {re.escape(str(run_dir / 'result.json'))} after \d+:\d\d:\d\d$",
                     stderr, re.M), stderr
    assert "\x1b[" not in stderr  # no bar, no colour codes in a log file


def test_quiet_writes_no_progress_at_all(logged_run):
    quiet = logged_run[3]
    assert not re.search(r"\] (start|train|test|end) ", quiet), quiet
    assert "━" not in quiet  # nor a bar
    assert "convlstm: PSNR" in quiet  # the result still prints


def test_progress_lines_come_at_most_once_per_interval_on_a_fake_clock(monkeypatch, capsys):
    monkeypatch.setenv("VPBENCH_PROGRESS_SECONDS", "30")
    now = [100.0]
    with progress_bar("train x", total=200, completed=20, style="lines", clock=lambda: now[0]) as bar:
        for _ in range(180):  # one iteration every 2 s: 360 s in all
            now[0] += 2.0
            bar.advance(loss=0.5)
    lines = capsys.readouterr().err.splitlines()
    # a line once 30 s have passed since the previous one: at 30, 60, ..., 330 s; then the end line at 360 s
    assert [re.search(r"train x (\d+)/200", line).group(1) for line in lines] == \
        [str(20 + 15 * k) for k in range(1, 12)] + ["200"]
    assert "0.5 it/s  elapsed 0:00:30  ETA 0:05:30" in lines[0]  # 15 iterations in 30 s, 165 left
    assert lines[-1].endswith("elapsed 0:06:00  done")


def test_the_progress_style_follows_quiet_the_variable_and_the_terminal():
    assert progress_style(True, {"VPBENCH_PROGRESS": "bar"}, terminal=True) == "off"
    assert progress_style(False, {}, terminal=True) == "bar"
    assert progress_style(False, {}, terminal=False) == "lines"
    assert progress_style(False, {"VPBENCH_PROGRESS": "1"}, terminal=False) == "bar"  # its meaning before lines
    assert progress_style(False, {"VPBENCH_PROGRESS": "lines"}, terminal=True) == "lines"
    assert progress_style(False, {"VPBENCH_PROGRESS": "0"}, terminal=True) == "off"
    with pytest.raises(UserError, match="VPBENCH_PROGRESS"):
        progress_style(False, {"VPBENCH_PROGRESS": "loud"})


def test_train_log_lines_carry_wall_time_and_seconds_since_the_run_started(logged_run):
    _, run_dir, _, _ = logged_run
    events = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()]
    assert {"train", "val", "checkpoint", "done"} <= {e["event"] for e in events}
    times = [datetime.datetime.fromisoformat(e["time"]) for e in events]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert all(t.tzinfo is not None and now - datetime.timedelta(hours=2) < t <= now for t in times)
    seconds = [e["seconds"] for e in events]
    assert seconds == sorted(seconds) and seconds[0] >= 0
    assert times == sorted(times)


def test_every_file_of_a_run_and_of_its_report_gets_the_umask_mode(logged_run):
    root, run_dir, _, _ = logged_run
    files = [p for p in [*run_dir.rglob("*"), *(root / "report").rglob("*")] if p.is_file()]
    names = {p.name for p in files}
    assert {"result.json", "config.json", "train.log", "last.pt", "best.pt", "kept_frames.npz", "report.md"} <= names
    assert any(p.suffix == ".png" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}


def test_an_atomic_write_follows_another_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "shared.md", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "shared.md").stat().st_mode) == 0o640


def test_cgroup_quotas_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path / "v1") == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path / "v1") is None
    assert cgroup_cpu_quota(tmp_path / "none") is None
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(v2, {}) == 1  # 1.5 CPUs of time: one thread
    assert usable_cpus(tmp_path / "none", {"SLURM_CPUS_PER_TASK": "1"}) == 1


def test_thread_count_precedence():
    assert thread_count({}, cpus=8) == 8
    assert thread_count({"LOCAL_WORLD_SIZE": "4"}, cpus=8) == 2  # shared among the local ranks
    assert thread_count({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "4"}, cpus=8) == 3  # per process, as asked
    assert thread_count({"VPBENCH_THREADS": "5", "OMP_NUM_THREADS": "3"}, cpus=8) == 5
    # torchrun's own OMP_NUM_THREADS=1 (set when the user set none) is not read as a request
    assert thread_count({"OMP_NUM_THREADS": "1", "TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "2"}, cpus=8) == 4
    with pytest.raises(UserError, match="VPBENCH_THREADS"):
        thread_count({"VPBENCH_THREADS": "two"}, cpus=8)


@pytest.mark.parametrize("how", ["taskset", "slurm"])
def test_a_run_pinned_to_one_cpu_records_one_thread(tmp_path, how):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this machine gives one CPU already: nothing to restrict")
    prefix = ("taskset", "-c", str(min(os.sched_getaffinity(0)))) if how == "taskset" else ()
    env = bare_env(**({"SLURM_CPUS_PER_TASK": "1"} if how == "slurm" else {}))
    proc = bench_raw(*COPY_LAST, cwd=tmp_path, env=env, prefix=prefix)
    assert proc.returncode == 0, proc.stderr
    (result,) = (tmp_path / "R").rglob("result.json")
    assert json.loads(result.read_text())["threads"] == 1


def test_prepare_from_a_missing_source_writes_nothing(tmp_path):
    home = tmp_path / "data"
    for source in (tmp_path / "no" / "such" / "dir", tmp_path / "empty"):
        if source.name == "empty":
            source.mkdir()
        proc = bench_raw("data", "prepare", "kth", "--source", str(source), cwd=tmp_path,
                         env=bare_env(VPBENCH_DATA=str(home), VPBENCH_THREADS="1"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert not home.exists(), list(home.rglob("*"))


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_a_float_setting_refuses_non_finite_values(tmp_path, value):
    with pytest.raises(UserError, match=f"lr={value!r} must be a finite number"):
        apply_overrides(TrainConfig(), {"lr": value}, "convlstm")
    with pytest.raises(UserError, match="must be a finite number"):
        apply_overrides(TrainConfig(), {"lr": float(value)}, "convlstm")  # as YAML's .inf gives it


def test_lr_inf_on_the_command_line_is_one_line_and_writes_nothing(bench, tmp_path):
    proc = bench(*RUN, "--set", "lr=inf", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: predictor convlstm: lr='inf' must be a finite number"]
    assert not (tmp_path / "R").exists()


def test_no_wait_stops_at_once_naming_the_process_that_holds_the_run(bench, tmp_path):
    bench(*COPY_LAST)
    (result,) = (tmp_path / "R").rglob("result.json")
    run_id = json.loads(result.read_text())["run_id"]
    with open(tmp_path / "R" / ".locks" / f"{run_id}.lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.seek(0)
        holder.truncate()
        holder.write(f"{os.getpid()}\n")
        holder.flush()
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / "R").rglob("*") if p.is_file()}
        proc = bench(*COPY_LAST, "--force", "--no-wait", check=False, timeout=600)  # waiting would hang
        assert proc.returncode == 2
        assert proc.stderr.count("error:") == 1, proc.stderr
        assert f"in progress in process {os.getpid()}" in proc.stderr and "--no-wait" in proc.stderr
        after = {p: p.stat().st_mtime_ns for p in (tmp_path / "R").rglob("*") if p.is_file()}
        assert after == before  # --force removed nothing: it never got the run
