"""`bench report --compare-paper`: the published numbers beside our runs, marked comparable or not."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_bench
from test_report import result, table, write
from vpbench.errors import UserError
from vpbench.reports.papers import PAPERS, compare_paper, published_tables
from vpbench.reports.tables import COLUMN_STYLES, load_results

UCF = {"name": "stip", "context": 4, "future": 6, "height": 512, "width": 512, "channels": 3}


def ucf_run(predictor: str, psnr: float, lpips: float, convention: dict | None = None, future: int = 6,
            **overrides) -> dict:
    steps = lambda first, last: [first + (last - first) * i / (future - 1) for i in range(future)]
    per_step = {"mse": steps(0.002, 0.01), "mae": steps(0.02, 0.05), "psnr": steps(psnr, psnr - 8),
                "ssim": steps(0.9, 0.7), "lpips": steps(lpips, lpips + 0.25)}
    ev = {"per_step": per_step, "mean": {k: sum(v) / future for k, v in per_step.items()}, "split_size": 752,
          "sequences": 752}
    if convention is not None:
        ev["conventions"] = {"stip": convention}
    return result(predictor, dataset="ucf-sports", protocol={**UCF, "future": future}, preset="ucf-sports", eval=ev,
                  **overrides)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    stip_scores = {"settings": {}, "per_step": {"psnr": [31.0] * 6, "ssim": [0.95] * 6},
                   "mean": {"psnr": 31.0, "ssim": 0.95}}
    write(tmp_path, ucf_run("stip", 30.5, 0.13, stip_scores))  # the whole test split, in STIP's convention
    quick = ucf_run("strpm", 27.0, 0.22, quick=True)
    quick["eval"].update(sequences=256, whole_split=False)
    write(tmp_path, quick)
    write(tmp_path, ucf_run("copy-last", 24.0, 0.30, stip_scores, train=None))  # not in the paper
    return tmp_path


def test_stip_tables_beside_our_runs_with_marks(runs: Path) -> None:
    md = compare_paper(load_results(runs)[0], "stip")
    ucf = md[md.index("### ucf-sports"):md.index("### human36m")]
    rows = table(ucf)
    paper, ours = rows["STIP — paper¹²³"], rows["stip — ours, run stip-s0"]
    assert paper["PSNR↑ t+1"] == "30.75" and paper["LPIPS↓ t+1"] == "0.1273"  # LPIPS x100 in the paper
    assert paper["PSNR↑ t+6"] == "21.83" and paper["comparable"] == "(published)"
    assert ours["PSNR↑ t+1"] == "31.00"  # read in STIP's convention, which the run was scored in
    assert ours["LPIPS↓ t+1"] == "0.1300" and ours["comparable"] == "yes"
    lines = ucf.splitlines()
    assert lines.index(next(l for l in lines if l.startswith("| stip — ours"))) == \
        lines.index(next(l for l in lines if l.startswith("| STIP — paper"))) + 1  # beside the paper's row
    quick = rows["strpm — ours, run strpm-s0"]
    assert quick["PSNR↑ t+1"] == "27.00" and quick["comparable"].startswith("no ")
    for why in ("scored in vpbench's convention, not stip's", "quick schedule", "scored 256 of 752 test sequences"):
        assert why in ucf
    assert "copy-last — ours, run copy-last-s0" in rows  # our runs of methods the paper lacks come last
    assert "No run of human36m / stip" in md and "Table V (SJTU4K" in md


def test_every_stip_table_puts_a_crevnet_run_beside_the_papers_crevnet_row(tmp_path: Path) -> None:
    write(tmp_path, ucf_run("crevnet", 27.5, 0.25, quick=True))
    md = compare_paper(load_results(tmp_path)[0], "stip")
    lines = md[md.index("### ucf-sports"):md.index("### human36m")].splitlines()
    paper = next(i for i, line in enumerate(lines) if line.startswith("| CrevNet — paper"))
    assert lines[paper + 1].startswith("| crevnet — ours, run crevnet-s0")
    assert all(row.predictor == "crevnet" for t in PAPERS["stip"] for row in t.rows if row.method == "CrevNet")


def test_the_stip_tables_sv2p_rows_name_the_sv2p_predictor() -> None:
    rows = [row for t in PAPERS["stip"] for row in t.rows if row.method == "SV2P"]
    assert len(rows) == 2 and all(row.predictor == "sv2p" for row in rows)  # Tables III and IV


def test_other_protocol_lengths_are_marked(tmp_path: Path) -> None:
    write(tmp_path, ucf_run("stip", 30.0, 0.1, future=10))
    md = compare_paper(load_results(tmp_path)[0], "stip")
    assert "another protocol length: 4 -> 10, the paper's 4 -> 6" in md


def test_published_values_are_known_columns_and_complete() -> None:
    for tables in PAPERS.values():
        for t in tables:
            assert all(c.rsplit("_", 1)[0] in COLUMN_STYLES for c in t.columns)
            assert all(set(row.values) == set(t.columns) for row in t.rows), t.table
    with pytest.raises(UserError, match="publishes no numbers"):
        published_tables("htsrm")
    with pytest.raises(UserError, match="choose from"):
        published_tables("nature")


def test_bench_report_compare_paper(runs: Path) -> None:
    out = run_bench("report", "--runs", str(runs), "--compare-paper", "stip", "--out", "r.md", cwd=runs).stdout
    assert "### ucf-sports — stip (4 → 6)" in out and "beside STIP" in out
    assert (runs / "r.md").read_text().strip() == out.strip()
    bad = run_bench("report", "--runs", str(runs), "--compare-paper", "htsrm", cwd=runs, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def test_everything_printed_cites_sources_a_user_can_reach(runs: Path) -> None:
    """No path of the developers' setup (../shared/papers/...): the paper, its venue and table, public URLs."""
    frame = load_results(runs)[0]
    printed = [compare_paper(frame, paper) for paper, tables in PAPERS.items() if tables]
    for paper in (p for p, tables in PAPERS.items() if not tables):
        with pytest.raises(UserError) as caught:
            published_tables(paper)
        printed.append(str(caught.value))
    for text in printed:
        assert "../shared" not in text and "shared/papers" not in text
    stip, openstl, htsrm = printed
    assert "Source: Z. Chang, X. Zhang, S. Wang, S. Ma and W. Gao" in stip and "https://arxiv.org/abs/2206.04381" in stip
    assert "https://github.com/ZhengChang467/STIPHR" in stip and "Table III (UCF Sports" in stip
    assert "NeurIPS 2023" in openstl and "https://github.com/chengtan9907/OpenSTL/blob/c74deb5" in openstl
    assert "https://github.com/fengpany/Implicit_video_prediction" in htsrm
    assert all("[unverified]" in text for text in (stip, openstl))  # what was not checked, said as such


