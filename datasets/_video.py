"""Decoding .avi / .mp4 videos with PyAV (FFmpeg), with errors that name the file and what is wrong."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ._files import BadFile

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".vob", ".webm")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _av():  # imported on use: `bench list` and the procedural datasets never pay for FFmpeg
    import av
    import av.logging

    # FFmpeg would print its own lines for every broken packet; the errors below say it once.
    av.logging.set_level(None)
    return av


def iter_frames(path: Path, keep: Callable[[int], bool] | None = None,
                pixels: str = "rgb24") -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) for the frames of the video at `path` in display order: all of them, or those
    whose index `keep` accepts (the others are decoded but not converted). Frames are RGB uint8
    [H, W, 3], or what `pixels` names in FFmpeg's terms ("yuv420p": the planes stacked, [H * 3/2, W]).

    Raises BadFile when the file is missing, cannot be opened, stops decoding part way, or holds fewer
    frames than its header promises (a truncated download).
    """
    av = _av()
    if not path.is_file():
        raise BadFile(path, "missing")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        cut = truncation(path)
        if cut:
            raise BadFile(path, f"truncated: {cut}; FFmpeg cannot open it ({_reason(exc)})") from None
        raise BadFile(path, f"undecodable: cannot be opened as a video ({_reason(exc)})") from None
    decoded = 0
    with container:
        if not container.streams.video:
            raise BadFile(path, "undecodable: holds no video stream")
        stream = container.streams.video[0]
        promised = stream.frames  # from the container header; 0 where the format does not say
        try:
            for frame in container.decode(stream):
                if keep is None or keep(decoded):
                    yield decoded, frame.to_ndarray(format=pixels)
                decoded += 1
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            of = f" of {promised}" if promised else ""
            cut = truncation(path)
            what = f"truncated: {cut}" if cut else "corrupt"
            raise BadFile(path, f"{what}; decoding failed after {decoded}{of} frames ({_reason(exc)})") from None
    if decoded == 0:
        raise BadFile(path, "undecodable: no frame could be decoded")
    if promised and decoded < promised:
        raise BadFile(path, f"truncated: its header promises {promised} frames, {decoded} could be decoded")


def read_video(path: Path) -> np.ndarray:
    """All frames of a (short) video: uint8 [T, H, W, 3]."""
    frames = [frame for _, frame in iter_frames(path)]
    sizes = {frame.shape for frame in frames}
    if len(sizes) > 1:
        raise BadFile(path, f"wrong resolution: frames of several sizes {sorted(sizes)}")
    return np.stack(frames)


def truncation(path: Path) -> str | None:
    """Why the container's own size fields say the file is cut short, if they do: the RIFF size of an
    .avi, or a top-level ISO-BMFF box (.mp4, .mov) reaching past the end of the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if head[:4] == b"RIFF" and len(head) >= 8:
            promised = int.from_bytes(head[4:8], "little") + 8
            return f"its RIFF header says {promised} bytes, the file has {size}" if promised > size else None
        if head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return None
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            box = fh.read(16)
            length, kind = int.from_bytes(box[:4], "big"), box[4:8].decode("latin-1")
            if length == 1 and len(box) == 16:
                length = int.from_bytes(box[8:16], "big")
            elif length == 0:  # runs to the end of the file
                return None
            if length < 8:
                return f"box {kind!r} at byte {offset} has an impossible size {length}"
            if offset + length > size:
                return f"its {kind!r} box at byte {offset} needs {length} bytes, the file ends {size - offset} bytes on"
            offset += length
        return None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(":")[0].strip() or type(exc).__name__
