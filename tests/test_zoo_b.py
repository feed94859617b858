"""ConvGRU, TrajGRU, E3D-LSTM and SimVP: sizes equal to the reference models, training, long rollouts, and
the behaviours their references define (open-loop forecaster, learned warps, eidetic attention, chunked rollout)."""
from dataclasses import dataclass

import pytest
import torch

from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.recurrent import patchify, unpatchify
from vpbench.spec import VideoSpec
from vpbench.training import TrainContext

from conftest import assert_learns_and_rolls_out

MMNIST = VideoSpec(1, 64, 64, 10, 10)


@dataclass
class Conv:
    """One convolution of a reference model: taps = kernel volume; positions where it is evaluated (input
    positions for a transposed convolution, as fvcore counts them); uses = applications in a 10 -> 10 rollout."""

    cin: int
    cout: int
    taps: int
    positions: int
    uses: int
    bias: bool = True
    groups: int = 1

    @property
    def params(self) -> int:
        return self.cin // self.groups * self.cout * self.taps + (self.cout if self.bias else 0)

    @property
    def macs(self) -> int:
        return self.cin // self.groups * self.cout * self.taps * self.positions * self.uses


def totals(layers: list[Conv]) -> tuple[int, int]:
    return sum(c.params for c in layers), sum(c.macs for c in layers)


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


# --- OpenSTL's E3D-LSTM at mmnist: 4 cells x 128 on 4x4 patches (16 channels, 16x16), kernel (2, 5, 5) valid in
# time (one output slice per 2-frame window), 19 steps; eidetic attention over 2 x 256 query positions against the
# (t + 1) stored windows of 512 positions at step t; LayerNorm over [128, 2, 16, 16] (5 FLOPs per element).
def e3d_expected():
    h, grid, steps = 128, 16 * 16, 19
    layers, norm = [], 0
    for cin in (16, h, h, h):
        layers += [Conv(cin, 7 * h, 50, grid, steps, bias=False), Conv(h, 4 * h, 50, grid, steps, bias=False),
                   Conv(h, 4 * h, 50, grid, steps, bias=False), Conv(h, h, 50, grid, steps, bias=False),
                   Conv(h, h, 50, grid, steps, bias=False), Conv(2 * h, h, 1, 2 * grid, steps, bias=False)]
        norm += 2 * h * 2 * grid  # the cell-state LayerNorm's weight and bias
    # The (2, 1, 1) read-out runs at every step, but the 9 context-step outputs are never used by an inference
    # rollout, so the trace drops them (OpenSTL's forward returns them: 9 x 1,048,576 more MACs).
    layers.append(Conv(h, 16, 2, grid, 10, bias=False))
    params, macs = totals(layers)
    attention = 4 * sum(2 * (2 * grid) * (2 * grid * (t + 1)) * h for t in range(steps))
    return params + norm, macs + attention + 4 * steps * 5 * h * 2 * grid


# --- OpenSTL's SimVP at mmnist (hid_S 64, hid_T 512, N_S 4, N_T 8): per-frame ConvSC encoder/decoder with
# GroupNorm(2) (5 FLOPs per element), translator on [1, 640, 16, 16].
def simvp_codec():
    frames, s0, s1, s2 = 10, 64 * 64, 32 * 32, 16 * 16
    layers = [Conv(1, 64, 9, s0, frames), Conv(64, 64, 9, s1, frames), Conv(64, 64, 9, s1, frames),
              Conv(64, 64, 9, s2, frames),  # encoder: stride 1, 2, 1, 2
              Conv(64, 256, 9, s2, frames), Conv(64, 64, 9, s1, frames), Conv(64, 256, 9, s1, frames),
              Conv(64, 64, 9, s0, frames),  # decoder: x4 channels + PixelShuffle, plain, x4 + shuffle, plain
              Conv(64, 1, 1, s0, frames)]  # readout
    norm_elements = 64 * frames * (s0 + s1 + s1 + s2 + s1 + s1 + s0 + s0)
    return layers, 8 * 2 * 64, norm_elements  # 8 GroupNorms of 64 channels: weight and bias each


