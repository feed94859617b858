"""Report tables from fake result.json files laid out as `bench run` writes them."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from conftest import HANG_GUARD_SECONDS
from vpbench.errors import UserError
from vpbench.reports.html import write_html
from vpbench.reports.tables import load_results, render, write_report


def result(predictor: str = "convlstm", seed: int = 0, psnr: tuple[float, float] = (22.0, 18.0),
           ssim: tuple[float, float] = (0.9, 0.7), mse: float = 0.01, params: int = 1_234_567,
           **overrides) -> dict:
    """A schema-1 result with 2 future steps; `overrides` replace top-level keys (or eval keys via eval=)."""
    record = {
        "schema": 1,
        "run_id": f"{predictor}-s{seed}",
        "predictor": predictor,
        "dataset": "moving-digits",
        "protocol": {"name": "10to2", "context": 10, "future": 2, "height": 64, "width": 64, "channels": 1},
        "seed": seed,
        "quick": False,
        "preset": "moving-digits",
        "config": {"lr": 0.001, "num_layers": 2},
        "dataset_config": {"seed": seed},
        "created": "2026-11-23T19:00:00+00:00",
        "versions": {"vpbench": "0.1.0", "torch": "2.15.0", "python": "3.11.7"},
        "train": {"iterations": 300, "best_iteration": 250, "best_val_mse": 0.0123, "val_sequences": 64,
                  "wall_seconds": 120.5},
        "eval": {
            "split": "test", "sequences": 1000, "split_size": 1000, "whole_split": True, "checkpoint": "best",
            "per_step": {"mse": [mse * 0.5, mse * 1.5], "mae": [0.02, 0.04], "psnr": list(psnr), "ssim": list(ssim)},
            "mean": {"mse": mse, "mae": 0.03, "psnr": sum(psnr) / 2, "ssim": sum(ssim) / 2},
            "not_measured": {},
            "wall_seconds": 12.0,
        },
        "costs": {"params": params, "trainable_params": params, "ms_per_sequence": 3.2, "device": "cpu (2 threads)"},
    }
    eval_overrides = overrides.pop("eval", {})
    record.update(overrides)
    record["eval"].update(eval_overrides)
    return record


def write(runs: Path, record: dict, name: str = "result.json") -> Path:
    path = runs / record["dataset"] / record["predictor"] / record["run_id"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def table(md: str) -> dict[str, dict[str, str]]:
    """The first markdown table as {row label: {column header: cell}}."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip("|").split(" | ")]
    header = split(lines[0])
    return {cells[0]: dict(zip(header, cells)) for cells in map(split, lines[2:])}


@pytest.fixture
def two(tmp_path: Path) -> Path:
    write(tmp_path, result("convlstm", psnr=(24.0, 19.0), ssim=(0.95, 0.80), mse=0.004))
    write(tmp_path, result("copy-last", psnr=(20.0, 15.5), ssim=(0.85, 0.60), mse=0.02, params=0, train=None,
                           floor=True))
    return tmp_path


def test_two_predictors_give_two_rows_with_first_last_mean(two: Path) -> None:
    frame, warnings = load_results(two)
    assert warnings == [] and len(frame) == 2
    conv = frame.set_index("predictor").loc["convlstm"]
    assert (conv["psnr_first"], conv["psnr_last"], conv["psnr_mean"]) == (24.0, 19.0, 21.5)
    assert conv["per_step"]["psnr"] == [24.0, 19.0]  # curves kept for plots

    md = render(frame, "md")
    assert "### moving-digits — 10to2 (10 → 2, 64×64)" in md
    rows = table(md)
    assert set(rows) == {"convlstm", "copy-last"}
    assert rows["copy-last"]["PSNR↑ t+1"] == "20.00"
    assert rows["copy-last"]["PSNR↑ t+2"] == "15.50"
    assert rows["copy-last"]["PSNR↑ mean"] == "17.75"
    assert rows["copy-last"]["SSIM↑ mean"] == "0.7250"
    assert rows["copy-last"]["params"] == "0"  # a floor: never bold in a cost column
    assert rows["convlstm"]["params"] == "1.23M"  # alone among the others: nothing to beat
    assert rows["convlstm"]["seeds"] == "1"
    assert "2 runs read from" in md and str(two) in md


def test_best_is_bold_respecting_orientation_and_only_best(two: Path) -> None:
    rows = table(render(load_results(two)[0], "md"))
    for col in ["PSNR↑ t+1", "PSNR↑ t+2", "PSNR↑ mean", "SSIM↑ mean", "MSE↓ mean"]:
        assert rows["convlstm"][col].startswith("**"), col  # higher PSNR/SSIM, lower MSE
        assert "**" not in rows["copy-last"][col], col
    assert rows["convlstm"]["MSE↓ mean"] == "**0.004**"
    assert rows["copy-last"]["MSE↓ mean"] == "0.02"


