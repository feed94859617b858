"""Tiny files in the real datasets' formats, written by the tests (nothing can be downloaded)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def moving_frames(count: int, height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """uint8 [T, H, W, channels]: a bright square drifting over a smooth gradient, different per seed,
    smooth enough that lossy codecs keep it close."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (40 + 60 * xx / max(1, width - 1) + 40 * yy / max(1, height - 1))[..., None]
    tint = rng.uniform(0.6, 1.0, channels)
    frames = np.empty((count, height, width, channels), np.uint8)
    side = max(2, min(height, width) // 4)
    y0, x0 = rng.integers(0, height - side), rng.integers(0, width - side)
    vy, vx = rng.choice([-1, 1], 2)
    for t in range(count):
        frame = base * tint
        y = int(abs((y0 + vy * t) % (2 * (height - side)) - (height - side)))
        x = int(abs((x0 + vx * t) % (2 * (width - side)) - (width - side)))
        frame[y:y + side, x:x + side] = 230
        frames[t] = np.clip(frame, 0, 255)
    return frames


def write_video(path: Path, frames: np.ndarray, codec: str = "mpeg4", pix_fmt: str = "yuv420p",
                fps: int = 25, **options: str) -> Path:
    """Encode RGB uint8 [T, H, W, 3] (or grey [T, H, W, 1]) with PyAV."""
    import av

    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if options:
            stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncate(path: Path, fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def kth_tree(folder: Path, persons: dict[int, int], actions: tuple[str, ...] = ("boxing", "running"),
             size: tuple[int, int] = (30, 40), lossless: bool = False) -> dict[str, np.ndarray]:
    """KTH-named .avi files in action folders: {person: frames per video}. Returns the frames written."""
    written = {}
    for person, count in persons.items():
        for a, action in enumerate(actions):
            key = f"person{person:02d}_{action}_d1"
            frames = moving_frames(count, *size, seed=person * 10 + a, channels=1)
            codec = dict(codec="ffv1", pix_fmt="bgr0") if lossless else {}
            write_video(folder / action / f"{key}_uncomp.avi", frames, **codec)
            written[key] = frames
    return written
