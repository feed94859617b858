"""Turn the result.json files of finished runs into tables: markdown for papers, csv/json for machines.

The markdown is meant to be pasted into a paper, so it errs on the side of saying too much: quick
(smoke-test) runs, partial test splits and unmeasured metrics are marked on the row, bad files are
listed in the footer instead of being dropped silently, and averages over seeds never hide a NaN.
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd

from vpbench.spec import SPLITS
from vpbench.errors import UserError
from vpbench.metrics.direction import HIGHER_IS_BETTER
from vpbench.result import Costs, Evaluation, Result, ResultError, Summary, TrainRecord
from vpbench.files import write_text_atomic

from .markdown import Notes, cell_text, paragraphs, pipe_table

Format = Literal["md", "csv", "json"]

STATS = ("first", "last", "mean")
PROTOCOL_KEYS = ["dataset", "protocol", "context", "future", "height", "width", "channels"]
# Files each split lost (unreadable, truncated): `left_out_<split>`, marked on the row whatever the split.
LEFT_OUT = [f"left_out_{split}" for split in SPLITS]
# Identity and provenance of a run. Every other numeric column is either `<metric>_<stat>` or a cost.
BASE_COLUMNS = [
    "predictor", "sampling", *PROTOCOL_KEYS, "seed", "quick", "run_id", "preset", "created",
    "split", "sequences", "split_size", "whole_split", "checkpoint",
    "train_iterations", "best_iteration", "best_val_mse", "train_seconds", "eval_seconds", *LEFT_OUT, "floor",
]
# Nested values kept as dicts (json) or JSON strings (csv) so plots can use the per-step curves.
DICT_COLUMNS = ["per_step", "not_measured", "config", "dataset_config", "versions", "weight_notes", "left_out_files",
                "fvd_clips"]
_METRIC_COLUMN = re.compile(r"^(?P<metric>.+)_(?P<stat>first|last|mean)$")


# ---------------------------------------------------------------------------------------- formatting

def _fixed(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}f}"


def _sig4(v: float) -> str:
    return f"{v:.4g}"  # MSE spans decades between datasets; significant digits, not decimals


def _human(v: float) -> str:
    if abs(v) < 1000:
        return f"{v:.0f}"  # exact, so copy-last reads 0
    for unit in "KMGT":
        v /= 1000
        if abs(v) < 999.995 or unit == "T":  # 999_999 must read 1.00M, not 1000.00K
            return f"{v:.2f}{unit}"
    raise AssertionError("unreachable")


def _ms(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"


def _bytes(v: float) -> str:
    return f"{v / 2**30:.2f} GiB" if abs(v) >= 2**30 else f"{v / 2**20:.1f} MiB"


def _better(metric: str) -> str | None:
    """How a metric's column is bolded, from the metric's own direction (None: a reference, never bolded)."""
    return {True: "max", False: "min", None: None}[HIGHER_IS_BETTER[metric]]


# name -> (header, better, formatter, stats shown; None marks a cost). Dict order is column order.
# Metrics and costs missing here are still shown (after these), formatted with _sig4 and never bolded.
COLUMN_STYLES: dict[str, tuple[str, str | None, Callable[[float], str], tuple[str, ...] | None]] = {
    "psnr": ("PSNR", _better("psnr"), _fixed(2), STATS),
    "ssim": ("SSIM", _better("ssim"), _fixed(4), STATS),
    "mse": ("MSE", _better("mse"), _sig4, ("mean",)),
    "params": ("params", "min", _human, None),
    "ms_per_sequence": ("ms/seq", "min", _ms, None),
    "mae": ("MAE", _better("mae"), _sig4, ("mean",)),
    "lpips": ("LPIPS", _better("lpips"), _fixed(4), STATS),
    # Detection on predicted frames (conf, detections >= 0.8 per frame, agreement with the ground-truth frames'
    # detections) and on ground-truth frames: a reference equal for every predictor.
    "det_conf": ("det conf", _better("det_conf"), _fixed(3), ("mean",)),
    "det_high": ("det≥0.8/frame", _better("det_high"), _fixed(2), ("mean",)),
    "det_precision": ("det P", _better("det_precision"), _fixed(3), ("mean",)),
    "det_recall": ("det R", _better("det_recall"), _fixed(3), ("mean",)),
    "det_conf_gt": ("det conf GT", _better("det_conf_gt"), _fixed(3), ("mean",)),
    "det_high_gt": ("det≥0.8/frame GT", _better("det_high_gt"), _fixed(2), ("mean",)),
    "detection": ("detection", None, _sig4, ("mean",)),  # only ever not measured: one cell for all det_* figures
    "fvd": ("FVD", _better("fvd"), _fixed(2), ("mean",)),  # one number per run: `fvd@<convention>_mean`
    "flops": ("FLOPs", "min", _human, None),
    "peak_memory_bytes": ("peak mem", "min", _bytes, None),
}
HIDDEN_IN_MD = {"trainable_params", "fps"}  # params for every current predictor; ms/seq; kept in csv/json


# ---------------------------------------------------------------------------------------- loading

def _rows(result: Result, path: Path) -> list[dict[str, Any]]:
    """The table rows of one result: one, or two for a stochastic predictor (mean and best of N)."""
    identity, protocol, ev = result.identity, result.identity.protocol, result.eval
    train = result.train or TrainRecord()  # None for predictors that need no training
    row: dict[str, Any] = {
        "predictor": identity.predictor, "dataset": identity.dataset, "protocol": protocol.name,
        "context": protocol.context, "future": protocol.future, "height": protocol.height, "width": protocol.width,
        "channels": protocol.channels, "seed": identity.seed, "quick": identity.quick, "run_id": result.run_id,
        "preset": identity.preset, "created": result.created,
        "split": ev.split, "sequences": ev.sequences, "split_size": ev.split_size, "whole_split": ev.whole_split,
        "checkpoint": ev.checkpoint,
        "train_iterations": train.iterations, "best_iteration": train.best_iteration,
        "best_val_mse": train.best_val_mse, "train_seconds": train.wall_seconds, "eval_seconds": ev.wall_seconds,
        # Files that could not be read (corrupt, truncated), per split: its rows say so.
        **{f"left_out_{split}": result.data.left_out.get(split, 0) if result.data else 0 for split in SPLITS},
        "floor": result.is_floor,  # learns nothing: never bolded in the cost columns
    }
    _add_costs(row, result.costs)
    row.update(not_measured=dict(ev.not_measured), weight_notes=_weight_notes(ev.weights or {}),
               left_out_files=_left_out_files(result),
               fvd_clips={name: [block["clips"], block.get("reference_clips")] for name, block in (ev.fvd or {}).items()},
               config=identity.config, dataset_config=identity.dataset_config,
               versions=result.versions.to_dict(), path=str(path))
    if ev.best_of_samples is None:
        return [{**row, "sampling": "", **_metric_columns(ev.summary, ev.not_measured), **_convention_columns(ev),
                 **_fvd_columns(ev)}]
    # A stochastic predictor: one row for the mean over its samples (FVD: all samples pooled), one for the best
    # of N (no FVD: a distance between distributions picks no sample per sequence).
    return [{**row, "sampling": f"mean of {ev.samples}", **_metric_columns(ev.summary, ev.not_measured),
             **_convention_columns(ev), **_fvd_columns(ev)},
            {**row, "sampling": f"best of {ev.samples}", **_metric_columns(ev.best_of_samples, ev.not_measured),
             **_convention_columns(ev, best=True)}]


def _convention_columns(ev: Evaluation, best: bool = False) -> dict[str, Any]:
    """`<metric>@<convention>_<stat>` columns of every reference convention the run was also scored in
    (vpbench.metrics.conventions): printed apart from ours, labelled with the convention."""
    row: dict[str, Any] = {}
    for name in ev.conventions or {}:
        summary = ev.convention(name, best)
        if summary is not None:
            part = _metric_columns(summary, {})
            part.pop("per_step")
            row.update({_METRIC_COLUMN.sub(rf"\g<metric>@{name}_\g<stat>", k): v for k, v in part.items()})
    return row


def _fvd_columns(ev: Evaluation) -> dict[str, Any]:
    """`fvd@<convention>_mean`: one FVD per run and convention (vpbench.metrics.fvd)."""
    return {f"fvd@{name}_mean": float(block["fvd"]) for name, block in (ev.fvd or {}).items()}


def _left_out_files(result: Result) -> dict[str, list[str]]:
    """The files each split lost, by split, as data.problems names them."""
    files: dict[str, list[str]] = {}
    for problem in result.data.problems if result.data else []:
        files.setdefault(problem.split, []).append(problem.file)
    return files


def _weight_notes(weights: dict[str, dict[str, Any]]) -> list[str]:
    """Weights that failed their check but were named by the user: their numbers are marked on the row."""
    return sorted(f"{key} weights vouched for by the user, not verified: {w.get('file')} "
                  f"(sha256 {str(w.get('sha256'))[:12]}…): {w.get('check')}"
                  for key, w in weights.items() if not w.get("verified", True))


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)  # null: written by tools that refuse NaN in JSON


def _metric_columns(summary: Summary, not_measured: dict[str, str]) -> dict[str, Any]:
    """`<metric>_<first|last|mean>` columns and the per-step curves of one summary (`eval` or its best of N)."""
    row: dict[str, Any] = {}
    steps: dict[str, list[float]] = {}
    for metric in [*summary.mean, *(m for m in summary.per_step if m not in summary.mean)]:
        if summary.per_step.get(metric) is not None:
            steps[metric] = [_float(v) for v in summary.per_step[metric]]
        row[f"{metric}_first"] = steps[metric][0] if metric in steps else math.nan
        row[f"{metric}_last"] = steps[metric][-1] if metric in steps else math.nan
        row[f"{metric}_mean"] = _float(summary.mean[metric]) if metric in summary.mean else math.nan
    for metric in not_measured:  # columns exist so the table can say "not measured" rather than "—"
        row.update({f"{metric}_{stat}": math.nan for stat in STATS})
    row["per_step"] = steps
    return row


def _add_costs(row: dict[str, Any], costs: Costs) -> None:
    for key, value in costs.values.items():
        if key in row or key in DICT_COLUMNS or _METRIC_COLUMN.match(key):
            raise ResultError(f"costs.{key} clashes with a column name")
        row[key] = value if isinstance(value, str) else _float(value)


def load_results(runs_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per readable `result.json` under `runs_dir`, and one warning per file that was skipped."""
    runs_dir = Path(runs_dir)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: dict[str, Path] = {}
    # Exact name match: the writer's temporary files (`.result.json.*.tmp`) are never picked up.
    for path in sorted(p for p in runs_dir.rglob("result.json") if p.is_file()):
        try:
            parsed = _rows(Result.read(path), path)
        except (ResultError, OSError) as exc:  # unreadable, not JSON, or not a result to trust: say why
            warnings.append(f"{path}: skipped ({exc.reason if isinstance(exc, ResultError) else exc})")
            continue
        run_id = parsed[0]["run_id"]
        if run_id in seen:  # a copied run directory would otherwise count as an extra seed
            warnings.append(f"{path}: skipped (run_id {run_id} already read from {seen[run_id]})")
            continue
        seen[run_id] = path
        rows.extend(parsed)
    frame = pd.DataFrame(rows, columns=_column_order(rows))
    if len(frame):
        frame = frame.sort_values([*PROTOCOL_KEYS, "predictor", "sampling", "seed", "run_id"], ignore_index=True)
    frame.attrs.update(source=str(runs_dir), warnings=list(warnings))
    return frame, warnings


