"""Per-frame image metrics: MSE, MAE, PSNR and SSIM.

SSIM and PSNR reproduce scikit-image's numbers (Wang et al. 2004 settings) so that
results can be compared with papers that report skimage values.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric

METRICS = ("mse", "mae", "psnr", "ssim")

_SIGMA = 1.5
_MSE_FLOOR = 1e-10


@dataclass(frozen=True)
class SsimWindow:
    """The window SSIM averages over, and how it estimates (co)variances.

    gaussian: scikit-image's `gaussian_weights=True, sigma=1.5` (truncate 3.5: radius 5, 11 taps), what
    vpbench reports; uniform: scikit-image's default `win_size=7` box. `sample_covariance` scales the
    variances and the covariance by n / (n - 1), n the window's pixel count (scikit-image's
    `use_sample_covariance=True`, its default)."""

    kind: str = "gaussian"  # "gaussian" or "uniform"
    size: int = 11
    sample_covariance: bool = False

    @property
    def radius(self) -> int:
        return self.size // 2

    @property
    def covariance_scale(self) -> float:
        pixels = self.size * self.size
        return pixels / (pixels - 1) if self.sample_covariance else 1.0

    @functools.lru_cache(maxsize=8)
    def taps_float64(self) -> Tensor:
        if self.kind == "uniform":
            return torch.full((self.size,), 1.0 / self.size, dtype=torch.float64)
        coords = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 / _SIGMA**2 * coords**2)
        return kernel / kernel.sum()

    def taps(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        return self.taps_float64().to(dtype=dtype, device=device)


GAUSSIAN = SsimWindow("gaussian", 2 * int(3.5 * _SIGMA + 0.5) + 1, False)  # radius as in scipy.ndimage
UNIFORM_SAMPLE = SsimWindow("uniform", 7, True)  # scikit-image's defaults


def _wide_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; there everything runs in float32 (ssim mean-centres first).
    return torch.float32 if device.type == "mps" else torch.float64


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"expected pred and target of equal shape [N, C, H, W], got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def _check_ssim_images(pred: Tensor, target: Tensor, window: SsimWindow) -> torch.Size:
    _check_images(pred, target)
    if min(pred.shape[-2:]) < window.size:
        raise ValueError(f"SSIM needs images of at least {window.size}x{window.size} pixels "
                         f"({window.kind} window), got {pred.shape[-2]}x{pred.shape[-1]}")
    return pred.shape


def _ssim(pred: Tensor, target: Tensor, data_range: float, dtype: torch.dtype,
          window: SsimWindow = GAUSSIAN) -> Tensor:
    _, c, h, w = _check_ssim_images(pred, target, window)
    x, y = pred.to(dtype), target.to(dtype)
    shift_x = shift_y = None
    if dtype != torch.float64:
        # E[x^2] - E[x]^2 cancels catastrophically in float32 unless the data are centred;
        # variances and covariance are shift-invariant, the means get the shift added back.
        shift_x = x.mean(dim=(2, 3), keepdim=True)
        shift_y = y.mean(dim=(2, 3), keepdim=True)
        x, y = x - shift_x, y - shift_y
    kernel, size = window.taps(dtype, pred.device), window.size
    groups = 5 * c
    # skimage filters with reflect padding and then crops `radius` pixels from every
    # side of the SSIM map: exactly the pixels the padding reaches, so a padding-free
    # ("valid") separable convolution yields the cropped map directly.
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    moments = F.conv2d(moments, kernel.view(1, 1, size, 1).expand(groups, 1, size, 1), groups=groups)
    moments = F.conv2d(moments, kernel.view(1, 1, 1, size).expand(groups, 1, 1, size), groups=groups)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)
    scale = window.covariance_scale
    var_x, var_y, cov_xy = scale * (e_xx - mu_x**2), scale * (e_yy - mu_y**2), scale * (e_xy - mu_x * mu_y)
    if shift_x is not None:
        mu_x, mu_y = mu_x + shift_x, mu_y + shift_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


# Fast path: output pixels filtered per tile of the band (Toeplitz) matrix, so one matrix
# product covers a tile of _TILE outputs from _TILE + size - 1 inputs (BLAS, few wasted zeros);
# images are scored in pieces of about _CHUNK_PIXELS pixels so that the moment maps stay in
# cache on CPU (elsewhere pieces are larger, to keep kernel launches few).
_TILE = 128
_RISK = 1e-6
_CHUNK_PIXELS = {"cpu": 1 << 18}
_CHUNK_PIXELS_ELSEWHERE = 1 << 24


@functools.lru_cache(maxsize=16)
def _band(n_in: int, dtype: torch.dtype, device: torch.device, window: SsimWindow) -> Tensor:
    """[n_in, n_in - size + 1] matrix whose column j holds the taps at rows j..j+size-1: x @ band filters x's rows."""
    band = torch.zeros(n_in, n_in - 2 * window.radius, dtype=torch.float64)
    for i, weight in enumerate(window.taps_float64()):
        band.diagonal(-i).fill_(weight)
    return band.to(dtype=dtype, device=device)


