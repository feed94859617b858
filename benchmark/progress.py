"""A rich progress bar that shows the latest loss figures; silent when disabled."""
from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task
        self._fields: dict[str, float] = {}

    def _show(self) -> str:
        return "  ".join(f"{k} {v:.4g}" for k, v in self._fields.items())

    def advance(self, steps: int = 1, **fields: float) -> None:
        self._fields.update(fields)
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, fields=self._show())

    def note(self, **fields: float) -> None:
        self.advance(0, **fields)


@contextlib.contextmanager
def progress_bar(description: str, total: int, completed: int = 0, enabled: bool = True) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[fields]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, fields="")
        yield _Bar(progress, task)
