"""The report's figures (vpbench.reports.figures) and the frames runs keep for them (vpbench.keep).

Figures are checked by what the drawing functions return (legend entries, rows, points) and by decoding the
PNG files: their size, and the pixels of each predictor's colour."""
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from conftest import TINY, run_bench
from test_perceptual import yolo_file  # noqa: F401  (the fixture: an Ultralytics file that finds boxes)
from test_report import result, write
from vpbench.config import EvalConfig, parse_set_options
from vpbench.errors import UserError
from vpbench.files import npz_bytes
from vpbench.keep import CROP, REDUCED_LONG_SIDE, KeptFrames, kept_indices, kept_steps
import vpbench.reports.figures as report_figures
from vpbench.reports.figures import DPI, draw_curves, figures_section, predictor_colours, write_figures
from vpbench.reports.tables import load_results, write_report

ONE_THREAD = {"VPBENCH_THREADS": "1"}  # tiny models: a second thread only adds contention
QUICK = ["--quick", "--set", "max_iterations=3", "--set", "data.train_size=16", "--set", "data.val_size=4",
         "--set", "data.test_size=6", "--set", "eval.keep_sequences=2"]


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def colour_pixels(image: np.ndarray, colour: str) -> int:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image.astype(int) - rgb).sum(axis=-1) < 30).sum())


def linked(report: Path) -> list[Path]:
    return [report.parent / link for link in re.findall(r"\]\(([^)]+)\)", report.read_text())]


# ------------------------------------------------------------------------------------------ kept frames

def test_kept_sequences_follow_the_seed_and_the_split_only() -> None:
    assert kept_indices(100, 4, seed=0) == kept_indices(100, 4, seed=0) != kept_indices(100, 4, seed=1)
    assert len(kept_indices(100, 4, 0)) == 4 and kept_indices(3, 4, 0) == [0, 1, 2] and kept_indices(9, 0, 0) == []
    assert kept_steps(10) == list(range(1, 11))
    assert kept_steps(300)[:4] == [1, 2, 5, 10] and kept_steps(300)[-1] == 300 and len(kept_steps(300)) <= 16


def test_a_shard_keeps_the_sequences_at_their_place_in_the_split() -> None:
    clips = torch.rand(10, 4, 1, 8, 8)  # [sequence, time, C, H, W]: context 2, future 2
    wanted = kept_indices(10, 3, seed=5)
    keep = KeptFrames.for_split(10, Subset(range(10), range(4, 10)), 3, 5, context=2, future=2)  # rank 1 of 2
    keep.add(clips[4:8, :2], clips[4:8, 2:], clips[4:8, 2:].unsqueeze(1))
    keep.add(clips[8:, :2], clips[8:, 2:], clips[8:, 2:].unsqueeze(1))
    assert sorted(keep.kept) == [i for i in wanted if i >= 4]
    for index, stored in keep.kept.items():
        expected = (clips[index, 2:] * 255).round().to(torch.uint8).movedim(1, -1).numpy()
        assert (stored["target"] == expected).all() and (stored["prediction"] == expected).all()


