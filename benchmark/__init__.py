"""vpbench: a benchmark harness for video prediction.

The plugin API is `__all__`, and a model's building blocks are in `vpbench.layers`; a plugin imports from these
two only, as the built-in predictors and datasets do (tests/test_public_api.py):

    from vpbench import Predictor, TrainConfig, register_predictor
    from vpbench.layers import gate_conv

Names load on first use (PEP 562), so `import vpbench` and `bench --help` do not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the submodule that defines it. Building blocks of models are in `vpbench.layers`.
_SOURCES = {
    "Predictor": "predictor", "StochasticPredictor": "predictor", "ResolvedConfig": "predictor",
    "create_predictor": "predictor", "resolve_config": "predictor", "count_parameters": "predictor",
    "Trainer": "predictor", "Clips": "predictor",
    "RecurrentPredictor": "recurrent", "RecurrentConfig": "recurrent",
    "TrainConfig": "config", "StochasticConfig": "config", "setting": "config", "iterations": "config",
    "later_setting": "config", "bookkeeping": "config", "tiny_preset": "config",
    # the rules a setting's value keeps (config.Rule): at_least(1), ..., and the named ones
    "Rule": "config", "at_least": "config", "above": "config", "between": "config",
    **dict.fromkeys(("COUNT", "POSITIVE", "NON_NEGATIVE", "PROBABILITY", "ODD", "EVEN", "FINITE", "POWER_OF_TWO",
                     "OPEN_FRACTION", "SEED", "CONV_SPEC"), "config"),
    "TrainContext": "training",
    "ReferenceLayout": "foreign",
    "VideoSpec": "spec", "Protocol": "spec", "DataProblem": "spec",
    "VideoDataset": "data", "DatasetConfig": "data", "Split": "spec", "SPLITS": "spec",
    "PREDICTORS": "registry", "DATASETS": "registry", "register_predictor": "registry",
    "register_dataset": "registry", "load_plugin": "registry",
    "UserError": "errors",
    "console": "progress",  # where a plugin prints: quiet on every rank but 0 under torchrun
    "sha256_files": "digest",  # a dataset's fingerprint of the files its clips come from
    "available_bytes": "memory",  # free memory on a device: a predictor that refuses a size before building it
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
    from .config import (CONV_SPEC, COUNT, EVEN, FINITE, NON_NEGATIVE, ODD, OPEN_FRACTION, POSITIVE, POWER_OF_TWO,
                         PROBABILITY, SEED, Rule, StochasticConfig, TrainConfig, above, at_least, between, bookkeeping,
                         iterations, later_setting, setting, tiny_preset)
    from .data import DatasetConfig, VideoDataset
    from .digest import sha256_files
    from .errors import UserError
    from .foreign import ReferenceLayout
    from .memory import available_bytes
    from .predictor import (Clips, Predictor, ResolvedConfig, StochasticPredictor, Trainer, count_parameters,
                            create_predictor, resolve_config)
    from .progress import console
    from .recurrent import RecurrentConfig, RecurrentPredictor
    from .registry import DATASETS, PREDICTORS, load_plugin, register_dataset, register_predictor
    from .spec import SPLITS, DataProblem, Protocol, Split, VideoSpec
    from .training import TrainContext