def _column_order(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(k for row in rows for k in row))
    extra = [n for n in names if n not in BASE_COLUMNS and n not in DICT_COLUMNS and n != "path"]
    metrics = [n for n in extra if _METRIC_COLUMN.match(n)]
    costs = [n for n in extra if n not in metrics]
    return [*BASE_COLUMNS, *_by_rank(metrics), *_by_rank(costs), *DICT_COLUMNS, "path"]


def _by_rank(names: list[str]) -> list[str]:
    """Known names in COLUMN_STYLES's order, first/last/mean within a metric, unknown names after, by name."""
    known = list(COLUMN_STYLES)

    def rank(name: str) -> tuple:
        m = _METRIC_COLUMN.match(name)
        base, stat = (m["metric"], STATS.index(m["stat"])) if m else (name, 0)
        base, _, convention = base.partition("@")  # a reference convention's columns come last, grouped
        return (convention, known.index(base) if base in known else len(known), base, stat)

    return sorted(names, key=rank)


# ---------------------------------------------------------------------------------------- rendering

def render(frame: pd.DataFrame, fmt: Format) -> str:
    """Markdown tables for people, or the flat per-run frame as csv / a json list of records."""
    if fmt == "md":
        return _markdown(frame)
    if fmt == "csv":
        flat = frame.copy()
        for col in [c for c in DICT_COLUMNS if c in flat]:
            flat[col] = flat[col].map(lambda d: json.dumps(d, sort_keys=True))
        return flat.to_csv(index=False)
    if fmt == "json":
        records = [{k: _plain(v) for k, v in rec.items()} for rec in frame.to_dict("records")]
        return json.dumps(records, indent=2) + "\n"
    raise UserError(f"unknown report format {fmt!r}; use md, csv or json")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


