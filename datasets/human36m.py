"""human36m: Human3.6M (Ionescu et al. 2014), 50 fps videos of 11 subjects; every 5th frame is used.

Prepared layout, the one STIP's and OpenSTL's loaders read: `S<k>/S<k>_<Action>.<camera>_<nnnnnn>.jpg`,
frames numbered from 1 as in the original videos. `bench data prepare human36m --source DIR` takes
frames already named so (linked, not copied, where the file system allows) or the original videos
(`S1/Videos/Directions 1.54138969.mp4`, ...: every 5th frame, 1, 6, 11, ..., written as JPEG quality
95 at the native size). A train.txt / test.txt in STIP's (`dir/,prefix,start,end`) or OpenSTL's
(`prefix,start`) format found in the source is kept for `split_by=lists`.

Protocols: "stip" 4 -> 4 at 1024x1024 and "openstl" 4 -> 4 at 256x256; a clip's frames are
`frame_step` (5) raw frames apart. Splits:
- split_by=subjects (default): subjects 1, 5, 6, 7, 8 train, 9 and 11 test (the usual Human3.6M
  split, OpenSTL's); clip starts every `clip_stride` raw frames (25: STIP's test list starts at 1 mod 25).
- split_by=lists: the reference clip lists (STIP's test list draws on every subject).
Validation: `val_fraction` of the training sequences (subject, action, camera), whole.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from vpbench import COUNT, Protocol, UserError, register_dataset, setting

from ._files import BadFile, place
from ._frames import is_image
from ._lists import copy_lists, plan_from_lists
from ._manifest import Manifest, Sequence
from ._prepare import attempt, decode_to_frames, index_frames
from ._stored import Plan, StoredConfig, StoredDataset, strided_starts
from ._video import is_video

FRAME = re.compile(r"^(S\d+)_(.+)_(\d+)\.(jpe?g|png)$", re.IGNORECASE)
SUBJECT = re.compile(r"^S(\d+)$")
RAW_STEP = 5  # frames of the original 50 fps videos kept by the references


@dataclass
class Human36MConfig(StoredConfig):
    split_by: Literal["subjects", "lists"] = setting("subjects", "subjects (the papers' split) or lists (files "
                                                                 "naming each split's videos)")
    train_subjects: tuple[int, ...] = setting((1, 5, 6, 7, 8), "subjects of the training split", COUNT)
    test_subjects: tuple[int, ...] = setting((9, 11), "subjects of the test split", COUNT)
    frame_step: int = setting(5, "raw frames between a clip's frames", COUNT)
    clip_stride: int = setting(25, "split_by=subjects: raw frames between clip starts", COUNT)


@register_dataset("human36m")
class Human36M(StoredDataset):
    """Human3.6M, every 5th frame: STIP's 4 -> 4 at 1024x1024, OpenSTL's at 256x256."""

    Config = Human36MConfig
    protocols: ClassVar[dict[str, Protocol]] = {
        "stip": Protocol("stip", 4, 4, 1024, 1024, 3),
        "openstl": Protocol("openstl", 4, 4, 256, 256, 3),
    }
    preset_keys = ("human36m",)
    source_help = "Human3.6M frames named S1_Directions.54138969_000001.jpg or the videos S1/Videos/*.mp4"

    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        groups: dict[tuple[str, str, str], dict[int, Path]] = {}
        for path in files:
            match = FRAME.match(path.name)
            if is_image(path) and match:
                subject, name, number = match[1].upper(), match[2], int(match[3])
                groups.setdefault((subject, name, path.suffix.lower()), {})[number] = path
        for (subject, name, suffix), frames in sorted(groups.items()):
            key, pattern = _naming(subject, name, suffix)
            for number, path in frames.items():
                place(path, root / pattern.format(number))
            attempt(manifest, key, root / pattern.format(min(frames)), _meta(subject),
                    lambda: index_frames(root, key, pattern, list(frames), _meta(subject)))
        framed = {s.id for s in manifest.sequences} | {p.id for p in manifest.problems}
        for video in files:
            subject = next((part.upper() for part in reversed(video.parts[:-1]) if SUBJECT.match(part.upper())), None)
            if not is_video(video) or subject is None or video.stem.startswith("_ALL"):
                continue
            key, pattern = _naming(subject, video.stem.replace(" ", "_"), ".jpg")
            if key in framed:
                continue
            attempt(manifest, key, video, _meta(subject),
                    lambda: decode_to_frames(video, root, pattern, _every_fifth, key, _meta(subject)))
        copy_lists(files, root, manifest)

    def make_plan(self) -> Plan:
        config = self.config
        if config.frame_step < 1 or config.clip_stride < 1:
            raise UserError("human36m: frame_step and clip_stride must be >= 1")
        if config.split_by == "lists":
            return plan_from_lists(self, _parse_line, number_step=config.frame_step)
        overlap = set(config.train_subjects) & set(config.test_subjects)
        if overlap:
            raise UserError(f"human36m: subjects {sorted(overlap)} are in both train_subjects and test_subjects")
        return self.plan_by_sequence(lambda key, meta: "train" if meta["subject"] in config.train_subjects
                                     else "test" if meta["subject"] in config.test_subjects else None, self.starts)

    def starts(self, split: str, sequence: Sequence, length: int) -> list[tuple[int, int]]:
        """Raw-frame steps and strides in stored positions (frames may be stored every 5th or all)."""
        step, stride = self.config.frame_step, self.config.clip_stride
        if step % sequence.step or stride % sequence.step:
            raise BadFile(self.root / sequence.path.format(sequence.first),
                          f"frames stored every {sequence.step} cannot give frame_step {step} and clip_stride {stride}")
        step, stride = step // sequence.step, stride // sequence.step
        return [(start, step) for start in strided_starts(sequence.frames, length, stride, step)]


def _naming(subject: str, name: str, suffix: str) -> tuple[str, str]:
    """Sequence id and frame pattern: S1/S1_Directions.54138969 and S1/S1_Directions.54138969_{:06d}.jpg."""
    return f"{subject}/{subject}_{name}", f"{subject}/{subject}_{name}_{{:06d}}{suffix}"


def _meta(subject: str) -> dict:
    return {"subject": int(subject[1:])}


def _every_fifth(index: int) -> int | None:
    """Raw frame `index` (0-based) -> its 1-based number if kept: 1, 6, 11, ..."""
    return index + 1 if index % RAW_STEP == 0 else None


def _parse_line(fields: list[str]) -> tuple[str, int]:
    if len(fields) >= 4:  # STIP: dir/,prefix,start,end
        return f"{fields[0].rstrip('/')}/{fields[1].rstrip('_')}", int(fields[2])
    return fields[0].rstrip("_"), int(fields[1])  # OpenSTL: prefix,start
