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
from typing import Any

import pandas as pd

from vpbench.errors import UserError

from .markdown import Notes, cell_text, paragraphs, pipe_table
from .tables import COLUMN_STYLES


@dataclass(frozen=True)
class PublishedRow:
    method: str  # as the paper names it
    predictor: str | None  # vpbench's predictor, None where vpbench has none
    values: dict[str, float]  # `<metric>_<first|last|mean>` in vpbench's units; NaN where the paper prints none
    note: str = ""  # a caveat of this row alone
    settings: dict[str, Any] = field(default_factory=dict)  # what a run's config must hold to be this row's method

    def matches(self, run: pd.Series) -> bool:
        """Whether `run` (a results-frame row) is a run of this row's method."""
        config = run.get("config") or {}
        return run["predictor"] == self.predictor and all(config.get(k) == v for k, v in self.settings.items())


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
            ("BeyondMSE", "beyond-mse", 26.42, 29.01, 18.46, 55.28),
            ("PredRNN", "predrnn", 27.17, 28.15, 19.65, 55.34),
            ("PredRNN++", "predrnn-pp", 27.26, 26.80, 19.67, 56.79),
            ("SAVP", "savp", 27.35, 25.45, 19.90, 49.91),
            ("SV2P", "sv2p", 27.44, 25.89, 19.97, 51.33),
            ("E3D-LSTM", "e3d-lstm", 27.98, 25.13, 20.33, 47.76),
            ("CycleGAN", "retro-cyclegan", 27.99, 22.95, 19.99, 44.93),
            ("CrevNet", "crevnet", 28.23, 23.87, 20.33, 48.15),
            ("MotionRNN", "motionrnn", 27.67, 24.23, 20.01, 49.20),
            ("STRPM", "strpm", 28.54, 20.69, 20.59, 41.11),
            ("STIP", "stip", 30.75, 12.73, 21.83, 39.67)]), _STIP_NOTES),
    PublishedTable(
        _STIP, "Table IV (Human3.6M, 4 -> 4)", _STIP_SOURCE, "human36m", "stip", 4, 4, "stip",
        _STIP_COLUMNS, _stip_rows([
            ("ConvLSTM", "convlstm", 29.88, 20.52, 26.25, 22.31),
            ("PredRNN", "predrnn", 31.91, 12.62, 25.65, 14.01),
            ("PredRNN++", "predrnn-pp", 32.05, 13.85, 27.51, 14.94),
            ("SV2P", "sv2p", 31.93, 13.91, 27.33, 15.02),
            ("HFVP", "hfvp", 32.11, 13.41, 27.31, 14.55),
            ("E3D-LSTM", "e3d-lstm", 32.35, 13.12, 27.66, 13.95),
            ("CycleGAN", "retro-cyclegan", 32.83, 10.18, 28.26, 11.03),
            ("CrevNet", "crevnet", 33.18, 11.54, 28.31, 12.37),
            ("MotionRNN", "motionrnn", 32.20, 12.11, 28.03, 13.29),
            ("STRPM", "strpm", 33.32, 9.74, 29.01, 10.44),
            ("STIP", "stip", 36.82, 4.71, 30.99, 10.35)]), _STIP_NOTES),
    PublishedTable(
        _STIP, "Table V (SJTU4K, 4 -> 4)", _STIP_SOURCE, "sjtu4k", "4to4", 4, 4, "stip",
        _STIP_COLUMNS, _stip_rows([
            ("ConvLSTM", "convlstm", 22.74, 67.81, 17.91, 86.84),
            ("PredRNN", "predrnn", 23.25, 66.60, 18.20, 87.04),
            ("PredRNN++", "predrnn-pp", 23.43, 64.07, 18.55, 86.34),
            ("SAVP", "savp", 23.41, 61.44, 18.63, 80.45),
            ("CrevNet", "crevnet", 24.35, 62.31, 19.61, 80.91),
            ("MotionRNN", "motionrnn", 23.47, 65.21, 19.72, 81.39),
            ("STRPM", "strpm", 24.37, 57.12, 19.77, 66.68),
            ("STIP", "stip", 28.91, 29.77, 23.88, 47.56)]), _STIP_NOTES),
)


