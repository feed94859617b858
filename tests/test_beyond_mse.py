"""BeyondMSE: sizes equal to a hand count of the reference's published configuration (dyelax constants.py; no
trusted PyTorch port exists to compare outputs with), the Lp loss, the GDL and the BCE against hand computations,
the scales' wiring, training and multi-frame prediction by feeding predictions back."""
import math

import pytest
import torch
import torch.nn.functional as F

from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.predictors.beyond_mse import adversarial_loss, gdl_loss, lp_loss, pyramid
from vpbench.spec import VideoSpec
from vpbench.training import TrainContext

from conftest import tiny
from reference_counts import Conv, totals

torch.set_num_threads(1)

RGB = VideoSpec(3, 64, 64, 4, 6)


def _dense(cin: int, cout: int) -> Conv:
    return Conv(cin, cout, 1, 0, 0)  # a fully connected layer: one tap


# --- size at the reference's configuration (dyelax constants.py: RGB, HIST_LEN 4, 32x32 patches) -----------------
def test_size_equals_the_hand_count_of_the_reference():
    # SCALE_FMS_G / SCALE_KERNEL_SIZES_G: scale 1 reads 3 x 4 channels, the others 3 x (4 + 1); every layer has a bias.
    generator = [Conv(12, 128, 9, 0, 0), Conv(128, 256, 9, 0, 0), Conv(256, 128, 9, 0, 0), Conv(128, 3, 9, 0, 0),
                 Conv(15, 128, 25, 0, 0), Conv(128, 256, 9, 0, 0), Conv(256, 128, 9, 0, 0), Conv(128, 3, 25, 0, 0),
                 Conv(15, 128, 25, 0, 0), Conv(128, 256, 9, 0, 0), Conv(256, 512, 9, 0, 0), Conv(512, 256, 9, 0, 0),
                 Conv(256, 128, 9, 0, 0), Conv(128, 3, 25, 0, 0),
                 Conv(15, 128, 49, 0, 0), Conv(128, 256, 25, 0, 0), Conv(256, 512, 25, 0, 0),
                 Conv(512, 256, 25, 0, 0), Conv(256, 128, 25, 0, 0), Conv(128, 3, 49, 0, 0)]
    # SCALE_CONV_FMS_D / SCALE_KERNEL_SIZES_D ('VALID') on 4, 8, 16, 32 pixel sides, a 2x2 max-pooling, then
    # SCALE_FC_LAYER_SIZES_D from (side after the convolutions / 2)^2 x the last width:
    # 4 - 2 = 2 -> 1; 8 - 6 = 2 -> 1; 16 - 12 = 4 -> 2; 32 - 6 - 6 - 4 - 4 = 12 -> 6.
    discriminator = [Conv(3, 64, 9, 0, 0), _dense(1 * 1 * 64, 512), _dense(512, 256), _dense(256, 1),
                     Conv(3, 64, 9, 0, 0), Conv(64, 128, 9, 0, 0), Conv(128, 128, 9, 0, 0),
                     _dense(1 * 1 * 128, 1024), _dense(1024, 512), _dense(512, 1),
                     Conv(3, 128, 25, 0, 0), Conv(128, 256, 25, 0, 0), Conv(256, 256, 25, 0, 0),
                     _dense(2 * 2 * 256, 1024), _dense(1024, 512), _dense(512, 1),
                     Conv(3, 128, 49, 0, 0), Conv(128, 256, 49, 0, 0), Conv(256, 512, 25, 0, 0),
                     Conv(512, 128, 25, 0, 0), _dense(6 * 6 * 128, 1024), _dense(1024, 512), _dense(512, 1)]
    expected = (totals(generator)[0], totals(discriminator)[0])
    assert expected == (12_569_740, 16_875_652)

    model = create_predictor("beyond-mse", RGB, preset="ucf-sports")
    size = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert (size(model.generator), size(model.discriminator)) == expected
    assert count_parameters(model)[0] == expected[0]  # the discriminator does not predict