# Columns of an aggregated row that describe it rather than hold a metric or cost.
_AGGREGATE_ONLY = {"predictor", "sampling", "curves", "quick", "split", "sequences", "split_size", "whole_split", *LEFT_OUT,
                   "left_out_files", "floor", "seeds", "run_ids", "not_measured", "devices", "weight_notes", "memory_kinds",
                   "fvd_clips"}


@dataclass(frozen=True)
class _Col:
    source: str  # frame column
    header: str
    fmt: Callable[[float], str]
    better: str | None  # "max", "min", or None: never bolded
    metric: str | None  # the metric whose not_measured entry blanks this cell


def _columns(runs: pd.DataFrame, rows: pd.DataFrame) -> list[_Col]:
    """Columns of one table: `runs` are its runs, `rows` the aggregated rows that will be printed."""
    future = int(runs["future"].iloc[0])
    step = {"first": "t+1", "last": f"t+{future}", "mean": "mean"}
    cols: list[_Col] = []
    for name in _by_rank([c for c in rows.columns if c not in _AGGREGATE_ONLY]):
        m = _METRIC_COLUMN.match(name)
        if m:
            base, _, convention = m["metric"].partition("@")
            header, better, fmt, stats = COLUMN_STYLES.get(base, (base, None, _sig4, STATS))
            if stats is None or m["stat"] not in stats:
                continue
            arrow = {"max": "↑", "min": "↓"}.get(better or "", "")
            label = f" ({convention})" if convention else ""
            cols.append(_Col(name, f"{header}{arrow} {step[m['stat']]}{label}", fmt, better, m["metric"]))
        elif name not in HIDDEN_IN_MD and pd.api.types.is_numeric_dtype(rows[name]):
            header, better, fmt, _ = COLUMN_STYLES.get(name, (name, None, _sig4, None))
            cols.append(_Col(name, header, fmt, better, None))
    # A column earns its place if some run has a value or an explanation for not having one. Judged on
    # runs, not rows: a seed's NaN turns its row's mean into "—" but must not make the column vanish.
    return [c for c in cols if runs[c.source].notna().any()
            or (c.metric and runs["not_measured"].map(lambda d: c.metric in d).any())]


