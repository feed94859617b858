"""SAVP: parameter counts equal to the reference's layer list (TensorFlow: its outputs cannot be compared here), its
operations against independent definitions, the losses, the variants, the schedules and the presets (that the
validation objective falls and seeded samples reproduce is the contract's: tests/test_contract.py)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import vpbench.predictors.savp  # noqa: F401  (registers savp)
from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.predictors.savp import (ConvPool, UpConv, apply_cdna, cosine_distance, kl_to_standard_normal, lsgan,
                                     symmetric_pad)
from vpbench.spec import VideoSpec


# --- sizes, counted from alexlee-gk/video_prediction df43be5 ---------------------------------------------------
def conv(cin, cout, k, bias=True):  # ops.conv2d / conv_pool2d / upsample_conv2d: kernel [k, k, cin, cout] (+ bias)
    return cin * cout * k * k + (cout if bias else 0)


def conv3d(cin, cout, k):
    return cin * cout * k ** 3 + cout


def norm(c):  # fused_instance_norm: gamma, beta
    return 2 * c


def conv_lstm(cin, c):  # BasicConv2DLSTMCell with a normalizer: 5x5 kernel over [inputs, h] (no bias), 2 norms
    return conv(cin + c, 4 * c, 5, bias=False) + norm(4 * c) + norm(c)


def dense(i, o):
    return i * o + o


# SAVPCell.__init__ (savp_model.py lines 183-221): (out_channels, use_conv_rnn) per level, as multiples of ngf.
SPECS = {64: ([(1, True), (2, True), (4, True)], [(2, True), (1, True), (1, False)]),
         256: ([(1, False), (2, False), (4, True), (8, True), (8, True)],
               [(8, True), (4, True), (2, False), (1, False), (1, False)])}


def reference_generator(c, side, ngf, nz, nef, kernel=5, transformed=4):
    """SAVPCell.call (where_add=all, tile concat: every convolution's input gets nz more channels) + posterior_fn."""
    encoder, decoder = ([(m * ngf, rnn) for m, rnn in specs] for specs in SPECS[side])
    total, cin = 0, 2 * c  # h0 reads [image, first image]
    for i, (out, rnn) in enumerate(encoder):
        total += conv(cin + nz, out, 5 if i == 0 else 3) + norm(out) + (conv_lstm(out + nz, out) if rnn else 0)
        cin = out
    for i, (out, rnn) in enumerate(decoder):
        skip = encoder[len(encoder) - i - 1][0] if i else 0
        total += conv(cin + skip + nz, out, 3) + norm(out) + (conv_lstm(out + nz, out) if rnn else 0)
        cin = out
    smallest = encoder[-1][0] * (side // 2 ** len(encoder)) ** 2
    masks = transformed + 3  # CDNA images, prev_image_background, first_image_background, scratch image
    total += dense(smallest, kernel * kernel * transformed)  # cdna_kernels
    total += conv(ngf, ngf, 3) + norm(ngf) + conv(ngf, c, 3)  # h*_scratch, scratch_image
    total += conv(ngf, ngf, 3) + norm(ngf) + conv(ngf + masks * c, masks, 3)  # h*_masks, masks (dependent_mask)
    total += dense(2 * nz, 4 * nz)  # lstm_z: LSTMCell(nz), one kernel over [z, h], one bias
    # posterior_fn: networks.encoder (n_layers 3, nef * min(2^i, 4)), z_mu, z_log_sigma_sq
    total += conv(2 * c, nef, 4) + conv(nef, 2 * nef, 4) + norm(2 * nef) + conv(2 * nef, 4 * nef, 4) + norm(4 * nef)
    return total + 2 * dense(4 * nef, nz)


def reference_discriminator(c, ndf, frames, side):
    """networks.video_sn_discriminator: tf.pad 1 on every axis, then VALID 3D convolutions; sn_fc4 on the flat."""
    t, s = frames, side
    for k, time_stride, space_stride in [(3, 1, 1), (4, 1, 2), (3, 1, 1), (4, 1, 2), (3, 1, 1), (4, 2, 2), (3, 1, 1)]:
        t, s = (t + 2 - k) // time_stride + 1, (s + 2 - k) // space_stride + 1
    convs = (conv3d(c, ndf, 3) + conv3d(ndf, 2 * ndf, 4) + conv3d(2 * ndf, 2 * ndf, 3) + conv3d(2 * ndf, 4 * ndf, 4)
             + conv3d(4 * ndf, 4 * ndf, 3) + conv3d(4 * ndf, 8 * ndf, 4) + conv3d(8 * ndf, 8 * ndf, 3))
    return convs + dense(8 * ndf * t * s * s, 1)


@pytest.mark.parametrize("preset, channels, context, nz", [("kth", 1, 10, 32), ("bair", 3, 2, 8)])
def test_size_at_the_reference_configurations_equals_the_reference_layer_list(preset, channels, context, nz):
    # KTH: 64x64 grey, 10 -> 10 (kth_dataset.py); BAIR action-free: 64x64 RGB, 2 -> 10 (softmotion_dataset.py).
    model = create_predictor("savp", VideoSpec(channels, 64, 64, context, 10), preset=preset)
    generator = reference_generator(channels, 64, ngf=32, nz=nz, nef=64)
    assert count_parameters(model) == (generator, generator)
    discriminator = reference_discriminator(channels, 32, frames=10, side=64)  # clip_length 10
    assert [sum(p.numel() for p in d.parameters()) for d in model.modules_outside_prediction()] == [discriminator] * 2
    if preset == "kth":
        assert (generator, discriminator) == (8_217_669, 5_142_273)


def test_five_levels_from_256_pixels():
    model = create_predictor("savp", VideoSpec(3, 256, 256, 4, 6), preset="ucf-sports", ngf=8, nef=8, nz=4)
    assert count_parameters(model)[0] == reference_generator(3, 256, ngf=8, nz=4, nef=8)
    assert len(model.encoder) == len(model.decoder) == 5


def test_variants_keep_their_discriminators():
    spec = VideoSpec(1, 64, 64, 10, 10)
    counts = {variant: len(create_predictor("savp", spec, preset=f"kth-{variant}" if variant != "savp" else "kth")
                           .modules_outside_prediction()) for variant in ("savp", "vae", "gan")}
    assert counts == {"savp": 2, "vae": 0, "gan": 1}


def test_presets_follow_the_reference_hparams_files():
    spec = VideoSpec(1, 64, 64, 10, 10)
    savp, vae, gan = (create_predictor("savp", spec, preset=p).config for p in ("kth", "kth-vae", "kth-gan"))
    # hparams/kth/ours_savp, ours_vae_l1, ours_gan/model_hparams.json
    assert (savp.batch_size, savp.lr, savp.adam_beta1, savp.l1_weight, savp.kl_weight, savp.nz) == (
        16, 2e-4, 0.5, 100.0, 0.01, 32)
    assert (savp.gan_weight, savp.vae_gan_weight, savp.vae_gan_feature_cdist_weight, savp.gan_feature_cdist_weight) \
        == (0.1, 0.1, 10.0, 0.0)
    assert (vae.batch_size, vae.lr, vae.adam_beta1, vae.l1_weight, vae.kl_weight) == (32, 1e-3, 0.9, 1.0, 1e-5)
    assert (gan.kl_weight, gan.gan_weight, gan.vae_gan_weight, gan.gan_feature_cdist_weight) == (0.0, 0.1, 0.0, 10.0)
    # SAVPVideoPredictionModel / VideoPredictionModel defaults
    assert (savp.ngf, savp.nef, savp.ndf, savp.kernel_size, savp.num_transformed_images, savp.clip_length,
            savp.schedule_sampling_k, savp.kl_anneal_start, savp.kl_anneal_end, savp.max_iterations) == (
        32, 64, 32, 5, 4, 10, 900.0, 50_000, 100_000, 300_000)


def test_small_frames_are_refused_in_one_line():
    with pytest.raises(UserError, match="at least 32 pixels"):
        create_predictor("savp", VideoSpec(1, 16, 16, 4, 4), preset="tiny")


# --- operations against independent definitions ----------------------------------------------------------------
def test_upsample_conv_is_bilinear_upsampling_then_a_convolution_inside_the_frame():
    torch.manual_seed(0)
    layer = UpConv(3, 5)
    x = torch.rand(2, 3, 8, 8)
    ours = layer(x)
    # torch's bilinear x2 (half-pixel centres: the reference's kernel [1, 3, 3, 1] / 4), then a 'same' 3x3 conv
    plain = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), layer.conv.weight,
                     layer.conv.bias, padding=1)
    assert ours.shape == plain.shape == (2, 5, 16, 16)
    # the rows and columns next to the border differ: there the reference's fused kernel reads past the frame
    assert torch.allclose(ours[..., 2:-2, 2:-2], plain[..., 2:-2, 2:-2], atol=1e-6)


