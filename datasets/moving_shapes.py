"""moving-shapes: textured RGB shapes over a panning textured background, at any size up to 4K.

Every length is in units of the frame's short side, so one seed gives the same scene at 256x256 and
at 512x512; higher resolutions only add finer background noise octaves. Generation is vectorised in
float32 numpy: whole frames for the background, each shape's box over all frames at once. numpy
rather than torch: it never waits on a thread pool, which costs more than the arithmetic at 256x256.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, ClassVar

import numpy as np
import torch

from vpbench import Protocol, Split, UserError, register_dataset

from ._synthetic import SyntheticConfig, SyntheticVideoDataset, bounce, clip_rng

MAX_LONG_SIDE, MAX_SHORT_SIDE, MIN_SIDE = 3840, 2160, 32
# The background tile exceeds the frame so that the pan of a default clip never wraps around.
TILE = 1.25
COARSEST_CELL = 0.5  # background noise cell of the first octave, in short sides
FINEST_CELL_PX = 4.0  # octaves stop where cells get this small: finer detail would alias
PERSISTENCE = 0.6  # amplitude ratio of successive octaves
OCTAVE_STREAM = 1  # sub-stream tag: the octave count grows with resolution, the rest must not move
SIDES = (0, 3, 4, 5, 6)  # 0 is a circle, 4 a rectangle, the others regular polygons
TEXTURES = ("stripes", "checker", "rings", "waves")
F32 = np.float32


@dataclass
class Shape:
    """One shape's drawn parameters; lengths are in short sides, speeds per frame."""

    sides: int
    radius: float  # of the circle around the shape: its bounding box is 2 radius wide
    aspect: float  # rectangles: half-height / half-width
    start: np.ndarray  # (y, x)
    velocity: np.ndarray
    angle: float
    spin: float  # radians per frame
    texture: str
    frequency: float  # texture periods across the shape
    colours: np.ndarray  # [2, 3]: the texture blends between them
    waves: np.ndarray  # [3, (direction, phase)] of the plane waves the "waves" texture sums

    @classmethod
    def draw(cls, rng: np.random.Generator, extent: np.ndarray) -> "Shape":
        radius = rng.uniform(0.08, 0.17)
        direction = rng.uniform(0.0, 2 * math.pi)
        return cls(
            sides=int(rng.choice(SIDES)), radius=radius, aspect=rng.uniform(0.35, 1.0),
            start=rng.uniform(radius, extent - radius),
            velocity=rng.uniform(0.02, 0.05) * np.array([math.sin(direction), math.cos(direction)]),
            angle=rng.uniform(0.0, 2 * math.pi), spin=rng.uniform(-0.08, 0.08),
            texture=str(rng.choice(TEXTURES)), frequency=rng.uniform(1.5, 4.0),
            colours=rng.uniform(0.0, 1.0, (2, 3)), waves=rng.uniform(0.0, 2 * math.pi, (3, 2)),
        )