def simvp_expected():
    layers, norm_params, norm_elements = simvp_codec()
    grid, c, hid = 16 * 16, 640, 512
    widths = [(c, hid)] + [(hid, hid)] * 7 + [(hid, hid)] + [(2 * hid, hid)] * 6 + [(2 * hid, c)]
    for cin, cout in widths:  # Inception blocks: 1x1 to 256, then grouped 3/5/7/11 (8 groups) + GroupNorm(8)
        layers.append(Conv(cin, hid // 2, 1, grid, 1))
        layers += [Conv(hid // 2, cout, k * k, grid, 1, groups=8) for k in (3, 5, 7, 11)]
        norm_params += 4 * 2 * cout
        norm_elements += 4 * cout * grid
    params, macs = totals(layers)
    return params + norm_params, macs + 5 * norm_elements


def simvp_gsta_expected():
    layers, norm_params, norm_elements = simvp_codec()
    grid, c, hid, mlp = 16 * 16, 640, 512, 8
    extra_params, batch_norm = 0, 0
    for dim, out in [(c, hid)] + [(hid, hid)] * 6 + [(hid, c)]:
        layers += [Conv(dim, dim, 1, grid, 1), Conv(dim, dim, 25, grid, 1, groups=dim),
                   Conv(dim, dim, 49, grid, 1, groups=dim), Conv(dim, 2 * dim, 1, grid, 1), Conv(dim, dim, 1, grid, 1),
                   Conv(dim, mlp * dim, 1, grid, 1), Conv(mlp * dim, mlp * dim, 9, grid, 1, groups=mlp * dim),
                   Conv(mlp * dim, dim, 1, grid, 1)]
        if out != dim:
            layers.append(Conv(dim, out, 1, grid, 1))
        extra_params += 2 * 2 * dim + 2 * dim  # two BatchNorms, two layer scales
        batch_norm += 2 * 2 * dim * grid  # eval BatchNorm with affine: 2 FLOPs per element
    params, macs = totals(layers)
    return params + norm_params + extra_params, macs + 5 * norm_elements + batch_norm


@pytest.mark.parametrize("name,overrides,expected,table", [
    ("convgru", {}, convgru_expected, None),  # HKO-7 MovingMNIST++ ConvGRU-K5: no published FLOPs
    ("trajgru", {}, trajgru_expected, None),  # HKO-7 MovingMNIST++ TrajGRU-L13
    # OpenSTL's table says 51.0M, but its code (E3DLSTM_Model, run on the side) has the 51,347,456 derived here.
    ("e3d-lstm", {}, e3d_expected, (None, 298.9)),
    ("simvp", {}, simvp_expected, (58.0, 19.4)),  # OpenSTL's SimVP+IncepU row
    ("simvp", {"translator": "gsta"}, simvp_gsta_expected, (46.8, 16.5)),  # OpenSTL's SimVP+gSTA-S row
])
def test_mmnist_size_and_flops_equal_the_reference(name, overrides, expected, table):
    from fvcore.nn import FlopCountAnalysis

    torch.set_num_threads(1)
    params, flops = expected()
    model = create_predictor(name, MMNIST, preset="mmnist", **overrides).eval()
    assert count_parameters(model)[0] == params
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, (torch.rand(1, 10, 1, 64, 64), 10))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        assert analysis.total() == flops
    if table is not None:
        table_params, table_gflops = table
        assert round(flops / 1e9, 1) == table_gflops
        # The table's 58.0M is 57,946,113 rounded twice (57.95, then 58.0).
        assert table_params is None or abs(params / 1e6 - table_params) < 0.06


EF_TINY = dict(patch_size=4, num_filters=(8, 8, 8), first_conv=(8, 3, 1, 1), last_deconv=(8, 3, 1, 1), lr=3e-3,
               grad_clip=0.0)
TINY = {
    "convgru": EF_TINY,
    "trajgru": dict(EF_TINY, links=(2, 2, 2), flow_filters=8),
    "e3d-lstm": dict(num_layers=2, num_hidden=8, sampling_stop_iter=15),
    "simvp": dict(hid_S=8, hid_T=32, N_S=2, N_T=2),
}


def tiny(name, **overrides):
    torch.manual_seed(0)
    settings = {"batch_size": 4, "max_iterations": 30, "lr": 5e-3, "lr_schedule": "constant", **TINY[name], **overrides}
    return create_predictor(name, MMNIST, preset="moving-digits", **settings)


@pytest.mark.parametrize("name", ["convgru", "trajgru", "e3d-lstm", "simvp"])
def test_loss_falls_on_moving_digits_and_rollouts_run_three_times_the_horizon(name):
    # The encoder-forecasters' loss is the forecast alone (no context reconstructions): it falls slowest.
    assert_learns_and_rolls_out(tiny(name), batch_size=2, iterations=20, ratio=0.9)


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


def test_eidetic_attention_is_over_positions_with_channel_features():
    from vpbench.predictors.e3d_lstm import eidetic_attention

    vector = torch.randn(1, 16, 1, 1, 1)
    history = vector.expand(1, 16, 6, 4, 4)  # the same channel vector at every stored position
    out = eidetic_attention(torch.randn(1, 16, 2, 4, 4), history)
    assert torch.allclose(out, vector.expand_as(out), atol=1e-5)  # any convex mix of it is itself
    query = torch.zeros(1, 16, 2, 4, 4)
    history = torch.randn(1, 16, 3, 4, 4)
    mean = history.flatten(2).mean(dim=2)  # zero query: uniform weights over the 48 positions
    assert torch.allclose(eidetic_attention(query, history), mean.view(1, 16, 1, 1, 1).expand_as(query), atol=1e-5)


def test_e3d_updates_its_global_memory_and_bounds_the_history_on_request():
    clip = torch.rand(1, 20, 1, 64, 64)
    truth = patchify(clip, 8)
    model = tiny("e3d-lstm").eval()
    with torch.no_grad():
        _, (_, _, _, histories, memory) = model.rollout(truth, 25, torch.ones(1, 25))
    # Memory flows (the references return the memory they were given, which stays zero).
    assert memory.abs().sum() > 0
    assert [len(h) for h in histories] == [25, 25]  # every earlier cell state, the zero initial one included
    bounded = tiny("e3d-lstm", history_window=3).eval()
    bounded.load_state_dict(model.state_dict())
    with torch.no_grad():
        _, state = bounded.rollout(truth, 25, torch.ones(1, 25))
        assert [len(h) for h in state[3]] == [3, 3]
        # Until the history outgrows the window both are the same model.
        assert torch.allclose(bounded(clip[:, :2], 1), model(clip[:, :2], 1), atol=1e-6)


def test_e3d_trains_on_mse_plus_l1():
    clip = torch.rand(2, 20, 1, 64, 64)
    model = tiny("e3d-lstm", sampling_stop_iter=1)
    with_l1 = model.training_loss(clip, 10)
    plain = tiny("e3d-lstm", sampling_stop_iter=1, l1_weight=0.0)
    plain.load_state_dict(model.state_dict())
    without = plain.training_loss(clip, 10)
    truth = patchify(clip, 8)
    with torch.no_grad():  # sampling has ended: the 9 context reconstructions, then the closed-loop forecast
        prediction = torch.cat([model.unroll(truth, 9, torch.ones(2, 9)), patchify(model(clip[:, :10], 10), 8)], 1)
    target = truth[:, 1:]
    assert without.item() == pytest.approx(((prediction - target) ** 2).mean().item(), rel=1e-4)
    assert (with_l1 - without).item() == pytest.approx((prediction - target).abs().mean().item(), rel=1e-4)


def test_simvp_rolls_out_in_chunks_of_the_context_length():
    model = tiny("simvp").eval()
    context = torch.rand(2, 10, 1, 64, 64)
    with torch.no_grad():
        out = model(context, 25)
        first = model.predict_chunk(context)
        second = model.predict_chunk(first)
        third = model.predict_chunk(second)
        assert torch.allclose(out, torch.cat([first, second, third[:, :5]], 1), atol=1e-6)
        assert torch.allclose(model(context, 4), first[:, :4], atol=1e-6)
    with pytest.raises(UserError, match="N_S must be an even"):
        create_predictor("simvp", MMNIST, N_S=3)
