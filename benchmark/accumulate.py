"""Per-time-step sums over sequences, kept in float64 so that shards evaluated by several processes combine
exactly (the layout FrameMetrics uses, for metrics that live outside it)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class StepSums:
    """Named rows of per-step sums: `add` a [rows, horizon] tensor per batch, read the `totals` once."""

    def __init__(self, names: Sequence[str], horizon: int, device: torch.device | str | None = None) -> None:
        self.names = tuple(names)
        self.horizon = horizon
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self._sums = torch.zeros(len(self.names), horizon, dtype=torch.float64, device=self.device)

    def add(self, rows: Tensor) -> None:
        if rows.shape != self._sums.shape:
            raise ValueError(f"expected sums of shape {tuple(self._sums.shape)} ({', '.join(self.names)} x steps), "
                             f"got {tuple(rows.shape)}")
        self._sums += rows.to(self.device, torch.float64)

    def totals(self) -> Tensor:
        """The sums over every process ([rows, horizon], CPU). Collective under torch.distributed: every rank
        calls it exactly once."""
        sums = self._sums.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)
        return sums.cpu()
