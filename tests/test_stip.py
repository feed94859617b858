"""STIP: the reference layout and forward, official checkpoints, the GAN step, ablations, schedules.

The reference (ZhengChang467/STIPHR, core/models/STIP.py, core/layers/STGRUCell.py, STRPM's
core/models/Discriminator*.py) is re-stated here independently of predictors/stip.py: the state-dict
layout as key -> shape, and the forward as functional code over such a state dict.
"""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import run_bench
from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.layers import patchify
from vpbench.spec import VideoSpec
from vpbench.foreign import load_weights
from vpbench.training import TrainContext

torch.set_num_threads(1)


# --- the reference, re-stated -------------------------------------------------------------------------
def reference_generator_layout(f: int, h: int, layers: int, sr: int, k: int, latent: tuple) -> dict:
    """core/models/STIP.py RNN(num_layers, [h] * layers, configs).state_dict(): key -> shape."""
    n = int(math.log2(sr))
    out = {}
    for i in range(layers):
        for conv in ("conv_t", "conv_s"):
            out[f"cell_list.{i}.{conv}.0.weight"] = (4 * h, h, k, k)
            out[f"cell_list.{i}.{conv}.0.bias"] = (4 * h,)
            out[f"cell_list.{i}.{conv}.1.weight"] = (4 * h, *latent)
            out[f"cell_list.{i}.{conv}.1.bias"] = (4 * h, *latent)
        out[f"cell_list.{i}.conv_last.weight"] = (h, 2 * h, 1, 1)
        out[f"cell_list.{i}.conv_last.bias"] = (h,)
    for b in ("s", "t"):
        out[f"{b}_encoder3d.encoder3d_{b}_conv-1.weight"] = (h, f, 2, 1, 1)
        out[f"{b}_encoder3d.encoder3d_{b}_conv-1.bias"] = (h,)
        for i in range(n):
            out[f"{b}_encoders.{i}.encoder_{b}{i}.weight"] = (h, h, 3, 3)
            out[f"{b}_encoders.{i}.encoder_{b}{i}.bias"] = (h,)
    for b in ("s", "t"):
        for i in range(n):
            out[f"{b}_decoders.{i}.{b}_decoder{i}.weight"] = (h, h, 3, 3)
            out[f"{b}_decoders.{i}.{b}_decoder{i}.bias"] = (h,)
    for b in ("s", "t"):
        out[f"{b}_srcnn.0.weight"] = (f, h, 1, 1)
        out[f"{b}_srcnn.0.bias"] = (f,)
    for name in ("merge_t", "merge"):
        out[f"{name}.weight"] = (h, 2 * h, 1, 1)
        out[f"{name}.bias"] = (h,)
    out["conv_last_sr.weight"] = (f, 2 * f, 1, 1)
    out["conv_last_sr.bias"] = (f,)
    return out


def reference_discriminator_layout(f: int, height: int, linear_in: int, hidden: int = 64) -> dict:
    """core/models/Discriminator(_4k).py: `main` Sequential and `linear`; n = int(log2(height)) blocks."""
    out = {"main.0.weight": (hidden, f, 3, 3), "main.0.bias": (hidden,), "main.1.weight": (hidden,),
           "main.1.bias": (hidden,)}
    for i in range(1, int(math.log2(height))):
        out.update({f"main.conv_{i}.weight": (hidden, hidden, 3, 3), f"main.conv_{i}.bias": (hidden,),
                    f"main.gn_{i}.weight": (hidden,), f"main.gn_{i}.bias": (hidden,)})
    out.update({"linear.0.weight": (1, linear_in), "linear.0.bias": (1,)})
    return out


