"""The documented workflow on the embedded dataset: run, then report."""
import json

import pytest
from conftest import run_bench


@pytest.mark.slow  # minutes on two cores: `pytest -m "not slow"` skips it, the default command runs it
def test_quick_run_then_report_convlstm_beats_copy_last(tmp_path):
    run_bench("run", "--models", "convlstm,copy-last", "--dataset", "moving-digits", "--quick", "--out", "R", cwd=tmp_path)
    report = run_bench("report", "--runs", "R", "--out", "report.md", cwd=tmp_path).stdout
    rows = [line for line in report.splitlines() if line.startswith("| convlstm") or line.startswith("| copy-last")]
    assert len(rows) == 2, report
    assert "quick schedule" in report and (tmp_path / "report.md").read_text().strip() == report.strip()

    results = {json.loads(p.read_text())["predictor"]: json.loads(p.read_text())
               for p in (tmp_path / "R").rglob("result.json")}
    convlstm, copy_last = results["convlstm"], results["copy-last"]
    for r in results.values():
        assert r["quick"] and r["eval"]["sequences"] == 256 and not r["eval"]["whole_split"]
        assert len(r["eval"]["per_step"]["psnr"]) == 10
    assert convlstm["eval"]["per_step"]["psnr"][0] > copy_last["eval"]["per_step"]["psnr"][0] + 1.0
    assert convlstm["eval"]["checkpoint"] == "best on validation"
