"""MMVP: its mmnist size equal to a hand count of OpenSTL's MMVP_Model at configs/mmnist/MMVP.py (OpenSTL's table has
no MMVP row), the switches that reproduce OpenSTL's training forward and its output reshape, one-line errors for
frames the encoder cannot divide. Its outputs are pinned by a checkpoint written by OpenSTL's code
(tests/test_foreign.py)."""
import sys
from pathlib import Path

import pytest
import torch

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.costs import count_flops
from vpbench.predictor import count_parameters

from conftest import MMNIST, tiny
from reference_counts import Conv, totals

sys.path.insert(0, str(Path(__file__).parent))
from test_foreign import openstl_model, seeded_input, EXPECTED, SPEC  # noqa: E402

torch.set_num_threads(1)


def rrdb(nf: int) -> list[Conv]:
    """ESRGAN's RRDB as OpenSTL builds it: three dense blocks of four 3x3 convolutions, growth nf / 2."""
    gc = nf // 2
    return [Conv(nf + i * gc, nf if i == 3 else gc, 9, 0, 0) for _ in range(3) for i in range(4)]


def down(cin: int, cout: int) -> list[Conv]:
    return [Conv(cin, cout, 9, 0, 0), Conv(cout, cout, 9, 0, 0), Conv(cin, cout, 1, 0, 0)]


def conv_bn(cin: int, cout: int, taps: int = 9) -> list[Conv]:
    # A BatchNorm's weight and bias, as a 1x1 depthwise "convolution" with bias.
    return [Conv(cin, cout, taps, 0, 0), Conv(cout, cout, 1, 0, 0, groups=cout)]


def mmvp_mmnist_params() -> int:
    """OpenSTL configs/mmnist/MMVP.py: hid_S 32, hid_T 192, 2 RRDBs each, downsample 2,2,2, 1 channel, 10 -> 10;
    without the never-called scale_fuser_1/2 and fuse_conv."""
    s, t = 32, 192
    encoder = [Conv(4, s, 9, 0, 0), *rrdb(s), *rrdb(s), *down(s, 2 * s), *down(2 * s, 4 * s), *down(4 * s, 8 * s)]
    filters = [*conv_bn(4 * s, s), *conv_bn(s, s), *conv_bn(s, s),
               *conv_bn(8 * s, 2 * s), *conv_bn(2 * s, 2 * s), *conv_bn(2 * s, 2 * s)]
    predictor = [Conv(1, t, 9, 0, 0, bias=False), *conv_bn(t, t), *conv_bn(t, t), *conv_bn(t, t),
                 *conv_bn(t, t, 27),  # conv3d_1
                 *conv_bn(9 * t, 10 * t, 1),  # conv_translate: 9 past steps to 10 future ones
                 *conv_bn(t, 2 * t), *conv_bn(2 * t, 2 * t, 27),  # conv2_1, temporal_layer
                 *conv_bn(3 * t, t), *conv_bn(t, t), Conv(t, 1, 9, 0, 0, bias=False)]
    decoder = [Conv(8 * s, 4 * s, 4, 0, 0), Conv(8 * s, 4 * s, 9, 0, 0, bias=False),  # low -> high, skip
               Conv(4 * s, 2 * s, 4, 0, 0), Conv(4 * s, 2 * s, 9, 0, 0, bias=False),  # high -> mid, skip
               Conv(2 * s, s, 4, 0, 0), Conv(s, s, 9, 0, 0, bias=False),  # no skip
               *rrdb(s), *rrdb(s), Conv(s, 4, 1, 0, 0)]
    enhancer = [Conv(2, s, 9, 0, 0), *rrdb(s), *rrdb(s), Conv(s, 1, 1, 0, 0)]
    return totals(encoder + filters + predictor + decoder + enhancer)[0]


def test_mmnist_size_equals_a_hand_count_of_openstls_model_and_its_flops_openstls_less_an_identity():
    model = create_predictor("mmvp", MMNIST, preset="mmnist")
    # OpenSTL's MMVP_Model(in_shape=(10, 1, 64, 64)) holds 14,828,581 parameters, 708,832 of them in the never-called
    # scale_fuser_1/2 and fuse_conv.
    assert count_parameters(model)[0] == mmvp_mmnist_params() == 14_828_581 - 708_832
    # fvcore on OpenSTL's MMVP_Model with a [1, 10, 1, 64, 64] input: 93,455,863,808. Its Compose resizes the mid
    # features [10, 64, 16, 16] bilinearly to the size they have (4 FLOPs per element under fvcore); vpbench skips it.
    assert count_flops(model, torch.rand(1, 10, 1, 64, 64), 10).fvcore == 93_455_863_808 - 4 * 10 * 64 * 16 * 16


def test_future_in_batchnorm_is_what_makes_training_predict_as_openstls_step():
    future = torch.rand(1, SPEC.future, 1, 64, 64, generator=torch.Generator().manual_seed(3))  # make.py's
    clip = torch.cat([seeded_input(), future], 1)
    expected = EXPECTED["mmvp"]["train_output"]
    for switch, agrees in ((True, True), (False, False)):
        model, _ = openstl_model("mmvp", future_in_batchnorm=switch)
        model.train()
        with torch.no_grad():
            # training_loss's prediction: the whole clip with the switch, the context alone without it
            prediction = model.predict_pass(clip, SPEC.context) if switch else model(seeded_input(), SPEC.future)
        difference = float((prediction - expected).abs().max())
        assert (difference < 1e-6) if agrees else (difference > 1e-4), (switch, difference)
        with torch.no_grad():
            loss = model.training_loss(clip, 0)
        assert abs(float(loss) - float(((prediction - future) ** 2).mean())) < 1e-5


def test_openstl_channel_order_reproduces_its_output_reshape():
    spec = VideoSpec(3, 32, 32, 3, 2)
    context = torch.rand(1, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = tiny("mmvp", spec).eval()
    theirs = tiny("mmvp", spec, openstl_channel_order=True).eval()
    with torch.no_grad():
        kept, mixed = ours(context, 2), theirs(context, 2)
    # openstl/models/mmvp_model.py: final_recon_img.permute(0, 2, 3, 1).reshape(B, -1, C, H, W)
    assert torch.equal(mixed, kept.permute(0, 1, 3, 4, 2).reshape(1, 2, 3, 32, 32))
    assert not torch.equal(mixed, kept)


def test_long_rollouts_run_pass_after_pass_on_the_last_context_frames():
    spec = VideoSpec(1, 32, 32, 3, 2)
    model = tiny("mmvp", spec).eval()
    context = torch.rand(1, 3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rollout = model(context, 5)
        first = model.predict_pass(context, 3)
        second = model.predict_pass(torch.cat([context, first], 1)[:, -3:], 3)
    assert rollout.shape == (1, 5, 1, 32, 32)
    assert torch.equal(rollout[:, :4], torch.cat([first, second], 1))


@pytest.mark.parametrize("spec, settings, message", [
    (VideoSpec(1, 40, 40, 4, 4), {}, "not divisible by 16"),
    (VideoSpec(1, 64, 64, 1, 4), {}, "at least 2 context frames"),
    (MMNIST, {"downsample_setting": (2,)}, "at least two factors"),
])
def test_geometry_the_encoder_cannot_run_is_one_line(spec, settings, message):
    with pytest.raises(UserError, match=message):
        create_predictor("mmvp", spec, preset="tiny", **settings)
