"""Retrospective Cycle GAN: the generator and the sequence discriminator compute what the reference's TensorFlow
models compute (tests/fixtures/references/make_retro_cyclegan.py), sizes equal to the reference's at its
configuration, the retrospective cycle and its losses, multi-frame prediction by feeding predictions back."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.predictors.retro_cyclegan import Generator, SequenceDiscriminator, log_kernel
from vpbench.spec import VideoSpec
from vpbench.training import TrainContext

from conftest import tiny
from reference_counts import Conv, totals

torch.set_num_threads(1)

FIXTURE = Path(__file__).parent / "fixtures" / "references" / "retro-cyclegan.npz"
STIP_SPEC = VideoSpec(3, 64, 64, 4, 6)


def _norm(channels: int) -> int:
    return 2 * channels  # InstanceNormalization: a gain and an offset per channel


# --- size at the reference's configuration (va26 model.py: RGB, width 128, 9 residual blocks, discriminators 64) ---
def test_size_equals_the_reference_count():
    # Each layer of va26's model.py as it builds it; TensorFlow's count_params() of its generator(3),
    # discriminator(target=False) and discriminator_seq(target=False) printed 11,920,131 / 2,765,569 / 11,032,321.
    generator = [Conv(3, 128, 7 * 7 * 4, 0, 0, bias=False), Conv(128, 128, 3 * 3 * 2, 0, 0, bias=False),
                 Conv(128, 256, 9, 0, 0, bias=False)]
    generator += [Conv(256, 256, 9, 0, 0, bias=False) for _ in range(2 * 9)]
    generator += [Conv(256, 128, 9, 0, 0, bias=False), Conv(128, 256, 9, 0, 0, bias=False), Conv(256, 3, 49, 0, 0)]
    generator_norms = _norm(128) + _norm(256) + 9 * 2 * _norm(256) + _norm(128) + _norm(256)
    frame = [Conv(3, 64, 16, 0, 0, bias=False), Conv(64, 128, 16, 0, 0, bias=False),
             Conv(128, 256, 16, 0, 0, bias=False), Conv(256, 512, 16, 0, 0, bias=False), Conv(512, 1, 16, 0, 0)]
    sequence = [Conv(3, 64, 64, 0, 0, bias=False), Conv(64, 128, 64, 0, 0, bias=False),
                Conv(128, 256, 64, 0, 0, bias=False), Conv(256, 512, 64, 0, 0, bias=False), Conv(512, 1, 16, 0, 0)]
    d_norms = _norm(128) + _norm(256) + _norm(512)
    expected = (totals(generator)[0] + generator_norms, totals(frame)[0] + d_norms, totals(sequence)[0] + d_norms)
    assert expected == (11_920_131, 2_765_569, 11_032_321)

    model = create_predictor("retro-cyclegan", STIP_SPEC, preset="ucf-sports")
    size = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert (size(model.generator), size(model.frame_discriminator), size(model.sequence_discriminator)) == expected
    assert count_parameters(model)[0] == expected[0]  # the discriminators do not predict


# --- outputs equal to the reference's TensorFlow models -----------------------------------------------------------
def _load(module: torch.nn.Module, arrays: list[np.ndarray]) -> None:
    """The reference's weights, in its order (kernel, then each norm's gain and offset; the last layer's bias),
    into `module`'s parameters, which follow the same order. A TensorFlow Conv3D kernel [h, w, t, in, out]
    (Conv3DTranspose: [h, w, t, out, in]) becomes torch's [out, in, t, h, w] ([in, out, t, h, w]) by one
    permutation, its time axis dropped where vpbench's layer is 2D."""
    params = list(module.parameters())
    assert len(params) == len(arrays)
    with torch.no_grad():
        for param, array in zip(params, arrays):
            value = torch.from_numpy(array)
            if value.dim() == 5:
                value = value.permute(4, 3, 2, 0, 1)
                value = value if param.dim() == 5 else value.squeeze(2)
            param.copy_(value)


def _weights(data, name: str) -> list[np.ndarray]:
    return [data[f"{name}_weight_{i}"] for i in range(sum(k.startswith(f"{name}_weight_") for k in data.files))]


def test_generator_predicts_what_the_reference_predicts():
    data = np.load(FIXTURE)
    generator = Generator(3, width=8, blocks=9).eval()
    _load(generator, _weights(data, "generator"))
    frames = torch.from_numpy(data["generator_input"]).permute(0, 3, 4, 1, 2)  # [B, H, W, T, C] -> [B, T, C, H, W]
    expected = torch.from_numpy(data["generator_output"])[:, :, :, 0].permute(0, 3, 1, 2)
    with torch.no_grad():
        out = generator(frames)
    assert out.shape == expected.shape == (2, 3, 32, 48)
    assert expected.abs().max() < 0.999 and expected.std() > 0.1  # tanh not saturated: the values say something
    assert (out - expected).abs().max() <= 1e-5  # measured: 3.4e-6


def test_sequence_discriminator_scores_what_the_reference_scores():
    data = np.load(FIXTURE)
    net = SequenceDiscriminator(3, width=4, layers=3).eval()
    _load(net, _weights(data, "sequence"))
    window = torch.from_numpy(data["sequence_input"]).permute(0, 3, 4, 1, 2)
    expected = torch.from_numpy(data["sequence_output"]).permute(0, 4, 3, 1, 2)  # -> [B, 1, T, H, W]
    with torch.no_grad():
        out = net(window)
    # The reference's last convolution is 'valid', vpbench's 'same' (pads 1 before, 2 after): its interior.
    assert (out[..., 1:-2, 1:-2] - expected).abs().max() <= 1e-5  # measured: 2.7e-7


