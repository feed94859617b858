"""Exceptions out of user code: a plugin's failure is named in one line (which plugin, which method, what it
raised), not shown as a traceback through the harness. `--debug` (or VPBENCH_DEBUG=1) adds the traceback.

A plugin is any registered predictor or dataset whose class is not a built-in (a `--plugin` file or an entry
point). The method is the outermost frame of the traceback that runs plugin code: a frame in the file that
defines a plugin class, or a method called on a plugin instance (an inherited `forward` included), torch's
own frames (`nn.Module.__call__`) left out.
"""
from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from types import TracebackType

from .registry import DATASETS, PREDICTORS

DEBUG_FLAG = "--debug"


def debugging() -> bool:
    return os.environ.get("VPBENCH_DEBUG", "") not in ("", "0")


def take_debug_flag(argv: list[str]) -> list[str]:
    """`--debug` anywhere on the command line (before or after the command) turns VPBENCH_DEBUG on, which the
    processes `--nproc` starts inherit; returns the arguments without it."""
    if DEBUG_FLAG in argv:
        os.environ["VPBENCH_DEBUG"] = "1"
    return [a for a in argv if a != DEBUG_FLAG]


@dataclass(frozen=True)
class PluginClass:
    kind: str  # "predictor" or "dataset"
    name: str
    cls: type
    file: str


def _plugin_classes() -> list[PluginClass]:
    found = []
    for registry in (PREDICTORS, DATASETS):
        # what is registered now; no discovery (it could import and fail again while reporting a failure)
        for name, cls in registry._classes.items():
            if cls.__module__.startswith(f"{registry.builtin_package}."):
                continue
            try:
                file = os.path.realpath(inspect.getfile(cls))
            except (TypeError, OSError):
                file = ""
            found.append(PluginClass(registry.kind, name, cls, file))
    return found


def _frames(tb: TracebackType | None):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def plugin_fault(exc: BaseException) -> str | None:
    """One line naming the plugin and method `exc` came out of; None when no plugin code is in its traceback."""
    plugins = _plugin_classes()
    if not plugins:
        return None
    by_file = {p.file: p for p in plugins if p.file}
    torch = sys.modules.get("torch")
    machinery = os.path.dirname(torch.__file__) if torch is not None and torch.__file__ else None
    for frame in _frames(exc.__traceback__):
        if machinery and frame.f_code.co_filename.startswith(machinery):  # nn.Module.__call__ and the like
            continue
        owner = frame.f_locals.get("self")
        plugin = next((p for p in plugins if owner is not None and isinstance(owner, p.cls)), None)
        if plugin is None:
            plugin = by_file.get(os.path.realpath(frame.f_code.co_filename))
        if plugin is None:
            continue
        method = frame.f_code.co_name
        if owner is not None and not isinstance(owner, plugin.cls):  # a helper class of the plugin's file
            method = f"{type(owner).__name__}.{method}"
        return (f"{plugin.kind} {plugin.name!r} ({plugin.file or plugin.cls.__module__}): {method} raised "
                f"{describe_exception(exc)}")
    return None


def describe_exception(exc: BaseException) -> str:
    """`Type: first line of the message`."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def print_traceback(exc: BaseException) -> None:
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
