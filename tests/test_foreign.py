"""Other people's weights (`--checkpoint`, vpbench.foreign): OpenSTL's checkpoints, written by OpenSTL's own code
(tests/fixtures/openstl/make.py), load strictly and predict what OpenSTL predicted with them; the reference switches
they need are set, recorded and part of the run's identity; what a file holds besides is dropped and said so."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.cli import app
from vpbench.acceleration import prepare_execution
from vpbench.foreign import configure, load_into, read_checkpoint
from vpbench.registry import PREDICTORS
from vpbench.result import Result
from vpbench.foreign import load_weights
from vpbench.predictors.tau import differential_divergence

FIXTURES = Path(__file__).parent / "fixtures" / "openstl"
# expected.pt holds the first models' outputs; each model added later has its own expected-<name>.pt (make.py).
EXPECTED = {name: entry for path in sorted(FIXTURES.glob("expected*.pt"))
            for name, entry in torch.load(path, weights_only=True).items()}
SPEC = VideoSpec(1, 64, 64, 2, 3)  # make.py's CONTEXT, FUTURE, SIZE
FORWARD_SEED = 0  # make.py's: DMVFN draws its routing from torch's global generator, seeded so before each run
# How each file holds its weights: OpenSTL's Lightning checkpoints, but DMVFN's, from its pre-Lightning branch
# (OpenSTLv0.3.0), which saves the best model's bare state dict (Recorder: checkpoint.pth).
LIGHTNING = "OpenSTL checkpoint (a Lightning checkpoint's state_dict, 'model.' prefix removed)"
# WaST's also holds its frequency loss's Haar filters beside the `model.` ones: the prefix goes through its layout.
FIRST_NOTE = {"dmvfn": "OpenSTL checkpoint (a bare state dict)",
              "wast": "OpenSTL checkpoint (a Lightning checkpoint's state_dict)"}


def seeded_input() -> torch.Tensor:
    return torch.rand(1, SPEC.context, 1, SPEC.height, SPEC.width, generator=torch.Generator().manual_seed(1))


def openstl_model(name: str, **changes):
    """The vpbench model of fixture `name` with the checkpoint's weights, configured as `configure` does."""
    expected = EXPECTED[name]
    cls = PREDICTORS.get(expected["predictor"])
    checkpoint = read_checkpoint(FIXTURES / f"{name}.ckpt", cls)
    settings = configure(checkpoint, SPEC, {**expected["settings"], **changes})
    model = create_predictor(cls, SPEC, **settings).eval()
    load_into(model, checkpoint)
    return model, checkpoint


FLOW_MODELS = {"dmvfn"}  # predictions are warped frames: fp32 rounding moves the sampling points


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_openstl_checkpoints_predict_what_openstl_predicted(name):
    model, checkpoint = openstl_model(name)
    torch.manual_seed(FORWARD_SEED)
    with torch.no_grad():
        output = model(seeded_input(), SPEC.future)
        # and on the execution path of fast runs (channels-last weights, the bf16 runs' layout), which the recurrent
        # models without a pre-speed-work checkpoint (tests/test_execution.py's BY_REFERENCE) rely on
        prepare_execution(model, torch.device("cpu"), "fp32", channels_last=True)
        torch.manual_seed(FORWARD_SEED)
        fast = model(seeded_input(), SPEC.future)
    # Another CPU's kernels (or channels-last ones) round differently in fp32, and a flow model's warps scale that by
    # the frames' gradients: dmvfn 0.0 on the AMD EPYC that wrote the fixtures, 3.8e-6 on an Intel Xeon (AVX-512),
    # 3.7e-6 channels-last; every other model under 1e-6 on both.
    assert (output - EXPECTED[name]["output"]).abs().max() < (1e-5 if name in FLOW_MODELS else 1e-6)
    assert (fast - EXPECTED[name]["output"]).abs().max() < 1e-5
    assert checkpoint.notes[0] == FIRST_NOTE.get(name, LIGHTNING)


