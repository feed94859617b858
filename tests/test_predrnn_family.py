"""The PredRNN family (PredRNN, PredRNN-V2, PredRNN++, MIM, MotionRNN): sizes equal to the reference models
or hand counts, V2's reverse scheduled sampling and decoupling loss, MotionRNN's warp."""
import pytest
import torch
import torch.nn.functional as F

from vpbench.costs import count_flops
from vpbench.errors import UserError
from vpbench.layers import patchify
from vpbench.predictor import count_parameters, create_predictor

from conftest import MMNIST, tiny
from reference_counts import Conv, totals, traced_flops

torch.set_num_threads(1)

H, F_IN, K = 128, 16, 25  # hidden, patch channels (4x4x1), 5x5 taps


def conv(cin, cout, taps=K):
    return cin * cout * taps


ST_LSTM_REST = conv(H, 4 * H) + conv(H, 3 * H) + conv(2 * H, H) + conv(2 * H, H, 1)  # h, m, o, 1x1 last
PREDRNN = conv(F_IN, 7 * H) + 3 * conv(H, 7 * H) + 4 * ST_LSTM_REST + conv(H, F_IN, 1)
CAUSAL_REST = conv(H, 4 * H) + conv(H, 3 * H) + conv(H, 3 * H) + conv(H, 4 * H) + conv(H, H) + conv(2 * H, H, 1)
GHU = 2 * conv(H, 2 * H)
MEMORY_CELL_CONVS = 2 * conv(H, 4 * H)  # MIM-N / MIM-S: hidden and input convolutions
MEMORY_CELL = MEMORY_CELL_CONVS + 3 * H * 16 * 16  # plus per-position weights for (i, f) and o
MIM_BLOCK_CONVS = conv(H, 3 * H) + 2 * conv(H, 4 * H) + conv(2 * H, H, 1)
MIM_ST_LSTM = conv(F_IN, 7 * H) + ST_LSTM_REST
MIM = MIM_ST_LSTM + 3 * (MIM_BLOCK_CONVS + MEMORY_CELL) + 3 * MEMORY_CELL + conv(H, F_IN, 1)
PREDRNN_PP = conv(F_IN, 7 * H) + 3 * conv(H, 7 * H) + 4 * CAUSAL_REST + GHU + conv(H, F_IN, 1)
# Every parameter is a bias-free conv weight applied at each of the 16x16 positions in each of 19 steps,
# except the 1x1 head on the 9 context steps: their reconstructions are not returned by an inference
# forward, so the traced graph drops them (the references return them and count 9 x 2048 x 256 more MACs).
STEPS, POSITIONS, HEAD = 19, 16 * 16, conv(H, F_IN, 1)


