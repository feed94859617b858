"""WaST (predictors/wast.py): its Haar transforms against OpenSTL's filters and a hand count, its frequency loss and
drop-path schedule against what OpenSTL computed (tests/fixtures/openstl/make.py: expected-wast.pt), its training
loss, shapes and refusals. The prediction itself: tests/test_foreign.py (OpenSTL's checkpoint, its output)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.predictors.wast import (haar_bank, haar_transform, high_focal_frequency_loss, inverse_haar_transform)

FIXTURES = Path(__file__).parent / "fixtures" / "openstl"
EXPECTED = torch.load(FIXTURES / "expected-wast.pt", weights_only=True)["wast"]
CHECKPOINT = torch.load(FIXTURES / "wast.ckpt", weights_only=True)["state_dict"]
SMALL = dict(encoder_dim=2, block_list=(1, 1, 1), mlp_ratio=2.0)


def hffl_frames() -> tuple[torch.Tensor, torch.Tensor]:
    """make.py's `hffl_frames`: the predicted and true frames on which it ran OpenSTL's HighFocalFrequencyLoss."""
    generator = torch.Generator().manual_seed(7)
    return torch.rand(2, 3, 1, 64, 64, generator=generator), torch.rand(2, 3, 1, 64, 64, generator=generator)


def test_the_haar_filters_are_the_ones_openstl_builds_from_pywt():
    # OpenSTL's WaveletTransform3D / 2D buffers, written from pywt's 'haar' filter bank (their LL band first)
    assert torch.equal(haar_bank(3), CHECKPOINT["model.wavelet_embed1.DWT.filters"])
    assert torch.equal(haar_bank(3), CHECKPOINT["model.wavelet_recon1.IDWT.filters"])
    assert torch.equal(haar_bank(2)[0], CHECKPOINT["hffl.DWT.filters"][0])


def test_the_haar_bands_by_hand_and_the_inverse():
    # A 2x2x2 block rising by 1 along width only: LLL = 8 x 0.5 / sqrt(8) x the mean, LLH = 4 x (0 - 1) / sqrt(8).
    x = torch.tensor([0.0, 1.0]).expand(1, 1, 2, 2, 2)
    bands = [b.item() for b in haar_transform(x, haar_bank(3))]
    assert bands[0] == pytest.approx(4 / 8 ** 0.5) and bands[1] == pytest.approx(-4 / 8 ** 0.5)
    assert bands[2:] == pytest.approx([0.0] * 6, abs=1e-7)
    signal = torch.rand(2, 3, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    transformed = haar_transform(signal, haar_bank(3))
    assert [tuple(b.shape) for b in transformed] == [(2, 3, 2, 3, 4)] * 8
    assert (inverse_haar_transform(transformed, haar_bank(3)) - signal).abs().max() < 1e-6


def test_the_frequency_loss_is_what_openstl_computes():
    prediction, target = hffl_frames()
    ours = EXPECTED["settings"]["loss_weight"] * high_focal_frequency_loss(prediction, target)
    assert abs(float(ours) - float(EXPECTED["hffl"])) < 1e-9 and float(EXPECTED["hffl"]) > 1e-6
    # The lowest frequencies are masked out: a frame brighter everywhere costs nothing.
    assert float(high_focal_frequency_loss(target + 0.3, target)) == pytest.approx(0.0, abs=1e-9)


def test_drop_path_rises_over_the_blocks_as_openstls_update_sets_it():
    model = create_predictor("wast", VideoSpec(1, 64, 64, 2, 3), **EXPECTED["settings"])
    model.set_drop_path(0.25)
    blocks = [b for t in (model.translator1, model.bottleneck_translator, model.translator2) for b in t.blocks]
    rates = [getattr(block.drop_path, "drop_prob", None) for block in blocks]
    assert rates == pytest.approx(EXPECTED["drop_path"])  # OpenSTL's: the first block never drops


def test_training_is_mse_plus_the_weighted_frequency_loss_with_the_late_drop_path():
    spec = VideoSpec(1, 16, 16, 2, 3)
    clip = torch.rand(2, 5, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    model = create_predictor("wast", spec, **SMALL, loss_weight=0.5, drop_path=0.2, drop_path_from=10).eval()
    with torch.no_grad():
        loss = model.training_loss(clip, 9)
        prediction = model(clip[:, :2], 3)
    assert model.translator2.blocks[0].drop_path.drop_prob == 0.0  # before drop_path_from
    expected = F.mse_loss(prediction, clip[:, 2:]) + 0.5 * high_focal_frequency_loss(prediction, clip[:, 2:])
    assert abs(float(loss) - float(expected)) < 1e-7
    model.training_loss(clip, 10)
    assert model.translator2.blocks[0].drop_path.drop_prob == pytest.approx(0.2)  # the last block: the full rate


def test_shapes_and_the_rollout_in_chunks_of_the_context():
    model = create_predictor("wast", VideoSpec(3, 16, 24, 4, 6), **SMALL).eval()
    context = torch.rand(2, 4, 3, 16, 24)
    with torch.no_grad():
        out = model(context, 6)
        first = model.predict_chunk(context)
    assert out.shape == (2, 6, 3, 16, 24)
    assert torch.equal(out[:, :4], first)
    with torch.no_grad():
        assert torch.equal(out[:, 4:], model.predict_chunk(first)[:, :2])


@pytest.mark.parametrize("spec,settings,message", [
    (VideoSpec(1, 16, 16, 3, 2), {}, "must be even"),
    (VideoSpec(1, 18, 15, 2, 2), {}, "must be even"),
    (VideoSpec(1, 16, 16, 2, 2), {"block_list": (1, 1)}, "three counts"),
])
def test_sizes_the_transform_cannot_take_are_refused(spec, settings, message):
    with pytest.raises(UserError, match=message):
        create_predictor("wast", spec, **{**SMALL, **settings})
