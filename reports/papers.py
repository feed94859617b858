"""Published numbers, typed in from the papers, and `bench report --compare-paper NAME`: a paper's table
beside our runs of the same dataset and protocol, each of our rows marked comparable or saying why not.

Each `PublishedTable` says where its numbers come from in terms a reader can follow up (the paper's authors, title,
venue and year, the table, the public URLs of the paper and of its code), the dataset and protocol they are for in
vpbench's names, and the metric convention they were scored in (vpbench.metrics.conventions).
Values are stored in vpbench's units under vpbench's column names (`psnr_first`, `lpips_last`, ...):
STIP prints LPIPS x100, stored here divided by 100. Our side of a row is read in the paper's convention
when the run was scored in it (`bench run --convention stip`), else in vpbench's, and marked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from vpbench.errors import UserError

from .markdown import Notes, cell_text, paragraphs, pipe_table
from .tables import COLUMN_STYLES


@dataclass(frozen=True)
class PublishedRow:
    method: str  # as the paper names it
    predictor: str | None  # vpbench's predictor, None where vpbench has none
    values: dict[str, float]  # `<metric>_<first|last|mean>` in vpbench's units
    note: str = ""  # a caveat of this row alone


@dataclass(frozen=True)
class PublishedTable:
    paper: str  # short, for the heading: "STIP (Chang et al., 2022)"
    table: str  # where in the paper (or its repository) the numbers are printed
    source: str  # the citation and the public URLs where a reader finds the numbers
    dataset: str  # vpbench's names
    protocol: str
    context: int
    future: int
    convention: str  # vpbench.metrics.conventions name the numbers were scored in
    columns: tuple[str, ...]  # which `<metric>_<stat>` columns the table prints, in order
    rows: tuple[PublishedRow, ...]
    notes: tuple[str, ...] = field(default=())  # what else differs from a vpbench run: the paper's own caveats


def _stip_rows(rows: list[tuple[str, str | None, float, float, float, float]]) -> tuple[PublishedRow, ...]:
    """STIP's tables: PSNR and LPIPS (x100) at the first and the last predicted frame."""
    return tuple(PublishedRow(method, predictor, {"psnr_first": p1, "lpips_first": l1 / 100,
                                                  "psnr_last": p2, "lpips_last": l2 / 100})
                 for method, predictor, p1, l1, p2, l2 in rows)


_STIP_COLUMNS = ("psnr_first", "lpips_first", "psnr_last", "lpips_last")
_STIP = "STIP (Chang et al., 2022)"
_STIP_SOURCE = ("Z. Chang, X. Zhang, S. Wang, S. Ma and W. Gao, \"STIP: A SpatioTemporal Information-Preserving and "
                "Perception-Augmented Model for High-Resolution Video Prediction\", arXiv:2206.04381, 2022, "
                "https://arxiv.org/abs/2206.04381; the authors' code: https://github.com/ZhengChang467/STIPHR")
_STIP_NOTES = (
    "STIP's test() (STIPHR core/trainer.py) scores the first num_save_samples + 1 test batches, not the whole "
    "test split.",
    "STIP's LPIPS: spatial=True, the map's mean, on BGR frames, printed x100 (divided by 100 here); vpbench's "
    "is the spatial average on RGB frames, so LPIPS is close to, not exactly, the paper's.",
    "[unverified] Typed in from a text copy of the arXiv paper that lost the tables' column-group heads: the two "
    "PSNR / LPIPS pairs are read as the first and the last predicted frame; check them against the paper's PDF. A "
    "journal version, if there is one, was not compared.",
)

