"""CrevNet (predictors/crevnet.py). OpenSTL's own code wrote a checkpoint and what it predicted with it
(tests/fixtures/references/make_crevnet.py): loaded through `--checkpoint`'s path, it predicts the same, the switch
`reference_rollout` is what makes it so, and the training loss is OpenSTL's. Sizes and FLOPs counted by hand beside
OpenSTL's table; the auto-encoder loses nothing; the rollout reads every context clip; bad geometry is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.acceleration import prepare_execution
from vpbench.cli import app
from vpbench.costs import count_flops
from vpbench.foreign import configure, load_into, load_weights, read_checkpoint
from vpbench.predictor import count_parameters
from vpbench.registry import PREDICTORS

from conftest import MMNIST, run_bench, tiny

FIXTURES = Path(__file__).parent / "fixtures" / "references"
SPEC = VideoSpec(1, 64, 64, 4, 3)  # make_crevnet.py's SIZE, CONTEXT, FUTURE
CPU = torch.device("cpu")

torch.set_num_threads(1)


def seeded_frames(frames: int, seed: int) -> torch.Tensor:
    """make_crevnet.py's: [2, frames, 1, 64, 64]."""
    return torch.rand(2, frames, 1, 64, 64, generator=torch.Generator().manual_seed(seed))


def openstl_model(**changes):
    expected = torch.load(FIXTURES / "crevnet.expected.pt", weights_only=True)
    checkpoint = read_checkpoint(FIXTURES / "crevnet.ckpt", PREDICTORS.get("crevnet"))
    settings = configure(checkpoint, SPEC, {**expected["settings"], **changes})
    model = create_predictor("crevnet", SPEC, **settings).eval()
    load_into(model, checkpoint)
    return model, checkpoint, expected


def test_openstl_checkpoint_predicts_what_openstl_predicted():
    # Max differences seen: 0 plain; 1.4e-5 with channels-last weights (the bf16 runs' layout, here in fp32), whose
    # convolutions sum in another order: each decoding subtracts 12 blocks' residuals from their sums, and these
    # random weights (outputs' std 0.48, largest 2.2) amplify that rounding over the 3 steps; hence 5e-5 there.
    model, checkpoint, expected = openstl_model()
    assert checkpoint.notes[:2] == ["OpenSTL checkpoint (a bare state dict)", "247 tensors renamed to vpbench's names"]
    context = seeded_frames(SPEC.context, 1)
    with torch.no_grad():
        plain = model(context, SPEC.future)
        prepare_execution(model, CPU, "fp32", channels_last=True)  # the bf16 runs' layout
        fast = model(context, SPEC.future)
    assert plain.shape == expected["output"].shape == (2, SPEC.future, 1, 64, 64)
    # 0.0 on the AMD EPYC that wrote the fixture; other CPUs' fp32 kernels round differently through its 3x3x3
    # convolutions and recurrence (outputs up to 2.2): 6.1e-6 on an Intel Xeon's AVX-512 kernels, 1.2e-5 on its
    # AVX2 ones
    assert (plain - expected["output"]).abs().max() <= 2e-5
    assert (fast - expected["output"]).abs().max() <= 5e-5
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.tensors.items())


def test_reference_rollout_is_what_makes_the_weights_predict_as_there():
    model, checkpoint, expected = openstl_model()
    assert model.config.reference_rollout is True
    assert any(n.startswith("set reference_rollout=True: ") for n in checkpoint.notes)
    authors, checkpoint, _ = openstl_model(reference_rollout=False)
    assert any(n.startswith("kept reference_rollout=False as set") for n in checkpoint.notes)
    with torch.no_grad():  # 1.6 apart: the RPM read the first context clip too
        assert (authors(seeded_frames(SPEC.context, 1), SPEC.future) - expected["output"]).abs().max() > 1e-2
    with pytest.raises(UserError, match="--set crevnet.reference_rollout="):
        load_weights(create_predictor("crevnet", SPEC, **expected["settings"]), FIXTURES / "crevnet.ckpt")


def test_training_loss_is_openstls():
    """Teacher forcing over every clip, BatchNorm on batch statistics, the steps' MSEs summed: OpenSTL's forward in
    training mode on the same 7 frames gave `loss` (equal here to the last bit)."""
    model, _, expected = openstl_model()
    model.train()
    with torch.no_grad():
        loss = model.training_loss(seeded_frames(SPEC.context + SPEC.future, 2), iteration=0)
    assert abs(float(loss) - float(expected["loss"])) <= 1e-6


def test_openstls_resumable_files_load_too(tmp_path):
    """OpenSTL 0.3.0's `latest.pth` (api/train.py `_save`): the same state dict under "state_dict"."""
    bare = torch.load(FIXTURES / "crevnet.ckpt", weights_only=True)
    torch.save({"epoch": 3, "state_dict": bare, "optimizer": {"state": {}, "param_groups": []}},
               tmp_path / "latest.pth")
    checkpoint = read_checkpoint(tmp_path / "latest.pth", PREDICTORS.get("crevnet"))
    assert checkpoint.layout is not None
    reference = read_checkpoint(FIXTURES / "crevnet.ckpt", PREDICTORS.get("crevnet"))
    assert checkpoint.tensors.keys() == reference.tensors.keys()


def test_bench_eval_loads_the_openstl_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = torch.load(FIXTURES / "crevnet.expected.pt", weights_only=True)["settings"]
    sets = [a for k, v in settings.items()
            for a in ("--set", f"crevnet.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")]
    proc = CliRunner().invoke(app, ["eval", "--models", "crevnet", "--dataset", "moving-digits", "--context", "4",
                                    "--horizon", "3", "--set", "data.test_size=2", "--out", "R", *sets,
                                    "--checkpoint", str(FIXTURES / "crevnet.ckpt")])
    assert proc.exit_code == 0, proc.output
    (run,) = (tmp_path / "R" / "moving-digits" / "crevnet").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["eval"]["checkpoint_notes"][0] == "OpenSTL checkpoint (a bare state dict)"
    assert result["config"]["reference_rollout"] is True


