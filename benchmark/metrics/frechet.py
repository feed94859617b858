"""The Frechet distance between two Gaussians fitted to features, with the statistics summed in float64.

Features arrive in batches (and on several ranks): each side keeps the count, the sum and the sum of outer
products in float64, summed over ranks once at the end, from which the mean and the unbiased covariance
(numpy's `np.cov`, as StyleGAN-V, PredBench and MCVD take it) follow. The distance

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

needs the trace of the square root of S1 S2, which is not symmetric. It equals the trace of the square root of
the symmetric positive semi-definite A = S1^(1/2) S2 S1^(1/2) (a similar matrix), i.e. the sum of the square
roots of A's eigenvalues: two symmetric eigendecompositions (numpy.linalg.eigh) in float64, eigenvalues within
rounding noise of 0 set to 0. This is TF-GAN's trace_sqrt_product (which VideoGPT and MCVD copy, in
float32 with an SVD); StyleGAN-V takes scipy.linalg.sqrtm of S1 S2 instead, which the tests compare against.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class GaussianSums:
    """Float64 count, sum and sum of outer products of `dim`-dimensional features: `add` batches, `reduced` once."""

    def __init__(self, dim: int, device: torch.device | str | None = None) -> None:
        self.dim = dim
        device = torch.device("cpu") if device is None else torch.device(device)
        self._sums = torch.zeros(1 + dim + dim * dim, dtype=torch.float64, device=device)  # one all_reduce

    def add(self, features: Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features [N, {self.dim}], got {tuple(features.shape)}")
        x = features.to(self._sums.device, torch.float64)
        self._sums[0] += x.shape[0]
        self._sums[1:1 + self.dim] += x.sum(dim=0)
        self._sums[1 + self.dim:] += (x.T @ x).flatten()

    def __iadd__(self, other: GaussianSums) -> GaussianSums:
        self._sums += other._sums.to(self._sums.device)
        return self

    def reduced(self) -> GaussianSums:
        """A copy summed over every process. Collective under torch.distributed: every rank calls it once."""
        out = GaussianSums(self.dim, self._sums.device)
        out._sums = self._sums.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(out._sums, op=torch.distributed.ReduceOp.SUM)
        return out

    @property
    def count(self) -> int:
        return int(self._sums[0].item())

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """The mean and the unbiased covariance (divisor N - 1, as np.cov), float64; needs N >= 2."""
        n = self.count
        if n < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {n}")
        sums = self._sums.cpu().numpy()
        total, outer = sums[1:1 + self.dim], sums[1 + self.dim:].reshape(self.dim, self.dim)
        mean = total / n
        cov = (outer - n * np.outer(mean, mean)) / (n - 1)
        return mean, (cov + cov.T) / 2


def _roots(values: np.ndarray) -> np.ndarray:
    # Eigenvalues under the rounding noise of the decomposition (d * eps * the largest) are zeros: a covariance
    # of fewer clips than features is singular, and the square roots of ~1e-14 noise values summed over hundreds
    # of null directions would otherwise move FVD(x, x) away from 0 by ~1e-5.
    cutoff = max(values.max(initial=0.0), 0.0) * len(values) * np.finfo(np.float64).eps
    return np.sqrt(np.where(values > cutoff, values, 0.0))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * _roots(values)) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) of two covariance matrices, in float64 (see the module docstring)."""
    root = _sqrt_psd(np.asarray(sigma1, dtype=np.float64))
    inner = root @ np.asarray(sigma2, dtype=np.float64) @ root
    return float(_roots(np.linalg.eigvalsh((inner + inner.T) / 2)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The squared Frechet distance between N(mu1, S1) and N(mu2, S2), in float64."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    return float(np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * trace_sqrt_product(sigma1, sigma2))


def frechet_of_sums(a: GaussianSums, b: GaussianSums) -> float:
    """The Frechet distance between the Gaussians fitted to two (already reduced) feature sums."""
    return frechet_distance(*a.mean_cov(), *b.mean_cov())
