"""The figures of `bench report --out DIR/report.md`, written beside it and linked from it.

Per dataset/protocol: per-step curves of every frame metric the runs have, a qualitative strip of one kept test
sequence (vpbench.keep), the detection overlay when detection was measured, and cost against quality. Each
predictor has one colour in every figure. What a figure cannot show (runs without kept frames, YOLO weights not
at hand) is left out of it and said in a note; a figure with nothing to show is not written.

matplotlib draws through its Agg canvas on Figure objects (never pyplot): no display and no global state.
Every drawing function returns what it drew (legend entries, rows, points), so tests check figures by their
content rather than by pixels.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vpbench.files import KEPT_FRAMES, read_kept, write_bytes_atomic

from .tables import COLUMN_STYLES, PROTOCOL_KEYS, protocol_title

DPI = 300  # print resolution
CURVE_METRICS = ("psnr", "ssim", "lpips", "mse", "mae")
COST_METRICS = ("psnr", "lpips")
COSTS = {"flops": "FLOPs per sequence", "ms_per_sequence": "ms per sequence"}
LOG_X_FROM = 100  # horizons of this many steps or more get a log-scaled step axis
STRIP_STEPS = 10  # predicted columns of a strip at most; longer horizons are spaced
OVERLAY_STEPS = 4  # predicted columns of the detection overlay
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")  # matplotlib's tab10


@dataclass
class Drawn:
    """One written figure: its files (PNG first), a caption, and what it shows."""

    kind: str  # curves, strip, crop strip, detection, cost
    files: list[Path]
    caption: str
    labels: list[str]  # curves: legend entries; strips: row labels; cost: point labels (every panel's, in order)
    columns: list[str] = field(default_factory=list)  # strips: column labels
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProtocolFigures:
    title: str
    drawn: list[Drawn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def predictor_colours(names: Iterable[str]) -> dict[str, str]:
    """One colour per predictor, by sorted name, so that every figure of a report agrees."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(set(names)))}


# ---------------------------------------------------------------------------------------- series

@dataclass
class _Series:
    """The runs of one predictor and configuration (seeds averaged), one sampling (mean or best of N)."""

    predictor: str
    sampling: str  # "", "mean of N" or "best of N"
    runs: pd.DataFrame
    tag: str = ""  # the run ids, where a predictor has several configurations

    @property
    def best_of(self) -> bool:
        return self.sampling.startswith("best")

    def named(self, what: str) -> str:
        return self.predictor + (f" ({what})" if what else "") + (f" [{self.tag}]" if self.tag else "")

    @property
    def label(self) -> str:
        return self.named(self.sampling)

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Mean per-step curve over seeds, and the seeds' min and max where there are several (the band)."""
        curves = np.array([run[metric] for run in self.runs["per_step"] if metric in run], dtype=float)
        if len(curves) < 2:
            return curves.mean(axis=0), None, None
        return curves.mean(axis=0), np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)

    def mean(self, column: str) -> float:
        return float(self.runs[column].mean(skipna=False)) if column in self.runs else float("nan")


def _config_key(run: pd.Series) -> str:
    return json.dumps([run["config"], {k: v for k, v in run["dataset_config"].items() if k != "seed"},
                       run["preset"], run["quick"], run["sequences"]], sort_keys=True, default=str)


def _series(runs: pd.DataFrame) -> list[_Series]:
    runs = runs.assign(_key=runs.apply(_config_key, axis=1))
    configs = runs.groupby("predictor")["_key"].nunique()
    out = []
    for (predictor, key, sampling), group in runs.groupby(["predictor", "_key", "sampling"], sort=True):
        # several configurations of one predictor: say which runs each line is
        tag = ", ".join(sorted(group["run_id"])[:2]) if configs[predictor] > 1 else ""
        out.append(_Series(predictor, sampling, group, tag))
    return sorted(out, key=lambda s: (s.predictor, s.tag, s.best_of))  # mean of N before best of N


# ---------------------------------------------------------------------------------------- figures

def _save(fig: Figure, stem: Path, formats: tuple[str, ...]) -> list[Path]:
    paths = []
    for fmt in ("png", *formats):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=DPI, bbox_inches="tight")
        path = stem.with_name(f"{stem.name}.{fmt}")
        write_bytes_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths


