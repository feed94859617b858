"""What a predictor costs: parameters, FLOPs, inference time and peak memory, for one test sequence at batch 1.

FLOPs follow the papers' convention (fvcore: one multiply-add counts once) over the whole rollout, context
in and `future` frames out, and are cross-checked against torch.utils.flop_counter, which counts a
multiply-add as two. The check compares operator families both counters have a formula for (convolutions,
matrix products) and names what it leaves out: families fvcore counts by its own convention and torch's
counter does not (normalisation, interpolation, pooling, grid sampling), and operators that ran without a
formula in the installed torch (its CPU attention kernel, in some releases). Which operators torch covers
changes between releases, so nothing here assumes one release's coverage. Element-wise operations
(activations, gate products) are counted by neither, as in every published table.
"""
from __future__ import annotations

from collections import Counter

import contextlib
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from .precision import autocast, synchronize
from .predictor import Predictor, count_parameters


@dataclass(frozen=True)
class OperatorFamily:
    """Operators that compute the same thing, as fvcore names them and as torch's counter sees them."""

    name: str
    fvcore: frozenset[str]  # fvcore's by_operator names
    torch_prefixes: tuple[str, ...]  # aten operator names (as torch's counter keys them) starting so
    compared: bool = True  # False: fvcore counts it by a convention torch's counter has no formula for
    reason: str = ""  # why an uncompared family is left out

    def has_torch_op(self, op: str) -> bool:
        return op.startswith(self.torch_prefixes)


# Attention kernels: torch's counter has formulas for some (flash/efficient/cuDNN) and, in some releases,
# not for the CPU kernel; when the composite is decomposed, the matrix products are counted as bmm instead.
ATTENTION_PREFIXES = ("aten._scaled_dot_product", "aten._flash_attention", "aten._efficient_attention",
                      "aten._cudnn_attention", "flex_attention")
FVCORE_ATTENTION = "scaled_dot_product_attention"

FAMILIES: tuple[OperatorFamily, ...] = (
    OperatorFamily("convolution", frozenset({"conv"}),
                   ("aten.convolution", "aten._convolution", "aten.cudnn_convolution", "aten._slow_conv2d",
                    "aten.mkldnn_convolution", "aten.convolution_overrideable")),
    OperatorFamily("matrix products", frozenset({"linear", "addmm", "matmul", "bmm", "mm", "einsum", "baddbmm",
                                                 FVCORE_ATTENTION}),
                   ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten._scaled_mm", *ATTENTION_PREFIXES)),
    OperatorFamily("normalisation", frozenset({"batch_norm", "group_norm", "layer_norm", "instance_norm"}),
                   ("aten.native_batch_norm", "aten._native_batch_norm", "aten.native_group_norm",
                    "aten.native_layer_norm", "aten.instance_norm", "aten.batch_norm"),
                   compared=False, reason="fvcore counts normalisation (about 5 FLOPs per element); "
                                          "torch's counter has no formula for it"),
    OperatorFamily("interpolation", frozenset({"upsample_nearest2d", "upsample_bilinear2d"}), ("aten.upsample",),
                   compared=False, reason="fvcore counts interpolation per output element; torch's counter does not"),
    OperatorFamily("pooling", frozenset({"adaptive_avg_pool2d"}), ("aten._adaptive_avg_pool", "aten.adaptive_avg_pool"),
                   compared=False, reason="fvcore counts adaptive average pooling; torch's counter does not"),
    OperatorFamily("grid sampling", frozenset({"grid_sampler"}), ("aten.grid_sampler",),
                   compared=False, reason="fvcore counts grid sampling; torch's counter does not"),
)


def _family_of_fvcore(op: str) -> OperatorFamily | None:
    return next((f for f in FAMILIES if op in f.fvcore), None)


def _family_of_torch(op: str) -> OperatorFamily | None:
    return next((f for f in FAMILIES if f.has_torch_op(op)), None)


def _sdpa_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore has no handle for scaled_dot_product_attention: Q K^T and A V, as torch's counter counts them."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _string_padding_conv_flops(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """fvcore has no handle for a convolution whose padding is a string (`padding="same"`, traced as
    aten::_convolution_mode; ConvMixer's): counted as fvcore counts every other convolution."""
    from fvcore.nn.jit_handles import conv_flop_count, get_shape

    shapes = (get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]))
    return Counter({"conv": conv_flop_count(*shapes, transposed=False)})


EXTRA_HANDLES: dict[str, Callable] = {f"aten::{FVCORE_ATTENTION}": _sdpa_flops,
                                      "aten::_convolution_mode": _string_padding_conv_flops}


