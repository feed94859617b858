"""`bench run|train|eval --nproc N`: the same command in N processes on this machine, started by PyTorch's
own launcher (torch.distributed.run, i.e. torchrun --standalone), so that a user never has to learn torchrun
for one node. Several nodes use torchrun itself (README, "Several processes")."""
from __future__ import annotations

import logging
import os
import sys

from .cpu import usable_cpus
from .errors import UserError


def without_nproc(argv: list[str]) -> list[str]:
    """`argv` less its --nproc option: the started processes must not start processes themselves."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m vpbench <argv>` in `nproc` processes and wait for them. Returns 0 when every process
    succeeded, else the exit code of the first that failed (2 for bad input, as in one process): torchrun's
    own is always 1, which would hide bad input. A failing process has printed its one `error:` line; the
    launcher has then ended the others."""
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    if "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--nproc inside processes that torchrun started: torchrun already chose how many")
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # Each process takes its share of the cores (cpu.set_threads); said here too because torchrun otherwise
    # sets OMP_NUM_THREADS=1 with a banner.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // nproc)))
    # The failing rank has printed its one error line; torchrun's log lines about ending the others would
    # only bury it (`torchrun` itself, used directly, keeps them).
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    # The launcher passes a scheduler's signal on to the ranks, which save their resume point (vpbench.stopping),
    # SIGUSR1 (SLURM's warning ahead of the time limit) as well as torchrun's default ones.
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--signals-to-handle",
                                         "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1", "--module", "vpbench",
                                         *without_nproc(argv)])
    try:
        run(args)
    except SignalException as exc:  # the ranks got it too and have said where they stopped
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, first = exc.get_first_failure()
        if first.exitcode > 0:
            return first.exitcode
        # killed by a signal (the kernel's OOM killer, a scheduler): the rank could not say so itself
        print(f"error: rank {rank} was ended by signal {first.signal_name()}", file=sys.stderr)
        return 1
    return 0
