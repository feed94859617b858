"""Which part of a batch or of a split each rank takes: contiguous slices whose sizes differ by at most one.

Contiguous slices keep a training batch's rows in the order a 1-process run has them, so anything drawn for
the whole batch (scheduled sampling's mask) can be drawn once for the global batch and sliced. The slice of
the training step under way is published here for the harness's own code (`RecurrentPredictor`) to read;
a predictor never needs it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank `rank`'s contiguous share of `size` items: the first size % world_size ranks take
    one more. No padding, no duplicates: the shares partition range(size) (some are empty when size < world)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class BatchShard:
    """Rows [start, stop) of a global batch of `global_size` clips: what one rank trains on in a step."""

    global_size: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def weight(self) -> float:
        """This rank's share of the global batch: a batch-mean loss times this, summed over ranks, is the
        global batch's mean loss."""
        return self.size / self.global_size


_active: BatchShard | None = None


def active_batch_shard(batch: int) -> BatchShard | None:
    """The shard of the training step under way in a multi-process run, when `batch` rows are that shard;
    None in a single process, outside training steps, and for batches of another size."""
    return _active if _active is not None and _active.size == batch else None


@contextlib.contextmanager
def training_batch(shard: BatchShard | None) -> Iterator[None]:
    """Publish `shard` while one training step runs (None: a single process, nothing to publish)."""
    global _active
    saved, _active = _active, shard
    try:
        yield
    finally:
        _active = saved
