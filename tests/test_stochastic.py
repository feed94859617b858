"""Stochastic predictors in the harness: samples from a seeded generator, mean over samples and best of N,
any protocol from --context / --horizon, and the long-term report with per-step curves."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import Tensor

from vpbench.evaluation import evaluate
from vpbench.metrics.accumulate import MeanAndBestOfN
from vpbench.predictor import Predictor, create_predictor
from vpbench.registry import DATASETS
from vpbench.reports.tables import curve_steps, load_results, render, write_report
from vpbench.spec import VideoSpec
from vpbench.training import mean_validation_loss

from conftest import TINY
from test_report import result, table, write


class NoisyLast(Predictor):
    """Repeats the last context frame plus noise drawn from the generator: a stochastic predictor."""

    registry_name = "noisy-last"
    stochastic = True
    trainable = False

    def forward(self, context: Tensor, future: int, samples: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        n = samples or 1
        last = context[:, -1:].unsqueeze(1).expand(-1, n, future, -1, -1, -1)
        noise = torch.randn(last.shape, generator=generator, device=context.device)
        out = (last + 0.1 * noise).clamp(0, 1)
        return out if samples is not None else out[:, 0]


def test_mean_and_best_of_n_per_sequence_and_metric():
    scores = MeanAndBestOfN(("psnr", "mse"), {"psnr": True, "mse": False}, horizon=2)
    # Sequence 0: sample 1 has the better time-averaged PSNR (though not at step 2), sample 0 the lower MSE.
    psnr = torch.tensor([[[20.0, 30.0], [26.0, 26.0]], [[10.0, 10.0], [12.0, 8.0]]])
    mse = torch.tensor([[[0.1, 0.3], [0.2, 0.3]], [[0.4, 0.4], [0.5, 0.1]]])
    scores.add({"psnr": psnr, "mse": mse})
    out = scores.totals()
    assert out.samples == 2 and out.sequences == 2
    assert (out.mean["psnr"] / out.sequences).tolist() == pytest.approx([(23 + 11) / 2, (28 + 9) / 2])
    # best PSNR: seq 0 -> sample 1 (26, 26); seq 1 -> sample 0 and 1 tie at 10: argmax picks the first (10, 10)
    assert (out.best["psnr"] / out.sequences).tolist() == pytest.approx([18.0, 18.0])
    # best MSE: seq 0 -> sample 0 (0.1, 0.3); seq 1 -> sample 1 (0.5, 0.1)
    assert (out.best["mse"] / out.sequences).tolist() == pytest.approx([0.3, 0.2])


def test_best_of_n_is_never_worse_than_the_mean_over_samples():
    generator = torch.Generator().manual_seed(0)
    directions = {"psnr": True, "ssim": True, "mse": False}
    scores = MeanAndBestOfN(tuple(directions), directions, horizon=7)
    for _ in range(5):
        scores.add({k: torch.rand(3, 6, 7, generator=generator) for k in directions})
    out = scores.totals()
    for metric, higher in directions.items():
        best, mean = out.best[metric].sum().item(), out.mean[metric].sum().item()
        assert (best >= mean) if higher else (best <= mean)


def _clips(n: int = 6) -> torch.utils.data.Dataset:
    return DATASETS.get("moving-digits").create(test_size=n, context=4, future=6).split("test")


def test_evaluate_draws_samples_from_the_seed_and_reports_both_summaries():
    model = NoisyLast(VideoSpec(1, 64, 64, 4, 6), None)
    cpu = torch.device("cpu")
    first = evaluate(model, _clips(), device=cpu, batch_size=4, samples=5, seed=3)
    again = evaluate(model, _clips(), device=cpu, batch_size=4, samples=5, seed=3)
    other = evaluate(model, _clips(), device=cpu, batch_size=4, samples=5, seed=4)
    assert first.samples == 5 and first.sequences == 6
    assert first.summary == again.summary and first.best_of_samples == again.best_of_samples
    assert first.summary.per_step["mse"] != other.summary.per_step["mse"]
    best, mean = first.best_of_samples.mean, first.summary.mean
    assert best["psnr"] > mean["psnr"] and best["ssim"] > mean["ssim"] and best["mse"] < mean["mse"]


def test_a_deterministic_predictor_is_scored_once_without_sample_keys():
    model = create_predictor("copy-last", VideoSpec(1, 64, 64, 4, 6))
    out = evaluate(model, _clips(), device=torch.device("cpu"), batch_size=4, samples=5)
    assert out.samples is None and out.best_of_samples is None and out.sequences == 6


def _long(predictor: str, psnr: list[float], **overrides) -> dict:
    record = result(predictor, **overrides)
    future = len(psnr)
    record["protocol"] = {"name": "10to10", "context": 36, "future": future, "height": 64, "width": 64, "channels": 1}
    record["eval"]["per_step"] = {"psnr": psnr, "ssim": [0.5] * future, "mse": [0.01] * future}
    record["eval"]["mean"] = {"psnr": sum(psnr) / future, "ssim": 0.5, "mse": 0.01}
    return record


def test_report_shows_mean_and_best_of_n_rows_and_a_per_step_table(tmp_path: Path):
    future = 30
    stochastic = _long("htsrm", [20.0 - 0.1 * t for t in range(future)])
    stochastic["eval"].update(samples=4, best_of_samples={
        "per_step": {"psnr": [21.0 - 0.1 * t for t in range(future)], "ssim": [0.6] * future, "mse": [0.008] * future},
        "mean": {"psnr": 21.0 - 0.1 * 14.5, "ssim": 0.6, "mse": 0.008}})
    write(tmp_path, stochastic)
    write(tmp_path, _long("copy-last", [15.0] * future, train=None))
    md = render(load_results(tmp_path)[0], "md")
    rows = table(md.split("per predicted step")[0])
    assert set(rows) == {"htsrm (mean of 4)", "htsrm (best of 4)", "copy-last"}
    assert rows["htsrm (best of 4)"]["PSNR↑ t+1"] == "**21.00**" and rows["htsrm (mean of 4)"]["PSNR↑ t+1"] == "20.00"
    assert curve_steps(future) == [1, 5, 10, 20, 30]
    per_step = md[md.index("PSNR↑ per predicted step"):]
    assert "| predictor | t+1 | t+5 | t+10 | t+20 | t+30 |" in per_step
    assert "| htsrm (best of 4) | **21.00** | **20.60** | **20.10** | **19.10** | **18.10** |" in per_step
    assert "| copy-last | 15.00 | 15.00 | 15.00 | 15.00 | 15.00 |" in per_step


def test_report_out_writes_the_whole_curves(tmp_path: Path):
    runs = tmp_path / "runs"
    write(runs, _long("copy-last", [15.0 + t for t in range(25)], train=None))
    write_report(runs, tmp_path / "report.md")
    with open(tmp_path / "report.curves.csv", newline="") as fh:
        lines = [r for r in csv.DictReader(fh) if r["metric"] == "psnr"]
    assert [int(r["step"]) for r in lines] == list(range(1, 26))
    assert [float(r["value"]) for r in lines] == [15.0 + t for t in range(25)]


def test_context_and_horizon_flags_set_the_protocol_and_train_horizon_the_training_clips(bench, tmp_path: Path):
    bench("run", "--models", "convlstm,copy-last", "--dataset", "moving-digits", "--context", "12",
          "--horizon", "24", "--quick", *TINY, "--set", "convlstm.train_horizon=4", "--set", "data.test_size=4")
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").rglob("result.json"))]
    assert [(r["predictor"], r["protocol"]["context"], r["protocol"]["future"]) for r in results] == [
        ("convlstm", 12, 24), ("copy-last", 12, 24)]
    assert all(len(r["eval"]["per_step"]["psnr"]) == 24 for r in results)
    assert results[0]["config"]["train_horizon"] == 4
    md = bench("report", "--out", "report.md").stdout
    assert "PSNR↑ per predicted step" in md and "| predictor | t+1 | t+5 | t+10 | t+20 | t+24 |" in md
    assert (tmp_path / "report.curves.csv").is_file()


def test_stochastic_predictors_run_end_to_end_with_best_and_mean_of_n_rows(bench, tmp_path: Path):
    tiny = [f"--set={name}.{key}" for name in ("cwvae", "htsrm") for key in
            ("filters=4", "cell_stoch_size=4", "cell_deter_size=16", "cell_embed_size=16", "enc_dense_embed_size=32",
             "quick_iterations=10", "batch_size=4")]
    bench("run", "--models", "cwvae,htsrm,copy-last", "--dataset", "moving-digits", "--context", "36",
          "--horizon", "24", "--samples", "3", "--quick", *tiny, "--set", "data.train_size=16",
          "--set", "data.val_size=4", "--set", "data.test_size=4")
    results = {r["predictor"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("result.json"))}
    for name in ("cwvae", "htsrm"):
        ev = results[name]["eval"]
        assert ev["samples"] == 3 and results[name]["samples"] == 3 and "mean over 3 samples" in ev["sampling"]
        assert len(ev["best_of_samples"]["per_step"]["psnr"]) == 24
        assert ev["best_of_samples"]["mean"]["psnr"] >= ev["mean"]["psnr"]
    assert "samples" not in results["copy-last"]["eval"]
    for name in ("cwvae", "htsrm"):  # generative models keep the checkpoint with the best validation ELBO
        train = results[name]["train"]
        assert train["selected_on"].startswith("validation loss")
        log = next((tmp_path / "runs").rglob(f"{name}/*/train.log")).read_text().splitlines()
        vals = [event for event in map(json.loads, log) if event["event"] == "val"]
        assert vals and all("loss" in v for v in vals)
        best = min(vals, key=lambda v: v["loss"])  # the first of equal losses, as training keeps the first
        assert (train["best_iteration"], train["best_val_score"]) == (best["iteration"], best["loss"])
    md = bench("report").stdout
    rows = table(md.split("per predicted step")[0])
    assert {"cwvae (mean of 3)†", "cwvae (best of 3)†", "htsrm (mean of 3)†", "htsrm (best of 3)†", "copy-last†"} == {
        label.split("¹")[0] for label in rows}
    assert "| predictor | t+1 | t+5 | t+10 | t+20 | t+24 |" in md


def test_validation_loss_sees_fixed_draws_and_leaves_training_randomness_alone():
    model = create_predictor("cwvae", VideoSpec(1, 64, 64, 6, 6), preset="moving-digits", filters=4,
                             cell_stoch_size=4, cell_deter_size=16, cell_embed_size=16, enc_dense_embed_size=32)
    clips = DATASETS.get("moving-digits").create(val_size=3, context=6, future=6).split("val")
    settings = dict(device=torch.device("cpu"), precision="fp32", batch_size=2, workers=0)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    first = mean_validation_loss(model, clips, **settings)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(6)
    assert mean_validation_loss(model, clips, **settings) == first
    assert mean_validation_loss(create_predictor("copy-last", VideoSpec(1, 64, 64, 6, 6)), clips, **settings) is None


def test_a_protocol_with_other_lengths_is_titled_by_them(tmp_path: Path):
    write(tmp_path, _long("copy-last", [15.0] * 30, train=None))  # protocol "10to10" run at 36 -> 30
    assert "### moving-digits — 36 → 30, 64×64 (protocol 10to10 with other lengths)" in render(
        load_results(tmp_path)[0], "md")
