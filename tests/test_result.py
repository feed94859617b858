"""The typed result record: result.json files of every vpbench so far read back unchanged, run ids stay put,
and results this vpbench cannot trust are refused with a reason that names the file."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from vpbench.config import Overrides
from vpbench.devices import ExecutionSettings
from vpbench.errors import UserError
from vpbench.predictor import predictor_overrides, resolve_config
from vpbench.registry import PREDICTORS
from vpbench.result import SCHEMA, Identity, NewerSchemaError, Result, ResultError
from vpbench.runner import IdentitySettings, RunSettings, build_dataset, run_identity, run_models
from vpbench.store import run_id

FIXTURES = Path(__file__).parent / "fixtures"
OLD_RESULTS = sorted((FIXTURES / "results").rglob("result.json"))


def test_the_fixtures_cover_both_old_layouts_and_a_stochastic_run() -> None:
    layouts = {path.relative_to(FIXTURES / "results").parts[0] for path in OLD_RESULTS}
    assert layouts == {"schema1-a8a6bb2", "schema1-5a266fc"}
    assert any("best_of_samples" in json.loads(p.read_text())["eval"] for p in OLD_RESULTS)


@pytest.mark.parametrize("path", OLD_RESULTS, ids=lambda p: "/".join(p.parts[-4:-2]))
def test_an_older_result_reads_and_writes_back_byte_for_byte(path: Path) -> None:
    old = json.loads(path.read_text())
    assert Result.from_dict(old).to_dict() == old
    # Same keys in the same order, written as the store writes them (json.dump, indent 2).
    assert json.dumps(Result.read(path).to_dict(), indent=2) == path.read_text()


def test_keys_older_files_lack_read_as_absent_and_stay_absent() -> None:
    (first,) = [p for p in OLD_RESULTS if "a8a6bb2" in str(p) and "convlstm" in str(p)]
    result = Result.read(first)
    assert result.data is None and result.eval.weights is None and result.eval.forward_seconds is None
    assert result.train is not None and result.train.selected_on is None and result.train.iterations == 10
    assert "flops" not in result.costs.values
    written = result.to_dict()
    assert "data" not in written and "weights" not in written["eval"] and "selected_on" not in written["train"]


def test_keys_of_a_newer_vpbench_within_the_schema_are_kept() -> None:
    old = json.loads(OLD_RESULTS[-1].read_text())
    old["energy"] = {"joules": 3.0}
    old["eval"]["kvd"] = 12.5  # (eval.fvd is vpbench's own since FVD: an object per convention, tested below)
    old["costs"]["joules"] = 3.0
    assert Result.from_dict(old).to_dict() == old


def test_fvd_block_is_kept_and_a_malformed_one_refused() -> None:
    old = json.loads(OLD_RESULTS[-1].read_text())
    old["eval"]["fvd"] = {"mcvd": {"fvd": 12.5, "clips": 7, "reference_clips": None, "settings": {}, "detector": {}}}
    assert Result.from_dict(old).to_dict() == old
    for bad in (12.5, {"mcvd": {"fvd": "12.5", "clips": 7}}, {"mcvd": {"fvd": 12.5}}):
        old["eval"]["fvd"] = bad
        with pytest.raises(ResultError):
            Result.from_dict(old)


def test_floor_is_recorded_and_inferred_for_older_results() -> None:
    # Before the flag, the only predictor that needed no training and read nothing was the copy-last floor.
    assert {(p.parts[-3], Result.read(p).is_floor) for p in OLD_RESULTS} == {
        ("copy-last", True), ("convlstm", False), ("cwvae", False)}
    (copy_last, *_) = [p for p in OLD_RESULTS if "copy-last" in str(p)]
    recorded = {**json.loads(copy_last.read_text()), "floor": False}
    assert Result.from_dict(recorded).is_floor is False and Result.from_dict(recorded).to_dict() == recorded
    with pytest.raises(ResultError, match="floor is not true/false"):
        Result.from_dict({**recorded, "floor": "yes"})


@pytest.mark.parametrize("config", sorted((FIXTURES / "results").rglob("config.json")),
                         ids=lambda p: "/".join(p.parts[-4:-2]))
def test_the_run_id_of_an_existing_run_is_the_hash_of_its_identity(config: Path) -> None:
    identity = json.loads(config.read_text())
    stored = identity.pop("run_id")
    assert stored == config.parent.name == run_id(identity)
    assert run_id(Identity.from_dict(identity).to_dict()) == stored  # through the record, unchanged


def _identity(name: str, overrides: Overrides, settings: IdentitySettings, **dataset_options: object) -> Identity:
    cls = PREDICTORS.get(name)
    dataset = build_dataset("moving-digits", None, {**overrides.dataset, **dataset_options})
    resolved = resolve_config(cls, dataset.presets(), predictor_overrides(cls, overrides), quick=settings.quick)
    return run_identity(cls, dataset, resolved, settings)


def test_the_runner_gives_existing_runs_their_run_ids() -> None:
    """A change to the identity (a key added, renamed or dropped) would orphan every run made before it."""
    copy_last = _identity("copy-last", Overrides(dataset={"test_size": 16}), IdentitySettings())
    assert run_id(copy_last.to_dict()) == "11ca09495280"
    tiny = {"filters": 4, "cell_stoch_size": 4, "cell_deter_size": 16, "cell_embed_size": 16,
            "enc_dense_embed_size": 32, "quick_iterations": 4, "batch_size": 2}
    data = {"context": 12, "future": 4, "train_size": 8, "val_size": 2, "test_size": 2}
    cwvae = _identity("cwvae", Overrides(per_predictor={"cwvae": tiny}, dataset=data),
                      IdentitySettings(quick=True, samples=2))
    assert cwvae.samples == 2 and run_id(cwvae.to_dict()) == "f53f20ccea2e"


def test_bench_report_renders_older_results_as_it_did(bench, tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "results", tmp_path / "runs")
    expected = (FIXTURES / "results.md").read_text().replace("{runs}", "runs")
    assert bench("report", "--runs", "runs").stdout == expected + "\n"


def _written(tmp_path: Path, record: object) -> Path:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(record))
    return path


def test_a_newer_schema_is_refused_by_name_and_file(tmp_path: Path) -> None:
    newer = {**json.loads(OLD_RESULTS[0].read_text()), "schema": SCHEMA + 1}
    with pytest.raises(NewerSchemaError) as caught:
        Result.read(_written(tmp_path, newer))
    assert caught.value.path == tmp_path / "result.json"
    assert str(caught.value).startswith(f"{tmp_path / 'result.json'}: schema {SCHEMA + 1}, written by a newer vpbench")


@pytest.mark.parametrize("text, reason", [
    ('{"schema": 1, "run_id": ', "Expecting value"),
    ("[1, 2]", "not a JSON object"),
    ('{"schema": 0}', "schema 0, this vpbench reads schema 1"),
])
def test_a_file_that_is_not_a_result_says_why(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "result.json"
    path.write_text(text)
    with pytest.raises(ResultError, match=reason) as caught:
        Result.read(path)
    assert str(path) in str(caught.value) and type(caught.value) is ResultError


def test_a_result_is_checked_against_its_protocol(tmp_path: Path) -> None:
    record = json.loads(OLD_RESULTS[0].read_text())
    record["eval"]["per_step"]["psnr"] = record["eval"]["per_step"]["psnr"][:-1]
    with pytest.raises(ResultError, match=r"eval.per_step.psnr is not a list of \d+ values"):
        Result.from_dict(record)


def test_a_run_whose_result_has_a_newer_schema_is_not_redone_silently(tmp_path: Path) -> None:
    overrides = Overrides(dataset={"test_size": 4})
    settings = RunSettings(out=tmp_path, execution=ExecutionSettings(progress=False))
    (first,) = run_models(["copy-last"], "moving-digits", None, overrides, settings, "run")
    path = tmp_path / "moving-digits" / "copy-last" / first["run_id"] / "result.json"
    assert Result.read(path).to_dict() == first
    path.write_text(json.dumps({**first, "schema": SCHEMA + 1}))
    with pytest.raises(UserError, match="written by a newer vpbench.*--force redoes"):
        run_models(["copy-last"], "moving-digits", None, overrides, settings, "run")
    run_models(["copy-last"], "moving-digits", None, overrides, dataclasses.replace(settings, force=True), "run")
    assert json.loads(path.read_text())["schema"] == SCHEMA
