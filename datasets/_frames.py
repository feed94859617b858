"""Frames stored as image files (PNG / JPEG through Pillow) and raw YUV 4:2:0 files (numpy memmap),
with the YUV -> RGB conversion written once in torch so that it runs on the CPU or on the GPU alike.

YUV -> RGB: the matrix (BT.709 by default: the colour space of UHD / SJTU 4K material; BT.601 is what
FFmpeg assumes for untagged YUV, BT.2020 for wide-gamut UHD) and the range (limited "TV" range by
default: Y in [16, 235], Cb/Cr in [16, 240] at 8 bits, what raw camera and codec YUV uses) are
options. Chroma is upsampled by pixel replication over each 2x2 block, as OpenCV's I420 conversion does.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ._files import BadFile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
Matrix = Literal["bt709", "bt601", "bt2020"]
# (Kr, Kb) luma weights of each standard; Kg = 1 - Kr - Kb.
LUMA_WEIGHTS: dict[str, tuple[float, float]] = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114),
                                                "bt2020": (0.2627, 0.0593)}
_NUMBER = re.compile(r"(\d+)")
_YUV_BAND_ROWS = 64  # luma rows per band on the CPU: temporaries of ~1 MB at 4K


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def natural_key(name: str) -> tuple:
    """Sort key that puts frame 10 after frame 9."""
    return tuple(int(part) if part.isdigit() else part for part in _NUMBER.split(name))


def image_size(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return height, width, 1 if image.mode in ("L", "I;16", "I", "1") else 3
    except FileNotFoundError:
        raise BadFile(path, "missing frame") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BadFile(path, f"undecodable image ({exc})") from None


def read_image(path: Path, channels: int) -> np.ndarray:
    """An image as uint8 [H, W, channels] (1: greyscale, 3: RGB)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(image)
    except FileNotFoundError:
        raise BadFile(path, "missing frame") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadFile(path, f"undecodable or truncated image ({exc})") from None
    return array[..., None] if array.ndim == 2 else array


