"""Speed of vpbench's recurrent predictors, side by side with OpenSTL's models when `import openstl` works.

    python benchmarks/speed.py [--models convlstm,predrnn,predrnn-pp,mim,e3d-lstm] [--preset mmnist]
                               [--batch 1] [--threads 2] [--device cpu] [--repeats 5] [--no-compile]
                               [--variants fp32,openstl]

Per predictor (the preset's model on its 64x64, 10 -> 10 protocol), milliseconds per call, the median of
--repeats rounds in which every variant runs once in turn, all in this one process:
  forward     closed-loop rollout of a batch (eval mode, no grad);
  train step  training loss and backward of a batch (no optimizer step, the same on both sides);
for these variants:
  plain       vpbench as it was before the speed work: contiguous weights, each gate convolution on its own;
  fp32        vpbench's default path: contiguous weights, summed gate convolutions fused (up to 1M weights);
  fp32-cl     that path on channels-last weights;
  bf16        fp32's path under bf16 autocast;
  bf16-cl     bf16 on channels-last weights (what `--precision bf16` / `auto` runs);
  compiled    fp32's path with the step compiled by torch.compile (`--compile`);
  openstl     OpenSTL's model with vpbench's weights copied in (its outputs are checked against vpbench's
              first: the largest difference is printed), in fp32 and under bf16 autocast.
Ratios are openstl's fp32 time over each variant's. Then, per predictor, the fp32 bound: the time one forward
spends inside convolution kernels (torch.profiler); no fp32 implementation that runs the same convolutions
with the same kernels can beat the reference by more than reference / that time.
Last, the evaluation overhead (scoring MSE, MAE, PSNR, SSIM of a 16-sequence batch against its rollout) and
SSIM's throughput against scikit-image's per-frame loop.
Run it on an otherwise idle machine: figures taken under load are not figures.
"""
from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, ContextManager

import torch
from torch import Tensor, nn

from vpbench import VideoSpec, create_predictor
from vpbench.acceleration import compile_model, probe_bf16, to_channels_last
from vpbench.cpu import keep_freed_memory_for_reuse
from vpbench.metrics.accumulate import MetricSums
from vpbench.metrics.frame import FrameMetric, ssim
from vpbench.precision import synchronize
from vpbench.layers import patchify, unfused_gate_convs, unpatchify

SPEC = VideoSpec(channels=1, height=64, width=64, context=10, future=10)
# vpbench name -> OpenSTL model class; vpbench keeps OpenSTL's parameter names, so weights copy by name.
OPENSTL_MODELS = {"convlstm": "ConvLSTM_Model", "predrnn": "PredRNN_Model", "predrnn-pp": "PredRNNpp_Model",
                  "mim": "MIM_Model", "e3d-lstm": "E3DLSTM_Model", "predrnn-v2": "PredRNNv2_Model"}
# OpenSTL's ConvLSTM cell never adds the forget-gate bias it declares (see predictors/convlstm.py): for equal
# outputs vpbench's runs without it here; the time does not depend on it.
SAME_MATH = {"convlstm": {"forget_bias": 0.0}}


@dataclass
class Variant:
    name: str
    forward: Callable[[], Tensor]
    train_step: Callable[[], None] | None


