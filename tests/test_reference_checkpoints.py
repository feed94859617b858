"""Checkpoints written by the reference implementations' own code (tests/fixtures/references/make_*.py: the STRPM
authors', thuml's MotionRNN, the MAU authors', HKO-7's MXNet ConvGRU and TrajGRU, OpenSTL v0.3.0's PredNet) load through `--checkpoint`'s path
and predict what that code predicted with them, to 1e-6. The expected frames come from the reference's forward, never
from vpbench."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.acceleration import prepare_execution
from vpbench.cli import app
from vpbench.foreign import configure, load_into, read_checkpoint
from vpbench.registry import PREDICTORS

FIXTURES = Path(__file__).parent / "fixtures" / "references"
SPEC = VideoSpec(1, 32, 32, 3, 3)  # common.py's SIZE, CONTEXT, FUTURE
HKO7 = ("convgru", "trajgru")


def torch_fixture(name: str) -> tuple[Path, dict, torch.Tensor, torch.Tensor]:
    """make_strpm.py / make_motionrnn.py / make_mau.py / make_prednet.py: the checkpoint, its record, the seeded input
    and the output."""
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


@pytest.mark.parametrize("name", ["strpm", "motionrnn", "mau", "prednet", "prednet-tanh", *HKO7])
def test_reference_checkpoints_predict_what_the_reference_code_predicted(name):
    # Max differences seen: strpm 7.5e-8, motionrnn 1.2e-7, mau 7.5e-8 (0 on the plain path), convgru 6.0e-7, trajgru
    # 1.2e-7, prednet 0 and prednet-tanh 0 (3.0e-8 and 7.5e-7 on channels-last weights) (outputs' std 0.01-0.14),
    # on the AMD EPYC that wrote the fixtures; an Intel Xeon's AVX-512 kernels sum channels-last convolutions in
    # another order: prednet-tanh 1.04e-6 there, hence 5e-6 for the fast path.
    model, checkpoint, context, expected = reference_model(name)
    assert checkpoint.layout is not None
    with torch.no_grad():
        plain = model(context, SPEC.future)
        prepare_execution(model, torch.device("cpu"), "fp32", channels_last=True)  # the bf16 runs' layout
        fast = model(context, SPEC.future)
    assert plain.shape == expected.shape
    assert (plain - expected).abs().max() <= 1e-6
    assert (fast - expected).abs().max() <= 5e-6
    # the layout is the run's business: the weights it would save are the file's
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.tensors.items())


def test_strpm_weights_need_the_reference_memory_windows():
    model, checkpoint, context, expected = reference_model("strpm")
    assert model.config.reference_memory is True
    assert any(n.startswith("set reference_memory=True: ") for n in checkpoint.notes)
    paper, checkpoint, context, expected = reference_model("strpm", reference_memory=False)  # 0.08 apart
    with torch.no_grad():
        assert (paper(context, SPEC.future) - expected).abs().max() > 1e-3


# (fixture, predictor, the file given, what the notes start with)
CLI = [("strpm", "strpm", FIXTURES / "strpm.ckpt", "official STRPM checkpoint"),
       ("trajgru", "trajgru", FIXTURES / "trajgru" / "forecaster_net-0000.params", "HKO-7 checkpoint (MXNet"),
       ("mau", "mau", FIXTURES / "mau.ckpt", "official MAU checkpoint"),
       ("prednet", "prednet", FIXTURES / "prednet.ckpt", "OpenSTL checkpoint (a bare state dict)")]


def test_bench_eval_loads_the_reference_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for fixture_name, predictor, path, note in CLI:
        _, record, _, _ = fixture(fixture_name)
        sets = [a for k, v in record["settings"].items()
                for a in ("--set", f"{predictor}.{k}={','.join(map(str, v)) if isinstance(v, list) else v}")]
        preset = ["--preset", record["preset"]] if record["preset"] else []
        proc = CliRunner().invoke(app, ["eval", "--models", predictor, "--dataset", "moving-digits", "--context", "3",
                                        "--horizon", "3", "--set", "data.test_size=2", "--set", "data.height=32",
                                        "--set", "data.width=32", "--out", "R", *preset, *sets,
                                        "--checkpoint", str(path)])
        assert proc.exit_code == 0, proc.output
        (run,) = (tmp_path / "R" / "moving-digits" / predictor).iterdir()
        assert json.loads((run / "result.json").read_text())["eval"]["checkpoint_notes"][0].startswith(note)


def test_mxnet_files_that_cannot_be_read_are_one_error(tmp_path):
    hko7 = FIXTURES / "trajgru"
    data = (hko7 / "encoder_net-0000.params").read_bytes()
    (tmp_path / "encoder_net-0003.params").write_bytes(data[:-10])  # truncated; its forecaster file is missing too
    with pytest.raises(UserError, match="forecaster_net-0003.params is not beside it"):
        read_checkpoint(tmp_path / "encoder_net-0003.params", PREDICTORS.get("trajgru"))
    (tmp_path / "forecaster_net-0003.params").write_bytes((hko7 / "forecaster_net-0000.params").read_bytes())
    with pytest.raises(UserError, match="ends early"):
        read_checkpoint(tmp_path / "encoder_net-0003.params", PREDICTORS.get("trajgru"))
    (tmp_path / "weights.params").write_bytes(data)
    with pytest.raises(UserError, match="saves its model as encoder_net-<epoch>.params and forecaster_net-"):
        read_checkpoint(tmp_path / "weights.params", PREDICTORS.get("trajgru"))
    # A second cell in a block (STACK_NUM 2, as HKO-7's own HKO runs have): same-length names, so only they change.
    (tmp_path / "encoder_net-0004.params").write_bytes(data.replace(b"ebrnn2_0_", b"ebrnn2_1_"))
    (tmp_path / "forecaster_net-0004.params").write_bytes((hko7 / "forecaster_net-0000.params").read_bytes())
    with pytest.raises(UserError, match=r"STACK_NUM > 1"):
        read_checkpoint(tmp_path / "forecaster_net-0004.params", PREDICTORS.get("trajgru"))
    with pytest.raises(UserError, match="convlstm reads no MXNet checkpoints"):
        read_checkpoint(hko7 / "encoder_net-0000.params", PREDICTORS.get("convlstm"))
    # A TrajGRU file into ConvGRU: the names map, the shapes do not.
    checkpoint = read_checkpoint(hko7 / "encoder_net-0000.params", PREDICTORS.get("convgru"))
    model = create_predictor("convgru", SPEC, **configure(checkpoint, SPEC, fixture("convgru")[1]["settings"]))
    with pytest.raises(UserError, match="does not fit convgru"):
        load_into(model, checkpoint)