def test_ties_are_all_bold(tmp_path: Path) -> None:
    write(tmp_path, result("convlstm"))
    write(tmp_path, result("predrnn"))
    rows = table(render(load_results(tmp_path)[0], "md"))
    assert rows["convlstm"]["ms/seq"] == rows["predrnn"]["ms/seq"] == "**3.20**"  # same device, same time


def test_floors_are_never_bold_in_cost_columns_but_are_in_quality_columns_they_win(tmp_path: Path) -> None:
    costs = lambda params, ms, flops: {"params": params, "ms_per_sequence": ms, "flops": flops, "device": "cuda",
                                       "peak_memory_bytes": 2**20 * ms, "peak_memory_kind": "CUDA allocator peak"}
    write(tmp_path, result("convlstm", psnr=(20.0, 18.0), costs=costs(1_234_567, 3.0, 5e9)))
    write(tmp_path, result("predrnn", psnr=(21.0, 18.5), costs=costs(2_000_000, 6.0, 9e9)))
    write(tmp_path, result("mean-frame", psnr=(22.0, 22.0), train=None, floor=True, costs=costs(0, 0.02, 0)))
    # written before results recorded the flag: a predictor that needed no training and read nothing
    write(tmp_path, result("copy-last", psnr=(19.0, 12.0), train=None, costs=costs(0, 0.01, 0),
                           eval={"checkpoint": "none (needs no training)"}))
    md = render(load_results(tmp_path)[0], "md")
    rows = table(md)
    assert [rows[p]["params"] for p in ("convlstm", "predrnn", "mean-frame", "copy-last")] == \
        ["**1.23M**", "2.00M", "0", "0"]
    for column, best in (("ms/seq", "**3.00**"), ("FLOPs", "**5.00G**"), ("peak mem", "**3.0 MiB**")):
        assert rows["convlstm"][column] == best, column
        assert "**" not in rows["mean-frame"][column] + rows["copy-last"][column], column
    assert rows["mean-frame"]["PSNR↑ t+1"] == "**22.00**"  # a floor that truly wins a quality column is bold
    assert "Floors (copy-last, mean-frame: they learn nothing) are not bolded in the cost columns " \
           "(params, ms/seq, FLOPs, peak mem)" in md


def test_seeds_aggregate_and_other_configs_are_separate_rows(tmp_path: Path) -> None:
    for seed, psnr in [(0, 20.0), (1, 21.0), (2, 22.0)]:
        write(tmp_path, result(seed=seed, psnr=(psnr, psnr)))
    write(tmp_path, result(seed=0, psnr=(30.0, 30.0), config={"lr": 0.01, "num_layers": 2}, run_id="bigger-lr"))
    md = render(load_results(tmp_path)[0], "md")
    rows = table(md)
    assert set(rows) == {"convlstm (convlstm-s0, convlstm-s1, convlstm-s2)", "convlstm (bigger-lr)"}
    averaged = rows["convlstm (convlstm-s0, convlstm-s1, convlstm-s2)"]
    assert averaged["seeds"] == "3" and averaged["PSNR↑ mean"] == "21.00"
    assert rows["convlstm (bigger-lr)"]["seeds"] == "1"
    assert "mean over those seeds" in md


def test_reruns_of_one_seed_are_listed_not_averaged(tmp_path: Path) -> None:
    write(tmp_path, result(seed=0, psnr=(20.0, 20.0)))
    write(tmp_path, result(seed=0, psnr=(24.0, 24.0), run_id="rerun"))
    rows = table(render(load_results(tmp_path)[0], "md"))
    assert rows["convlstm (convlstm-s0)"]["seeds"] == rows["convlstm (rerun)"]["seeds"] == "1"


def test_a_copied_run_is_read_once(tmp_path: Path) -> None:
    write(tmp_path, result())
    write(tmp_path / "backup", result())
    frame, warnings = load_results(tmp_path)
    assert len(frame) == 1 and len(warnings) == 1 and "already read" in warnings[0]


def test_ms_per_sequence_on_different_devices_is_not_bolded(tmp_path: Path) -> None:
    write(tmp_path, result("a", costs={"params": 10, "ms_per_sequence": 1.0, "device": "cuda"}))
    write(tmp_path, result("b", costs={"params": 20, "ms_per_sequence": 9.0, "device": "cpu (2 threads)"}))
    md = render(load_results(tmp_path)[0], "md")
    rows = table(md)
    assert rows["a"]["ms/seq"] == "1.00" and rows["a"]["params"] == "**10**"
    assert "not comparable" in md


