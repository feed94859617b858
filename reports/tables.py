"""Turn the result.json files of finished runs into tables: markdown for papers, csv/json for machines.

The markdown is meant to be pasted into a paper, so it errs on the side of saying too much: quick
(smoke-test) runs, partial test splits and unmeasured metrics are marked on the row, bad files are
listed in the footer instead of being dropped silently, and averages over seeds never hide a NaN.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd

from vpbench.errors import UserError

Format = Literal["md", "csv", "json"]

SCHEMA = 1
STATS = ("first", "last", "mean")
PROTOCOL_KEYS = ["dataset", "protocol", "context", "future", "height", "width", "channels"]
# Identity and provenance of a run. Every other numeric column is either `<metric>_<stat>` or a cost.
BASE_COLUMNS = [
    "predictor", *PROTOCOL_KEYS, "seed", "quick", "run_id", "preset", "created",
    "split", "sequences", "split_size", "whole_split", "checkpoint",
    "train_iterations", "best_iteration", "best_val_mse", "train_seconds", "eval_seconds",
]
# Nested values kept as dicts (json) or JSON strings (csv) so plots can use the per-step curves.
DICT_COLUMNS = ["per_step", "not_measured", "config", "dataset_config", "versions", "weight_notes"]
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


# name -> (header, better, formatter, stats shown; None marks a cost). Dict order is column order.
# Metrics and costs missing here are still shown (after these), formatted with _sig4 and never bolded.
KNOWN: dict[str, tuple[str, str | None, Callable[[float], str], tuple[str, ...] | None]] = {
    "psnr": ("PSNR", "max", _fixed(2), STATS),
    "ssim": ("SSIM", "max", _fixed(4), STATS),
    "mse": ("MSE", "min", _sig4, ("mean",)),
    "params": ("params", "min", _human, None),
    "ms_per_sequence": ("ms/seq", "min", _ms, None),
    "mae": ("MAE", "min", _sig4, ("mean",)),
    "lpips": ("LPIPS", "min", _fixed(4), STATS),
    # Detection on predicted frames (conf, detections >= 0.8 per frame, agreement with the ground-truth frames'
    # detections) and on ground-truth frames: a reference equal for every predictor, so never bolded.
    "det_conf": ("det conf", "max", _fixed(3), ("mean",)),
    "det_high": ("det≥0.8/frame", "max", _fixed(2), ("mean",)),
    "det_precision": ("det P", "max", _fixed(3), ("mean",)),
    "det_recall": ("det R", "max", _fixed(3), ("mean",)),
    "det_conf_gt": ("det conf GT", None, _fixed(3), ("mean",)),
    "det_high_gt": ("det≥0.8/frame GT", None, _fixed(2), ("mean",)),
    "detection": ("detection", None, _sig4, ("mean",)),  # only ever not measured: one cell for all det_* figures
    "flops": ("FLOPs", "min", _human, None),
    "peak_memory_bytes": ("peak mem", "min", _bytes, None),
}
HIDDEN_IN_MD = {"trainable_params", "fps"}  # params for every current predictor; ms/seq; kept in csv/json


# ---------------------------------------------------------------------------------------- loading

class _Bad(ValueError):
    """A result.json that parses but cannot be trusted; the message says why."""


def _req(record: dict, dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise _Bad(f"missing key {dotted!r}")
        node = node[part]
    return node


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan  # written by tools that refuse NaN in JSON
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{where} is not a number: {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"{where} is not true/false: {value!r}")
    return value


def _parse(path: Path) -> dict[str, Any]:
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise _Bad("not a JSON object")
    if record.get("schema") != SCHEMA:
        raise _Bad(f"schema {record.get('schema')!r}, this vpbench reads schema {SCHEMA}")
    future = int(_req(record, "protocol.future"))
    train = record.get("train") or {}  # null for predictors that need no training
    row: dict[str, Any] = {
        "predictor": str(_req(record, "predictor")),
        "dataset": str(_req(record, "dataset")),
        "protocol": str(_req(record, "protocol.name")),
        "context": int(_req(record, "protocol.context")),
        "future": future,
        "height": int(_req(record, "protocol.height")),
        "width": int(_req(record, "protocol.width")),
        "channels": int(_req(record, "protocol.channels")),
        "seed": int(_req(record, "seed")),
        "quick": _flag(_req(record, "quick"), "quick"),
        "run_id": str(_req(record, "run_id")),
        "preset": record.get("preset"),
        "created": record.get("created"),
        "split": str(_req(record, "eval.split")),
        "sequences": int(_req(record, "eval.sequences")),
        "split_size": int(_req(record, "eval.split_size")),
        "whole_split": _flag(_req(record, "eval.whole_split"), "eval.whole_split"),
        "checkpoint": record["eval"].get("checkpoint"),
        "train_iterations": train.get("iterations"),
        "best_iteration": train.get("best_iteration"),
        "best_val_mse": train.get("best_val_mse"),
        "train_seconds": train.get("wall_seconds"),
        "eval_seconds": record["eval"].get("wall_seconds"),
    }
    per_step, mean = _req(record, "eval.per_step"), _req(record, "eval.mean")
    not_measured = record["eval"].get("not_measured") or {}
    if not all(isinstance(d, dict) for d in (per_step, mean, not_measured)):
        raise _Bad("eval.per_step, eval.mean and eval.not_measured must be objects")
    steps: dict[str, list[float]] = {}
    for metric in [*mean, *(m for m in per_step if m not in mean)]:
        if metric in not_measured:
            raise _Bad(f"{metric} is both measured and listed under eval.not_measured")
        curve = per_step.get(metric)
        if curve is not None:
            if not isinstance(curve, list) or len(curve) != future:
                # first/last step would silently be the wrong step
                raise _Bad(f"eval.per_step.{metric} is not a list of {future} values (protocol.future)")
            steps[metric] = [_number(v, f"eval.per_step.{metric}") for v in curve]
        row[f"{metric}_first"] = steps[metric][0] if metric in steps else math.nan
        row[f"{metric}_last"] = steps[metric][-1] if metric in steps else math.nan
        row[f"{metric}_mean"] = _number(mean[metric], f"eval.mean.{metric}") if metric in mean else math.nan
    for metric in not_measured:  # columns exist so the table can say "not measured" rather than "—"
        row.update({f"{metric}_{stat}": math.nan for stat in STATS})
    costs = _req(record, "costs")
    if not isinstance(costs, dict):
        raise _Bad("costs must be an object")
    for key, value in costs.items():
        if key in row or key in DICT_COLUMNS or _METRIC_COLUMN.match(key):
            raise _Bad(f"costs.{key} clashes with a column name")
        row[key] = value if isinstance(value, str) else _number(value, f"costs.{key}")
    weights = record["eval"].get("weights") or {}
    # Weights that failed their check but were named by the user: their numbers are marked on the row.
    weight_notes = sorted(f"{key} weights vouched for by the user, not verified: {w.get('file')} "
                          f"(sha256 {str(w.get('sha256'))[:12]}…): {w.get('check')}"
                          for key, w in weights.items() if isinstance(w, dict) and not w.get("verified", True))
    row.update(per_step=steps, not_measured={str(k): str(v) for k, v in not_measured.items()},
               weight_notes=weight_notes, config=record.get("config") or {}, dataset_config=record.get("dataset_config") or {},
               versions=record.get("versions") or {}, path=str(path))
    return row


def load_results(runs_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per readable `result.json` under `runs_dir`, and one warning per file that was skipped."""
    runs_dir = Path(runs_dir)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    seen: dict[str, Path] = {}
    # Exact name match: the writer's temporary files (`.result.json.*.tmp`) are never picked up.
    for path in sorted(p for p in runs_dir.rglob("result.json") if p.is_file()):
        try:
            row = _parse(path)
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError, _Bad: ValueError
            warnings.append(f"{path}: skipped ({exc})")
            continue
        if row["run_id"] in seen:  # a copied run directory would otherwise count as an extra seed
            warnings.append(f"{path}: skipped (run_id {row['run_id']} already read from {seen[row['run_id']]})")
            continue
        seen[row["run_id"]] = path
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_column_order(rows))
    if len(frame):
        frame = frame.sort_values([*PROTOCOL_KEYS, "predictor", "seed", "run_id"], ignore_index=True)
    frame.attrs.update(source=str(runs_dir), warnings=list(warnings))
    return frame, warnings