def _aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One table row per predictor and configuration, averaging runs that differ only in seed."""
    def comparable(run: pd.Series) -> str:
        # Everything that must match for runs to be averaged; the seed is what may differ.
        strip = lambda d: {k: v for k, v in d.items() if k != "seed"}
        return json.dumps([strip(run["config"]), strip(run["dataset_config"]), run["preset"], run["quick"],
                           run["split"], run["sequences"], run["split_size"], run["checkpoint"],
                           *(run[c] for c in LEFT_OUT)],
                          sort_keys=True, default=str)

    runs = runs.assign(_key=runs.apply(comparable, axis=1))
    numeric = [c for c in runs.columns if c not in BASE_COLUMNS and pd.api.types.is_numeric_dtype(runs[c])]
    groups: list[pd.DataFrame] = []
    for _, group in runs.groupby(["predictor", "sampling", "_key"], sort=True):
        # Re-runs of one seed are not independent samples: list them, do not average them.
        groups.extend([group] if group["seed"].is_unique else [group.iloc[[i]] for i in range(len(group))])
    rows = []
    for group in groups:
        first = group.iloc[0]
        rows.append({
            **{c: first[c] for c in ["predictor", "sampling", "quick", "split", "sequences", "split_size",
                                     "whole_split", *LEFT_OUT, "left_out_files", "floor", "fvd_clips"]},
            "curves": _mean_curves(group["per_step"]),
            **group[numeric].mean(skipna=False).to_dict(),  # one NaN seed makes the mean NaN, not rosier
            "seeds": len(group),
            "run_ids": sorted(group["run_id"]),
            "not_measured": {k: v for d in group["not_measured"] for k, v in d.items()},
            "devices": sorted(set(group["device"].dropna())) if "device" in group else [],
            "weight_notes": sorted({n for notes in group["weight_notes"] for n in notes}),
            "memory_kinds": sorted(set(group["peak_memory_kind"].dropna())) if "peak_memory_kind" in group else [],
        })
    return pd.DataFrame(rows)


def _mean_curves(curves: pd.Series) -> dict[str, list[float]]:
    """Per-step curves averaged over runs (seeds); a metric some run lacks is left out, a NaN stays NaN."""
    shared = set.intersection(*(set(c) for c in curves)) if len(curves) else set()
    return {m: [sum(values) / len(values) for values in zip(*(c[m] for c in curves))] for m in sorted(shared)}


def _table(runs: pd.DataFrame) -> list[str]:
    first = runs.iloc[0]
    rows = _aggregate(runs)
    cols = _columns(runs, rows)
    devices = sorted({d for ds in rows["devices"] for d in ds})
    memory_kinds = sorted({k for ks in rows["memory_kinds"] for k in ks})
    process_memory = _process_memory(memory_kinds)
    notes = Notes()
    # Row labels first, so the honesty marks († and partial splits) get the first footnotes.
    predictors = rows["predictor"].value_counts()
    labels = []
    for _, row in rows.iterrows():
        label = row["predictor"] + (f" ({row['sampling']})" if row["sampling"] else "")
        if predictors[row["predictor"]] > (2 if row["sampling"] else 1):  # several configurations: say which runs each row is
            label += f" ({', '.join(row['run_ids'])})"
        if row["quick"]:
            label += notes.mark("quick schedule — a smoke test, not a paper number", "†")
        if row["split"] != "test":
            label += notes.mark(f"evaluated on the {row['split']} split, not test")
        if not row["whole_split"]:
            label += notes.mark(f"scored {row['sequences']} of {row['split_size']} {row['split']} sequences")
        for note in _left_out_notes(row):
            label += notes.mark(note)
        for note in row["weight_notes"]:
            label += notes.mark(note)
        labels.append(label)
    cells = pd.DataFrame({c.header: [cell_text(v, c.fmt) for v in rows[c.source]] for c in cols}, dtype=object)
    for c in cols:
        measured = rows["not_measured"].map(lambda d: c.metric not in d)
        better = None if c.source == "ms_per_sequence" and len(devices) > 1 else c.better  # not comparable
        better = None if c.source == "peak_memory_bytes" and process_memory else better
        # A floor's 0 params and 0 FLOPs are not a result to beat: costs are compared among the others only.
        eligible = measured & ~rows["floor"].astype(bool) if c.metric is None else measured
        cells[c.header] = _bold_best(list(cells[c.header]), rows[c.source], eligible, better, c.fmt)
        for i in rows.index[~measured]:
            reason = rows.at[i, "not_measured"][c.metric]
            cells.at[i, c.header] = "not measured" + notes.mark(f"{_metric_label(c.metric)} not measured: {reason}")
        if c.metric and c.metric.startswith("fvd@"):
            _fvd_cells(cells, c, rows, notes)
    header = ["predictor", "seeds", *cells.columns]
    body = [[label, str(seeds), *row] for label, seeds, row in zip(labels, rows["seeds"], cells.itertuples(False))]
    size = "×".join(str(first[k]) for k in ("height", "width")) + ("" if first["channels"] == 1 else f"×{first['channels']}")
    lines = [f"### {first['dataset']} — {protocol_title(first, size)}", "",
             *pipe_table(header, body), ""]
    lines += paragraphs([*notes.lines(), *_table_notes(rows, cols, devices, memory_kinds)])
    if int(first["future"]) >= CURVE_TABLE_MIN_FUTURE:
        lines += _curve_table(rows, labels, int(first["future"]))
    return [*lines, ""]


def _metric_label(metric: str) -> str:
    """A metric's name in a footnote: its column header, and the convention of a `<metric>@<convention>` name."""
    base, _, convention = metric.partition("@")
    return COLUMN_STYLES.get(base, (base,))[0] + (f" ({convention})" if convention else "")