@register_dataset("moving-shapes")
class MovingShapes(SyntheticVideoDataset):
    """Textured RGB shapes bouncing over a panning textured background, 4 -> 4 frames, up to 4K."""

    @dataclass
    class Config(SyntheticConfig):
        train_size: int = 2000
        val_size: int = 100
        test_size: int = 200

    protocols: ClassVar[dict[str, Protocol]] = {
        "4to4": Protocol("4to4", 4, 4, 256, 256, 3),
        "stip-512": Protocol("stip-512", 4, 4, 512, 512, 3),
        "4k": Protocol("4k", 4, 4, 2160, 3840, 3),
    }
    preset_keys = ("moving-shapes",)

    def __init__(self, config: Config, protocol: str | None = None) -> None:
        super().__init__(config, protocol)
        height, width = self.protocol.height, self.protocol.width
        if min(height, width) < MIN_SIDE:
            raise UserError(f"moving-shapes: {height}x{width} is too small; both sides must be >= {MIN_SIDE}")
        if max(height, width) > MAX_LONG_SIDE or min(height, width) > MAX_SHORT_SIDE:
            raise UserError(f"moving-shapes: {height}x{width} is larger than {MAX_SHORT_SIDE}x{MAX_LONG_SIDE} (4K)")
        if self.protocol.channels != 3:
            raise UserError("moving-shapes clips have 3 channels")

    def clip(self, split: Split, index: int) -> torch.Tensor:
        height, width, steps = self.protocol.height, self.protocol.width, self.spec.length
        unit = min(height, width)  # pixels per short side
        extent = np.array([height, width]) / unit
        rng = clip_rng(self.config.seed, split, index)
        base, mix = rng.uniform(0.25, 0.75, 3), rng.normal(0.0, 0.3, (3, 2))
        pan_direction = rng.uniform(0.0, 2 * math.pi)
        pan = rng.uniform(0.01, 0.03) * np.array([math.sin(pan_direction), math.cos(pan_direction)])
        shapes = [Shape.draw(rng, extent) for _ in range(rng.integers(2, 5))]

        # The background is periodic over a tile larger than the frame; only the part the panning
        # frames see is rendered, once, and each frame is a window into it.
        offset = np.round(pan[None] * np.arange(steps)[:, None] * unit).astype(int)  # [T, (y, x)]
        first = offset.min(axis=0)
        period = (math.ceil(TILE * height), math.ceil(TILE * width))
        rows = np.arange(first[0], offset[:, 0].max() + height)
        cols = np.arange(first[1], offset[:, 1].max() + width)
        octave_rng = partial(clip_rng, self.config.seed, split, index, OCTAVE_STREAM)
        seen = background(octave_rng, base, mix, period, unit, rows, cols)
        out = np.empty((steps, 3, height, width), F32)
        for t, (top, left) in enumerate(offset - first):
            out[t] = seen[:, top:top + height, left:left + width]
        for shape in shapes:
            centre = bounce(shape.start, shape.velocity, steps, shape.radius, extent - shape.radius)
            angle = shape.angle + shape.spin * np.arange(steps)
            draw_shape(out, shape, centre * unit, angle, shape.radius * unit)
        return torch.from_numpy(out)


