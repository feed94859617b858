"""`bench profile`: the costs of predictors built from their configs, without training and without data."""
from __future__ import annotations

import json
from typing import Any

import torch

from . import memory
from .acceleration import prepare_execution, resolve_precision
from .config import Overrides
from .costs import measure_costs
from .spec import Protocol
from .devices import describe_device, resolve_device
from .predictor import check_shared_keys, predictor_overrides, resolve_config
from .registry import DATASETS, PREDICTORS
from .progress import console

INPUT = "random clip of the protocol's shape, uniform in [0, 1] (seeded); costs do not depend on the values, no data needed"


def random_clip(protocol: Protocol, seed: int) -> torch.Tensor:
    """A clip [T, C, H, W] of the protocol's shape, uniform in [0, 1], the same for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    spec = protocol.spec
    return torch.rand(spec.length, spec.channels, spec.height, spec.width, generator=generator)


def profile_models(models: list[str], dataset_name: str, protocol: str | None, overrides: Overrides, *,
                   device: str = "auto", seed: int = 0, preset: str | None = None, precision: str = "fp32",
                   compile: bool = False, repeats: int = 10, warmup: int = 2) -> list[dict[str, Any]]:
    """One record per predictor: params, FLOPs, time and memory at batch 1. Weights are random (seeded)
    and so is the input clip, of the shape the dataset's protocol and options declare: costs depend on
    neither, and the dataset is never built, so no data need be prepared (or read, when they are)."""
    classes = [PREDICTORS.get(name) for name in models]
    dataset = DATASETS.get(dataset_name)
    resolved_protocol = dataset.protocol_without_data(protocol, **overrides.dataset)
    check_shared_keys(classes, overrides)
    torch_device = resolve_device(device)
    resolved_precision, note = resolve_precision(precision, torch_device)
    if note is not None:
        console.print(note)
    clip = None  # made once a model is known to fit: a refused frame size is never allocated
    records = []
    for cls in classes:
        resolved = resolve_config(cls, dataset.presets_for(resolved_protocol), predictor_overrides(cls, overrides),
                                  preset=preset if preset in cls.presets else None)
        spec = resolved_protocol.spec
        forward_peak = memory.forward_peak_bytes(resolved, spec, torch_device)  # on small frames, scaled
        torch.manual_seed(seed)
        model = resolved.build(spec).to(torch_device)
        memory.check_forward_fits(cls.registry_name, spec, sum(p.numel() for p in model.parameters()), forward_peak,
                                  torch_device)
        clip = random_clip(resolved_protocol, seed) if clip is None else clip
        execution = prepare_execution(model, torch_device, resolved_precision, compile=compile)
        costs = measure_costs(model, clip, torch_device, describe_device(torch_device), warmup=warmup,
                              repeats=repeats, precision=resolved_precision)
        costs["execution"] = execution.describe()
        records.append({"predictor": cls.registry_name, "dataset": dataset.registry_name,
                        "protocol": resolved_protocol.to_dict(), "preset": resolved.preset, "input": INPUT, **costs})
        del model
    return records


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    for prefix in ("", "K", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            return f"{value:.3g}{prefix}{unit}" if prefix else f"{value:.0f}{unit}"
        value /= 1000
    raise AssertionError("unreachable")


def render_profiles(records: list[dict[str, Any]], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(records, indent=2)
    header = ["predictor", "params", "FLOPs", "ms/seq", "frames/s", "peak mem"]
    rows = [[r["predictor"], _si(r["params"]), _si(r["flops"]), f"{r['ms_per_sequence']:.2f}",
             f"{r['fps']:.1f}" if r["fps"] else "—",
             f"{r['peak_memory_bytes'] / 2**20:.1f} MiB" if r["peak_memory_bytes"] is not None else "—"]
            for r in records]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)) for row in [header, *rows]]
    if records:
        first = records[0]
        lines += ["", f"device: {first['device']}; timing: {first['timing']}",
                  f"peak memory: {first['peak_memory_kind']}",
                  "FLOPs: fvcore, one multiply-add = 1, batch 1 over the whole rollout"]
        lines += [f"  {r['predictor']}: {r['flops_check']}" for r in records]
        lines += ["execution:", *(f"  {r['predictor']}: {r['execution']}" for r in records)]
    return "\n".join(lines)