def _openstl_rows(rows: list[tuple], lpips: bool = False, notes: dict[str, str] | None = None) -> tuple[PublishedRow, ...]:
    """OpenSTL's zoo rows: (method, predictor, MSE, MAE, SSIM, PSNR[, LPIPS]); a SimVP translator's predictor is
    written `simvp/<translator>` (the run's `translator` setting tells them apart); None where the page prints none."""
    names = ("mse_mean", "mae_mean", "ssim_mean", "psnr_mean", *(("lpips_mean",) if lpips else ()))
    published = []
    for method, predictor, *values in rows:
        name, _, translator = (predictor or "").partition("/")
        published.append(PublishedRow(
            method, name or None, {k: math.nan if v is None else v for k, v in zip(names, values)},
            (notes or {}).get(method, ""), {"translator": translator} if translator else {}))
    return tuple(published)


_OPENSTL = "OpenSTL (Tan et al., NeurIPS 2023)"
_OPENSTL_COMMIT = "c74deb5d4c3da585291f9f18281f3fefdbba3a54"  # 2024-03-04; the page last changed in 8cac741
_OPENSTL_SOURCE = (
    "C. Tan, S. Li, Z. Gao, W. Guan, Z. Wang, Z. Liu, L. Wu and S. Z. Li, \"OpenSTL: A Comprehensive Benchmark of "
    "Spatio-Temporal Predictive Learning\", NeurIPS 2023 Datasets and Benchmarks Track, "
    "https://arxiv.org/abs/2306.11249; the numbers are its model zoo's, not the paper's tables: "
    f"https://github.com/chengtan9907/OpenSTL/blob/{_OPENSTL_COMMIT}/docs/en/model_zoos/video_benchmarks.md "
    "(also in its documentation, https://openstl.readthedocs.io, Model Zoo)")
_OPENSTL_CODE = f"https://github.com/chengtan9907/OpenSTL/blob/{_OPENSTL_COMMIT}"
_OPENSTL_NOTES = (
    "OpenSTL's MSE and MAE are per-frame sums over the pixels (openstl/core/metrics.py); vpbench's are "
    "per-pixel means: read them in the openstl convention.",
    "OpenSTL reports \"the best models in three trials\" (the page's words), and its validation split is the "
    "test split: for mmnist the validation loader is built on the test set (openstl/datasets/"
    "dataloader_moving_mnist.py, lines 246-263), for human36m the loader returns the test loader twice "
    "(dataloader_human.py), for kth it returns no validation loader and the experiment substitutes the test loader "
    "(openstl/api/exp.py, line 91); the checkpoint kept as best.ckpt is the one of lowest val_loss "
    "(openstl/utils/parser.py, line 107; openstl/utils/callbacks.py, BestCheckpointCallback), which tools/test.py "
    f"scores ({_OPENSTL_CODE}/openstl/api/exp.py, lines 97-100). Both choose on the numbers they report; vpbench "
    "selects on its validation split and scores the whole test split once.",
    "OpenSTL's own get_started.md: the same SimVP+gSTA run on MMNIST gives MSE 26.73 on one GPU, 30.01 on two and "
    "31.36 on four (linear scaling of the batch across GPUs); rows trained on several GPUs say how many.",
    "Methods vpbench lacks are left out.",
    f"[unverified] Typed in from the model zoo page as of OpenSTL commit {_OPENSTL_COMMIT[:7]} (2024-03-04); a later "
    "version of the page may differ.",
)
_SIMVP_PSNR = ("The STL table prints PSNR {stl} for SimVP+{name}; the MetaVP table of the same page prints {meta} for "
               "the same run (same MSE, MAE, SSIM and checkpoint), which its MSE agrees with: {meta} is shown.")