def _filter(x: Tensor, dim: int, window: SsimWindow) -> Tensor:
    """Valid filtering of [B, H, W] by the window along W (dim=-1) or H (dim=-2), _TILE outputs at a time."""
    size, tiles, radius = x.shape[dim], [], window.radius
    for start in range(0, size - 2 * radius, _TILE):
        tile = x.narrow(dim, start, min(_TILE + 2 * radius, size - start))
        band = _band(tile.shape[dim], x.dtype, x.device, window)
        tiles.append(tile @ band if dim == -1 else torch.bmm(band.mT.expand(len(x), -1, -1), tile))
    return torch.cat(tiles, dim) if len(tiles) > 1 else tiles[0]


def _valid(x: Tensor, window: SsimWindow) -> tuple[int, int]:
    return x.shape[-2] - 2 * window.radius, x.shape[-1] - 2 * window.radius


def _ssim_sums(x: Tensor, y: Tensor, shift_x: Tensor, shift_y: Tensor, data_range: float,
               window: SsimWindow) -> Tensor:
    """Sums over [N, C, h, w] pieces of images, centred by -shift, of the SSIM map and of the
    rounding risk (E[x^2] + E[y^2]) / (var_x + var_y + C2) of every map pixel -> [2, N] float64."""
    moments = torch.empty((5, *x.shape), dtype=x.dtype, device=x.device)
    torch.sub(x, shift_x, out=moments[0])
    torch.sub(y, shift_y, out=moments[1])
    torch.mul(moments[0], moments[0], out=moments[2])
    torch.mul(moments[1], moments[1], out=moments[3])
    torch.mul(moments[0], moments[1], out=moments[4])
    moments = _filter(_filter(moments.flatten(0, -3), -1, window), -2, window).view(5, *x.shape[:2], *_valid(x, window))
    mu_x, mu_y, e_xx, e_yy, e_xy = moments
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scale = window.covariance_scale
    risk = e_xx + e_yy
    e_xy.sub_(mu_x * mu_y).mul_(2 * scale).add_(c2)  # 2 cov + C2
    e_xx.sub_(mu_x.square()).add_(e_yy).sub_(mu_y.square())  # var_x + var_y (population) ...
    if scale != 1.0:
        e_xx.mul_(scale)
    e_xx.add_(c2)  # ... + C2
    risk = risk.div_(e_xx).sum(dim=(1, 2, 3), dtype=torch.float64)
    mu_x.add_(shift_x)  # the variances and the covariance are shift-invariant,
    mu_y.add_(shift_y)  # the means get the shift added back
    numerator = torch.mul(mu_x, mu_y).mul_(2).add_(c1).mul_(e_xy)
    denominator = mu_x.square_().add_(mu_y.square_()).add_(c1).mul_(e_xx)
    return torch.stack([numerator.div_(denominator).sum(dim=(1, 2, 3), dtype=torch.float64), risk])


