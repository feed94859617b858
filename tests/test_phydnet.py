"""PhyDNet: its size against a hand count and OpenSTL's table, the moment matrices against closed forms and OpenSTL's
K2M, its training loss against OpenSTL's model and method (tests/fixtures/openstl/make.py), and its teacher forcing."""
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vpbench.cli import app
from vpbench.costs import count_flops
from vpbench.errors import UserError
from vpbench.foreign import configure, load_into, read_checkpoint
from vpbench.predictor import count_parameters, create_predictor
from vpbench.predictors.phydnet import kernel_moments
from vpbench.registry import PREDICTORS
from vpbench.spec import VideoSpec

from conftest import MMNIST, tiny
from reference_counts import Conv, totals

FIXTURES = Path(__file__).parent / "fixtures" / "openstl"
EXPECTED = torch.load(FIXTURES / "expected-phydnet.pt", weights_only=True)["phydnet"]
SPEC = VideoSpec(1, 64, 64, 2, 3)  # make.py's CONTEXT, FUTURE, SIZE


def openstl_model():
    """The fixture's model: OpenSTL's checkpoint, configured and loaded as `bench eval --checkpoint` does."""
    cls = PREDICTORS.get("phydnet")
    checkpoint = read_checkpoint(FIXTURES / "phydnet.ckpt", cls)
    model = create_predictor(cls, SPEC, **configure(checkpoint, SPEC, EXPECTED["settings"]))
    load_into(model, checkpoint)
    return model, checkpoint


def phydnet_clip() -> torch.Tensor:
    """make.py's `phydnet_clip`."""
    return torch.rand(2, SPEC.context + SPEC.future, 1, 64, 64, generator=torch.Generator().manual_seed(3))


def moment_kernels() -> torch.Tensor:
    """make.py's `moment_kernels`."""
    return torch.rand(4, 7, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64) - 0.5


