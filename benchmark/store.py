"""Where runs live: runs/<dataset>/<predictor>/<run-id>/ with config, checkpoints, log and result.

Every file that another process may read (result.json, checkpoints) is written atomically (vpbench.files): a run
killed at any moment leaves either the old file or the new one. A run directory is locked while a process works in
it (`RunDir.lock`), so two commands never interleave their writes to one run.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import pickle
import shutil
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import torch

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

from .errors import UserError
from .files import KEPT_FRAMES, atomic_write, write_bytes_atomic, write_json_atomic, writing
from .result import Result


def save_checkpoint_atomic(path: Path, obj: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Checkpoints hold tensors, numbers and strings only, so they load with weights_only=True; a file that
    does not (it would run code to unpickle), a truncated one or one that is no checkpoint at all is refused
    with one line."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"checkpoint {path} holds objects other than tensors, numbers and strings; it is not loaded "
                        f"(weights_only=True: unpickling it could run code): {str(exc).strip().splitlines()[-1]}") \
            from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} is truncated or not a PyTorch checkpoint ({first})") from exc
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc


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
        # apart from the runs, so that the run folders stay the only entries of a predictor's folder, and outside
        # the run directory, which --force removes while the lock is held
        self.lock_path = Path(root) / ".locks" / f"{self.id}.lock"
        self.writes = writes
        self.started = time.monotonic()  # train.log's "seconds": from when this command took the run

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
        with writing(self.path):
            if force and self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, {"run_id": self.id, **self.identity})

    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[str], None], wait: bool = True) -> Iterator[None]:
        """Hold the run's lock: a second process on the same run waits here (told by `on_wait` who holds it)
        until the first is done, then finds its result; with `wait` False it stops at once with one line naming
        that process. The lock is the kernel's (flock), so it dies with its process: a killed run leaves nothing
        to clean up. Processes that write nothing do not lock."""
        if not self.writes or fcntl is None:
            yield
            return
        with writing(self.lock_path):
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_path, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                busy = f"run {self.id} is in progress in process {holder} ({self.path})"
                if not wait:
                    raise UserError(f"{busy}; --no-wait: not waiting for it")
                on_wait(f"{busy}; waiting for it to end")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self.started = time.monotonic()
            yield
        finally:
            handle.close()  # releases the lock

    def resume_iteration(self) -> int:
        """Iterations done by the run's resume point (last.pt), 0 without one."""
        if not self.last_checkpoint.is_file():
            return 0
        return int(load_checkpoint(self.last_checkpoint)["iteration"])

    def read_result(self) -> Result | None:
        """The run's result, None when there is none. A file that is not a readable result (with atomic writes
        only a hand edit or a damaged disk makes one) raises ResultError; a result of a newer schema raises
        NewerSchemaError."""
        if not self.result_path.is_file():
            return None
        return Result.read(self.result_path)

    def set_aside_result(self) -> Path:
        """Rename an unreadable result.json out of the way (never deleted: it may be someone's only copy)."""
        aside = self.result_path.with_name("result.json.unreadable")
        if self.writes:
            with writing(aside):
                os.replace(self.result_path, aside)
        return aside

    def write_result(self, result: Result) -> None:
        if self.writes:
            write_json_atomic(self.result_path, result.to_dict())

    def write_kept_frames(self, data: bytes) -> None:
        """The report's frames (vpbench.keep; vpbench.files.npz_bytes), written before result.json: a result implies
        its frames."""
        if self.writes:
            write_bytes_atomic(self.kept_frames_path, data)

    def save_checkpoint(self, path: Path, state: dict) -> None:
        if self.writes:
            save_checkpoint_atomic(path, state)

    def log(self, event: dict) -> None:
        if not self.writes:
            return
        # Appends of one short line are atomic enough for a log; the log is for people, not for resuming.
        stamp = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "seconds": round(time.monotonic() - self.started, 3)}
        with writing(self.log_path), open(self.log_path, "a") as fh:
            fh.write(json.dumps({**stamp, **event}) + "\n")