def test_openstl_rows_of_simvp_translators_take_the_runs_of_that_translator(tmp_path: Path) -> None:
    """OpenSTL's zoo prints one row per SimVP translator: a simvp run sits beside the row of its `translator`."""
    mmnist = {"name": "10to10", "context": 10, "future": 10, "height": 64, "width": 64, "channels": 1}
    per_step = {"mse": [0.01] * 10, "mae": [0.03] * 10, "psnr": [20.0] * 10, "ssim": [0.9] * 10}
    scores = {"per_step": per_step, "mean": {k: v[0] for k, v in per_step.items()}}
    for name, translator in (("van", "van"), ("gsta", "gsta")):
        write(tmp_path, result("simvp", dataset="mmnist", protocol=mmnist, run_id=f"simvp-{name}", eval=scores,
                               config={"translator": translator, "lr": 1e-3}))
    write(tmp_path, result("copy-last", dataset="mmnist", protocol=mmnist, train=None, eval=scores))
    md = compare_paper(load_results(tmp_path)[0], "openstl")
    lines = md[md.index("### mmnist"):md.index("### kth")].splitlines()
    row = lambda start: next(i for i, line in enumerate(lines) if line.startswith(start))
    assert row("| simvp — ours, run simvp-van") == row("| SimVP+VAN — paper") + 1
    assert row("| simvp — ours, run simvp-gsta") == row("| SimVP+gSTA-S — paper") + 1
    assert sum(line.startswith("| simvp — ours") for line in lines) == 2  # each beside its own row only
    assert [l for l in lines if l.startswith("|")][-1].startswith("| copy-last — ours")  # not in the zoo: last
    assert "dataloader_moving_mnist.py, lines 246-263" in md and "MSE 26.73 on one GPU" in md
    assert "| CrevNet — paper" in md and "The page prints no PSNR for CrevNet." in md
