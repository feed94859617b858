"""SV2P: its size against a hand count of tensor2tensor's layers (the reference is TensorFlow 1.x only: no outputs
to compare), and its parts against independent computations: the CDNA transformation, TensorFlow's "SAME" padding,
the three-phase KL schedule, the "count" scheduled sampling and the loss's KL term."""
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import vpbench.predictors.sv2p as sv2p
from vpbench.costs import count_flops
from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.spec import VideoSpec

from reference_counts import Conv

TINY = VideoSpec(1, 32, 32, 3, 2)


def layer_norms(*channels: int) -> int:
    """tf.contrib.layers.layer_norm: a beta and a gamma per channel (begin_params_axis=-1)."""
    return 2 * sum(channels)


def conv_lstm(cin: int, cout: int) -> Conv:
    """tf.contrib.rnn.ConvLSTMCell(conv_ndims=2, kernel [5, 5]): one kernel [5, 5, cin + cout, 4 cout] and biases."""
    return Conv(cin + cout, 4 * cout, 25, 0, 0)


def test_size_at_next_frame_sv2p_matches_a_hand_count_of_tensor2tensors_layers():
    """sv2p_params.py next_frame_sv2p (num_masks 10, dna_kernel_size 5, latent_channels 1, conv2d_transpose
    upsampling, 1 -> 3 frames) on 64x64 RGB, the layers of sv2p.py `bottom_part_tower` and
    `construct_predictive_tower` and common_video.py `conv_latent_tower`, counted from their arguments."""
    c, lstm = 3, (32, 32, 64, 64, 128, 64, 32)
    tower = [Conv(c, 32, 25, 0, 0),  # scale1_conv1, 5x5 / 2
             conv_lstm(32, lstm[0]), conv_lstm(lstm[0], lstm[1]),  # state1, state2
             Conv(32, 32, 9, 0, 0),  # conv2: hidden2's channels, 3x3 / 2
             conv_lstm(32, lstm[2]), conv_lstm(lstm[2], lstm[3]),  # state3, state4
             Conv(64, 64, 9, 0, 0),  # conv3
             Conv(64 + 1, 64, 1, 0, 0),  # conv4 on [enc2, latent]
             conv_lstm(64, lstm[4]),  # state5
             Conv(128, 128, 9, 0, 0), conv_lstm(128, lstm[5]),  # upsample1 (num_outputs: hidden5's channels), state6
             Conv(64 + 32, 96, 9, 0, 0), conv_lstm(96, lstm[6]),  # upsample2 on [hidden6, enc1], state7
             Conv(32 + 32, 64, 9, 0, 0),  # upsample3 on [hidden7, enc0]
             Conv(64, c, 1, 0, 0),  # convt4: the new frame
             Conv(8 * 8 * 128, 25 * 10, 1, 0, 0),  # cdna_params: dense on the flattened 8x8x128 hidden5
             Conv(64, 11, 1, 0, 0)]  # convt7: the masks
    norms = layer_norms(32, lstm[0], lstm[1], lstm[2], lstm[3], lstm[4], lstm[5], lstm[6], 64)  # layer_norm1..9
    latent = [Conv(4 * c, 32, 9, 0, 0), Conv(32, 64, 9, 0, 0), Conv(64, 64, 9, 0, 0),  # latent_conv1..3
              Conv(64, 1, 9, 0, 0), Conv(64, 1, 9, 0, 0)]  # latent_mean, latent_std
    tower_params = sum(layer.params for layer in tower) + norms
    latent_params = sum(layer.params for layer in latent) + layer_norms(32, 64, 64)
    model = create_predictor("sv2p", VideoSpec(c, 64, 64, 1, 3))
    assert count_parameters(model)[0] == tower_params == 8_311_432  # what predicts (bench profile's count)
    assert sum(p.numel() for p in model.parameters()) == tower_params + latent_params == 8_371_818
    assert latent_params == 60_386


