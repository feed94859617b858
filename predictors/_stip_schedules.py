"""STIP's training schedule on each of its datasets, for the predictors STIP compares with but gives no settings.

STIP's paper (section IV) gives settings for STIP alone; the STIP-dataset presets of the methods its tables compare
(sv2p, savp, retro-cyclegan, beyond-mse, crevnet, hfvp) train as long as STIPHR trains STIP there and test in its
batches. One table, so those presets cannot drift apart.
"""
from __future__ import annotations

from typing import Any

# STIPHR configs/{ucfsport,human36m,sjtu4k}_configs.py: iterations trained and the test batch.
STIP_SCHEDULES: dict[str, dict[str, int]] = {
    "ucf-sports": dict(max_iterations=100_000, eval_batch_size=4),
    "human36m": dict(max_iterations=100_000, eval_batch_size=2),
    "sjtu4k": dict(max_iterations=40_000, eval_batch_size=1),
}


def stip_dataset_presets(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A preset per STIP dataset: `settings` with STIP's iterations and test batch on that dataset."""
    return {dataset: dict(settings, **schedule) for dataset, schedule in STIP_SCHEDULES.items()}