_CREVNET_PSNR = "The page prints no PSNR for CrevNet."
_TWO_GPUS = "Trained on 2 GPUs, batch 8 each (the page's GPUs column)."
_FOUR_GPUS = "Trained on 4 GPUs, batch 4 each (the STL table's GPUs column; its MetaVP table lists the same numbers " \
             "as 2 GPUs, batch 8 each)."
_METAVP = ("ViT", "Swin", "Uniformer", "MLP-Mixer", "ConvMixer", "Poolformer", "ConvNeXt", "VAN", "HorNet", "MogaNet")

OPENSTL_TABLES = (
    PublishedTable(
        _OPENSTL, "model zoo, STL Benchmarks and MetaVP on MMNIST, 200 epochs", _OPENSTL_SOURCE, "mmnist", "10to10",
        10, 10, "openstl", ("mse_mean", "mae_mean", "ssim_mean", "psnr_mean"),
        _openstl_rows([
            ("ConvLSTM-S", "convlstm", 29.80, 90.64, 0.9288, 22.10),
            ("PredNet", "prednet", 161.38, 201.16, 0.7783, 14.33),
            ("PhyDNet", "phydnet", 28.19, 78.64, 0.9374, 22.62),
            ("PredRNN", "predrnn", 23.97, 72.82, 0.9462, 23.28),
            ("PredRNN++", "predrnn-pp", 22.06, 69.58, 0.9509, 23.65),
            ("MIM", "mim", 22.55, 69.97, 0.9498, 23.56),
            ("MAU", "mau", 26.86, 78.22, 0.9398, 22.76),
            ("E3D-LSTM", "e3d-lstm", 35.97, 78.28, 0.9320, 21.11),
            ("CrevNet", "crevnet", 30.15, 86.28, 0.9350, None),
            ("PredRNN.V2", "predrnn-v2", 24.13, 73.73, 0.9453, 23.21),
            ("DMVFN", "dmvfn", 123.67, 179.96, 0.8140, 16.15),
            ("SimVP+IncepU", "simvp/incepu", 32.15, 89.05, 0.9268, 21.84),
            ("SimVP+gSTA-S", "simvp/gsta", 26.69, 77.19, 0.9402, 22.78),
            ("TAU", "tau", 24.60, 71.93, 0.9454, 23.19),
            ("SimVP+ViT", "simvp/vit", 35.15, 95.87, 0.9139, 21.67),
            ("SimVP+Swin", "simvp/swin", 29.70, 84.05, 0.9331, 22.22),
            ("SimVP+Uniformer", "simvp/uniformer", 30.38, 85.87, 0.9308, 22.13),
            ("SimVP+MLP-Mixer", "simvp/mlpmixer", 29.52, 83.36, 0.9338, 22.22),
            ("SimVP+ConvMixer", "simvp/convmixer", 32.09, 88.93, 0.9259, 21.93),
            ("SimVP+Poolformer", "simvp/poolformer", 31.79, 88.48, 0.9271, 22.03),
            ("SimVP+ConvNeXt", "simvp/convnext", 26.94, 77.23, 0.9397, 22.74),
            ("SimVP+VAN", "simvp/van", 26.10, 76.11, 0.9417, 22.89),
            ("SimVP+HorNet", "simvp/hornet", 29.64, 83.26, 0.9331, 22.26),
            ("SimVP+MogaNet", "simvp/moganet", 25.57, 75.19, 0.9429, 22.99)],
            notes={"SimVP+IncepU": _SIMVP_PSNR.format(name="IncepU", stl=37.97, meta=21.84),
                   "SimVP+gSTA-S": _SIMVP_PSNR.format(name="gSTA-S", stl=38.35, meta=22.78),
                   "CrevNet": _CREVNET_PSNR}),
        _OPENSTL_NOTES),
    PublishedTable(
        _OPENSTL, "model zoo, STL Benchmarks and MetaVP on KTH, 100 epochs", _OPENSTL_SOURCE, "kth", "10to20", 10, 20,
        "openstl", ("mse_mean", "mae_mean", "ssim_mean", "psnr_mean", "lpips_mean"),
        _openstl_rows([
            ("ConvLSTM-S", "convlstm", 47.65, 445.5, 0.8977, 26.99, 0.26686),
            ("E3D-LSTM", "e3d-lstm", 136.40, 892.7, 0.8153, 21.78, 0.48358),
            ("PredNet", "prednet", 152.11, 783.1, 0.8094, 22.45, 0.32159),
            ("PhyDNet", "phydnet", 91.12, 765.6, 0.8322, 23.41, 0.50155),
            ("MAU", "mau", 51.02, 471.2, 0.8945, 26.73, 0.25442),
            ("MIM", "mim", 40.73, 380.8, 0.9025, 27.78, 0.18808),
            ("PredRNN", "predrnn", 41.07, 380.6, 0.9097, 27.95, 0.21892),
            ("PredRNN++", "predrnn-pp", 39.84, 370.4, 0.9124, 28.13, 0.19871),
            ("PredRNN.V2", "predrnn-v2", 39.57, 368.8, 0.9099, 28.01, 0.21478),
            ("DMVFN", "dmvfn", 59.61, 413.2, 0.8976, 26.65, 0.12842),
            ("SimVP+IncepU", "simvp/incepu", 41.11, 397.1, 0.9065, 27.46, 0.26496),
            ("SimVP+gSTA-S", "simvp/gsta", 45.02, 417.8, 0.9049, 27.04, 0.25240),
            ("TAU", "tau", 45.32, 421.7, 0.9086, 27.10, 0.22856),
            ("SimVP+ViT", "simvp/vit", 56.57, 459.3, 0.8947, 26.19, 0.27494),
            ("SimVP+Swin", "simvp/swin", 45.72, 405.7, 0.9039, 27.01, 0.25178),
            ("SimVP+Uniformer", "simvp/uniformer", 44.71, 404.6, 0.9058, 27.16, 0.24174),
            ("SimVP+MLP-Mixer", "simvp/mlpmixer", 57.74, 517.4, 0.8886, 25.72, 0.28799),
            ("SimVP+ConvMixer", "simvp/convmixer", 47.31, 446.1, 0.8993, 26.66, 0.28149),
            ("SimVP+Poolformer", "simvp/poolformer", 45.44, 400.9, 0.9065, 27.22, 0.24763),
            ("SimVP+ConvNeXt", "simvp/convnext", 45.48, 428.3, 0.9037, 26.96, 0.26253),
            ("SimVP+VAN", "simvp/van", 45.05, 409.1, 0.9074, 27.07, 0.23116),
            ("SimVP+HorNet", "simvp/hornet", 46.84, 421.2, 0.9005, 26.80, 0.26921),
            ("SimVP+MogaNet", "simvp/moganet", 42.98, 418.7, 0.9065, 27.16, 0.25146)], lpips=True,
            notes={"E3D-LSTM": _TWO_GPUS, "SimVP+gSTA-S": _FOUR_GPUS, "TAU": _FOUR_GPUS, "SimVP+IncepU": _TWO_GPUS,
                   **{f"SimVP+{m}": _TWO_GPUS for m in _METAVP}}),
        _OPENSTL_NOTES),
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

    def our_rows(selected: pd.DataFrame) -> None:
        for _, run in selected.iterrows():
            cells, marks = _ours(run, table, notes)
            sampling = f" ({run['sampling']})" if run["sampling"] else ""
            label = f"{run['predictor']}{sampling} — ours, run {run['run_id']}"
            body.append([label, *cells, "no " + "".join(marks) if marks else "yes"])

    matched = pd.Series(False, index=runs.index)
    for row in table.rows:
        row_mark = notes.mark(row.note) if row.note else ""
        body.append([f"{row.method} — paper{paper_mark}{row_mark}",
                     *(_format(c, row.values.get(c, math.nan)) for c in table.columns), "(published)"])
        if row.predictor is not None:
            mine = runs.apply(row.matches, axis=1).astype(bool) if not runs.empty else matched
            our_rows(runs[mine])
            matched |= mine
    our_rows(runs[~matched].sort_values("predictor", kind="stable"))  # methods the paper lacks come last
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

