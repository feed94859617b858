"""moving-digits: Moving-MNIST-style clips, generated from a seed, with font-rendered or real MNIST digits."""
from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from vpbench import COUNT, Protocol, Split, UserError, register_dataset, setting

from ._synthetic import SyntheticConfig, SyntheticVideoDataset, bounce, clip_rng

DIGIT_SIZE = 28
# Srivastava et al. move a digit 10% of its free span per frame: 3.6 px on a 64x64 canvas.
STEP = 0.1
# Font-rendered glyph variants per split. Each split renders its own from its own seed stream, so
# the pools are disjoint; train gets the most variety, like MNIST's 60k train / 10k test.
GLYPH_POOL: dict[str, int] = {"train": 1000, "val": 200, "test": 300}
GLYPH_STREAM = 1  # sub-stream tag of glyph renders, apart from the clip streams
_RENDER = 64  # side of the canvas a glyph is drawn on before it is shrunk to DIGIT_SIZE
_MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
IDX3_MAGIC = 2051


@register_dataset("moving-digits")
class MovingDigits(SyntheticVideoDataset):
    """Moving-MNIST-like: digits bouncing in a 64x64 grey frame, 10 -> 10 frames, no download."""

    @dataclass
    class Config(SyntheticConfig):
        train_size: int = 10000
        val_size: int = 500
        test_size: int = 1000
        digits: int = setting(2, "digits per clip", COUNT)
        mnist_path: str | None = setting(None, "a directory of MNIST idx files or a Keras mnist.npz; default: "
                                               "digits rendered from fonts")

    protocols: ClassVar[dict[str, Protocol]] = {
        "10to10": Protocol("10to10", 10, 10, 64, 64, 1),
        # The long-term protocol of CW-VAE / HTSRM's evaluation: 36 frames filtered, 300 predicted.
        "36to300": Protocol("36to300", 36, 300, 64, 64, 1),
    }
    preset_keys = ("moving-digits",)

    def __init__(self, config: Config, protocol: str | None = None) -> None:
        super().__init__(config, protocol)
        if self.protocol.channels != 1:
            raise UserError("moving-digits clips have 1 channel")
        # Resolved once: clips look their bank up by it, and the cache key must not depend on the cwd.
        self.mnist_path = None if config.mnist_path is None else str(Path(config.mnist_path).expanduser().resolve())

    def bank(self, split: Split) -> np.ndarray:
        """The digit images [N, h, w] (uint8) that clips of `split` draw from."""
        bank = glyph_bank(self.config.seed, split) if self.mnist_path is None else mnist_bank(self.mnist_path, split)
        height, width = bank.shape[1:]
        if height > self.protocol.height or width > self.protocol.width:
            raise UserError(f"moving-digits: {height}x{width} digits do not fit a "
                            f"{self.protocol.height}x{self.protocol.width} frame")
        return bank

    def prepare(self, split: Split) -> None:
        self.bank(split)

    def clip(self, split: Split, index: int) -> torch.Tensor:
        bank = self.bank(split)
        rng = clip_rng(self.config.seed, split, index)
        count, steps = self.config.digits, self.spec.length
        picks = rng.integers(len(bank), size=count)
        start = rng.random((count, 2))
        theta = rng.uniform(0.0, 2 * np.pi, count)
        velocity = STEP * np.stack([np.sin(theta), np.cos(theta)], axis=-1)
        position = bounce(start, velocity, steps, 0.0, 1.0)  # [T, digits, (y, x)] in the free span
        height, width = bank.shape[1:]
        top = (position[..., 0] * (self.protocol.height - height)).astype(np.intp)
        left = (position[..., 1] * (self.protocol.width - width)).astype(np.intp)
        frames = np.zeros((steps, self.protocol.height, self.protocol.width), np.uint8)
        time = np.arange(steps)[:, None, None]
        for k in range(count):  # digits may overlap each other, so each one is merged in turn
            rows = (top[:, k, None] + np.arange(height))[:, :, None]
            cols = (left[:, k, None] + np.arange(width))[:, None, :]
            frames[time, rows, cols] = np.maximum(frames[time, rows, cols], bank[picks[k]])
        # Scaled in numpy: a tensor this small costs more in torch's thread dispatch than in arithmetic.
        return torch.from_numpy(np.multiply(frames[:, None], np.float32(1 / 255), dtype=np.float32))


@lru_cache(maxsize=8)
def glyph_bank(seed: int, split: Split) -> np.ndarray:
    """GLYPH_POOL[split] font-rendered digits [N, 28, 28] (uint8), classes 0-9 in turn."""
    return np.stack([render_glyph(j % 10, clip_rng(seed, split, j, GLYPH_STREAM))
                     for j in range(GLYPH_POOL[split])])


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=40)


