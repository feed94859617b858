"""LPIPS and YOLO detection: where their weights are found, how they are checked and vouched for, and that
the scores equal the reference packages' own on the same weights.

The released weights cannot be downloaded here, so the tests make files in the real formats: an AlexNet
state dict under torchvision's cache name (its checksum cannot match the release's) and an untrained
Ultralytics model saved as .pt.
"""
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

# Ultralytics writes a settings file where YOLO_CONFIG_DIR says, at import: keep it out of ~/.config.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="vpbench-test-yolo-"))

from typer.testing import CliRunner  # noqa: E402

from conftest import run_bench  # noqa: E402
from vpbench.cli import app  # noqa: E402
from vpbench.cpu import set_threads  # noqa: E402
from vpbench.digest import sha256_file  # noqa: E402
from vpbench.errors import UserError  # noqa: E402
from vpbench.metrics import weights  # noqa: E402
from vpbench.metrics.accumulate import MetricSums  # noqa: E402
from vpbench.metrics.base import Metric  # noqa: E402
from vpbench.metrics.detection import DetectionMetric, matched_count  # noqa: E402
from vpbench.metrics.lpips import LpipsMetric, lpips_distance  # noqa: E402
from vpbench.metrics.suite import MetricSuite  # noqa: E402
from vpbench.metrics.yolo import Detector, ultralytics_settings  # noqa: E402
from vpbench.spec import VideoSpec  # noqa: E402

set_threads()  # VPBENCH_THREADS, as `bench` itself honours it

CPU = torch.device("cpu")
SPEC = VideoSpec(channels=1, height=64, width=64, context=2, future=3)


def frames(*shape: int, seed: int = 0) -> torch.Tensor:
    """Values on the 8-bit grid, as decoded video frames are."""
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 255).round() / 255


def figures(metric: Metric, pred: torch.Tensor, target: torch.Tensor) -> dict:
    """The metric's figures over clips [B, T, C, H, W], summed and summarised as `evaluate` does."""
    sums = MetricSums(metric, pred.shape[1])
    sums.add(pred.unsqueeze(1), target)  # one sample per clip
    return sums.summary().figures


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / weights.ALEXNET.filename
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), path)
    return home


