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


def setting(default: Any, help: str = "", **metadata: Any) -> Any:
    """A config field with its `help`, shown by `bench list predictors --verbose`."""
    return field(default=default, metadata={"help": help, **metadata})


def iterations(default: int, help: str = "") -> Any:
    """A field counted in training iterations: `--quick` shrinks it with the schedule."""
    return setting(default, help, iterations=True)


def later_setting(default: Any, help: str = "") -> Any:
    """A field declared after run ids were first issued: it enters a run's identity only when set away from
    `default`, so runs from before it keep their ids. (A subclass that redeclares the field with a default of
    its own drops this, and the field always enters that predictor's identity.)"""
    return setting(default, help, later=default)


def bookkeeping(default: Any, help: str = "") -> Any:
    """A field that does not change what is learned or measured: left out of the run identity."""
    return setting(default, help, identity=False)


@dataclass
class TrainConfig:
    """Every setting the harness reads from a predictor's config. Predictor configs extend it (a
    subclass may change a default, keeping the field's type); non-trainable predictors use it as is."""

    batch_size: int = setting(8, "clips per training step")
    lr: float = setting(1e-3, "learning rate (the peak rate for onecycle)")
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "adam, adamw, or sgd with momentum 0.9")
    adam_beta1: float = later_setting(0.9, "adam/adamw first-moment decay (beta2 is 0.999)")
    adam_eps: float = later_setting(1e-8, "adam/adamw epsilon")
    weight_decay: float = setting(0.0, "weight decay of the optimizer")
    lr_schedule: Literal["constant", "cosine", "exponential", "onecycle"] = setting(
        "constant", "constant; cosine to 0 over max_iterations; exponential steps (lr_gamma, lr_step_every, "
        "lr_decay_start); onecycle over max_iterations")
    lr_gamma: float = setting(0.9, "exponential: multiply the rate by this every lr_step_every iterations")
    lr_step_every: int = iterations(2000, "exponential: iterations between two decays")
    lr_decay_start: int = setting(0, "exponential: decays follow only iterations from this one on (0: all)",
                                  iterations=True, later=0)
    max_iterations: int = iterations(80000, "training iterations (batches)")
    quick_iterations: int = setting(300, "--quick trains at most this many iterations, every iteration-counted "
                                         "setting shrunk alike")
    grad_clip: float = setting(0.0, "max global gradient norm per optimizer step; 0: off")
    val_every: int = iterations(5000, "iterations between validations (checkpoint selection)")
    val_sequences: int = setting(256, "sequences of the validation split scored for checkpoint selection")
    train_horizon: int = setting(0, "frames predicted in training (0: the protocol's future); tests always "
                                    "roll out the whole horizon")
    checkpoint_every: int = bookkeeping(500, "iterations between resumable checkpoints")
    log_every: int = bookkeeping(50, "iterations between two training-loss lines of train.log")
    eval_batch_size: int = bookkeeping(16, "sequences per batch in validation and test")


@dataclass
class StochasticConfig(TrainConfig):
    """The config base of stochastic predictors."""

    eval_samples: int = setting(1, "samples drawn per test sequence (--samples overrides it)")


@dataclass
class EvalConfig:
    """Settings of the test evaluation that are not a predictor's (`--set eval.key=value`, an `eval:` section).
    None of them changes a score, so none enters the run identity: an existing result is kept (--force redoes it)."""

    keep_sequences: int = bookkeeping(4, "test sequences whose frames are kept beside result.json for the report's "
                                         "figures (the same ones for every predictor of a protocol); 0: none")


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: Any
    help: str


def describe_fields(config_class: type) -> list[FieldDoc]:
    """Name, type, default and help of each field; the help of a field whose default a subclass
    changed comes from the class that declared it first."""
    hints = typing.get_type_hints(config_class)
    docs = []
    for f in fields(config_class):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        helps = (vars(k).get("__dataclass_fields__", {}).get(f.name) for k in config_class.__mro__)
        text = next((h.metadata.get("help") for h in helps if h is not None and h.metadata.get("help")), "")
        docs.append(FieldDoc(f.name, _type_name(hints[f.name]), default, text))
    return docs


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
    if tp is type(None):
        return "None"
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
    return {f.name: full[f.name] for f in fields(config) if f.metadata.get("identity", True)
            and not ("later" in f.metadata and full[f.name] == f.metadata["later"])}


def shrink_schedule(config: C) -> C:
    """`--quick`: run at most `quick_iterations` and scale every iteration-counted field alike."""
    if not isinstance(config, TrainConfig):
        return config
    factor = min(1.0, config.quick_iterations / config.max_iterations)
    # 0 stays 0: it means "off" (lr_decay_start), not "one iteration".
    changes = {f.name: max(1, round(value * factor)) if (value := getattr(config, f.name)) else 0
               for f in fields(config) if f.metadata.get("iterations")}
    # Checkpoint selection on a small validation subset keeps quick runs quick.
    return replace(config, val_sequences=min(config.val_sequences, 64), **changes)


@dataclass
class Overrides:
    """Parsed `--set` / `--config` options: global predictor keys, per-predictor keys, dataset keys, eval keys."""

    everyone: dict[str, Any] = field(default_factory=dict)
    per_predictor: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: "Overrides") -> "Overrides":
        per = {k: dict(v) for k, v in self.per_predictor.items()}
        for name, values in other.per_predictor.items():
            per.setdefault(name, {}).update(values)
        return Overrides({**self.everyone, **other.everyone}, per, {**self.dataset, **other.dataset},
                         {**self.evaluation, **other.evaluation})

    def eval_config(self) -> EvalConfig:
        return apply_overrides(EvalConfig(), self.evaluation, "eval settings")


def parse_set_options(items: list[str], predictor_names: set[str]) -> Overrides:
    """`key=v` sets a key for every predictor, `convlstm.key=v` for one, `data.key=v` for the dataset, `eval.key=v`
    for the test evaluation (EvalConfig)."""
    out = Overrides()
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        _place(out, key, value, predictor_names, f"--set {item}")
    return out


def load_config_file(path: str | Path, predictor_names: set[str]) -> Overrides:
    """YAML: top-level keys for every predictor, `<predictor>:` mappings for one, `data:` for the dataset, `eval:`
    for the test evaluation."""
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
            if key not in _SCOPES and key not in predictor_names:
                raise UserError(f"config file {path}: section {key!r} is neither 'data' nor a registered predictor "
                                "(nor 'eval')")
            for sub_key, sub_value in value.items():
                _place(out, f"{key}.{sub_key}", sub_value, predictor_names, f"config file {path}")
        else:
            _place(out, key, value, predictor_names, f"config file {path}")
    return out


_SCOPES = ("data", "eval")  # reserved: a predictor cannot be named either


def _place(out: Overrides, key: str, value: Any, predictor_names: set[str], where: str) -> None:
    scope, dot, rest = key.partition(".")
    if not dot:
        out.everyone[key] = value
    elif scope == "data":
        out.dataset[rest] = value
    elif scope == "eval":
        out.evaluation[rest] = value
    elif scope in predictor_names:
        out.per_predictor.setdefault(scope, {})[rest] = value
    else:
        raise UserError(f"{where}: {scope!r} is neither 'data' nor a registered predictor (nor 'eval')")
