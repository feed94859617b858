"""Where a run executes: the settings that say how (device, loader processes, layout, compilation, progress bar),
resolved on each process into its `Runtime`. None of them changes a number, so none enters a run's identity."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

from . import distributed
from .errors import UserError
from .progress import Style


@dataclass(frozen=True)
class ExecutionSettings:
    """How a command asks its runs to execute."""

    device: str = "auto"  # auto, cpu, cuda, cuda:N
    workers: int | None = None  # data-loading processes; None: resolve_workers
    compile: bool = False  # torch.compile of the recurrent step
    channels_last: bool | None = None  # None: where it helps (acceleration.uses_channels_last)
    progress: Style | bool = "bar"  # bar, lines or off (vpbench.progress.progress_style); True: bar, False: off
    wait: bool = True  # for a run that another process holds; False: stop at once (--no-wait)


@dataclass(frozen=True)
class Runtime:
    """ExecutionSettings resolved on this process."""

    device: torch.device
    workers: int
    progress: Style  # "off" on every rank but 0


def resolve_runtime(settings: ExecutionSettings) -> Runtime:
    """The device, loader processes and progress display this process takes (rank 0 only shows progress)."""
    device = resolve_device(settings.device)
    style: Style = {True: "bar", False: "off"}.get(settings.progress, settings.progress)  # type: ignore[arg-type]
    return Runtime(device, resolve_workers(settings.workers, device),
                   style if distributed.from_environment().is_main else "off")


def resolve_device(name: str) -> torch.device:
    """The device asked for; under several processes each rank takes the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but this machine has no CUDA GPU visible to torch")
    world = distributed.from_environment()
    if device.type == "cuda" and world.several:
        if device.index is not None:
            raise UserError(f"--device {name} under several processes: each process takes cuda:LOCAL_RANK; "
                            "use --device cuda (or auto)")
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {world.local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                            "start at most one process per GPU")
        device = torch.device("cuda", world.local_rank)
    return device


def resolve_workers(workers: int | None, device: torch.device) -> int:
    """Loader processes: as asked, else none on a CPU (generating a moving-digits batch takes 1.5% of a
    training step there, and a worker would take a core from the compute) and up to 4 on a GPU."""
    if workers is not None:
        return workers
    return 0 if device.type == "cpu" else max(0, min(4, (os.cpu_count() or 1) - 1))


def describe_device(device: torch.device) -> str:
    """The device as a result names it: the GPU's name, or the CPU with its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"