def _column_order(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(k for row in rows for k in row))
    extra = [n for n in names if n not in BASE_COLUMNS and n not in DICT_COLUMNS and n != "path"]
    metrics = [n for n in extra if _METRIC_COLUMN.match(n)]
    costs = [n for n in extra if n not in metrics]
    return [*BASE_COLUMNS, *_by_rank(metrics), *_by_rank(costs), *DICT_COLUMNS, "path"]


def _by_rank(names: list[str]) -> list[str]:
    """Known names in KNOWN's order, first/last/mean within a metric, unknown names after, by name."""
    known = list(KNOWN)

    def rank(name: str) -> tuple:
        m = _METRIC_COLUMN.match(name)
        base, stat = (m["metric"], STATS.index(m["stat"])) if m else (name, 0)
        return (known.index(base) if base in known else len(known), base, stat)

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
_AGGREGATE_ONLY = {"predictor", "quick", "split", "sequences", "split_size", "whole_split",
                   "seeds", "run_ids", "not_measured", "devices", "weight_notes", "memory_kinds"}


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
            header, better, fmt, stats = KNOWN.get(m["metric"], (m["metric"], None, _sig4, STATS))
            if stats is None or m["stat"] not in stats:
                continue
            arrow = {"max": "↑", "min": "↓"}.get(better or "", "")
            cols.append(_Col(name, f"{header}{arrow} {step[m['stat']]}", fmt, better, m["metric"]))
        elif name not in HIDDEN_IN_MD and pd.api.types.is_numeric_dtype(rows[name]):
            header, better, fmt, _ = KNOWN.get(name, (name, None, _sig4, None))
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
                           run["split"], run["sequences"], run["split_size"], run["checkpoint"]],
                          sort_keys=True, default=str)

    runs = runs.assign(_key=runs.apply(comparable, axis=1))
    numeric = [c for c in runs.columns if c not in BASE_COLUMNS and pd.api.types.is_numeric_dtype(runs[c])]
    groups: list[pd.DataFrame] = []
    for _, group in runs.groupby(["predictor", "_key"], sort=True):
        # Re-runs of one seed are not independent samples: list them, do not average them.
        groups.extend([group] if group["seed"].is_unique else [group.iloc[[i]] for i in range(len(group))])
    rows = []
    for group in groups:
        first = group.iloc[0]
        rows.append({
            **{c: first[c] for c in ["predictor", "quick", "split", "sequences", "split_size", "whole_split"]},
            **group[numeric].mean(skipna=False).to_dict(),  # one NaN seed makes the mean NaN, not rosier
            "seeds": len(group),
            "run_ids": sorted(group["run_id"]),
            "not_measured": {k: v for d in group["not_measured"] for k, v in d.items()},
            "devices": sorted(set(group["device"].dropna())) if "device" in group else [],
            "weight_notes": sorted({n for notes in group["weight_notes"] for n in notes}),
            "memory_kinds": sorted(set(group["peak_memory_kind"].dropna())) if "peak_memory_kind" in group else [],
        })
    return pd.DataFrame(rows)


