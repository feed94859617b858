"""Checkpoints written by the reference implementations' own code (tests/fixtures/references/make_*.py: the STRPM
authors', thuml's MotionRNN, HKO-7's MXNet ConvGRU and TrajGRU) load through `--checkpoint`'s path and predict
what that code predicted with them, to 1e-6. The expected frames come from the reference's forward, never from
vpbench."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vpbench import VideoSpec, create_predictor
from vpbench.cli import app
from vpbench.foreign import configure, load_into, read_checkpoint
from vpbench.registry import PREDICTORS

FIXTURES = Path(__file__).parent / "fixtures" / "references"
SPEC = VideoSpec(1, 32, 32, 3, 3)  # common.py's SIZE, CONTEXT, FUTURE
HKO7 = ("convgru", "trajgru")


def torch_fixture(name: str) -> tuple[Path, dict, torch.Tensor, torch.Tensor]:
    """make_strpm.py / make_motionrnn.py: the checkpoint, its record, the seeded input and the output."""
    expected = torch.load(FIXTURES / f"{name}.expected.pt", weights_only=True)
    batch = expected["output"].shape[0]
    context = torch.rand(batch, SPEC.context, 1, SPEC.height, SPEC.width, generator=torch.Generator().manual_seed(1))
    return FIXTURES / f"{name}.ckpt", expected, context, expected["output"]


def mxnet_fixture(name: str) -> tuple[Path, dict, torch.Tensor, torch.Tensor]:
    """make_hko7.py: the encoder's parameter file (the forecaster's lies beside it), its record, input, output."""
    saved = np.load(FIXTURES / name / "expected.npz")
    record = {"predictor": str(saved["predictor"]), "preset": None, "settings": json.loads(str(saved["settings"]))}
    return (FIXTURES / name / "encoder_net-0000.params", record, torch.from_numpy(saved["input"]),
            torch.from_numpy(saved["output"]))


def fixture(name: str) -> tuple[Path, dict, torch.Tensor, torch.Tensor]:
    return mxnet_fixture(name) if name in HKO7 else torch_fixture(name)


def reference_model(name: str, **changes):
    path, record, context, output = fixture(name)
    cls = PREDICTORS.get(record["predictor"])
    checkpoint = read_checkpoint(path, cls)
    settings = configure(checkpoint, SPEC, {**record["settings"], **changes})
    model = create_predictor(cls, SPEC, preset=record["preset"], **settings).eval()
    load_into(model, checkpoint)
    return model, checkpoint, context, output


@pytest.mark.parametrize("name", ["strpm", "motionrnn", *HKO7])
def test_reference_checkpoints_predict_what_the_reference_code_predicted(name):
    model, checkpoint, context, expected = reference_model(name)
    with torch.no_grad():
        output = model(context, SPEC.future)
    assert output.shape == expected.shape
    assert (output - expected).abs().max() <= 1e-6
    assert checkpoint.layout is not None


def test_strpm_weights_need_the_reference_memory_windows():
    model, checkpoint, context, expected = reference_model("strpm")
    assert model.config.reference_memory is True
    assert any(n.startswith("set reference_memory=True: ") for n in checkpoint.notes)
    paper, checkpoint, context, expected = reference_model("strpm", reference_memory=False)
    with torch.no_grad():
        assert (paper(context, SPEC.future) - expected).abs().max() > 1e-3
