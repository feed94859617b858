"""gqn-mazes: GQN mazes (Eslami et al. 2018) as videos, in the layout of the CW-VAE release.

The release (gqn_mazes.zip) holds `train/*.mp4` and `test/*.mp4`, 300 frames of 64x64 RGB each;
prepared as `<split>/<name>.npy`. Protocol "cwvae" (CW-VAE / HTSRM): 36 context frames, 264 predicted
(eval_seq_len 300), one test clip per video; training on 100-frame chunks, 3 per video
(`train_length`). Validation: `val_fraction` of the training videos, whole, scored as test.
"""
from __future__ import annotations

from typing import ClassVar

from vpbench import Protocol, register_dataset

from ._stored import SplitFolderVideos


@register_dataset("gqn-mazes")
class GQNMazes(SplitFolderVideos):
    """GQN mazes, 300-frame 64x64 videos of the CW-VAE release: 36 -> 264 frames."""

    protocols: ClassVar[dict[str, Protocol]] = {"cwvae": Protocol("cwvae", 36, 264, 64, 64, 3)}
    preset_keys = ("gqn-mazes", "mazes")
    source_help = "the CW-VAE gqn_mazes release: train/*.mp4 and test/*.mp4 (or gqn_mazes.zip)"
    train_lengths = {"cwvae": 100}
