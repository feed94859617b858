"""The arithmetic precision of a run, and the autocast context that gives it; training, evaluation and the cost
measurement all run the model under the same one. Also the device wait that every timed path uses."""
from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Mixed precision for fp16 / bf16 runs; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU has nothing queued): before reading a
    clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