# --- the retrospective cycle, its losses, the rollout ---------------------------------------------------------------
class _Sum(torch.nn.Module):
    """A stand-in generator whose output says which frames it read, in which order: sum_i (i + 1) x_i."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        weights = torch.arange(1, frames.shape[1] + 1, dtype=frames.dtype).view(1, -1, 1, 1, 1)
        return (frames * weights).sum(1)


def test_the_cycle_predicts_both_ways_and_from_its_own_predictions():
    model = tiny("retro-cyclegan", VideoSpec(1, 16, 16, 4, 4))
    model.generator = _Sum()
    window = torch.rand(2, 5, 1, 16, 16)
    x = [window[:, i] for i in range(5)]
    fakes, pairs = model._cycle(window)
    combine = lambda frames: sum((i + 1) * f for i, f in enumerate(frames))  # noqa: E731
    n1, m1 = combine(x[:4]), combine([x[4], x[3], x[2], x[1]])  # x'_n from x1..x4, x'_m from x5..x2
    n2, m2 = combine([m1, x[1], x[2], x[3]]), combine([n1, x[3], x[2], x[1]])  # each from the other's prediction
    for key, expected in (("n1", n1), ("m1", m1), ("n2", n2), ("m2", m2)):
        torch.testing.assert_close(fakes[key], expected)
    expected_pairs = [(x[4], n1), (x[4], n2), (n1, n2), (x[0], m1), (x[0], m2), (m1, m2)]
    for (a, b), (c, d) in zip(pairs, expected_pairs, strict=True):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, d)
    real, fake = model._sequences(window, fakes)
    torch.testing.assert_close(real[1], window.flip(1))
    torch.testing.assert_close(fake[0][:, 4], n1)
    torch.testing.assert_close(fake[3][:, :4], window.flip(1)[:, :4])
    torch.testing.assert_close(fake[3][:, 4], m2)


def test_rollout_feeds_each_prediction_into_the_window():
    model = tiny("retro-cyclegan", VideoSpec(1, 16, 16, 6, 3))
    model.generator = _Sum()
    context = torch.rand(1, 6, 1, 16, 16) * 0.01
    out = model(context, 3) * 2 - 1
    w = [f for f in (context[0, 2:] * 2 - 1)]  # the last four frames, in [-1, 1]
    first = sum((i + 1) * f for i, f in enumerate(w))
    second = sum((i + 1) * f for i, f in enumerate(w[1:] + [first]))
    torch.testing.assert_close(out[0, 0], first)
    torch.testing.assert_close(out[0, 1], second)


def test_log_kernel():
    kernel = log_kernel(7, 1.0)[0, 0]
    assert kernel[3, 3].item() == pytest.approx(-1 / np.pi)  # (0 - 2) / (2 pi) at the centre
    assert kernel[3, 4].item() == pytest.approx(-1 / (2 * np.pi) * np.exp(-0.5))
    assert torch.equal(kernel, kernel.T) and abs(kernel.sum().item()) < 0.05  # a Laplacian: near zero in total


def test_least_squares_gan_losses():
    """Each discriminator's last convolution set to a constant score c: the generator's adversarial loss is
    (c - 1)^2, a discriminator's (c - 1)^2 + c^2 (va26 added its discriminators' losses to the generator's)."""
    model = tiny("retro-cyclegan", VideoSpec(1, 16, 16, 4, 4))
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    for net, c in ((model.frame_discriminator, 0.25), (model.sequence_discriminator.net, -0.5)):
        last = net[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.constant_(last.bias, c)
        last.requires_grad_(False)
    before = [p.clone() for p in model.generator.parameters()]
    out = model.training_step(torch.rand(2, 8, 1, 16, 16), trainer)
    assert out["frame_adv"].item() == pytest.approx(0.75 ** 2)
    assert out["d_frame"].item() == pytest.approx(0.75 ** 2 + 0.25 ** 2)
    assert out["sequence_adv"].item() == pytest.approx(1.5 ** 2)
    assert out["d_sequence"].item() == pytest.approx(1.5 ** 2 + 0.5 ** 2)
    image = model.training_loss(torch.rand(2, 8, 1, 16, 16), 0)
    assert image.item() > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))


def test_training_steps_every_network_and_reports_its_losses():
    model = tiny("retro-cyclegan", VideoSpec(1, 16, 16, 4, 4))
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    nets = (model.generator, model.frame_discriminator, model.sequence_discriminator)
    before = [[p.clone() for p in net.parameters()] for net in nets]
    out = model.training_step(torch.rand(2, 8, 1, 16, 16), trainer)
    assert set(out) == {"loss", "image", "mse", "frame_adv", "d_frame", "sequence_adv", "d_sequence"}
    for net, saved in zip(nets, before):
        assert any(not torch.equal(a, b) for a, b in zip(saved, net.parameters()))
    assert set(model.optimizer_groups()) == {"generator", "frame_discriminator", "sequence_discriminator"}
    plain = create_predictor("retro-cyclegan", VideoSpec(1, 16, 16, 4, 4), preset="tiny", frame_weight=0,
                             sequence_weight=0)
    assert plain.modules_outside_prediction() == [] and set(plain.optimizer_groups()) == {"generator"}


def test_bad_protocols_are_one_line():
    with pytest.raises(UserError, match="last 4 frames"):
        create_predictor("retro-cyclegan", VideoSpec(1, 16, 16, 3, 4), preset="tiny")
    with pytest.raises(UserError, match="divisible by 4"):
        create_predictor("retro-cyclegan", VideoSpec(1, 18, 16, 4, 4), preset="tiny")
