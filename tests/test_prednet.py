"""PredNet: size and FLOPs by hand beside OpenSTL's published row, its error-unit training loss equal to OpenSTL's,
the authors' extrapolation objective, the closed loop that reads the previous step's prediction, OpenSTL's file
layouts recognised, and bad geometry refused with one line. Its outputs are pinned by checkpoints written by OpenSTL
v0.3.0's own code (tests/test_reference_checkpoints.py, tests/fixtures/references/make_prednet.py)."""
from pathlib import Path

import pytest
import torch

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.costs import count_flops
from vpbench.foreign import load_weights, read_checkpoint
from vpbench.predictor import count_parameters
from vpbench.registry import PREDICTORS

from conftest import MMNIST, tiny
from reference_counts import Conv, totals

torch.set_num_threads(1)

REFERENCES = Path(__file__).parent / "fixtures" / "references"
SPEC = VideoSpec(1, 32, 32, 3, 3)  # make_prednet.py's (common.py's) frames and protocol


# --- OpenSTL v0.3.0 configs/mmnist/PredNet.py: stack_sizes = R_stack_sizes = (1, 32, 64, 128, 256) on 64x64 frames,
# 3x3 filters with biases. Per layer l (grid 64 / 2^l): four gate convolutions of [R_l, E_l (2 x stack), R_{l+1}]
# to R_l, the prediction R_l -> stack_l, and below the top the target convolution E_l -> stack_{l+1} (before its
# pooling). fvcore also counts the nearest upsampling of R_{l+1} to layer l's grid, one FLOP per output element.
def prednet_step(channels: int = 1, steps: int = 1, size: int = 64) -> tuple[int, int, int]:
    """(parameters, convolution FLOPs, upsampling FLOPs) of `steps` steps."""
    stack = (channels, 32, 64, 128, 256)
    convs, upsampled = [], 0
    for l, width in enumerate(stack):
        positions = (size // 2**l) ** 2
        above = stack[l + 1] if l + 1 < len(stack) else 0
        convs += [Conv(2 * width + width + above, width, 9, positions, steps) for _ in "ifco"]
        convs.append(Conv(width, width, 9, positions, steps))
        if above:
            convs.append(Conv(2 * width, above, 9, positions, steps))
            upsampled += above * positions * steps
    params, flops = totals(convs)
    return params, flops, upsampled


def test_mmnist_size_and_flops_equal_a_hand_count_and_openstls_table():
    params, convolutions, upsampled = prednet_step(steps=20)  # 10 -> 10: the context's 10 steps, the future's 10
    model = create_predictor("prednet", MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == params == 12_510_842 and round(params / 1e6, 1) == 12.5
    counted = count_flops(model, torch.rand(1, 10, 1, 64, 64), 10)
    assert counted.fvcore == convolutions + upsampled == 16_765_501_440
    assert counted.torch == convolutions  # torch's counter has no formula for the upsampling
    # OpenSTL's table (docs/en/model_zoos/video_benchmarks.md line 77): 12.5M, 8.6G. Its v0.3.0 counts one step (api/
    # train.py `display_method_info` feeds [1, 1, C, H, W]): 838,275,072 under fvcore on its PredNet_Model, the hand
    # count; its KTH (128x128) and Human3.6M (256x256, colour) rows, 3.4G and 13.7G, are one step. 8.6G is ten steps
    # of three-channel 64x64 frames (its Moving MNIST-CIFAR row's); ten grey steps would print 8.4G.
    one = prednet_step(steps=1)
    assert one[1] + one[2] == 838_275_072
    assert round(sum(prednet_step(channels=3, steps=10)[1:]) / 1e9, 1) == 8.6
    assert round(sum(prednet_step(channels=1, steps=10)[1:]) / 1e9, 1) == 8.4
    assert round(sum(prednet_step(steps=1, size=128)[1:]) / 1e9, 1) == 3.4
    assert round(sum(prednet_step(channels=3, steps=1, size=256)[1:]) / 1e9, 1) == 13.7


def reference_weights(name: str = "prednet", **changes):
    """The model of make_prednet.py's fixture `name` with its weights, and the fixture's record."""
    expected = torch.load(REFERENCES / f"{name}.expected.pt", weights_only=True)
    model = create_predictor("prednet", SPEC, preset="tiny", **{**expected["settings"], **changes})
    load_weights(model, REFERENCES / f"{name}.ckpt")
    return model, expected


def loss_clip() -> torch.Tensor:
    """make_prednet.py's `loss_clip`: the clip on which it ran OpenSTL's training loss."""
    return torch.rand(2, 6, 1, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("weight_mode", ["L_0", "L_all"])
def test_the_error_objective_is_openstls_training_loss(weight_mode):
    model, expected = reference_weights(objective="errors", weight_mode=weight_mode)
    with torch.no_grad():
        loss = model.train().training_loss(loss_clip(), iteration=0)
    # OpenSTL's TrainLossCalculator on its forward without extrapolation: 0.13265 (L_0), 0.16175 (L_all).
    assert abs(float(loss) - float(expected["losses"][weight_mode])) < 1e-6


def test_the_extrapolation_objective_is_half_the_l1_of_the_next_frame_then_closed_loop_predictions():
    model, _ = reference_weights(objective="extrapolation")
    clip = loss_clip()
    with torch.no_grad():
        loss = model.train().training_loss(clip, iteration=0)
        model.eval()
        # Outputs 1 and 2 read true frames only (next-frame predictions); from the context's end on, closed loop.
        predicted = torch.cat([model(clip[:, :1], 1), model(clip[:, :2], 1), model(clip[:, :3], 3)], dim=1)
    assert abs(float(loss) - 0.5 * float((predicted - clip[:, 1:]).abs().mean())) < 1e-6


def test_extrapolating_reads_the_previous_steps_prediction_in_the_place_of_the_next_frame():
    model, _ = reference_weights()
    context = torch.rand(2, 3, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        second = model.eval()(context, 2)[:, 1]  # frame 4's prediction
        # In frame 3's place the rollout reads the previous step's output, the prediction of frame 2 (made from
        # frames 0 and 1), as the authors' `extrap_start_time` and OpenSTL's `_predict` do ...
        lagged = model(torch.cat([context, model(context[:, :2], 1)], dim=1), 1)[:, 0]
        # ... not its prediction of frame 3 (which would make the pixel layer's errors zero).
        own = model(torch.cat([context, model(context, 1)], dim=1), 1)[:, 0]
    assert (second - lagged).abs().max() < 1e-6
    assert (second - own).abs().max() > 1e-4


def test_openstls_file_layouts_are_recognised_and_ours_are_not_mistaken_for_them(tmp_path):
    cls = PREDICTORS.get("prednet")
    bare = torch.load(REFERENCES / "prednet.ckpt", weights_only=True)
    assert "Ahat.2.weight" in bare and "i.3.bias" in bare  # OpenSTL's names: its Ahat/A lists interleave activations
    torch.save({f"module.{k}": v for k, v in bare.items()}, tmp_path / "ddp.pth")  # a DistributedDataParallel run's
    model, expected = reference_weights()
    for path in (REFERENCES / "prednet.ckpt", tmp_path / "ddp.pth"):
        checkpoint = read_checkpoint(path, cls)
        assert checkpoint.notes[:2] == ["OpenSTL checkpoint (a bare state dict)",
                                        "46 tensors renamed to vpbench's names"]
        assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.tensors.items())
    # vpbench's own names, saved bare, are vpbench's (no OpenSTL name is one of them).
    torch.save(model.state_dict(), tmp_path / "ours.pth")
    assert read_checkpoint(tmp_path / "ours.pth", cls).layout is None


def test_bad_geometry_is_one_line():
    with pytest.raises(UserError, match=r"5 layers halve the grid 4 times, which needs sides divisible by 16; the grid "
                                        r"is 24x24 \(frames 24x24 cut into 1x1 patches\)"):
        create_predictor("prednet", VideoSpec(1, 24, 24, 2, 2), preset="mmnist")
    with pytest.raises(UserError, match=r"R_stack_sizes needs 3 values .* got 2"):
        create_predictor("prednet", MMNIST, preset="tiny", R_stack_sizes=(4, 8))
    with pytest.raises(UserError, match="scheduled_sampling needs objective=extrapolation"):
        create_predictor("prednet", MMNIST, preset="tiny", scheduled_sampling=True, objective="errors")
    tiny("prednet", scheduled_sampling=True, objective="extrapolation")
    with pytest.raises(UserError, match="l1_weight is not read"):
        create_predictor("prednet", MMNIST, preset="tiny", l1_weight=0.1)


def test_target_convolutions_read_the_errors_channels_where_the_representation_is_wider():
    # OpenSTL and the authors build layer l's target convolution for 2 * R_stack_sizes[l] inputs while it reads E_l,
    # 2 * stack_sizes[l] channels: they run only where the two agree. Here R 16 over targets of 8 and 16 channels.
    model = create_predictor("prednet", VideoSpec(1, 16, 16, 2, 2), stack_sizes=(8, 16), R_stack_sizes=(4, 16, 32))
    assert [layer.target.in_channels for layer in model.layers[:2]] == [2 * 1, 2 * 8]
    assert [layer.i.in_channels for layer in model.layers] == [4 + 2 + 16, 16 + 16 + 32, 32 + 32]
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 2, 1, 16, 16), 2).shape == (1, 2, 1, 16, 16)
