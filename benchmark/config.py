"""Typed configs: dataclasses with defaults, per-dataset presets, and checked overrides.

Overrides come from `--set key=value` (strings) and `--config file.yaml` (YAML values). Both go
through `apply_overrides`, which rejects unknown keys (suggesting close ones) and values that do not
fit the field's type, each with one clear message. A field may declare a `Rule` for its value (>= 1, in
[0, 1], ...); `check_rules` holds the merged config (defaults, preset, overrides) to them once, before
anything is built, so no loop checks a value.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, TypeVar

import yaml

from .errors import UserError

C = TypeVar("C")


@dataclass(frozen=True)
class Rule:
    """What a field's value must be, e.g. `at_least(1)`; None (an unset optional) always passes, and a list
    passes when each of its items does."""

    text: str  # completes "must be ...": ">= 1", "in [0, 1)"
    holds: Callable[[Any], bool]
    each: bool = True  # a list's items are held to it one by one; False: the whole list is

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if self.each and isinstance(value, (list, tuple)):
            return all(self.allows(item) for item in value)
        return bool(self.holds(value))


def at_least(low: float) -> Rule:
    return Rule(f">= {low}", lambda v: v >= low)


def above(low: float) -> Rule:
    return Rule(f"> {low}", lambda v: v > low)


def between(low: float, high: float, *, high_open: bool = False) -> Rule:
    closing = ")" if high_open else "]"
    return Rule(f"in [{low}, {high}{closing}", lambda v: low <= v < high if high_open else low <= v <= high)


POSITIVE = above(0)  # a rate, a weight, a ratio that 0 would break
NON_NEGATIVE = at_least(0)  # a weight or count where 0 means "off"
COUNT = at_least(1)  # sizes, counts, periods
PROBABILITY = between(0, 1)
ODD = Rule("an odd number >= 1", lambda v: v >= 1 and v % 2 == 1)  # a 'same'-padded kernel (padding k // 2)
FINITE = Rule("a finite number", math.isfinite)  # any value the arithmetic survives
POWER_OF_TWO = Rule("a power of two", lambda v: v >= 1 and v & (v - 1) == 0)
EVEN = Rule("an even number >= 2", lambda v: v >= 2 and v % 2 == 0)
OPEN_FRACTION = Rule("in (0, 1)", lambda v: 0 < v < 1)
SEED = between(0, 2**32 - 1)  # one 32-bit word: a clip's entropy words [seed, split, index] stay unambiguous
# (filters, kernel, stride, padding) of one convolution
CONV_SPEC = Rule("4 numbers: filters, kernel and stride >= 1, padding >= 0",
                 lambda v: len(v) == 4 and min(v[:3]) >= 1 and v[3] >= 0, each=False)


def setting(default: Any, help: str = "", rule: Rule | None = None, **metadata: Any) -> Any:
    """A config field with its `help`, shown by `bench list predictors --verbose`, and the `rule` its value
    must keep (checked by `check_rules`)."""
    return field(default=default, metadata={"help": help, **({"rule": rule} if rule else {}), **metadata})


def iterations(default: int, help: str = "", rule: Rule = COUNT) -> Any:
    """A field counted in training iterations: `--quick` shrinks it with the schedule."""
    return setting(default, help, rule, iterations=True)


def later_setting(default: Any, help: str = "", rule: Rule | None = None) -> Any:
    """A field that enters a run's identity only when set away from `default`: declaring one changes no existing
    run's id. (A subclass that redeclares the field with a default of its own drops this, and the field always
    enters that predictor's identity.)"""
    return setting(default, help, rule, later=default)


def bookkeeping(default: Any, help: str = "", rule: Rule | None = None) -> Any:
    """A field that does not change what is learned or measured: left out of the run identity."""
    return setting(default, help, rule, identity=False)