@pytest.mark.parametrize("name,params,openstl", [
    ("predrnn", PREDRNN, "23.8M, 116.0G"),
    ("predrnn-v2", PREDRNN + conv(H, H, 1), "23.9M, 116.6G (its count includes the training-only adapter)"),
    ("predrnn++", PREDRNN_PP, "38.6M incl. 3.28M unused conv_o weights, 171.7G"),
    ("mim", MIM, "38.0M incl. 98K unused MIMN conv_last weights, 179.2G"),
])
def test_mmnist_size_and_flops_equal_the_reference(name, params, openstl):
    model = create_predictor(name, MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == params
    flops = traced_flops(model)
    if name == "mim":  # per-position weights are elementwise (not counted); MIM-N runs from the second step
        expected = (STEPS * (MIM_ST_LSTM + 3 * (MIM_BLOCK_CONVS + MEMORY_CELL_CONVS))
                     + (STEPS - 1) * 3 * MEMORY_CELL_CONVS + 10 * HEAD) * POSITIONS
        assert flops == expected == 179_175_948_288 and params + 3 * conv(2 * H, H, 1) == 38_043_648, openstl
        return
    adapter = conv(H, H, 1) if name == "predrnn-v2" else 0  # only used by the training loss
    assert flops == ((params - adapter) * STEPS - HEAD * 9) * POSITIONS, openstl
    assert (23.8e6 <= params <= 23.9e6) if name != "predrnn++" else params + 4 * conv(2 * H, H) == 38_584_320


# --- MotionRNN at mmnist (thuml's MotionRNN_PredRNN with the OpenSTL-style config): 4 ST-LSTMs x 128 on 4x4 patches
# (16 channels, 16x16 grid); after each of the first three a MotionGRU at 8x8 on 32 channels with 2 x 3 x 3 = 18
# motion channels. count_flops keeps the context steps' outputs, so every convolution runs in all 19 steps.
def motionrnn_expected():
    h, f, grid, half, steps, motion = 128, 16, 16 * 16, 8 * 8, 19, 18
    layers = [Conv(f, h, 1, grid, steps, bias=False),  # conv_first_v: the first layer's motion highway
              Conv(h, f, 1, grid, steps, bias=False)]  # the 1x1 head
    for cin in (f, h, h, h):  # ST-LSTM: x, h, m, o convolutions and the 1x1 conv_last, all without bias
        layers += [Conv(cin, 7 * h, 25, grid, steps, bias=False), Conv(h, 4 * h, 25, grid, steps, bias=False),
                   Conv(h, 3 * h, 25, grid, steps, bias=False), Conv(2 * h, h, 25, grid, steps, bias=False),
                   Conv(2 * h, h, 1, grid, steps, bias=False)]
    for _ in range(3):
        layers += [Conv(h, h // 4, 25, half, steps),  # stride-2 5x5 encoder (counted at its output positions)
                   *[Conv(h // 4 + motion, motion, 9, half, steps) for _ in range(3)],  # update, reset, candidate
                   Conv(h // 4, 9, 9, half, steps),  # warp gate
                   Conv(h // 4, h // 4, 9, half, steps, bias=False),  # the deformable 3x3 kernel
                   Conv(h // 4, h, 16, half, steps),  # 4x4 stride-2 transposed decoder (at its input positions)
                   Conv(2 * h, h, 25, grid, steps)]  # the gate between warped and original hidden state
    return totals(layers)


def test_motionrnn_mmnist_size_and_flops_equal_a_hand_count():
    params, flops = motionrnn_expected()
    model = create_predictor("motionrnn", MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == params == 26_911_553  # PredRNN's 23,838,720 + 3,072,833
    counted = count_flops(model, torch.rand(1, 10, 1, 64, 64), 10)
    # No published figure to compare with: OpenSTL has no MotionRNN row and thuml's README gives none.
    assert counted.fvcore == counted.torch == flops == 128_659_614_464


def test_predrnn_v2_reverse_sampling_schedule():
    model = tiny("predrnn-v2", r_sampling_step_1=100, r_sampling_step_2=200, r_exp_alpha=10)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    early = model.sampling_mask(0, 4000, 20, cpu)
    assert early[:, 0].eq(1).all()
    assert early[:, 1:10].mean().item() == pytest.approx(0.5, abs=0.02)   # context: r_eta = 0.5
    assert early[:, 10:].mean().item() == pytest.approx(0.5, abs=0.02)    # future: eta = 0.5
    middle = model.sampling_mask(150, 4000, 20, cpu)
    assert middle[:, 1:10].mean().item() == pytest.approx(1 - 0.5 * torch.exp(torch.tensor(-5.0)).item(), abs=0.02)
    assert middle[:, 10:].mean().item() == pytest.approx(0.25, abs=0.02)
    late = model.sampling_mask(200, 8, 20, cpu)
    assert late[:, :10].eq(1).all() and late[:, 10:].eq(0).all()


def test_predrnn_v2_adds_the_decoupling_term_only_in_training():
    model = tiny("predrnn-v2", decouple_beta=1.0)
    clip = torch.rand(2, 20, 1, 64, 64)
    with_term = model.training_loss(clip, 10_000)
    torch.manual_seed(1)
    plain = tiny("predrnn-v2", decouple_beta=0.0)
    plain.load_state_dict(model.state_dict())
    without = plain.training_loss(clip, 10_000)
    assert 0 < (with_term - without).item() <= 1.0  # a mean |cosine|
    # What a rollout's state records: a decoupling term per layer and step in training, none in evaluation (no
    # adapter FLOPs at inference).
    truth, feed = patchify(clip[:, :10], model.config.patch_size), torch.ones(2, 10)
    _, trained = model.train().rollout(truth, 19, feed)
    assert len(trained["decouple"]) == 19 * model.config.num_layers
    with torch.no_grad():
        _, evaluated = model.eval().rollout(truth, 19, feed)
    assert evaluated["decouple"] == []


def test_motionrnn_warp_equals_a_deformable_convolution_on_the_enlarged_map():
    from vpbench.predictors.motionrnn import Warp

    torch.manual_seed(0)
    warp = Warp(4, 3)
    torch.nn.init.normal_(warp.warp_gate.weight, std=0.3)
    x, motion = torch.randn(2, 4, 6, 7), 2.5 * torch.randn(2, 18, 6, 7)
    # The reference's formulation: each position's 3x3 neighbours, displaced by their offsets (rows first, then
    # columns), sampled bilinearly with zeros outside, laid out as a 3x-enlarged map, then a stride-3 3x3 conv.
    rows = torch.arange(6.0).view(1, 1, 6, 1) + torch.tensor([-1.0, 0, 1]).repeat_interleave(3).view(1, 9, 1, 1)
    cols = torch.arange(7.0).view(1, 1, 1, 7) + torch.tensor([-1.0, 0, 1]).repeat(3).view(1, 9, 1, 1)
    rows, cols = rows + motion[:, :9], cols + motion[:, 9:]
    grid = torch.stack([2 * cols / 6 - 1, 2 * rows / 5 - 1], dim=-1)  # [B, 9, 6, 7, (x, y)], align_corners
    samples = F.grid_sample(x, grid.flatten(1, 2), align_corners=True, padding_mode="zeros").view(2, 4, 9, 6, 7)
    samples = samples * torch.sigmoid(warp.warp_gate(x)).unsqueeze(1)
    enlarged = samples.view(2, 4, 3, 3, 6, 7).permute(0, 1, 4, 2, 5, 3).reshape(2, 4, 18, 21)
    with torch.no_grad():
        assert torch.allclose(warp(x, motion), warp.conv(enlarged), atol=1e-5)


def test_motionrnn_starts_from_zero_states_and_is_deterministic():
    model = tiny("motionrnn").eval()
    context = torch.rand(1, 10, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(context, 3), model(context, 3))
    with pytest.raises(UserError, match="multiple of 4"):
        tiny("motionrnn", num_hidden=6)
