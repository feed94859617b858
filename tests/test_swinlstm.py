"""SwinLSTM: size and FLOPs at the mmnist presets equal a hand count and OpenSTL's own models under fvcore (its table
lists no SwinLSTM), training closed-loop on the future as both references do, timm's window rule, OpenSTL's
stochastic depth per block, and the geometries the model cannot run refused in one line. Its outputs are
pinned by checkpoints written by OpenSTL's own modules (tests/test_foreign.py: swinlstm-d, swinlstm-b, and a bare
state dict of the latter)."""
import pytest
import torch

from vpbench import UserError, VideoSpec, create_predictor
from vpbench.acceleration import prepare_execution
from vpbench.costs import count_flops
from vpbench.predictor import count_parameters

from conftest import MMNIST, tiny

torch.set_num_threads(1)

D_SMALL = dict(variant="d", embed_dim=8, depths_down=(1, 1), depths_up=(1, 1), num_heads=(1, 2))  # tiny is a B
STEPS = 19  # a 10 -> 10 rollout: 9 context reconstructions and 10 predictions, all returned by the references


def block(d: int, tokens: int, heads: int, window: int, mixes: bool) -> tuple[int, int, int]:
    """One Swin block of a cell at width d: (parameters, multiply-adds, LayerNorm elements) of one step. Linears: qkv
    3d^2, projection d^2, MLP 2 x 4d^2, and where the block mixes a second input the 2d -> d `red`; attention: q.k and
    a.v, each tokens x window^2 x d; LayerNorms: norm1 over its input (and the second input), norm2."""
    params = 2 * d + (2 * window - 1) ** 2 * heads + 4 * d * d + 4 * d + 2 * d + 8 * d * d + 5 * d
    macs = tokens * 12 * d * d + 2 * tokens * window ** 2 * d
    if mixes:
        params += 2 * d * d + d
        macs += tokens * 2 * d * d
    return params, macs, tokens * d * (3 if mixes else 2)


