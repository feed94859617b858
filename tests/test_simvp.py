"""SimVP: sizes equal to OpenSTL's models (IncepU and gSTA by hand count, the MetaVP translators and TAU against
OpenSTL's table), and its chunked rollout."""
import pytest
import torch

from vpbench.costs import count_flops
from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.spec import VideoSpec

from conftest import MMNIST, tiny
from reference_counts import Conv, assert_mmnist_size_and_flops, totals

# --- OpenSTL's SimVP at mmnist (hid_S 64, hid_T 512, N_S 4, N_T 8): per-frame ConvSC encoder/decoder with
# GroupNorm(2) (5 FLOPs per element), translator on [1, 640, 16, 16].
def simvp_codec():
    frames, s0, s1, s2 = 10, 64 * 64, 32 * 32, 16 * 16
    layers = [Conv(1, 64, 9, s0, frames), Conv(64, 64, 9, s1, frames), Conv(64, 64, 9, s1, frames),
              Conv(64, 64, 9, s2, frames),  # encoder: stride 1, 2, 1, 2
              Conv(64, 256, 9, s2, frames), Conv(64, 64, 9, s1, frames), Conv(64, 256, 9, s1, frames),
              Conv(64, 64, 9, s0, frames),  # decoder: x4 channels + PixelShuffle, plain, x4 + shuffle, plain
              Conv(64, 1, 1, s0, frames)]  # readout
    norm_elements = 64 * frames * (s0 + s1 + s1 + s2 + s1 + s1 + s0 + s0)
    return layers, 8 * 2 * 64, norm_elements  # 8 GroupNorms of 64 channels: weight and bias each


