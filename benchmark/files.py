"""Files that another process or a report reads, written and read without torch: atomic writes, and the archive of
kept frames. Reading results needs no torch (`bench report` starts as fast as `bench --help`), so what it shares
with the runs lives here rather than beside the torch code that writes checkpoints and clips.

Every write goes to a temporary name and is renamed into place, so a process killed at any moment leaves either
the old file or the new one. A write that fails (disk full, read-only --out) removes its temporary file and stops
with one line naming the path. The file gets the mode the user's umask gives a new file (0644 under umask 022), as
`open` would: the temporary file's own 0600 would keep a group sharing a runs directory from reading it.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import UserError

KEPT_FRAMES = "kept_frames.npz"  # beside result.json: the frames of a few test sequences (vpbench.keep)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OS error while writing `path` (no space, read-only, not a directory) into one line naming it."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it to `path`."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            os.close(fd)
            write(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def current_umask() -> int:
    """The process's umask. Read from /proc where it can be: setting it to read it back would change it, for a
    moment, under every thread of the process (data loaders, torch's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, obj: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """`arrays` as a compressed .npz file's bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def read_kept(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a kept-frames archive (`npz_bytes` wrote them)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