def cell(d: int, grid: int, depth: int, heads: int, window: int = 4) -> tuple[int, int, int, int]:
    """(parameters, multiply-adds, LayerNorm elements, parameters of the never-called `red` of the odd blocks)."""
    counts = [block(d, grid * grid, heads, window, i % 2 == 0) for i in range(depth)]
    unused = (depth // 2) * (2 * d * d + d)
    return (*(sum(c[k] for c in counts) for k in range(3)), unused)


def codec(e: int) -> tuple[int, int, int]:
    """Patch embedding (2x2 convolution 1 -> e, LayerNorm) on the 32x32 patch grid and the inflation (transposed 3x3,
    e -> 1, counted at its 32x32 input positions as fvcore counts it)."""
    params = (4 * e + e) + 2 * e + (9 * e + 1)
    return params, 1024 * (4 * e + 9 * e), 1024 * e


def test_swinlstm_d_at_mmnist_equals_a_hand_count_and_openstls_model():
    # configs/mmnist/SwinLSTM-D.py: embed 128; down: 32x32 (128, 2 blocks, 4 heads), 16x16 (256, 6, 8); up from the
    # deepest: 8x8 (512, depths_up[1] = 2, heads[1] = 8), 16x16 (256, depths_up[0] = 6, heads[0] = 4).
    cells = [cell(128, 32, 2, 4), cell(256, 16, 6, 8), cell(512, 8, 2, 8), cell(256, 16, 6, 4)]
    # Patch merging at 128 (32x32 -> 16x16) and 256 (16x16 -> 8x8): LayerNorm over 4d, 4d -> 2d without bias; patch
    # expanding at 512 (8x8) and 256 (16x16): d -> 2d without bias, LayerNorm over d/2 on 4x the tokens.
    merges = [(8 * d + 8 * d * d, 2 * tokens * d * d, tokens * d) for d, tokens in ((128, 1024), (256, 256))]
    expands = [(2 * d * d + d, 2 * tokens * d * d, 2 * tokens * d) for d, tokens in ((512, 64), (256, 256))]
    parts = [c[:3] for c in cells] + merges + expands + [codec(128)]
    params, macs, norms = (sum(p[k] for p in parts) for k in range(3))
    flops = STEPS * (macs + 5 * norms)  # fvcore: 5 FLOPs per LayerNorm element
    model = create_predictor("swinlstm", MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == params == 18_845_409
    assert count_flops(model, torch.rand(1, 10, 1, 64, 64), 10).fvcore == flops == 69_877_858_304
    # OpenSTL's SwinLSTM_D_Model at this config (timm 0.6.13, fvcore, exp.py's input of 20 frames): 20,191,969
    # parameters, its odd blocks' `red` and the up path's unused patch embedding (2x2 conv and LayerNorm) included,
    # and 69,877,858,304 FLOPs, the same.
    unused = sum(c[3] for c in cells) + (4 * 128 + 128) + 2 * 128
    assert params + unused == 20_191_969


def test_swinlstm_b_equals_a_hand_count_and_openstls_model():
    # The authors' SwinLSTM-B at Moving MNIST (configs.py: depths [12], heads [4], embed 128, window 4).
    params, macs, norms, unused = cell(128, 32, 12, 4)
    embed_params, embed_macs, embed_norms = codec(128)
    model = create_predictor("swinlstm", MMNIST, preset="mmnist-b")
    assert count_parameters(model)[0] == params + embed_params == 2_581_041
    flops = STEPS * (macs + embed_macs + 5 * (norms + embed_norms))
    assert count_flops(model, torch.rand(1, 10, 1, 64, 64), 10).fvcore == flops == 51_102_351_360
    # OpenSTL's SwinLSTM_B_Model: 2,778,417 parameters (with six unused `red`s), 51,102,351,360 FLOPs under fvcore.
    assert params + embed_params + unused == 2_778_417


@pytest.mark.parametrize("settings", [{}, D_SMALL])
def test_training_feeds_the_future_its_own_predictions_as_both_references_do(settings):
    clip = torch.rand(2, 5, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    model = tiny("swinlstm", VideoSpec(1, 64, 64, 2, 3), **settings).eval()
    assert model.sampling_probability(0) == 0
    with torch.no_grad():
        loss = model.training_loss(clip, 0)
        reconstruction = model(clip[:, :1], 1)  # the context step's output
        prediction = model(clip[:, :2], 3)
    outputs = torch.cat([reconstruction, prediction], dim=1)
    assert float(loss) == pytest.approx(float(((outputs - clip[:, 1:]) ** 2).mean()), rel=1e-5)


def test_a_grid_no_larger_than_the_window_is_one_unshifted_window():
    model = create_predictor("swinlstm", VideoSpec(1, 32, 32, 2, 2), preset="tiny", **{**D_SMALL, "window_size": 8,
                             "depths_down": (2, 2), "depths_up": (2, 2)})
    top, deepest = model.Downsample.layers[0].STBs[1], model.Upsample.layers[0].STBs[1]  # 16x16 and 4x4 grids
    assert (top.window, top.shift) == (8, 4) and top.attn_mask.shape == (4, 64, 64)
    assert (deepest.window, deepest.shift, deepest.attn_mask) == (4, 0, None)


def test_stochastic_depth_rises_down_and_falls_within_each_cell_up_as_openstl_builds_it():
    model = create_predictor("swinlstm", MMNIST, preset="mmnist")
    rates = [i / 70 for i in range(8)]  # torch.linspace(0, 0.1, 2 + 6), and the same over the up path's 6 + 2

    def probs(cells):
        return [getattr(b.drop_path, "drop_prob", 0.0) for c in cells for b in c.STBs]  # Identity at rate 0
    assert probs(model.Downsample.layers) == pytest.approx(rates)
    assert probs(model.Upsample.layers) == pytest.approx(rates[6:][::-1] + rates[:6][::-1])
    assert {b.drop_path.drop_prob for b in create_predictor("swinlstm", MMNIST, preset="mmnist-b").ST.layer.STBs} \
        == {0.1}


@pytest.mark.parametrize("settings,message", [
    (dict(patch_size=4), r"swinlstm: patch_size must be 2 \(.*\), not 4"),
    (dict(depths_up=(1,)), r"swinlstm: depths_down, depths_up and num_heads need one entry per level, not 2, 1 and 2"),
    (dict(depths_down=(1, 1, 1, 1), depths_up=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
     r"swinlstm: 4 levels of patch merging need a patch grid divisible by 16, not 24x24"),
    (dict(num_heads=(3, 2)), r"swinlstm: 3 heads do not divide the 8 channels at level 0"),
    (dict(window_size=5), r"swinlstm: windows of 5 do not tile the 24x24 grid at level 0"),
])
def test_a_geometry_the_model_cannot_run_is_one_error_line(settings, message):
    with pytest.raises(UserError, match=message):
        create_predictor("swinlstm", VideoSpec(1, 48, 48, 2, 2), preset="tiny", **{**D_SMALL, **settings})


@pytest.mark.parametrize("name", ["swinlstm-d", "swinlstm-b"])
def test_openstls_weights_predict_the_same_on_the_fast_path(name):
    from test_foreign import EXPECTED, SPEC, openstl_model, seeded_input

    model, _ = openstl_model(name)
    prepare_execution(model, torch.device("cpu"), "fp32", channels_last=True)  # the bf16 runs' layout, in fp32
    with torch.no_grad():
        assert (model(seeded_input(), SPEC.future) - EXPECTED[name]["output"]).abs().max() <= 1e-6
