"""The execution path (vpbench.acceleration, fused gate convolutions): faster, never different. Checkpoints
written before the speed work load strictly and give the outputs that code gave; channels-last weights, the
fused gates in training and torch.compile agree with the plain path to fp32 rounding; `--precision auto`
follows the bf16 probe and says what it chose."""
import pytest
import torch

import vpbench.layers as layers
from vpbench import create_predictor
from vpbench.acceleration import (CompiledOrEager, PrecisionProbe, compile_model, prepare_execution,
                                  resolve_precision, to_channels_last)
from vpbench.errors import UserError

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
_make = {}
exec((FIXTURES / "make.py").read_text(), _make)  # SPEC, seeded_input, recurrent_names: as the files were made
SPEC, seeded_input, RECURRENT = _make["SPEC"], _make["seeded_input"], _make["recurrent_names"]()
CPU = torch.device("cpu")

torch.set_num_threads(1)


# Pinned instead, through both paths, by checkpoints their reference code wrote (tests/test_reference_checkpoints.py;
# SwinLSTM: tests/test_swinlstm.py on the OpenSTL fixtures; PhyDNet: tests/test_foreign.py on its OpenSTL fixture).
# STRPM keeps its file: the reference code computes only its `reference_memory` windows, the file pins the default.
BY_REFERENCE = {"motionrnn", "convgru", "trajgru", "mau", "swinlstm", "phydnet", "prednet"}
OLD = sorted(set(RECURRENT) - BY_REFERENCE)


def test_every_recurrent_predictor_has_a_checkpoint_from_before_the_speed_work():
    assert OLD and sorted(p.stem for p in FIXTURES.glob("*.pt")) == OLD


def old_model(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    saved = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    model = create_predictor(name, SPEC, preset="tiny").eval()
    model.load_state_dict(saved["state_dict"], strict=True)
    return model, saved["output"]


@pytest.mark.parametrize("name", OLD)
def test_old_checkpoint_loads_strictly_and_both_paths_give_its_output(name):
    model, expected = old_model(name)
    context = seeded_input()
    with torch.no_grad():
        plain = model(context, SPEC.future)
        prepare_execution(model, CPU, "fp32", channels_last=True)  # the bf16 runs' layout, here in fp32
        optimized = model(context, SPEC.future)
    torch.testing.assert_close(plain, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(optimized, expected, rtol=0, atol=1e-5)
    # the layout is the run's business: the checkpoint it writes has the same names and values
    for key, value in model.state_dict().items():
        assert torch.equal(value, torch.load(FIXTURES / f"{name}.pt", weights_only=True)["state_dict"][key]), key


def training_grads(model: torch.nn.Module, clip: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)  # the scheduled-sampling draws
    loss = model.training_loss(clip, iteration=1)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", ["convlstm", "predrnn-pp", "predrnn", "mim", "e3d-lstm"])
def test_training_loss_and_gradients_of_the_fast_path_equal_the_plain_one(name, monkeypatch):
    model, _ = old_model(name)
    model.train()
    clip = torch.rand(2, SPEC.length, 1, SPEC.height, SPEC.width, generator=torch.Generator().manual_seed(2))
    with layers.unfused_gate_convs():
        plain_loss, plain_grads = training_grads(model, clip)
    to_channels_last(model)
    fused_calls = []
    concatenate = layers._concatenated_weight
    monkeypatch.setattr(layers, "_concatenated_weight", lambda *a: fused_calls.append(1) or concatenate(*a))
    fast_loss, fast_grads = training_grads(model, clip)
    assert bool(fused_calls) == (name in ("convlstm", "predrnn-pp"))  # the fused form ran where there is one
    assert fast_loss == pytest.approx(plain_loss, rel=0, abs=1e-6)
    assert len(fast_grads) == len(plain_grads)
    for fast, plain in zip(fast_grads, plain_grads):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-6)


def test_fused_weight_follows_every_update_of_the_weights():
    model, _ = old_model("convlstm")
    context = seeded_input()
    with torch.no_grad():
        before = model(context, SPEC.future)  # builds and keeps the concatenated weights
        for p in model.parameters():
            p.mul_(1.5)  # an in-place update, as an optimizer step makes
        after = model(context, SPEC.future)
        model.cell_list[0].__dict__.pop("_fused_gate_weight")
        model.cell_list[1].__dict__.pop("_fused_gate_weight")
        rebuilt = model(context, SPEC.future)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, rebuilt, rtol=0, atol=1e-6)