def test_conv_pool_is_a_same_convolution_then_average_pooling():
    torch.manual_seed(0)
    layer, x = ConvPool(2, 4, 5), torch.rand(1, 2, 8, 8)
    expected = F.avg_pool2d(F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=2), 2)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_symmetric_padding_is_numpys():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="symmetric")
    assert np.array_equal(symmetric_pad(x, 2).numpy(), expected)


def test_cdna_moves_each_sequence_by_its_own_kernels():
    image = torch.rand(2, 3, 6, 7)
    identity, shift = torch.zeros(5, 5), torch.zeros(5, 5)
    identity[2, 2] = 1.0
    shift[2, 3] = 1.0  # correlation: output (y, x) reads input (y, x + 1)
    kernels = torch.stack([torch.stack([identity, shift]), torch.stack([shift, identity])])  # [B=2, K=2, 5, 5]
    out = apply_cdna(image, kernels)
    assert out.shape == (2, 2, 3, 6, 7)
    assert torch.equal(out[0, 0], image[0]) and torch.equal(out[1, 1], image[1])
    assert torch.equal(out[0, 1, :, :, :-1], image[0, :, :, 1:])
    assert torch.equal(out[0, 1, :, :, -1], image[0, :, :, -1])  # symmetric padding repeats the edge column