def median_ms(variants: list[Variant], which: str, repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Every variant once per round, `repeats` rounds after one warm-up round; the median per variant.

    Every other round runs the variants in reverse order, so that no variant always runs right after the same
    one (what a call leaves in the caches and the allocator can favour or slow the next)."""
    calls = {v.name: getattr(v, which) for v in variants if getattr(v, which) is not None}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        order = list(calls.items())
        if round_ % 2:
            order.reverse()
        for name, call in order:
            sync()
            tic = time.perf_counter()
            call()
            sync()
            if round_ > 0:
                times[name].append(1e3 * (time.perf_counter() - tic))
    return {name: statistics.median(t) for name, t in times.items()}


def openstl_model(name: str, model: nn.Module, device: torch.device) -> tuple[nn.Module | None, str]:
    """OpenSTL's model of `name` at vpbench's `model` settings, with its weights; or None and why not."""
    if name not in OPENSTL_MODELS:
        return None, f"no OpenSTL model for {name}"
    try:
        import openstl.models
    except Exception as exc:  # noqa: BLE001 - any import failure: say it and go on with vpbench's figures
        return None, f"OpenSTL is not importable ({type(exc).__name__}: {exc})"
    cfg = model.config
    configs = SimpleNamespace(in_shape=(SPEC.length, SPEC.channels, SPEC.height, SPEC.width),
                              patch_size=cfg.patch_size, filter_size=cfg.filter_size, stride=1,
                              layer_norm=cfg.layer_norm, pre_seq_length=SPEC.context, aft_seq_length=SPEC.future,
                              reverse_scheduled_sampling=0)
    reference = getattr(openstl.models, OPENSTL_MODELS[name])(cfg.num_layers, [cfg.num_hidden] * cfg.num_layers,
                                                              configs).to(device)
    ours = model.state_dict()
    theirs = reference.state_dict()
    copied = {k: ours[k] for k in theirs if k in ours and ours[k].shape == theirs[k].shape}
    reference.load_state_dict(copied, strict=False)
    return reference, f"{len(copied)} of {len(theirs)} OpenSTL tensors copied from vpbench's by name"


def openstl_calls(reference: nn.Module, clip: Tensor, patch: int) -> tuple[Callable[[], Tensor], Callable[[], None]]:
    frames = patchify(clip, patch).permute(0, 1, 3, 4, 2).contiguous()  # OpenSTL's [B, T, h, w, p*p*C]
    b, _, h, w, c = frames.shape
    inference_mask = torch.zeros(b, SPEC.future - 1, h, w, c, device=clip.device)  # predictions fed back
    training_mask = torch.ones_like(inference_mask)

    @torch.no_grad()
    def forward() -> Tensor:
        reference.eval()
        out = reference(frames, inference_mask, return_loss=False)[0][:, SPEC.context - 1:]
        return unpatchify(out.permute(0, 1, 4, 2, 3), patch, SPEC.channels)

    def train_step() -> None:
        reference.train()
        reference.zero_grad(set_to_none=True)
        reference(frames, training_mask)[1].backward()

    return forward, train_step


def vpbench_calls(model: nn.Module, clip: Tensor) -> tuple[Callable[[], Tensor], Callable[[], None]]:
    context = clip[:, : SPEC.context]

    @torch.no_grad()
    def forward() -> Tensor:
        model.eval()
        return model(context, SPEC.future)

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        model.training_loss(clip, iteration=0).backward()  # sampling probability 1: truth fed, as OpenSTL's mask

    return forward, train_step


def within(context: Callable[[], ContextManager], fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` run inside a fresh `context()` each call: the plain path (unfused_gate_convs) or bf16 autocast."""
    def call() -> Any:
        with context():
            return fn()
    return call


def bf16(device: torch.device) -> Callable[[], ContextManager]:
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def convolution_ms(forward: Callable[[], Tensor]) -> float:
    """Milliseconds one call of `forward` spends in convolution kernels (self time of the convolution ops)."""
    from torch.profiler import ProfilerActivity, profile

    forward()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key) / 1e3


def compare_predictor(name: str, args: argparse.Namespace, device: torch.device,
                      sync: Callable[[], None]) -> list[str]:
    torch.manual_seed(0)
    model = create_predictor(name, SPEC, preset=args.preset, **SAME_MATH.get(name, {})).to(device)
    clip = torch.rand(args.batch, SPEC.length, SPEC.channels, SPEC.height, SPEC.width,
                      generator=torch.Generator().manual_seed(1)).to(device)
    reference, how = openstl_model(name, model, device)
    lines = [f"{name} (preset {args.preset}, batch {args.batch}): {how}"]

    variants = [Variant("plain", *(within(unfused_gate_convs, call) for call in vpbench_calls(copy.deepcopy(model), clip)))]
    forward, train_step = vpbench_calls(model, clip)
    layout = to_channels_last(copy.deepcopy(model))
    cl_forward, cl_train = vpbench_calls(layout, clip)
    variants += [Variant("fp32", forward, train_step), Variant("fp32-cl", cl_forward, cl_train),
                 Variant("bf16", within(bf16(device), forward), within(bf16(device), train_step)),
                 Variant("bf16-cl", within(bf16(device), cl_forward), within(bf16(device), cl_train))]
    if not args.no_compile:
        compiled = copy.deepcopy(model)
        wrapper = compile_model(compiled, device)
        c_forward, c_train = vpbench_calls(compiled, clip)
        c_forward()
        if wrapper.reason is not None:
            lines.append(f"  compiled: {wrapper.reason}")
        else:
            variants.append(Variant("compiled", c_forward, c_train))
    if reference is not None:
        r_forward, r_train = openstl_calls(reference, clip, model.config.patch_size)
        difference = (r_forward() - forward()).abs().max().item()
        lines.append(f"  outputs: largest |openstl - vpbench| = {difference:.2e}")
        variants += [Variant("openstl", r_forward, r_train),
                     Variant("openstl-bf16", within(bf16(device), r_forward), within(bf16(device), r_train))]
    if args.variants:
        variants = [v for v in variants if v.name in args.variants.split(",")]
    for which, label in (("forward", "forward"), ("train_step", "train step")):
        ms = median_ms(variants, which, args.repeats, sync)
        base = ms.get("openstl")
        cells = [f"{v} {t:.1f}" + (f" ({base / t:.2f}x)" if base and v != "openstl" else "") for v, t in ms.items()]
        lines.append(f"  {label:10s} ms: " + ", ".join(cells))
        if which == "forward" and device.type == "cpu" and "fp32" in ms:
            conv = convolution_ms(forward)
            bound = f"; fp32 bound vs openstl: {base / conv:.2f}x" if base else ""
            lines.append(f"  fp32 forward: {conv:.1f} ms of {ms['fp32']:.1f} in convolution kernels "
                         f"({100 * conv / ms['fp32']:.0f}%){bound}")
    return lines