STIP_TABLES = (
    PublishedTable(
        _STIP, "Table III (UCF Sports, 4 -> 6)", _STIP_SOURCE, "ucf-sports", "stip", 4, 6, "stip",
        _STIP_COLUMNS, _stip_rows([
            ("ConvLSTM", "convlstm", 26.43, 32.20, 17.80, 58.78),
            ("BeyondMSE", None, 26.42, 29.01, 18.46, 55.28),
            ("PredRNN", "predrnn", 27.17, 28.15, 19.65, 55.34),
            ("PredRNN++", "predrnn-pp", 27.26, 26.80, 19.67, 56.79),
            ("SAVP", None, 27.35, 25.45, 19.90, 49.91),
            ("SV2P", None, 27.44, 25.89, 19.97, 51.33),
            ("E3D-LSTM", "e3d-lstm", 27.98, 25.13, 20.33, 47.76),
            ("CycleGAN", None, 27.99, 22.95, 19.99, 44.93),
            ("CrevNet", None, 28.23, 23.87, 20.33, 48.15),
            ("MotionRNN", "motionrnn", 27.67, 24.23, 20.01, 49.20),
            ("STRPM", "strpm", 28.54, 20.69, 20.59, 41.11),
            ("STIP", "stip", 30.75, 12.73, 21.83, 39.67)]), _STIP_NOTES),
    PublishedTable(
        _STIP, "Table IV (Human3.6M, 4 -> 4)", _STIP_SOURCE, "human36m", "stip", 4, 4, "stip",
        _STIP_COLUMNS, _stip_rows([
            ("ConvLSTM", "convlstm", 29.88, 20.52, 26.25, 22.31),
            ("PredRNN", "predrnn", 31.91, 12.62, 25.65, 14.01),
            ("PredRNN++", "predrnn-pp", 32.05, 13.85, 27.51, 14.94),
            ("SV2P", None, 31.93, 13.91, 27.33, 15.02),
            ("HFVP", None, 32.11, 13.41, 27.31, 14.55),
            ("E3D-LSTM", "e3d-lstm", 32.35, 13.12, 27.66, 13.95),
            ("CycleGAN", None, 32.83, 10.18, 28.26, 11.03),
            ("CrevNet", None, 33.18, 11.54, 28.31, 12.37),
            ("MotionRNN", "motionrnn", 32.20, 12.11, 28.03, 13.29),
            ("STRPM", "strpm", 33.32, 9.74, 29.01, 10.44),
            ("STIP", "stip", 36.82, 4.71, 30.99, 10.35)]), _STIP_NOTES),
    PublishedTable(
        _STIP, "Table V (SJTU4K, 4 -> 4)", _STIP_SOURCE, "sjtu4k", "4to4", 4, 4, "stip",
        _STIP_COLUMNS, _stip_rows([
            ("ConvLSTM", "convlstm", 22.74, 67.81, 17.91, 86.84),
            ("PredRNN", "predrnn", 23.25, 66.60, 18.20, 87.04),
            ("PredRNN++", "predrnn-pp", 23.43, 64.07, 18.55, 86.34),
            ("SAVP", None, 23.41, 61.44, 18.63, 80.45),
            ("CrevNet", None, 24.35, 62.31, 19.61, 80.91),
            ("MotionRNN", "motionrnn", 23.47, 65.21, 19.72, 81.39),
            ("STRPM", "strpm", 24.37, 57.12, 19.77, 66.68),
            ("STIP", "stip", 28.91, 29.77, 23.88, 47.56)]), _STIP_NOTES),
)


def _openstl_rows(rows: list[tuple], lpips: bool = False, notes: dict[str, str] | None = None) -> tuple[PublishedRow, ...]:
    names = ("mse_mean", "mae_mean", "ssim_mean", "psnr_mean", *(("lpips_mean",) if lpips else ()))
    return tuple(PublishedRow(method, predictor, dict(zip(names, values)), (notes or {}).get(method, ""))
                 for method, predictor, *values in rows)


_OPENSTL = "OpenSTL (Tan et al., NeurIPS 2023)"
_OPENSTL_COMMIT = "c74deb5d4c3da585291f9f18281f3fefdbba3a54"  # 2024-03-04; the page last changed in 8cac741
_OPENSTL_SOURCE = (
    "C. Tan, S. Li, Z. Gao, W. Guan, Z. Wang, Z. Liu, L. Wu and S. Z. Li, \"OpenSTL: A Comprehensive Benchmark of "
    "Spatio-Temporal Predictive Learning\", NeurIPS 2023 Datasets and Benchmarks Track, "
    "https://arxiv.org/abs/2306.11249; the numbers are its model zoo's, not the paper's tables: "
    f"https://github.com/chengtan9907/OpenSTL/blob/{_OPENSTL_COMMIT}/docs/en/model_zoos/video_benchmarks.md "
    "(also in its documentation, https://openstl.readthedocs.io, Model Zoo)")
