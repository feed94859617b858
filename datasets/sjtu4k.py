"""sjtu4k: the SJTU 4K video sequences (Song et al. 2013): 3840x2160 raw YUV 4:2:0; STIP's 4 -> 4 at 4K.

Prepared layout: raw YUV files `<name>.yuv` (8-bit, or 10-bit in little-endian 16-bit words), read
through a memmap and converted to RGB by `_frames.yuv420_to_rgb` (torch: on the CPU in the loader
here, and device-agnostic), or folders of PNG frames `<name>/<n>.png` as STIP's loader reads them
(`Traffic_Flow.mp4/77.png`). `bench data prepare sjtu4k --source DIR` takes .yuv files (3840x2160
unless the name says otherwise, e.g. `_1920x1080`; 10-bit if it says `10bit`), frame folders (linked
where the file system allows) and other videos (decoded into raw 8-bit 4:2:0: the decoder's own planes,
nothing lost). A sequence is named after its file or folder without the extension and size suffix.

YUV -> RGB uses BT.709 with limited ("TV") range by default, the colour space of UHD video
(`yuv_matrix`, `yuv_range` change it; BT.601 reproduces FFmpeg's default for untagged YUV).
Frames of a YUV file are numbered from 1, as FFmpeg numbers extracted frames, so that a clip list
names the same frame in both layouts.

Protocol "4to4": 4 -> 4 at 2160x3840: the loader gives the 2160 rows the sequences have. STIP's official
loader (ZhengChang467/STIPHR core/data_provider/sjtu4k.py, configs/sjtu4k_configs.py: img_height 2176 = 17 x 128;
STRPM's is the same) reads 2176 x 3840 PNG frames made beforehand, from folders named after a video
(`Traffic_Flow.mp4/63.png`). What its 16 extra rows hold cannot be determined from the published code: neither
repository has the script that made the frames, and their sample frames are not in the repository snapshots
(checked at STIPHR 9c87126). So vpbench keeps its default and says so: STIP and STRPM pad inside the model
(`pad_mode`, "replicate": the last row repeated; "zeros": black) and crop the prediction back, and the 2160 real
rows are scored. STIP's own evaluation scores all 2176 rows (core/trainer.py, `res_height = configs.img_height`),
so its published SJTU4K numbers include the 16 unknown rows (0.7% of the pixels). Splits:
- split_by=sequences (default): test = `test_sequences` (names) or 20% of the sequences by hash;
  clips every `clip_stride` frames (8: non-overlapping); validation: `val_fraction` of the others.
- split_by=lists: STIP's clip lists (`dir/,start,end`, the folder naming the sequence).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from vpbench import COUNT, Protocol, UserError, console, register_dataset, setting, sha256_files

from ._files import BadFile, place, source_relative
from ._frames import Matrix, yuv_frame_count
from ._lists import copy_lists, plan_from_lists
from ._manifest import Manifest, Sequence
from ._prepare import attempt, image_folders, place_numbered
from ._stored import Plan, StoredConfig, StoredDataset
from ._video import is_video, iter_frames

SIZE = re.compile(r"(\d{2,5})x(\d{2,5})")
SUFFIX = re.compile(r"(_\d{2,5}x\d{2,5}.*|\.(mp4|mov|mkv|avi|yuv|webm))$", re.IGNORECASE)
WIDTH, HEIGHT = 3840, 2160


@dataclass
class SJTU4KConfig(StoredConfig):
    split_by: Literal["sequences", "lists"] = setting("sequences",
                                                      "sequences (by name) or lists (files naming each split's clips)")
    test_sequences: tuple[str, ...] = setting((), "names of the test sequences; empty: 20% of them by hash")
    clip_stride: int = setting(8, "split_by=sequences: frames between clip starts", COUNT)
    yuv_matrix: Matrix = setting("bt709", "YUV to RGB matrix of the raw files")
    yuv_range: Literal["limited", "full"] = setting("limited", "YUV range of the raw files")


@register_dataset("sjtu4k")
class SJTU4K(StoredDataset):
    """SJTU 4K: 3840x2160 raw YUV (or STIP's PNG frames), 4 -> 4 at full 4K."""

    Config = SJTU4KConfig
    protocols: ClassVar[dict[str, Protocol]] = {"4to4": Protocol("4to4", 4, 4, HEIGHT, WIDTH, 3)}
    preset_keys = ("sjtu4k",)
    source_help = "the SJTU 4K .yuv files (or STIP's PNG frame folders, or videos), optionally STIP's lists"

    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        seen: set[str] = set()

        def add(key: str, file: Path, make: Any) -> None:
            if key in seen:
                console.print(f"skipped {file}: sequence {key} is already taken from another file", highlight=False)
                return
            seen.add(key)
            attempt(manifest, key, file, {}, make)

        for path in files:
            if path.suffix.lower() == ".yuv":
                key = sequence_name(path.name)
                add(key, path, lambda: link_yuv(path, root, key))
        folders = image_folders(files)
        for folder, frames in sorted(folders.items()):
            key = sequence_name(folder.name)
            add(key, folder, lambda: place_numbered(root, source_relative(folder, source), frames, key, {}))
        for video in (path for path in files if is_video(path)):  # a folder of the same name came first
            key = sequence_name(video.name)
            add(key, video, lambda: decode_to_yuv(video, root, key))
        copy_lists(files, root, manifest)

    def yuv_options(self) -> dict[str, Any]:
        return {"matrix": self.config.yuv_matrix, "full_range": self.config.yuv_range == "full"}

    def make_plan(self) -> Plan:
        if self.config.split_by == "lists":
            return plan_from_lists(self, lambda fields: (sequence_name(fields[0].rstrip("/")), int(fields[1])),
                                   number_step=1)
        names = {s.id for s in self.manifest.sequences} | {p.id for p in self.manifest.problems}
        unknown = sorted(set(self.config.test_sequences) - names)
        if unknown:
            raise UserError(f"sjtu4k: test_sequences {unknown} are not prepared sequences; "
                            f"they are: {', '.join(sorted(names))}")
        return self.plan_by_holdout(0.2, self.config.clip_stride, test_ids=set(self.config.test_sequences) or None)


def sequence_name(name: str) -> str:
    """Traffic_Flow.mp4 -> Traffic_Flow; Bund_Nightscape_3840x2160_8bit.yuv -> Bund_Nightscape."""
    return SUFFIX.sub("", name)


def _yuv_sequence(path: Path, root: Path, key: str, width: int, height: int, bits: int) -> Sequence:
    frames = yuv_frame_count(path, height, width, bits)
    return Sequence(key, "yuv", path.relative_to(root).as_posix(), frames, height, width, 3, first=1,
                    bytes=path.stat().st_size, sha256=sha256_files([path]), meta={"bits": bits})


def link_yuv(path: Path, root: Path, key: str) -> Sequence:
    size = SIZE.search(path.stem)
    width, height = (int(size[1]), int(size[2])) if size else (WIDTH, HEIGHT)
    bits = 10 if re.search(r"10.?bit|p10", path.stem, re.IGNORECASE) else 8
    yuv_frame_count(path, height, width, bits)  # a truncated source is left out before it is linked
    target = root / f"{key}.yuv"
    place(path, target)
    return _yuv_sequence(target, root, key, width, height, bits)


def decode_to_yuv(video: Path, root: Path, key: str) -> Sequence:
    """Decode a video into raw 8-bit planar 4:2:0 (Y, then U, then V per frame)."""
    target = root / f"{key}.yuv"
    partial = target.with_name(target.name + ".partial")
    size = (0, 0)
    try:
        with open(partial, "wb") as out:
            for _, planes in iter_frames(video, pixels="yuv420p"):
                size = (planes.shape[1], planes.shape[0] * 2 // 3)
                out.write(planes.tobytes())
    except BadFile:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return _yuv_sequence(target, root, key, *size, 8)
