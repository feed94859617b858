"""Where runs live: runs/<dataset>/<predictor>/<run-id>/ with config, checkpoints, log and result.

Every file that another process may read (result.json, checkpoints) is written to a temporary name
and renamed into place, so a run killed at any moment leaves either the old file or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .keep import FILENAME as KEPT_FRAMES
from .result import NewerSchemaError, Result, ResultError


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())

    _atomic_write(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save_checkpoint_atomic(path: Path, obj: dict) -> None:
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Checkpoints hold tensors, numbers and strings only, so they load with weights_only=True."""
    return torch.load(path, map_location=map_location, weights_only=True)


def run_id(identity: dict) -> str:
    """Stable id of what a run is: predictor, dataset, protocol, seed, config, quick."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class RunDir:
    """The files of one run. With `writes` False (every rank of a multi-process run but rank 0) it reads like
    any other but writes nothing: one process owns the files."""

    def __init__(self, root: Path, dataset: str, predictor: str, identity: dict, writes: bool = True) -> None:
        self.identity = identity
        self.id = run_id(identity)
        self.path = Path(root) / dataset / predictor / self.id
        self.writes = writes

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def kept_frames_path(self) -> Path:
        return self.path / KEPT_FRAMES  # the report finds it beside result.json

    def prepare(self, force: bool) -> None:
        if not self.writes:
            return
        if force and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, {"run_id": self.id, **self.identity})

    def read_result(self) -> Result | None:
        """The run's result; None when there is none, or when the file is not a readable result (with atomic
        writes only a hand edit makes one): the evaluation is then redone. A result of a newer schema raises
        NewerSchemaError: redoing it would overwrite a newer vpbench's result."""
        if not self.result_path.is_file():
            return None
        try:
            return Result.read(self.result_path)
        except NewerSchemaError:
            raise
        except ResultError:
            return None

    def write_result(self, result: Result) -> None:
        if self.writes:
            write_json_atomic(self.result_path, result.to_dict())

    def write_kept_frames(self, data: bytes) -> None:
        """The report's frames (vpbench.keep), written before result.json: a result implies its frames."""
        if self.writes:
            write_bytes_atomic(self.kept_frames_path, data)

    def save_checkpoint(self, path: Path, state: dict) -> None:
        if self.writes:
            save_checkpoint_atomic(path, state)

    def log(self, event: dict) -> None:
        if not self.writes:
            return
        # Appends of one short line are atomic enough for a log; the log is for people, not for resuming.
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(event) + "\n")