@pytest.fixture
def alexnet(torch_home, monkeypatch, tmp_path) -> Path:
    """The AlexNet file in TORCH_HOME's cache; nothing vouched for; no YOLO weights anywhere."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for var in ("VPBENCH_LPIPS_WEIGHTS", "VPBENCH_YOLO_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return torch_home / "hub" / "checkpoints" / weights.ALEXNET.filename


@pytest.fixture(scope="module")
def yolo_file(tmp_path_factory) -> Path:
    """An untrained YOLOv5n-u saved by Ultralytics. Its default initialisation scores every box near 1e-5, so
    the class layers are rescaled until two classes score tens of boxes per frame above 0.25, a few above 0.8."""
    ultralytics_settings()
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("yolov5nu.yaml", verbose=False)
    for module in yolo.model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.weight.requires_grad:  # not DFL's fixed box decoder
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    class_layers = [branch[-1] for branch in yolo.model.model[-1].cv3]
    logits = {}
    hooks = [c.register_forward_hook(lambda m, i, o: logits.__setitem__(m, o - m.bias[:, None, None]))
             for c in class_layers]
    with torch.no_grad():
        yolo.model.eval()(frames(1, 3, 640, 640))
    for hook in hooks:
        hook.remove()
    for layer in class_layers:  # classes 0 and 1: logits ~ N(-9, 3^2) over the boxes of a frame; others never
        mean, std = logits[layer][0, :2].mean(dim=(1, 2)), logits[layer][0, :2].std(dim=(1, 2))
        layer.weight.data[:2] *= (3 / std)[:, None, None, None]
        layer.bias.data[:] = -30.0
        layer.bias.data[:2] = -9.0 - mean * 3 / std
    path = tmp_path_factory.mktemp("yolo") / "yolov5nu-untrained.pt"
    yolo.save(path)
    return path


# ----------------------------------------------------------------------------------------------- LPIPS

def test_lpips_weights_missing_say_where_they_go(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("VPBENCH_LPIPS_WEIGHTS", raising=False)
    res = weights.resolve(weights.ALEXNET)
    assert not res.usable and "weights missing" in res.problem
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in res.problem and "--lpips-weights" in res.problem


def test_canonical_name_with_another_checksum_is_not_measured(alexnet):
    built = MetricSuite().build(SPEC, CPU)
    reason = built.not_measured["lpips"]
    assert "checksum mismatch" in reason and str(alexnet) in reason and "--lpips-weights" in reason
    assert "lpips" not in built.weights and not any(isinstance(m, LpipsMetric) for m in built.metrics)


def test_a_file_with_the_release_checksum_is_used_without_vouching(alexnet):
    # The release file cannot be had here; an entry whose release checksum is this file's stands in for it.
    sha = sha256_file(alexnet)
    entry = dataclasses.replace(weights.ALEXNET, checker=weights.sha256_prefix_check(sha[:8], "a test release"))
    res = weights.resolve(entry)
    assert res.usable and res.check.verified and res.source == "default location" and res.sha256 == sha


def test_vouched_lpips_equals_the_lpips_package_on_the_same_weights(alexnet, monkeypatch):
    import lpips

    monkeypatch.setenv("VPBENCH_LPIPS_WEIGHTS", str(alexnet))
    built = MetricSuite().build(SPEC, CPU)
    assert "lpips" not in built.not_measured
    record = built.weights["lpips-alexnet"]
    assert record["file"] == str(alexnet) and record["sha256"] == sha256_file(alexnet)
    assert record["source"] == "explicit" and record["verified"] is False and "checksum mismatch" in record["check"]
    assert built.weights["lpips-linear"]["verified"] is True

    # The package loads its backbone through torchvision from TORCH_HOME's cache: its own route to the file.
    reference = lpips.LPIPS(net="alex", version="0.1", verbose=False)
    (metric,) = [m for m in built.metrics if isinstance(m, LpipsMetric)]
    pred, target = frames(2, 3, 1, 64, 64, seed=1), frames(2, 3, 1, 64, 64, seed=2)
    per_step = figures(metric, pred, target)["per_step"]["lpips"]
    with torch.no_grad():
        expected = [reference(pred[:, t].expand(-1, 3, -1, -1), target[:, t].expand(-1, 3, -1, -1),
                              normalize=True).mean().item() for t in range(3)]
    assert per_step == pytest.approx(expected, abs=1e-6)
    assert max(per_step) > 0.01  # distinct frames: not trivially zero

    rgb_a, rgb_b = frames(4, 3, 48, 80, seed=3), frames(4, 3, 48, 80, seed=4)
    with torch.no_grad():
        assert torch.allclose(lpips_distance(metric.net, rgb_a, rgb_b),
                              reference(rgb_a, rgb_b, normalize=True).flatten(), atol=1e-6)


def test_explicit_weights_that_are_missing_or_wrong_stop_the_command(alexnet, tmp_path):
    with pytest.raises(UserError, match="file not found"):
        MetricSuite(lpips_weights=tmp_path / "nowhere.pth")
    not_alexnet = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, not_alexnet)
    with pytest.raises(UserError, match="not a torchvision AlexNet state dict"):
        MetricSuite(lpips_weights=not_alexnet)


def test_frames_lpips_cannot_score_are_not_measured(alexnet):
    built = MetricSuite(lpips_weights=alexnet).build(VideoSpec(1, 16, 16, 2, 2), CPU)
    assert "smaller than the 31x31" in built.not_measured["lpips"]


# ------------------------------------------------------------------------------------------ detection

def test_untrained_yolo_under_the_default_name_is_not_measured(alexnet, yolo_file):
    shutil.copy(yolo_file, Path.cwd() / weights.YOLO.filename)
    res = weights.resolve(weights.YOLO)
    assert not res.usable and "records no training" in res.problem and "--yolo-weights" in res.problem
    vouched = weights.resolve(weights.YOLO, yolo_file)
    assert vouched.usable and not vouched.check.verified and vouched.source == "explicit"


def test_detector_equals_ultralytics_predict(yolo_file):
    from ultralytics import YOLO

    detector = Detector.load(yolo_file, CPU)
    threads = torch.get_num_threads()
    for h, w, exact in [(640, 640, True), (96, 160, False)]:
        batch = frames(1, 3, h, w, seed=h)
        ours = detector(batch)
        bgr = [np.ascontiguousarray((f.permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8))
               for f in batch]
        theirs = [r.boxes.data for r in YOLO(str(yolo_file)).predict(bgr, verbose=False, device="cpu")]
        torch.set_num_threads(threads)  # Ultralytics' predictor sets its own
        for mine, ref in zip(ours, theirs):
            if not exact:  # Ultralytics resizes 8-bit images with OpenCV, we resize floats in torch: scores
                # differ in the third decimal, so compare those clear of the 0.25 cut
                mine, ref = mine[mine[:, 4] > 0.3], ref[ref[:, 4] > 0.3]
            assert 0 < len(mine) == len(ref)
            mine, ref = mine[mine[:, 4].argsort()], ref[ref[:, 4].argsort()]
            if exact:  # no resizing: the same pixels reach the network
                assert torch.allclose(mine, ref, atol=1e-3)
            else:
                assert torch.allclose(mine[:, 4], ref[:, 4], atol=5e-3)
                assert torch.allclose(mine[:, :4], ref[:, :4], atol=1.0)  # within a pixel of the frame


def test_matching_is_one_to_one_same_class_at_iou_half():
    truth = torch.tensor([[0, 0, 10, 10, 0.9, 1], [20, 20, 30, 30, 0.9, 2]], dtype=torch.float32)
    box = lambda x1, y1, x2, y2, conf, cls: torch.tensor([[x1, y1, x2, y2, conf, cls]], dtype=torch.float32)
    assert matched_count(box(0, 0, 10, 10, 0.5, 1), truth) == 1
    assert matched_count(box(0, 0, 10, 10, 0.5, 2), truth) == 0  # another class
    assert matched_count(box(0, 0, 10, 5, 0.5, 1), truth) == 1  # IoU exactly 0.5
    assert matched_count(box(0, 0, 10, 4, 0.5, 1), truth) == 0  # IoU 0.4
    two = torch.cat([box(0, 0, 10, 10, 0.6, 1), box(0, 0, 10, 9, 0.7, 1), box(20, 20, 30, 30, 0.8, 2)])
    assert matched_count(two, truth) == 2  # one truth box is matched once
    assert matched_count(torch.zeros(0, 6), truth) == matched_count(two, torch.zeros(0, 6)) == 0


def test_detection_figures_per_step(yolo_file):
    detector = Detector.load(yolo_file, CPU, imgsz=160)  # smaller than Ultralytics' 640: the counting is tested
    truth = frames(1, 2, 1, 64, 64, seed=5)
    result = figures(DetectionMetric(detector), truth, truth)
    assert result["per_step"]["det_precision"] == result["per_step"]["det_recall"] == [1.0, 1.0]
    assert result["per_step"]["det_conf"] == result["per_step"]["det_conf_gt"]

    pred = frames(1, 2, 1, 64, 64, seed=6)
    result = figures(DetectionMetric(detector), pred, truth)
    found_p, found_t = detector(pred[0]), detector(truth[0])
    for t in range(2):
        matched = matched_count(found_p[t], found_t[t])
        assert result["per_step"]["det_precision"][t] == pytest.approx(matched / len(found_p[t]))
        assert result["per_step"]["det_recall"][t] == pytest.approx(matched / len(found_t[t]))
        assert result["per_step"]["det_conf"][t] == pytest.approx(found_p[t][:, 4].mean().item())
        assert result["per_step"]["det_high"][t] == (found_p[t][:, 4] >= 0.8).sum().item()
    assert result["mean"]["det_precision"] == pytest.approx(
        sum(matched_count(p, g) for p, g in zip(found_p, found_t)) / sum(len(p) for p in found_p))
    assert result["detection"]["frames"] == 2


# ------------------------------------------------------------------------------------- bench commands

def _result(root: Path) -> dict:
    (path,) = root.rglob("result.json")
    return json.loads(path.read_text())


def test_offline_quick_run_without_weights_says_not_measured(tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "empty")}
    report = run_bench("run", "--models", "copy-last", "--dataset", "moving-digits", "--quick", "--out", "R",
                       "--set", "data.test_size=8", cwd=tmp_path, env=env).stdout  # the run's table
    result = _result(tmp_path / "R")
    assert "weights missing" in result["eval"]["not_measured"]["lpips"]
    assert "yolov5su.pt" in result["eval"]["not_measured"]["detection"]
    assert "lpips" not in result["eval"]["mean"] and result["eval"]["weights"] == {}
    assert {"params", "flops", "ms_per_sequence", "fps", "peak_memory_bytes", "device"} <= set(result["costs"])
    assert "not measured" in report and "LPIPS not measured: weights missing" in report
    assert "detection not measured: weights missing" in report
    assert "peak mem: process peak RSS" in report  # on CPU: what the memory figure is


def test_eval_with_vouched_weights_records_lpips_and_detection(tmp_path, torch_home, yolo_file):
    alexnet = torch_home / "hub" / "checkpoints" / weights.ALEXNET.filename
    report = run_bench("eval", "--models", "copy-last", "--dataset", "moving-digits", "--out", "R",
                       "--set", "data.test_size=1", "--set", "data.future=2", "--lpips-weights", str(alexnet),
                       "--yolo-weights", str(yolo_file), cwd=tmp_path, env={"TORCH_HOME": str(torch_home)}).stdout
    result = _result(tmp_path / "R")
    ev = result["eval"]
    assert ev["not_measured"] == {}
    assert len(ev["per_step"]["lpips"]) == 2 and ev["mean"]["lpips"] > 0
    assert {"det_conf", "det_high", "det_precision", "det_recall", "det_conf_gt", "det_high_gt"} <= set(ev["mean"])
    assert ev["detection"]["frames"] == 2 and ev["detection"]["detections_gt"] > 0
    assert ev["weights"]["yolo"]["sha256"] == sha256_file(yolo_file)
    assert not ev["weights"]["yolo"]["verified"] and not ev["weights"]["lpips-alexnet"]["verified"]
    assert "LPIPS↓ mean" in report and "det conf↑ mean" in report
    assert "lpips-alexnet weights vouched for by the user" in report and "yolo weights vouched for" in report


def test_bench_weights_shows_and_fetch_checks(tmp_path, monkeypatch, yolo_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    proc = CliRunner().invoke(app, ["weights"])
    assert proc.exit_code == 0, proc.output
    shown = proc.stdout
    for key in ("lpips-alexnet", "lpips-linear", "yolo"):
        assert f"{key}:" in shown
    assert str(tmp_path / "home" / "hub" / "checkpoints" / weights.ALEXNET.filename) in shown
    assert weights.ALEXNET.url in shown and weights.YOLO.url in shown

    # A mirror holding a file that is not the release: torch.hub's hash check refuses it and keeps nothing.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save({"features.0.weight": torch.zeros(1)}, mirror / weights.ALEXNET.filename)
    with pytest.raises(UserError, match="hash"):
        weights.fetch(["lpips-alexnet"], mirror=mirror.as_uri())
    assert not (tmp_path / "home" / "hub" / "checkpoints" / weights.ALEXNET.filename).exists()

    # YOLO files carry no published checksum: fetched, then checked like any file found.
    shutil.copy(yolo_file, mirror / weights.YOLO.filename)
    monkeypatch.setitem(weights.ENTRIES, "yolo", dataclasses.replace(weights.YOLO, locations=lambda: [tmp_path / "w"]))
    (line,) = weights.fetch(["yolo"], mirror=mirror.as_uri())
    assert (tmp_path / "w" / weights.YOLO.filename).is_file() and "records no training" in line