def _fvd_cells(cells: pd.DataFrame, col: _Col, rows: pd.DataFrame, notes: _Notes) -> None:
    """An FVD cell says from how many clips it comes, and is marked when they are fewer than its reference's."""
    name = col.metric.partition("@")[2]
    for i in rows.index:
        clips, reference = rows.at[i, "fvd_clips"].get(name, (None, None))
        if clips is None or pd.isna(rows.at[i, col.source]):
            continue
        mark = (notes.mark(f"FVD ({name}) from fewer clips than the {reference} its reference scores")
                if reference is not None and clips < reference else "")
        cells.at[i, col.header] = f"{cells.at[i, col.header]} ({clips} clips){mark}"


def _table_notes(rows: pd.DataFrame, cols: list[_Col], devices: list[str], memory_kinds: list[str]) -> list[str]:
    """What a reader needs below the table besides the numbered footnotes: floors, seeds, devices, memory."""
    texts = [note] if (note := _floor_note(rows, cols)) is not None else []
    if (rows["seeds"] > 1).any():
        texts.append("Rows with seeds > 1 show the mean over those seeds.")
    if any(c.source == "ms_per_sequence" for c in cols) and devices:
        texts.append(f"ms/seq measured on {devices[0]}." if len(devices) == 1 else
                     f"ms/seq measured on different devices ({'; '.join(devices)}): not comparable, not bolded.")
    if any(c.source == "peak_memory_bytes" for c in cols) and memory_kinds:
        texts.append(f"peak mem: {'; '.join(memory_kinds)}" + (": not bolded." if _process_memory(memory_kinds) else "."))
    return texts