# --- the losses, by hand -----------------------------------------------------------------------------------------
def test_gdl_compares_the_absolute_gradients_inside_the_frame():
    target = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    flat = torch.zeros(1, 1, 2, 2)
    # Down: |2 - 0| + |4 - 1| = 5; across: |1 - 0| + |4 - 2| = 3; a flat prediction has no gradient.
    assert gdl_loss([flat], [target], 1.0).item() == 8.0
    corner = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    # The corner's gradients: 1 down and 1 across in the first column / row, 0 in the second.
    # Down: ||2| - |0 - 1|| + ||3| - 0| = 4; across: ||1| - |0 - 1|| + ||2| - 0| = 2.
    assert gdl_loss([corner], [target], 1.0).item() == 6.0
    # Absolute gradients: a negative image has the same ones, so no loss (a signed difference would count 16).
    assert gdl_loss([-target], [target], 1.0).item() == 0.0
    # alpha 2 squares each difference: 2^2 + 3^2 + 1^2 + 2^2 = 18; two scales give their mean.
    assert gdl_loss([flat], [target], 2.0).item() == 18.0
    assert gdl_loss([flat, corner], [target, target], 1.0).item() == 7.0


def test_lp_loss_sums_over_pixels_and_averages_over_scales():
    target = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    flat = torch.zeros(1, 1, 2, 2)
    assert lp_loss([flat], [target], 2).item() == 21.0  # 0 + 1 + 4 + 16
    assert lp_loss([flat], [target], 1).item() == 7.0
    assert lp_loss([flat, target], [target, target], 2).item() == 10.5


def test_adversarial_loss_is_the_bce_summed_over_the_batch():
    scale_1, scale_2 = torch.tensor([[0.5], [0.25]]), torch.tensor([[0.9], [0.9]])
    real = (-math.log(0.5) - math.log(0.25) - 2 * math.log(0.9)) / 2
    fake = (-math.log(0.5) - math.log(0.75) - 2 * math.log(0.1)) / 2
    assert adversarial_loss([scale_1, scale_2], real=True).item() == pytest.approx(real)
    assert adversarial_loss([scale_1, scale_2], real=False).item() == pytest.approx(fake)


def test_discriminator_probabilities_are_clipped():
    model = tiny("beyond-mse", VideoSpec(1, 64, 64, 4, 4))
    for net, bias in zip(model.discriminator.scales, (50.0, -50.0, 0.0, 50.0)):
        torch.nn.init.zeros_(net.linear[-1].weight)
        torch.nn.init.constant_(net.linear[-1].bias, bias)
    scores = model.discriminator(pyramid(torch.rand(2, 1, 64, 64)))
    assert [s.shape for s in scores] == [(2, 1)] * 4
    assert [s[0].item() for s in scores] == pytest.approx([0.9, 0.1, 0.5, 0.9])


