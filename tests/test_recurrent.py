"""The shared recurrent base and ConvLSTM on it."""
import numpy as np
import pytest
import torch

from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.layers import patchify, unpatchify
from vpbench.spec import VideoSpec


def reference_reshape_patch(frames: np.ndarray, p: int) -> np.ndarray:
    """The reference implementations' layout: (T, H, W, C) -> (T, H/p, W/p, p*p*C)."""
    t, h, w, c = frames.shape
    x = frames.reshape(t, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(t, h // p, w // p, p * p * c)


@pytest.mark.parametrize("channels,patch", [(1, 4), (3, 2), (3, 8)])
def test_patching_matches_the_reference_layout_and_inverts(channels, patch):
    frames = torch.rand(2, 3, channels, 16, 24)
    ours = patchify(frames, patch)
    for b in range(2):
        ref = reference_reshape_patch(frames[b].permute(0, 2, 3, 1).numpy(), patch)
        np.testing.assert_array_equal(ours[b].permute(0, 2, 3, 1).numpy(), ref)
    assert torch.equal(unpatchify(ours, patch, channels), frames)


def tiny_convlstm(spec=VideoSpec(1, 16, 16, 4, 4), **overrides):
    torch.manual_seed(0)
    return create_predictor("convlstm", spec, num_layers=2, num_hidden=8, filter_size=3, patch_size=4, **overrides)


def test_rollout_prefix_does_not_depend_on_the_horizon():
    model = tiny_convlstm()
    context = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(context, 3), model(context, 9)[:, :3], atol=1e-6)


def test_scheduled_sampling_feeds_truth_at_context_and_decays_to_zero():
    model = tiny_convlstm(sampling_stop_iter=100)
    mask = model.sampling_mask(0, 5, 8, torch.device("cpu"))
    assert mask.shape == (5, 7) and mask.eq(1).all()  # eta = 1 at the start
    late = model.sampling_mask(100, 5, 8, torch.device("cpu"))
    assert late[:, :4].eq(1).all() and late[:, 4:].eq(0).all()
    assert model.sampling_probability(50) == pytest.approx(0.5)


def test_training_with_eta_zero_is_the_closed_loop_rollout():
    model = tiny_convlstm(sampling_stop_iter=1)
    clip = torch.rand(3, 8, 1, 16, 16)
    loss = model.training_loss(clip, iteration=10)
    with torch.no_grad():
        closed = model(clip[:, :4], 4)
    recon = unpatchify(model.unroll(patchify(clip, 4), 7, torch.ones(3, 7))[:, :3], 4, 1)
    expected = torch.cat([recon, closed], 1)
    assert loss.item() == pytest.approx(torch.mean((expected - clip[:, 1:]) ** 2).item(), rel=1e-5)


def test_mmnist_preset_size_matches_the_reference_model():
    model = create_predictor("convlstm", VideoSpec(1, 64, 64, 10, 10), preset="mmnist")
    # 4 layers: conv_x (16->512 then 128->512) and conv_h (128->512), 5x5, no bias; 1x1 head 128->16.
    expected = 16 * 512 * 25 + 128 * 512 * 25 + 3 * 2 * 128 * 512 * 25 + 128 * 16
    assert count_parameters(model) == (expected, expected) == (11_675_648, 11_675_648)


def test_patch_must_divide_the_frame():
    with pytest.raises(UserError, match="patch_size 5 does not divide"):
        create_predictor("convlstm", VideoSpec(1, 16, 16, 4, 4), patch_size=5)


@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_convlstm_first_step_skips_the_zero_state_with_the_same_result(layer_norm, grad):
    """The first step takes no state (None) and skips the hidden-state convolution: it must give what the
    full gate sum gives on an all-zero state, values and gradients."""
    model = tiny_convlstm(layer_norm=layer_norm)
    for p in model.parameters():
        torch.nn.init.normal_(p)  # LayerNorm shifts away from their zero init
    cell = model.cell_list[0]
    x = torch.rand(2, 16, 4, 4)
    zeros = torch.zeros(2, 8, 4, 4)

    def run(h, c):
        cell.zero_grad()
        with torch.set_grad_enabled(grad):
            out_h, out_c = cell(x, h, c)
            if grad:
                (out_h.sum() + 2 * out_c.sum()).backward()
        return out_h, out_c, {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                              for n, p in cell.named_parameters()}

    h_full, c_full, grads_full = run(zeros, zeros)
    h_first, c_first, grads_first = run(None, None)
    torch.testing.assert_close(h_first, h_full, rtol=0, atol=1e-6)
    torch.testing.assert_close(c_first, c_full, rtol=0, atol=1e-6)
    for name in grads_full:
        torch.testing.assert_close(grads_first[name], grads_full[name], rtol=0, atol=1e-5)
