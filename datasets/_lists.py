"""Clip lists in the reference formats, turned into split plans.

One clip per line, comma-separated. STIP (STIPHR): UCF Sports `dir/,start`, SJTU4K `dir/,start,end`,
Human3.6M `dir/,prefix,start,end`; OpenSTL Human3.6M `prefix,start`. Only the first frame number is
used: a clip is the protocol's number of frames from there (the `end` field is not read by the
references either). Paths in the lists are relative to the authors' repositories
(`data/human36m/S1/`), so a list path names the prepared sequence whose id ends with the most of
its trailing folders.

`bench data prepare` copies `train.txt` and `test.txt` found in the source to `<root>/lists/`.
Validation clips are the training-list clips of held-out sequences (see `_stored.carve`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from vpbench import DataProblem, UserError

from ._files import place
from ._manifest import Manifest, Sequence
from ._stored import Plan, StoredDataset, carve, clip_rows

LIST_NAMES = ("train.txt", "test.txt")
LIST_FOLDER = "lists"
# A parser takes a line's fields and returns (path naming the sequence, first frame number).
Parser = Callable[[list[str]], tuple[str, int]]


@dataclass
class ListClip:
    line: int
    key: str
    start: int


def copy_lists(files: list[Path], root: Path, manifest: Manifest) -> None:
    """Copy the source's train.txt / test.txt (one of each at most) into <root>/lists/."""
    for name in LIST_NAMES:
        found = [path for path in files if path.name == name]
        if len(found) > 1:
            raise UserError(f"the source holds several {name}: {', '.join(map(str, found))}; keep one")
        if found:
            place(found[0], root / LIST_FOLDER / name)
            manifest.add_file(root, f"{LIST_FOLDER}/{name}")


def read_list(path: Path, parse: Parser) -> list[ListClip]:
    if not path.is_file():
        raise UserError(f"clip list {path} not found: split_by=lists needs the reference train.txt and test.txt "
                        "in the source given to `bench data prepare`")
    clips = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        fields = [f.strip() for f in text.split(",")]
        if not text.strip():
            continue
        try:
            key, start = parse(fields)
        except (ValueError, IndexError):
            raise UserError(f"clip list {path}, line {number}: cannot read {text!r}") from None
        clips.append(ListClip(number, key, start))
    return clips


def _parts(path: str) -> tuple[str, ...]:
    return tuple(part for part in PurePosixPath(path.replace("\\", "/").strip("/")).parts if part not in (".", ""))


class SuffixIndex:
    """Finds the sequence whose id ends with the most trailing folders of a list path."""

    def __init__(self, ids: list[str]) -> None:
        self._index: dict[tuple[str, ...], int | None] = {}
        for position, key in enumerate(ids):
            parts = _parts(key)
            for cut in range(len(parts)):
                suffix = parts[cut:]
                self._index[suffix] = None if suffix in self._index else position  # ambiguous: None

    def find(self, path: str) -> int | None:
        parts = _parts(path)
        for cut in range(len(parts)):
            found = self._index.get(parts[cut:])
            if found is not None:
                return found
        return None


def plan_from_lists(dataset: StoredDataset, parse: Parser, number_step: int) -> Plan:
    """Train and test clips from <root>/lists/, validation carved from the training clips' sequences.

    `number_step` is the distance between a clip's frames in frame numbers (5 for Human3.6M's every
    5th frame); a clip naming a frame the sequence lacks is a problem of its split, not an error.
    """
    sequences = dataset.manifest.sequences
    index = SuffixIndex([s.id for s in sequences])
    left_out = SuffixIndex([p.id for p in dataset.manifest.problems])
    parsed = {name: read_list(dataset.root / LIST_FOLDER / f"{name}.txt", parse) for name in ("train", "test")}
    train_ids = [sequences[i].id for c in parsed["train"] if (i := index.find(c.key)) is not None]
    held = carve(train_ids, dataset.config.val_fraction, dataset.registry_name)
    rows: dict[str, list[tuple[int, int, int]]] = {"train": [], "val": [], "test": []}
    problems: list[DataProblem] = []
    length = {name: dataset.clip_length(name) for name in rows}
    for name, clips in parsed.items():
        where = dataset.root / LIST_FOLDER / f"{name}.txt"
        for clip in clips:
            position = index.find(clip.key)
            if position is None:
                gone = left_out.find(clip.key)
                problem = dataset.manifest.problems[gone] if gone is not None else None
                problems.append(DataProblem(name, problem.file if problem else f"{where}:{clip.line}",
                                            problem.message if problem else f"names no prepared sequence ({clip.key})"))
                continue
            sequence = sequences[position]
            split = "val" if name == "train" and sequence.id in held else name
            row = _row(position, sequence, clip, number_step, length[split])
            if len(row) == 3:
                rows[split].append(row)  # type: ignore[arg-type]
                continue
            missing, reason = row
            file = sequence.path.format(missing) if sequence.kind == "frames" else sequence.path
            problems.append(DataProblem(split, str(dataset.root / file), f"{reason} ({where}, line {clip.line})"))
    return Plan({name: clip_rows(r) for name, r in rows.items()}, problems)


def _row(position: int, sequence: Sequence, clip: ListClip, number_step: int,
         length: int) -> tuple[int, int, int] | tuple[int, str]:
    """The clip's row, or (the first frame number it lacks, why)."""
    offset = clip.start - sequence.first
    if offset % sequence.step or number_step % sequence.step:
        return clip.start, (f"frames {clip.start} + k * {number_step} are not stored: {sequence.id} keeps "
                            f"{sequence.first}, {sequence.first + sequence.step}, ...")
    start, step = offset // sequence.step, number_step // sequence.step
    last = start + step * (length - 1)
    if start < 0 or last >= sequence.frames:
        beyond = sequence.frames + (start - sequence.frames) % step  # first position of the clip past the end
        first_missing = clip.start if start < 0 else sequence.number(beyond)
        stored = f"{sequence.first}..{sequence.number(sequence.frames - 1)}"
        return first_missing, (f"missing frame: the clip needs frames {clip.start}..{sequence.number(last)} every "
                               f"{number_step}, {sequence.id} has {stored}")
    return position, start, step