# --- the scales' wiring, the rollout --------------------------------------------------------------------------------
class _Guess(torch.nn.Module):
    """A stand-in scale network that returns its input's last frame's channels: the coarsest scale's last context
    frame, every finer scale's upsampled guess."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -self.channels:]


@pytest.mark.parametrize("residual", [True, False])
def test_each_scale_reads_the_pooled_frames_and_the_coarser_guess(residual):
    model = create_predictor("beyond-mse", VideoSpec(2, 32, 32, 4, 1), preset="tiny", residual=residual)
    model.generator.scales = torch.nn.ModuleList(_Guess(2) for _ in range(4))
    frames = torch.rand(1, 4, 2, 32, 32) * 2 - 1
    out = model.generator(frames)
    expected = torch.tanh(F.avg_pool2d(frames[:, -1], 8))
    torch.testing.assert_close(out[0], expected)
    for level in out[1:]:
        guess = F.interpolate(expected, scale_factor=2, mode="nearest")
        expected = torch.tanh(2 * guess if residual else guess)  # the correction (the guess) plus the guess
        torch.testing.assert_close(level, expected)
    assert [o.shape[-1] for o in out] == [4, 8, 16, 32]
    # The pooled inputs: scale 1 reads the 4 frames' 8 channels, oldest first.
    pooled = pyramid(frames.flatten(1, 2))[0]
    torch.testing.assert_close(pooled[:, 6:], F.avg_pool2d(frames[:, 3], 8))


def test_rollout_maps_frames_to_the_model_range_and_feeds_each_prediction_back():
    model = tiny("beyond-mse", VideoSpec(1, 32, 32, 6, 3))
    seen = []

    class Mean(torch.nn.Module):
        def forward(self, window):
            seen.append(window)
            return [window.mean(1)]  # the mean of the window, at the full scale

    model.generator = Mean()
    context = torch.rand(1, 6, 1, 32, 32)
    out = model(context, 3)
    window = context[:, 2:] * 2 - 1  # the last four frames, in [-1, 1]
    torch.testing.assert_close(seen[0], window)
    first = window.mean(1)
    torch.testing.assert_close(seen[1], torch.cat([window[:, 1:], first[:, None]], dim=1))
    torch.testing.assert_close(out[:, 0], (first + 1) / 2)  # back to [0, 1]


# --- training --------------------------------------------------------------------------------------------------
def test_training_steps_both_networks_and_reports_the_terms():
    model = tiny("beyond-mse", VideoSpec(1, 64, 64, 4, 4))
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    nets = (model.generator, model.discriminator)
    before = [[p.clone() for p in net.parameters()] for net in nets]
    clip = torch.rand(2, 8, 1, 64, 64)
    out = model.training_step(clip, trainer)
    assert set(out) == {"loss", "lp", "gdl", "adv", "d_loss", "mse"}
    for net, saved in zip(nets, before):
        assert any(not torch.equal(a, b) for a, b in zip(saved, net.parameters()))
    cfg = model.config
    total = cfg.lam_lp * out["lp"] + cfg.lam_gdl * out["gdl"] + cfg.lam_adv * out["adv"]
    assert out["loss"].item() == pytest.approx(total.item())
    plain = create_predictor("beyond-mse", VideoSpec(1, 64, 64, 4, 4), preset="tiny", lam_adv=0)
    assert plain.discriminator is None and set(plain.optimizer_groups()) == {"generator"}
    assert plain.modules_outside_prediction() == []


def test_training_crops_patches_of_one_window():
    model = create_predictor("beyond-mse", VideoSpec(1, 64, 64, 4, 4), preset="tiny", patch=32)
    assert model.discriminator.scales[-1].convs[0].in_channels == 1
    clip = torch.rand(3, 8, 1, 64, 64)
    crops = model._crops(clip, iteration=1)  # frames 1..5 of each clip
    assert crops.shape == (3, 5, 1, 32, 32)
    for crop, whole in zip(crops, clip[:, 1:6] * 2 - 1):
        windows = whole.unfold(-2, 32, 1).unfold(-2, 32, 1)  # [5, 1, 33, 33, 32, 32]: every 32x32 crop
        assert ((windows - crop[:, :, None, None]).abs().amax(dim=(0, 1, 4, 5)) < 1e-6).any()


def test_bad_protocols_are_one_line():
    with pytest.raises(UserError, match="last 4 frames"):
        create_predictor("beyond-mse", VideoSpec(1, 64, 64, 3, 4), preset="tiny")
    with pytest.raises(UserError, match="divisible by 8"):
        create_predictor("beyond-mse", VideoSpec(1, 60, 64, 4, 4), preset="tiny")
    for patch in (20, 72):  # not a multiple of 8; larger than the frames
        with pytest.raises(UserError, match=f"patch {patch} must divide by 8 and fit"):
            create_predictor("beyond-mse", VideoSpec(1, 64, 64, 4, 4), preset="tiny", patch=patch)
    with pytest.raises(UserError, match="too small"):
        create_predictor("beyond-mse", VideoSpec(1, 16, 16, 4, 4), preset="tiny")
