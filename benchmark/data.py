"""The dataset interface: protocols (the papers' settings) and splits of clips.

A dataset module subclasses `VideoDataset`, declares its `protocols` and a `Config` dataclass of
options, and registers itself with `@register_dataset("name")`. A split is a map-style torch
dataset whose items are float tensors [T, C, H, W] in [0, 1], T = context + future.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from torch.utils.data import Dataset

from .config import COUNT, apply_overrides, check_rules, setting
from .errors import UserError
from .spec import SPLITS, DataProblem, Protocol, Split, VideoSpec


@dataclass
class DatasetConfig:
    """Options every dataset accepts. `None` keeps the protocol's value."""

    context: int | None = setting(None, "frames given, --context (default: the protocol's)", COUNT)
    future: int | None = setting(None, "frames predicted, --horizon (default: the protocol's)", COUNT)
    height: int | None = setting(None, "frame height (default: the protocol's)", COUNT)
    width: int | None = setting(None, "frame width (default: the protocol's)", COUNT)


class VideoDataset:
    registry_name: ClassVar[str]
    Config: ClassVar[type] = DatasetConfig
    protocols: ClassVar[dict[str, Protocol]] = {}
    # Predictor presets tried in order for this dataset, after `<name>-<protocol>`; the first one a predictor
    # defines is used (default: the dataset's name).
    preset_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any, protocol: str | None = None) -> None:
        self.config = config
        self.protocol = self.resolve_protocol(config, protocol)

    @classmethod
    def resolve_protocol(cls, config: Any, protocol: str | None = None) -> Protocol:
        """The named protocol (default: the first declared) with the config's context, future, height
        and width applied; from the class's declarations alone, no file is read."""
        if not cls.protocols:
            raise UserError(f"dataset {cls.registry_name!r} declares no protocol")
        name = protocol or next(iter(cls.protocols))
        if name not in cls.protocols:
            raise UserError(f"dataset {cls.registry_name!r} has no protocol {name!r}; "
                            f"choose from {', '.join(cls.protocols)}")
        changes = {k: getattr(config, k) for k in ("context", "future", "height", "width")
                   if getattr(config, k, None) is not None}
        return replace(cls.protocols[name], **changes)

    @classmethod
    def make_config(cls, **options: Any) -> Any:
        config = apply_overrides(cls.Config(), options, f"dataset {cls.registry_name}")
        check_rules(config, f"dataset {cls.registry_name}", dict.fromkeys(options, "--set data.KEY or --config"))
        return config

    @classmethod
    def create(cls, protocol: str | None = None, **options: Any) -> "VideoDataset":
        return cls(cls.make_config(**options), protocol)

    @classmethod
    def protocol_without_data(cls, protocol: str | None = None, **options: Any) -> Protocol:
        """What `create(protocol, **options).protocol` would be, without building the dataset: the frame
        size and lengths are declared, so this works before `bench data prepare` (used by `bench profile`).
        Options are checked by name and type, not by the dataset's own checks of the data."""
        return cls.resolve_protocol(cls.make_config(**options), protocol)

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @property
    def spec(self) -> VideoSpec:
        return self.protocol.spec

    def presets(self) -> tuple[str, ...]:
        return self.presets_for(self.protocol)

    @classmethod
    def presets_for(cls, protocol: Protocol) -> tuple[str, ...]:
        """Predictor preset keys for `protocol`, tried in order: `<name>-<protocol>` (a predictor's settings for
        one protocol, e.g. kth-htsrm), then `preset_keys`."""
        return (f"{cls.registry_name}-{protocol.name}", *(cls.preset_keys or (cls.registry_name,)))

    def split(self, name: Split) -> Dataset:
        """Clips of one split; train, val and test never share a sequence."""
        raise NotImplementedError

    def problems(self) -> list[DataProblem]:
        """Files left out of the splits, with the split each belongs to (none for generated data)."""
        return []

    def fingerprint(self) -> str | None:
        """A digest of the files the clips come from, for a run's identity (None: the clips follow from
        the config alone, as generated data do)."""
        return None
