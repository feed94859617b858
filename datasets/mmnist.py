"""mmnist: Moving MNIST as the papers use it: the standard test file, generated training clips, and
the CW-VAE long-sequence videos.

`bench data prepare mmnist --source DIR`, DIR holding any of:
- `mnist_test_seq.npy`: Srivastava et al.'s 10,000 test sequences, uint8 [20, 10000, 64, 64], time first;
- the MNIST idx files `train-images-idx3-ubyte` / `t10k-images-idx3-ubyte` (or .gz) -> `<root>/mnist/`;
- the CW-VAE release moving_mnist_2digit: `train-seq100/*.mp4`, `test-seq1000/*.mp4` -> `<split>/<name>.npy`.

Protocols:
- "10to10" (Srivastava et al., OpenSTL): test = all sequences of mnist_test_seq.npy, frames 1-10 given,
  11-20 predicted. Training clips are generated from the first 90% of the MNIST training digits, as
  moving-digits does (2 digits, 0.1 of the free span per frame); OpenSTL generates its training clips
  on the fly too, hence the large `train_size`. Validation: generated from the last 10% of the digits.
- "cwvae" (36 -> 964: CW-VAE's configs/mmnist.yml, eval_seq_len 1000) and "htsrm" (36 -> 300, 336 frames,
  as HTSRM's loader hard-codes them [unverified here: its code is not readable from this machine; its
  README runs `--eval-seq-len 300 --open-loop-ctx 36`]): training on the 100-frame train-seq100 videos;
  test = the test-seq1000 videos cut into non-overlapping clips of the protocol's length, as CW-VAE's
  data_loader.py cuts them (floor(1000 / length) per video: 1 for cwvae, 2 for htsrm). The training
  videos are too short to hold validation clips of that length, so validation clips are generated as
  for 10to10, at the protocol's length (this needs the idx files).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from vpbench import COUNT, NON_NEGATIVE, SEED, DatasetConfig, Protocol, Split, UserError, register_dataset, setting

from ._files import BadFile, load_npy, place
from ._manifest import Manifest, Problem
from ._stored import Plan, SplitFolderVideos, checked_index, fit
from .moving_digits import MovingDigits

TEST_FILE = "mnist_test_seq.npy"
MNIST_FOLDER = "mnist"
IDX_NAMES = ("train-images-idx3-ubyte", "train-images.idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")


@dataclass
class MMNISTConfig(DatasetConfig):
    root: str | None = setting(None, "the prepared data; default $VPBENCH_DATA/mmnist")
    train_length: int | None = setting(None, "frames per training clip of the long protocols (default 100)", COUNT)
    seed: int = setting(0, "seed of the generated training and validation clips", SEED)
    train_size: int = setting(1_000_000, "generated training clips", COUNT)
    val_size: int = setting(1000, "generated validation clips (0: no validation; the last checkpoint is tested)",
                            NON_NEGATIVE)


@register_dataset("mmnist")
class MovingMNIST(SplitFolderVideos):
    """Moving MNIST: the standard 10 -> 10 test file, and CW-VAE's 1000-frame sequences."""

    Config = MMNISTConfig
    protocols: ClassVar[dict[str, Protocol]] = {
        "10to10": Protocol("10to10", 10, 10, 64, 64, 1),
        "cwvae": Protocol("cwvae", 36, 964, 64, 64, 1),
        "htsrm": Protocol("htsrm", 36, 300, 64, 64, 1),
    }
    preset_keys = ("mmnist",)
    source_help = "mnist_test_seq.npy, the MNIST idx files and/or CW-VAE's train-seq100 / test-seq1000 videos"
    train_lengths = {"cwvae": 100, "htsrm": 100}

    @classmethod
    def collect(cls, files: list[Path], source: Path, root: Path, manifest: Manifest) -> None:
        for path in files:
            name = path.name.removesuffix(".gz")
            if path.name == TEST_FILE:
                try:
                    time_major_shape(path)
                except BadFile as exc:
                    manifest.problems.append(Problem(TEST_FILE, exc.path, exc.problem, {"split": "test"}))
                    continue
                place(path, root / TEST_FILE)
                manifest.add_file(root, TEST_FILE)
            elif name in IDX_NAMES:
                place(path, root / MNIST_FOLDER / path.name)
                manifest.add_file(root, f"{MNIST_FOLDER}/{path.name}")
        super().collect(files, source, root, manifest)

    @property
    def long(self) -> bool:
        return self.protocol.name != "10to10"

    def generated(self) -> MovingDigits:
        """Clips from the MNIST digits at the native 64x64; `fit` scales them as it does the files."""
        return MovingDigits.create(None, context=self.spec.context, future=self.spec.future, seed=self.config.seed,
                                   train_size=self.config.train_size, val_size=self.config.val_size,
                                   test_size=1,  # never read: the test clips are the standard file's
                                   mnist_path=str(self.root / MNIST_FOLDER))

    def split(self, name: Split) -> Dataset:
        if name == "val" or (name == "train" and not self.long):
            return Fitted(self.generated().split(name), self.protocol)
        if name == "test" and not self.long:
            return TimeMajorClips(self.root / TEST_FILE, self.spec.length, self.protocol)
        return super().split(name)

    def make_plan(self) -> Plan:
        return super().make_plan() if self.long else Plan({})  # no val_fraction: validation is generated


def time_major_shape(path: Path) -> tuple[int, ...]:
    """Shape of a time-first uint8 [T, N, H, W] array such as mnist_test_seq.npy."""
    array = load_npy(path, "; prepare mmnist with it in the source")
    if array.ndim != 4 or array.dtype != np.uint8:
        raise BadFile(path, f"holds {array.dtype}{list(array.shape)}, expected uint8 [T, N, H, W] (time first)")
    return array.shape


class TimeMajorClips(Dataset):
    """Sequence i of a time-first array: frames [:length, i], float [T, 1, H, W] in [0, 1]."""

    def __init__(self, path: Path, length: int, protocol: Protocol) -> None:
        frames, self.size = time_major_shape(path)[:2]
        if frames < length:
            raise UserError(f"{path} holds {frames} frames per sequence; protocol {protocol.name} needs {length}")
        self.path, self.length, self.protocol = path, length, protocol
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        index = checked_index(index, self.size)
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        frames = torch.from_numpy(np.ascontiguousarray(self._array[:self.length, index]))
        return fit(frames[:, None].float().div_(255.0), self.protocol)


class Fitted(Dataset):
    """A split whose clips are brought to the protocol's channels and size."""

    def __init__(self, clips: Dataset, protocol: Protocol) -> None:
        self.clips, self.protocol = clips, protocol

    def __len__(self) -> int:
        return len(self.clips)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return fit(self.clips[index], self.protocol)

