"""Typed configs: dataclasses with defaults, per-dataset presets, and checked overrides.

Overrides come from `--set key=value` (strings) and `--config file.yaml` (YAML values). Both go
through `apply_overrides`, which rejects unknown keys (suggesting close ones) and values that do not
fit the field's type, each with one clear message.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml

from .errors import UserError

C = TypeVar("C")


def iterations(default: int) -> Any:
    """A field counted in training iterations: `--quick` shrinks it with the schedule."""
    return field(default=default, metadata={"iterations": True})


def bookkeeping(default: Any) -> Any:
    """A field that does not change what is learned or measured: left out of the run identity."""
    return field(default=default, metadata={"identity": False})


@dataclass
class TrainConfig:
    """Optimisation settings every trainable predictor has. Predictor configs extend it."""

    batch_size: int = 8
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine", "exponential", "onecycle"] = "constant"
    lr_gamma: float = 0.9  # exponential: multiply by gamma every lr_step_every iterations
    lr_step_every: int = iterations(2000)
    max_iterations: int = iterations(80000)
    quick_iterations: int = 300
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    val_every: int = iterations(5000)
    val_sequences: int = 256  # sequences of the validation split scored for checkpoint selection
    train_horizon: int = 0  # frames predicted in training (0: the protocol's); tests roll out the whole horizon
    checkpoint_every: int = bookkeeping(500)
    eval_batch_size: int = bookkeeping(16)


# The schedule of a `tiny` preset: the contract's quick run (vpbench.contract, `bench check`) trains
# `max_iterations` steps of `batch_size` clips; a constant lr, since a 30-step cosine would end at zero.
TINY_SCHEDULE: dict[str, Any] = {"batch_size": 4, "lr_schedule": "constant", "max_iterations": 30}


def tiny_preset(base: Mapping[str, Any], **size: Any) -> dict[str, Any]:
    """A predictor's `tiny` preset: `base` (its moving-digits preset) at the size `size` gives, on the
    tiny schedule. The size the contract checks every predictor at: seconds on one CPU core."""
    return {**base, **TINY_SCHEDULE, **size}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Convert `value` (a string from the CLI or a YAML value) to `tp`, or raise ValueError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except ValueError:
                pass
        raise ValueError
    if origin is Literal:
        allowed = typing.get_args(tp)
        for option in allowed:
            if value == option or (isinstance(value, str) and str(option) == value):
                return option
        raise ValueError
    if origin in (tuple, list):
        (item_tp, *rest) = typing.get_args(tp)
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError
        converted = [_coerce(v.strip() if isinstance(v, str) else v, item_tp) for v in items]
        return tuple(converted) if origin is tuple else converted
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            number = float(value)  # accepts "1e4"
            if number.is_integer():
                return int(number)
        raise ValueError
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if tp is str:
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ValueError
    if tp is Path:
        return Path(value)
    raise ValueError


def apply_overrides(config: C, overrides: Mapping[str, Any], where: str) -> C:
    """Return a copy of `config` with `overrides` applied; `where` names them in error messages."""
    if not overrides:
        return config
    hints = typing.get_type_hints(type(config))
    known = {f.name for f in fields(config)}
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(known))}"
            raise UserError(f"unknown key {key!r} for {where}{hint}")
        try:
            changes[key] = _coerce(value, hints[key])
        except (ValueError, TypeError):
            raise UserError(f"{where}: {key}={value!r} is not a valid {_type_name(hints[key])}") from None
    return replace(config, **changes)


def config_to_dict(config: Any) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(config).items()}


def identity_dict(config: Any) -> dict:
    """The fields that change what a run learns or measures (used for the run id)."""
    full = config_to_dict(config)
    return {f.name: full[f.name] for f in fields(config) if f.metadata.get("identity", True)}


def shrink_schedule(config: C) -> C:
    """`--quick`: run at most `quick_iterations` and scale every iteration-counted field alike."""
    if not isinstance(config, TrainConfig):
        return config
    factor = min(1.0, config.quick_iterations / config.max_iterations)
    changes = {f.name: max(1, round(getattr(config, f.name) * factor))
               for f in fields(config) if f.metadata.get("iterations")}
    # Checkpoint selection on a small validation subset keeps quick runs quick.
    return replace(config, val_sequences=min(config.val_sequences, 64), **changes)


@dataclass
class Overrides:
    """Parsed `--set` / `--config` options: global predictor keys, per-predictor keys, dataset keys."""

    everyone: dict[str, Any] = field(default_factory=dict)
    per_predictor: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)

    def for_predictor(self, name: str) -> dict[str, Any]:
        return {**self.everyone, **self.per_predictor.get(name, {})}

    def merge(self, other: "Overrides") -> "Overrides":
        per = {k: dict(v) for k, v in self.per_predictor.items()}
        for name, values in other.per_predictor.items():
            per.setdefault(name, {}).update(values)
        return Overrides({**self.everyone, **other.everyone}, per, {**self.dataset, **other.dataset})


def parse_set_options(items: list[str], predictor_names: set[str]) -> Overrides:
    """`key=v` sets a key for every predictor, `convlstm.key=v` for one, `data.key=v` for the dataset."""
    out = Overrides()
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        _place(out, key, value, predictor_names, f"--set {item}")
    return out


def load_config_file(path: str | Path, predictor_names: set[str]) -> Overrides:
    """YAML: top-level keys for every predictor, `<predictor>:` mappings for one, `data:` for the dataset."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if content is None:
        return Overrides()
    if not isinstance(content, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    out = Overrides()
    for key, value in content.items():
        key = str(key)
        if isinstance(value, dict):
            if key != "data" and key not in predictor_names:
                raise UserError(f"config file {path}: section {key!r} is neither 'data' nor a registered predictor")
            for sub_key, sub_value in value.items():
                _place(out, f"{key}.{sub_key}", sub_value, predictor_names, f"config file {path}")
        else:
            _place(out, key, value, predictor_names, f"config file {path}")
    return out


def _place(out: Overrides, key: str, value: Any, predictor_names: set[str], where: str) -> None:
    scope, dot, rest = key.partition(".")
    if not dot:
        out.everyone[key] = value
    elif scope == "data":
        out.dataset[rest] = value
    elif scope in predictor_names:
        out.per_predictor.setdefault(scope, {})[rest] = value
    else:
        raise UserError(f"{where}: {scope!r} is neither 'data' nor a registered predictor")
