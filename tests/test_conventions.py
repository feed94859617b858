"""Each reference's metric convention against the reference's own metric call, to 1e-4.

The references ran scikit-image <= 0.19, where a float image's SSIM took data range 2 from its dtype and the
7x7 uniform window with sample covariance by default; today's scikit-image wants those spelled out, so the
calls below name them (win_size=7, gaussian_weights=False, use_sample_covariance=True, data_range=2).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import run_bench
from vpbench.errors import UserError
from vpbench.metrics.conventions import CONVENTIONS, ConventionMetric, resolve_conventions

OLD_SKIMAGE_FLOAT = dict(win_size=7, gaussian_weights=False, use_sample_covariance=True, data_range=2.0)


@pytest.fixture(scope="module")
def clips() -> tuple[np.ndarray, np.ndarray]:
    """Ground truth in [0, 1] and a prediction that strays outside it (as tanh decoders do): [B, T, C, H, W]."""
    rng = np.random.default_rng(16)
    truth = rng.random((2, 2, 3, 24, 20)) ** 2
    pred = truth + 0.25 * rng.standard_normal(truth.shape)
    assert pred.min() < -0.2 and pred.max() > 1.2  # clipping matters for this pair
    return truth, pred


def ours(convention: str, truth: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    scores = ConventionMetric(CONVENTIONS[convention]).score_frames(torch.from_numpy(pred).float(),
                                                                    torch.from_numpy(truth).float())
    return {name: value.numpy() for name, value in scores.items()}


def frames(*clips: np.ndarray):
    b, t = clips[0].shape[:2]
    for i in range(b):
        for j in range(t):
            yield (i, j), *(c[i, j].astype(np.float32) for c in clips)


def test_vpbench_is_gaussian_population_range_1_on_clipped(clips):
    truth, pred = clips
    got = ours("vpbench", truth, pred)
    for at, x, y in frames(truth, np.clip(pred, 0, 1)):
        ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0, channel_axis=0)
        assert got["ssim"][at] == pytest.approx(ref, abs=1e-4)
        assert got["psnr"][at] == pytest.approx(peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-4)
        assert got["mse"][at] == pytest.approx(np.mean((x - y) ** 2), abs=1e-6)


def test_openstl_matches_its_metric_function(clips):
    truth, pred = clips
    got = ours("openstl", truth, pred)
    # openstl/core/metrics.py metric(): MSE/MAE before the clip, as per-frame sums over C, H, W ...
    assert got["mse"].mean() == pytest.approx(np.mean((pred - truth) ** 2, axis=(0, 1)).sum(), rel=1e-6)
    assert got["mae"].mean() == pytest.approx(np.mean(np.abs(pred - truth), axis=(0, 1)).sum(), rel=1e-6)
    clipped = np.minimum(np.maximum(pred, 0), 1)
    for at, p, t in frames(clipped, truth):
        # ... then SSIM as cal_ssim(pred.swapaxes(0, 2), true.swapaxes(0, 2), multichannel=True) ...
        ref = structural_similarity(p.swapaxes(0, 2), t.swapaxes(0, 2), channel_axis=-1, **OLD_SKIMAGE_FLOAT)
        assert got["ssim"][at] == pytest.approx(ref, abs=1e-4)
        # ... and its own PSNR: 20 log10(1 / sqrt(MSE)) on the float32 joint MSE
        mse = np.mean((p.astype(np.float32) - t.astype(np.float32)) ** 2)
        assert got["psnr"][at] == pytest.approx(20.0 * np.log10(1.0 / np.sqrt(mse)), abs=1e-4)


def test_stip_matches_its_trainer_test(clips):
    truth, pred = clips
    got = ours("stip", truth, pred)
    assert set(got) == {"psnr", "ssim"}
    to_hwc = lambda a: a.transpose(1, 2, 0)  # STIP scores [H, W, C] frames
    for at, x, gx in frames(truth, np.minimum(np.maximum(pred, 0), 1)):
        ref = structural_similarity(to_hwc(x), to_hwc(gx), channel_axis=-1, **OLD_SKIMAGE_FLOAT)  # compare_ssim(x, gx, multichannel=True)
        assert got["ssim"][at] == pytest.approx(ref, abs=1e-4)
        assert got["psnr"][at] == pytest.approx(10 * np.log10(1 / np.square(x - gx).mean()), abs=1e-4)


def test_cwvae_and_htsrm_match_compute_metrics_on_unclipped_outputs(clips):
    truth, pred = clips
    got = ours("cwvae", truth, pred)
    assert resolve_conventions(["htsrm"]) == (CONVENTIONS["cwvae"],)
    for at, gt, pr in frames(truth, pred):  # tools.compute_metrics: per channel, scikit-image 0.18.1 defaults
        ssim = np.mean([structural_similarity(gt[c], pr[c], **OLD_SKIMAGE_FLOAT) for c in range(3)])
        psnr = np.mean([peak_signal_noise_ratio(gt[c], pr[c], data_range=1.0) for c in range(3)])
        assert got["ssim"][at] == pytest.approx(ssim, abs=1e-4)
        assert got["psnr"][at] == pytest.approx(psnr, abs=1e-4)


def test_conventions_disagree_as_their_settings_predict(clips):
    truth, pred = clips
    vp, cw, st = (ours(name, truth, pred) for name in ("vpbench", "cwvae", "stip"))
    assert (st["ssim"] > vp["ssim"]).all()  # data range 2: larger C1, C2 pull SSIM up
    assert (cw["psnr"] < st["psnr"]).all()  # unclipped errors are larger


def test_unknown_convention_is_a_user_error():
    assert resolve_conventions(["vpbench", "CWVAE", "htsrm", "stip"]) == (CONVENTIONS["cwvae"], CONVENTIONS["stip"])
    with pytest.raises(UserError, match="unknown metric convention 'matlab'"):
        resolve_conventions(["matlab"])


def test_run_scores_a_convention_apart_and_adds_one_without_a_new_run_id(tmp_path):
    common = ["--models", "copy-last", "--dataset", "moving-digits", "--set", "data.test_size=8", "--out", "R"]
    plain = run_bench("run", *common, cwd=tmp_path).stdout
    first = [json.loads(p.read_text()) for p in (tmp_path / "R").rglob("result.json")]
    assert len(first) == 1 and "conventions" not in first[0]["eval"] and "(cwvae)" not in plain
    out = run_bench("run", *common, "--convention", "vpbench,cwvae", cwd=tmp_path).stdout
    again = [json.loads(p.read_text()) for p in (tmp_path / "R").rglob("result.json")]
    assert len(again) == 1 and again[0]["run_id"] == first[0]["run_id"]  # same run, scored once more
    assert again[0]["eval"]["mean"] == first[0]["eval"]["mean"]  # our columns unchanged
    cwvae = again[0]["eval"]["conventions"]["cwvae"]
    assert cwvae["settings"]["ssim_window"] == "uniform 7" and len(cwvae["per_step"]["ssim"]) == 10
    assert "SSIM↑ mean (cwvae)" in out and "PSNR↑ mean (cwvae)" in out
    skipped = run_bench("run", *common, "--convention", "htsrm", cwd=tmp_path)
    assert "skipped" in skipped.stdout + skipped.stderr