def render_glyph(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One digit [28, 28] (uint8) with a random stroke, slant, rotation, size and blur, MNIST-framed."""
    image = Image.new("L", (_RENDER, _RENDER))
    ImageDraw.Draw(image).text((_RENDER / 2, _RENDER / 2), str(digit), fill=255, font=_font(), anchor="mm")
    stroke = int(rng.choice([1, 3, 3, 5]))  # wider filters fill the loops of 0, 6, 8, 9
    if stroke > 1:
        image = image.filter(ImageFilter.MaxFilter(stroke))
    angle = np.deg2rad(rng.uniform(-15.0, 15.0))
    shear, squeeze = rng.uniform(-0.3, 0.3), rng.uniform(0.75, 1.15)
    forward = (np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
               @ np.array([[squeeze, shear], [0.0, 1.0]]))
    # PIL's affine maps output pixels to input pixels, about the canvas centre here.
    inverse = np.linalg.inv(forward)
    centre = np.array([_RENDER / 2, _RENDER / 2])
    offset = centre - inverse @ centre
    image = image.transform(image.size, Image.Transform.AFFINE,
                            (*inverse[0], offset[0], *inverse[1], offset[1]), Image.Resampling.BILINEAR)
    box = image.getbbox() or (0, 0, _RENDER, _RENDER)
    # MNIST fits each digit in a 20x20 box, then centres its mass in 28x28; heights vary a little.
    scale = min(rng.uniform(15.0, 20.0) / (box[3] - box[1]), 20.0 / (box[2] - box[0]))
    size = (max(1, round((box[2] - box[0]) * scale)), max(1, round((box[3] - box[1]) * scale)))
    glyph = image.crop(box).resize(size, Image.Resampling.LANCZOS)
    glyph = glyph.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.7)))
    pixels = np.asarray(glyph, dtype=np.float32)
    out = np.zeros((DIGIT_SIZE, DIGIT_SIZE), np.float32)
    mass = max(pixels.sum(), 1e-6)
    centre_y = (pixels.sum(axis=1) @ np.arange(size[1])) / mass
    centre_x = (pixels.sum(axis=0) @ np.arange(size[0])) / mass
    top = int(np.clip(round(DIGIT_SIZE / 2 - centre_y), 0, DIGIT_SIZE - size[1]))
    left = int(np.clip(round(DIGIT_SIZE / 2 - centre_x), 0, DIGIT_SIZE - size[0]))
    out[top:top + size[1], left:left + size[0]] = pixels
    return np.clip(out * (255.0 / max(out.max(), 1.0)), 0, 255).astype(np.uint8)


@lru_cache(maxsize=6)
def mnist_bank(path: str, split: Split) -> np.ndarray:
    """Real MNIST digits of `split`: train and val split the train file (val = last 10%), test is t10k."""
    images = load_mnist(Path(path), "test" if split == "test" else "train")
    if split == "test":
        return images
    if len(images) < 2:
        raise UserError(f"MNIST at {path}: the train images must be at least 2 to give train and val digits")
    tail = max(1, len(images) // 10)
    return images[:-tail] if split == "train" else images[-tail:]


def load_mnist(path: Path, part: str) -> np.ndarray:
    """The `part` ("train" or "test") images [N, h, w] (uint8) of an idx directory or a Keras mnist.npz."""
    if path.is_dir():
        return read_idx_images(_idx_file(path, _MNIST_FILES[part]))
    if path.is_file() and path.suffix == ".npz":
        return _read_npz(path, f"x_{part}")
    if not path.exists():
        raise UserError(f"mnist_path {path} does not exist")
    raise UserError(f"mnist_path {path} is neither a directory of MNIST idx files nor an .npz file")


def _idx_file(folder: Path, name: str) -> Path:
    # Mirrors spell the files with a dot (train-images.idx3-ubyte) as often as with a dash.
    for candidate in (name, name.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            if (folder / (candidate + suffix)).is_file():
                return folder / (candidate + suffix)
    raise UserError(f"MNIST file {folder / name} not found (nor {name}.gz) in mnist_path {folder}")


def read_idx_images(file: Path) -> np.ndarray:
    """Parse an idx3 image file (optionally gzipped): magic 2051, then big-endian count, rows, cols."""
    try:
        with (gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")) as stream:
            raw = stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"MNIST file {file}: cannot be read ({exc})") from None
    if len(raw) < 16:
        raise UserError(f"MNIST file {file} is truncated: {len(raw)} bytes, less than the 16-byte idx header")
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX3_MAGIC:
        hint = " (2049 is an idx label file)" if magic == 2049 else ""
        raise UserError(f"MNIST file {file} has magic number {magic}, not {IDX3_MAGIC} of an idx3 image file{hint}")
    needed = count * rows * cols
    if len(raw) - 16 < needed:
        raise UserError(f"MNIST file {file} is truncated: its header promises {count} images of {rows}x{cols} "
                        f"({needed} bytes), it holds {len(raw) - 16}")
    if needed == 0:
        raise UserError(f"MNIST file {file} holds no images")
    return np.frombuffer(raw, np.uint8, needed, 16).reshape(count, rows, cols)


def _read_npz(file: Path, key: str) -> np.ndarray:
    try:
        with np.load(file) as archive:
            if key not in archive.files:
                raise UserError(f"MNIST file {file} has no array {key!r} (it has {', '.join(archive.files) or 'none'})")
            images = archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"MNIST file {file}: cannot be read as .npz ({exc})") from None
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or len(images) == 0:
        raise UserError(f"MNIST file {file}: {key} has shape {images.shape}, expected [N, height, width]")
    if images.dtype.kind == "f" and images.max() <= 1.0:  # some exports store [0, 1] floats
        images = images * 255.0
    return np.clip(images, 0, 255).astype(np.uint8)
