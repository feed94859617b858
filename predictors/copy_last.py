"""copy-last: the sanity floor every table carries."""
from __future__ import annotations

from torch import Tensor

from vpbench import Predictor, register_predictor


@register_predictor("copy-last", aliases=("copylast", "last-frame"))
class CopyLast(Predictor):
    """Repeats the last context frame; needs no training. A predictor that does not beat it has learned nothing."""

    trainable = False
    floor = True

    def forward(self, context: Tensor, future: int) -> Tensor:
        return context[:, -1:].expand(-1, future, -1, -1, -1).contiguous()