# What each OpenSTL model holds that no forward calls, and the settings its weights need.
DROPPED = {"convlstm": "dropped 4 tensors OpenSTL creates but never calls: cell_list.*.conv_last.weight (x2), "
                       "cell_list.*.conv_o.*.weight (x2)",
           "predrnn-pp": "dropped 2 tensors OpenSTL creates but never calls: cell_list.*.conv_o.*.weight (x2)",
           "mim": "dropped 1 tensor OpenSTL creates but never calls: stlstm_layer_diff.*.conv_last.weight",
           **dict.fromkeys(("mau", "mau-recall"), "dropped 4 tensors OpenSTL creates but never calls: "
                                                  "conv_last_sr.bias, conv_last_sr.weight, merge.bias, merge.weight"),
           "mmvp": "dropped 18 tensors OpenSTL creates but never calls: hid.predictor.fuse_conv.weight, "
                   "hid.scale_fuser_1.conv.conv.*.weight, hid.scale_fuser_1.up.bias, hid.scale_fuser_1.up.weight, "
                   "hid.scale_fuser_2.*.bias (x4), hid.scale_fuser_2.*.weight (x4), "
                   "hid.scale_fuser_2.*.num_batches_tracked (x2), hid.scale_fuser_2.*.running_mean (x2), "
                   "hid.scale_fuser_2.*.running_var (x2)",
           # Every Swin block inherits `red`, which only the even-numbered ones call; D's up path embeds nothing.
           "swinlstm-d": "dropped 12 tensors OpenSTL creates but never calls: "
                         "Downsample.layers.*.STBs.*.red.bias (x2), Downsample.layers.*.STBs.*.red.weight (x2), "
                         "Upsample.layers.*.STBs.*.red.bias (x2), Upsample.layers.*.STBs.*.red.weight (x2), "
                         "Upsample.patch_embed.norm.bias, Upsample.patch_embed.norm.weight, "
                         "Upsample.patch_embed.proj.bias, Upsample.patch_embed.proj.weight",
           "swinlstm-b": "dropped 2 tensors OpenSTL creates but never calls: ST.layer.STBs.*.red.bias, "
                         "ST.layer.STBs.*.red.weight",
           "wast": "dropped 1 tensor OpenSTL keeps outside the model (its frequency loss's Haar filters): "
                   "hffl.DWT.filters"}
SWITCHES = {"convlstm": ("forget_bias", 0.0, 1.0), "e3d-lstm": ("reference_cell", True, False),
            "simvp-swin": ("swin_mask", False, True)}


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_a_reference_switch_is_what_makes_the_weights_predict_as_there(name):
    key, needed, ours = SWITCHES[name]
    predictor = EXPECTED[name]["predictor"]
    model, checkpoint = openstl_model(name)
    assert getattr(model.config, key) == needed
    assert any(n.startswith(f"set {key}={needed!r}: ") for n in checkpoint.notes)
    # Set otherwise by the user: kept, said so, and the weights predict something else (E3D-LSTM: 0.36 apart; Swin
    # with its shifted windows masked: 6.6e-4, only the seams of the shifted layer change; both far above the 1e-6
    # within which the reference's setting agrees).
    fixed, checkpoint = openstl_model(name, **{key: ours})
    assert getattr(fixed.config, key) == ours
    assert any(n.startswith(f"kept {key}={ours!r} as set") for n in checkpoint.notes)
    with torch.no_grad():
        assert (fixed(seeded_input(), SPEC.future) - EXPECTED[name]["output"]).abs().max() > 1e-4
    # The Python API loads a reference's weights only into a model built as they need.
    with pytest.raises(UserError, match=f"--set {predictor}.{key}="):
        load_weights(create_predictor(predictor, SPEC, **EXPECTED[name]["settings"]), FIXTURES / f"{name}.ckpt")