class _Rollout(nn.Module):
    """forward(context) -> the predictor's rollout of `future` frames, plus a sum of every leaf module's output.

    torch.jit's trace, which fvcore counts, drops computations whose results are discarded, such as a
    recurrent model's outputs at context steps. Eager inference runs them, and the papers' counts include
    them (the reference models return all T-1 frames), so each module output is kept alive through the sum.
    """

    def __init__(self, model: Predictor, future: int) -> None:
        super().__init__()
        self.model, self.future = model, future

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        kept: list[Tensor] = []

        def keep(module: nn.Module, inputs: Any, output: Any) -> None:
            outputs = output if isinstance(output, (tuple, list)) else (output,)
            kept.extend(o.sum() for o in outputs if isinstance(o, Tensor))

        leaves = [m for m in self.model.modules() if next(m.children(), None) is None]
        hooks = [m.register_forward_hook(keep) for m in leaves]
        try:
            prediction = self.model(context, self.future)
        finally:
            for hook in hooks:
                hook.remove()
        return prediction, torch.stack(kept).sum() if kept else prediction.sum()


@dataclass
class FlopCount:
    """fvcore's count (the reported figure) and its cross-check against torch's counter, per operator family."""

    fvcore: int  # the reported figure: one multiply-add = 1
    fvcore_by_operator: dict[str, int]
    torch: int  # torch.utils.flop_counter's total, halved to the same convention
    torch_by_operator: dict[str, int]
    uncounted: dict[str, int]  # operators fvcore has no handle for (element-wise), with how often they ran
    # aten operators that ran under torch's counter without a formula in this torch release
    torch_without_formula: list[str] = field(default_factory=list)

    @property
    def families(self) -> dict[str, tuple[int, int]]:
        """Compared family -> (fvcore, torch), each without what `left_out` names."""
        out = {f.name: [0, 0] for f in FAMILIES if f.compared}
        skipped = self.left_out
        for op, n in self.fvcore_by_operator.items():
            family = _family_of_fvcore(op)
            if family is not None and family.compared and op not in skipped:
                out[family.name][0] += n
        for op, n in self.torch_by_operator.items():
            family = _family_of_torch(op)
            if family is not None and family.compared:
                out[family.name][1] += n
        return {name: (a, b) for name, (a, b) in out.items() if a or b}

    @property
    def left_out(self) -> dict[str, str]:
        """fvcore operators left out of the comparison -> why."""
        out = {}
        for op, n in self.fvcore_by_operator.items():
            family = _family_of_fvcore(op)
            if n and family is not None and not family.compared:
                out[op] = family.reason
        attention_gaps = [op for op in self.torch_without_formula if op.startswith(ATTENTION_PREFIXES)]
        if self.fvcore_by_operator.get(FVCORE_ATTENTION) and attention_gaps:
            out[FVCORE_ATTENTION] = (f"torch {torch.__version__}'s counter has no formula for "
                                     f"{', '.join(attention_gaps)}")
        return out

    @property
    def unexplained(self) -> list[str]:
        """Counted operators that belong to no family: neither compared nor named with a reason."""
        return ([f"fvcore {op}" for op, n in self.fvcore_by_operator.items() if n and _family_of_fvcore(op) is None]
                + [f"torch {op}" for op, n in self.torch_by_operator.items() if n and _family_of_torch(op) is None])

    @property
    def relative_difference(self) -> float:
        """The largest relative difference over the compared families (0 when nothing is compared)."""
        return max((abs(a - b) / max(a, b) for a, b in self.families.values() if max(a, b)), default=0.0)

    def describe(self) -> str:
        families = "; ".join(f"{name} {a:,} vs {b:,}" for name, (a, b) in self.families.items()) or "nothing"
        text = (f"fvcore {self.fvcore:,}; compared per operator family with torch.utils.flop_counter (halved), "
                f"fvcore vs torch: {families}; largest difference {100 * self.relative_difference:.3f}%")
        for op, reason in self.left_out.items():
            text += f"; {op} {self.fvcore_by_operator[op]:,} left out of the comparison: {reason}"
        if self.unexplained:
            text += f"; in no operator family, not compared: {', '.join(self.unexplained)}"
        return text