def random_state(layout: dict, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {key: 0.1 * torch.randn(shape, generator=gen) for key, shape in layout.items()}


def reference_forward(sd: dict, frames: torch.Tensor, mask: torch.Tensor, input_length: int, layers: int,
                      hidden: int, sr: int, alpha: float) -> torch.Tensor:
    """RNN.forward on patch frames [B, T, F, h, w]; mask [B, T - input_length - 1] feeds truth where 1."""
    b, total, c, hh, ww = frames.shape
    n = int(math.log2(sr))
    lrelu = lambda x: F.leaky_relu(x, 0.2)  # noqa: E731
    conv = lambda x, key, **kw: F.conv2d(x, sd[key + ".weight"], sd[key + ".bias"], **kw)  # noqa: E731

    def cell(i, t_t, s_t):
        def gates(x, name):
            y = conv(x, f"cell_list.{i}.{name}.0", padding=sd[f"cell_list.{i}.{name}.0.weight"].shape[-1] // 2)
            return F.layer_norm(y, y.shape[1:], sd[f"cell_list.{i}.{name}.1.weight"], sd[f"cell_list.{i}.{name}.1.bias"])
        t_z, t_r, t_t2, t_s = torch.split(gates(t_t, "conv_t"), hidden, 1)
        s_z, s_r, s_t2, s_s = torch.split(gates(s_t, "conv_s"), hidden, 1)
        z = torch.sigmoid(t_z + s_z + 1.0)
        r = torch.sigmoid(t_r + s_r)
        return (1 - z) * torch.tanh(t_t2 + r * s_t2) + z * t_t, (1 - z) * torch.tanh(s_s + r * t_s) + z * s_t

    inputs = [torch.zeros(b, c, hh, ww)]
    temporal, x_gen, outs = None, None, []
    for t in range(total - 1):
        if t < input_length:
            net = frames[:, t]
        else:
            m = mask[:, t - input_length].view(b, 1, 1, 1)
            net = m * frames[:, t] + (1 - m) * x_gen
        inputs.append(net)
        clip = torch.stack(inputs[t:], dim=2)
        feats = {}
        for br in ("s", "t"):
            x = lrelu(F.conv3d(clip, sd[f"{br}_encoder3d.encoder3d_{br}_conv-1.weight"],
                               sd[f"{br}_encoder3d.encoder3d_{br}_conv-1.bias"])).squeeze(2)
            enc = []
            for i in range(n):
                x = lrelu(conv(x, f"{br}_encoders.{i}.encoder_{br}{i}", stride=2, padding=1))
                enc.append(x)
            feats[br] = (x, enc)
        if t == 0:
            temporal = [torch.zeros(b, hidden, hh // sr, ww // sr) for _ in range(layers)]
        s_state = feats["s"][0]
        for i in range(layers):
            if i == 0:
                temporal[0] = conv(torch.cat([temporal[0], feats["t"][0]], 1), "merge_t")
            temporal[i], s_state = cell(i, temporal[i], s_state)
        decoded = {"s": temporal[-1], "t": s_state}
        for br in ("s", "t"):
            x = decoded[br]
            for i in range(n):
                key = f"{br}_decoders.{i}.{br}_decoder{i}"
                x = F.conv_transpose2d(x, sd[key + ".weight"], sd[key + ".bias"], stride=2, padding=1, output_padding=1)
                if i < n - 1:
                    x = lrelu(x) + alpha * feats[br][1][-2 - i]
            decoded[br] = conv(x, f"{br}_srcnn.0")
        x_gen = conv(torch.cat([decoded["s"], decoded["t"]], 1), "conv_last_sr")
        outs.append(x_gen)
    return torch.stack(outs, dim=1)


def reference_discriminator(sd: dict, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator.forward: a loop over frames, probabilities averaged, features stacked."""
    probs, feats = [], []
    blocks = [("main.0", "main.1")] + [(f"main.conv_{i}", f"main.gn_{i}")
                                       for i in range(1, 1 + sum(k.startswith("main.conv_") for k in sd) // 2)]
    for t in range(frames.shape[1]):
        x = frames[:, t]
        for conv, gn in blocks:
            x = F.conv2d(x, sd[conv + ".weight"], sd[conv + ".bias"], stride=2, padding=1)
            x = F.relu(F.group_norm(x, 4, sd[gn + ".weight"], sd[gn + ".bias"]))
        x = x.reshape(x.shape[0], -1)
        feats.append(x)
        probs.append(torch.sigmoid(F.linear(x, sd["linear.0.weight"], sd["linear.0.bias"])))
    return torch.cat(probs, 1).mean(1), torch.stack(feats, 1)


# --- a model small enough for the CPU -------------------------------------------------------------
SMALL = dict(num_layers=2, num_hidden=8, filter_size=3, patch_size=2, sr_size=8, d_hidden=8)
SPEC = VideoSpec(3, 32, 32, 3, 3)  # patch grid 16x16, STGRU grid 2x2, three encoder levels


def small_stip(spec=SPEC, seed=0, **overrides):
    torch.manual_seed(seed)
    return create_predictor("stip", spec, **{**SMALL, **overrides})


def small_layout(h=8, f=12, layers=2, sr=8, grid=(16, 16)):
    return reference_generator_layout(f, h, layers, sr, 3, (grid[0] // sr, grid[1] // sr))


# --- layout, parameter counts, official checkpoints ------------------------------------------------
PAPER = [  # preset, spec, F, STGRU grid, discriminator height (patch rows) and linear input
    ("ucf-sports", VideoSpec(3, 512, 512, 4, 6), 12, (16, 16), 256, 64),
    ("human36m", VideoSpec(3, 1024, 1024, 4, 4), 48, (16, 16), 256, 64),
    ("sjtu4k", VideoSpec(3, 2160, 3840, 4, 4), 192, (17, 30), 272, 256),  # Discriminator_4k: 256
]


@pytest.mark.parametrize("preset,spec,f,latent,d_height,d_linear", PAPER, ids=[p[0] for p in PAPER])
def test_paper_presets_have_the_reference_layout_and_load_published_checkpoints(
        tmp_path, preset, spec, f, latent, d_height, d_linear):
    model = create_predictor("stip", spec, preset=preset, channel_order="bgr")
    gen_layout = reference_generator_layout(f, 64, 16, 16, 5, latent)
    d_layout = reference_discriminator_layout(f, d_height, d_linear)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {**gen_layout, **{f"discriminator.{k}": v for k, v in d_layout.items()}}

    # Parameter counts: what predicts excludes `merge`, the cells' `conv_last` and the discriminator.
    unused = {k: s for k, s in gen_layout.items() if k.startswith("merge.") or ".conv_last." in k}
    size = lambda layout: sum(math.prod(s) for s in layout.values())  # noqa: E731
    assert size(unused) == 17 * (64 * 128 + 64)
    assert count_parameters(model) == (size(gen_layout) - size(unused),) * 2

    # The published files: {"net_param": state_dict} for the predictor (model_pm) and the discriminator (model_d).
    pm = random_state(gen_layout)
    torch.save({"net_param": pm}, tmp_path / "model_pm.ckpt-1")
    load_weights(model, tmp_path / "model_pm.ckpt-1")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in pm.items())
    model.discriminator.load_state_dict(random_state(d_layout), strict=True)


def test_official_checkpoints_are_refused_when_they_do_not_fit(tmp_path):
    spec = VideoSpec(3, 32, 32, 3, 3)
    pm = random_state(small_layout())
    torch.save({"net_param": pm}, tmp_path / "pm")
    with pytest.raises(UserError, match="channel_order=bgr"):
        load_weights(small_stip(spec), tmp_path / "pm")
    torch.save({"net_param": {k: v for k, v in pm.items() if not k.startswith("merge.")}}, tmp_path / "partial")
    with pytest.raises(UserError, match="does not fit stip.*merge.weight"):
        load_weights(small_stip(spec, channel_order="bgr"), tmp_path / "partial")
    torch.save({"net_param": random_state(reference_discriminator_layout(12, 16, 8, 8))}, tmp_path / "d")
    with pytest.raises(UserError, match="model_d"):
        load_weights(small_stip(spec, channel_order="bgr"), tmp_path / "d")


# --- the forward, against the re-stated reference ---------------------------------------------------
def test_rollout_with_scheduled_sampling_equals_the_reference_forward():
    model = small_stip()
    sd = model.state_dict()
    frames = patchify(torch.rand(2, 7, 3, 32, 32), 2)
    reference_mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # steps 3, 4, 5
    mask = torch.cat([torch.ones(2, 3), reference_mask], 1)
    with torch.no_grad():
        ours = model.unroll(frames, 6, mask)
        ref = reference_forward(sd, frames, reference_mask, input_length=3, layers=2, hidden=8, sr=8, alpha=0.1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_discriminator_equals_the_reference():
    model = small_stip()
    sd = {k.removeprefix("discriminator."): v for k, v in model.state_dict().items() if k.startswith("discriminator.")}
    frames = torch.rand(2, 4, 12, 16, 16)
    prob, feats = model.discriminator(frames)
    ref_prob, ref_feats = reference_discriminator(sd, frames)
    torch.testing.assert_close(prob, ref_prob)
    torch.testing.assert_close(feats, ref_feats)


def test_bgr_weights_see_bgr_frames_and_give_back_rgb():
    rgb, bgr = small_stip(seed=1), small_stip(seed=2, channel_order="bgr")
    bgr.load_state_dict(rgb.state_dict())
    context = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bgr(context, 2), rgb(context.flip(2), 2).flip(2))
        assert not torch.allclose(bgr(context, 2), rgb(context, 2))


def test_frames_the_encoders_cannot_divide_are_padded_then_cropped():
    spec = VideoSpec(3, 28, 32, 3, 2)  # 14 patch rows; sr_size 8 needs 16
    model = small_stip(spec)
    assert model.patch_grid == (16, 16)
    context = torch.rand(2, 3, 3, 28, 32)
    padded = torch.cat([context, context[..., -1:, :].expand(-1, -1, -1, 4, -1)], dim=3)
    with torch.no_grad():
        out = model(context, 2)
        expected = model.unroll(patchify(padded, 2), 4, torch.ones(2, 3), keep_from=2)
    assert out.shape == (2, 2, 3, 28, 32)
    torch.testing.assert_close(patchify(out, 2), expected[..., :14, :])


# --- training: the GAN step, ablations, schedules ---------------------------------------------------
def train_once(model, clip, iteration=0):
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    trainer.iteration = iteration
    return trainer, model.training_step(clip, trainer)


def gan_step(model, clip):
    """One training step: the losses it reports, and its generator's terms computed apart from it: the MSE of the
    rollout it trains on (made before the step, from the same weights; at iteration 0 every step is fed truth),
    the LP-loss and the adversarial BCE from the discriminator the step left, the one its generator pass saw."""
    with torch.no_grad():
        prediction, target = model._teacher_forced(clip, 0)
    _, reported = train_once(model, clip)
    with torch.no_grad():
        probability, fake_features = model.discriminator(prediction)
        real_features = model.discriminator(target)[1]
    terms = {"mse": F.mse_loss(prediction, target), "lp": F.mse_loss(fake_features, real_features),
             "adv": F.binary_cross_entropy(probability, torch.ones_like(probability))}
    return reported, {name: value.item() for name, value in terms.items()}


def test_gan_step_updates_both_networks_and_keeps_predictor_gradients_out_of_the_discriminator():
    model = small_stip()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clip = torch.rand(2, 6, 3, 32, 32)
    losses, terms = gan_step(model, clip)
    after = model.state_dict()
    assert not torch.equal(before["discriminator.main.0.weight"], after["discriminator.main.0.weight"])
    assert not torch.equal(before["s_encoder3d.encoder3d_s_conv-1.weight"], after["s_encoder3d.encoder3d_s_conv-1.weight"])
    assert torch.equal(before["merge.weight"], after["merge.weight"])  # never called, never trained
    # The predictor's loss must not leave gradients in the discriminator for its next update.
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert {name: losses[name].item() for name in terms} == pytest.approx(terms, rel=1e-5)
    expected = terms["mse"] + 0.01 * terms["lp"] + 0.001 * terms["adv"]  # lp_weight, adv_weight: STIP's defaults
    assert losses["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["lp"] > 0 and losses["d_loss"] > 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gan_step_and_rollout_under_mixed_precision(precision):
    model = small_stip()
    trainer = TrainContext(model, model.config, precision, torch.device("cpu"))
    with trainer.autocast():
        losses = model.training_step(torch.rand(2, 6, 3, 32, 32), trainer)
        with torch.no_grad():
            out = model(torch.rand(2, 3, 3, 32, 32), 3)
    assert all(torch.isfinite(v) for v in losses.values()) and torch.isfinite(out).all()


def test_discriminator_update_is_an_adam_step_on_its_own_loss():
    model = small_stip()
    clip = torch.rand(2, 6, 3, 32, 32)
    d_before = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    with torch.no_grad():
        prediction, target = model._teacher_forced(clip, 0)
    torch.manual_seed(0)  # the same sampling mask in both passes (eta = 1 at iteration 0 anyway)
    probe = small_stip()
    fake, real = probe.discriminator(prediction)[0], probe.discriminator(target)[0]
    d_loss = F.binary_cross_entropy(fake, torch.zeros_like(fake)) + F.binary_cross_entropy(real, torch.ones_like(real))
    grads = dict(zip(d_before, torch.autograd.grad(d_loss, list(probe.discriminator.parameters()))))
    train_once(model, clip)
    for key, grad in grads.items():  # Adam's first step moves each weight by lr * g / (|g| + eps)
        step = 5e-4 * grad / (grad.abs() + 1e-8)
        torch.testing.assert_close(model.discriminator.state_dict()[key], d_before[key] - step, rtol=1e-4, atol=1e-6)


def test_loss_ablations_change_the_objective():
    clip = torch.rand(2, 6, 3, 32, 32)
    no_lp, terms = gan_step(small_stip(lp_weight=0.0), clip)
    assert no_lp["loss"].item() == pytest.approx(terms["mse"] + 0.001 * terms["adv"], rel=1e-5)
    no_adv, terms = gan_step(small_stip(adv_weight=0.0), clip)
    assert no_adv["loss"].item() == pytest.approx(terms["mse"] + 0.01 * terms["lp"], rel=1e-5)
    mse_only = small_stip(lp_weight=0.0, adv_weight=0.0)
    assert mse_only.discriminator is None and set(mse_only.optimizer_groups()) == {"generator"}
    _, plain = train_once(mse_only, clip)
    with torch.no_grad():
        assert plain["loss"].item() == pytest.approx(small_stip(lp_weight=0.0, adv_weight=0.0)
                                                     .training_loss(clip, 0).item(), rel=1e-6)


def test_sted_off_shares_one_encoder():
    full, shared = small_stip(), small_stip(sted=False)
    t_encoder = 8 * 12 * 2 + 8 + 3 * (8 * 8 * 9 + 8)  # Conv3d F->h (2,1,1) and three 3x3 h->h convolutions
    assert count_parameters(full)[0] - count_parameters(shared)[0] == t_encoder
    assert not any(k.startswith("t_encoder") for k in shared.state_dict())
    weights = {k: v for k, v in full.state_dict().items() if not k.startswith("t_encoder")}
    shared.load_state_dict(weights)
    # With the temporal encoder's weights set to the spatial one's, the full model computes the same.
    for k, v in full.state_dict().items():
        if k.startswith("t_encoder"):
            v.copy_(full.state_dict()[k.replace("t_encoder", "s_encoder").replace("_t", "_s")])
    context = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(shared(context, 2), full(context, 2))


def test_mgir_off_removes_the_recall_skips():
    on, off, zero = small_stip(), small_stip(mgir=False), small_stip(alpha=0.0)
    off.load_state_dict(on.state_dict())
    zero.load_state_dict(on.state_dict())
    assert count_parameters(off) == count_parameters(on)
    context = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(off(context, 2), zero(context, 2))
        assert not torch.allclose(off(context, 2), on(context, 2))


def test_learning_rates_decay_like_the_reference_once_sampling_stops():
    model = small_stip(lr_decay_start=6, lr_step_every=4, sampling_stop_iter=6)
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    lr, lr_d, seen = 5e-3, 5e-4, []
    for itr in range(20):
        seen.append((trainer.lr("generator"), trainer.lr("discriminator"), trainer.lr()))
        assert seen[-1] == pytest.approx((lr, lr_d, lr))
        trainer.step("generator")
        trainer.step("discriminator")
        if itr >= 6 and itr % 4 == 0:  # model_factory.train: after the update, both schedulers
            lr, lr_d = lr * 0.9, lr_d * 0.9
    assert seen[7][0] == pytest.approx(5e-3) and seen[9][0] == pytest.approx(5e-3 * 0.9)


def test_settings_it_cannot_build_are_refused():
    with pytest.raises(UserError, match="power of two"):
        small_stip(sr_size=6)
    with pytest.raises(UserError, match="3-channel"):
        small_stip(VideoSpec(1, 32, 32, 3, 3), channel_order="bgr")


# --- through the command line ----------------------------------------------------------------------
TINY_STIP = ["--set", "stip.num_layers=1", "--set", "stip.num_hidden=8", "--set", "stip.d_hidden=8",
             "--set", "data.val_size=4", "--set", "data.test_size=4"]


def test_cli_trains_and_evaluates_stip_and_evaluates_an_official_checkpoint(tmp_path):
    run_bench("run", "--models", "stip", "--dataset", "moving-digits", "--out", "R", *TINY_STIP,
              "--set", "stip.max_iterations=4", "--set", "stip.val_every=2", "--set", "stip.batch_size=2",
              "--set", "data.train_size=16", cwd=tmp_path)
    (run_dir,) = (tmp_path / "R" / "moving-digits" / "stip").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["eval"]["sequences"] == 4 and result["train"]["iterations"] == 4
    trained = [json.loads(line) for line in (run_dir / "train.log").read_text().splitlines()]
    assert {"mse", "lp", "adv", "d_loss", "lr"} <= set(next(e for e in trained if e["event"] == "train"))

    # An official-layout file at the moving-shapes preset (patch 8, sr_size 8 -> 4x4 STGRU grid at 256x256): its
    # weights were trained on BGR frames, so loading it sets the colour order, says so and records it.
    pm = random_state(reference_generator_layout(192, 8, 1, 8, 3, (4, 4)))
    torch.save({"net_param": pm}, tmp_path / "model_pm.ckpt-1")
    proc = run_bench("eval", "--models", "stip", "--dataset", "moving-shapes", "--out", "R", *TINY_STIP,
                     "--checkpoint", "model_pm.ckpt-1", cwd=tmp_path)
    said = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines
    assert "stip: model_pm.ckpt-1: official STIP checkpoint; set channel_order='bgr'" in said
    (given,) = (tmp_path / "R" / "moving-shapes" / "stip").glob("*/result.json")
    record = json.loads(given.read_text())
    assert record["eval"]["checkpoint"] == "model_pm.ckpt-1" and record["train"] is None
    assert record["config"]["channel_order"] == "bgr" and len(record["eval"]["checkpoint_notes"]) == 2
    assert record["costs"]["params"] == sum(v.numel() for k, v in pm.items()
                                            if not (k.startswith("merge.") or ".conv_last." in k))
