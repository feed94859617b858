"""What `bench list` prints: one line per predictor or dataset, and with --verbose every setting."""
from __future__ import annotations

from typing import Any, Iterator

from .config import describe_fields
from .predictor import Predictor, reads_training_split
from .registry import DATASETS, PREDICTORS


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _settings(config_class: type) -> Iterator[str]:
    docs = describe_fields(config_class)
    width = max((len(d.name) for d in docs), default=0)
    for d in docs:
        about = "; ".join(filter(None, (d.help, d.rule and f"must be {d.rule}")))
        yield f"      {d.name:<{width}}  {d.type} = {_value(d.default)}" + (f"  # {about}" if about else "")


def _training(cls: type[Predictor]) -> str:
    if cls.trainable:
        return "trainable"
    return "needs no training" + (" (reads the training split's statistics)" if reads_training_split(cls) else "")


def predictor_lines(verbose: bool = False) -> Iterator[str]:
    for name, cls in PREDICTORS.classes().items():
        presets = f"  [presets: {', '.join(cls.presets)}]" if cls.presets else ""
        yield f"  {name:<16}{cls.summary()}{presets}"
        if verbose:
            kind = "stochastic" if cls.stochastic else "deterministic"
            yield f"    {kind}, {_training(cls)}; settings (--set {name}.KEY=VALUE):"
            yield from _settings(cls.Config)
            for preset, values in cls.presets.items():
                yield f"    preset {preset}: " + ", ".join(f"{k}={_value(v)}" for k, v in values.items())


def dataset_lines(verbose: bool = False) -> Iterator[str]:
    for name, cls in DATASETS.classes().items():
        yield f"  {name:<16}{cls.summary()}  [protocols: {', '.join(cls.protocols)}]"
        if verbose:
            yield "    settings (--set data.KEY=VALUE):"
            yield from _settings(cls.Config)
            for p in cls.protocols.values():
                yield (f"    protocol {p.name}: context {p.context}, horizon {p.future} ({p.context} -> {p.future} "
                       f"frames), {p.channels}x{p.height}x{p.width}; presets tried: {', '.join(cls.presets_for(p))}")
                yield f"      presets picked: {picked_presets(cls.presets_for(p))}"


def picked_presets(keys: tuple[str, ...]) -> str:
    """Which preset each registered predictor takes from `keys` (the first it defines), grouped by preset:
    "kth-htsrm: cwvae, htsrm; kth: convlstm, ...; defaults: copy-last"."""
    groups: dict[str, list[str]] = {}
    for name, cls in PREDICTORS.classes().items():
        chosen = next((key for key in keys if key in cls.presets), None)
        groups.setdefault(chosen or "defaults", []).append(name)
    order = [key for key in keys if key in groups] + (["defaults"] if "defaults" in groups else [])
    return "; ".join(f"{key}: {', '.join(groups[key])}" for key in order)