def simvp_expected():
    layers, norm_params, norm_elements = simvp_codec()
    grid, c, hid = 16 * 16, 640, 512
    widths = [(c, hid)] + [(hid, hid)] * 7 + [(hid, hid)] + [(2 * hid, hid)] * 6 + [(2 * hid, c)]
    for cin, cout in widths:  # Inception blocks: 1x1 to 256, then grouped 3/5/7/11 (8 groups) + GroupNorm(8)
        layers.append(Conv(cin, hid // 2, 1, grid, 1))
        layers += [Conv(hid // 2, cout, k * k, grid, 1, groups=8) for k in (3, 5, 7, 11)]
        norm_params += 4 * 2 * cout
        norm_elements += 4 * cout * grid
    params, macs = totals(layers)
    return params + norm_params, macs + 5 * norm_elements


def simvp_gsta_expected():
    layers, norm_params, norm_elements = simvp_codec()
    grid, c, hid, mlp = 16 * 16, 640, 512, 8
    extra_params, batch_norm = 0, 0
    for dim, out in [(c, hid)] + [(hid, hid)] * 6 + [(hid, c)]:
        layers += [Conv(dim, dim, 1, grid, 1), Conv(dim, dim, 25, grid, 1, groups=dim),
                   Conv(dim, dim, 49, grid, 1, groups=dim), Conv(dim, 2 * dim, 1, grid, 1), Conv(dim, dim, 1, grid, 1),
                   Conv(dim, mlp * dim, 1, grid, 1), Conv(mlp * dim, mlp * dim, 9, grid, 1, groups=mlp * dim),
                   Conv(mlp * dim, dim, 1, grid, 1)]
        if out != dim:
            layers.append(Conv(dim, out, 1, grid, 1))
        extra_params += 2 * 2 * dim + 2 * dim  # two BatchNorms, two layer scales
        batch_norm += 2 * 2 * dim * grid  # eval BatchNorm with affine: 2 FLOPs per element
    params, macs = totals(layers)
    return params + norm_params + extra_params, macs + 5 * norm_elements + batch_norm


@pytest.mark.parametrize("overrides,expected,table", [
    ({}, simvp_expected, (58.0, 19.4)),  # OpenSTL's SimVP+IncepU row
    ({"translator": "gsta"}, simvp_gsta_expected, (46.8, 16.5)),  # OpenSTL's SimVP+gSTA-S row
])
def test_mmnist_size_and_flops_equal_the_reference(overrides, expected, table):
    assert_mmnist_size_and_flops("simvp", expected(), table, **overrides)


def test_simvp_rolls_out_in_chunks_of_the_context_length():
    model = tiny("simvp").eval()
    context = torch.rand(2, 10, 1, 64, 64)
    with torch.no_grad():
        out = model(context, 25)
        first = model.predict_chunk(context)
        second = model.predict_chunk(first)
        third = model.predict_chunk(second)
        assert torch.allclose(out, torch.cat([first, second, third[:, :5]], 1), atol=1e-6)
        assert torch.allclose(model(context, 4), first[:, :4], atol=1e-6)
    with pytest.raises(UserError, match="N_S=3 must be an even number"):
        create_predictor("simvp", MMNIST, N_S=3)
    with pytest.raises(UserError, match="vit translator needs widths in multiples of 8; context x hid_S = 60"):
        create_predictor("simvp", MMNIST, translator="vit", hid_S=6, hid_T=16, N_T=2)
    with pytest.raises(UserError, match="swin: the 18x18 grid does not split into 4x4 windows"):  # OpenSTL's rule: 4
        create_predictor("simvp", VideoSpec(1, 36, 36, 10, 10), translator="swin", hid_S=8, hid_T=16, N_S=2, N_T=2)


# OpenSTL's MetaVP table (docs/en/model_zoos/video_benchmarks.md lines 112-123, Moving MNIST): params in M, GFLOPs.
METAVP = {"gsta": (46.8, 16.5), "vit": (46.1, 16.9), "swin": (46.1, 16.4), "uniformer": (44.8, 16.5),
          "mlpmixer": (38.2, 14.7), "convmixer": (3.9, 5.5), "poolformer": (37.1, 14.1), "convnext": (37.3, 14.1),
          "van": (44.5, 16.0), "hornet": (45.7, 16.3), "moganet": (46.8, 16.5), "tau": (44.7, 16.0)}


def mmnist_model(name: str):
    return create_predictor("tau", MMNIST, preset="mmnist") if name == "tau" else \
        create_predictor("simvp", MMNIST, preset=f"mmnist-{name}")


@pytest.mark.parametrize("name", sorted(METAVP))
def test_metavp_sizes_are_openstls(name):
    # Within 0.06M: the table rounds twice, as its 58.0M for 57,946,113 (reference_counts.py).
    assert abs(count_parameters(mmnist_model(name))[0] / 1e6 - METAVP[name][0]) < 0.06


@pytest.mark.parametrize("name", ["tau", "vit"])  # TAU's attention; ViT's, counted through the harness's sdpa handle
def test_metavp_flops_are_openstls(name):
    flops = count_flops(mmnist_model(name), torch.rand(1, 10, 1, 64, 64), 10).fvcore
    assert round(flops / 1e9, 1) == METAVP[name][1]


def test_swin_masked_as_timms_swin_block():
    """`swin_mask=True` (the default, Swin's paper) computes what timm's SwinTransformerBlock computes, mask and all,
    for a batch of several frames; OpenSTL's unmasked block is pinned by its fixture (test_foreign.py)."""
    from timm.models.swin_transformer import SwinTransformerBlock  # a public module, here an independent reference

    from vpbench.predictors._metaformer import SwinBlock

    torch.manual_seed(0)
    ours = SwinBlock(16, (8, 8), shifted=True, mlp_ratio=2.0, drop=0.0, drop_path=0.0, masked=True).eval()
    timms = SwinTransformerBlock(16, (8, 8), num_heads=8, window_size=4, shift_size=2, mlp_ratio=2.0).eval()
    with torch.no_grad():
        for tensor in ours.parameters():
            tensor.uniform_(-0.5, 0.5)
    timms.load_state_dict(ours.state_dict(), strict=False)
    x = torch.rand(3, 16, 8, 8)
    with torch.no_grad():
        assert (ours(x) - timms(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)).abs().max() < 1e-5
