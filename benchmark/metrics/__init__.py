"""Measurement: every metric has one shape (`base.Metric`), scored per frame and summed per step; FVD, one
number per run, has its own sums (fvd.py).

    direction.py   which way is better for every figure a metric reports (torch-free: reports read it)
    base.py        Metric: per-frame scores -> per-step sums -> reported figures
    accumulate.py  per-step sums in float64 over processes; the mean and the best of N samples
    frame.py       MSE, MAE, PSNR, SSIM (scikit-image's numbers)
    lpips.py       LPIPS (AlexNet) and loading its weights
    yolo.py        Ultralytics YOLO checkpoints and their predict pipeline, batched in torch
    detection.py   detection figures from YOLO on predicted and ground-truth frames
    frechet.py     float64 Gaussian feature sums over processes and the Frechet distance between two of them
    fvd.py         FVD: the I3D detectors, each reference's clip preprocessing (conventions), per-run sums
    i3d.py         VideoGPT's PyTorch I3D, the network i3d_pretrained_400.pt is a state dict of
    weights.py     the weight files: where they are looked for, how they are checked and fetched
    suite.py       the metrics of one command: weights resolved once, a metric list per predictor

Importing this package imports no torch; its modules do.
"""
from .direction import HIGHER_IS_BETTER

__all__ = ["HIGHER_IS_BETTER"]
