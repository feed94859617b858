"""The contract a class must keep to be registered, checked when it registers: a plugin that breaks it
fails at load with one line naming what to fix, not with a traceback in the middle of a run."""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping

from .config import StochasticConfig, TrainConfig, apply_overrides, check_rules
from .data import Protocol, VideoDataset
from .errors import UserError
from .predictor import Predictor

# Metadata that changes what the harness does with a field; a subclass that changes a default keeps it.
KIND_METADATA = ("iterations", "identity")


def check_predictor(name: str, cls: Any) -> None:
    where = f"predictor {name!r}"
    if not (isinstance(cls, type) and issubclass(cls, Predictor)):
        raise UserError(f"{where}: {cls!r} is not a subclass of vpbench.Predictor")
    if cls.forward is Predictor.forward:
        raise UserError(f"{where}: {cls.__qualname__} does not define forward(context, future)")
    if cls.floor and cls.trainable:  # a floor's costs are never bolded: it must not be a model that learns
        raise UserError(f"{where}: a floor learns nothing; set trainable = False or floor = False")
    base = StochasticConfig if cls.stochastic else TrainConfig
    defaults = check_config_class(cls.Config, base, where)
    check_rules(defaults, f"{where}: the Config defaults")
    if cls.stochastic:
        check_sampling_signature(cls, where)
    if not isinstance(cls.presets, Mapping):
        raise UserError(f"{where}: presets must map a preset name to a dict of Config fields")
    for preset, values in cls.presets.items():
        if not isinstance(values, Mapping):
            raise UserError(f"{where}: preset {preset!r} must be a dict of Config fields, got {type(values).__name__}")
        check_rules(apply_overrides(defaults, values, f"preset {preset!r} of predictor {name!r}"),
                    f"preset {preset!r} of predictor {name!r}")


def check_dataset(name: str, cls: Any) -> None:
    where = f"dataset {name!r}"
    if not (isinstance(cls, type) and issubclass(cls, VideoDataset)):
        raise UserError(f"{where}: {cls!r} is not a subclass of vpbench.VideoDataset")
    check_rules(check_config_class(cls.Config, object, where), f"{where}: the Config defaults")
    if not cls.protocols or not all(isinstance(p, Protocol) for p in cls.protocols.values()):
        raise UserError(f"{where}: protocols must map a name to a vpbench.Protocol, at least one")


def check_config_class(config: Any, base: type, where: str) -> Any:
    """`config` is a dataclass extending `base` whose every field has a default; returns its defaults."""
    need = f"a @dataclass extending vpbench.{base.__name__}" if base is not object else "a @dataclass"
    if not (isinstance(config, type) and dataclasses.is_dataclass(config) and issubclass(config, base)):
        raise UserError(f"{where}: Config must be {need}, got {getattr(config, '__qualname__', config)!r}")
    declared = {f.name: f for f in dataclasses.fields(config)}
    for klass in filter(dataclasses.is_dataclass, config.__mro__):
        written = _annotated(klass)
        if "__dataclass_fields__" not in vars(klass):
            if written:  # a subclass of a dataclass, itself undecorated: its fields are not fields
                raise UserError(f"{where}: Config class {klass.__qualname__} must be decorated with @dataclass")
            continue
        # `lr = 0.1` without a type annotation only sets a class attribute; the field keeps its default.
        unannotated = sorted(k for k in vars(klass) if k in declared and k not in written)
        if unannotated:
            raise UserError(f"{where}: {klass.__qualname__}.{unannotated[0]} changes a field's default without a "
                            f"type annotation, so the field keeps the old one; write `{unannotated[0]}: <type> = ...`")
        for key, f in vars(klass)["__dataclass_fields__"].items():
            mine = declared[key].metadata
            if any(f.metadata.get(m) != mine.get(m) for m in KIND_METADATA):
                raise UserError(f"{where}: {config.__qualname__}.{key} must keep the kind of the field it "
                                f"overrides (use iterations(...) / bookkeeping(...) as {klass.__qualname__} does)")
    try:
        return config()
    except TypeError as exc:
        raise UserError(f"{where}: every Config field needs a default ({exc})") from None


def _annotated(klass: type) -> set[str]:
    """Names a class body annotates, ClassVars left out."""
    names = set()
    for key, annotation in inspect.get_annotations(klass).items():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if not text.startswith(("ClassVar", "typing.ClassVar")):
            names.add(key)
    return names


def check_sampling_signature(cls: type, where: str) -> None:
    """A stochastic forward takes `samples` and `generator` by keyword (see `StochasticPredictor`)."""
    parameters = inspect.signature(cls.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [k for k in ("samples", "generator") if k not in parameters or parameters[k].kind not in by_keyword]
    if missing:
        raise UserError(f"{where}: stochastic, so forward must accept keyword arguments samples and generator "
                        f"(forward(context, future, samples=None, generator=None)); missing: {', '.join(missing)}")