_OPENSTL_NOTES = (
    "OpenSTL's MSE and MAE are per-frame sums over the pixels (openstl/core/metrics.py); vpbench's are "
    "per-pixel means: read them in the openstl convention.",
    "OpenSTL reports the best of three trials; methods vpbench lacks (PredNet, PhyDNet, MAU, CrevNet, DMVFN, "
    "TAU) are left out.",
    f"[unverified] Typed in from the model zoo page as of OpenSTL commit {_OPENSTL_COMMIT[:7]} (2024-03-04); a later "
    "version of the page may differ.",
)
_SIMVP_PSNR = ("The STL table prints PSNR 37.97 for SimVP+IncepU; the MetaVP table of the same page prints 21.84 for "
               "the same run (same MSE, MAE, SSIM and checkpoint), which its MSE agrees with: 21.84 is shown.")

OPENSTL_TABLES = (
    PublishedTable(
        _OPENSTL, "model zoo, STL Benchmarks on MMNIST, 200 epochs", _OPENSTL_SOURCE, "mmnist", "10to10", 10, 10, "openstl", ("mse_mean", "mae_mean", "ssim_mean", "psnr_mean"),
        _openstl_rows([
            ("ConvLSTM-S", "convlstm", 29.80, 90.64, 0.9288, 22.10),
            ("PredRNN", "predrnn", 23.97, 72.82, 0.9462, 23.28),
            ("PredRNN++", "predrnn-pp", 22.06, 69.58, 0.9509, 23.65),
            ("MIM", "mim", 22.55, 69.97, 0.9498, 23.56),
            ("E3D-LSTM", "e3d-lstm", 35.97, 78.28, 0.9320, 21.11),
            ("PredRNN.V2", "predrnn-v2", 24.13, 73.73, 0.9453, 23.21),
            ("SimVP+IncepU", "simvp", 32.15, 89.05, 0.9268, 21.84)], notes={"SimVP+IncepU": _SIMVP_PSNR}),
        _OPENSTL_NOTES),
    PublishedTable(
        _OPENSTL, "model zoo, STL Benchmarks on KTH, 100 epochs", _OPENSTL_SOURCE, "kth", "10to20", 10, 20, "openstl", ("mse_mean", "mae_mean", "ssim_mean", "psnr_mean", "lpips_mean"),
        _openstl_rows([
            ("ConvLSTM-S", "convlstm", 47.65, 445.5, 0.8977, 26.99, 0.26686),
            ("E3D-LSTM", "e3d-lstm", 136.40, 892.7, 0.8153, 21.78, 0.48358),
            ("MIM", "mim", 40.73, 380.8, 0.9025, 27.78, 0.18808),
            ("PredRNN", "predrnn", 41.07, 380.6, 0.9097, 27.95, 0.21892),
            ("PredRNN++", "predrnn-pp", 39.84, 370.4, 0.9124, 28.13, 0.19871),
            ("PredRNN.V2", "predrnn-v2", 39.57, 368.8, 0.9099, 28.01, 0.21478),
            ("SimVP+IncepU", "simvp", 41.11, 397.1, 0.9065, 27.46, 0.26496)], lpips=True), _OPENSTL_NOTES),
)

PAPERS: dict[str, tuple[PublishedTable, ...]] = {"stip": STIP_TABLES, "openstl": OPENSTL_TABLES, "htsrm": ()}
# Why a paper has no table here.
NO_NUMBERS = {"htsrm": "HTSRM (\"Hierarchical Temporal-spatial Residual Model for Long-term Video Prediction\") "
                       "publishes no numbers in its public repository, https://github.com/fengpany/"
                       "Implicit_video_prediction (its README gives the training and evaluation commands only), and "
                       "its paper's tables were not at hand to type in or check; nothing is typed in rather than "
                       "guessed"}


def published_tables(paper: str) -> tuple[PublishedTable, ...]:
    if paper not in PAPERS:
        raise UserError(f"no published numbers for {paper!r}; choose from {', '.join(PAPERS)}")
    if not PAPERS[paper]:
        raise UserError(f"--compare-paper {paper}: {NO_NUMBERS[paper]}")
    return PAPERS[paper]


