"""Metric conventions: how each reference's evaluation code scores a frame, as data.

A published table is only comparable with ours when both score frames the same way, and the references
do not agree with each other or with vpbench. A `Convention` names the choices that change the numbers:
the SSIM window and covariance estimate, the SSIM data range, PSNR on the joint MSE or as the mean of
per-channel PSNRs, MSE/MAE as per-pixel means or per-frame sums, which metrics see predictions clipped
to [0, 1], and which LPIPS. `vpbench` is ours (the main columns of every result); the others are
scored in the same evaluation pass when asked (`bench run --convention vpbench,cwvae`) and stored
apart, under `eval.conventions.<name>`.

What is the same everywhere and so not a field: frames in [0, 1] as the datasets give them, one score
per predicted frame averaged over frames (per step, then over steps), and PSNR capped at 100 dB (MSE
floor 1e-10; OpenSTL and STIP would give inf for a perfect frame, which no mean survives).
LPIPS is scored once, in vpbench's way; a convention's `lpips` says how the reference scores it.

Data ranges: every reference below runs scikit-image <= 0.19 on float arrays without `data_range`, so
SSIM takes the float dtype's range (-1, 1): data range 2 on frames in [0, 1], which makes C1 and C2
four times larger and SSIM higher; PSNR takes 1 there (the ground truth has no negative values).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TypeVar

import torch
from torch import Tensor

from ..errors import UserError
from .base import Metric
from .frame import GAUSSIAN, PIXELS_PER_CHUNK, UNIFORM_SAMPLE, SsimWindow, _MSE_FLOOR, ssim

FIGURES = ("mse", "mae", "psnr", "ssim")
T = TypeVar("T")


@dataclass(frozen=True)
class Convention:
    """How one evaluation scores a predicted frame against the ground truth (see the module docstring)."""

    name: str
    source: str  # where in the reference's code this comes from
    metrics: tuple[str, ...]  # what the reference reports, of FIGURES
    window: SsimWindow
    ssim_data_range: float  # on frames in [0, 1]
    psnr_per_channel: bool  # mean over channels of each channel's PSNR, instead of PSNR of the joint MSE
    pixel_sums: bool  # MSE and MAE summed over a frame's pixels (C*H*W) instead of averaged
    clipped: tuple[str, ...]  # metrics scored on predictions clipped to [0, 1]; the rest see them as output
    lpips: str  # how the reference scores LPIPS (scored here in vpbench's way only)

    def settings(self) -> dict[str, Any]:
        """What a result records about the convention it was scored in."""
        return {"source": self.source, "metrics": list(self.metrics),
                "ssim_window": f"{self.window.kind} {self.window.size}",
                "ssim_covariance": "sample" if self.window.sample_covariance else "population",
                "ssim_data_range": self.ssim_data_range,
                "psnr": "per-channel mean" if self.psnr_per_channel else "joint MSE",
                "mse_mae": "per-frame pixel sums" if self.pixel_sums else "per-pixel means",
                "clipped": list(self.clipped), "lpips": self.lpips}


VPBENCH = Convention(
    "vpbench", "benchmark/metrics/frame.py (Wang et al. 2004's SSIM settings)",
    metrics=FIGURES, window=GAUSSIAN, ssim_data_range=1.0, psnr_per_channel=False, pixel_sums=False,
    clipped=FIGURES, lpips="lpips 0.1 AlexNet, spatial average, frames mapped to [-1, 1], RGB")

# OpenSTL, openstl/core/metrics.py `metric()` (environment.yml pins scikit-image<=0.19.3):
# - MSE, MAE: `np.mean((pred-true)**2, axis=(0, 1)).sum()`: the mean over sequences and frames, summed over
#   C, H, W, i.e. per-frame sums of squared (absolute) errors; computed before the clip.
# - then `pred = np.maximum(pred, 0); np.minimum(pred, 1)`: SSIM and PSNR see clipped predictions;
# - SSIM `cal_ssim(pred[b, f].swapaxes(0, 2), true[b, f].swapaxes(0, 2), multichannel=True)`: scikit-image's
#   defaults (7x7 uniform window, sample covariance), data range 2 from the float dtype; the swapaxes
#   transposes H and W, to which a square window is blind;
# - PSNR `PSNR()`: 20 log10(1 / sqrt(MSE)) on the joint float32 MSE of the frame;
# - LPIPS `lpips.LPIPS(net='alex')` on `im2tensor(img * 255)`, i.e. [-1, 1]: vpbench's own.
OPENSTL = Convention(
    "openstl", "OpenSTL openstl/core/metrics.py metric(): cal_ssim(..., multichannel=True), PSNR(), MSE()/MAE()",
    metrics=FIGURES, window=UNIFORM_SAMPLE, ssim_data_range=2.0, psnr_per_channel=False, pixel_sums=True,
    clipped=("psnr", "ssim"), lpips="lpips 0.1 AlexNet, spatial average, [-1, 1] (as vpbench)")

# STIP, STIPHR core/trainer.py `test()` (the code the STIP paper links):
# - `gx = np.maximum(gx, 0); gx = np.minimum(gx, 1)` before every metric;
# - PSNR per sequence `10 * np.log10(1 / mse_tmp)` on the joint MSE of the frame;
# - SSIM `compare_ssim(x[b], gx[b], multichannel=True)`: scikit-image's defaults, data range 2 (float);
# - MSE `np.square(x - gx).sum()` over the whole batch: depends on the batch size, not reproduced (the
#   tables print PSNR and LPIPS only);
# - LPIPS `lpips.LPIPS(net='alex', spatial=True)`, `.mean()` of the map, x100, on frames read by OpenCV (BGR).
STIP = Convention(
    "stip", "STIPHR core/trainer.py test(): clip, 10*log10(1/mse) per sequence, compare_ssim(multichannel=True)",
    metrics=("psnr", "ssim"), window=UNIFORM_SAMPLE, ssim_data_range=2.0, psnr_per_channel=False,
    pixel_sums=False, clipped=("psnr", "ssim"),
    lpips="lpips 0.1 AlexNet with spatial=True, mean of the map, x100, on BGR frames (not reproduced)")

# CW-VAE, vaibhavsaxena11/cwvae tools.py `compute_metrics()` called by eval.py (requirements.txt:
# scikit-image==0.18.1):
# - predictions are the decoder's tanh outputs in (-1, 1), scored as they are: eval.py clips only the
#   copies it saves as images;
# - frames are uint8 / 255 (data_loader.py), so the ground truth is in [0, 1];
# - per channel, `ssim_metric(gt[c], pred[c])` and `psnr_metric(gt[c], pred[c])` with scikit-image's
#   defaults (SSIM: 7x7 uniform window, sample covariance, data range 2; PSNR: data range 1, the
#   ground truth having no negative value), each averaged over the channels.
# - no MSE and no LPIPS.
# HTSRM (its README: `eval_with_LPIPS --eval-seq-len 300 --open-loop-ctx 36`) builds on this code; its
# own evaluation script could not be read here, so `htsrm` is CW-VAE's convention [unverified for LPIPS].
CWVAE = Convention(
    "cwvae", "CW-VAE tools.py compute_metrics(): per-channel skimage ssim_metric / psnr_metric, unclipped",
    metrics=("psnr", "ssim"), window=UNIFORM_SAMPLE, ssim_data_range=2.0, psnr_per_channel=True,
    pixel_sums=False, clipped=(), lpips="none in CW-VAE; HTSRM's eval_with_LPIPS not readable here [unverified]")

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (VPBENCH, OPENSTL, STIP, CWVAE)}
ALIASES = {"htsrm": "cwvae"}


def choose(names: Sequence[str], table: Mapping[str, T], aliases: Mapping[str, str], what: str) -> list[T]:
    """The entries of `table` the user named (case and spaces ignored, aliases resolved, duplicates dropped, in
    order); an unknown name is a UserError that lists the choices."""
    chosen: list[T] = []
    for raw in names:
        name = aliases.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in table:
            known = ", ".join([*table, *(f"{a} (= {t})" for a, t in aliases.items())])
            raise UserError(f"unknown {what} {raw!r}; choose from {known}")
        if table[name] not in chosen:
            chosen.append(table[name])
    return chosen


def resolve_conventions(names: Sequence[str]) -> tuple[Convention, ...]:
    """The conventions to score besides vpbench's own (always scored: the main columns), from names given
    by the user (aliases resolved, duplicates dropped, in order); an unknown name is a UserError."""
    return tuple(c for c in choose(names, CONVENTIONS, ALIASES, "metric convention") if c is not VPBENCH)


def _psnr(mse: Tensor) -> Tensor:
    return 10 * torch.log10(1.0 / mse.clamp_min(_MSE_FLOOR))


def score_in(convention: Convention, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-image figures of [N, C, H, W] predictions (as output, unclipped) against targets, scored the way
    `convention` does -> {name: [N]} (float64) for every name of `convention.metrics`."""
    clipped = pred.clamp(0, 1)
    out: dict[str, Tensor] = {}
    for name in convention.metrics:
        x = clipped if name in convention.clipped else pred
        if name == "ssim":  # the mean over channels, as scikit-image's multichannel and CW-VAE's loop both take
            out[name] = ssim(x, target, convention.ssim_data_range, window=convention.window).double()
            continue
        error = x.double() - target.double()
        if name in ("mse", "mae"):
            per_pixel = error.square() if name == "mse" else error.abs()
            out[name] = per_pixel.sum(dim=(1, 2, 3)) if convention.pixel_sums else per_pixel.mean(dim=(1, 2, 3))
        else:  # psnr
            out[name] = (_psnr(error.square().mean(dim=(2, 3))).mean(dim=1) if convention.psnr_per_channel
                         else _psnr(error.square().mean(dim=(1, 2, 3))))
    return out


class ConventionMetric(Metric):
    """The figures of one reference's convention, for every predicted frame; it sees the predictions as the
    predictor output them and clips the ones the convention clips."""

    clipped = False

    def __init__(self, convention: Convention) -> None:
        self.convention = convention
        self.names = convention.metrics  # type: ignore[misc]  (per instance: conventions report different sets)

    def score_frames(self, pred: Tensor, target: Tensor) -> dict[str, Tensor]:
        b, t = pred.shape[:2]
        frames = max(1, PIXELS_PER_CHUNK // pred.shape[2:].numel())
        parts = [score_in(self.convention, p, q)
                 for p, q in zip(pred.flatten(0, 1).split(frames), target.flatten(0, 1).split(frames))]
        return {name: torch.cat([part[name] for part in parts]).view(b, t) for name in self.names}
