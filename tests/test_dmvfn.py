"""DMVFN: its size against OpenSTL's table by hand count, its per-sequence routing at test, and what its training
computes, against OpenSTL's own code (tests/fixtures/openstl/make.py wrote the expected values)."""
from pathlib import Path

import pytest
import torch

import vpbench.predictors.dmvfn as dmvfn
from vpbench.costs import count_flops
from vpbench.errors import UserError
from vpbench.predictor import count_parameters, create_predictor
from vpbench.spec import VideoSpec

from conftest import MMNIST
from reference_counts import Conv, totals

FIXTURES = Path(__file__).parent / "fixtures" / "openstl"
EXPECTED = torch.load(FIXTURES / "expected-dmvfn.pt", weights_only=True)["dmvfn"]
FORWARD_SEED = 0  # make.py's: OpenSTL's DMVFN draws its routing from torch's global generator


def every_gate_open(probabilities, generator=None):
    return torch.ones_like(probabilities)


def test_mmnist_size_and_one_frames_flops_match_a_hand_count_and_openstls_table(monkeypatch):
    """OpenSTL's table (docs/en/model_zoos/video_benchmarks.md, OpenSTLv0.3.0 line 86): 3.5M params, 0.2G FLOPs: its
    FlopCountAnalysis of one frame's prediction with every block run (it traces a training forward)."""
    size, frame, half = 64, 64 * 64, 32 * 32
    layers = [Conv(2, 32, 9, frame, 1), Conv(32, 32, 9, frame, 1), Conv(32, 9, 1, 1, 1)]  # routing, its linear layer
    prelus = 0
    # Each block reads both frames, both warped, the mask (4 + 1 channels) and the flow (4): OpenSTL's in_planes 9.
    for width, scale in zip((160, 160, 160, 80, 80, 80, 44, 44, 44), (4, 4, 4, 2, 2, 2, 1, 1, 1)):
        coarse = (size // scale // 4) ** 2  # after the shrink and two stride-2 convolutions
        layers += [Conv(9, width // 2, 9, (size // scale // 2) ** 2, 1), Conv(width // 2, width, 9, coarse, 1),
                   *[Conv(width, width, 9, coarse, 1)] * 3, Conv(width, width // 4, 9, coarse, 1),
                   Conv(9, 8, 9, half, 1), Conv(8, 8, 9, half, 1),
                   Conv(width // 4 + 8, 5, 16, half, 1)]  # transposed 4x4, counted at its input's positions
        prelus += width // 2 + width + 3 * width + width // 4 + 8 + 8
    params, macs = totals(layers)
    model = create_predictor("dmvfn", MMNIST, preset="mmnist")
    assert count_parameters(model)[0] == params + prelus == 3_522_922  # the table's 3.5M
    monkeypatch.setattr(dmvfn.torch, "bernoulli", every_gate_open)
    flops = count_flops(model, torch.rand(1, 10, 1, 64, 64), 1)
    assert flops.fvcore_by_operator["conv"] + flops.fvcore_by_operator["linear"] == macs == 217_067_808
    # Besides the convolutions: the routing's pooling, 9 x 2 warps and the blocks' interpolations. OpenSTL's model under
    # fvcore counts 218,766,624, its training forward warping twice more for 8 blocks (+262,144).
    assert flops.fvcore == 218_504_480 and round(flops.fvcore / 1e9, 1) == 0.2


def test_each_sequence_runs_the_blocks_its_own_gates_pick(monkeypatch):
    """A batch predicts, sequence by sequence, what each predicts alone through the same gates (the sub-batches);
    with `reference_routing` every sequence takes the first one's."""
    spec = VideoSpec(1, 32, 32, 2, 2)
    model = create_predictor("dmvfn", spec, preset="tiny").eval()
    gates = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    context = torch.rand(3, 2, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    def predict(frames, rows):
        monkeypatch.setattr(dmvfn.torch, "bernoulli", lambda p, generator=None: rows[:p.shape[0]])
        with torch.no_grad():
            return model(frames, 2)

    together = predict(context, gates)
    alone = torch.cat([predict(context[i:i + 1], gates[i:i + 1]) for i in range(3)])
    assert (together - alone).abs().max() < 1e-5
    assert (together[1] - together[2]).abs().max() > 1e-3  # the gates do change the prediction
    model.config.reference_routing = True
    first = torch.cat([predict(context[i:i + 1], gates[:1]) for i in range(3)])
    assert (predict(context, gates) - first).abs().max() < 1e-5


def test_where_no_block_runs_the_older_frame_is_predicted(monkeypatch):
    """Both references' `_inference`: no gate open, the prediction is img0 (the frame before the last)."""
    model = create_predictor("dmvfn", VideoSpec(1, 32, 32, 3, 2), preset="tiny").eval()
    monkeypatch.setattr(dmvfn.torch, "bernoulli", lambda p, generator=None: torch.zeros_like(p))
    context = torch.rand(2, 3, 1, 32, 32)
    with torch.no_grad():
        out = model(context, 2)
    assert torch.equal(out[:, 0], context[:, 1]) and torch.equal(out[:, 1], context[:, 2])


def test_training_blocks_and_loss_are_openstls(monkeypatch):
    """One triple through OpenSTL's training forward (every block, gated increments) and its `_predict` loss (the
    Laplacian terms; the perceptual term is left out): the same draws give the same blocks and loss."""
    from test_foreign import openstl_model

    model, _ = openstl_model("dmvfn")
    clip = EXPECTED["train_clip"]
    torch.manual_seed(FORWARD_SEED)
    with torch.no_grad():
        blocks = torch.stack(model.block_outputs(clip[:, 0], clip[:, 1]))
    # fp32 rounding through the warps: 0.0 where the fixture was written, 2.2e-6 on an Intel Xeon (test_foreign)
    assert (blocks - EXPECTED["train_blocks"]).abs().max() < 1e-5
    torch.manual_seed(FORWARD_SEED)
    with torch.no_grad():
        assert abs(float(model.training_loss(clip, 0)) - float(EXPECTED["train_loss"])) < 1e-6
    # A clip of T frames is T - 2 triples: its loss is their mean.
    longer = torch.rand(2, 5, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(dmvfn.torch, "bernoulli", every_gate_open)
    with torch.no_grad():
        each = [model.training_loss(longer[:, t:t + 3], 0) for t in range(3)]
        assert abs(float(model.training_loss(longer, 0)) - float(sum(each) / 3)) < 1e-6


def test_the_laplacian_loss_is_openstls():
    generator = torch.Generator().manual_seed(5)  # make.py's laplacian_frames
    prediction, target = torch.rand(2, 1, 64, 64, generator=generator), torch.rand(2, 1, 64, 64, generator=generator)
    assert abs(float(dmvfn.laplacian_l1(prediction, target, 5)) - float(EXPECTED["laplacian"])) < 1e-6
    assert float(dmvfn.laplacian_l1(target, target, 5)) == 0.0


def test_the_gates_pass_their_gradient_straight_to_the_routing():
    model = create_predictor("dmvfn", VideoSpec(1, 32, 32, 2, 1), preset="tiny")
    clip = torch.rand(2, 3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    model.training_loss(clip, 0).backward()
    assert model.router_head.weight.grad is not None and model.router_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("settings,message", [
    (dict(num_block=2), "one value per block"),
    (dict(scale=(32, 2, 1)), "divisible by 128"),
    (dict(height=48), "divisible by 32"),  # 5 Laplacian levels for frames wider than 32 pixels
    (dict(context=1), "the last two frames"),
])
def test_settings_that_cannot_build_are_one_error_line(settings, message):
    spec = VideoSpec(1, settings.pop("height", 64), 64, settings.pop("context", 2), 1)
    with pytest.raises(UserError, match=message):
        create_predictor("dmvfn", spec, preset="tiny", **settings)
