"""The base of datasets read from prepared files: the data root, the split plan, and clips read on use.

A stored dataset subclasses `StoredDataset` and writes two things: `collect` (classmethod: turn the
files of an original download into the prepared layout, used by `bench data prepare`) and
`make_plan` (which sequences and clip starts make up each split of the chosen protocol). Clips are
read when indexed: .npy arrays through memmaps, image files through Pillow, raw YUV through memmaps
and `yuv420_to_rgb`; then converted to the protocol's channels and, when the stored size differs,
resized (bilinear with antialiasing, i.e. area-like when shrinking).

Validation is always carved from the training sequences, never from test: whole sequences, chosen by
ranking the training sequence ids by a hash (deterministic, independent of file-system order).
"""
from __future__ import annotations

import hashlib
import operator
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vpbench import (COUNT, SPLITS, DataProblem, DatasetConfig, Protocol, Split, UserError, VideoDataset, between,
                     console, setting)

from ._files import SCRATCH_PREFIX, BadFile, load_npy, walk
from ._frames import read_image, yuv420_to_rgb, yuv_planes
from ._manifest import MANIFEST, Manifest, Sequence, load_manifest, resolve_root
from ._prepare import collect_split_videos

# ITU-R BT.601 luma weights, what Pillow's "L" conversion uses: colour sources read as greyscale.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
_OPEN_ARRAYS = 64  # memmaps kept open per process: enough for locality, far below the file limit


@dataclass
class StoredConfig(DatasetConfig):
    """Options of every stored dataset."""

    root: str | None = setting(None,
                               "the prepared data; default $VPBENCH_DATA/<name>, else ~/.cache/vpbench/data/<name>")
    val_fraction: float = setting(0.05, "share of the training sequences held out, whole, for validation",
                                  between(0, 1, high_open=True))


@dataclass
class LongConfig(StoredConfig):
    """Options of datasets with long-sequence protocols (CW-VAE / HTSRM), which train on short chunks."""

    train_length: int | None = setting(None, "frames per training clip; None: the protocol's (100 for the long ones)",
                                       COUNT)


@dataclass
class Plan:
    """What each split holds: clip rows (sequence index, first position, position step)."""

    clips: dict[str, np.ndarray]
    problems: list[DataProblem] = field(default_factory=list)


def clip_rows(rows: Iterable[tuple[int, int, int]]) -> np.ndarray:
    return np.asarray(list(rows), dtype=np.int64).reshape(-1, 3)


def carve(ids: Iterable[str], fraction: float, salt: str) -> set[str]:
    """The validation share of `ids`: the round(fraction * n) ids (at least one when n >= 2 and
    fraction > 0) of smallest hash, so the choice depends on the ids only."""
    unique = sorted(set(ids))
    if fraction <= 0 or len(unique) < 2:
        return set()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    ranked = sorted(unique, key=lambda key: hashlib.sha256(f"{salt}/{key}".encode()).hexdigest())
    return set(ranked[:count])


def chunk_starts(frames: int, length: int) -> range:
    """Non-overlapping clips from the first frame: floor(frames / length) of them (CW-VAE's chunking)."""
    return range(0, frames - length + 1, length)


def strided_starts(frames: int, length: int, stride: int, step: int = 1) -> range:
    """Every `stride`-th start whose clip of `length` frames `step` apart fits in the sequence."""
    return range(0, frames - (length - 1) * step, stride)


