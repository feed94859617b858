"""The process group of a run started by torchrun (or `bench run --nproc N`): who this process is, and the
few collectives the harness uses.

A single process (no WORLD_SIZE above 1 in the environment) never initialises anything: every helper here is
then a no-op that costs nothing, so a 1-process run runs no distributed code.
"""
from __future__ import annotations

import ctypes
import datetime
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import UserError

DEFAULT_COLLECTIVE_TIMEOUT_SECONDS = 60
# How long the other ranks wait while rank 0 works alone (costs, a stochastic predictor's evaluation): work
# of minutes, not a hang, so it gets a timeout of its own.
PATIENT_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1


_world = World()
_patient_group: Any = None  # a gloo group with PATIENT_TIMEOUT, for `barrier(patient=True)`


def from_environment() -> World:
    """What torchrun says this process is (RANK, WORLD_SIZE, LOCAL_RANK), without initialising anything."""
    env = os.environ
    try:
        return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None


def current() -> World:
    """The world of the initialised process group; a single process until `init_from_environment`."""
    return _world


def collective_timeout() -> datetime.timedelta:
    """How long a collective may wait for the other ranks before it fails (VPBENCH_COLLECTIVE_TIMEOUT
    seconds): a rank that died or hangs ends the job instead of blocking the others forever."""
    text = os.environ.get("VPBENCH_COLLECTIVE_TIMEOUT") or str(DEFAULT_COLLECTIVE_TIMEOUT_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        raise UserError(f"VPBENCH_COLLECTIVE_TIMEOUT must be a number of seconds, not {text!r}") from None
    return datetime.timedelta(seconds=seconds)


def init_from_environment(device: torch.device) -> World:
    """Join the process group torchrun describes (gloo on a CPU, nccl on CUDA) when there are several
    processes; return this process's World. Idempotent: a second call returns the same world."""
    global _world, _patient_group
    world = from_environment()
    if not world.several or dist.is_initialized():
        _world = world if dist.is_initialized() else World()
        return _world
    _die_with_launcher()
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group(backend, timeout=collective_timeout(), **kwargs)
    _patient_group = dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT)
    _world = world
    return _world


def shutdown() -> None:
    """Leave the process group (nccl warns at exit otherwise)."""
    global _world, _patient_group
    _patient_group = None
    if dist.is_initialized():
        dist.destroy_process_group()
    _world = World()


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over every rank, in place (gloo has no average: callers divide)."""
    if not _world.several:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":  # nccl reduces GPU tensors only
        staged = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(staged, op=dist.ReduceOp.SUM)
        return tensor.copy_(staged)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(patient: bool = False) -> None:
    """Wait for every rank, e.g. until rank 0 has written a checkpoint that the others read next. `patient`:
    the others wait while rank 0 works alone for minutes (PATIENT_TIMEOUT instead of the collective timeout)."""
    if _world.several:
        dist.barrier(group=_patient_group if patient else None)


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank `src`'s `value` on every rank (a picklable object): decisions one rank takes for all, such as
    --precision auto's timing probe, whose outcome could differ between ranks."""
    if not _world.several:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_to_main(value: Any) -> list[Any] | None:
    """Every rank's `value` (picklable), in rank order, on rank 0; None on the others. Over the gloo group, so
    that CPU objects travel under nccl too."""
    if not _world.several:
        return [value]
    box: list[Any] | None = [None] * _world.world_size if _world.is_main else None
    dist.gather_object(value, box, dst=0, group=_patient_group)
    return box


def _die_with_launcher() -> None:
    """Ask Linux to kill this rank when its launcher dies. torchrun starts each rank in a session of its own,
    so killing the launcher's process group (Ctrl-C in a terminal does not reach ranks this way, a SIGKILL of
    the job does) would otherwise leave ranks training and writing on their own."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    parent = os.getppid()
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