def background(octave_rng: Callable[[int], np.random.Generator], base: np.ndarray, mix: np.ndarray,
               period: tuple[int, int], unit: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixels `rows` x `cols` [3, rows, cols] in [0, 1] of a colour value-noise texture that tiles
    with `period` pixels, drawn at `unit` pixels per short side.

    Octave k has 2**k times the cells of the first; each is added after bilinearly doubling the sum
    so far, which reproduces the coarse octaves exactly, so more octaves only add finer detail.
    """
    cells = np.maximum(1, np.round(np.array(period) / (unit * COARSEST_CELL))).astype(int)
    octaves = max(1, int(math.log2(period[0] / (cells[0] * FINEST_CELL_PX))) + 1)
    field = np.zeros((3, *cells), F32)
    for k in range(octaves):
        if k:
            field = sample_wrapped(field, np.arange(2 * field.shape[1]) / 2, np.arange(2 * field.shape[2]) / 2)
        grid = octave_rng(k).uniform(-1.0, 1.0, (2, field.shape[1] * field.shape[2]))
        field += (PERSISTENCE**k * mix @ grid).astype(F32).reshape(field.shape)
    field += base.astype(F32)[:, None, None]  # sampling is linear: add it while the field is small
    texture = sample_wrapped(field, rows * (field.shape[1] / period[0]), cols * (field.shape[2] / period[1]))
    return np.clip(texture, 0.0, 1.0, out=texture)


def sample_wrapped(field: np.ndarray, ys: np.ndarray, xs: np.ndarray, band: int = 64) -> np.ndarray:
    """Bilinear samples [C, len(ys), len(xs)] of a periodic [C, h, w] field at cell coordinates ys x xs."""
    (y0, y1, wy), (x0, x1, wx) = _neighbours(ys, field.shape[1]), _neighbours(xs, field.shape[2])
    # Separable: widen the few coarse rows first, then fill the output a band of rows at a time,
    # gathering whole rows, so the output is the only large allocation.
    # np.take keeps the result C-ordered; fancy indexing of the last axis would not, and the row
    # gathers below would then stride through memory.
    wide = _lerp(np.take(field, x0, axis=2), np.take(field, x1, axis=2), wx)
    out = np.empty((field.shape[0], len(ys), len(xs)), F32)
    for start in range(0, len(ys), band):
        rows = slice(start, start + band)
        _lerp(np.take(wide, y0[rows], axis=1), np.take(wide, y1[rows], axis=1), wy[rows, None], out=out[:, rows])
    return out


def _neighbours(position: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lower = np.floor(position)
    weight = (position - lower).astype(F32)
    lower = lower.astype(np.intp) % cells
    return lower, (lower + 1) % cells, weight


def _lerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """start + weight * (end - start), reusing `end` (a temporary) for the difference."""
    end -= start
    end *= weight
    return np.add(start, end, out=out)


def draw_shape(out: np.ndarray, shape: Shape, centre: np.ndarray, angle: np.ndarray, radius: float) -> None:
    """Blend `shape` into every frame of `out` [T, 3, H, W]; `centre` [T, 2] and `radius` in pixels."""
    half = math.ceil(radius) + 1  # one more pixel for the antialiased edge
    origin = np.floor(centre).astype(int) - half  # top-left pixel of each frame's box
    pixels = np.arange(2 * half + 1) + 0.5
    # Offsets from the centre in radii: [T, box, 1] down, [T, 1, box] across.
    dy = ((origin[:, 0, None] - centre[:, 0, None] + pixels) / radius).astype(F32)[:, :, None]
    dx = ((origin[:, 1, None] - centre[:, 1, None] + pixels) / radius).astype(F32)[:, None, :]
    cos, sin = np.cos(angle).astype(F32)[:, None, None], np.sin(angle).astype(F32)[:, None, None]
    # The shape's own axes, so that it and its texture turn together.
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    alpha = np.clip(0.5 - signed_distance(shape, u, v) * F32(radius), 0.0, 1.0)
    weight = texture(shape, u, v)
    low, high = shape.colours.astype(F32)[:, :, None, None]
    height, width = out.shape[-2:]
    for t, (top, left) in enumerate(origin):
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + 2 * half + 1, height), min(left + 2 * half + 1, width)
        box = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        region = out[t, :, y0:y1, x0:x1]
        colour = low + weight[t][box] * (high - low)
        colour -= region
        colour *= alpha[t][box]
        region += colour


def signed_distance(shape: Shape, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Distance from the shape's edge in radii, negative inside."""
    if shape.sides == 0:
        return np.hypot(u, v) - F32(1.0)
    if shape.sides == 4:
        half_width = F32(1.0 / math.sqrt(1.0 + shape.aspect**2))
        return np.maximum(np.abs(u) - half_width, np.abs(v) - half_width * F32(shape.aspect))
    # A regular polygon is symmetric per sector: fold the angle into one and measure to its edge.
    sector = F32(2 * math.pi / shape.sides)
    folded = np.mod(np.arctan2(v, u), sector) - sector / 2
    return np.hypot(u, v) * np.cos(folded) - F32(math.cos(math.pi / shape.sides))


def texture(shape: Shape, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The texture's blend weight in [0, 1] at shape coordinates u, v (1 = the shape's radius)."""
    wave = F32(math.pi * shape.frequency)
    if shape.texture == "stripes":
        return np.sin(wave * u) * F32(0.5) + F32(0.5)
    if shape.texture == "checker":
        # Soft-edged squares: a hard sign() would alias at low resolution.
        return np.clip(np.sin(wave * u) * np.sin(wave * v) * F32(2.0) + F32(0.5), 0.0, 1.0)
    if shape.texture == "rings":
        return np.cos(wave * np.hypot(u, v)) * F32(0.5) + F32(0.5)
    # Smooth noise: a few plane waves in random directions with random phases.
    total = np.zeros(np.broadcast_shapes(u.shape, v.shape), F32)
    for direction, phase in shape.waves:  # three waves; vectorised over the pixels
        total += np.sin(wave * (F32(math.cos(direction)) * u + F32(math.sin(direction)) * v) + F32(phase))
    return np.clip(total * F32(0.25) + F32(0.5), 0.0, 1.0)