@dataclass
class TrainConfig:
    """Every setting the harness reads from a predictor's config. Predictor configs extend it (a
    subclass may change a default, keeping the field's type); non-trainable predictors use it as is."""

    batch_size: int = setting(8, "clips per training step", COUNT)
    lr: float = setting(1e-3, "learning rate (the peak rate for onecycle)", POSITIVE)
    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "adam, adamw, or sgd with momentum 0.9")
    adam_beta1: float = later_setting(0.9, "adam/adamw first-moment decay (beta2 is 0.999)",
                                      between(0, 1, high_open=True))
    adam_eps: float = later_setting(1e-8, "adam/adamw epsilon", POSITIVE)
    weight_decay: float = setting(0.0, "weight decay of the optimizer", NON_NEGATIVE)
    lr_schedule: Literal["constant", "cosine", "exponential", "onecycle"] = setting(
        "constant", "constant; cosine to 0 over max_iterations; exponential steps (lr_gamma, lr_step_every, "
        "lr_decay_start); onecycle over max_iterations")
    lr_gamma: float = setting(0.9, "exponential: multiply the rate by this every lr_step_every iterations",
                             Rule("in (0, 1]", lambda v: 0 < v <= 1))
    lr_step_every: int = iterations(2000, "exponential: iterations between two decays")
    lr_decay_start: int = setting(0, "exponential: decays follow only iterations from this one on (0: all)",
                                  NON_NEGATIVE, iterations=True, later=0)
    max_iterations: int = iterations(80000, "training iterations (batches)")
    quick_iterations: int = setting(300, "--quick trains at most this many iterations, every iteration-counted "
                                         "setting shrunk alike", COUNT)
    grad_clip: float = setting(0.0, "max global gradient norm per optimizer step; 0: off", NON_NEGATIVE)
    val_every: int = iterations(5000, "iterations between validations (checkpoint selection)")
    val_sequences: int = setting(256, "sequences of the validation split scored for checkpoint selection (0: no "
                                      "validation, the last checkpoint is tested)", NON_NEGATIVE)
    train_horizon: int = setting(0, "frames predicted in training (0: the protocol's future); tests always "
                                    "roll out the whole horizon", NON_NEGATIVE)
    checkpoint_every: int = bookkeeping(500, "iterations between resumable checkpoints", COUNT)
    checkpoint_minutes: float = bookkeeping(10.0, "also a resumable checkpoint once this many minutes have passed "
                                                  "since the last one (0: by iterations only)", NON_NEGATIVE)
    log_every: int = bookkeeping(50, "iterations between two training-loss lines of train.log", COUNT)
    eval_batch_size: int = bookkeeping(16, "sequences per batch in validation and test", COUNT)


@dataclass
class StochasticConfig(TrainConfig):
    """The config base of stochastic predictors."""

    eval_samples: int = setting(1, "samples drawn per test sequence (--samples overrides it)", COUNT)


@dataclass
class EvalConfig:
    """Settings of the test evaluation that are not a predictor's (`--set eval.key=value`, an `eval:` section).
    None of them changes a score, so none enters the run identity: an existing result is kept (--force redoes it)."""

    keep_sequences: int = bookkeeping(4, "test sequences whose frames are kept beside result.json for the report's "
                                         "figures (the same ones for every predictor of a protocol); 0: none",
                                 NON_NEGATIVE)


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: Any
    help: str
    rule: str = ""


def declared(config_class: type, name: str, key: str) -> Any:
    """Metadata `key` of field `name` from the nearest class that declared it with one: a subclass that only
    changes a default (`num_hidden: int = 64`) keeps its base's help and rule."""
    for klass in config_class.__mro__:
        declared_field = vars(klass).get("__dataclass_fields__", {}).get(name)
        if declared_field is not None and declared_field.metadata.get(key) is not None:
            return declared_field.metadata[key]
    return None


def describe_fields(config_class: type) -> list[FieldDoc]:
    """Name, type, default, help and rule of each field."""
    hints = typing.get_type_hints(config_class)
    docs = []
    for f in fields(config_class):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rule = declared(config_class, f.name, "rule")
        docs.append(FieldDoc(f.name, _type_name(hints[f.name]), default, declared(config_class, f.name, "help") or "",
                             rule.text if rule else ""))
    return docs


def check_rules(config: Any, where: str, origins: Mapping[str, str] | None = None) -> None:
    """Raise UserError on the first field whose value breaks its declared rule, naming the key, the value,
    the rule and (from `origins`, key -> where the value came from) who set it."""
    for f in fields(config):
        rule = declared(type(config), f.name, "rule")
        value = getattr(config, f.name)
        if rule is not None and not rule.allows(value):
            source = (origins or {}).get(f.name)
            raise UserError(f"{where}: {f.name}={value!r} must be {rule.text}"
                            + (f" (from {source})" if source else ""))


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
        if not all_finite(changes[key]):  # inf passes "> 0" and nan fails no comparison: refused before any rule
            raise UserError(f"{where}: {key}={value!r} must be a finite number")
    return replace(config, **changes)


def all_finite(value: Any) -> bool:
    """False when `value`, or an item of it, is an infinite or NaN float."""
    if isinstance(value, (list, tuple)):
        return all(all_finite(item) for item in value)
    return not isinstance(value, float) or math.isfinite(value)


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
        config = apply_overrides(EvalConfig(), self.evaluation, "eval settings")
        check_rules(config, "eval settings", dict.fromkeys(self.evaluation, "--set eval.KEY or --config"))
        return config


# The `--set` / `--config` scopes that are not a predictor's: `data.key` for the dataset, `eval.key` for the test
# evaluation. A predictor registered under one of these names could never be addressed, so the registry refuses them.
RESERVED_SCOPES = ("data", "eval")


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
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"--config {path} is a directory; give a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}") from None
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
            if key not in RESERVED_SCOPES and key not in predictor_names:
                raise UserError(f"config file {path}: section {key!r} is neither 'data' nor a registered predictor "
                                "(nor 'eval')")
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
    elif scope == "eval":
        out.evaluation[rest] = value
    elif scope in predictor_names:
        out.per_predictor.setdefault(scope, {})[rest] = value
    else:
        raise UserError(f"{where}: {scope!r} is neither 'data' nor a registered predictor (nor 'eval')")