def _process_memory(memory_kinds: list[str]) -> bool:
    """A process's peak RSS: the interpreter's own memory dominates it, so it is shown but never compared."""
    return any("RSS" in k for k in memory_kinds)


def _floor_note(rows: pd.DataFrame, cols: list[_Col]) -> str | None:
    """Says which rows are floors and that their costs are never bold, where the table has both."""
    floors = sorted(set(rows.loc[rows["floor"].astype(bool), "predictor"]))
    costs = [c.header for c in cols if c.metric is None and c.better is not None]
    if not floors or not costs:
        return None
    return (f"Floors ({', '.join(floors)}: they learn nothing) are not bolded in the cost columns ({', '.join(costs)}): "
            "their costs are no result to beat.")


SHOWN_FILES = 3  # left-out files a footnote names; result.json's data.problems lists them all, with the reasons


def _left_out_notes(row: pd.Series) -> list[str]:
    """One note per split that lost files: a training file lost changes what was learned as surely as a test file
    lost changes what was scored."""
    notes = []
    for split in SPLITS:
        count, files = row[f"left_out_{split}"], row["left_out_files"].get(split, [])
        if not count:
            continue
        named = ", ".join(files[:SHOWN_FILES]) + (f" and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES
                                                  else "")
        notes.append(f"{count} {split} file(s) could not be read and are not in the {split} split"
                     + (f" ({named})" if named else "") + "; result.json lists them under data.problems")
    return notes


def protocol_title(run: pd.Series, size: str) -> str:
    """"10to10 (10 → 10, 64×64)"; a protocol whose lengths were changed (--context / --horizon) is titled by
    its lengths, so that a heading never reads "10to10" over a 36 → 300 table."""
    named = re.fullmatch(r"(\d+)to(\d+)", run["protocol"])
    if named and (int(named[1]), int(named[2])) != (run["context"], run["future"]):
        return f"{run['context']} → {run['future']}, {size} (protocol {run['protocol']} with other lengths)"
    return f"{run['protocol']} ({run['context']} → {run['future']}, {size})"


def _bold_best(texts: list[str], values: pd.Series, eligible: pd.Series, better: str | None,
               fmt: Callable[[float], str]) -> list[str]:
    """Bold the best of at least two eligible values; compared as printed, so ties are all bold."""
    candidates = values[eligible].dropna()
    if not better or len(candidates) < 2:
        return texts
    best = cell_text(candidates.max() if better == "max" else candidates.min(), fmt)
    return [f"**{t}**" if t == best and ok else t for t, ok in zip(texts, eligible)]


