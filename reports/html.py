"""`bench report --format html --out page.html`: the markdown report and its figures as one self-contained page.

The figures are drawn into a temporary folder and embedded as base64 PNG data URIs, so the page is a single
file to send; the markdown is rendered by markdown-it (CommonMark with tables), which rich already brings.
"""
from __future__ import annotations

import base64
import html
import re
import tempfile
from pathlib import Path
from typing import Callable

from markdown_it import MarkdownIt

from vpbench.files import write_text_atomic

from .figures import figures_section
from .tables import write_report

# A table wider than the page (17 columns) scrolls inside its own box, its predictor column kept in view; numbers
# never wrap, headers may.
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
.table-scroll{overflow-x:auto;margin:1em 0}table{border-collapse:collapse;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em}td{white-space:nowrap}th{background:#f4f4f4}
tr>:first-child{position:sticky;left:0;background:#fff}tr>th:first-child{background:#f4f4f4}img{max-width:100%}"""


def _inline_images(page: str, folder: Path) -> str:
    """Every `<img src="relative.png">` under `folder` as a data URI."""
    def embed(match: re.Match) -> str:
        data = base64.b64encode((folder / html.unescape(match[1])).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    return re.sub(r'src="([^"]+\.png)"', embed, page)


def _scrolling_tables(page: str) -> str:
    """Every table inside a box of its own that scrolls sideways, so that a wide one never widens the page."""
    return page.replace("<table>", '<div class="table-scroll"><table>').replace("</table>", "</table></div>")


def write_html(runs_dir: Path, out: Path | None, on_warning: Callable[[str], None] | None = None) -> str:
    """The page for every result under `runs_dir`; written to `out` (atomically) if given, and returned."""
    with tempfile.TemporaryDirectory(prefix="vpbench-report-") as tmp:
        markdown = write_report(runs_dir, Path(tmp) / "report.md", "md", on_warning, figures=figures_section)
        body = MarkdownIt("commonmark").enable("table").render(markdown)
        page = _scrolling_tables(_inline_images(body, Path(tmp)))
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>vpbench report</title>'
            f"<style>{_STYLE}</style></head><body>\n<h1>vpbench report</h1>\n{page}</body></html>\n")
    if out is not None:
        write_text_atomic(Path(out), text)
    return text