def test_bare_state_dicts_are_told_apart_by_the_references_own_names(tmp_path):
    lightning = torch.load(FIXTURES / "convlstm.ckpt", weights_only=True)["state_dict"]
    bare = {k.removeprefix("model."): v for k, v in lightning.items()}
    torch.save(bare, tmp_path / "convlstm.pth")  # OpenSTL's pre-Lightning files: model.state_dict()
    checkpoint = read_checkpoint(tmp_path / "convlstm.pth", PREDICTORS.get("convlstm"))
    assert checkpoint.layout is not None and checkpoint.notes[0] == "OpenSTL checkpoint (a bare state dict)"
    assert DROPPED["convlstm"] in checkpoint.notes
    # E3D-LSTM's names are OpenSTL's: a bare file is read as vpbench's, with the hint for an OpenSTL one.
    e3d = {k.removeprefix("model."): v for k, v in torch.load(FIXTURES / "e3d-lstm.ckpt", weights_only=True)
           ["state_dict"].items()}
    torch.save(e3d, tmp_path / "e3d.pth")
    checkpoint = read_checkpoint(tmp_path / "e3d.pth", PREDICTORS.get("e3d-lstm"))
    assert checkpoint.layout is None and "if it is OpenSTL weights, set reference_cell=True" in checkpoint.notes[0]
    # A pickled object is refused, not run: weights_only=True stays.
    torch.save({"state_dict": bare, "hook": Path("x")}, tmp_path / "unsafe.ckpt")
    with pytest.raises(UserError, match="weights_only=True"):
        read_checkpoint(tmp_path / "unsafe.ckpt", PREDICTORS.get("convlstm"))


def test_a_bare_swinlstm_state_dict_is_told_by_its_never_called_tensors(tmp_path):
    """OpenSTL's files before Lightning hold `model.state_dict()`: names as here but for the odd-numbered Swin blocks'
    `red`, which tells the file apart and is dropped."""
    lightning = torch.load(FIXTURES / "swinlstm-b.ckpt", weights_only=True)["state_dict"]
    torch.save({k.removeprefix("model."): v for k, v in lightning.items()}, tmp_path / "swinlstm.pth")
    model = create_predictor("swinlstm", SPEC, **EXPECTED["swinlstm-b"]["settings"]).eval()
    notes = load_weights(model, tmp_path / "swinlstm.pth").notes
    assert notes == ["OpenSTL checkpoint (a bare state dict)", DROPPED["swinlstm-b"]]
    with torch.no_grad():
        assert (model(seeded_input(), SPEC.future) - EXPECTED["swinlstm-b"]["output"]).abs().max() < 1e-6


CLI_MODELS = {"convlstm": "convlstm", "predrnn-pp": "predrnn-pp", "mim": "mim", "simvp-incepu": "simvp",
              "e3d-lstm": "e3d-lstm", "simvp-swin": "simvp", "tau": "tau", "mau-recall": "mau",
              "mmvp": "mmvp", "dmvfn": "dmvfn",
              "swinlstm-d": "swinlstm", "wast": "wast"}


