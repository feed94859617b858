"""Helpers of `collect` (what `bench data prepare` runs per dataset): record unusable source files,
store decoded videos as .npy, place and index frame folders, decode videos into frames."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from vpbench import console, sha256_files

from ._files import BadFile, place
from ._frames import image_size, is_image, natural_key, write_image
from ._manifest import Manifest, Problem, Sequence
from ._video import is_video, iter_frames, read_video


def attempt(manifest: Manifest, key: str, file: Path, meta: dict, make: Callable[[], Sequence]) -> None:
    """Add the sequence `make` builds, or record why the source file cannot be used."""
    try:
        manifest.sequences.append(make())
        if console.is_terminal:  # a long prepare (Human3.6M: hours) shows that it moves
            console.print(f"[dim]{len(manifest.sequences)}: {key}[/dim]", highlight=False)
    except BadFile as exc:
        manifest.problems.append(Problem(key, exc.path, exc.problem, meta))
        console.print(f"[yellow]left out:[/yellow] {exc}", highlight=False)


def store_array(root: Path, relative: str, frames: np.ndarray, key: str, meta: dict) -> Sequence:
    """Write decoded frames uint8 [T, H, W, 3] as one .npy; a grey video (R = G = B everywhere) is
    stored with one channel, which loses nothing and a third of the bytes."""
    if frames.shape[-1] == 3 and bool((frames[..., 1:] == frames[..., :1]).all()):
        frames = frames[..., :1]
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as fh:
        np.save(fh, np.ascontiguousarray(frames))
    partial.replace(path)
    count, height, width, channels = frames.shape
    return Sequence(key, "npy", relative, count, height, width, channels, bytes=path.stat().st_size,
                    sha256=sha256_files([path]), meta=meta)


def index_frames(root: Path, key: str, pattern: str, numbers: list[int], meta: dict) -> Sequence:
    """A sequence of image files `root / pattern.format(n)` for n in `numbers`, evenly spaced; a gap is
    a missing frame and a frame whose size differs from the first is of the wrong resolution."""
    numbers = sorted(numbers)
    step = max(1, math.gcd(*(b - a for a, b in zip(numbers, numbers[1:])))) if len(numbers) > 1 else 1
    present = set(numbers)
    for number in range(numbers[0], numbers[-1] + 1, step):
        if number not in present:
            raise BadFile(root / pattern.format(number),
                          f"missing frame of sequence {key} (it has frames {numbers[0]}..{numbers[-1]} every {step})")
    files = [root / pattern.format(number) for number in numbers]
    height, width, channels = image_size(files[0])
    for path in files[1:]:
        size = image_size(path)
        if size[:2] != (height, width):
            raise BadFile(path, f"wrong resolution: {size[1]}x{size[0]}, the first frame of {key} is {width}x{height}")
        channels = max(channels, size[2])
    return Sequence(key, "frames", pattern, len(numbers), height, width, channels, first=numbers[0], step=step,
                    bytes=sum(path.stat().st_size for path in files), sha256=sha256_files(files), meta=meta)


def place_numbered(root: Path, folder: str, files: list[Path], key: str, meta: dict) -> Sequence:
    """Frame files of one folder -> `<root>/<folder>/<number><ext>`. Names that are numbers keep
    them (and their zero padding), so a gap stays visible as a missing frame; other names are
    numbered 0, 1, ... in natural order."""
    suffixes = {path.suffix.lower() for path in files}
    if len(suffixes) > 1:
        raise BadFile(files[0].parent, f"frames of several formats ({', '.join(sorted(suffixes))}) in one folder")
    suffix = suffixes.pop()
    stems = [path.stem for path in files]
    if all(stem.isdigit() for stem in stems):
        numbers = [int(stem) for stem in stems]
        widths = {len(stem) for stem in stems}
        padded = len(widths) == 1 and any(stem.startswith("0") for stem in stems)
        pattern = f"{folder}/{{:0{widths.pop()}d}}{suffix}" if padded else f"{folder}/{{}}{suffix}"
    else:
        files = sorted(files, key=lambda path: natural_key(path.name))
        numbers = list(range(len(files)))
        pattern = f"{folder}/{{}}{suffix}"
    for number, path in zip(numbers, files):
        place(path, root / pattern.format(number))
    return index_frames(root, key, pattern, numbers, meta)


def decode_to_frames(video: Path, root: Path, pattern: str, number: Callable[[int], int | None],
                     key: str, meta: dict) -> Sequence:
    """Decode `video` into image files `root / pattern.format(number(index))`, skipping the frames
    whose number is None; a video that breaks off part way leaves no files behind."""
    written: list[int] = []
    try:
        for index, frame in iter_frames(video, keep=lambda index: number(index) is not None):
            write_image(root / pattern.format(number(index)), frame)
            written.append(number(index))
    except BadFile:
        for number in written:
            (root / pattern.format(number)).unlink(missing_ok=True)
        raise
    if not written:
        raise BadFile(video, "too short: no frame kept")
    return index_frames(root, key, pattern, written, meta)


def image_folders(files: list[Path]) -> dict[Path, list[Path]]:
    """Image files grouped by folder."""
    folders: dict[Path, list[Path]] = {}
    for path in files:
        if is_image(path):
            folders.setdefault(path.parent, []).append(path)
    return folders


def loose_videos(files: list[Path], folders: dict[Path, list[Path]]) -> list[Path]:
    """Videos that are not in a folder of frames or its parent (UCF Sports keeps a clip's jpgs and its
    .avi together): those would be the same clip twice."""
    covered = set(folders) | {folder.parent for folder in folders}
    return [path for path in files if is_video(path) and path.parent not in covered]


def collect_split_videos(files: list[Path], root: Path, manifest: Manifest) -> None:
    """The CW-VAE layout: videos under folders named train* / test* (gqn_mazes/train/0.mp4,
    moving_mnist_2digit/test-seq1000/17.mp4) -> `<split>/<name>.npy`, the split in the meta."""
    for path in files:
        if not is_video(path):
            continue
        folders = (part.lower() for part in reversed(path.parent.parts))
        folder = next((part for part in folders if part.startswith(("train", "test"))), None)
        if folder is None:
            continue
        split = "train" if folder.startswith("train") else "test"
        key = f"{split}/{path.stem}"
        meta = {"split": split, "folder": path.parent.name}
        attempt(manifest, key, path, meta, lambda: store_array(root, f"{key}.npy", read_video(path), key, meta))
