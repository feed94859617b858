"""Hand counts of reference models: their convolutions as the references build them, and the check that a
predictor at a reference preset has exactly that many parameters and the FLOPs its traced rollout counts."""
from dataclasses import dataclass

import torch

from vpbench.predictor import count_parameters, create_predictor

from conftest import MMNIST


@dataclass
class Conv:
    """One convolution of a reference model: taps = kernel volume; positions where it is evaluated (input
    positions for a transposed convolution, as fvcore counts them); uses = applications in a 10 -> 10 rollout."""

    cin: int
    cout: int
    taps: int
    positions: int
    uses: int
    bias: bool = True
    groups: int = 1

    @property
    def params(self) -> int:
        return self.cin // self.groups * self.cout * self.taps + (self.cout if self.bias else 0)

    @property
    def macs(self) -> int:
        return self.cin // self.groups * self.cout * self.taps * self.positions * self.uses


def totals(layers: list[Conv]) -> tuple[int, int]:
    return sum(c.params for c in layers), sum(c.macs for c in layers)


def traced_flops(model) -> int:
    """fvcore's count of a 10 -> 10 Moving MNIST rollout at batch 1 on the traced graph, which drops outputs an
    inference forward never uses (a recurrent model's context reconstructions)."""
    from fvcore.nn import FlopCountAnalysis

    torch.set_num_threads(1)
    with torch.no_grad():
        analysis = FlopCountAnalysis(model.eval(), (torch.rand(1, 10, 1, 64, 64), 10))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total()


def assert_mmnist_size_and_flops(name: str, expected: tuple[int, int], table: tuple | None = None,
                                 **overrides) -> None:
    """`name` at its mmnist preset has the hand-counted (params, FLOPs); `table` is OpenSTL's published
    (params in M or None, GFLOPs) row, which must be the count rounded."""
    params, flops = expected
    model = create_predictor(name, MMNIST, preset="mmnist", **overrides)
    assert count_parameters(model)[0] == params
    assert traced_flops(model) == flops
    if table is not None:
        table_params, table_gflops = table
        assert round(flops / 1e9, 1) == table_gflops
        # The table's 58.0M is 57,946,113 rounded twice (57.95, then 58.0).
        assert table_params is None or abs(params / 1e6 - table_params) < 0.06