def test_checkpoint_of_a_channels_last_model_loads_into_a_plain_one(tmp_path):
    model, expected = old_model("predrnn")
    to_channels_last(model)
    assert model.cell_list[0].conv_x[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    plain = create_predictor("predrnn", SPEC, preset="tiny").eval()
    plain.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(plain(seeded_input(), SPEC.future), expected, rtol=0, atol=1e-5)


def test_compiled_step_gives_the_eager_output():
    model, expected = old_model("convlstm")
    wrapper = compile_model(model, CPU)
    with torch.no_grad():
        out = model(seeded_input(), SPEC.future)
    assert wrapper.reason is None, wrapper.reason
    assert wrapper.compiled is not None
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_a_step_that_cannot_compile_runs_eagerly_and_says_why():
    calls = []

    def step(x):
        calls.append(x)
        return x + 1

    wrapper = CompiledOrEager(step, "toy.step")

    def broken(*args):
        raise RuntimeError("no C++ compiler found\nlong details")

    wrapper.compiled = broken
    assert wrapper(torch.zeros(1)).item() == 1 and wrapper(torch.ones(1)).item() == 2
    assert wrapper.reason == "toy.step runs eagerly: torch.compile failed (RuntimeError: no C++ compiler found)"
    assert wrapper.compiled is None and len(calls) == 2


def probe(fp32_ms: float, bf16_ms: float):
    return lambda device: PrecisionProbe(str(device), fp32_ms, bf16_ms)


def test_auto_precision_on_a_cpu_takes_bf16_only_when_the_probe_finds_it_faster(monkeypatch):
    import vpbench.acceleration as acceleration

    monkeypatch.setattr(acceleration, "probe_bf16", probe(fp32_ms=2.0, bf16_ms=0.5))
    chosen, note = resolve_precision("auto", CPU)
    assert chosen == "bf16" and "bf16" in note and "4.00x" in note
    monkeypatch.setattr(acceleration, "probe_bf16", probe(fp32_ms=1.0, bf16_ms=27.0))
    chosen, note = resolve_precision("auto", CPU)
    assert chosen == "fp32" and "0.04x" in note
    chosen, note = resolve_precision("bf16", CPU)  # asked for explicitly: done, with a warning
    assert chosen == "bf16" and note.startswith("warning: bf16 is not faster than fp32")
    assert resolve_precision("fp32", CPU) == ("fp32", None)
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)


def test_the_real_probe_measures_both_sides():
    from vpbench.acceleration import probe_bf16

    measured = probe_bf16(CPU)
    assert measured.fp32_ms > 0 and measured.bf16_ms > 0
    assert "bf16 probe on cpu" in measured.describe()


def test_a_run_says_and_records_the_precision_auto_chose_and_its_execution_path(bench, tmp_path):
    import json

    proc = bench("run", "--models", "copy-last", "--dataset", "moving-digits", "--precision", "auto",
                 "--set", "data.test_size=4", "--out", "runs")
    chosen = next(line for line in (proc.stderr + proc.stdout).splitlines() if line.startswith("--precision auto: "))
    assert "bf16 probe on cpu" in chosen, chosen
    result = json.loads(next((tmp_path / "runs").rglob("result.json")).read_text())
    assert chosen.startswith(f"--precision auto: {result['precision']} ")  # the run is what was announced
    assert result["precision"] in ("fp32", "bf16")
    layout = "channels-last" if result["precision"] == "bf16" else "contiguous"
    assert result["costs"]["execution"] == f"{result['precision']}; {layout} weights; eager"