# --- OpenSTL's PhyDNet_Model (its widths are fixed; its configs set patch_size 4): every step the whole network (the
# outputs at context steps are reconstructions the loss reads). Transposed convolutions are counted at their input
# positions (fvcore's convention); GroupNorm at 5 FLOPs per element.
def phydnet_expected(steps: int, size: int) -> tuple[int, int]:
    big, small = (size // 2) ** 2, (size // 4) ** 2
    layers = [Conv(1, 32, 9, big, steps), Conv(32, 32, 9, big, steps), Conv(32, 64, 9, small, steps)]  # E
    layers += [Conv(64, 64, 9, small, steps) for _ in range(4)]  # Ep, Er: two 3x3 blocks each
    layers += [Conv(64, 49, 49, small, steps), Conv(49, 64, 1, small, steps),  # PhyCell: Phi
               Conv(128, 64, 9, small, steps)]  # and its gain
    layers += [Conv(64 + 128, 4 * 128, 9, small, steps), Conv(128 + 128, 4 * 128, 9, small, steps),
               Conv(128 + 64, 4 * 64, 9, small, steps)]  # ConvLSTM 128, 128, 64
    layers += [Conv(64, 64, 9, small, steps) for _ in range(4)]  # Dp, Dr (transposed, stride 1)
    layers += [Conv(64, 32, 9, small, steps), Conv(32, 32, 9, big, steps), Conv(32, 1, 9, big, steps)]  # D
    norm_channels = [32, 32, 64] + [64] * 4 + [49] + [64] * 4 + [32, 32]
    norm_positions = [big, big, small] + [small] * 4 + [small] + [small] * 4 + [big, big]
    params, macs = totals(layers)
    norm_elements = steps * sum(c * p for c, p in zip(norm_channels, norm_positions))
    return params + 2 * sum(norm_channels), macs + 5 * norm_elements


# OpenSTL's table (docs/en/model_zoos/video_benchmarks.md): mmnist line 80, KTH 10 -> 20 at 128x128 line 293.
@pytest.mark.parametrize("preset,spec,table_flops,exact", [
    ("mmnist", MMNIST, 15.3, 15_325_359_872),
    ("kth-10to20", VideoSpec(1, 128, 128, 10, 20), 93.6, 93_565_355_008),
])
def test_size_and_flops_equal_a_hand_count_and_openstls_table(preset, spec, table_flops, exact):
    params, flops = phydnet_expected(spec.context + spec.future - 1, spec.height)
    model = create_predictor("phydnet", spec, preset=preset)
    counted = count_flops(model, torch.rand(1, spec.context, 1, spec.height, spec.width), spec.future)
    assert count_parameters(model)[0] == params == 3_091_732
    assert counted.fvcore == flops == exact
    assert round(params / 1e6, 1) == 3.1 and round(flops / 1e9, 1) == table_flops


# --- The moment matrix: m[p, q] = sum_ab k[a, b] (a - 3)^p (b - 3)^q / (p! q!) on 7x7 kernels (a down the rows).
def stencil(**taps: float) -> torch.Tensor:
    """A 7x7 kernel with the named taps, `r<row>c<column>` as offsets from the centre (`m1` is -1)."""
    kernel = torch.zeros(7, 7, dtype=torch.float64)
    for name, value in taps.items():
        row, column = name[1:].split("c")
        kernel[3 + int(row.replace("m", "-")), 3 + int(column.replace("m", "-"))] = value
    return kernel


def test_moments_of_finite_difference_stencils_are_their_taylor_coefficients():
    # The central difference across the columns, (u(b+1) - u(b-1)) / 2: the first derivative along the columns, and
    # of the odd orders above it 1/3! (the Taylor series of the two taps: 2 (h^3 / 3!) / 2).
    central = kernel_moments(stencil(r0c1=0.5, r0cm1=-0.5))
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[0, 1], expected[0, 3], expected[0, 5] = 1.0, 1 / 6, 1 / 120
    assert torch.allclose(central, expected, atol=1e-15)
    # The 5-point Laplacian: second derivatives along both axes, fourth ones 2 / 4! each, no mixed or odd moments.
    laplacian = kernel_moments(stencil(r0c0=-4.0, r1c0=1.0, rm1c0=1.0, r0c1=1.0, r0cm1=1.0))
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[2, 0] = expected[0, 2] = 1.0
    expected[4, 0] = expected[0, 4] = 2 / 24
    expected[6, 0] = expected[0, 6] = 2 / 720
    assert torch.allclose(laplacian, expected, atol=1e-15)
    # One tap at (row -2, column 3): the moments of a point, (-2)^p 3^q / (p! q!).
    point = kernel_moments(stencil(rm2c3=1.0))
    closed = torch.tensor([[(-2) ** p * 3 ** q / (math.factorial(p) * math.factorial(q)) for q in range(7)]
                           for p in range(7)], dtype=torch.float64)
    assert torch.allclose(point, closed, rtol=1e-14)
    # Batched over leading dimensions; a float32 kernel gives float64 moments.
    batch = torch.stack([stencil(r0c1=0.5, r0cm1=-0.5), stencil(rm2c3=1.0)]).float()[None]
    assert kernel_moments(batch).dtype == torch.float64
    assert torch.allclose(kernel_moments(batch)[0, 1], closed, rtol=1e-7)


def test_moments_equal_openstls_k2m():
    assert torch.allclose(kernel_moments(moment_kernels()), EXPECTED["losses"]["k2m"], rtol=1e-12, atol=1e-12)


# --- Training: OpenSTL's model loss and its method's training step, on its own weights (make.py, in float64).
def test_training_loss_is_openstls_sum_of_frame_mses_and_moment_loss():
    model, _ = openstl_model()
    model.double()
    clip = phydnet_clip().double()
    losses = EXPECTED["losses"]
    with torch.no_grad():
        moment = model.phycell.moment_loss()
    # OpenSTL's K2M casts the moment matrices to float32 (ours stay float64): equal to that precision.
    assert abs(float(moment) - float(losses["moment"])) < 1e-6 * float(losses["moment"])
    # sampling_start 1 at iteration 0: every future step reads the truth (OpenSTL's ratio 1); scheduled sampling off:
    # none does (ratio 0). The frames' part, the loss less the moment loss, to float64's precision.
    with torch.no_grad():
        forced = model.training_loss(clip, 0) - moment
        model.config.scheduled_sampling = False
        free = model.training_loss(clip, 0) - moment
    openstl_forced, openstl_free = losses["forced"] - losses["moment"], losses["free"] - losses["moment"]
    assert abs(float(forced - openstl_forced)) < 1e-9 * float(openstl_forced)
    assert abs(float(free - openstl_free)) < 1e-9 * float(openstl_free)
    assert abs(float(forced - free)) > 1e-5  # the two runs read different frames: the check tells them apart


def test_reference_loss_is_openstls_training_step():
    """OpenSTL's PhyDNet.training_step back-propagates MSE(model loss, target frames); `reference_loss` does too."""
    model, _ = openstl_model()
    model.double()
    clip = phydnet_clip().double()
    expected = float(EXPECTED["losses"]["training_step"])  # epoch 0: teacher forcing ratio 1
    with torch.no_grad():
        ours = float(model.training_loss(clip, 0))
        model.config.reference_loss = True
        reference = float(model.training_loss(clip, 0))
    assert abs(reference - expected) < 1e-6 * expected
    target = clip[:, SPEC.context:]
    assert reference == pytest.approx(float(((ours - target) ** 2).mean()), rel=1e-12)
    assert abs(ours - expected) > 1.0  # the paper's loss is another number


def test_openstl_checkpoints_drop_the_second_copies_and_k2ms_constants(tmp_path):
    _, checkpoint = openstl_model()
    dropped = next(note for note in checkpoint.notes if note.startswith("dropped"))
    assert dropped.startswith("dropped 18 tensors OpenSTL saves a second time (the PhyCell and the ConvLSTM, also "
                              "under the encoder) or recomputes (K2M's constant matrices): ")
    assert "k2m._M0" in dropped and "convcell.cell_list.*.conv.weight (x3)" in dropped
    # OpenSTL's bare state dicts (its .pth files) are told apart by their names too.
    lightning = torch.load(FIXTURES / "phydnet.ckpt", weights_only=True)["state_dict"]
    torch.save({k.removeprefix("model."): v for k, v in lightning.items()}, tmp_path / "phydnet.pth")
    bare = read_checkpoint(tmp_path / "phydnet.pth", PREDICTORS.get("phydnet"))
    assert bare.notes[0] == "OpenSTL checkpoint (a bare state dict)" and bare.tensors.keys() == checkpoint.tensors.keys()


def test_bench_eval_takes_an_openstl_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = CliRunner().invoke(app, ["eval", "--models", "phydnet", "--dataset", "moving-digits", "--context", "2",
                                    "--horizon", "3", "--set", "data.test_size=2", "--set", "phydnet.width=16",
                                    "--set", "phydnet.convlstm_hidden=8,8,32", "--checkpoint",
                                    str(FIXTURES / "phydnet.ckpt")])
    assert proc.exit_code == 0, proc.output
    assert f"phydnet: {FIXTURES / 'phydnet'}.ckpt: OpenSTL checkpoint" in " ".join(proc.output.split())


# --- Teacher forcing: one draw per batch (OpenSTL's and the authors' `random.random() < teacher_forcing_ratio`).
def test_teacher_forcing_is_decided_once_per_batch():
    model = tiny("phydnet", VideoSpec(1, 64, 64, 4, 6), sampling_stop_iter=100)
    torch.manual_seed(0)
    masks = torch.stack([model.sampling_mask(50, 3, 10, torch.device("cpu")) for _ in range(200)])  # [200, 3, 9]
    assert (masks[:, :, :4] == 1).all()  # the context always reads the truth
    future = masks[:, :, 4:]
    assert (future == future[:, :1, :1]).all()  # every clip, every future step: one decision
    forced = future[:, 0, 0].mean()
    assert 0.4 < forced < 0.6  # probability 1 - 50/100
    assert (model.sampling_mask(100, 3, 10, torch.device("cpu"))[:, 4:] == 0).all()


# --- Shapes and bad input.
@pytest.mark.parametrize("downsample,patch", [(4, 1), (2, 1), (2, 2)])
def test_the_cells_run_on_the_frame_over_patch_and_downsample(downsample, patch):
    spec = VideoSpec(3, 32, 48, 2, 3)
    model = tiny("phydnet", spec, downsample=downsample, patch_size=patch).eval()
    physics, lstm = model.init_state(1, torch.device("cpu"), torch.float32)
    grid = (32 // (patch * downsample), 48 // (patch * downsample))
    assert physics.shape[2:] == lstm[0][0].shape[2:] == grid
    with torch.no_grad():
        out = model(torch.rand(2, 2, 3, 32, 48), 5)
    assert out.shape == (2, 5, 3, 32, 48) and ((out > 0) & (out < 1)).all()  # a sigmoid's


def test_bad_sizes_are_one_clear_error():
    with pytest.raises(UserError, match=r"downsample 4 .* does not divide the frame size 34x34"):
        create_predictor("phydnet", VideoSpec(1, 34, 34, 2, 2), preset="tiny", downsample=4)
    with pytest.raises(UserError, match=r"width=24 must be a multiple of 16"):
        create_predictor("phydnet", VideoSpec(1, 64, 64, 2, 2), preset="tiny", width=24)
    with pytest.raises(UserError, match=r"downsample='3' is not a valid 2 \| 4"):
        create_predictor("phydnet", VideoSpec(1, 64, 64, 2, 2), preset="tiny", downsample="3")
