"""Stopping training when a scheduler asks: SIGTERM (SLURM at the time limit, `scancel`, Kubernetes) or SIGUSR1
(SLURM's `--signal=USR1@SECONDS` ahead of the limit). The handler only notes the signal; the training loop saves
last.pt at the end of the iteration and stops, so that the same command (or a requeued job) resumes there. Under
several processes every rank learns of a signal any rank got in the same iteration, so that all stop together."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import torch

from . import distributed

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


class StopRequests:
    """The first stop signal received while installed (`listening`), or None."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _note(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum

    @contextlib.contextmanager
    def listening(self) -> Iterator[StopRequests]:
        """Catch SIGTERM and SIGUSR1 while training; outside it they act as before (nothing is left to save)."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            yield self
            return
        previous = {signum: signal.signal(signum, self._note) for signum in SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def agreed(self) -> int | None:
        """The signal to stop at, the same on every rank: one small collective per call under several processes
        (which of SIGNALS any rank got; the first of them that one did), none in one process."""
        if not distributed.current().several:
            return self.signum
        got = torch.tensor([float(self.signum == signum) for signum in SIGNALS], dtype=torch.float64)
        distributed.all_reduce_(got)
        return next((signum for signum, count in zip(SIGNALS, got.tolist()) if count > 0), None)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
