"""Per-frame image metrics: MSE, MAE, PSNR and SSIM.

SSIM and PSNR reproduce scikit-image's numbers (Wang et al. 2004 settings) so that
results can be compared with papers that report skimage values.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric

METRICS = ("mse", "mae", "psnr", "ssim")

_SIGMA = 1.5
_RADIUS = int(3.5 * _SIGMA + 0.5)  # skimage: truncate=3.5, radius as in scipy.ndimage
_WIN = 2 * _RADIUS + 1  # 11
_MSE_FLOOR = 1e-10


def _wide_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; there everything runs in float32 (ssim mean-centres first).
    return torch.float32 if device.type == "mps" else torch.float64


def _check_images(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"expected pred and target of equal shape [N, C, H, W], got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def _check_ssim_images(pred: Tensor, target: Tensor) -> torch.Size:
    _check_images(pred, target)
    if min(pred.shape[-2:]) < _WIN:
        raise ValueError(f"SSIM needs images of at least {_WIN}x{_WIN} pixels "
                         f"(Gaussian window, sigma={_SIGMA}), got {pred.shape[-2]}x{pred.shape[-1]}")
    return pred.shape


def _ssim(pred: Tensor, target: Tensor, data_range: float, dtype: torch.dtype) -> Tensor:
    _, c, h, w = _check_ssim_images(pred, target)
    x, y = pred.to(dtype), target.to(dtype)
    shift_x = shift_y = None
    if dtype != torch.float64:
        # E[x^2] - E[x]^2 cancels catastrophically in float32 unless the data are centred;
        # variances and covariance are shift-invariant, the means get the shift added back.
        shift_x = x.mean(dim=(2, 3), keepdim=True)
        shift_y = y.mean(dim=(2, 3), keepdim=True)
        x, y = x - shift_x, y - shift_y
    kernel = _gaussian(dtype, pred.device)
    groups = 5 * c
    # skimage filters with reflect padding and then crops `radius` pixels from every
    # side of the SSIM map: exactly the pixels the padding reaches, so a padding-free
    # ("valid") separable convolution yields the cropped map directly.
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    moments = F.conv2d(moments, kernel.view(1, 1, _WIN, 1).expand(groups, 1, _WIN, 1), groups=groups)
    moments = F.conv2d(moments, kernel.view(1, 1, 1, _WIN).expand(groups, 1, 1, _WIN), groups=groups)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)
    var_x, var_y, cov_xy = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    if shift_x is not None:
        mu_x, mu_y = mu_x + shift_x, mu_y + shift_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


# Fast path: output pixels filtered per tile of the band (Toeplitz) matrix, so one matrix
# product covers a tile of _TILE outputs from _TILE + 10 inputs (BLAS, few wasted zeros);
# images are scored in pieces of about _CHUNK_PIXELS pixels so that the moment maps stay in
# cache on CPU (elsewhere pieces are larger, to keep kernel launches few).
_TILE = 128
_RISK = 1e-6
_CHUNK_PIXELS = {"cpu": 1 << 18}
_CHUNK_PIXELS_ELSEWHERE = 1 << 24


def _gaussian(dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 / _SIGMA**2 * coords**2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _band(n_in: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[n_in, n_in - 10] matrix whose column j holds the kernel at rows j..j+10: x @ band filters x's rows."""
    band = torch.zeros(n_in, n_in - 2 * _RADIUS, dtype=torch.float64)
    for i, weight in enumerate(_gaussian(torch.float64, torch.device("cpu"))):
        band.diagonal(-i).fill_(weight)
    return band.to(dtype=dtype, device=device)


def _filter(x: Tensor, dim: int) -> Tensor:
    """Valid 11-tap Gaussian filtering of [B, H, W] along W (dim=-1) or H (dim=-2), _TILE outputs at a time."""
    size, tiles = x.shape[dim], []
    for start in range(0, size - 2 * _RADIUS, _TILE):
        tile = x.narrow(dim, start, min(_TILE + 2 * _RADIUS, size - start))
        band = _band(tile.shape[dim], x.dtype, x.device)
        tiles.append(tile @ band if dim == -1 else torch.bmm(band.mT.expand(len(x), -1, -1), tile))
    return torch.cat(tiles, dim) if len(tiles) > 1 else tiles[0]


def _valid(x: Tensor) -> tuple[int, int]:
    return x.shape[-2] - 2 * _RADIUS, x.shape[-1] - 2 * _RADIUS