CURVE_TABLE_MIN_FUTURE = 20  # horizons from here on get a per-step table (the long-term figures' numbers)
CURVE_METRICS = ("psnr", "ssim", "lpips")
_CURVE_STEPS = (1, 5, 10, 20, 30, 50, 100, 150, 200, 250, 300, 400, 500, 750, 1000)


def curve_steps(future: int) -> list[int]:
    """The predicted steps a per-step table shows: a fixed ladder up to the horizon, and the last step."""
    return [t for t in _CURVE_STEPS if t < future] + [future]


def _curve_table(rows: pd.DataFrame, labels: list[str], future: int) -> list[str]:
    """One table per metric (PSNR, SSIM, LPIPS) of its value at chosen steps of the rollout, a row per table
    row; the whole curves are in the csv/json output and in `bench report --out`'s `.curves.csv`."""
    steps = curve_steps(future)
    lines: list[str] = []
    for metric in [m for m in CURVE_METRICS if any(m in c for c in rows["curves"])]:
        name, better, fmt, _ = COLUMN_STYLES[metric]
        columns = []
        for step in steps:
            values = pd.Series([c[metric][step - 1] if metric in c else math.nan for c in rows["curves"]])
            columns.append(_bold_best([cell_text(v, fmt) for v in values], values, values.notna(), better, fmt))
        arrow = {"max": "↑", "min": "↓"}[better]
        lines += ["", f"{name}{arrow} per predicted step:", "",
                  *pipe_table(["predictor", *(f"t+{t}" for t in steps)],
                              [[label, *(col[i] for col in columns)] for i, label in enumerate(labels)])]
    return lines


def _markdown(frame: pd.DataFrame) -> str:
    lines: list[str] = []
    if len(frame):
        for _, runs in frame.groupby(PROTOCOL_KEYS, sort=True):
            lines += _table(runs.reset_index(drop=True))
    source = frame.attrs.get("source", "an unknown directory")
    lines.append(f"{len(frame)} run{'s' if len(frame) != 1 else ''} read from `{source}`.")
    skipped = frame.attrs.get("warnings", [])
    if skipped:
        lines.append(f"{len(skipped)} result file{' was' if len(skipped) == 1 else 's were'} skipped "
                     "and {} not in these tables:".format("is" if len(skipped) == 1 else "are"))
        lines += [f"- {w}" for w in skipped]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- writing

def write_report(runs_dir: Path, out: Path | None = None, fmt: Format = "md",
                 on_warning: Callable[[str], None] | None = None,
                 figures: Callable[[pd.DataFrame, Path], str] | None = None) -> str:
    """Load every result under `runs_dir`, render it, write it to `out` (atomically) if given, return it.

    Each unreadable file is passed to `on_warning` (default: printed to stderr) and, in markdown,
    listed under the tables. `figures` (vpbench.reports.figures.figures_section: `bench report` passes it)
    writes a markdown `out`'s figures beside it and returns the section that links them.
    """
    frame, warnings = load_results(runs_dir)
    for warning in warnings:
        (on_warning or (lambda w: print(f"warning: {w}", file=sys.stderr)))(warning)
    if frame.empty:
        if warnings:
            raise UserError(f"no readable result.json under {runs_dir}: {len(warnings)} could not be read, "
                            f"e.g. {warnings[0]}")
        raise UserError(f"no result.json under {runs_dir}; run `bench run` first")
    text = render(frame, fmt)
    if out is not None:
        out = Path(out)
        if fmt == "md":  # the figures' data: every run's whole per-step curves; then the figures
            write_text_atomic(curves_path(out), curves(frame).to_csv(index=False))
            text += figures(frame, out) if figures is not None else ""
        write_text_atomic(out, text)
    return text


def curves_path(report: Path) -> Path:
    """Where `bench report --out report.md` puts the per-step curves: `report.curves.csv`."""
    return report.with_name(f"{report.stem}.curves.csv")


def curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Long format, one line per run, metric and predicted step (1-based): what a per-step plot needs."""
    keys = ["dataset", "protocol", "context", "future", "predictor", "sampling", "seed", "quick", "run_id"]
    records = [{**{k: run[k] for k in keys}, "metric": metric, "step": step, "value": value}
               for _, run in frame.iterrows() for metric, values in run["per_step"].items()
               for step, value in enumerate(values, start=1)]
    return pd.DataFrame(records, columns=[*keys, "metric", "step", "value"])