def _cli_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def test_bench_eval_loads_openstl_checkpoints_strictly_and_records_what_it_did(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for fixture, predictor in CLI_MODELS.items():
        sets = [a for k, v in EXPECTED[fixture]["settings"].items()
                for a in ("--set", f"{predictor}.{k}={_cli_value(v)}")]
        proc = CliRunner().invoke(app, ["eval", "--models", predictor, "--dataset", "moving-digits", "--context", "2",
                                        "--horizon", "3", "--set", "data.test_size=2", "--out", fixture, *sets,
                                        "--checkpoint", str(FIXTURES / f"{fixture}.ckpt")])
        assert proc.exit_code == 0, proc.output
        assert f"{predictor}: {FIXTURES / fixture}.ckpt: OpenSTL checkpoint" in " ".join(proc.output.split())
        (run,) = (tmp_path / fixture / "moving-digits" / predictor).iterdir()
        result = json.loads((run / "result.json").read_text())
        notes = result["eval"]["checkpoint_notes"]
        assert notes[0].startswith("OpenSTL checkpoint") and (fixture not in DROPPED or DROPPED[fixture] in notes)
        assert Result.read(run / "result.json").eval.checkpoint_notes == notes
        identity = json.loads((run / "config.json").read_text())
        if fixture in SWITCHES:  # the switch is part of what the run is, hence of its id
            key, needed, _ = SWITCHES[fixture]
            assert identity["config"][key] == result["config"][key] == needed


def ddr_frames() -> tuple[torch.Tensor, torch.Tensor]:
    """make.py's `ddr_frames`: the predicted and true frames on which it ran OpenSTL's `diff_div_reg`."""
    generator = torch.Generator().manual_seed(2)
    return torch.rand(2, 4, 1, 8, 8, generator=generator), torch.rand(2, 4, 1, 8, 8, generator=generator)


def test_taus_regulariser_is_what_openstl_computes():
    prediction, target = ddr_frames()
    assert abs(float(differential_divergence(prediction, target)) - float(EXPECTED["tau"]["ddr"])) < 1e-6
    assert float(differential_divergence(prediction[:, :2], target[:, :2])) == 0.0  # OpenSTL: none below 3 frames


def test_tau_trains_on_mse_plus_alpha_times_the_regulariser():
    spec = VideoSpec(1, 16, 16, 2, 4)
    clip = torch.rand(2, 6, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    model = create_predictor("tau", spec, hid_S=8, hid_T=16, N_S=2, N_T=2, alpha=0.5).eval()
    with torch.no_grad():
        loss = model.training_loss(clip, 0)
        prediction = model(clip[:, :2], 4)
    mse = ((prediction - clip[:, 2:]) ** 2).mean()
    regulariser = differential_divergence(prediction, clip[:, 2:])
    assert float(regulariser) > 1e-4
    assert abs(float(loss) - float(mse + 0.5 * regulariser)) < 1e-6


def routing_batch() -> torch.Tensor:
    """make.py's `routing_batch`: three sequences' context, on which OpenSTL's DMVFN ran as one batch."""
    return torch.rand(3, SPEC.context, 1, SPEC.height, SPEC.width, generator=torch.Generator().manual_seed(4))


def test_dmvfn_reference_routing_is_what_makes_a_batch_predict_as_openstl():
    """OpenSTL skips a block for the whole batch where the FIRST sequence's gate is 0 (`ref[0, i]`); vpbench routes
    each sequence by its own gates unless `reference_routing`, which OpenSTL's weights do not need (set by no file)."""
    model, checkpoint = openstl_model("dmvfn")
    assert not model.config.reference_routing and not any("reference_routing" in n for n in checkpoint.notes)
    expected = EXPECTED["dmvfn"]["batch_output"]
    outputs = {}
    for reference in (True, False):
        model.config.reference_routing = reference
        torch.manual_seed(FORWARD_SEED)
        with torch.no_grad():
            outputs[reference] = model(routing_batch(), SPEC.future)
    # 0 alone; the warps scale fp32 rounding by the frames' gradients where the suite's earlier tests leave torch's
    # convolutions on another summation order (5.6e-6 seen)
    assert (outputs[True] - expected).abs().max() < 2e-5
    # The first sequence draws the same gates either way (1e-5: computed in a sub-batch of its own), the others differ.
    assert (outputs[False][0] - expected[0]).abs().max() < 1e-4
    assert all((outputs[False][i] - expected[i]).abs().max() > 1e-2 for i in (1, 2))


def test_openstl_pre_lightning_run_files_load_both_ways(tmp_path):
    """OpenSTLv0.3.0 saves a run's best model bare (Recorder: checkpoint.pth, the fixture) and its last state as
    {"epoch", "optimizer", "state_dict", "scheduler"} (BaseExperiment._save: latest.pth), neither prefixed."""
    import torch.optim

    bare = torch.load(FIXTURES / "dmvfn.ckpt", weights_only=True)
    weights = [torch.nn.Parameter(v.clone()) for v in bare.values()]
    optimizer = torch.optim.Adam(weights, lr=1e-4)
    sum(w.sum() for w in weights).backward()
    optimizer.step()
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-4, total_steps=10)
    torch.save({"epoch": 3, "optimizer": optimizer.state_dict(), "state_dict": bare,
                "scheduler": schedule.state_dict()}, tmp_path / "latest.pth")
    cls = PREDICTORS.get("dmvfn")
    latest = read_checkpoint(tmp_path / "latest.pth", cls)
    assert latest.notes[:2] == ["OpenSTL checkpoint (a checkpoint's state_dict)",
                                "110 tensors renamed to vpbench's names"]
    assert read_checkpoint(FIXTURES / "dmvfn.ckpt", cls).tensors.keys() == latest.tensors.keys()
    model = create_predictor(cls, SPEC, **EXPECTED["dmvfn"]["settings"])
    load_into(model, latest)
    assert torch.equal(model.blocks[0].head.weight, bare["stu.0.lastconv.weight"])
    assert torch.equal(model.router_head.bias, bare["l1.bias"])