def write_image(path: Path, frame: np.ndarray, quality: int = 95) -> None:
    """Write uint8 [H, W, C] as PNG or JPEG (by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
    options = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else {"compress_level": 1}
    image.save(path, **options)


# -- raw YUV 4:2:0 -----------------------------------------------------------------------------------

def yuv_frame_elements(height: int, width: int) -> int:
    return height * width + 2 * (height // 2) * (width // 2)


def yuv_frame_count(path: Path, height: int, width: int, bits: int) -> int:
    """Whole frames in a raw planar 4:2:0 file; a partial last frame means the file is truncated."""
    if height % 2 or width % 2:
        raise BadFile(path, f"4:2:0 needs an even frame size, got {width}x{height}")
    if not path.is_file():
        raise BadFile(path, "missing")
    frame_bytes = yuv_frame_elements(height, width) * (1 if bits == 8 else 2)
    size = path.stat().st_size
    if size == 0 or size % frame_bytes:
        raise BadFile(path, f"truncated or wrong resolution: {size} bytes is not a whole number of "
                            f"{width}x{height} {bits}-bit 4:2:0 frames ({frame_bytes} bytes each; "
                            f"{size // frame_bytes} whole, then {size % frame_bytes} bytes)")
    return size // frame_bytes


def yuv_planes(path: Path, height: int, width: int, bits: int, frames: int,
               indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y [n, H, W], U and V [n, H/2, W/2] of frames `indices`, read through a memmap (only those
    frames' pages are touched)."""
    elements = yuv_frame_elements(height, width)
    dtype = np.dtype(np.uint8 if bits == 8 else "<u2")
    try:
        data = np.memmap(path, dtype=dtype, mode="r", shape=(frames, elements))
    except FileNotFoundError:
        raise BadFile(path, "missing") from None
    except ValueError:  # the file is shorter than the manifest says
        raise BadFile(path, f"truncated: fewer than the {frames} frames of {width}x{height} the manifest records; "
                            "run `bench data check`") from None
    chosen = np.asarray(data[indices])
    luma, quarter = height * width, (height // 2) * (width // 2)
    y = chosen[:, :luma].reshape(-1, height, width)
    u = chosen[:, luma:luma + quarter].reshape(-1, height // 2, width // 2)
    v = chosen[:, luma + quarter:].reshape(-1, height // 2, width // 2)
    return y, u, v


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, matrix: Matrix = "bt709",
                  full_range: bool = False, bits: int = 8) -> torch.Tensor:
    """Planar 4:2:0 -> float RGB [n, 3, H, W] in [0, 1], on whatever device the planes are on.

    The chroma terms are computed at chroma resolution, widened to full rows and added to both luma
    rows of each pair with contiguous inner loops. On the CPU this runs in bands of rows so that the
    temporaries stay in cache: 2.5x faster at 4K than whole-frame broadcasting (see the README figure).
    """
    kr, kb = LUMA_WEIGHTS[matrix]
    kg = 1.0 - kr - kb
    scale = float(2 ** (bits - 8))
    luma_offset, luma_span = (0.0, 255.0 * scale) if full_range else (16.0 * scale, 219.0 * scale)
    chroma_span = 255.0 * scale if full_range else 224.0 * scale
    weights = (2 * (1 - kr), -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg, 2 * (1 - kb))
    n, height, width = y.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 needs an even frame size, got {width}x{height}")
    out = torch.empty(n, 3, height, width, device=y.device)
    band = _YUV_BAND_ROWS if y.device.type == "cpu" else height
    for top in range(0, height, band):
        rows = slice(top // 2, (top + band) // 2)
        cb = u[:, rows].float().sub_(128.0 * scale).mul_(1.0 / chroma_span)
        cr = v[:, rows].float().sub_(128.0 * scale).mul_(1.0 / chroma_span)
        chroma = torch.stack([weights[0] * cr, weights[1] * cb + weights[2] * cr, weights[3] * cb], dim=1)
        pairs = chroma.shape[2]
        chroma = chroma.unsqueeze(-1).expand(n, 3, pairs, width // 2, 2).reshape(n, 3, pairs, 1, width)
        luma = y[:, top:top + 2 * pairs].float().sub_(luma_offset).mul_(1.0 / luma_span)
        target = out[:, :, top:top + 2 * pairs].view(n, 3, pairs, 2, width)
        torch.add(luma.view(n, 1, pairs, 2, width), chroma, out=target)
    return out.clamp_(0.0, 1.0)


def rgb_to_yuv420(rgb: np.ndarray, *, matrix: Matrix = "bt709", full_range: bool = False) -> bytes:
    """uint8 RGB [n, H, W, 3] -> raw 8-bit planar 4:2:0 bytes (chroma averaged over 2x2 blocks): the
    forward transform of `yuv420_to_rgb`, for writing YUV files (tests, conversions)."""
    kr, kb = LUMA_WEIGHTS[matrix]
    x = rgb.astype(np.float64) / 255.0
    luma = kr * x[..., 0] + (1 - kr - kb) * x[..., 1] + kb * x[..., 2]
    cb, cr = (x[..., 2] - luma) / (2 * (1 - kb)), (x[..., 0] - luma) / (2 * (1 - kr))
    n, height, width = luma.shape
    cb = cb.reshape(n, height // 2, 2, width // 2, 2).mean(axis=(2, 4))
    cr = cr.reshape(n, height // 2, 2, width // 2, 2).mean(axis=(2, 4))
    if full_range:
        y8, u8, v8 = luma * 255, cb * 255 + 128, cr * 255 + 128
    else:
        y8, u8, v8 = luma * 219 + 16, cb * 224 + 128, cr * 224 + 128
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8).reshape(n, -1) for p in (y8, u8, v8)]
    return np.concatenate(planes, axis=1).tobytes()
