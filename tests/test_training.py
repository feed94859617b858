"""The training loop: resume after SIGKILL, checkpoints, validation-only model selection, the store."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import HANG_GUARD_SECONDS, TINY, run_bench
from vpbench.config import Overrides
from vpbench.registry import DATASETS
from vpbench.devices import ExecutionSettings
from vpbench.runner import RunSettings, run_models
from vpbench.files import write_json_atomic
from vpbench.store import load_checkpoint

RESUMABLE = ["--models", "convlstm", "--dataset", "moving-digits", "--out", "R", *TINY,
             "--set", "max_iterations=160", "--set", "val_every=40", "--set", "checkpoint_every=5"]
# A GAN (generator and discriminator optimizers, LP loss, scheduled sampling, delayed lr decay) at its tiny size.
RESUMABLE_GAN = ["--models", "stip", "--preset", "tiny", "--dataset", "moving-digits", "--out", "R",
                 "--set", "data.train_size=64", "--set", "data.val_size=8", "--set", "data.test_size=8",
                 "--set", "max_iterations=40", "--set", "val_every=20", "--set", "checkpoint_every=2"]


def events(run_dir, kind):
    lines = (run_dir / "train.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


@pytest.mark.parametrize("args, total, kill_after", [(RESUMABLE, 160, 45), (RESUMABLE_GAN, 40, 10)],
                         ids=["convlstm", "stip-gan"])
def test_sigkill_during_training_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path, args, total,
                                                                                    kill_after):
    name = args[1]
    # Inherits conftest's VPBENCH_THREADS, as run_bench's commands do: the same thread count, the same float sums.
    proc = subprocess.Popen([sys.executable, "-m", "vpbench", "run", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "R" / "moving-digits" / name
    deadline = time.time() + HANG_GUARD_SECONDS
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        lasts = list(root.glob("*/checkpoints/last.pt"))
        if lasts and load_checkpoint(lasts[0])["iteration"] >= kill_after:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at = load_checkpoint(lasts[0])["iteration"]
            break
        time.sleep(0.2)
    assert killed_at is not None and killed_at < total, "training finished before it could be killed"
    (run_dir,) = root.iterdir()
    assert not (run_dir / "result.json").exists()

    run_bench("run", *args, cwd=tmp_path)
    assert [e["iteration"] for e in events(run_dir, "resume")] == [killed_at]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["train"]["iterations"] == total and result["train"]["resumed_from"] == killed_at

    # The same command uninterrupted in another directory ends with the same weights and the same scores.
    clean = tmp_path / "clean"
    clean.mkdir()
    run_bench("run", *args, cwd=clean)
    (clean_run,) = (clean / "R" / "moving-digits" / name).iterdir()
    assert clean_run.name == run_dir.name  # same identity, same run id
    a = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(clean_run / "checkpoints" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    uninterrupted = json.loads((clean_run / "result.json").read_text())
    assert result["train"]["best_iteration"] == uninterrupted["train"]["best_iteration"]
    for metric, value in uninterrupted["eval"]["mean"].items():
        assert result["eval"]["mean"][metric] == pytest.approx(value, rel=1e-6, abs=1e-6), metric


def test_checkpoint_selected_on_validation_and_loadable_with_weights_only(tmp_path):
    run_bench("run", *RESUMABLE, cwd=tmp_path)
    (run_dir,) = (tmp_path / "R" / "moving-digits" / "convlstm").iterdir()
    vals = events(run_dir, "val")
    assert [v["iteration"] for v in vals] == [40, 80, 120, 160]
    best = min(vals, key=lambda v: v["mse"])
    result = json.loads((run_dir / "result.json").read_text())
    assert result["train"]["best_iteration"] == best["iteration"]
    assert result["train"]["best_val_mse"] == pytest.approx(best["mse"])
    assert result["eval"]["checkpoint"] == "best on validation"
    for name in ("best.pt", "last.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert state["format"] == "vpbench-checkpoint-1"
    assert torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["iteration"] == best["iteration"]

    # Same command again: skipped, not redone; --force redoes it.
    mtime = (run_dir / "result.json").stat().st_mtime_ns
    again = run_bench("run", *RESUMABLE, cwd=tmp_path)
    assert "skipped" in again.stderr and (run_dir / "result.json").stat().st_mtime_ns == mtime
    run_bench("run", *RESUMABLE, "--force", cwd=tmp_path)
    assert (run_dir / "result.json").stat().st_mtime_ns != mtime


def test_training_never_reads_the_test_split(tmp_path, monkeypatch):
    cls = DATASETS.get("moving-digits")
    touched = []
    original = cls.split
    monkeypatch.setattr(cls, "split", lambda self, name: touched.append(name) or original(self, name))
    overrides = Overrides(everyone={"max_iterations": 4, "val_every": 2, "batch_size": 2},
                          per_predictor={"convlstm": {"num_layers": 1, "num_hidden": 4}},
                          dataset={"train_size": 20, "val_size": 4, "test_size": 4})
    settings = RunSettings(out=tmp_path, execution=ExecutionSettings(progress=False))
    run_models(["convlstm"], "moving-digits", None, overrides, settings, "train")
    assert touched and "test" not in touched


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"ok": 2, "bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_mixed_precision_training_and_evaluating_given_weights(tmp_path):
    args = ["--models", "convlstm", "--dataset", "moving-digits", "--out", "R", *TINY, "--set", "max_iterations=6",
            "--set", "val_every=3", "--precision", "bf16"]
    run_bench("run", *args, cwd=tmp_path)
    (run_dir,) = (tmp_path / "R" / "moving-digits" / "convlstm").iterdir()
    trained = json.loads((run_dir / "result.json").read_text())
    assert trained["precision"] == "bf16" and trained["eval"]["mean"]["mse"] > 0

    weights = run_dir / "checkpoints" / "best.pt"
    run_bench("eval", *args, "--checkpoint", str(weights), cwd=tmp_path)
    (given,) = [p for p in (tmp_path / "R" / "moving-digits" / "convlstm").glob("*/result.json")
                if p.parent != run_dir]
    record = json.loads(given.read_text())
    assert record["eval"]["checkpoint"] == str(weights) and record["train"] is None
    assert record["eval"]["mean"]["mse"] == pytest.approx(trained["eval"]["mean"]["mse"], rel=1e-6)