def _metric_title(metric: str) -> str:
    header, better, _, _ = COLUMN_STYLES.get(metric, (metric, None, None, None))
    return header + {"max": " ↑", "min": " ↓"}.get(better or "", "")


def draw_curves(runs: pd.DataFrame, colours: dict[str, str], stem: Path, formats: tuple[str, ...] = ()) -> Drawn | None:
    """Per-step curves, one panel per frame metric, one line per predictor (stochastic: mean of N solid, best of
    N dashed; a band from the lowest to the highest seed where several seeds were run)."""
    series = _series(runs)
    metrics = [m for m in CURVE_METRICS if any(m in c for c in runs["per_step"])]
    if not metrics:
        return None
    future = int(runs["future"].iloc[0])
    log_x = future >= LOG_X_FROM
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    steps = np.arange(1, future + 1)
    labels: list[str] = []
    for ax, metric in zip(axes, metrics):
        for s in series:
            if not any(metric in c for c in s.runs["per_step"]):
                continue
            mean, low, high = s.curve(metric)
            colour = colours[s.predictor]
            ax.plot(steps, mean, color=colour, linestyle="--" if s.best_of else "-", linewidth=1.4, label=s.label)
            if low is not None:
                ax.fill_between(steps, low, high, color=colour, alpha=0.18, linewidth=0)
        ax.set_title(_metric_title(metric))
        ax.set_xlabel("predicted step")
        ax.set_xscale("log" if log_x else "linear")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # a metric only some runs have adds its lines' labels once
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
    banded = any(len(s.runs) > 1 for s in series)
    caption = ("Per-step " + ", ".join(_metric_title(m) for m in metrics) + (" (log step axis)" if log_x else "")
               + ("; bands: lowest to highest seed" if banded else ""))
    return Drawn("curves", _save(fig, stem, formats), caption, labels,
                 details={"metrics": metrics, "log_x": log_x})


def _mean_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: a stochastic predictor's mean-of-N row (its best-of-N row is the same run)."""
    return runs[~runs["sampling"].str.startswith("best")]