def test_large_frames_are_kept_scaled_down_with_a_full_resolution_crop() -> None:
    clip = torch.rand(1, 4, 3, 600, 800)
    keep = KeptFrames.for_split(1, range(1), 1, 0, context=2, future=2)
    keep.add(clip[:, :2], clip[:, 2:], clip[:, 2:].unsqueeze(1))
    arrays = keep.gather()
    assert arrays["target"].shape == (1, 2, REDUCED_LONG_SIDE * 600 // 800, REDUCED_LONG_SIDE, 3)
    assert arrays["crop_target"].shape == (1, 2, CROP, CROP, 3)
    top, left, h, w = arrays["crop_box"]
    full = (clip[0, 2:, :, top:top + h, left:left + w] * 255).round().to(torch.uint8).movedim(1, -1).numpy()
    assert (arrays["crop_target"][0] == full).all() and arrays["full_size"].tolist() == [600, 800]
    assert len(npz_bytes(arrays)) > 0


def test_eval_settings_parse_and_reject_unknown_keys() -> None:
    overrides = parse_set_options(["eval.keep_sequences=7", "lr=0.1"], {"convlstm"})
    assert overrides.eval_config() == EvalConfig(keep_sequences=7) and overrides.everyone == {"lr": "0.1"}
    with pytest.raises(UserError, match="unknown key 'keep_sequence'.*keep_sequences"):
        parse_set_options(["eval.keep_sequence=2"], set()).eval_config()


# ------------------------------------------------------------------------------------------ the report

def test_report_of_a_run_links_decodable_figures(tmp_path: Path) -> None:
    """Done-when 1 on a tiny run of the main job's predictors: curves with a line per predictor, a strip of
    (1 + predictors) rows of frames, a point per predictor; every link a PNG that decodes."""
    run_bench("run", "--models", "convlstm,copy-last", "--dataset", "moving-digits", *TINY, *QUICK, "--out", "runs",
              cwd=tmp_path, env=ONE_THREAD)
    kept = sorted((tmp_path / "runs").rglob("kept_frames.npz"))
    assert len(kept) == 2 and all(0 < p.stat().st_size < 100_000 for p in kept)
    same_sequences = {tuple(np.load(p)["indices"]) for p in kept}
    assert len(same_sequences) == 1 and len(next(iter(same_sequences))) == 2
    run_bench("report", "--out", "runs/report.md", "--figure-format", "pdf", cwd=tmp_path, env=ONE_THREAD)
    report = tmp_path / "runs" / "report.md"
    links = linked(report)
    assert {p.suffix for p in links} == {".png", ".pdf"} and all(p.is_file() for p in links)
    colours = predictor_colours(["convlstm", "copy-last"])
    for path in (p for p in links if p.suffix == ".png"):
        image = png(path)
        assert image.std() > 0  # never an empty image
        if "curves" in path.name or "cost" in path.name:  # every predictor's colour is drawn
            assert all(colour_pixels(image, c) > 50 for c in colours.values()), path.name

    frame, _ = load_results(tmp_path / "runs")
    _, (figures,) = write_figures(frame, tmp_path / "again" / "report.md")
    drawn = {d.kind: d for d in figures.drawn}
    assert drawn["curves"].labels == ["convlstm", "copy-last"]
    assert drawn["strip"].labels == ["ground truth", "convlstm", "copy-last"]
    assert drawn["strip"].columns == ["in 9", "in 10", *(f"t+{t}" for t in range(1, 11))]
    assert drawn["strip"].details["frame_size"] == (64, 64)
    assert drawn["cost"].details["points"] == {"PSNR vs FLOPs per sequence": 2, "PSNR vs ms per sequence": 2}
    strip = png(drawn["strip"].files[0])
    rows, columns = 3, 12  # one inch per frame at DPI: the image holds the grid of frames at print resolution
    assert strip.shape[0] >= rows * DPI * 0.8 and strip.shape[1] >= columns * DPI * 0.8
    assert "no detection overlay: detection was not measured" in (tmp_path / "runs" / "report.md").read_text()

    run_bench("report", "--format", "html", "--out", "page.html", cwd=tmp_path, env=ONE_THREAD)
    page = (tmp_path / "page.html").read_text()  # self-contained: every figure inline, tables as tables
    assert page.count('src="data:image/png;base64,') == 3 and "report-figures/" not in page
    assert page.count("<table>") == 1 and "<td>convlstm†</td>" in page


def _long_result(predictor: str, seed: int, stochastic: bool) -> dict:
    steps = np.arange(1, 301)
    curve = lambda top: list(top - 3 * np.log(steps) - seed * 0.2)  # noqa: E731
    extra = {"samples": 4, "best_of_samples": {"per_step": {"psnr": curve(24.0), "ssim": list(0.9 - steps / 1000)},
                                               "mean": {"psnr": 10.0, "ssim": 0.7}}} if stochastic else {}
    return result(predictor, seed=seed, protocol={"name": "36to300", "context": 36, "future": 300, "height": 64,
                                                  "width": 64, "channels": 1},
                  eval={"per_step": {"psnr": curve(22.0), "ssim": list(0.8 - steps / 1000)},
                        "mean": {"psnr": 9.0, "ssim": 0.6}, **extra})


@pytest.fixture
def x_scales(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Figure file name -> the x scale matplotlib has on each of its axes, as the figures are saved."""
    scales: dict[str, list[str]] = {}
    save = report_figures._save

    def recording(fig, stem: Path, formats: tuple[str, ...]) -> list[Path]:
        scales[stem.name] = [ax.get_xscale() for ax in fig.axes]
        return save(fig, stem, formats)

    monkeypatch.setattr(report_figures, "_save", recording)
    return scales


def test_long_horizon_curves_are_log_x_with_mean_and_best_of_n(tmp_path: Path, x_scales: dict) -> None:
    """Done-when 2's figure, on results made here (36 -> 300, two seeds of each stochastic predictor): a log
    step axis, mean-of-N and best-of-N lines for htsrm and cwvae, the seeds' spread as a band."""
    for seed in (0, 1):
        for predictor, stochastic in (("htsrm", True), ("cwvae", True), ("copy-last", False)):
            write(tmp_path, _long_result(predictor, seed, stochastic))
    frame, _ = load_results(tmp_path)
    drawn = draw_curves(frame, predictor_colours(frame["predictor"]), tmp_path / "long")
    assert drawn.details["metrics"] == ["psnr", "ssim"] and x_scales["long"] == ["log", "log"]
    assert drawn.labels == ["copy-last", "cwvae (mean of 4)", "cwvae (best of 4)", "htsrm (mean of 4)",
                            "htsrm (best of 4)"]
    assert "bands: lowest to highest seed" in drawn.caption and png(drawn.files[0]).std() > 0
    short = frame[frame["predictor"] == "copy-last"].assign(future=99)
    short["per_step"] = [{"psnr": c["psnr"][:99]} for c in short["per_step"]]
    draw_curves(short, {"copy-last": "#000000"}, tmp_path / "short")
    assert x_scales["short"] == ["linear"]


def test_a_long_stochastic_run_gets_log_x_mean_and_best_of_n_and_its_first_sample_in_the_strip(
        tmp_path: Path, x_scales: dict) -> None:
    """Done-when 2 on real runs of htsrm and cwvae at their tiny presets (4 -> 100: seconds, not 36 -> 300)."""
    run_bench("run", "--models", "htsrm,cwvae", "--dataset", "moving-digits", "--preset", "tiny", "--context", "4",
              "--horizon", "100", "--samples", "2", *QUICK, "--out", "runs", cwd=tmp_path, env=ONE_THREAD)
    frame, _ = load_results(tmp_path / "runs")
    _, (figures,) = write_figures(frame, tmp_path / "report.md")
    drawn = {d.kind: d for d in figures.drawn}
    (curves,) = [scales for name, scales in x_scales.items() if name.endswith("_curves")]
    assert curves and set(curves) == {"log"}
    assert drawn["curves"].labels == ["cwvae (mean of 2)", "cwvae (best of 2)", "htsrm (mean of 2)",
                                      "htsrm (best of 2)"]
    assert drawn["strip"].labels == ["ground truth", "cwvae (sample 1 of 2)", "htsrm (sample 1 of 2)"]
    assert drawn["strip"].columns[-3:] == ["t+50", "t+75", "t+100"]
    assert drawn["cost"].details["points"]["PSNR vs FLOPs per sequence"] == 2  # one point each: the mean of N


def test_runs_without_kept_frames_or_costs_are_left_out_with_a_note(tmp_path: Path) -> None:
    write(tmp_path, result("convlstm"))  # as a run from before frames were kept
    write(tmp_path, result("copy-last", costs={}))
    report = tmp_path / "out" / "report.md"
    text = write_report(tmp_path, report, figures=figures_section)
    links = linked(report)
    assert [p.name for p in links] == ["moving-digits_10to2_64x64_curves.png", "moving-digits_10to2_64x64_cost.png"]
    assert all(png(p).std() > 0 for p in links)
    assert "convlstm: no kept frames" in text and "no frame figures: no run kept frames" in text
    assert "not shown, no cost or quality figure: copy-last" in text
    write(tmp_path, result("convlstm", costs={}))
    assert "no cost-vs-quality figure" in write_report(tmp_path, report, figures=figures_section)
    (tmp_path / "moving-digits" / "convlstm" / "convlstm-s0" / "kept_frames.npz").write_bytes(b"not a zip")
    assert "convlstm: kept frames unreadable" in write_report(tmp_path, report, figures=figures_section)


def test_large_frames_get_a_scaled_strip_and_a_full_resolution_crop_strip(tmp_path: Path) -> None:
    protocol = {"name": "2to2", "context": 2, "future": 2, "height": 600, "width": 800, "channels": 3}
    clip = torch.rand(1, 4, 3, 600, 800)
    for predictor in ("convlstm", "copy-last"):
        keep = KeptFrames.for_split(1, range(1), 1, 0, context=2, future=2)
        keep.add(clip[:, :2], clip[:, 2:], clip[:, 2:].unsqueeze(1))
        path = write(tmp_path, result(predictor, protocol=protocol))
        (path.parent / "kept_frames.npz").write_bytes(npz_bytes(keep.gather()))
    _, (figures,) = write_figures(load_results(tmp_path)[0], tmp_path / "out" / "report.md")
    drawn = {d.kind: d for d in figures.drawn}
    assert drawn["strip"].details["frame_size"] == (384, 512) and drawn["crop strip"].details["frame_size"] == (256, 256)
    assert drawn["crop strip"].labels == ["ground truth", "convlstm", "copy-last"]
    assert png(drawn["crop strip"].files[0]).std() > 0


def test_detection_overlay_with_the_runs_weights_and_a_note_without_them(tmp_path: Path, yolo_file: Path) -> None:
    """Done-when 3: the boxes YOLO finds on ground-truth and predicted kept frames; when the weight file the
    runs were scored with is gone, the report says so instead."""
    weights = tmp_path / "yolo.pt"
    shutil.copy(yolo_file, weights)
    run_bench("eval", "--models", "copy-last", "--dataset", "moving-digits", "--out", "runs", "--set",
              "data.test_size=2", "--set", "data.future=2", "--set", "eval.keep_sequences=1", "--yolo-weights",
              str(weights), cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "empty"), **ONE_THREAD})
    frame, _ = load_results(tmp_path / "runs")
    _, (figures,) = write_figures(frame, tmp_path / "report.md")
    (overlay,) = [d for d in figures.drawn if d.kind == "detection"]
    assert overlay.labels == ["ground truth", "copy-last"] and overlay.columns == ["t+1", "t+2"]
    assert overlay.details["boxes"] > 0 and png(overlay.files[0]).std() > 0

    weights.unlink()
    text = write_report(tmp_path / "runs", tmp_path / "report.md", figures=figures_section)
    assert f"detection overlay missing: the YOLO weights the runs were scored with ({weights}) are not" in text
    assert "_detection.png" not in text
