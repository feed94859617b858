"""E3D-LSTM: size equal to OpenSTL's model, and the behaviours the reference defines (eidetic attention over
positions, a global memory, the MSE + L1 objective)."""
import pytest
import torch

from vpbench.layers import patchify

from conftest import tiny
from reference_counts import Conv, assert_mmnist_size_and_flops, totals

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


def test_mmnist_size_and_flops_equal_the_reference():
    # OpenSTL's table says 51.0M, but its code (E3DLSTM_Model, run on the side) has the 51,347,456 derived here.
    assert_mmnist_size_and_flops("e3d-lstm", e3d_expected(), table=(None, 298.9))


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
    model = tiny("e3d-lstm", sampling_stop_iter=1, l1_weight=1.0)  # the reference's weight (the tiny preset's is 0.1)
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