def draw_costs(runs: pd.DataFrame, colours: dict[str, str], stem: Path, formats: tuple[str, ...] = ()) -> Drawn | None:
    """Mean PSNR (and LPIPS where measured) against FLOPs and against ms per sequence: one labelled point per
    predictor and configuration (a stochastic one's mean of N), seeds averaged."""
    series = _series(_mean_rows(runs))
    panels = []
    for metric in COST_METRICS:
        for cost in COSTS:
            points = [(s, s.mean(cost), s.mean(f"{metric}_mean")) for s in series]
            points = [(s, x, y) for s, x, y in points if np.isfinite(x) and np.isfinite(y)]
            if points:
                panels.append((metric, cost, points))  # a panel only where some predictor has a point
    if not panels:
        return None
    columns = min(len(panels), 2)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    labels: list[str] = []
    counts: dict[str, int] = {}
    for ax, (metric, cost, points) in zip(axes, panels):
        xs = np.array([x for _, x, _ in points])
        for s, x, y in points:
            ax.scatter([x], [y], color=colours[s.predictor], s=36, zorder=3)
            ax.annotate(s.label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            labels.append(s.label)
        # A log axis where every value is positive and they span decades; copy-last's 0 FLOPs keeps it linear.
        if (xs > 0).all() and xs.max() / xs.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(COSTS[cost])
        ax.set_ylabel(f"mean {_metric_title(metric)}")
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        counts[f"{COLUMN_STYLES[metric][0]} vs {COSTS[cost]}"] = len(points)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    caption = "Cost against quality: " + "; ".join(f"{k} ({n} point{'s' * (n != 1)})" for k, n in counts.items())
    missing = [s.label for s in series if s.label not in labels]
    if missing:
        caption += f"; not shown, no cost or quality figure: {', '.join(missing)}"
    return Drawn("cost", _save(fig, stem, formats), caption, labels, details={"points": counts, "missing": missing})


# ---------------------------------------------------------------------------------------- kept frames

@dataclass
class _Kept:
    predictor: str
    label: str
    run: pd.Series
    arrays: dict[str, np.ndarray]


_NEEDED = {"indices", "steps", "context", "target", "prediction"}


def _kept_runs(runs: pd.DataFrame, notes: list[str]) -> list[_Kept]:
    """Per predictor and configuration the run of the lowest seed, with its kept frames; runs lacking them
    are noted. All from one seed, so that they kept the same sequences."""
    rows = _mean_rows(runs)
    seed = rows["seed"].min()
    out = []
    for s in _series(rows):
        first = s.runs.sort_values("seed").iloc[0]
        if first["seed"] != seed:
            notes.append(f"{s.label}: no run of seed {seed}, so not in the frame figures")
            continue
        path = Path(first["path"]).parent / KEPT_FRAMES
        if not path.is_file():
            notes.append(f"{s.label}: no kept frames ({path} is missing: a run from before vpbench kept them, or "
                         "with eval.keep_sequences=0), so not in the frame figures")
            continue
        try:
            arrays = read_kept(path)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            notes.append(f"{s.label}: kept frames unreadable ({path}: {exc}), so not in the frame figures")
            continue
        if missing := sorted(_NEEDED - set(arrays)):
            notes.append(f"{s.label}: kept frames without {', '.join(missing)} ({path}), so not in the frame figures")
            continue
        samples = int(first["sampling"].split()[-1]) if first["sampling"] else 0
        out.append(_Kept(s.predictor, s.named(f"sample 1 of {samples}" if samples else ""), first, arrays))
    return out


def _common_sequence(kept: list[_Kept], notes: list[str]) -> tuple[int, list[_Kept]]:
    """The first test sequence every run kept (all kept the same ones unless their splits differ)."""
    common = set.intersection(*(set(k.arrays["indices"].tolist()) for k in kept))
    if not common:  # e.g. runs of one seed over differently sized splits: the first run's runs that share it
        common = set(kept[0].arrays["indices"].tolist())
        left = [k for k in kept if not common & set(k.arrays["indices"].tolist())]
        notes += [f"{k.label}: kept other test sequences than {kept[0].label}, so not in the frame figures" for k in left]
        kept = [k for k in kept if k not in left]
        common = set.intersection(*(set(k.arrays["indices"].tolist()) for k in kept))
    return min(common), kept


def _spaced(count: int, most: int) -> list[int]:
    """At most `most` positions of `count`, evenly spaced, the first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, most)})


def _frames(k: _Kept, name: str, sequence: int, prefix: str = "") -> np.ndarray:
    row = int(np.flatnonzero(k.arrays["indices"] == sequence)[0])
    return k.arrays[f"{prefix}{name}"][row]  # [T, H, W, C] uint8


def _show(ax: Any, frame: np.ndarray) -> None:
    if frame.shape[-1] == 1:
        ax.imshow(frame[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(frame, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(rows: list[tuple[str, str, list[np.ndarray]]], columns: list[str], title: str) -> tuple[Figure, np.ndarray]:
    """A figure of frames: one row per (label, colour, frames); None frames leave their cell blank."""
    h, w = next(f for _, _, frames in rows for f in frames if f is not None).shape[:2]
    cell = 1.0  # inches per frame row
    fig = Figure(figsize=(cell * w / h * len(columns) + 1.2, cell * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, (label, colour, frames) in enumerate(rows):
        for c, frame in enumerate(frames):
            ax = axes[r, c]
            if frame is None:  # a blank cell that still carries the row's label
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            _show(ax, frame)
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8, color=colour)
    fig.suptitle(title, fontsize=9)
    return fig, axes


def draw_strip(kept: list[_Kept], sequence: int, colours: dict[str, str], stem: Path, formats: tuple[str, ...] = (),
               crop: bool = False) -> Drawn | None:
    """Ground truth and each predictor's prediction of one kept sequence: the last context frames, then the
    predicted steps (all of them for short horizons, `STRIP_STEPS` spaced ones for long). `crop`: the
    full-resolution windows a large-frame run kept, instead of its scaled-down frames."""
    prefix = "crop_" if crop else ""
    kept = [k for k in kept if f"{prefix}target" in k.arrays]
    if not kept:
        return None
    first = kept[0]
    context_length = int(first.run["context"])
    steps = first.arrays["steps"].tolist()
    chosen = _spaced(len(steps), STRIP_STEPS)
    context = _frames(first, "context", sequence, prefix)
    columns = [f"in {context_length - len(context) + 1 + i}" for i in range(len(context))] + \
              [f"t+{steps[i]}" for i in chosen]
    blank = [None] * len(context)
    rows = [("ground truth", "black", [*context, *(_frames(first, "target", sequence, prefix)[i] for i in chosen)])]
    for k in kept:
        predicted = _frames(k, "prediction", sequence, prefix)
        rows.append((k.label, colours[k.predictor], [*blank, *(predicted[i] for i in chosen)]))
    h, w = rows[0][2][0].shape[:2]
    where = ""
    if crop:
        top, left, ch, cw = first.arrays["crop_box"].tolist()
        full_h, full_w = first.arrays["full_size"].tolist()
        where = f", full-resolution crop rows {top}-{top + ch}, columns {left}-{left + cw} of {full_h}×{full_w}"
    title = f"test sequence {sequence}{where}"
    fig, _ = _grid(rows, columns, title)
    kind = "crop strip" if crop else "strip"
    caption = f"{'Full-resolution crop of test' if crop else 'Test'} sequence {sequence}: ground truth and predictions"
    return Drawn(kind, _save(fig, stem, formats), caption, [r[0] for r in rows], columns,
                 details={"frame_size": (h, w), "sequence": sequence})


# ---------------------------------------------------------------------------------------- detection

def _detector_for(kept: list[_Kept], notes: list[str]) -> Callable[[np.ndarray], list[list[tuple]]] | None:
    """YOLO on uint8 frames [N, H, W, C] -> per frame its boxes (x1, y1, x2, y2, confidence, class name), with
    the weight file the runs recorded; None (and a note saying why) when detection was not measured or that file
    is not here as it was."""
    from vpbench.digest import sha256_file
    from vpbench.result import Result

    records = []
    for k in kept:
        ev = Result.read(Path(k.run["path"])).eval
        if ev.detection is not None and (ev.weights or {}).get("yolo"):
            records.append(ev.weights["yolo"])
    if not records:
        return None
    record = records[0]
    path = Path(str(record.get("file")))
    if not path.is_file():
        notes.append(f"detection overlay missing: the YOLO weights the runs were scored with ({path}) are not on "
                     "this machine; the overlay runs the detector on the kept frames at report time")
        return None
    if record.get("sha256") and sha256_file(path) != record["sha256"]:
        notes.append(f"detection overlay missing: {path} is not the file the runs were scored with (sha256 differs)")
        return None
    import torch

    from vpbench.metrics.yolo import Detector

    detector = Detector.load(path, torch.device("cpu"))

    def detect(frames: np.ndarray) -> list[list[tuple[float, float, float, float, float, str]]]:
        tensor = torch.from_numpy(frames).movedim(-1, 1).float() / 255
        return [[(*box[:5], str(detector.names.get(int(box[5]), int(box[5])))) for box in found.tolist()]
                for found in detector(tensor)]

    return detect


def draw_detection(kept: list[_Kept], sequence: int, colours: dict[str, str], stem: Path,
                   formats: tuple[str, ...], notes: list[str]) -> Drawn | None:
    """The STIP paper's figure: YOLO's boxes and confidences on ground-truth and predicted frames of one kept
    sequence, at `OVERLAY_STEPS` spaced predicted steps."""
    from vpbench.metrics.detection import HIGH_CONF

    kept_with = [k for k in kept if "detection" not in k.run["not_measured"]]
    if not kept_with:
        return None
    detect = _detector_for(kept_with, notes)
    if detect is None:
        return None
    first = kept_with[0]
    steps = first.arrays["steps"].tolist()
    chosen = _spaced(len(steps), OVERLAY_STEPS)
    columns = [f"t+{steps[i]}" for i in chosen]
    rows = [("ground truth", "black", _frames(first, "target", sequence)[chosen])]
    rows += [(k.label, colours[k.predictor], _frames(k, "prediction", sequence)[chosen]) for k in kept_with]
    fig, axes = _grid([(label, colour, list(frames)) for label, colour, frames in rows], columns,
                      f"test sequence {sequence}: YOLO detections (solid: confidence >= {HIGH_CONF})")
    boxes = 0
    for r, (_, _, frames) in enumerate(rows):
        for c, found in enumerate(detect(frames)):
            for x1, y1, x2, y2, conf, name in found:
                axes[r, c].add_patch(_rectangle(x1, y1, x2, y2, solid=conf >= HIGH_CONF))
                axes[r, c].text(x1, y1, f"{name} {conf:.2f}", fontsize=4, color="yellow", va="bottom")
                boxes += 1
    caption = (f"YOLO detections on kept frames of test sequence {sequence}, ground truth and predictions "
               "(detected at report time with the weights the runs were scored with"
               + (", on the scaled-down frames)" if "full_size" in first.arrays else ")"))
    return Drawn("detection", _save(fig, stem, formats), caption, [r[0] for r in rows], columns,
                 details={"boxes": boxes, "sequence": sequence})


def _rectangle(x1: float, y1: float, x2: float, y2: float, solid: bool) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=0.8,
                     linestyle="-" if solid else "--")


# ---------------------------------------------------------------------------------------- the report

def _slug(runs: pd.DataFrame) -> str:
    first = runs.iloc[0]
    lengths = f"{first['context']}to{first['future']}"
    protocol = first["protocol"] + ("" if first["protocol"] == lengths else f"_{lengths}")
    text = f"{first['dataset']}_{protocol}_{first['height']}x{first['width']}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)


def protocol_figures(runs: pd.DataFrame, colours: dict[str, str], folder: Path,
                     formats: tuple[str, ...] = ()) -> ProtocolFigures:
    """Every figure of one dataset/protocol's runs, written to `folder`."""
    first = runs.iloc[0]
    size = "×".join(str(first[k]) for k in ("height", "width"))
    out = ProtocolFigures(f"{first['dataset']} — {protocol_title(first, size)}")
    stem = folder / _slug(runs)
    for drawn in (draw_curves(runs, colours, stem.with_name(stem.name + "_curves"), formats),
                  draw_costs(runs, colours, stem.with_name(stem.name + "_cost"), formats)):
        if drawn is not None:
            out.drawn.append(drawn)
    if not any(d.kind == "cost" for d in out.drawn):
        out.notes.append("no cost-vs-quality figure: no run has FLOPs or ms per sequence next to a PSNR or LPIPS")
    kept = _kept_runs(runs, out.notes)
    if not kept:
        out.notes.append("no frame figures: no run kept frames")
        return out
    sequence, kept = _common_sequence(kept, out.notes)
    for drawn in (draw_strip(kept, sequence, colours, stem.with_name(stem.name + "_strip"), formats),
                  draw_strip(kept, sequence, colours, stem.with_name(stem.name + "_strip_crop"), formats, crop=True),
                  draw_detection(kept, sequence, colours, stem.with_name(stem.name + "_detection"), formats,
                                 out.notes)):
        if drawn is not None:
            out.drawn.append(drawn)
    if not any(d.kind == "detection" for d in out.drawn) and not any("detection overlay" in n for n in out.notes):
        out.notes.append("no detection overlay: detection was not measured on these runs")
    return out


def figures_folder(report: Path) -> Path:
    """Where `bench report --out report.md` puts its figures: `report-figures/` beside it."""
    return report.with_name(f"{report.stem}-figures")


def figures_section(frame: pd.DataFrame, report: Path, formats: tuple[str, ...] = ()) -> str:
    """Write every protocol's figures beside `report`; the markdown section that links them."""
    return write_figures(frame, report, formats)[0]


def write_figures(frame: pd.DataFrame, report: Path, formats: tuple[str, ...] = ()) -> tuple[str, list[ProtocolFigures]]:
    """Write every protocol's figures beside `report`; the markdown section linking them, and what was drawn."""
    folder = figures_folder(report)
    folder.mkdir(parents=True, exist_ok=True)
    colours = predictor_colours(frame["predictor"])
    done = [protocol_figures(runs.reset_index(drop=True), colours, folder, formats)
            for _, runs in frame.groupby(PROTOCOL_KEYS, sort=True)]
    lines = ["", "## Figures", ""]
    for figures in done:
        lines += [f"### {figures.title}", ""]
        for drawn in figures.drawn:
            png, *others = [p.relative_to(report.parent).as_posix() for p in drawn.files]
            also = f" ({', '.join(f'[{Path(o).suffix[1:]}]({o})' for o in others)})" if others else ""
            lines += [f"![{drawn.caption}]({png})", "", f"{drawn.caption}{also}", ""]
        lines += [f"- {note}" for note in figures.notes] + ([""] if figures.notes else [])
    return "\n".join(lines) + "\n", done
