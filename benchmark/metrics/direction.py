"""Which way is better, for every figure a metric of vpbench reports: the one place this is stated.

Metrics read their `higher_is_better` from here and the report bolds by it; it imports nothing, so that
reading a table needs no torch. None marks a reference figure, one that does not depend on the predictor
(detections on ground-truth frames): neither way is better and it is never ranked.
"""
from __future__ import annotations

HIGHER_IS_BETTER: dict[str, bool | None] = {
    "mse": False, "mae": False, "psnr": True, "ssim": True,
    "lpips": False, "fvd": False,
    "det_conf": True, "det_high": True, "det_precision": True, "det_recall": True,
    "det_conf_gt": None, "det_high_gt": None,
}