class _Notes:
    """Footnotes, numbered in order of first use; the same text always gets the same mark."""
    def __init__(self) -> None:
        self.marks: dict[str, str] = {}

    def mark(self, text: str, mark: str | None = None) -> str:
        if text not in self.marks:
            numbered = sum(m[0] in "¹²³⁴⁵⁶⁷⁸⁹" for m in self.marks.values())
            self.marks[text] = mark or str(numbered + 1).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return self.marks[text]


def _cell_text(value: float, fmt: Callable[[float], str]) -> str:
    if pd.isna(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return fmt(value)


def _table(runs: pd.DataFrame) -> list[str]:
    first = runs.iloc[0]
    rows = _aggregate(runs)
    cols = _columns(runs, rows)
    devices = sorted({d for ds in rows["devices"] for d in ds})
    memory_kinds = sorted({k for ks in rows["memory_kinds"] for k in ks})
    process_memory = any("RSS" in k for k in memory_kinds)  # the interpreter's own memory dominates it
    notes = _Notes()
    # Row labels first, so the honesty marks († and partial splits) get the first footnotes.
    predictors = rows["predictor"].value_counts()
    labels = []
    for _, row in rows.iterrows():
        label = row["predictor"]
        if predictors[row["predictor"]] > 1:  # several configurations: say which runs each row is
            label += f" ({', '.join(row['run_ids'])})"
        if row["quick"]:
            label += notes.mark("quick schedule — a smoke test, not a paper number", "†")
        if row["split"] != "test":
            label += notes.mark(f"evaluated on the {row['split']} split, not test")
        if not row["whole_split"]:
            label += notes.mark(f"scored {row['sequences']} of {row['split_size']} {row['split']} sequences")
        for note in row["weight_notes"]:
            label += notes.mark(note)
        labels.append(label)
    cells = pd.DataFrame({c.header: [_cell_text(v, c.fmt) for v in rows[c.source]] for c in cols}, dtype=object)
    for c in cols:
        measured = rows["not_measured"].map(lambda d: c.metric not in d)
        better = None if c.source == "ms_per_sequence" and len(devices) > 1 else c.better  # not comparable
        better = None if c.source == "peak_memory_bytes" and process_memory else better
        values = rows.loc[measured, c.source].dropna()
        if better and len(values) > 1:  # bold among at least two; compare as printed so ties all bold
            best = _cell_text(values.max() if better == "max" else values.min(), c.fmt)
            cells[c.header] = [f"**{t}**" if t == best and ok else t for t, ok in zip(cells[c.header], measured)]
        for i in rows.index[~measured]:
            reason = rows.at[i, "not_measured"][c.metric]
            cells.at[i, c.header] = "not measured" + notes.mark(f"{KNOWN.get(c.metric, (c.metric,))[0]} not measured: {reason}")
    header = ["predictor", "seeds", *cells.columns]
    body = [[label, str(seeds), *row] for label, seeds, row in zip(labels, rows["seeds"], cells.itertuples(False))]
    esc = lambda s: str(s).replace("|", "\\|")
    size = "×".join(str(first[k]) for k in ("height", "width")) + ("" if first["channels"] == 1 else f"×{first['channels']}")
    lines = [f"### {first['dataset']} — {first['protocol']} ({first['context']} → {first['future']}, {size})", "",
             "| " + " | ".join(map(esc, header)) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
             *("| " + " | ".join(map(esc, r)) + " |" for r in body), ""]
    lines += [f"{mark} {text}" for text, mark in notes.marks.items()]
    if (rows["seeds"] > 1).any():
        lines.append("Rows with seeds > 1 show the mean over those seeds.")
    if any(c.source == "ms_per_sequence" for c in cols) and devices:
        lines.append(f"ms/seq measured on {devices[0]}." if len(devices) == 1 else
                     f"ms/seq measured on different devices ({'; '.join(devices)}): not comparable, not bolded.")
    if any(c.source == "peak_memory_bytes" for c in cols) and memory_kinds:
        lines.append(f"peak mem: {'; '.join(memory_kinds)}" + (": not bolded." if process_memory else "."))
    return [*lines, ""]


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
                 on_warning: Callable[[str], None] | None = None) -> str:
    """Load every result under `runs_dir`, render it, write it to `out` (atomically) if given, return it.

    Each unreadable file is passed to `on_warning` (default: printed to stderr) and, in markdown,
    listed under the tables.
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
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # same directory, so os.replace is atomic
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return text
