"""ucf-sports: UCF Sports Actions (Rodriguez et al. 2008), 150 broadcast sports clips; STIP's protocol.

Prepared layout, the one STIP's loader reads: one folder of frames per video, `<folder>/<n>.png`
(or .jpg). `bench data prepare ucf-sports --source DIR` takes folders of frames (the original
download's jpg folders, renumbered 0, 1, ... where the names are not numbers; linked, not copied,
where the file system allows) and videos (decoded to PNG frames); videos beside or above a folder of
frames are the same clip and are skipped. A train.txt / test.txt in STIP's format (`dir/,start`)
found in the source is kept for `split_by=lists`.

Protocol "stip": 4 -> 6 frames at 512x512 (frames are resized to it). Splits:
- split_by=videos (default): test = `test_fraction` of the videos (chosen by hash of the folder
  name), clips at every `clip_stride`-th start; no video is shared between splits.
- split_by=lists: STIP's clip lists (6288 train / 752 test clips in the paper); that split is at the
  clip level, the same videos appear in train and test.
Validation: `val_fraction` of the training videos, whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from vpbench import COUNT, OPEN_FRACTION, Protocol, register_dataset, setting

from ._files import source_relative
from ._lists import copy_lists, plan_from_lists
from ._manifest import Manifest
from ._prepare import attempt, decode_to_frames, image_folders, loose_videos, place_numbered
from ._stored import Plan, StoredConfig, StoredDataset


@dataclass
class FolderSplitConfig(StoredConfig):
    split_by: Literal["videos", "lists"] = setting("videos",
                                                   "videos (by hash) or lists (files naming each split's videos)")
    test_fraction: float = setting(0.1, "split_by=videos: share of the videos kept for test", OPEN_FRACTION)
    clip_stride: int = setting(1, "split_by=videos: frames between successive clip starts", COUNT)


@register_dataset("ucf-sports")
class UCFSports(StoredDataset):
    """UCF Sports: 150 sports clips as frame folders, STIP's 4 -> 6 at 512x512."""

    Config = FolderSplitConfig
    protocols: ClassVar[dict[str, Protocol]] = {"stip": Protocol("stip", 4, 6, 512, 512, 3)}
    preset_keys = ("ucf-sports",)
    source_help = "UCF Sports frame folders (or its videos), optionally with STIP's train.txt / test.txt"

    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        folders = image_folders(files)
        for folder, frames in sorted(folders.items()):
            key = source_relative(folder, source)
            attempt(manifest, key, folder, {}, lambda: place_numbered(root, key, frames, key, {}))
        for video in loose_videos(files, folders):
            key = source_relative(video.parent / video.stem, source)
            attempt(manifest, key, video, {},
                    lambda: decode_to_frames(video, root, f"{key}/{{}}.png", lambda index: index, key, {}))
        copy_lists(files, root, manifest)

    def make_plan(self) -> Plan:
        if self.config.split_by == "lists":
            return plan_from_lists(self, lambda fields: (fields[0], int(fields[1])), number_step=1)
        return self.plan_by_holdout(self.config.test_fraction, self.config.clip_stride)