def _images_per_piece(x: Tensor) -> int:
    return max(1, _CHUNK_PIXELS.get(x.device.type, _CHUNK_PIXELS_ELSEWHERE) // x.shape[1:].numel())


def _ssim_pieces(x: Tensor, y: Tensor, data_range: float, dtype: torch.dtype,
                 window: SsimWindow = GAUSSIAN) -> Tensor:
    """_ssim_sums in `dtype` over all of [N, C, H, W] images, in pieces: whole images a few at a time,
    or bands of output rows (with their halo of size - 1 rows) of large ones -> [2, N]."""
    n, c, h, w = x.shape
    # E[x^2] - E[x]^2 cancels catastrophically in float32 unless every image is centred first.
    shift_x, shift_y = (z.mean(dim=(2, 3), keepdim=True, dtype=dtype) for z in (x, y))
    halo = 2 * window.radius
    rows = max(1, _CHUNK_PIXELS.get(x.device.type, _CHUNK_PIXELS_ELSEWHERE) // (c * w) - halo)
    sums = torch.zeros(2, n, dtype=torch.float64, device=x.device)
    for i in range(0, n, _images_per_piece(x)):
        part = slice(i, i + _images_per_piece(x))
        for r in range(0, h - halo, rows):
            band = slice(r, r + rows + halo)
            sums[:, part] += _ssim_sums(x[part, :, band].to(dtype), y[part, :, band].to(dtype), shift_x[part],
                                        shift_y[part], data_range, window)
    return sums


def _ssim_fast(pred: Tensor, target: Tensor, data_range: float, window: SsimWindow) -> Tensor:
    _, c, h, w = _check_ssim_images(pred, target, window)
    pixels = c * (h - 2 * window.radius) * (w - 2 * window.radius)
    sums = _ssim_pieces(pred, target, data_range, torch.float32, window)
    # float32 rounds E[x^2] and E[x]^2 by ~2^-24 E[x^2] each; where windows are flat but far from the
    # image mean (plateaus of 0 and 1), that is not small against var + C2 and, all windows rounding
    # alike, does not average out. Images whose mean risk times 2^-24 passes _RISK are redone in float64:
    # measured errors stayed below 5x that estimate (binary digits, blurred and quantised to uint8), so
    # under ~5e-6. At 5e-7 most binary-digit frames would be redone, halving the speed on them.
    wide = _wide_dtype(pred.device)
    redo = (sums[1] * 2.0**-24 / pixels > _RISK).nonzero().squeeze(1)
    for images in redo.split(_images_per_piece(pred)) if wide == torch.float64 else ():
        sums[:, images] = _ssim_pieces(pred[images], target[images], data_range, wide, window)
    return (sums[0] / pixels).to(wide)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, exact: bool = False,
         window: SsimWindow = GAUSSIAN) -> Tensor:
    """Per-image SSIM of [N, C, H, W] images, mean over channels -> [N].

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=0)``: 11x11 Gaussian window, border of
    5 pixels excluded. `window=UNIFORM_SAMPLE` gives scikit-image's defaults instead
    (7x7 box, sample covariance, border of 3 pixels), which some reference code scores with. Computed on the input's device with the separable filter as tiled
    band-matrix products, in mean-centred float32 (images where float32 could err by more than
    a few 1e-6 are redone in float64; within 1e-5 of skimage), or with ``exact=True`` in float64
    grouped convolutions (float32 on MPS), the slow reference.
    Raises ValueError for images smaller than 11x11.
    """
    if exact:
        return _ssim(pred, target, data_range, _wide_dtype(pred.device), window)
    return _ssim_fast(pred, target, data_range, window)


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR ``10 log10(R^2 / MSE)`` of [N, C, H, W] images -> [N].

    Matches ``skimage.metrics.peak_signal_noise_ratio`` except that the MSE is floored
    at 1e-10, so identical images give a finite cap (100 dB at data_range=1) instead of
    inf, which would otherwise poison any average it enters.
    """
    return 10 * torch.log10(data_range**2 / mse(pred, target).clamp_min(_MSE_FLOOR))


def _diff(pred: Tensor, target: Tensor) -> Tensor:
    _check_images(pred, target)
    dtype = _wide_dtype(pred.device)
    return pred.to(dtype) - target.to(dtype)


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image mean squared error of [N, C, H, W] images -> [N]."""
    return _diff(pred, target).square().mean(dim=(1, 2, 3))


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image mean absolute error of [N, C, H, W] images -> [N]."""
    return _diff(pred, target).abs().mean(dim=(1, 2, 3))


_FRAME_FNS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse, "mae": mae, "psnr": psnr, "ssim": ssim}


# Pixels scored at a time (whole frames, at least one): the float64 differences of MSE and MAE of a long
# 512x512 rollout would otherwise fill memory (SSIM works in smaller pieces of its own).
PIXELS_PER_CHUNK = 1 << 24


@torch.no_grad()
def score_frames(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """MSE, MAE, PSNR and SSIM of every frame of [B, T, C, H, W] clips -> {name: [B, T]} (float64)."""
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(f"expected pred and target of equal shape [B, T, C, H, W], "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    b, t = pred.shape[:2]
    frames = max(1, PIXELS_PER_CHUNK // pred.shape[2:].numel())
    chunks = zip(pred.flatten(0, 1).split(frames), target.flatten(0, 1).split(frames))
    parts = [torch.stack([_FRAME_FNS[name](p, q) for name in METRICS]) for p, q in chunks]
    per_frame = torch.cat(parts, dim=1).view(len(METRICS), b, t)
    return {name: per_frame[i] for i, name in enumerate(METRICS)}


class FrameMetric(Metric):
    """MSE, MAE, PSNR and SSIM of every predicted frame; every predictor is scored on them."""

    names = METRICS

    def score_frames(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        return score_frames(pred, target)