class _OperatorLog(TorchDispatchMode):
    """Records which aten operators run, so that those torch's counter has no formula for can be named."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _seeded_draws(device: torch.device) -> Iterator[None]:
    """The global RNG seeded alike for each counting pass, and left as it was: a predictor whose computation depends
    on its draws (DMVFN's routing picks the blocks that run) runs the same operators in both."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        yield


def count_flops(model: Predictor, context: Tensor, future: int) -> FlopCount:
    """FLOPs of predicting `future` frames from `context` [1, Tc, C, H, W] (batch 1), both ways; random draws inside
    the forward come from the same fixed seed in both passes (a stochastic predictor's count is that draw's)."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    was_training = model.training
    model.eval()
    try:
        rollout = _Rollout(model, future)
        with warnings.catch_warnings(), torch.no_grad(), _seeded_draws(context.device):
            # torch.jit's deprecation notice at fvcore's import, and tracer warnings about Python control flow
            # (the rollout's length is fixed, so the trace is the computation).
            warnings.simplefilter("ignore")
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(rollout, (context,)).set_op_handle(**EXTRA_HANDLES)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            by_op = {op: int(n) for op, n in analysis.by_operator().items()}
            uncounted = {op: int(n) for op, n in analysis.unsupported_ops().items()}
        # A second pass: under torch's dispatch-mode counter the tracer would not see the operations.
        counter, log = FlopCounterMode(display=False), _OperatorLog()
        with counter, log, torch.no_grad(), _seeded_draws(context.device):
            model(context, future)
        torch_by_op = {str(op): int(n) // 2 for op, n in counter.get_flop_counts().get("Global", {}).items()}
        with_formula = {str(op) for op in flop_registry}
        without = sorted(op for op in log.ops if op.startswith(ATTENTION_PREFIXES) and op not in with_formula)
    finally:
        model.train(was_training)
    return FlopCount(sum(by_op.values()), by_op, counter.get_total_flops() // 2, torch_by_op, uncounted, without)


def _cpu_peak_rss() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def _reset_cpu_peak() -> bool:
    """Linux resets a process's peak RSS when 5 is written to its clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Yields a dict filled on exit with `peak_memory_bytes` and `peak_memory_kind` (what was measured)."""
    out: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        synchronize(device)
        out.update(peak_memory_bytes=torch.cuda.max_memory_allocated(device),
                   peak_memory_kind="CUDA caching allocator peak (max_memory_allocated), weights included")
        return
    reset = _reset_cpu_peak()
    yield out
    out.update(peak_memory_bytes=_cpu_peak_rss(),
               peak_memory_kind=("process peak RSS during the timed runs (VmHWM reset before them), "
                                 "the Python process and libraries included" if reset else
                                 "process peak RSS since the process started"))


def time_inference(model: Predictor, context: Tensor, future: int, device: torch.device, *, warmup: int = 2,
                   repeats: int = 10, precision: str = "fp32", budget_seconds: float = 60.0) -> list[float]:
    """Milliseconds per rollout of one sequence (batch 1) in eval mode without gradients, after `warmup`
    runs: CUDA events around each run on GPU, perf_counter after synchronisation elsewhere. Stops early
    once `budget_seconds` are spent, after at least 3 runs."""
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.no_grad(), autocast(device, precision):
            for _ in range(warmup):
                model(context, future)
            started = time.perf_counter()
            for _ in range(repeats):
                if device.type == "cuda":
                    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    begin.record()
                    model(context, future)
                    end.record()
                    end.synchronize()
                    times.append(begin.elapsed_time(end))
                else:
                    synchronize(device)
                    tic = time.perf_counter()
                    model(context, future)
                    synchronize(device)
                    times.append(1000 * (time.perf_counter() - tic))
                if len(times) >= 3 and time.perf_counter() - started > budget_seconds:
                    break
    finally:
        model.train(was_training)
    return times


def measure_costs(model: Predictor, clip: Tensor, device: torch.device, device_name: str, *, warmup: int = 2,
                  repeats: int = 10, precision: str = "fp32") -> dict[str, Any]:
    """Params, FLOPs, time and peak memory of `model` on one clip [T, C, H, W] (context + future frames)."""
    spec = model.spec
    context = clip[None, : spec.context].to(device)
    params, trainable = count_parameters(model)
    costs: dict[str, Any] = {"params": params, "trainable_params": trainable}
    try:
        flops = count_flops(model, context, spec.future)
        costs.update(flops=flops.fvcore, flops_check=flops.describe())
    except Exception as exc:  # a model torch.jit cannot trace: say so instead of failing the run
        costs.update(flops=None, flops_check=f"not measured: fvcore could not trace the model "
                                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    with peak_memory(device) as memory:
        times = time_inference(model, context, spec.future, device, warmup=warmup, repeats=repeats,
                               precision=precision)
    ms = statistics.median(times)
    costs.update(ms_per_sequence=ms, fps=1000 * spec.future / ms if ms > 0 else None, **memory,
                 timing=(f"batch 1, one sequence ({spec.context} frames in, {spec.future} out), eval mode, "
                         f"no grad, {precision}, median of {len(times)} runs after {warmup} warm-up; "
                         + ("CUDA events" if device.type == "cuda" else "perf_counter wall time")),
                 device=device_name)
    return costs