class StoredDataset(VideoDataset):
    """Base of the datasets read from a prepared data root (see the module docstring)."""

    Config: ClassVar[type] = StoredConfig
    source_help: ClassVar[str] = "the dataset's original download"
    # Frames per training clip where a protocol trains on other lengths than it tests (CW-VAE: 100).
    train_lengths: ClassVar[dict[str, int]] = {}

    def __init__(self, config: Any, protocol: str | None = None) -> None:
        super().__init__(config, protocol)
        if not 0 <= getattr(config, "val_fraction", 0.0) < 1:
            raise UserError(f"dataset option val_fraction must be in [0, 1), got {config.val_fraction}")
        train_length = getattr(config, "train_length", None)
        if train_length is not None and train_length <= self.spec.context:
            raise UserError(f"dataset option train_length must exceed the context ({self.spec.context}), "
                            f"got {train_length}")
        self.root, origin = resolve_root(self.registry_name, config.root)
        self.manifest = load_manifest(self.registry_name, self.root, origin, self.source_help)
        self._plan: Plan | None = None

    # -- what a dataset defines ---------------------------------------------------------------------
    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        """Turn the source `files` into the prepared layout under `root`, filling `manifest`."""
        raise NotImplementedError

    def make_plan(self) -> Plan:
        raise NotImplementedError

    def clip_length(self, split: Split) -> int:
        """Frames per clip of `split`; long-sequence protocols train on shorter clips than they test."""
        if split == "train":
            return getattr(self.config, "train_length", None) or self.train_lengths.get(self.protocol.name,
                                                                                       self.spec.length)
        return self.spec.length

    def yuv_options(self) -> dict[str, Any]:
        return {}

    # -- shared ------------------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = self.make_plan()
            if self._plan.problems:
                counts = {s: sum(p.split == s for p in self._plan.problems) for s in SPLITS}
                where = ", ".join(f"{s}: {n}" for s, n in counts.items() if n)
                console.print(f"[yellow]warning:[/yellow] {self.registry_name}: {len(self._plan.problems)} file(s) "
                              f"left out of the splits ({where}); the result records them. First: "
                              f"{self._plan.problems[0].file}: {self._plan.problems[0].message}", highlight=False)
        return self._plan

    def split(self, name: Split) -> "StoredClips":
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        rows = self.plan.clips.get(name, clip_rows([]))
        if len(rows) == 0:
            raise UserError(f"dataset {self.registry_name} (protocol {self.protocol.name}, root {self.root}): "
                            f"the {name} split has no clip of {self.clip_length(name)} frames; "
                            f"too few or too short sequences for this protocol")
        return StoredClips(self.root, self.manifest.sequences, rows, self.clip_length(name), self.protocol,
                           self.yuv_options())

    def problems(self) -> list[DataProblem]:
        return list(self.plan.problems)

    def fingerprint(self) -> str:
        """A digest of the prepared data (every checksum in the manifest and what was left out): two
        roots with the same fingerprint hold the same clips, so it belongs in a run's identity."""
        manifest = self.manifest
        parts = [f"{s.id}:{s.frames}:{s.sha256}" for s in manifest.sequences]
        parts += [f"{path}:{facts['sha256']}" for path, facts in sorted(manifest.files.items())]
        parts += [f"left out {p.id}" for p in manifest.problems]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def plan_by_sequence(self, base: Callable[[str, dict], str | None],
                         starts: Callable[[Split, Sequence, int], Iterable[tuple[int, int]]]) -> Plan:
        """Whole sequences per split (see `assign`); the clips of a sequence are the (first position,
        position step) pairs `starts(split, sequence, clip length)` gives."""
        members, problems = self.assign(base)
        sequences = self.manifest.sequences
        rows = {split: clip_rows((i, first, step) for i in indices
                                 for first, step in starts(split, sequences[i], self.clip_length(split)))  # type: ignore
                for split, indices in members.items()}
        return Plan(rows, problems)

    def plan_by_holdout(self, test_fraction: float, clip_stride: int, frame_step: int = 1,
                        test_ids: set[str] | None = None) -> Plan:
        """Sequences split whole: test = `test_ids`, else `test_fraction` of them by hash; validation
        carved from the rest; clips every `clip_stride` stored frames, `frame_step` stored frames apart."""
        if not 0 < test_fraction < 1 or clip_stride < 1:
            raise UserError(f"{self.registry_name}: test_fraction must be in (0, 1) and clip_stride >= 1, "
                            f"got {test_fraction} and {clip_stride}")
        if test_ids is None:
            ids = [s.id for s in self.manifest.sequences] + [p.id for p in self.manifest.problems]
            test_ids = carve(ids, test_fraction, f"{self.registry_name}-test")
        return self.plan_by_sequence(lambda key, meta: "test" if key in test_ids else "train",
                                     lambda split, sequence, length: ((start, frame_step) for start in strided_starts(
                                         sequence.frames, length, clip_stride, frame_step)))

    def assign(self, base: Callable[[str, dict], str | None]) -> tuple[dict[str, list[int]], list[DataProblem]]:
        """Sequence indices per split from `base(id, meta)` -> "train" / "test" / None (unused), with the
        validation sequences carved from the training ones; problems are placed by the same rule."""
        entries = [(s.id, s.meta) for s in self.manifest.sequences] + [(p.id, p.meta) for p in self.manifest.problems]
        held = carve([key for key, meta in entries if base(key, meta) == "train"],
                     getattr(self.config, "val_fraction", 0.0), self.registry_name)

        def split_of(key: str, meta: dict) -> str | None:
            split = base(key, meta)
            return "val" if split == "train" and key in held else split

        members: dict[str, list[int]] = {name: [] for name in SPLITS}
        for index, sequence in enumerate(self.manifest.sequences):
            split = split_of(sequence.id, sequence.meta)
            if split is not None:
                members[split].append(index)
        problems = [DataProblem(split, p.file, p.message) for p in self.manifest.problems
                    if (split := split_of(p.id, p.meta)) is not None]
        return members, problems

    @classmethod
    def prepare(cls, source: Path, root: Path, *, force: bool = False) -> Manifest:
        """`bench data prepare`: the source (a folder, a file or an archive) -> root, manifest last."""
        source = source.expanduser().resolve()
        root = root.expanduser().resolve()
        if (root / MANIFEST).exists() and not force:
            raise UserError(f"{root} already holds prepared {cls.registry_name} data; --force prepares it again")
        if not source.exists():
            raise UserError(f"--source {source}: no such file or folder; expected {cls.source_help}")
        created = first_missing(root)  # bad input must leave nothing behind: what this call creates goes again
        root.mkdir(parents=True, exist_ok=True)
        try:
            return cls._prepare_into(source, root)
        except BaseException:
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            raise

    @classmethod
    def _prepare_into(cls, source: Path, root: Path) -> Manifest:
        (root / MANIFEST).unlink(missing_ok=True)
        manifest = Manifest(dataset=cls.registry_name, source=str(source))
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))
        try:
            files = [path for path in walk(source, scratch) if path.name != MANIFEST]
            cls.collect(files, source, root, manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if not manifest.sequences and not manifest.files:
            found = f"; {len(manifest.problems)} unusable, first: {manifest.problems[0].file}: " \
                    f"{manifest.problems[0].message}" if manifest.problems else ""
            raise UserError(f"no {cls.registry_name} data found in {source}: expected {cls.source_help}{found}")
        manifest.save(root)
        return manifest


def first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` (itself included) that does not exist yet: what mkdir(parents=True) creates."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


class StoredClips(Dataset):
    """Clips of one split, read from the prepared files when indexed; float [T, C, H, W] in [0, 1]."""

    def __init__(self, root: Path, sequences: list[Sequence], rows: np.ndarray, length: int, protocol: Protocol,
                 yuv: dict[str, Any]) -> None:
        self.root, self.sequences, self.rows, self.length = root, sequences, rows, length
        self.protocol, self.yuv = protocol, yuv
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:  # memmaps stay in the process that opened them
        return {**self.__dict__, "_arrays": OrderedDict()}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = checked_index(index, len(self.rows))
        position, start, step = (int(v) for v in self.rows[index])
        sequence = self.sequences[position]
        positions = start + step * np.arange(self.length)
        if positions[-1] >= sequence.frames:
            raise BadFile(self.root / sequence.path, f"clip {index} needs frame position {positions[-1]}, "
                                                     f"the sequence has {sequence.frames}")
        return fit(self.read(sequence, positions), self.protocol)

    def sequence_of(self, index: int) -> str:
        return self.sequences[int(self.rows[index][0])].id

    def read(self, sequence: Sequence, positions: np.ndarray) -> torch.Tensor:
        """Frames at `positions` of `sequence`, float [n, C, H, W] in [0, 1] at the stored size."""
        if sequence.kind == "yuv":
            bits = sequence.meta.get("bits", 8)
            planes = yuv_planes(self.root / sequence.path, sequence.height, sequence.width, bits, sequence.frames,
                                positions)
            return yuv420_to_rgb(*(torch.from_numpy(p) for p in planes), bits=bits, **self.yuv)
        if sequence.kind == "npy":
            data = np.ascontiguousarray(self._array(sequence)[positions])
        else:
            frames = []
            for p in positions:
                path = self.root / sequence.path.format(sequence.number(int(p)))
                frame = read_image(path, sequence.channels)
                if frame.shape[:2] != (sequence.height, sequence.width):
                    raise BadFile(path, f"wrong resolution: {frame.shape[1]}x{frame.shape[0]}, the manifest says "
                                        f"{sequence.width}x{sequence.height}")
                frames.append(frame)
            data = np.stack(frames)
        return torch.from_numpy(data).permute(0, 3, 1, 2).float().div_(255.0)

    def _array(self, sequence: Sequence) -> np.ndarray:
        array = self._arrays.get(sequence.path)
        if array is None:
            path = self.root / sequence.path
            array = load_npy(path, "; run `bench data check`")
            if array.ndim != 4 or len(array) < sequence.frames:
                raise BadFile(path, f"truncated: shape {list(array.shape)}, the manifest says {sequence.frames} frames")
            if len(self._arrays) >= _OPEN_ARRAYS:
                self._arrays.popitem(last=False)
            self._arrays[sequence.path] = array
        else:
            self._arrays.move_to_end(sequence.path)
        return array


def checked_index(index: int, size: int) -> int:
    """A map-style dataset's index, negative ones counted from the end."""
    index = operator.index(index)
    if index < 0:
        index += size
    if not 0 <= index < size:
        raise IndexError(f"clip {index} out of range for a split of {size}")
    return index


def fit(frames: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """Stored frames [n, C, H, W] -> the protocol's channels and size."""
    channels = frames.shape[1]
    if channels == 3 and protocol.channels == 1:
        weights = torch.tensor(GREY_WEIGHTS, dtype=frames.dtype).view(1, 3, 1, 1)
        frames = (frames * weights).sum(dim=1, keepdim=True)
    elif channels == 1 and protocol.channels == 3:
        frames = frames.expand(-1, 3, -1, -1)
    elif channels != protocol.channels:
        raise UserError(f"cannot turn {channels}-channel frames into the protocol's {protocol.channels}")
    if frames.shape[-2:] != (protocol.height, protocol.width):
        frames = F.interpolate(frames, size=(protocol.height, protocol.width), mode="bilinear", antialias=True,
                               align_corners=False).clamp_(0.0, 1.0)
    return frames.contiguous()


class SplitFolderVideos(StoredDataset):
    """Videos in train / test folders (the CW-VAE releases), cut into non-overlapping clips of the
    split's length: floor(frames / length) per video."""

    Config: ClassVar[type] = LongConfig

    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        collect_split_videos(files, root, manifest)

    def make_plan(self) -> Plan:
        return self.plan_by_sequence(lambda key, meta: meta["split"],
                                     lambda split, sequence, length: ((s, 1) for s in chunk_starts(sequence.frames,
                                                                                                  length)))