def test_stip_sizes_and_the_4k_costs_follow_the_frames_area():
    """The docstring's figures: the CDNA dense layer grows with the area, and so does every FLOP count (72x128
    counts three times 24x128, and 2160x3840 is 900 times 72x128)."""
    for (h, w), expected in {(512, 512): 137_335_432, (1024, 1024): 530_551_432}.items():
        dense = 128 * (h // 8) * (w // 8) * 250
        assert 8_311_432 - 8192 * 250 + dense == expected
    assert 8_311_432 - 8192 * 250 + 128 * 270 * 480 * 250 == 4_153_463_432
    flops = [count_flops(create_predictor("sv2p", VideoSpec(3, h, 128, 4, 4), preset="sjtu4k"),
                         torch.rand(1, 4, 3, h, 128), 4).fvcore for h in (24, 72)]
    assert 3 * flops[0] == flops[1] and 900 * flops[1] == 25_002_838_425_600


def test_tensorflow_same_padding_puts_the_odd_pixel_after():
    # tf.nn.conv2d "SAME": out = ceil(in / stride), pad = max((out - 1) * stride + k - in, 0), before = pad // 2
    assert sv2p._same_padding(64, 5, 2) == (1, 2)
    assert sv2p._same_padding(64, 3, 2) == (0, 1)
    assert sv2p._same_padding(9, 3, 2) == (1, 1)
    assert sv2p._same_padding(16, 5, 1) == (2, 2)
    conv = sv2p.SameConv2d(1, 1, 3, 2)
    x = torch.rand(1, 1, 8, 8)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.equal(conv(x), expected)


def test_cdna_transform_correlates_each_sequences_kernels_with_each_channel():
    g = torch.Generator().manual_seed(0)
    image, kernels = torch.rand(2, 3, 6, 7, generator=g), torch.rand(2, 4, 5, 5, generator=g)
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    expected = torch.zeros(2, 4, 3, 6, 7)
    for b in range(2):
        for m in range(4):
            for dy in range(5):
                for dx in range(5):  # cross-correlation, as tf.nn.depthwise_conv2d
                    expected[b, m] += kernels[b, m, dy, dx] * padded[b, :, dy:dy + 6, dx:dx + 7]
    assert torch.allclose(sv2p.cdna_transform(image, kernels), expected, atol=1e-6)


def test_the_next_frame_is_a_mask_weighted_mix_and_the_last_cdna_kernel_is_never_used():
    """The reference zips num_masks + 1 candidates (current frame, new frame, CDNA transforms) against num_masks + 1
    masks: the last of num_masks transforms has no mask. Its kernel's dense rows change nothing."""
    model = create_predictor("sv2p", TINY, preset="tiny").eval()
    context = torch.rand(2, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    before = model(context, 2, generator=torch.Generator().manual_seed(2))
    assert 0 <= before.min() and before.max() <= 1  # a convex mix of frames in [0, 1]
    m, taps = model.config.num_masks, model.config.dna_kernel_size ** 2
    bias = model.tower.cdna_params.bias.view(taps, m)  # the dense outputs are [k, k, num_masks], kernel last
    with torch.no_grad():
        bias[:, m - 1] += torch.rand(taps)
        after = model(context, 2, generator=torch.Generator().manual_seed(2))
        bias[:, 0] += torch.rand(taps)
        changed = model(context, 2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(before, after) and not torch.allclose(before, changed)
    # common_video.cdna_transformation: dense outputs reshaped [B, k, k, 1, num_masks], relu(x - shift) + shift,
    # divided by the sum over each kernel's taps
    model.tower.relu_shift = 0.01
    hidden5 = torch.randn(2, 8, 4, 4)
    raw = model.tower.cdna_params(hidden5.flatten(1)).view(2, 5, 5, m).permute(0, 3, 1, 2)
    expected = torch.relu(raw - 0.01) + 0.01
    assert torch.allclose(model.tower.kernels(hidden5), expected / expected.sum((2, 3), keepdim=True))


def test_kl_weight_follows_the_three_phases():
    """common_video.beta_schedule: 0 before the end of phase 2; "constant" the final beta from there; "linear"
    rising from 0 to it at anneal_end, constant after."""
    spec = VideoSpec(1, 16, 16, 2, 2)
    stages = dict(num_iterations_1st_stage=10, num_iterations_2nd_stage=20, latent_loss_multiplier=0.5, anneal_end=50)
    constant = create_predictor("sv2p", spec, preset="tiny", **stages, latent_loss_multiplier_schedule="constant")
    linear = create_predictor("sv2p", spec, preset="tiny", **stages, latent_loss_multiplier_schedule="linear")
    assert [constant.beta(i) for i in (0, 29, 30, 100)] == [0.0, 0.0, 0.5, 0.5]
    assert [linear.beta(i) for i in (0, 29, 30, 40, 50, 51)] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.5]


def test_scheduled_sampling_counts_true_frames_as_tensor2tensor():
    # base.py "count": round(batch * k / (k + exp(iteration / k))), k = 900
    model = create_predictor("sv2p", TINY, preset="tiny", scheduled_sampling_k=900)
    for iteration in (0, 3000, 6122, 9000, 20_000, 10**7):
        expected = round(16 * 900 / (900 + math.exp(min(iteration / 900, 700))))
        assert model.true_frames_read(16, iteration) == expected
    assert model.true_frames_read(16, 0) == 16 and model.true_frames_read(16, 6122) == 8
    assert model.true_frames_read(16, 20_000) == 0


def test_the_phases_of_the_loss():
    """Phase 1 leaves the inference network out; phase 2 trains it on the reconstruction alone; phase 3 adds
    beta x KL(q || N(0, 1)) (summed over z, averaged over the batch) / (T - 1), as base_vae.py and base.py."""
    spec = VideoSpec(1, 16, 16, 2, 2)
    model = create_predictor("sv2p", spec, preset="tiny", num_iterations_1st_stage=10, num_iterations_2nd_stage=10,
                             latent_loss_multiplier=0.1, latent_loss_multiplier_schedule="constant")
    clip = torch.rand(3, 4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for iteration, uses_posterior in ((0, False), (10, True)):
        model.zero_grad()
        terms = model.objective(clip, iteration)
        terms["loss"].backward()
        assert torch.equal(terms["loss"], terms["mse"])  # beta is 0 in phases 1 and 2
        assert (model.latent_tower.mean.weight.grad is not None) == uses_posterior
    mean, log_var = model.latent_tower(clip)
    kl = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum() / 3
    torch.manual_seed(0)
    terms = model.objective(clip, 20)
    assert torch.allclose(terms["kl"], kl / 3)  # T - 1 = 3 steps
    assert torch.allclose(terms["loss"], terms["mse"] + 0.1 * kl / 3)


def test_samples_draw_their_own_latents_from_the_generator():
    model = create_predictor("sv2p", TINY, preset="tiny").eval()
    with torch.no_grad():  # a stronger z path, so that the draws show in the frames
        model.tower.enc3.weight[:, -1] += 3.0
    context = torch.rand(2, 3, 1, 32, 32)
    first = model(context, 2, samples=3, generator=torch.Generator().manual_seed(0))
    again = model(context, 2, samples=3, generator=torch.Generator().manual_seed(0))
    assert first.shape == (2, 3, 2, 1, 32, 32) and torch.equal(first, again)
    assert not torch.allclose(first[:, 0], first[:, 1])


def test_bad_settings_and_frames_are_one_line():
    with pytest.raises(UserError, match="divisible by 8"):
        create_predictor("sv2p", VideoSpec(1, 36, 32, 2, 2), preset="tiny")
    with pytest.raises(UserError, match="lstm_size takes 7"):
        create_predictor("sv2p", TINY, preset="tiny", lstm_size=(4, 4))
    with pytest.raises(UserError, match="anneal_end"):
        create_predictor("sv2p", TINY, preset="tiny", num_iterations_1st_stage=20, anneal_end=10)
    with pytest.raises(UserError, match="reads 5"):
        create_predictor("sv2p", TINY, preset="tiny").training_loss(torch.rand(1, 4, 1, 32, 32), 0)


def test_a_frame_whose_cdna_layer_cannot_be_held_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(sv2p, "available_bytes", lambda device: (20 * 2**30, "this machine has 20.0 GB available"))
    with pytest.raises(UserError, match=r"sv2p at 2160x3840: .*270x480x128 hidden state: 15.4 GiB of float32 "
                                        r"weights .*; this machine has 20.0 GB available$"):
        create_predictor("sv2p", VideoSpec(3, 2160, 3840, 4, 4), preset="sjtu4k")


def test_the_conv_lstm_is_tf_contribs():
    """tf.contrib.rnn.ConvLSTMCell.call: one convolution of [x, h] split into input gate, new input, forget gate and
    output gate (in that order); c' = sigmoid(f + forget_bias 1.0) c + sigmoid(i) tanh(j), h' = tanh(c') sigmoid(o)."""
    cell = sv2p.ConvLSTMCell(2, 3)
    g = torch.Generator().manual_seed(0)
    x, c, h = torch.rand(1, 2, 4, 4, generator=g), torch.rand(1, 3, 4, 4, generator=g), torch.rand(1, 3, 4, 4, generator=g)
    gates = torch.nn.functional.conv2d(torch.cat([x, h], 1), cell.conv.weight, cell.conv.bias, padding=2)
    i, j, f, o = gates[:, 0:3], gates[:, 3:6], gates[:, 6:9], gates[:, 9:12]
    c_next = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
    out, (c_out, h_out) = cell(x, (c, h))
    assert torch.allclose(c_out, c_next, atol=1e-6) and torch.allclose(out, torch.tanh(c_next) * torch.sigmoid(o))
    assert torch.equal(out, h_out)
