"""The user's own footage for `bench predict`: reading a video (anything PyAV decodes) or a folder of frames,
and writing what it predicted: PNG frames and an mp4 of context | prediction | ground truth side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import UserError

PANEL_GAP = 2  # black pixels between the mp4's panels, so that three similar frames read as three
MP4_FPS = 10


def read_footage(source: Path) -> np.ndarray:
    """Every frame of a video file or of a folder of images (in natural order), as uint8 [T, H, W, 3]."""
    from vpbench.datasets._frames import is_image, natural_key, read_image
    from vpbench.datasets._video import read_video

    if not source.exists():
        raise UserError(f"no such file or folder: {source}")
    if source.is_file():
        return read_video(source)  # one line (BadFile) when it is missing, undecodable or truncated
    images = sorted((p for p in source.iterdir() if is_image(p)), key=lambda p: natural_key(p.name))
    if not images:
        raise UserError(f"{source}: a folder without frames (.png, .jpg, .jpeg, .bmp)")
    frames = [read_image(path, 3) for path in images]
    sizes = {frame.shape for frame in frames}
    if len(sizes) > 1:
        raise UserError(f"{source}: frames of several sizes {sorted(sizes)}")
    return np.stack(frames)


def to_model_frames(frames: np.ndarray, channels: int, size: tuple[int, int] | None) -> Tensor:
    """uint8 [T, H, W, 3] -> float [T, channels, h, w] in [0, 1]: greyscale by ITU-R 601 luma (PIL's "L"), resized
    to `size` (antialiased) unless it is None."""
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        clip = (clip * weights).sum(dim=1, keepdim=True)
    if size is not None and tuple(clip.shape[-2:]) != tuple(size):
        clip = F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)
    return clip.clamp(0, 1)


def to_uint8(frame: Tensor) -> np.ndarray:
    """float [C, H, W] in [0, 1] -> uint8 [H, W, 3] (a greyscale frame repeated)."""
    image = (frame.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return image.expand(3, -1, -1).permute(1, 2, 0).numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def write_png(path: Path, frame: Tensor) -> None:
    from vpbench.datasets._frames import write_image

    image = (frame.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    write_image(path, image)


def side_by_side(panels: list[Tensor | None], like: Tensor) -> np.ndarray:
    """One mp4 frame: the panels left to right (None: black), padded to even sides as yuv420p needs."""
    blank = torch.zeros_like(like)
    images = [to_uint8(blank if panel is None else panel) for panel in panels]
    height, width = images[0].shape[:2]
    gap = np.zeros((height, PANEL_GAP, 3), np.uint8)
    row = np.concatenate([part for image in images for part in (image, gap)][:-1], axis=1)
    return np.pad(row, ((0, height % 2), (0, row.shape[1] % 2), (0, 0)))


def write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 where this FFmpeg build has it, else MPEG-4 part 2; every frame is written (no frame dropping)."""
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=MP4_FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
