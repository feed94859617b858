"""kth: KTH Actions (Schuldt et al. 2004): 25 persons x 6 actions x 4 scenarios, 160x120 grey .avi files.

Prepared layout: `<action>/personNN_<action>_dS.npy`, uint8 [T, 120, 160, 1], one per video
(`bench data prepare kth --source DIR`, DIR holding the .avi files or the six zip archives). The
videos are grey but their DivX chroma is not exactly neutral; they are stored as the BT.601 luma of
the decoded RGB (about 5.6 GB for the 599 videos instead of 17 GB), and 3-channel protocols repeat it.

Protocols:
- "10to20" (OpenSTL): 10 -> 20 frames at 128x128, 1 channel; persons 1-16 train, 17-25 test. Clip
  starts as OpenSTL's loader (from PredRNN) picks them, per video and counted back from its last
  frame: boxing, handclapping, handwaving and walking every 30 frames (non-overlapping), jogging and
  running every 3 frames.
- "htsrm" (HTSRM's README: `--eval-seq-len 300 --open-loop-ctx 36`, persons 1-20 train, 21-25 test):
  36 -> 264 frames at 64x64, 3 channels (configs/kth.yml). Training clips: each video cut into
  floor(length / 100) chunks of 100 frames (`train_length`, CW-VAE's seq_len); test: the first 300
  frames of each test video, videos shorter than that are not used (CW-VAE's loader drops what does not
  fill a clip).
Validation: `val_fraction` of the training videos, whole (see `_stored.carve`), scored like test.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from vpbench import Protocol, Split, UserError, register_dataset

from ._manifest import Manifest, Sequence
from ._prepare import attempt, store_array
from ._stored import GREY_WEIGHTS, LongConfig, Plan, StoredDataset, chunk_starts
from ._video import is_video, read_video

NAME = re.compile(r"person(\d+)_([a-z]+)_d(\d+)", re.IGNORECASE)
# OpenSTL's "category 1": few periodic motions, so clips do not overlap; the rest overlap every 3 frames.
SPARSE_ACTIONS = ("boxing", "handclapping", "handwaving", "walking")
DENSE_STRIDE = 3


@register_dataset("kth")
class KTH(StoredDataset):
    """KTH Actions from the original .avi files: OpenSTL 10 -> 20 at 128x128, HTSRM long 64x64 clips."""

    Config = LongConfig
    protocols: ClassVar[dict[str, Protocol]] = {
        "10to20": Protocol("10to20", 10, 20, 128, 128, 1),
        "htsrm": Protocol("htsrm", 36, 264, 64, 64, 3),
    }
    preset_keys = ("kth",)
    source_help = "the KTH .avi files (person01_boxing_d1_uncomp.avi, ...) or their zip archives"
    train_lengths = {"htsrm": 100}
    last_train_person: ClassVar[dict[str, int]] = {"10to20": 16, "htsrm": 20}

    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        seen: dict[str, Path] = {}
        for path in files:
            match = NAME.search(path.stem)
            if not is_video(path) or not match:
                continue
            person, action, scenario = int(match[1]), match[2].lower(), int(match[3])
            key = f"person{person:02d}_{action}_d{scenario}"
            if key in seen:
                raise UserError(f"two source files for {key}: {seen[key]} and {path}; keep one")
            seen[key] = path
            meta = {"person": person, "action": action, "scenario": scenario}
            attempt(manifest, key, path, meta,
                    lambda: store_array(root, f"{action}/{key}.npy", grey(read_video(path)), key, meta))

    def make_plan(self) -> Plan:
        last = self.last_train_person[self.protocol.name]
        return self.plan_by_sequence(lambda key, meta: "train" if meta["person"] <= last else "test", self.starts)

    def starts(self, split: Split, sequence: Sequence, length: int) -> list[tuple[int, int]]:
        if self.protocol.name == "htsrm":
            if split == "train":
                return [(start, 1) for start in chunk_starts(sequence.frames, length)]
            return [(0, 1)] if sequence.frames >= length else []
        stride = length if sequence.meta["action"] in SPARSE_ACTIONS else DENSE_STRIDE
        return sorted((end - length + 1, 1) for end in range(sequence.frames - 1, length - 2, -stride))


def grey(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB [T, H, W, 3] -> uint8 luma [T, H, W, 1], rounded."""
    return np.rint(frames @ np.asarray(GREY_WEIGHTS)).astype(np.uint8)[..., None]