def _ssim_sums(x: Tensor, y: Tensor, shift_x: Tensor, shift_y: Tensor, data_range: float) -> Tensor:
    """Sums over [N, C, h, w] pieces of images, centred by -shift, of the SSIM map and of the
    rounding risk (E[x^2] + E[y^2]) / (var_x + var_y + C2) of every map pixel -> [2, N] float64."""
    moments = torch.empty((5, *x.shape), dtype=x.dtype, device=x.device)
    torch.sub(x, shift_x, out=moments[0])
    torch.sub(y, shift_y, out=moments[1])
    torch.mul(moments[0], moments[0], out=moments[2])
    torch.mul(moments[1], moments[1], out=moments[3])
    torch.mul(moments[0], moments[1], out=moments[4])
    moments = _filter(_filter(moments.flatten(0, -3), -1), -2).view(5, *x.shape[:2], *_valid(x))
    mu_x, mu_y, e_xx, e_yy, e_xy = moments
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    risk = e_xx + e_yy
    e_xy.sub_(mu_x * mu_y).mul_(2).add_(c2)  # 2 cov + C2
    e_xx.sub_(mu_x.square()).add_(e_yy).sub_(mu_y.square()).add_(c2)  # var_x + var_y + C2
    risk = risk.div_(e_xx).sum(dim=(1, 2, 3), dtype=torch.float64)
    mu_x.add_(shift_x)  # the variances and the covariance are shift-invariant,
    mu_y.add_(shift_y)  # the means get the shift added back
    numerator = torch.mul(mu_x, mu_y).mul_(2).add_(c1).mul_(e_xy)
    denominator = mu_x.square_().add_(mu_y.square_()).add_(c1).mul_(e_xx)
    return torch.stack([numerator.div_(denominator).sum(dim=(1, 2, 3), dtype=torch.float64), risk])


def _images_per_piece(x: Tensor) -> int:
    return max(1, _CHUNK_PIXELS.get(x.device.type, _CHUNK_PIXELS_ELSEWHERE) // x.shape[1:].numel())


def _ssim_pieces(x: Tensor, y: Tensor, data_range: float, dtype: torch.dtype) -> Tensor:
    """_ssim_sums in `dtype` over all of [N, C, H, W] images, in pieces: whole images a few at a time,
    or bands of output rows (with their 10-row halo) of large ones -> [2, N]."""
    n, c, h, w = x.shape
    # E[x^2] - E[x]^2 cancels catastrophically in float32 unless every image is centred first.
    shift_x, shift_y = (z.mean(dim=(2, 3), keepdim=True, dtype=dtype) for z in (x, y))
    rows = max(1, _CHUNK_PIXELS.get(x.device.type, _CHUNK_PIXELS_ELSEWHERE) // (c * w) - 2 * _RADIUS)
    sums = torch.zeros(2, n, dtype=torch.float64, device=x.device)
    for i in range(0, n, _images_per_piece(x)):
        part = slice(i, i + _images_per_piece(x))
        for r in range(0, h - 2 * _RADIUS, rows):
            band = slice(r, r + rows + 2 * _RADIUS)
            sums[:, part] += _ssim_sums(x[part, :, band].to(dtype), y[part, :, band].to(dtype), shift_x[part],
                                        shift_y[part], data_range)
    return sums


def _ssim_fast(pred: Tensor, target: Tensor, data_range: float) -> Tensor:
    _, c, h, w = _check_ssim_images(pred, target)
    pixels = c * (h - 2 * _RADIUS) * (w - 2 * _RADIUS)
    sums = _ssim_pieces(pred, target, data_range, torch.float32)
    # float32 rounds E[x^2] and E[x]^2 by ~2^-24 E[x^2] each; where windows are flat but far from the
    # image mean (plateaus of 0 and 1), that is not small against var + C2 and, all windows rounding
    # alike, does not average out. Images whose mean risk times 2^-24 passes _RISK are redone in float64:
    # measured errors stayed below 5x that estimate (binary digits, blurred and quantised to uint8), so
    # under ~5e-6. At 5e-7 most binary-digit frames would be redone, halving the speed on them.
    wide = _wide_dtype(pred.device)
    redo = (sums[1] * 2.0**-24 / pixels > _RISK).nonzero().squeeze(1)
    for images in redo.split(_images_per_piece(pred)) if wide == torch.float64 else ():
        sums[:, images] = _ssim_pieces(pred[images], target[images], data_range, wide)
    return (sums[0] / pixels).to(wide)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, exact: bool = False) -> Tensor:
    """Per-image SSIM of [N, C, H, W] images, mean over channels -> [N].

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=0)``: 11x11 Gaussian window, border of
    5 pixels excluded. Computed on the input's device with the separable filter as tiled
    band-matrix products, in mean-centred float32 (images where float32 could err by more than
    a few 1e-6 are redone in float64; within 1e-5 of skimage), or with ``exact=True`` in float64
    grouped convolutions (float32 on MPS), the slow reference.
    Raises ValueError for images smaller than 11x11.
    """
    if exact:
        return _ssim(pred, target, data_range, _wide_dtype(pred.device))
    return _ssim_fast(pred, target, data_range)


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
