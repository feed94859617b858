"""The result of one run, as a typed record: what `bench run` writes to result.json and `bench report` reads.

`Result.to_dict()` gives the result.json layout key for key, in its fixed order; `Result.from_dict()` reads that
layout back. Many keys of schema 1 are optional (`data`, `eval.weights`, FLOPs and memory in `costs`, ...): a
file may lack them, they read as None and are left out again when written, so every schema-1 file reads and
writes back unchanged. Keys this vpbench does not know (written by a newer one within the same schema) are kept
in `extra` and written back after the known ones.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .spec import DataProblem, Protocol

SCHEMA = 1  # the result.json layout this vpbench writes and reads; bump it when a key changes meaning

# What `eval.checkpoint` says of a predictor that needs no training and reads nothing (copy-last).
NEEDS_NO_TRAINING = "none (needs no training)"
_OPTIONAL = {"optional": True}  # field metadata: the key is left out of result.json when the value is None


class ResultError(ValueError):
    """A result that cannot be trusted; `reason` says why, and the message names the file when there is one."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        super().__init__(reason if path is None else f"{path}: {reason}")
        self.reason, self.path = reason, path


class NewerSchemaError(ResultError):
    """A result written by a newer vpbench, in a layout this one does not know."""


# ---------------------------------------------------------------------------------------- reading

class _Object:
    """One JSON object of a result, read key by key; `where` ("eval.") names it in messages."""

    def __init__(self, value: Any, where: str = "") -> None:
        # A value that is not an object reads as an empty one: its required keys are then reported missing.
        self.data: dict[str, Any] = value if isinstance(value, dict) else {}
        self.where = where

    def required(self, key: str) -> Any:
        if key not in self.data:
            raise ResultError(f"missing key {self.where + key!r}")
        return self.data[key]

    def integer(self, key: str) -> int:
        value = self.required(key)
        try:
            return int(value)  # an integral float or a digit string passes, as int() reads them
        except (TypeError, ValueError):
            raise ResultError(f"{self.where}{key} is not an integer: {value!r}") from None

    def optional_integer(self, key: str) -> int | None:
        return None if self.data.get(key) is None else self.integer(key)

    def string(self, key: str) -> str:
        return str(self.required(key))

    def flag(self, key: str) -> bool:
        value = self.required(key)
        if not isinstance(value, bool):
            raise ResultError(f"{self.where}{key} is not true/false: {value!r}")
        return value

    def text(self, key: str) -> str | None:
        """An optional string: absent and null read as None."""
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise ResultError(f"{self.where}{key} is not a string: {value!r}")
        return value

    def texts(self, key: str) -> list[str] | None:
        """An optional list of strings: absent and null read as None."""
        value = self.data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ResultError(f"{self.where}{key} is not a list of strings: {value!r}")
        return value

    def number(self, key: str) -> float | None:
        """An optional number, kept as written (int or float); absent and null read as None."""
        return _number(self.data.get(key), f"{self.where}{key}")

    def object(self, key: str) -> dict[str, Any] | None:
        """An optional object: absent and null read as None."""
        value = self.data.get(key)
        if value is not None and not isinstance(value, dict):
            raise ResultError(f"{self.where}{key} must be an object")
        return value

    def extra(self, cls: type) -> dict[str, Any]:
        """The keys that `cls` has no field for, in file order."""
        known = {f.name for f in fields(cls)}
        return {k: v for k, v in self.data.items() if k not in known}


def _number(value: Any, where: str) -> float | None:
    # null: written by tools that refuse NaN in JSON; a bool is not a measurement
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise ResultError(f"{where} is not a number: {value!r}")


# ---------------------------------------------------------------------------------------- the record

