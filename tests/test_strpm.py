"""STRPM: size and parameter layout equal to the reference model, its GAN step, its presets, and the reference's
memory windows (`reference_memory=true`) restated."""
import pytest
import torch

from vpbench.errors import UserError
from vpbench.foreign import configure, load_into, read_checkpoint
from vpbench.predictor import count_parameters, create_predictor
from vpbench.predictors.strpm import STRPM
from vpbench.layers import patchify
from vpbench.spec import VideoSpec
from vpbench.foreign import load_weights
from vpbench.training import TrainContext

from conftest import MMNIST, tiny
from reference_counts import Conv, totals

torch.set_num_threads(1)

# --- STRPM at ucf-sports (configs/ucfsport_configs.py): 512x512x3 in 8x8 patches (192 channels, 64x64 grid),
# sr_size 4 (16x16 latent), 16 RPM cells x 128, tau 5, 5x5 filters. The paper has no Moving MNIST setting, so the
# size is pinned here. All convolutions have biases; every LayerNorm is over [128, 16, 16] with weight and bias.
def strpm_ucf_sports_expected():
    h, f, latent, n, tau, layers = 128, 192, 16 * 16, 2, 5, 16
    cell = [Conv(h, h, 25, 0, 0) for _ in range(5)]  # en_t, en_s, en_o, conv_h, conv_m
    cell += [Conv(2 * h, h, 25, 0, 0), Conv(2 * h, h, 1, 0, 0)]  # conv_o, conv_last
    cell += [Conv(tau * h, h, 25, 0, 0) for _ in range(2)]  # att_c, att_m over the tau-state windows
    norms = 8 * 2 * h * latent
    residual = Conv(3 * h, h, 1, 0, 0).params  # conv_sto: called in the first cell only
    codec = []
    for _ in range(3):  # temporal, spatial and output encoders and decoders, 1x1 heads
        codec += [Conv(f, h, 1, 0, 0)] + [Conv(h, h, 9, 0, 0) for _ in range(n)]
        codec += [Conv(h, h, 9, 0, 0) for _ in range(n)] + [Conv(h, f, 1, 0, 0)]
    codec.append(Conv(2 * f, f, 1, 0, 0))  # conv_last_sr
    predicting = layers * (totals(cell)[0] + norms) + residual + totals(codec)[0]
    return predicting, predicting + (layers - 1) * residual


def test_strpm_ucf_sports_size_equals_a_hand_count():
    predicting, state_dict = strpm_ucf_sports_expected()
    model = create_predictor("strpm", VideoSpec(3, 512, 512, 4, 6), preset="ucf-sports")
    assert model.latent == (16, 16)
    assert count_parameters(model)[0] == predicting == 122_385_152
    generator = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("discriminator."))
    assert generator == state_dict == 123_124_352  # the reference RNN's state dict, 15 unused conv_sto included
    # STIP's discriminator on 64x64 grids of 192 channels: 6 stride-2 blocks, 1x1x64 features.
    blocks = [Conv(192, 64, 9, 0, 0)] + [Conv(64, 64, 9, 0, 0) for _ in range(5)]
    assert sum(p.numel() for p in model.discriminator.parameters()) == totals(blocks)[0] + 6 * 2 * 64 + 64 + 1


def reference_strpm_layout(f: int, h: int, layers: int, sr: int, k: int, tau: int, latent: tuple) -> dict:
    """core/models/STRPM.py RNN(num_layers, [h] * layers, configs).state_dict() without biases: key -> shape."""
    out, n = {}, sr.bit_length() - 1
    for i in range(layers):
        for name, cin in (("en_t", h), ("en_s", h), ("en_o", h), ("conv_h", h), ("conv_m", h), ("conv_o", 2 * h),
                          ("att_c", tau * h), ("att_m", tau * h)):
            out[f"cell_list.{i}.{name}.0.weight"] = (h, cin, k, k)
            out[f"cell_list.{i}.{name}.1.weight"] = (h, *latent)
        out[f"cell_list.{i}.conv_last.weight"] = (h, 2 * h, 1, 1)
        out[f"cell_list.{i}.conv_sto.weight"] = (h, 3 * h, 1, 1)
    for b in ("t", "s", "o"):
        out[f"encoder_{b}.encoder_{b}_conv-1.weight"] = (h, f, 1, 1)
        out.update({f"encoder_{b}.encoder_{b}{i}.weight": (h, h, 3, 3) for i in range(n)})
    for b, prefix in (("s", "c"), ("t", "m"), ("o", "o")):
        out.update({f"decoder_{b}.{prefix}_decoder{i}.weight": (h, h, 3, 3) for i in range(n)})
        out[f"{prefix}_srcnn.0.weight"] = (f, h, 1, 1)
    out["conv_last_sr.weight"] = (f, 2 * f, 1, 1)
    return out