def test_kl_is_torch_distributions():
    mu, log_var = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    expected = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(-1).mean()
    assert torch.allclose(kl_to_standard_normal(mu, log_var), expected, atol=1e-5)


def test_lsgan_and_cosine_distance():
    logits = torch.tensor([[0.5], [2.0]])
    assert lsgan(logits, True).item() == pytest.approx((0.25 + 1.0) / 2)
    assert lsgan(logits, False).item() == pytest.approx((0.25 + 4.0) / 2)
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1)
    b = torch.tensor([0.0, 1.0]).view(1, 2, 1)
    assert cosine_distance(a, b).item() == pytest.approx(1.0)  # |a - b|^2 / 2 of orthogonal unit vectors
    assert cosine_distance(a, 3 * a).item() == pytest.approx(0.0)


# --- schedules and training -------------------------------------------------------------------------------------
def kth(**settings):
    return create_predictor("savp", VideoSpec(1, 64, 64, 10, 10), preset="kth", **settings)


def test_kl_weight_anneals_linearly_from_50k_to_100k():
    model = kth()
    assert [model._kl_weight(i) for i in (0, 50_000, 75_000, 100_000, 200_000)] == pytest.approx(
        [0.0, 0.0, 0.005, 0.01, 0.01])
    assert create_predictor("savp", VideoSpec(1, 64, 64, 10, 10), preset="kth-gan")._kl_weight(200_000) == 0.0


def test_scheduled_sampling_is_the_inverse_sigmoid_and_ends_below_a_thousandth():
    model = kth()
    torch.manual_seed(0)
    assert model._ground_truth(4000, 1, 0, torch.device("cpu")).float().mean().item() == pytest.approx(
        900 / 901, abs=0.01)
    half = 900 * math.log(900)  # k / (k + exp(i / k)) = 1/2
    assert model._ground_truth(4000, 1, int(half), torch.device("cpu")).float().mean().item() == pytest.approx(
        0.5, abs=0.03)
    assert model._ground_truth(4, 1, 20_000, torch.device("cpu")) is None


class Recorder:
    """A trainer that applies nothing and records which optimizers step."""

    def __init__(self, iteration):
        self.iteration, self.steps = iteration, []

    def backward(self, loss):
        loss.backward()

    def step(self, name="model"):
        self.steps.append(name)


@pytest.mark.parametrize("variant, steps", [("savp", ["discriminator", "generator"]), ("vae", ["generator"]),
                                            ("gan", ["discriminator", "generator"])])
def test_each_variant_steps_its_optimizers_and_weighs_l1_and_kl(variant, steps):
    torch.manual_seed(0)
    model = create_predictor("savp", VideoSpec(1, 64, 64, 4, 4), preset="tiny", variant=variant,
                             kl_anneal_start=0, kl_anneal_end=1, kl_weight=0.5)
    trainer = Recorder(iteration=10)
    logs = model.training_step(torch.rand(2, 8, 1, 64, 64), trainer)
    assert trainer.steps == steps
    assert set(model.optimizer_groups()) == set(steps)
    vae_terms = 100.0 * logs["l1"] + (0.0 if variant == "gan" else 0.5) * logs["kl"]
    if variant == "vae":
        assert logs["loss"].item() == pytest.approx(vae_terms.item(), rel=1e-5)
    else:  # plus the adversarial terms, which are positive
        assert logs["loss"].item() > vae_terms.item() and "d_loss" in logs
    generator = model.optimizer_groups()["generator"][0]
    assert all(p.grad is not None for p in model.posterior.parameters())
    assert len(generator) + sum(len(list(d.parameters())) for d in model.modules_outside_prediction()) == len(
        list(model.parameters()))


def test_context_transitions_take_the_posterior_and_the_future_the_prior():
    torch.manual_seed(0)
    model = create_predictor("savp", VideoSpec(1, 64, 64, 4, 4), preset="tiny").eval()
    context = torch.rand(1, 4, 1, 64, 64)
    seen = []
    model.rnn_z.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    with torch.no_grad():
        model(context, 2, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 3, model.config.nz, generator=g)
    posterior, _, _ = model.posterior_z(context, noise)
    assert torch.allclose(torch.cat(seen[:3]), posterior[0], atol=1e-6)
    assert torch.allclose(torch.cat(seen[3:]), torch.randn(2, model.config.nz, generator=g), atol=1e-6)


def test_frames_not_divisible_by_the_levels_are_padded_and_cropped():
    model = create_predictor("savp", VideoSpec(1, 72, 80, 4, 4), preset="tiny").eval()
    assert model.padded == (72, 80)  # 3 levels: multiples of 8
    model = create_predictor("savp", VideoSpec(1, 68, 70, 4, 4), preset="tiny").eval()
    assert model.padded == (72, 72)
    with torch.no_grad():
        assert model(torch.rand(2, 4, 1, 68, 70), 3).shape == (2, 3, 1, 68, 70)
