"""HFVP / SVG' (predictors/hfvp.py). s-tian/svg-prime's own modules and loops wrote a checkpoint, what they predicted
with it and their training step's loss terms (tests/fixtures/references/make_hfvp.py): loaded through `--checkpoint`'s
path, it predicts the same (both skip modes) and computes the same MSE and KL. Sizes counted by hand from svg-prime's
layer list; samples are repeatable and differ; bad geometry is one line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.foreign import configure, load_into, read_checkpoint
from vpbench.predictor import count_parameters
from vpbench.registry import PREDICTORS

from conftest import tiny

FIXTURES = Path(__file__).parent / "fixtures" / "references"
SPEC = VideoSpec(1, 64, 64, 4, 3)  # make_hfvp.py's SIZE, CONTEXT, FUTURE

torch.set_num_threads(1)


def seeded_frames(frames: int, seed: int) -> torch.Tensor:
    """make_hfvp.py's: [2, frames, 1, 64, 64]."""
    return torch.rand(2, frames, 1, 64, 64, generator=torch.Generator().manual_seed(seed))


def svg_prime_model():
    expected = torch.load(FIXTURES / "hfvp.expected.pt", weights_only=True)
    checkpoint = read_checkpoint(FIXTURES / "hfvp.ckpt", PREDICTORS.get("hfvp"))
    model = create_predictor("hfvp", SPEC, **configure(checkpoint, SPEC, expected["settings"])).eval()
    load_into(model, checkpoint)
    return model, checkpoint, expected


@pytest.mark.parametrize("last_frame_skip,key", [(False, "output"), (True, "output_last_frame_skip")])
def test_svg_prime_checkpoint_predicts_what_svg_prime_predicted(last_frame_skip, key):
    # svg-prime's plot() drew its noise from the global RNG seeded 7 (posterior, then prior, each step): the same
    # stream as a generator seeded 7. Max difference seen: 0 in both modes.
    model, checkpoint, expected = svg_prime_model()
    assert checkpoint.notes == ["svg-prime checkpoint (a bare state dict)", "115 tensors renamed to vpbench's names"]
    model.config.last_frame_skip = last_frame_skip
    with torch.no_grad():
        out = model(seeded_frames(SPEC.context, 1), SPEC.future, generator=torch.Generator().manual_seed(7))
    assert out.shape == expected[key].shape == (2, SPEC.future, 1, 64, 64)
    assert (out - expected[key]).abs().max() <= 1e-5
    # the two skip modes differ, so each comparison tests its own
    assert (expected["output"] - expected["output_last_frame_skip"]).abs().max() > 1e-4


def test_training_terms_are_svg_primes():
    """svg-prime's train() (BatchNorm on batch statistics, noise from the global RNG seeded 5) returned the MSE and
    the KL per step; the objective here, on the same clip and draws, the same."""
    model, _, expected = svg_prime_model()
    model.train()
    torch.manual_seed(5)
    with torch.no_grad():
        terms = model.objective(seeded_frames(SPEC.context + SPEC.future, 2))
    assert abs(float(terms["mse"]) - expected["mse"]) <= 1e-6 * expected["mse"]
    assert abs(float(terms["kl"]) - expected["kl"]) <= 1e-5 * expected["kl"]
    steps = SPEC.context + SPEC.future - 1
    beta = expected["settings"]["beta"]
    assert float(terms["loss"]) == pytest.approx(steps * (expected["mse"] + beta * expected["kl"]), rel=1e-6)


def _hand_count(channels: int, k: float, m: float, rnn_size: int = 512, g_dim: int = 128, z_dim: int = 10) -> int:
    """svg-prime's networks (shallow_vgg.py, conv_lstm.py, train_svg_prime.py lines 103-117), layer by layer."""
    def conv(c_in: int, c_out: int) -> int:  # 3x3, with bias
        return 9 * c_in * c_out + c_out

    def vgg(c_in: int, c_out: int) -> int:  # conv + BatchNorm's scale and shift
        return conv(c_in, c_out) + 2 * c_out

    w1, w2, w3, hid = int(64 * k), int(128 * k), int(256 * k), int(rnn_size * m)
    encoder = (vgg(channels, w1) + vgg(w1, w1) + vgg(w1, w2) + vgg(w2, w2) + vgg(w2, w3) + 2 * vgg(w3, w3)
               + conv(w3, 128))
    decoder = (conv(128, w3) + vgg(2 * w3, w3) + vgg(w3, w3) + vgg(w3, w2) + vgg(2 * w2, w2) + vgg(w2, w1)
               + vgg(2 * w1, w1) + conv(w1, channels))
    cell = conv(2 * hid, 4 * hid)
    predictor = conv(g_dim + z_dim, hid) + 2 * cell + conv(hid, g_dim)
    gaussian = conv(g_dim, hid) + cell + 2 * conv(hid, z_dim)
    return encoder + decoder + predictor + 2 * gaussian


def test_sizes_by_hand():
    mmnist = VideoSpec(1, 64, 64, 5, 10)
    assert count_parameters(create_predictor("hfvp", mmnist, preset="mmnist"))[0] == _hand_count(1, 1, 1) == 82_933_929
    # M = 3, K = 5: recalled as the paper's largest model [unverified]
    large = create_predictor("hfvp", mmnist, preset="mmnist", K=5.0, M=3.0)
    assert count_parameters(large)[0] == _hand_count(1, 5, 3) == 796_246_697
    sjtu4k = create_predictor("hfvp", VideoSpec(3, 216, 384, 4, 4), preset="sjtu4k")
    assert count_parameters(sjtu4k)[0] == _hand_count(3, 1, 1) == 82_936_235


def test_samples_are_repeatable_and_differ():
    model = tiny("hfvp").eval()
    context = torch.rand(2, 4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = model(context, 3, samples=3, generator=torch.Generator().manual_seed(1))
        again = model(context, 3, samples=3, generator=torch.Generator().manual_seed(1))
    assert first.shape == (2, 3, 3, 1, 64, 64)
    assert torch.equal(first, again)
    assert (first[:, 0] - first[:, 1]).abs().max() > 0


def test_validation_loss_is_the_objective_and_repeatable():
    model = tiny("hfvp").eval()
    clip = torch.rand(2, 6, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.validation_loss(clip), model.validation_loss(clip))
        assert torch.isfinite(model.validation_loss(clip))


@pytest.mark.parametrize("spec,message", [
    (VideoSpec(1, 60, 64, 4, 4), "halves the frame 3 times; 60x64 is not divisible by 8"),
    (VideoSpec(1, 64, 64, 1, 4), "needs 2 context frames; the protocol has 1"),
])
def test_a_geometry_it_cannot_take_is_one_error(spec, message):
    with pytest.raises(UserError, match=message):
        create_predictor("hfvp", spec, preset="tiny")


def test_widths_that_vanish_are_one_error():
    with pytest.raises(UserError, match="leave a layer without channels"):
        create_predictor("hfvp", SPEC, preset="tiny", K=0.01)