def test_strpm_parameter_names_are_the_reference_layout(tmp_path):
    model = create_predictor("strpm", VideoSpec(3, 64, 64, 4, 4), preset="moving-shapes", num_layers=3)
    weights = {k: tuple(v.shape) for k, v in model.state_dict().items()
               if k.endswith("weight") and not k.startswith("discriminator.")}
    assert weights == reference_strpm_layout(f=192, h=32, layers=3, sr=8, k=3, tau=3, latent=(1, 1))
    # Official files ({"net_param": ...}) need the code's memory windows and BGR frames: loading one into a model
    # built otherwise names both settings (through `--checkpoint` they are set).
    torch.save({"net_param": {k: v for k, v in model.state_dict().items() if not k.startswith("discriminator.")}},
               tmp_path / "model_pm.ckpt-1")
    with pytest.raises(UserError, match="reference_memory=true --set strpm.channel_order=bgr"):
        load_weights(model, tmp_path / "model_pm.ckpt-1")
    checkpoint = read_checkpoint(tmp_path / "model_pm.ckpt-1", STRPM)
    assert configure(checkpoint, model.spec, {}) == {"reference_memory": True, "channel_order": "bgr"}
    official = create_predictor("strpm", model.spec, preset="moving-shapes", num_layers=3, reference_memory=True,
                                channel_order="bgr")
    load_into(official, checkpoint)
    with pytest.raises(UserError, match="MGST-AE"):
        create_predictor("strpm", MMNIST, preset="moving-digits", mgir=False)


def test_strpm_gan_step_updates_generator_and_discriminator():
    model = tiny("strpm", lr=1e-2)
    trainer = TrainContext(model, model.config, "fp32", torch.device("cpu"))
    assert set(trainer.optimizers) == {"generator", "discriminator"}
    assert trainer.lr("discriminator") == 5e-4 and trainer.lr("generator") == 1e-2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = model.training_step(torch.rand(2, 20, 1, 64, 64), trainer)
    assert {"loss", "mse", "lp", "adv", "d_loss"} <= set(step)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("discriminator.") for k in changed)
    assert any(k.startswith("cell_list.") for k in changed) and any(k.startswith("encoder_t.") for k in changed)
    assert not any(k.startswith("cell_list.1.conv_sto") for k in changed)  # never called above the first cell


def test_strpm_moving_digits_preset_takes_8x8_patches():
    model = create_predictor("strpm", MMNIST, preset="moving-digits", patch_size=8)
    assert model.latent == (2, 2)
    with torch.no_grad():
        assert model(torch.rand(1, 10, 1, 64, 64), 3).shape == (1, 3, 1, 64, 64)


def reference_strpm_rollout(model, truth: torch.Tensor) -> torch.Tensor:
    """RNN.forward of the reference on patch frames [B, T, F, h, w], teacher-forced: its state bookkeeping restated
    (one list object of per-layer cell states appended every step; the memory list indexed by the step count
    while it is short), with this model's cells and codecs for the arithmetic."""
    cfg, steps = model.config, truth.shape[1] - 1
    tau, layers = cfg.tau, cfg.num_layers
    zeros = torch.zeros(truth.shape[0], cfg.num_hidden, *model.latent)
    h_t, c_t = [zeros] * layers, [zeros] * layers
    c_net, m_net, memory = [c_t], [zeros], zeros

    def window(items: list, count: int) -> list:
        if len(items) > tau:
            return items[-tau:]
        return [items[0] if idx < tau - count else items[idx - tau + count] for idx in range(tau)]

    outputs = []
    for t in range(steps):
        net = truth[:, t]
        inputs = (model.encoder_t(net), model.encoder_s(net), model.encoder_o(net))
        for i, cell in enumerate(model.cell_list):
            c_att = [entry[i] for entry in window(c_net, len(c_net))]
            m_att = window(m_net, len(c_net))
            h_t[i], gate, c_t[i], memory = cell(inputs, h_t[i], memory, c_att, m_att, first=i == 0,
                                                gate_residual=True)
            m_net.append(memory)
            inputs = (h_t[i],) * 3
        c_net.append(c_t)
        m_sr = model.m_srcnn(model.decoder_s(memory))
        c_sr = model.c_srcnn(model.decoder_t(c_t[-1]))
        outputs.append(model.o_srcnn(model.decoder_o(gate)) * torch.tanh(model.conv_last_sr(torch.cat([c_sr, m_sr], 1))))
    return torch.stack(outputs, 1)


def test_strpm_reference_memory_reproduces_the_reference_state_flow():
    # 2 layers, tau 3: the memory list is short for the first three cells, then the last three memories are read.
    model = tiny("strpm", tau=3, reference_memory=True).eval()
    truth = patchify(torch.rand(2, 6, 1, 64, 64), 4)
    with torch.no_grad():
        ours = model.unroll(truth, 5, torch.ones(2, 5))
        assert torch.allclose(ours, reference_strpm_rollout(model, truth), atol=1e-6)
        paper = tiny("strpm", tau=3)
        paper.load_state_dict(model.state_dict())
        _, state = paper.rollout(truth, 5, torch.ones(2, 5))
        _, shorter = paper.rollout(truth, 4, torch.ones(2, 4))
    # The paper's windows hold the last tau distinct cell states and memories, oldest first.
    assert all(torch.equal(a, b) for a, b in zip(state["c"][0][:-1], shorter["c"][0][1:]))
    assert not torch.equal(state["c"][0][-1], state["c"][0][-2])
    assert len(state["m"]) == 3 and torch.equal(state["m"][0], shorter["m"][-1])  # two memories a step