def evaluation_overhead(device: torch.device, repeats: int, sync: Callable[[], None]) -> str:
    """Scoring a 16-sequence batch (MSE, MAE, PSNR, SSIM of 160 frames) against its convlstm rollout."""
    torch.manual_seed(0)
    model = create_predictor("convlstm", SPEC, preset="moving-digits").to(device)  # the default fp32 path
    clip = torch.rand(16, SPEC.length, 1, 64, 64, generator=torch.Generator().manual_seed(1)).to(device)
    rollout, _ = vpbench_calls(model, clip)
    prediction, target = rollout().clamp(0, 1)[:, None], clip[:, SPEC.context:]
    sums = MetricSums(FrameMetric(), SPEC.future, device)
    variants = [Variant("rollout", rollout, None), Variant("scoring", lambda: sums.add(prediction, target), None)]
    ms = median_ms(variants, "forward", repeats, sync)
    share = ms["scoring"] / (ms["rollout"] + ms["scoring"])
    return (f"evaluation overhead (moving-digits convlstm, batch 16): rollout {ms['rollout']:.1f} ms, scoring "
            f"{ms['scoring']:.1f} ms: {100 * share:.1f}% of the evaluation time")


def ssim_throughput(repeats: int) -> str:
    from ssim_speed import skimage_loop  # benchmarks/ssim_speed.py: the loop OpenSTL runs, at vpbench's settings

    g = torch.Generator().manual_seed(0)
    target = torch.rand(160, 1, 64, 64, generator=g)
    pred = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    p64, t64 = pred.double().numpy(), target.double().numpy()
    variants = [Variant("vpbench", lambda: ssim(pred, target), None),
                Variant("skimage", lambda: skimage_loop(p64, t64), None)]
    ms = median_ms(variants, "forward", repeats, lambda: None)
    return (f"SSIM of 160 frames 64x64: vpbench {ms['vpbench']:.1f} ms, scikit-image per frame {ms['skimage']:.1f} ms "
            f"({ms['skimage'] / ms['vpbench']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="convlstm,predrnn,predrnn-pp,mim,e3d-lstm")
    parser.add_argument("--preset", default="mmnist")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default="", help="time only these (comma-separated, e.g. fp32,openstl: "
                        "bf16 is emulated, and slow, on a CPU without AVX512-BF16 or AMX)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (compiling takes "
                        "tens of seconds per predictor on a CPU)")
    args = parser.parse_args()
    keep_freed_memory_for_reuse()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = functools.partial(synchronize, device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}; median of {args.repeats} "
          f"alternating rounds; ratios: openstl fp32 ms / variant ms")
    if device.type == "cpu":
        print(probe_bf16(device).describe())
    for name in args.models.split(","):
        print("\n".join(compare_predictor(name.strip(), args, device, sync)), flush=True)
    print(evaluation_overhead(device, args.repeats, sync))
    if device.type == "cpu":
        print(ssim_throughput(args.repeats))


if __name__ == "__main__":
    main()
