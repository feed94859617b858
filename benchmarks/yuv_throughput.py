"""SJTU4K loader throughput: raw 3840x2160 YUV 4:2:0 files -> RGB clips, frames per second.

Writes a few synthetic 4K .yuv sequences in the SJTU naming (`<Name>_3840x2160_8bit.yuv`), prepares them with
`bench data prepare`'s code, then reads every clip of the test split the way training and evaluation do
(memmap -> torch -> BT.709 conversion to RGB floats in [0, 1]) and prints the frames per second.

    python benchmarks/yuv_throughput.py [--sequences 3] [--frames 16] [--threads 1] [--keep DIR]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vpbench.cpu import keep_freed_memory_for_reuse
from vpbench.datasets._frames import yuv_frame_elements
from vpbench.registry import DATASETS

HEIGHT, WIDTH = 2160, 3840


def write_sequences(source: Path, sequences: int, frames: int) -> None:
    source.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    # Noise planes at legal limited-range values: the converter does the same work whatever the content.
    frame = rng.integers(16, 236, yuv_frame_elements(HEIGHT, WIDTH), dtype=np.uint8).tobytes()
    for index in range(sequences):
        with open(source / f"Sequence{index}_{WIDTH}x{HEIGHT}_8bit.yuv", "wb") as fh:
            for _ in range(frames):
                fh.write(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args()
    keep_freed_memory_for_reuse()
    torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="vpbench-yuv-"))
    try:
        write_sequences(work / "source", args.sequences, args.frames)
        DATASETS.get("sjtu4k").prepare(work / "source", work / "root")
        dataset = DATASETS.get("sjtu4k").create(root=str(work / "root"), test_sequences=("Sequence0",))
        test = dataset.split("test")
        frames = 0
        tic = time.perf_counter()
        for index in range(len(test)):
            clip = test[index]
            frames += clip.shape[0]
        seconds = time.perf_counter() - tic
        print(f"sjtu4k {WIDTH}x{HEIGHT} YUV 4:2:0 -> RGB float clips [{clip.shape[0]}, {tuple(clip.shape[1:])}], "
              f"{len(test)} test clips, {frames} frames in {seconds:.2f} s: {frames / seconds:.2f} frames/s "
              f"({args.threads} thread{'s' if args.threads != 1 else ''})")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
