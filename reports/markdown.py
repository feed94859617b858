"""The markdown pieces every report table is made of: cells, a pipe table, numbered footnotes, paragraphs."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import pandas as pd

__all__ = ["Notes", "cell_text", "escape", "paragraphs", "pipe_table"]

_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class Notes:
    """Footnotes, numbered in order of first use; the same text always gets the same mark."""

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}

    def mark(self, text: str, mark: str | None = None) -> str:
        if text not in self.marks:
            numbered = sum(m[0] in "¹²³⁴⁵⁶⁷⁸⁹" for m in self.marks.values())
            self.marks[text] = mark or str(numbered + 1).translate(_SUPERSCRIPTS)
        return self.marks[text]

    def lines(self) -> list[str]:
        return [f"{mark} {text}" for text, mark in self.marks.items()]


def escape(text: object) -> str:
    return str(text).replace("|", "\\|")  # a literal | would split a markdown cell


def cell_text(value: float, fmt: Callable[[float], str]) -> str:
    """A number as a cell: NaN as a dash, infinities as symbols, anything else through `fmt`."""
    if pd.isna(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return fmt(value)


def pipe_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table's lines: the first column left-aligned, the rest (numbers) right-aligned."""
    return ["| " + " | ".join(map(escape, header)) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
            *("| " + " | ".join(map(escape, row)) + " |" for row in body)]


def paragraphs(texts: list[str]) -> list[str]:
    """Each note a paragraph of its own: lines without a blank line between run together when markdown is
    rendered (the html page, GitHub), which made one paragraph of every footnote."""
    return [line for text in texts for line in (text, "")][:-1]
