"""The floors: mean-frame (the training split's per-pixel mean frame) and blank (all black), checked against numpy
computations on clips the test reads itself."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_bench
from vpbench.predictor import create_predictor
from vpbench.registry import DATASETS
from vpbench.spec import VideoSpec

SIZES = dict(train_size=30, val_size=2, test_size=6)
CONTEXT, FUTURE = 4, 3


def digits() -> object:
    return DATASETS.get("moving-digits").create(context=CONTEXT, future=FUTURE, **SIZES)


def frames(split: object, indices: list[int]) -> np.ndarray:
    """Clips [N, T, C, H, W] as float64 numpy, read one by one."""
    return np.stack([split[i].numpy() for i in indices]).astype(np.float64)


@pytest.mark.parametrize("mean_clips,indices", [(100, list(range(30))), (3, [0, 10, 20])])
def test_mean_frame_predicts_the_mean_of_evenly_spaced_training_clips(mean_clips: int, indices: list[int]) -> None:
    data = digits()
    train = data.split("train")
    model = create_predictor("mean-frame", data.spec, mean_clips=mean_clips)
    said = model.fit_statistics(train)
    expected = frames(train, indices).mean(axis=(0, 1))  # over clips and frames: [C, H, W]
    context = torch.rand(2, CONTEXT, *expected.shape)
    out = model(context, 5).numpy()
    assert out.shape == (2, 5, *expected.shape)
    assert np.abs(out - expected).max() < 1e-6
    assert 0 < expected.mean() < 0.2  # near black, not black: digits pass everywhere
    assert f"of {len(indices)} of 30 training clips" in said


def test_blank_predicts_zeros() -> None:
    model = create_predictor("blank", VideoSpec(3, 8, 8, 2, 4))
    out = model(torch.rand(2, 2, 3, 8, 8), 4)
    assert out.shape == (2, 4, 3, 8, 8) and not out.any()


def psnr_per_step(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean over sequences of each predicted step's PSNR; prediction broadcasts against truth [N, T, C, H, W]."""
    mse = ((np.clip(prediction, 0, 1) - truth) ** 2).mean(axis=(2, 3, 4))
    return (10 * np.log10(1 / mse)).mean(axis=0)


def test_bench_run_scores_the_floors_as_numpy_does_and_records_them(tmp_path: Path) -> None:
    sizes = [arg for key, value in SIZES.items() for arg in ("--set", f"data.{key}={value}")]
    run_bench("run", "--models", "mean-frame,blank", "--dataset", "moving-digits", "--context", str(CONTEXT),
              "--horizon", str(FUTURE), *sizes, "--out", "R", cwd=tmp_path, env={"VPBENCH_THREADS": "1"})
    data = digits()
    truth = frames(data.split("test"), list(range(SIZES["test_size"])))[:, CONTEXT:]
    mean = frames(data.split("train"), list(range(SIZES["train_size"]))).mean(axis=(0, 1))
    for name, prediction in (("mean-frame", mean), ("blank", np.zeros_like(mean))):
        result = result_of(tmp_path, name)
        assert result["floor"] is True and result["train"] is None and result["costs"]["params"] == 0
        np.testing.assert_allclose(result["eval"]["per_step"]["psnr"], psnr_per_step(prediction, truth), atol=1e-4)
    assert "mean of 210 frames of 30 of 30 training clips" in result_of(tmp_path, "mean-frame")["eval"]["checkpoint"]


def result_of(runs: Path, name: str) -> dict:
    (path,) = (runs / "R" / "moving-digits" / name).glob("*/result.json")
    return json.loads(path.read_text())
