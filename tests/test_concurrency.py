"""Two commands on one runs directory: the same run is done once (the second waits, then finds the result),
never written by two processes at once."""
import fcntl
import json
import os
import subprocess
import sys
import time

from conftest import HANG_GUARD_SECONDS, TINY, run_bench

RUN = ["run", "--models", "convlstm", "--dataset", "moving-digits", "--quick", *TINY,
       "--set", "max_iterations=40", "--set", "val_every=20"]


def _start(cwd, log):
    # Inherits conftest's VPBENCH_THREADS, as run_bench's commands do: the same thread count, the same float sums.
    return subprocess.Popen([sys.executable, "-m", "vpbench", *RUN, "--out", "R"], cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT)


def _result(out):
    (path,) = out.rglob("result.json")
    return json.loads(path.read_text())


def _single_run(tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    run_bench(*RUN, "--out", "R", cwd=reference)
    return _result(reference / "R")


def test_a_command_waits_for_the_process_that_holds_its_run(tmp_path):
    expected = _single_run(tmp_path)
    here = tmp_path / "held"
    lock = here / "R" / ".locks" / f"{expected['run_id']}.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as holder, open(tmp_path / "waiting.log", "w+") as log:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write(f"{os.getpid()}\n")
        holder.flush()
        proc = _start(here, log)
        deadline = time.time() + HANG_GUARD_SECONDS
        while "in progress" not in (tmp_path / "waiting.log").read_text() and time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "waiting.log").read_text()
            time.sleep(0.2)
        assert f"is in progress in process {os.getpid()}" in (tmp_path / "waiting.log").read_text()
        assert not list(here.rglob("config.json"))  # it waits before it touches the run
    # released: it goes on and does the run
    assert proc.wait(timeout=HANG_GUARD_SECONDS) == 0, (tmp_path / "waiting.log").read_text()
    assert _result(here / "R")["eval"]["mean"] == expected["eval"]["mean"]


def test_two_identical_commands_at_once_both_end_well_with_one_result(tmp_path):
    expected = _single_run(tmp_path)
    here = tmp_path / "both"
    here.mkdir()
    logs = [open(tmp_path / f"{n}.log", "w+") for n in range(2)]
    procs = [_start(here, log) for log in logs]
    codes = [proc.wait(timeout=HANG_GUARD_SECONDS) for proc in procs]
    outputs = [(tmp_path / f"{n}.log").read_text() for n in range(2)]
    for log in logs:
        log.close()
    assert codes == [0, 0], outputs
    result = _result(here / "R")
    assert result["run_id"] == expected["run_id"] and result["eval"]["mean"] == expected["eval"]["mean"]
    # one of them trained and scored, the other found its result (after waiting, or after it was written)
    assert sum("result exists, skipped" in out for out in outputs) == 1, outputs
    log_lines = (next((here / "R").rglob("train.log"))).read_text().splitlines()
    assert sum(json.loads(line)["event"] == "done" for line in log_lines) == 1
