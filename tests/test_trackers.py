"""`--log tensorboard,mlflow,wandb`: each tracker read back through its own reader has the training loss at the
logged iterations (as train.log has them) and the test metrics (as result.json has them). A tracker whose package
is not installed is skipped; the run logs to those that are."""
import importlib.util
import json
from pathlib import Path

import pytest

from conftest import run_bench

INSTALLED = [name for name in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(name) is not None]
LOGGED = [5, 10]  # log_every=5 over max_iterations=10: iterations 5 and 10 (a hand count)
EXPERIMENT = "vpbench-moving-digits-10to10"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One short run logged to every installed tracker: its run directory, train.log's losses, its result."""
    if not INSTALLED:
        pytest.skip("no tracker package installed (pip install 'vpbench[tensorboard,mlflow,wandb]')")
    root = tmp_path_factory.mktemp("trackers")
    env = {"VPBENCH_THREADS": "1", "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(), "WANDB_MODE": "offline",
           "WANDB_DIR": str(root), "WANDB_SILENT": "true"}
    run_bench("run", "-m", "convlstm", "-d", "moving-digits", "--preset", "tiny", "--set", "max_iterations=10",
              "--set", "log_every=5", "--set", "data.train_size=16", "--set", "data.val_size=4",
              "--set", "data.test_size=4", "--out", "R", "--log", ",".join(INSTALLED), cwd=root, env=env)
    run = next((root / "R").rglob("result.json")).parent
    log = [json.loads(line) for line in (run / "train.log").read_text().splitlines()]
    losses = {e["iteration"]: e["loss"] for e in log if e["event"] == "train"}
    assert sorted(losses) == LOGGED
    return root, run, losses, json.loads((run / "result.json").read_text())


def test_tensorboard_event_files(tracked):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    root, run, losses, result = tracked
    events = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == LOGGED
    assert [e.value for e in loss] == pytest.approx([losses[i] for i in LOGGED], rel=1e-6)  # stored as float32
    psnr = events.Scalars("test/psnr")
    assert [e.step for e in psnr] == list(range(1, 11))
    assert [e.value for e in psnr] == pytest.approx(result["eval"]["per_step"]["psnr"], rel=1e-6)
    assert events.Scalars("test_mean/ssim")[0].value == pytest.approx(result["eval"]["mean"]["ssim"], rel=1e-6)
    assert [e.step for e in events.Scalars("val/mse")] == [10]  # validation at the last iteration
    assert "test/strip" in events.Tags()["images"]


def test_mlflow_file_store(tracked, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root, run, losses, result = tracked
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 opens a file: store only when asked
    client = MlflowClient(tracking_uri=(root / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT)
    [tracked_run] = client.search_runs([experiment.experiment_id])
    run_id = tracked_run.info.run_id
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(i, pytest.approx(losses[i], rel=1e-12)) for i in LOGGED]
    psnr = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "test/psnr"))
    assert [step for step, _ in psnr] == list(range(1, 11))
    assert [value for _, value in psnr] == pytest.approx(result["eval"]["per_step"]["psnr"], rel=1e-12)
    assert tracked_run.data.metrics["test_mean/psnr"] == pytest.approx(result["eval"]["mean"]["psnr"], rel=1e-12)
    params = tracked_run.data.params
    assert params["config.max_iterations"] == "10" and params["predictor"] == "convlstm"
    assert params["run_id"] == run.name
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"result.json", "report.md"} <= artifacts


def wandb_records(path: Path):
    """The protobuf records of a W&B transaction log (.wandb): a ':W&B' header then LevelDB-log framing, 32 KiB
    blocks of chunks with a 7-byte header each (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_directory(tracked):
    pytest.importorskip("wandb")
    root, run, losses, result = tracked
    [log] = list((root / "wandb").glob("offline-run-*/run-*.wandb"))
    rows, config = [], {}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            # W&B stores "train/loss" as the nested key ["train", "loss"]
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
        elif kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    trained = {row["_step"]: row["train/loss"] for row in rows if "train/loss" in row}
    assert sorted(trained) == LOGGED
    assert [trained[i] for i in LOGGED] == pytest.approx([losses[i] for i in LOGGED], rel=1e-12)
    psnr = {row["test/step"]: row["test/psnr"] for row in rows if "test/psnr" in row}
    assert [psnr[t] for t in range(1, 11)] == pytest.approx(result["eval"]["per_step"]["psnr"], rel=1e-12)
    assert config["predictor"] == "convlstm" and config["run_id"] == run.name and config["config"]["max_iterations"] == 10
    assert (log.parent / "files" / "result.json").is_file() and (log.parent / "files" / "report.md").is_file()


def test_unknown_tracker_refused_before_any_work(tmp_path):
    proc = run_bench("run", "-m", "convlstm", "-d", "moving-digits", "--log", "neptune", "--out", "R", cwd=tmp_path,
                     check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown tracker 'neptune'")
    assert not (tmp_path / "R").exists()