class _Record:
    """A dataclass written as its fields in field order, optional ones only when set, unknown keys last."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]  (subclasses are dataclasses)
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.metadata.get("optional")):
                continue
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return {**out, **getattr(self, "extra", {})}


@dataclass
class Identity(_Record):
    """What a run is. In a run's identity (config.json, hashed to the run id) `config` holds the settings that
    change what is learned or measured; in a result it holds the whole config the model ran with."""

    predictor: str
    dataset: str
    protocol: Protocol
    dataset_config: dict[str, Any]
    seed: int
    quick: bool
    preset: str | None
    precision: str | None  # None only in hand-written files: every vpbench has written it
    config: dict[str, Any]
    data_fingerprint: str | None = field(default=None, metadata=_OPTIONAL)  # datasets read from files
    samples: int | None = field(default=None, metadata=_OPTIONAL)  # stochastic predictors
    checkpoint_sha256: str | None = field(default=None, metadata=_OPTIONAL)  # evaluating given weights

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        top = _Object(data)
        protocol = _Object(data.get("protocol"), "protocol.")
        sizes = [protocol.integer(key) for key in ("context", "future", "height", "width", "channels")]
        return cls(
            predictor=top.string("predictor"), dataset=top.string("dataset"),
            protocol=Protocol(protocol.string("name"), *sizes),
            dataset_config=top.object("dataset_config") or {}, seed=top.integer("seed"), quick=top.flag("quick"),
            preset=top.text("preset"), precision=top.text("precision"),
            config=top.object("config") or {}, data_fingerprint=top.text("data_fingerprint"),
            samples=top.optional_integer("samples"), checkpoint_sha256=top.text("checkpoint_sha256"))


@dataclass
class Versions(_Record):
    vpbench: str | None = field(default=None, metadata=_OPTIONAL)
    torch: str | None = field(default=None, metadata=_OPTIONAL)
    python: str | None = field(default=None, metadata=_OPTIONAL)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Versions:
        block = _Object(data, "versions.")
        return cls(block.text("vpbench"), block.text("torch"), block.text("python"), block.extra(cls))


@dataclass
class TrainRecord(_Record):
    """What training reported (`training.train` returns it), as result.json holds it; every key is optional."""

    iterations: int | None = field(default=None, metadata=_OPTIONAL)
    best_iteration: int | None = field(default=None, metadata=_OPTIONAL)
    best_val_mse: float | None = field(default=None, metadata=_OPTIONAL)  # MSE of the checkpoint kept
    val_sequences: int | None = field(default=None, metadata=_OPTIONAL)
    wall_seconds: float | None = field(default=None, metadata=_OPTIONAL)
    resumed_from: int | None = field(default=None, metadata=_OPTIONAL)
    selected_on: str | None = field(default=None, metadata=_OPTIONAL)
    best_val_score: float | None = field(default=None, metadata=_OPTIONAL)  # selection score of the checkpoint kept
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainRecord:
        block = _Object(data, "train.")
        numbers = {f.name: block.number(f.name) for f in fields(cls) if f.name not in ("selected_on", "extra")}
        return cls(**numbers, selected_on=block.text("selected_on"), extra=block.extra(cls))


@dataclass
class Summary:
    """Metric values of one way of scoring: per predicted step and their mean, by metric name.
    A value is None where the file has null (a NaN written by a tool that refuses NaN in JSON)."""

    per_step: dict[str, list[float | None]]
    mean: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {"per_step": self.per_step, "mean": self.mean}

    @classmethod
    def _read(cls, block: _Object) -> Summary:
        per_step, mean = block.required("per_step"), block.required("mean")
        if not (isinstance(per_step, dict) and isinstance(mean, dict)):
            raise ResultError(f"{block.where}per_step and {block.where}mean must be objects")
        for metric, curve in per_step.items():
            if isinstance(curve, list):
                for value in curve:
                    _number(value, f"{block.where}per_step.{metric}")
        for metric, value in mean.items():
            _number(value, f"{block.where}mean.{metric}")
        return cls(per_step, mean)

    def check(self, future: int, not_measured: dict[str, str], where: str) -> None:
        """Every curve has one value per predicted step, and nothing is both measured and not measured."""
        for metric in [*self.mean, *(m for m in self.per_step if m not in self.mean)]:
            if metric in not_measured:
                raise ResultError(f"{metric} is both measured and listed under eval.not_measured")
            curve = self.per_step.get(metric)
            if curve is not None and (not isinstance(curve, list) or len(curve) != future):
                # first/last step would silently be the wrong step
                raise ResultError(f"{where}per_step.{metric} is not a list of {future} values (protocol.future)")


@dataclass
class Evaluation(_Record):
    """How the test split was scored. A stochastic predictor's `per_step` and `mean` are the mean over its
    `samples` per sequence; `best_of_samples` the best of them per sequence and metric."""

    split: str
    sequences: int
    split_size: int
    whole_split: bool
    checkpoint: str | None  # which weights were scored
    per_step: dict[str, list[float | None]]
    mean: dict[str, float | None]
    not_measured: dict[str, str]  # metric -> why it has no value
    weights: dict[str, dict[str, Any]] | None = field(default=None, metadata=_OPTIONAL)  # metric weights files used
    detection: dict[str, Any] | None = field(default=None, metadata=_OPTIONAL)  # detection counts
    samples: int | None = field(default=None, metadata=_OPTIONAL)
    best_of_samples: Summary | None = field(default=None, metadata=_OPTIONAL)
    sampling: str | None = field(default=None, metadata=_OPTIONAL)  # how the numbers were drawn, in words
    # Reference conventions scored besides vpbench's (metrics/conventions.py): name -> {"settings", "per_step",
    # "mean"[, "best_of_samples"]}, kept as written; `convention(name)` reads one as Summaries.
    conventions: dict[str, dict[str, Any]] | None = field(default=None, metadata=_OPTIONAL)
    # FVD conventions scored (metrics/fvd.py): name -> {"fvd", "clips", "reference_clips", "settings", "detector"
    # [, "samples", "fvd_sample_mean"]}; one number per run, not per step
    fvd: dict[str, dict[str, Any]] | None = field(default=None, metadata=_OPTIONAL)
    wall_seconds: float | None = None
    forward_seconds: float | None = field(default=None, metadata=_OPTIONAL)
    # what reading a given checkpoint did: its layout, tensors renamed or dropped, settings its weights need
    checkpoint_notes: list[str] | None = field(default=None, metadata=_OPTIONAL)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> Summary:
        return Summary(self.per_step, self.mean)

    def convention(self, name: str, best_of_samples: bool = False) -> Summary | None:
        """The figures scored in convention `name` (its best of N if asked and present), or None."""
        block = (self.conventions or {}).get(name)
        if block is None or (best_of_samples and "best_of_samples" not in block):
            return None
        where = f"eval.conventions.{name}."
        if best_of_samples:
            return Summary._read(_Object(block["best_of_samples"], where + "best_of_samples."))
        return Summary._read(_Object(block, where))

    @classmethod
    def from_dict(cls, data: Any) -> Evaluation:
        block = _Object(data, "eval.")
        split, sequences, split_size = block.string("split"), block.integer("sequences"), block.integer("split_size")
        whole_split = block.flag("whole_split")
        not_measured = block.object("not_measured") or {}
        weights = block.object("weights")
        if any(not isinstance(w, dict) for w in (weights or {}).values()):
            raise ResultError("eval.weights must map each weights key to an object")
        best = block.object("best_of_samples")
        samples = block.integer("samples") if best is not None else block.optional_integer("samples")
        summary = Summary._read(block)
        return cls(
            split=split, sequences=sequences, split_size=split_size, whole_split=whole_split,
            checkpoint=block.text("checkpoint"),
            per_step=summary.per_step, mean=summary.mean,
            not_measured={str(k): str(v) for k, v in not_measured.items()}, weights=weights,
            detection=block.object("detection"), samples=samples,
            best_of_samples=None if best is None else Summary._read(_Object(best, "eval.best_of_samples.")),
            sampling=block.text("sampling"), conventions=_conventions(block), fvd=_fvd(block),
            wall_seconds=block.number("wall_seconds"),
            forward_seconds=block.number("forward_seconds"), checkpoint_notes=block.texts("checkpoint_notes"),
            extra=block.extra(cls))

    def check(self, future: int) -> None:
        self.summary.check(future, self.not_measured, "eval.")
        if self.best_of_samples is not None:
            self.best_of_samples.check(future, self.not_measured, "eval.best_of_samples.")
        for name in self.conventions or {}:
            for best in (False, True):
                summary = self.convention(name, best)
                if summary is not None:
                    summary.check(future, {}, f"eval.conventions.{name}." + ("best_of_samples." if best else ""))


def _fvd(block: _Object) -> dict[str, dict[str, Any]] | None:
    scored = block.object("fvd")
    for name, entry in (scored or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("clips"), int):
            raise ResultError(f"eval.fvd.{name} must be an object with an integer clip count")
        _number(entry.get("fvd"), f"eval.fvd.{name}.fvd")
        if f"fvd@{name}" in block.data.get("not_measured", {}):
            raise ResultError(f"fvd@{name} is both measured and listed under eval.not_measured")
    return scored


def _conventions(block: _Object) -> dict[str, dict[str, Any]] | None:
    conventions = block.object("conventions")
    if any(not isinstance(v, dict) for v in (conventions or {}).values()):
        raise ResultError("eval.conventions must map each convention's name to an object")
    return conventions


@dataclass
class Costs:
    """Named measurements of what the predictor costs (params, FLOPs, ms per sequence, peak memory, ...), each a
    number, null (could not be measured) or a string saying how it was measured. A mapping, not fields: the
    names depend on the device and on the vpbench that measured them, and a report shows each as a column."""

    values: dict[str, float | str | None]

    def to_dict(self) -> dict[str, float | str | None]:
        return dict(self.values)

    @classmethod
    def from_dict(cls, data: Any) -> Costs:
        if not isinstance(data, dict):
            raise ResultError("costs must be an object")
        for key, value in data.items():
            if not isinstance(value, str):
                _number(value, f"costs.{key}")
        return cls(dict(data))


@dataclass
class DataRecord:
    """Files the splits lost (corrupt, truncated): counted per split and listed, never silently dropped."""

    left_out: dict[str, int]
    problems: list[DataProblem]

    def to_dict(self) -> dict[str, Any]:
        return {"left_out": self.left_out, "problems": [asdict(p) for p in self.problems]}

    @classmethod
    def from_dict(cls, data: Any) -> DataRecord:
        block = _Object(data, "data.")
        left_out = _Object(block.object("left_out") or {}, "data.left_out.")
        problems = block.data.get("problems") or []
        if not isinstance(problems, list):
            raise ResultError("data.problems must be a list")
        entries = [_Object(p, f"data.problems[{i}].") for i, p in enumerate(problems)]
        return cls({split: left_out.integer(split) for split in left_out.data},
                   [DataProblem(p.string("split"), p.string("file"), p.string("message")) for p in entries])


@dataclass
class Result:
    """One run's result.json."""

    run_id: str
    identity: Identity  # its `config` is the whole config the model ran with
    created: str | None  # ISO 8601, UTC
    versions: Versions
    train: TrainRecord | None  # None: the predictor needs no training, or given weights were scored
    eval: Evaluation
    costs: Costs
    data: DataRecord | None = None  # None: the file has no `data` key
    # Processes that trained and scored the run (torchrun); not part of its identity: the numbers do not
    # depend on it. None: the file has no `world_size` key (one process).
    world_size: int | None = None
    # Torch's CPU threads in each of those processes (vpbench.cpu.thread_count); None: not recorded (before vpbench
    # recorded it). Not part of the identity either.
    threads: int | None = None
    # Whether the predictor is a floor (Predictor.floor: it learns nothing, its costs are nothing to beat).
    # None: written before vpbench recorded it; `is_floor` then infers it.
    floor: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    @property
    def is_floor(self) -> bool:
        """The recorded flag; in a result written before it, whether the predictor needed no training and read
        nothing: the only such built-in then was the copy-last floor."""
        if self.floor is not None:
            return self.floor
        return self.train is None and self.eval.checkpoint == NEEDS_NO_TRAINING

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "run_id": self.run_id, **self.identity.to_dict(), "created": self.created,
                "versions": self.versions.to_dict(), "train": None if self.train is None else self.train.to_dict(),
                "eval": self.eval.to_dict(), "costs": self.costs.to_dict(),
                **({} if self.data is None else {"data": self.data.to_dict()}),
                **({} if self.world_size is None else {"world_size": self.world_size}),
                **({} if self.threads is None else {"threads": self.threads}),
                **({} if self.floor is None else {"floor": self.floor}), **self.extra}

    @classmethod
    def from_dict(cls, data: Any) -> Result:
        """Read a result.json object; raises ResultError saying what is wrong with it."""
        if not isinstance(data, dict):
            raise ResultError("not a JSON object")
        _check_schema(data.get("schema"))
        top = _Object(data)
        identity = Identity.from_dict(data)
        train, versions, data_block = top.object("train"), top.object("versions"), top.object("data")
        result = cls(
            run_id=top.string("run_id"), identity=identity, created=top.text("created"),
            versions=Versions.from_dict(versions or {}),
            train=None if train is None else TrainRecord.from_dict(train),
            eval=Evaluation.from_dict(data.get("eval")), costs=Costs.from_dict(top.required("costs")),
            data=None if data_block is None else DataRecord.from_dict(data_block),
            world_size=top.optional_integer("world_size"), threads=top.optional_integer("threads"),
            floor=top.flag("floor") if top.data.get("floor") is not None else None,
            extra={k: v for k, v in data.items() if k not in _RESULT_KEYS})
        result.eval.check(identity.protocol.future)
        return result

    @classmethod
    def read(cls, path: Path) -> Result:
        """The result in a result.json file; a ResultError names the file and says what is wrong with it."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except ResultError as exc:
            raise type(exc)(exc.reason, path) from None
        except ValueError as exc:  # not JSON, or not UTF-8
            raise ResultError(str(exc), path) from exc


# The keys a result.json has: its own, and its run's identity at the top level.
_RESULT_KEYS = {"schema", "run_id", "created", "versions", "train", "eval", "costs", "data", "world_size", "threads",
                "floor", *(f.name for f in fields(Identity))}


def _check_schema(schema: Any) -> None:
    if schema == SCHEMA:
        return
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA:
        raise NewerSchemaError(f"schema {schema}, written by a newer vpbench; this vpbench reads schema {SCHEMA}: "
                               "upgrade vpbench to read it")
    raise ResultError(f"schema {schema!r}, this vpbench reads schema {SCHEMA}")
