"""`bench profile`: the costs of predictors built from their configs, without training."""
from __future__ import annotations

import json
from typing import Any

import torch

from .config import Overrides
from .costs import measure_costs
from .predictor import resolve_config
from .registry import PREDICTORS
from .runner import build_dataset, check_shared_keys, describe_device, predictor_overrides, resolve_device


def profile_models(models: list[str], dataset_name: str, protocol: str | None, overrides: Overrides, *,
                   device: str = "auto", seed: int = 0, preset: str | None = None, precision: str = "fp32",
                   repeats: int = 10, warmup: int = 2) -> list[dict[str, Any]]:
    """One record per predictor: params, FLOPs, time and memory at batch 1 on the first test sequence.
    Weights are random (seeded): costs do not depend on them."""
    classes = [PREDICTORS.get(name) for name in models]
    dataset = build_dataset(dataset_name, protocol, overrides.dataset)
    check_shared_keys(classes, overrides)
    torch_device = resolve_device(device)
    clip = dataset.split("test")[0]
    records = []
    for cls in classes:
        resolved = resolve_config(cls, dataset.presets(), predictor_overrides(cls, overrides),
                                  preset=preset if preset in cls.presets else None)
        torch.manual_seed(seed)
        model = resolved.build(dataset.spec).to(torch_device)
        costs = measure_costs(model, clip, torch_device, describe_device(torch_device), warmup=warmup,
                              repeats=repeats, precision=precision)
        records.append({"predictor": cls.registry_name, "dataset": dataset.registry_name,
                        "protocol": dataset.protocol.to_dict(), "preset": resolved.preset, **costs})
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
    return "\n".join(lines)
