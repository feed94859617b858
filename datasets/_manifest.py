"""Where a stored dataset lives and what it holds: the data root and its manifest.json.

`bench data prepare NAME --source DIR` writes a dataset's fast layout into its root and, last, the
manifest: every sequence with its frame count, size and checksum, the extra files (clip lists, MNIST
idx files) and the source files that could not be used (the problems). `bench data check NAME`
re-derives all of it from the files. The manifest is written atomically, so an interrupted prepare
leaves no manifest and the loader says the data are missing.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vpbench import UserError, sha256_files
from vpbench.files import write_json_atomic

from ._files import BadFile, load_npy
from ._frames import yuv_frame_count

MANIFEST = "manifest.json"
FORMAT = "vpbench-data-1"
ENV = "VPBENCH_DATA"
DEFAULT_HOME = Path("~/.cache/vpbench/data")


def data_home() -> tuple[Path, str]:
    """The folder that holds one sub-folder per dataset, and where that choice came from."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser(), f"from ${ENV}"
    return DEFAULT_HOME.expanduser(), f"the default: ${ENV} is unset"


def resolve_root(name: str, option: str | None) -> tuple[Path, str]:
    """A dataset's root: the `root` option (`--set data.root=DIR`) if given, else <data home>/<name>."""
    if option:
        return Path(option).expanduser().resolve(), "set by data.root"
    home, origin = data_home()
    return (home / name).resolve(), origin


@dataclass
class Sequence:
    """One video of a dataset, stored as an .npy array [T, H, W, C], image files or a raw YUV file."""

    id: str
    kind: str  # "npy" | "frames" | "yuv"
    path: str  # relative to the root; for "frames" a pattern with one {} field for the frame number
    frames: int
    height: int
    width: int
    channels: int
    first: int = 0  # number of the first frame (frames, yuv)
    step: int = 1  # difference between successive stored frame numbers (5: every 5th raw frame kept)
    bytes: int = 0
    sha256: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def number(self, position: int) -> int:
        return self.first + position * self.step

    def files(self, root: Path) -> list[Path]:
        if self.kind == "frames":
            return [root / self.path.format(self.number(i)) for i in range(self.frames)]
        return [root / self.path]


@dataclass
class Problem:
    """A source file left out of the prepared data, and why; `meta` places it in a split."""

    id: str
    file: str
    message: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    dataset: str
    sequences: list[Sequence] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra files: relative path -> bytes, sha256
    source: str = ""
    format: str = FORMAT
    created: str = ""

    def save(self, root: Path) -> None:
        self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(root / MANIFEST, asdict(self))

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        path = root / MANIFEST
        try:
            raw = json.loads(path.read_text())
            return cls(dataset=raw["dataset"], sequences=[Sequence(**s) for s in raw["sequences"]],
                       problems=[Problem(**p) for p in raw["problems"]], files=raw["files"],
                       source=raw.get("source", ""), format=raw["format"], created=raw.get("created", ""))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadFile(path, f"unreadable manifest ({exc}); prepare the dataset again") from None

    def add_file(self, root: Path, relative: str) -> None:
        path = root / relative
        self.files[relative] = {"bytes": path.stat().st_size, "sha256": sha256_files([path])}


def missing_message(name: str, root: Path, origin: str, source_help: str) -> str:
    return (f"dataset {name}: no prepared data in {root} ({origin}; --set data.root=DIR or ${ENV}=DIR "
            f"look elsewhere). Prepare it with `bench data prepare {name} --source DIR`, DIR holding {source_help}")


def load_manifest(name: str, root: Path, origin: str, source_help: str) -> Manifest:
    if not (root / MANIFEST).is_file():
        raise UserError(missing_message(name, root, origin, source_help))
    manifest = Manifest.load(root)
    if manifest.dataset != name or manifest.format != FORMAT:
        raise UserError(f"{root / MANIFEST} describes {manifest.dataset!r} in format {manifest.format!r}, "
                        f"not {name!r} in {FORMAT!r}; prepare {name} into its own folder")
    return manifest


def sequence_size(root: Path, sequence: Sequence, bits: int = 8) -> int:
    """Frames actually on disk for `sequence`; raises BadFile naming the first file that is wrong."""
    if sequence.kind == "npy":
        path = root / sequence.path
        array = load_npy(path)
        expected = (sequence.height, sequence.width, sequence.channels)
        if array.ndim != 4 or tuple(array.shape[1:]) != expected or array.dtype != np.uint8:
            raise BadFile(path, f"wrong shape: {array.dtype}{list(array.shape)}, "
                                f"the manifest says uint8[T, {expected}]")
        return int(array.shape[0])
    if sequence.kind == "yuv":
        return yuv_frame_count(root / sequence.path, sequence.height, sequence.width, bits)
    for path in sequence.files(root):
        if not path.is_file():
            raise BadFile(path, f"missing frame of sequence {sequence.id}")
    return sequence.frames


def check(root: Path, manifest: Manifest, checksums: bool = True) -> list[str]:
    """Every difference between the files and the manifest, one line each naming the file."""
    found = []
    for sequence in manifest.sequences:
        try:
            frames = sequence_size(root, sequence, sequence.meta.get("bits", 8))
            if frames != sequence.frames:
                found.append(f"{root / sequence.path}: {frames} frames, the manifest says {sequence.frames}")
                continue
            files = sequence.files(root)
            size = sum(path.stat().st_size for path in files)
            if size != sequence.bytes:
                found.append(f"{root / sequence.path}: {size} bytes, the manifest says {sequence.bytes}")
            elif checksums and sha256_files(files) != sequence.sha256:
                found.append(f"{root / sequence.path}: checksum differs from the manifest (modified or corrupt)")
        except BadFile as exc:
            found.append(str(exc))
    for relative, facts in manifest.files.items():
        path = root / relative
        if not path.is_file():
            found.append(f"{path}: missing")
        elif path.stat().st_size != facts["bytes"] or (checksums and sha256_files([path]) != facts["sha256"]):
            found.append(f"{path}: differs from the manifest (size or checksum)")
    return found
