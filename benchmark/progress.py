"""How a run shows its progress on stderr: a rich bar in a terminal, plain lines elsewhere, nothing under --quiet.

A job whose stderr is a file (SLURM, nohup, CI) cannot show a bar, and a silent log for days says nothing; it gets
a line when each run starts, then at most one every `VPBENCH_PROGRESS_SECONDS` (30) with the phase, iteration/total,
the latest losses, iterations per second, elapsed time and ETA, and one when the phase ends.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from typing import Callable, Iterator, Literal, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .errors import UserError

console = Console(stderr=True, soft_wrap=True)

Style = Literal["bar", "lines", "off"]
STYLES = ("bar", "lines", "off")
DEFAULT_LINE_SECONDS = 30.0


def progress_style(quiet: bool, environ: Mapping[str, str] = os.environ, terminal: bool | None = None) -> Style:
    """--quiet: off; else VPBENCH_PROGRESS (bar, lines, off; 1 is bar, 0 is off), else a bar in a terminal and
    lines elsewhere."""
    if quiet:
        return "off"
    asked = (environ.get("VPBENCH_PROGRESS") or "").strip().lower()
    asked = {"1": "bar", "0": "off"}.get(asked, asked)
    if asked in STYLES:
        return asked  # type: ignore[return-value]
    if asked:
        raise UserError(f"VPBENCH_PROGRESS must be bar, lines or off (1: bar, 0: off), not {asked!r}")
    return "bar" if (sys.stderr.isatty() if terminal is None else terminal) else "lines"


def line_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between two progress lines (VPBENCH_PROGRESS_SECONDS, default 30)."""
    text = environ.get("VPBENCH_PROGRESS_SECONDS") or str(DEFAULT_LINE_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise UserError(f"VPBENCH_PROGRESS_SECONDS must be a finite number of seconds >= 0, not {text!r}")
    return seconds


def say(text: str, style: Style) -> None:
    """A progress line (a run starts or ends) in the lines style; nothing under a bar or --quiet."""
    if style == "lines":
        console.print(f"[{datetime.datetime.now():%H:%M:%S}] {text}", markup=False, highlight=False)


def clock_text(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def _figures(fields: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in fields.items())


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task
        self._fields: dict[str, float] = {}

    def advance(self, steps: int = 1, **fields: float) -> None:
        self._fields.update(fields)
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, fields=_figures(self._fields))

    def note(self, **fields: float) -> None:
        self.advance(0, **fields)


class _Lines(_Bar):
    """The bar's calls as a line at most every `every` seconds of `clock`, and one at the end."""

    def __init__(self, description: str, total: int, completed: int, every: float, clock: Callable[[], float],
                 unit: str) -> None:
        super().__init__(None, None)
        self.description, self.total, self.done, self.every, self.clock = description, total, completed, every, clock
        self.unit = unit
        self.first = completed
        self.started = self.last_line = clock()

    def advance(self, steps: int = 1, **fields: float) -> None:
        super().advance(steps, **fields)
        self.done += steps
        if steps and self.clock() - self.last_line >= self.every and self.done < self.total:
            self.line()

    def line(self, ending: bool = False) -> None:
        self.last_line = now = self.clock()
        elapsed = now - self.started
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        left = f"ETA {clock_text((self.total - self.done) / rate)}" if rate > 0 else "ETA unknown"
        parts = [f"{self.description} {self.done}/{self.total}", _figures(self._fields), f"{rate:.3g} {self.unit}/s",
                 f"elapsed {clock_text(elapsed)}", "done" if ending else left]
        say("  ".join(p for p in parts if p), "lines")


@contextlib.contextmanager
def progress_bar(description: str, total: int, completed: int = 0, style: Style | bool = "bar",
                 clock: Callable[[], float] = time.monotonic, unit: str = "it") -> Iterator[_Bar]:
    """What `description` reports as it advances towards `total` (counted in `unit`s): a bar, lines, or nothing
    (style; True is "bar", False "off")."""
    style = {True: "bar", False: "off"}.get(style, style)  # type: ignore[arg-type]
    if style == "lines":
        lines = _Lines(description, total, completed, line_seconds(), clock, unit)
        yield lines
        lines.line(ending=True)
        return
    if style != "bar":
        yield _Bar(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[fields]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, fields="")
        yield _Bar(progress, task)
