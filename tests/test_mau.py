"""MAU: size and FLOPs equal to OpenSTL's published row and a hand count, the attention window kept at tau states,
the geometry refused with one line where the strided encoder cannot run, the authors' scheduled sampling (and
OpenSTL-Lightning's on request), OpenSTL's bare state dicts recognised. Its outputs are pinned by checkpoints written
by OpenSTL's and by the authors' code (tests/test_foreign.py, tests/test_reference_checkpoints.py)."""
from pathlib import Path

import pytest
import torch

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.costs import count_flops
from vpbench.foreign import load_weights
from vpbench.layers import patchify
from vpbench.predictor import count_parameters

from conftest import MMNIST, tiny
from reference_counts import Conv, totals

torch.set_num_threads(1)


# --- OpenSTL configs/mmnist/MAU.py: 4 cells x 64 on a 16x16 grid (64x64 frames, patch 1, sr_size 4), 5x5 filters,
# 19 steps (count_flops keeps the context steps' outputs, as the references return them). Each cell convolution has
# a bias and a LayerNorm over [C, 16, 16]: weight and bias per element, and 5 FLOPs per element under fvcore.
def mau_expected() -> tuple[int, int, int]:
    """(parameters, fvcore FLOPs, convolution FLOPs)."""
    h, steps, grid = 64, 19, 16 * 16
    cells = [Conv(h, width, 25, grid, steps) for _ in range(4) for width in (3 * h, h, 3 * h, h)]
    norm_elements = 4 * (3 * h + h + 3 * h + h) * grid  # conv_t, conv_t_next, conv_s, conv_s_next per cell
    codec = [Conv(1, h, 1, 64 * 64, steps),  # the encoder's 1x1 convolution
             Conv(h, h, 9, 32 * 32, steps), Conv(h, h, 9, 16 * 16, steps),  # stride 2 (at the output positions)
             Conv(h, h, 9, 16 * 16, steps), Conv(h, h, 9, 32 * 32, steps),  # transposed (at the input positions)
             Conv(h, 1, 1, 64 * 64, steps)]  # srcnn
    params, convolutions = totals(cells + codec)
    return params + 2 * norm_elements, convolutions + 5 * norm_elements * steps, convolutions


def test_mmnist_size_and_flops_equal_a_hand_count_and_openstls_table():
    params, flops, convolutions = mau_expected()
    model = create_predictor("mau", MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == params == 4_475_329
    counted = count_flops(model, torch.rand(1, 10, 1, 64, 64), 10)
    assert counted.fvcore == flops == 17_791_188_992 and counted.torch == convolutions  # torch counts no LayerNorm
    # OpenSTL's table (docs/en/model_zoos/video_benchmarks.md line 84): 4.5M, 17.8G. Its MAU_Model under fvcore, with
    # its exp.py's input, counts 17,791,188,992 too; its 4,483,588 parameters include the never-called 1x1 `merge` of
    # [T, S] and `conv_last_sr` of two frames.
    unused = Conv(2 * 64, 64, 1, 0, 0).params + Conv(2, 1, 1, 0, 0).params
    assert params + unused == 4_483_588 and round((params + unused) / 1e6, 1) == 4.5
    assert round(flops / 1e9, 1) == 17.8


def test_each_cell_keeps_the_last_tau_states_only():
    clip = torch.rand(1, 12, 1, 64, 64)
    model = tiny("mau").eval()
    tau = model.config.tau
    steps = []
    with torch.no_grad():
        state = model.init_state(1, clip.device, clip.dtype)
        for t in range(10):
            _, state = model.step(patchify(clip, model.config.patch_size)[:, t], state)
            steps.append(state["temporal"][0])
        _, final = model.rollout(patchify(clip, model.config.patch_size), 3 * 10, torch.ones(1, 30))
    # Memory stays flat over a long rollout: tau entries per layer, the newest last, where the references keep all.
    assert all(len(window) == tau for window in state["past_temporal"] + final["past_spatial"])
    assert all(a is b for a, b in zip(state["past_temporal"][0], steps[-tau:]))


@pytest.mark.parametrize("settings,message", [
    (dict(sr_size=4, patch_size=4), r"mau: sr_size 4 does not divide the patch grid 10x10 \(frames 40x40 cut into "
                                    r"4x4 patches\)"),
    (dict(sr_size=3), r"mau: sr_size=3 must be a power of two"),
    (dict(model_mode="skip"), r"model_mode"),
])
def test_a_geometry_the_encoder_cannot_run_is_one_error_line(settings, message):
    with pytest.raises(UserError, match=message):
        create_predictor("mau", VideoSpec(1, 40, 40, 2, 2), preset="tiny", **settings)


def test_scheduled_sampling_falls_linearly_as_the_authors_train_or_stays_as_openstl_lightnings():
    # The authors' MAU_run.py lowers eta by sampling_changing_rate 2e-5 each iteration from 1 (0 from iteration
    # 50,000); OpenSTL's Lightning MAU method lowers its constant self.eta = 1.0 by 2e-5 at every call and never stores
    # the result: 0.99998 until iteration 50,000, then 0.
    iterations = (0, 25_000, 49_999, 50_000, 60_000)
    model = create_predictor("mau", MMNIST, preset="mmnist")
    assert [model.sampling_probability(i) for i in iterations] == pytest.approx([1, 0.5, 2e-5, 0, 0])
    lightning = create_predictor("mau", MMNIST, preset="mmnist", lightning_sampling=True)
    assert [lightning.sampling_probability(i) for i in iterations] == pytest.approx([0.99998] * 3 + [0, 0])
    assert create_predictor("mau", MMNIST, preset="mmnist", lightning_sampling=True,
                            scheduled_sampling=False).sampling_probability(0) == 0


def test_a_bare_openstl_state_dict_is_told_by_its_never_called_tensors(tmp_path):
    """OpenSTL's published MAU weights (mmnist_mau_one_ep200.pth, before Lightning) are bare state dicts; the names
    are vpbench's but for `merge` and `conv_last_sr`, which tell the file apart and are dropped."""
    fixtures = Path(__file__).parent / "fixtures" / "openstl"
    lightning = torch.load(fixtures / "mau.ckpt", weights_only=True)["state_dict"]
    torch.save({k.removeprefix("model."): v for k, v in lightning.items()}, tmp_path / "mau.pth")
    expected = torch.load(fixtures / "expected-mau.pt", weights_only=True)["mau"]
    model = create_predictor("mau", VideoSpec(1, 64, 64, 2, 3), **expected["settings"]).eval()
    checkpoint = load_weights(model, tmp_path / "mau.pth")
    assert checkpoint.notes[0] == "OpenSTL checkpoint (a bare state dict)"
    context = torch.rand(1, 2, 1, 64, 64, generator=torch.Generator().manual_seed(1))  # make.py's seeded input
    with torch.no_grad():
        assert (model(context, 3) - expected["output"]).abs().max() < 1e-6