def test_a_nan_seed_is_not_averaged_away(tmp_path: Path) -> None:
    write(tmp_path, result(seed=0, psnr=(20.0, 20.0)))
    bad = result(seed=1, psnr=(22.0, 22.0))
    bad["eval"]["mean"]["psnr"] = None
    write(tmp_path, bad)
    assert table(render(load_results(tmp_path)[0], "md"))["convlstm"]["PSNR↑ mean"] == "—"


def test_quick_and_partial_runs_are_marked_with_footnotes(tmp_path: Path) -> None:
    write(tmp_path, result("convlstm", quick=True, eval={"sequences": 200, "whole_split": False}))
    write(tmp_path, result("copy-last"))
    md = render(load_results(tmp_path)[0], "md")
    rows = table(md)
    assert set(rows) == {"convlstm†¹", "copy-last"}
    assert "† quick schedule — a smoke test, not a paper number" in md
    assert "¹ scored 200 of 1000 test sequences" in md


def test_not_measured_metric_says_so_with_reason(tmp_path: Path) -> None:
    reason = "weights missing: put alexnet-owt-7be5be79.pth under $TORCH_HOME/hub/checkpoints"
    write(tmp_path, result("convlstm", eval={"not_measured": {"lpips": reason}}))
    measured = result("copy-last")
    measured["eval"]["per_step"]["lpips"] = [0.1, 0.2]
    measured["eval"]["mean"]["lpips"] = 0.15
    write(tmp_path, measured)
    md = render(load_results(tmp_path)[0], "md")
    rows = table(md)
    assert rows["convlstm"]["LPIPS↓ t+1"] == rows["convlstm"]["LPIPS↓ mean"] == "not measured¹"
    assert rows["copy-last"]["LPIPS↓ mean"] == "0.1500"  # alone among measured values: nothing to beat
    assert f"¹ LPIPS not measured: {reason}" in md


def test_unknown_metric_is_shown_but_never_bold(tmp_path: Path) -> None:
    for predictor, value in [("a", 0.5), ("b", 0.9)]:
        record = result(predictor)
        record["eval"]["mean"]["detconf"] = value
        write(tmp_path, record)
    rows = table(render(load_results(tmp_path)[0], "md"))
    assert rows["a"]["detconf mean"] == "0.5" and rows["b"]["detconf mean"] == "0.9"
    assert "detconf t+1" not in rows["a"]  # no per-step curve, no empty column


def test_bad_files_are_reported_and_tmp_files_ignored(tmp_path: Path) -> None:
    good = write(tmp_path, result("convlstm"))
    write(tmp_path, result("ghost"), name="result.json.tmp")
    write(tmp_path, result("ghost2"), name=".result.json.abc123.tmp")
    corrupt = tmp_path / "moving-digits" / "broken" / "x" / "result.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"schema": 1, "run_id": ')
    old = write(tmp_path, result("old", schema=0))
    missing = result("partial")
    del missing["eval"]["mean"]
    missing = write(tmp_path, missing)
    short = result("short")
    short["eval"]["per_step"]["psnr"] = [20.0]  # 1 value for 2 future steps
    short = write(tmp_path, short)

    frame, warnings = load_results(tmp_path)
    assert list(frame["predictor"]) == ["convlstm"]
    assert len(warnings) == 4
    for path in (corrupt, old, missing, short):
        assert sum(str(path) in w for w in warnings) == 1
    assert str(good) not in " ".join(warnings)
    assert any("schema 0" in w for w in warnings) and any("'eval.mean'" in w for w in warnings)

    md = write_report(tmp_path, None, "md", on_warning=lambda w: None)
    assert "1 run read from" in md and "ghost" not in md
    assert "4 result files were skipped" in md and str(corrupt) in md


def test_csv_and_json_parse_back(two: Path) -> None:
    frame, _ = load_results(two)
    csv = pd.read_csv(io.StringIO(render(frame, "csv"))).set_index("predictor")
    assert csv.loc["convlstm", "psnr_last"] == 19.0
    assert csv.loc["copy-last", "mse_mean"] == 0.02
    assert csv.loc["copy-last", "params"] == 0
    assert json.loads(csv.loc["convlstm", "per_step"])["ssim"] == [0.95, 0.80]
    assert not csv["quick"].any()

    records = {r["predictor"]: r for r in json.loads(render(frame, "json"))}
    assert records["convlstm"]["psnr_first"] == 24.0
    assert records["copy-last"]["ms_per_sequence"] == 3.2
    assert records["copy-last"]["train_iterations"] is None  # NaN becomes null, not invalid JSON
    assert records["convlstm"]["per_step"]["psnr"] == [24.0, 19.0]
    assert "**" not in render(frame, "csv")


