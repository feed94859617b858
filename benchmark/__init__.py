"""vpbench: a benchmark harness for video prediction.

The plugin API is `__all__`; a plugin imports from `vpbench` only:

    from vpbench import Predictor, TrainConfig, register_predictor

Names load on first use (PEP 562), so `import vpbench` and `bench --help` do not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the submodule that defines it.
_SOURCES = {
    "Predictor": "predictor", "StochasticPredictor": "predictor", "ResolvedConfig": "predictor",
    "create_predictor": "predictor", "resolve_config": "predictor", "count_parameters": "predictor",
    "Trainer": "predictor",
    "RecurrentPredictor": "recurrent", "RecurrentConfig": "recurrent",
    "TrainConfig": "config", "StochasticConfig": "config", "setting": "config", "iterations": "config",
    "bookkeeping": "config", "Rule": "config", "at_least": "config", "above": "config", "between": "config",
    "TrainContext": "training",
    "VideoSpec": "spec",
    "VideoDataset": "data", "DatasetConfig": "data", "Protocol": "spec",
    "PREDICTORS": "registry", "DATASETS": "registry", "register_predictor": "registry",
    "register_dataset": "registry", "load_plugin": "registry",
    "UserError": "errors",
}
__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'vpbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers see; the lazy table above is what runs
    from .config import Rule, StochasticConfig, TrainConfig, above, at_least, between, bookkeeping, iterations, setting
    from .data import DatasetConfig, VideoDataset
    from .errors import UserError
    from .predictor import (Predictor, ResolvedConfig, StochasticPredictor, Trainer, count_parameters,
                            create_predictor, resolve_config)
    from .recurrent import RecurrentConfig, RecurrentPredictor
    from .registry import DATASETS, PREDICTORS, load_plugin, register_dataset, register_predictor
    from .spec import Protocol, VideoSpec
    from .training import TrainContext