# ---------------------------------------------------------------------------------------- the comparison

def _header(column: str, future: int) -> str:
    metric, stat = column.rsplit("_", 1)
    name, better, _, _ = COLUMN_STYLES[metric]
    arrow = {"max": "↑", "min": "↓"}.get(better or "", "")
    return f"{name}{arrow} " + {"first": "t+1", "last": f"t+{future}", "mean": "mean"}[stat]


def _format(column: str, value: float) -> str:
    return cell_text(value, COLUMN_STYLES[column.rsplit("_", 1)[0]][2])


def _ours(run: pd.Series, table: PublishedTable, notes: Notes) -> tuple[list[str], list[str]]:
    """Our run's cells in the table's columns, and the marks of why it is not comparable (none: it is)."""
    marks: list[str] = []
    cells: list[str] = []
    missing_convention = False
    for column in table.columns:
        metric, stat = column.rsplit("_", 1)
        labelled = f"{metric}@{table.convention}_{stat}"
        if table.convention != "vpbench" and labelled in run and not pd.isna(run[labelled]):
            value = run[labelled]
        else:
            value = run.get(column, math.nan)
            # LPIPS is scored in vpbench's way in every convention: the table's notes say how it differs
            missing_convention |= metric != "lpips" and table.convention != "vpbench"
        cells.append(_format(column, value))
    if missing_convention:
        marks.append(notes.mark(f"scored in vpbench's convention, not {table.convention}'s: run again with "
                                f"--convention {table.convention} to score it there (no retraining)"))
    if (run["context"], run["future"]) != (table.context, table.future):
        marks.append(notes.mark(f"another protocol length: {run['context']} -> {run['future']}, the paper's "
                                f"{table.context} -> {table.future}"))
    if run["quick"]:
        marks.append(notes.mark("quick schedule: a smoke test, not a trained model", "†"))
    if not run["whole_split"]:
        marks.append(notes.mark(f"scored {run['sequences']} of {run['split_size']} test sequences"))
    return cells, marks


def _paper_table(frame: pd.DataFrame, table: PublishedTable) -> list[str]:
    notes = Notes()
    runs = frame[(frame["dataset"] == table.dataset) & (frame["protocol"] == table.protocol)]
    header = ["method", *(_header(c, table.future) for c in table.columns), "comparable"]
    body: list[list[str]] = []
    paper_mark = "".join(notes.mark(n) for n in table.notes)

    def our_rows(predictor: str) -> None:
        for _, run in runs[runs["predictor"] == predictor].iterrows():
            cells, marks = _ours(run, table, notes)
            sampling = f" ({run['sampling']})" if run["sampling"] else ""
            label = f"{run['predictor']}{sampling} — ours, run {run['run_id']}"
            body.append([label, *cells, "no " + "".join(marks) if marks else "yes"])

    for row in table.rows:
        row_mark = notes.mark(row.note) if row.note else ""
        body.append([f"{row.method} — paper{paper_mark}{row_mark}",
                     *(_format(c, row.values.get(c, math.nan)) for c in table.columns), "(published)"])
        if row.predictor is not None:
            our_rows(row.predictor)
    for predictor in sorted(set(runs["predictor"]) - {r.predictor for r in table.rows}):
        our_rows(predictor)
    lines = [f"### {table.dataset} — {table.protocol} ({table.context} → {table.future}) beside {table.paper}, "
             f"{table.table}", "", f"Source: {table.source}.", "",
             f"Published numbers in the `{table.convention}` convention; ours in that convention where the run "
             f"was scored in it.", "",
             *pipe_table(header, body), ""]
    missing = [f"No run of {table.dataset} / {table.protocol} under this runs directory."] if runs.empty else []
    lines += paragraphs([*missing, *notes.lines()])
    return [*lines, ""]


def compare_paper(frame: pd.DataFrame, paper: str) -> str:
    """Markdown: each of the paper's tables, our runs of its dataset and protocol beside its rows."""
    lines: list[str] = [f"## Beside the published numbers: {paper}", ""]
    for table in published_tables(paper):
        lines += _paper_table(frame, table)
    return "\n".join(lines)