def test_the_auto_encoder_loses_nothing():
    model = tiny("crevnet").eval()
    with torch.no_grad():
        for module in model.modules():  # BatchNorm statistics away from the identity they start at
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        clip = torch.rand(2, 4, 3, 32, 32)  # [B, 4C, window, H/2, W/2]: squeezed frames
        latent = model.encode(clip)
        restored = model.decode(latent)
    assert sum(half.numel() for half in latent) == clip.numel()
    assert (restored - clip).abs().max() <= 1e-5


def test_the_rollout_reads_every_context_clip_and_openstls_only_the_last():
    model = tiny("crevnet").eval()
    context = torch.rand(1, 6, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    changed = context.clone()
    changed[:, 0] = 1 - changed[:, 0]  # a frame only the first context clip holds
    with torch.no_grad():
        assert (model(context, 2) - model(changed, 2)).abs().max() > 1e-4
        model.config.reference_rollout = True
        assert torch.equal(model(context, 2), model(changed, 2))


def _hand_count() -> dict[str, int]:
    """CrevNet at OpenSTL's mmnist setting (64x64 grey): squeezed to [4, 3, 32, 32], halves of 2 channels; stages
    of 4, 5 and 3 i-RevNet blocks, the last two halving the frame; an RPM of 8 layers of width 32 on [3, 8, 8]."""
    kernel, s0, s1, s2 = 27, 3 * 32 * 32, 3 * 16 * 16, 3 * 8 * 8
    # Each block's bottleneck: in/2 -> width -> width -> out channels, 3x3x3 without bias, at the output's positions;
    # BatchNorms of its input (in/2 at the input's positions; not in the first block) and twice of the width.
    # (in/2, width, out, output positions, input positions)
    blocks = ([(2, 1, 2, s0, s0)] * 4 + [(2, 4, 8, s1, s0)] + [(8, 4, 8, s1, s1)] * 4
              + [(8, 16, 32, s2, s1)] + [(32, 16, 32, s2, s2)] * 2)
    conv_weights = sum((i * w + w * w + w * o) * kernel for i, w, o, _, _ in blocks)
    conv_flops = sum((i * w + w * w + w * o) * kernel * p for i, w, o, p, _ in blocks)
    first_in, _, _, _, first_positions = blocks[0]
    bn_channels = sum(i + 2 * w for i, w, _, _, _ in blocks) - first_in
    bn_elements = sum(i * q + 2 * w * p for i, w, _, p, q in blocks) - first_in * first_positions
    k = 32
    # Six gates of [x, h, c] / [x, m, c'] (3k -> k), the output gate (4k -> k), 3x3x3; fuse (2k -> k) and the
    # attention (k -> k), 1x1x1; all with biases.
    cell_weights = 6 * 3 * k * k * kernel + 4 * k * k * kernel + 2 * k * k + k * k
    return dict(params=8 * (cell_weights + 9 * k) + conv_weights + 2 * bn_channels, conv=conv_flops,
                bn_elements=bn_elements, rpm=8 * cell_weights * s2)


def test_mmnist_size_and_flops_by_hand_and_beside_openstls_table():
    count = _hand_count()
    model = create_predictor("crevnet", MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == count["params"] == 4_997_444  # OpenSTL's table: 5.0M
    # OpenSTL's 270.7G: fvcore on its training forward (17 teacher-forced steps, each encoded, predicted and decoded,
    # BatchNorm in training mode: 5 FLOPs an element) at its batch size, 16 (openstl/api/train.py line 254).
    step = count["rpm"] + 2 * count["conv"] + 2 * 5 * count["bn_elements"]
    assert round(16 * 17 * step / 1e9, 1) == 270.7
    # Ours at batch 1: 7 context clips read (encoded, predicted), 10 predicted (encoded, predicted, decoded);
    # BatchNorm in eval mode, 2 FLOPs an element.
    context = torch.rand(1, 10, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    flops = count_flops(model.eval(), context, 10)
    convolutions = 17 * (count["rpm"] + count["conv"]) + 10 * count["conv"]
    assert flops.fvcore_by_operator["conv"] == flops.torch == convolutions
    assert flops.fvcore_by_operator["batch_norm"] == 27 * 2 * count["bn_elements"]
    assert flops.fvcore == 16_709_658_624
    # OpenSTL's test rollout: the last context clip and 9 predicted ones, each encoded, predicted and decoded.
    model.config.reference_rollout = True
    assert count_flops(model, context, 10).fvcore == 10 * (count["rpm"] + 2 * count["conv"] + 4 * count["bn_elements"])


@pytest.mark.parametrize("spec,message", [
    (VideoSpec(1, 60, 64, 4, 4), r"\(blocks=\[4, 5, 3\]\) halve the frame 3 times; 60x64 is not divisible by 8"),
    (VideoSpec(1, 64, 64, 2, 4), "window=3 frames per clip needs at least as many context frames; the protocol has 2"),
])
def test_a_geometry_it_cannot_take_is_one_error(spec, message):
    with pytest.raises(UserError, match=message):
        create_predictor("crevnet", spec, preset="mmnist")


def test_bench_says_so_in_one_line(tmp_path):
    proc = run_bench("profile", "--models", "crevnet", "--dataset", "moving-digits", "--context", "2",
                     cwd=tmp_path, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: crevnet: window=3 frames per clip")
