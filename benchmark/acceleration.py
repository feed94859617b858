"""How a run executes, apart from what it computes: the memory layout of the weights, the arithmetic precision
that `--precision auto` picks after a probe, and `torch.compile` of the recurrent step (`--compile`).

fp32 outputs do not depend on these choices beyond rounding (the tests hold every predictor to 1e-5), so they
stay out of the run identity; the result records the path a run took (`costs.execution`), so a timing figure
always says what produced it. bf16/fp16 change the numbers and are part of the identity (`precision`).
"""
from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .errors import UserError
from .precision import Precision, synchronize

# `auto` takes bf16 on a CPU only when the probe runs it at least this much faster than fp32: a CPU without a
# native bf16 path (no AMX / AVX512-BF16) emulates it and can be many times slower (27x was measured).
BF16_MIN_SPEEDUP = 1.2


@dataclass(frozen=True)
class PrecisionProbe:
    """Milliseconds of one gate-sized convolution (64 -> 256 channels, 3x3, 4 x 32 x 32, channels-last)."""

    device: str
    fp32_ms: float
    bf16_ms: float

    @property
    def bf16_speedup(self) -> float:
        return self.fp32_ms / self.bf16_ms

    def describe(self) -> str:
        return (f"bf16 probe on {self.device}: a gate convolution takes {self.bf16_ms:.2f} ms in bf16, "
                f"{self.fp32_ms:.2f} ms in fp32 ({self.bf16_speedup:.2f}x)")


@functools.lru_cache(maxsize=4)
def probe_bf16(device: torch.device) -> PrecisionProbe:
    """Time one convolution in fp32 and under bf16 autocast; a fraction of a second, once per process."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 32, 32, generator=generator).to(device, memory_format=torch.channels_last)
    conv = nn.Conv2d(64, 256, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)

    def median_ms(bf16: bool) -> float:
        times = []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for repeat in range(7):
                synchronize(device)
                tic = time.perf_counter()
                conv(x)
                synchronize(device)
                if repeat >= 2:  # the first calls pick kernels
                    times.append(1e3 * (time.perf_counter() - tic))
        return statistics.median(times)

    fp32_first = median_ms(False)
    bf16 = median_ms(True)
    fp32 = min(fp32_first, median_ms(False))  # alternated: a burst of other load does not favour one side
    return PrecisionProbe(str(device), fp32, bf16)


def resolve_precision(requested: str, device: torch.device) -> tuple[Precision, str | None]:
    """The precision a run uses for `requested` (fp32, bf16, fp16 or auto), and a line to show the user when
    there is something to know (what auto chose and why; an explicit bf16 that the probe found slower)."""
    if requested == "fp32":
        return "fp32", None
    if device.type == "cuda":
        if requested == "auto":
            chosen: Precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            return chosen, f"--precision auto: {chosen} autocast on {torch.cuda.get_device_name(device)}"
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            raise UserError(f"{torch.cuda.get_device_name(device)} has no bf16: use --precision fp16 or auto")
        return requested, None  # type: ignore[return-value]
    if requested == "fp16":
        raise UserError("--precision fp16 needs a CUDA device; on a CPU use bf16 or auto")
    probe = probe_bf16(device)
    fast = probe.bf16_speedup >= BF16_MIN_SPEEDUP
    if requested == "auto":
        return ("bf16" if fast else "fp32"), f"--precision auto: {'bf16' if fast else 'fp32'} ({probe.describe()})"
    if not fast:
        return "bf16", f"warning: bf16 is not faster than fp32 on this CPU ({probe.describe()}); running bf16 as asked"
    return "bf16", None


def uses_channels_last(device: torch.device, precision: Precision) -> bool:
    """Channels-last weights for reduced precision: oneDNN's AMX bf16 convolutions run 2-3x faster on them
    than on contiguous ones, and cuDNN's tensor-core kernels want them too. Not for fp32: measured on 2 CPU
    threads, they gain 5-7% at the moving-digits sizes but cost 10-15% in the training step of the
    128-channel mmnist models at batch 1 (benchmarks/speed.py)."""
    return device.type in ("cpu", "cuda") and precision in ("bf16", "fp16")


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every 4-d parameter and buffer channels-last (5-d ones: channels-last-3d); values, names and checkpoint
    contents unchanged. Activations follow the weights' layout through the convolutions."""
    def convert(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() == 4:
            return tensor.contiguous(memory_format=torch.channels_last)
        if tensor.dim() == 5:
            return tensor.contiguous(memory_format=torch.channels_last_3d)
        return tensor
    for module in model.modules():
        for param in module.parameters(recurse=False):
            param.data = convert(param.data)
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None:
                setattr(module, name, convert(buffer))
    return model


class CompiledOrEager:
    """A function compiled by `torch.compile` on its first call, or the function itself when compiling fails:
    then `reason` says why, in one line, and every later call runs eagerly. Only the first call falls back: a
    failure after it is the model's own and propagates."""

    def __init__(self, fn: Callable[..., Any], name: str, **compile_options: Any) -> None:
        self.eager, self.name = fn, name
        self.compiled: Callable[..., Any] | None = torch.compile(fn, **compile_options)
        self.reason: str | None = None
        self.tried = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # FLOP counting traces (torch.jit) or intercepts (a dispatch mode) the eager code: the same operators.
        if self.compiled is None or torch.jit.is_tracing() or _get_current_dispatch_mode() is not None:
            return self.eager(*args, **kwargs)
        if self.tried:
            return self.compiled(*args, **kwargs)
        self.tried = True
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly, and say why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.reason = f"{self.name} runs eagerly: torch.compile failed ({type(exc).__name__}: {first[:200]})"
            self.compiled = None
            return self.eager(*args, **kwargs)


def compile_model(model: nn.Module, device: torch.device) -> CompiledOrEager:
    """Compile a recurrent predictor's per-step function (the loop stays in Python: one small graph, reused
    every step), else the whole forward. On CUDA, mode reduce-overhead replays the step as a CUDA graph
    where the shapes are fixed, which is the case for a rollout."""
    target = "step" if hasattr(model, "init_state") and hasattr(model, "step") else "forward"
    options: dict[str, Any] = {"dynamic": False}
    if device.type == "cuda":
        options["mode"] = "reduce-overhead"
    name = f"{getattr(model, 'registry_name', type(model).__name__)}.{target}"
    wrapper = CompiledOrEager(getattr(model, target), name, **options)
    setattr(model, target, wrapper)  # an instance attribute: the class and its state dict are untouched
    return wrapper


@dataclass
class Execution:
    """The path a run took: what `costs.execution` records."""

    precision: Precision
    channels_last: bool
    compiled: CompiledOrEager | None = None

    def describe(self) -> str:
        if self.compiled is None:
            how = "eager"
        else:  # a step that fell back to eager says why
            how = self.compiled.reason or f"torch.compile of {self.compiled.name}"
        return "; ".join([self.precision, "channels-last weights" if self.channels_last else "contiguous weights", how])


def prepare_execution(model: nn.Module, device: torch.device, precision: Precision, *, channels_last: bool | None = None,
                      compile: bool = False) -> Execution:
    """Lay `model` out and compile it as asked (channels_last None: where it helps, see uses_channels_last);
    returns the record."""
    layout = uses_channels_last(device, precision) if channels_last is None else channels_last
    if layout:
        to_channels_last(model)
    compiled = compile_model(model, device) if compile else None
    return Execution(precision, layout, compiled)
