"""The PredRNN family and MIM: sizes equal to the reference models, training, long rollouts, V2's extras."""
import pytest
import torch

from vpbench.predictor import count_parameters, create_predictor
from vpbench.spec import VideoSpec

from conftest import assert_learns_and_rolls_out

MMNIST = VideoSpec(1, 64, 64, 10, 10)
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
    from fvcore.nn import FlopCountAnalysis

    model = create_predictor(name, MMNIST, preset="mmnist").eval()
    assert count_parameters(model)[0] == params
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, (torch.rand(1, 10, 1, 64, 64), 10))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        flops = analysis.total()
    if name == "mim":  # per-position weights are elementwise (not counted); MIM-N runs from the second step
        expected = (STEPS * (MIM_ST_LSTM + 3 * (MIM_BLOCK_CONVS + MEMORY_CELL_CONVS))
                     + (STEPS - 1) * 3 * MEMORY_CELL_CONVS + 10 * HEAD) * POSITIONS
        assert flops == expected == 179_175_948_288 and params + 3 * conv(2 * H, H, 1) == 38_043_648, openstl
        return
    adapter = conv(H, H, 1) if name == "predrnn-v2" else 0  # only used by the training loss
    assert flops == ((params - adapter) * STEPS - HEAD * 9) * POSITIONS, openstl
    assert (23.8e6 <= params <= 23.9e6) if name != "predrnn++" else params + 4 * conv(2 * H, H) == 38_584_320


def tiny(name, **overrides):
    torch.manual_seed(0)
    spec = VideoSpec(1, 64, 64, 10, 10)
    return create_predictor(name, spec, preset="moving-digits", num_layers=2, num_hidden=8, batch_size=4,
                            max_iterations=30, sampling_stop_iter=15, lr=5e-3, lr_schedule="constant", **overrides)


@pytest.mark.parametrize("name", ["predrnn", "predrnn-v2", "predrnn++", "mim"])
def test_loss_falls_on_moving_digits_and_rollouts_run_three_times_the_horizon(name):
    assert_learns_and_rolls_out(tiny(name), batch_size=4, iterations=30, ratio=0.85)


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
    model.eval()
    with torch.no_grad():
        model(clip[:, :10], 10)
    assert model.auxiliary_loss  # eval forward gathers no decoupling terms (no adapter FLOPs at inference)
