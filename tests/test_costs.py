"""Costs: FLOPs counted two ways that must agree (for every registered predictor: the contract's costs check,
tests/test_contract.py), pinned against a hand count; timing and memory records; `bench profile`."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import run_bench
from vpbench.cpu import set_threads
from vpbench.costs import FAMILIES, count_flops, measure_costs
from vpbench.predictor import Predictor, create_predictor
from vpbench.registry import DATASETS
from vpbench.spec import VideoSpec

set_threads()  # VPBENCH_THREADS, as `bench` itself honours it

# moving-digits frames with a short rollout: measured in seconds.
SPEC = VideoSpec(channels=1, height=64, width=64, context=4, future=2)


def _context(spec: VideoSpec) -> torch.Tensor:
    return torch.rand(1, spec.context, spec.channels, spec.height, spec.width, generator=torch.Generator().manual_seed(0))


def test_convlstm_mmnist_flops_and_params_match_a_hand_count():
    spec = DATASETS.get("moving-digits").create(test_size=1).spec  # 64x64x1, 10 -> 10
    model = create_predictor("convlstm", spec, preset="mmnist")
    # mmnist: patch 4 -> 16 channels on a 16x16 grid, 4 layers x 128 hidden, 5x5 filters, 1x1 head, no bias.
    grid, k, hidden, patch_ch = 16 * 16, 5 * 5, 128, 16
    conv_x0 = patch_ch * 4 * hidden * k * grid
    conv_h = hidden * 4 * hidden * k * grid  # every layer's h-conv and layers 1-3's x-conv
    head = hidden * patch_ch * grid
    per_step = conv_x0 + 7 * conv_h + head
    steps = spec.context + spec.future - 1  # 19: each step predicts the next frame, context outputs included
    # The first step's state is zero and its h-convolutions are skipped (they add exactly zero): one per layer.
    # OpenSTL's table (56.8G = 19 * per_step = 56,790,351,872) counts them.
    skipped = 4 * conv_h
    flops = count_flops(model, _context(spec), spec.future)
    assert flops.fvcore == flops.torch == steps * per_step - skipped == 55_112_630_272
    params = patch_ch * 4 * hidden * k + 7 * hidden * 4 * hidden * k + hidden * patch_ch
    assert sum(p.numel() for p in model.parameters()) == params == 11_675_648


class _Toy(Predictor):
    """Not registered: an attention layer and a LayerNorm, which the two counters treat differently."""

    def __init__(self, spec: VideoSpec, norm: bool) -> None:
        super().__init__(spec, None)
        self.proj = nn.Linear(spec.width, 3 * spec.width)
        self.norm = nn.LayerNorm(spec.width) if norm else nn.Identity()

    def forward(self, context, future):
        rows = context[:, -1].flatten(1, 2)  # [B, C*H, W]: a token per image row
        q, k, v = self.proj(self.norm(rows)).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v).view_as(context[:, -1])
        return out[:, None].expand(-1, future, -1, -1, -1)


def test_attention_is_compared_where_torch_counts_it_and_named_where_it_does_not():
    spec = VideoSpec(1, 16, 16, 2, 2)
    plain = count_flops(_Toy(spec, norm=False), _context(spec), spec.future)
    linear, attention = 16 * 16 * 48, 16 * 16 * (16 + 16)  # tokens x in x out; QK^T and AV
    assert plain.fvcore == linear + attention and plain.fvcore_by_operator["scaled_dot_product_attention"] == attention
    fvcore_products, torch_products = plain.families["matrix products"]
    if plain.torch_without_formula:  # this torch's counter has no formula for the attention kernel that ran
        assert "scaled_dot_product_attention" in plain.left_out and plain.torch == linear
        assert fvcore_products == torch_products == linear
        assert plain.torch_without_formula[0] in plain.describe()
    else:  # counted by its own formula or, decomposed, as bmm: the products then include attention
        assert "scaled_dot_product_attention" not in plain.left_out
        assert fvcore_products == torch_products == plain.torch == linear + attention
    assert plain.relative_difference == 0 and not plain.unexplained


def test_a_missing_torch_formula_is_named_not_compared(monkeypatch):
    """Whichever torch is installed: simulate a release whose counter lacks the attention formula."""
    spec = VideoSpec(1, 16, 16, 2, 2)
    flops = count_flops(_Toy(spec, norm=False), _context(spec), spec.future)
    linear, attention = 16 * 16 * 48, 16 * 16 * (16 + 16)
    flops.torch_by_operator = {op: n for op, n in flops.torch_by_operator.items() if op in ("aten.addmm", "aten.mm")}
    flops.torch_without_formula = ["aten._scaled_dot_product_flash_attention_for_cpu"]
    assert flops.families["matrix products"] == (linear, linear) and flops.relative_difference == 0
    assert "no formula for aten._scaled_dot_product_flash_attention_for_cpu" in flops.left_out["scaled_dot_product_attention"]
    # ... and a counter that misses something without saying why is a disagreement, not silence.
    flops.torch_without_formula = []
    assert flops.families["matrix products"] == (linear + attention, linear) and flops.relative_difference > 0.3


class _SamePadded(Predictor):
    """Not registered: a depth-wise 11x11 convolution padded "same" (ConvMixer's), which fvcore traces as
    aten::_convolution_mode and, without the harness's handle, counts as nothing."""

    def __init__(self, spec: VideoSpec) -> None:
        super().__init__(spec, None)
        self.conv = nn.Conv2d(spec.channels, 8, 11, padding="same")

    def forward(self, context, future):
        return self.conv(context[:, -1])[:, None, :1].expand(-1, future, -1, -1, -1)


def test_a_same_padded_convolution_is_counted_by_both():
    spec = VideoSpec(1, 16, 16, 2, 2)
    flops = count_flops(_SamePadded(spec), _context(spec), spec.future)
    assert flops.fvcore == flops.torch == 1 * 8 * 11 * 11 * 16 * 16  # in x out x taps x positions
    assert "aten::_convolution_mode" not in flops.uncounted


class _Routed(Predictor):
    """Not registered: runs a convolution or not by a coin flip from the global RNG (as DMVFN's routing does)."""

    def __init__(self, spec: VideoSpec) -> None:
        super().__init__(spec, None)
        self.convs = nn.ModuleList(nn.Conv2d(spec.channels, spec.channels, 3, padding=1) for _ in range(16))

    def forward(self, context, future):
        x = context[:, -1]
        for conv, gate in zip(self.convs, torch.rand(len(self.convs)) < 0.5):
            x = conv(x) if gate else x
        return x[:, None].expand(-1, future, -1, -1, -1)


def test_a_forward_that_draws_what_it_computes_is_counted_on_the_same_draws():
    spec = VideoSpec(1, 16, 16, 2, 2)
    model = _Routed(spec)
    counts = []
    for seed in (1, 2, 3):  # whatever the global RNG's state, the same draws (a fixed seed), and left as it was
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        counts.append(count_flops(model, _context(spec), spec.future))
        assert torch.equal(torch.get_rng_state(), state)
    assert all(c.fvcore == c.torch == counts[0].fvcore > 0 for c in counts)


def test_layer_norm_is_named_and_left_out_on_both_sides():
    spec = VideoSpec(1, 16, 16, 2, 2)
    plain = count_flops(_Toy(spec, norm=False), _context(spec), spec.future)
    normed = count_flops(_Toy(spec, norm=True), _context(spec), spec.future)
    assert normed.families == plain.families and normed.fvcore > plain.fvcore
    assert "layer_norm" in normed.left_out and "normalisation" in normed.describe()
    assert {f.name for f in FAMILIES if not f.compared} >= {"normalisation"}


def test_measured_costs_are_consistent():
    model = create_predictor("convlstm", SPEC, preset_keys=("moving-digits",))
    frozen = list(model.parameters())[-1].requires_grad_(False)
    clip = torch.rand(SPEC.length, 1, 64, 64)
    costs = measure_costs(model, clip, torch.device("cpu"), "cpu (test)", warmup=1, repeats=3)
    assert costs["params"] - costs["trainable_params"] == frozen.numel() > 0
    assert costs["flops"] == count_flops(model, clip[None, :SPEC.context], SPEC.future).fvcore
    assert costs["ms_per_sequence"] > 0 and costs["fps"] == pytest.approx(1000 * SPEC.future / costs["ms_per_sequence"])
    assert costs["peak_memory_bytes"] > 0 and "RSS" in costs["peak_memory_kind"]
    assert "median of 3" in costs["timing"] and costs["device"] == "cpu (test)"
    assert model.training  # measuring leaves the model as it was


def test_bench_profile_prints_one_json_object_per_predictor(tmp_path):
    # in its own process, as users run it: run in this one, something in it (not found: threads, oneDNN precision,
    # denormals and the backends' flags are as before) moves later convolutions' fp32 rounding by ~1e-6, which the
    # reference-fixture tests after it compare at
    proc = run_bench("profile", "--models", "convlstm,copy-last", "--dataset", "moving-digits", "--json",
                     "--repeats", "2", "--warmup", "1", cwd=tmp_path)
    records = json.loads(proc.stdout)
    assert [r["predictor"] for r in records] == ["convlstm", "copy-last"]
    for r in records:
        assert {"predictor", "dataset", "params", "flops", "ms_per_sequence", "peak_memory_bytes", "device"} <= set(r)
        assert r["dataset"] == "moving-digits" and r["ms_per_sequence"] > 0
    assert records[1]["params"] == records[1]["flops"] == 0 and records[0]["flops"] > 0
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