def test_write_report_writes_atomically(two: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "table.md"
    text = write_report(two, out, "md")
    assert out.read_text() == text and "convlstm" in text
    assert sorted(p.name for p in out.parent.iterdir()) == ["table.curves.csv", "table.md"]  # no temporary left


def test_no_results_raise_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no result.json under .*bench run"):
        write_report(tmp_path, None, "md")
    bad = tmp_path / "d" / "p" / "r" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("not json")
    with pytest.raises(UserError, match="no readable result.json"):
        write_report(tmp_path, None, "md", on_warning=lambda w: None)


def test_rows_say_what_each_split_left_out(tmp_path: Path) -> None:
    lost = {"train": [f"person0{i}_boxing_d1_uncomp.avi" for i in range(1, 6)], "test": ["person25_walking_d1_uncomp.avi"]}
    problems = [{"split": split, "file": name, "message": "truncated"} for split, names in lost.items() for name in names]
    write(tmp_path, result("convlstm", data={"left_out": {"train": 5, "val": 0, "test": 1}, "problems": problems}))
    write(tmp_path, result("predrnn", data={"left_out": {"train": 5, "val": 0, "test": 0}, "problems": problems[:5]}))
    write(tmp_path, result("copy-last"))
    md = render(load_results(tmp_path)[0], "md")
    assert set(table(md)) == {"convlstm¹²", "predrnn¹", "copy-last"}
    assert ("¹ 5 train file(s) could not be read and are not in the train split (person01_boxing_d1_uncomp.avi, "
            "person02_boxing_d1_uncomp.avi, person03_boxing_d1_uncomp.avi and 2 more); result.json lists them under "
            "data.problems") in md.splitlines()
    assert ("² 1 test file(s) could not be read and are not in the test split (person25_walking_d1_uncomp.avi); "
            "result.json lists them under data.problems") in md.splitlines()


class _Paragraphs(HTMLParser):
    """The text of every <p>, and the class of the <div> around each <table>."""

    def __init__(self) -> None:
        super().__init__()
        self.paragraphs: list[str] = []
        self.table_boxes: list[str | None] = []
        self._divs: list[str | None] = []  # classes of the open <div>s
        self._in_paragraph = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div":
            self._divs.append(dict(attrs).get("class"))
        elif tag == "table":
            self.table_boxes.append(self._divs[-1] if self._divs else None)
        elif tag == "p":
            self.paragraphs.append("")
            self._in_paragraph = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._divs.pop()
        elif tag == "p":
            self._in_paragraph = False

    def handle_data(self, data: str) -> None:
        if self._in_paragraph:
            self.paragraphs[-1] += data


def test_html_footnotes_are_paragraphs_and_wide_tables_scroll_in_their_own_box(tmp_path: Path) -> None:
    reason = "weights missing"
    write(tmp_path, result("convlstm", quick=True, eval={"sequences": 200, "whole_split": False,
                                                         "not_measured": {"lpips": reason}}))
    write(tmp_path, result("copy-last", params=0, train=None, floor=True))
    parsed = _Paragraphs()
    parsed.feed(write_html(tmp_path, None))
    notes = [p for p in parsed.paragraphs if p.startswith(("†", "¹", "²", "³", "Floors"))]
    assert notes == ["† quick schedule — a smoke test, not a paper number", "¹ scored 200 of 1000 test sequences",
                     f"² LPIPS not measured: {reason}",
                     "Floors (copy-last: they learn nothing) are not bolded in the cost columns (params, ms/seq): "
                     "their costs are no result to beat."]
    assert parsed.table_boxes == ["table-scroll"]
    assert ".table-scroll{overflow-x:auto" in write_html(tmp_path, None)


# `bench report` as a user types it, then which modules it imported: reading results needs no torch.
TORCH_AFTER_BENCH = ("import sys\nsys.argv = ['bench', *sys.argv[1:]]\nfrom vpbench.cli import main\ntry:\n    main()\n"
                     "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
                     "print('TORCH', sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")


@pytest.mark.parametrize("args", [[], ["--out", "report.md"], ["--format", "html", "--out", "page.html"],
                                  ["--format", "csv"], ["--compare-paper", "stip"]])
def test_bench_report_on_existing_results_never_imports_torch(two: Path, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", TORCH_AFTER_BENCH, "report", "--runs", str(two), *args], cwd=two,
                          capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "TORCH []", proc.stdout[-2000:] + proc.stderr
