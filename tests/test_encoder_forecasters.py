"""ConvGRU and TrajGRU, HKO-7's encoder-forecasters: sizes equal to the reference models, and the behaviours the
reference defines (an open-loop forecaster trained on its forecast alone, Adam momentum 0.5, learned warps)."""
import pytest
import torch

from vpbench.errors import UserError
from vpbench.predictor import create_predictor
from vpbench.layers import patchify, unpatchify
from vpbench.training import TrainContext

from conftest import MMNIST, tiny
from reference_counts import Conv, assert_mmnist_size_and_flops, totals

# --- HKO-7's MovingMNIST++ encoder-forecaster (experiments/movingmnist/configurations/*_1_64_1_96_1_96_*.yml):
# 64x64 frames plus x, y and ones channels -> conv 16 -> RNN 64 @64 -> conv -> RNN 96 @32 -> conv -> RNN 96 @16;
# forecaster RNN 96 @16 (no input) -> deconv 96 -> RNN 96 @32 -> deconv 96 -> RNN 64 @64 -> deconv 16 -> conv -> 1x1.
SIZES, FILTERS, STEPS = (64 * 64, 32 * 32, 16 * 16), (64, 96, 96), 10


def convgru_cell(cin, f, positions):
    return ([Conv(cin, 3 * f, 9, positions, STEPS)] if cin else []) + [Conv(f, 3 * f, 25, positions, STEPS)]


def trajgru_cell(cin, f, positions, links=13, flow=32):
    inputs = [Conv(cin, 3 * f, 9, positions, STEPS), Conv(cin, flow, 25, positions, STEPS)] if cin else []
    return inputs + [Conv(f, flow, 25, positions, STEPS), Conv(flow, 2 * links, 25, positions, STEPS),
                     Conv(links * f, 3 * f, 1, positions, STEPS)]


def encoder_forecaster(cell):
    p0, p1, p2 = SIZES
    f0, f1, f2 = FILTERS
    layers = [Conv(1 + 3, 16, 9, p0, STEPS)]
    for cin, f, positions in [(16, f0, p0), (f1, f1, p1), (f2, f2, p2)]:  # encoder
        layers += cell(cin, f, positions)
    layers += [Conv(f0, f1, 9, p1, STEPS), Conv(f1, f2, 9, p2, STEPS)]  # stride-2 downsampling
    for cin, f, positions in [(f1, f0, p0), (f2, f1, p1), (None, f2, p2)]:  # forecaster
        layers += cell(cin, f, positions)
    layers += [Conv(f2, f2, 16, p2, STEPS, bias=False), Conv(f1, f1, 16, p1, STEPS, bias=False)]  # 4x4 deconvs
    return layers + [Conv(f0, 16, 9, p0, STEPS, bias=False), Conv(16, 16, 9, p0, STEPS), Conv(16, 1, 1, p0, STEPS)]


def convgru_expected():
    return totals(encoder_forecaster(convgru_cell))


def trajgru_expected():
    params, macs = totals(encoder_forecaster(trajgru_cell))
    # fvcore counts bilinear sampling as 4 FLOPs per output element: 13 warped copies of each state.
    warped = 2 * 13 * sum(f * p for f, p in zip(FILTERS, SIZES)) * STEPS
    return params, macs + 4 * warped


# HKO-7 MovingMNIST++ ConvGRU-K5 and TrajGRU-L13: no published FLOPs.
@pytest.mark.parametrize("name,expected", [("convgru", convgru_expected), ("trajgru", trajgru_expected)])
def test_mmnist_size_and_flops_equal_the_reference(name, expected):
    assert_mmnist_size_and_flops(name, expected())


@pytest.mark.parametrize("name", ["convgru", "trajgru"])
def test_encoder_forecaster_never_reads_frames_after_the_context_and_trains_on_its_forecast(name):
    model = tiny(name)
    clip = torch.rand(2, 20, 1, 64, 64)
    with torch.no_grad():
        forecast = model(clip[:, :10], 10)
        # Feeding the true future frames (teacher forcing) changes nothing: the forecaster has no frame input.
        fed = model.unroll(patchify(clip, 4), 19, torch.ones(2, 19), keep_from=9)
        assert torch.allclose(unpatchify(fed, 4, 1), forecast, atol=1e-6)
        # The reference's loss: the MSE of the 10 forecast frames, nothing on the context.
        assert model.training_loss(clip, 0).item() == pytest.approx(((forecast - clip[:, 10:]) ** 2).mean().item(),
                                                                    rel=1e-5)
    with pytest.raises(UserError, match="10 context frames"):
        model(clip[:, :8], 4)


def test_encoder_forecasters_train_with_the_reference_adam_momentum():
    model = tiny("convgru")
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    assert trainer.optimizers["model"].param_groups[0]["betas"] == (0.5, 0.999)
    lstm = create_predictor("convlstm", MMNIST, preset="moving-digits")
    assert TrainContext(lstm, lstm.config, "fp32", torch.device("cpu")).optimizers["model"].param_groups[0]["betas"] \
        == (0.9, 0.999)


def test_trajgru_warp_samples_the_state_at_position_minus_flow():
    from vpbench.predictors.trajgru import warp

    state = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    flows = torch.zeros(2, 2, 2, 5, 6)
    flows[:, 1, 0] = 1.0  # link 1: one pixel in x
    flows[:, 1, 1] = 0.5  # and half a pixel in y
    out = warp(state, flows).reshape(2, 2, 3, 5, 6)
    assert torch.allclose(out[:, 0], state)  # zero flow: the identity
    expected = torch.zeros_like(state)
    expected[..., 1:, 1:] = 0.5 * (state[..., :-1, :-1] + state[..., 1:, :-1])  # from (y - 0.5, x - 1)
    expected[..., 0, 1:] = 0.5 * state[..., 0, :-1]  # half of the sample lies above the frame: zero padding
    assert torch.allclose(out[:, 1], expected, atol=1e-4)


def test_trajgru_links_start_as_identity_warps():
    model = tiny("trajgru")
    for cell in list(model.encoder) + list(model.forecaster):
        assert cell.flows.weight.abs().sum() == 0 and cell.flows.bias.abs().sum() == 0
