"""The `bench` command as a user meets it: listing, errors, plugins by file and by entry point."""
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import TINY

PLUGIN = textwrap.dedent('''
    from vpbench import Predictor, register_predictor

    @register_predictor("{name}")
    class MeanOfLastTwo(Predictor):
        """Averages the last two context frames (an external plugin)."""
        trainable = False

        def forward(self, context, future):
            frame = context[:, -2:].mean(1, keepdim=True)
            return frame.expand(-1, future, -1, -1, -1)
''')


def test_list_predictors_gives_one_line_each(bench):
    out = bench("list", "predictors").stdout.strip().splitlines()
    names = [line.split()[0] for line in out]
    assert {"convlstm", "copy-last"} <= set(names)
    assert all(len(line.split()) > 2 for line in out)  # name plus a description


def test_list_datasets(bench):
    out = bench("list", "datasets").stdout
    assert "moving-digits" in out and "moving-shapes" in out


@pytest.mark.parametrize("args,message", [
    (["run", "--models", "convlstn", "--dataset", "moving-digits"], "did you mean convlstm"),
    (["run", "--models", "convlstm", "--dataset", "moving-digitz"], "did you mean moving-digits"),
    (["run", "--models", "convlstm", "--dataset", "moving-digits", "--set", "num_hiden=3"], "num_hiden"),
    (["run", "--models", "convlstm", "--dataset", "moving-digits", "--set", "convlstm.num_hidden=lots"],
     "is not a valid int"),
    (["run", "--models", "convlstm", "--dataset", "moving-digits", "--plugin", "nowhere.py"], "plugin file not found"),
    (["run", "--models", "convlstm", "--dataset", "moving-digits", "--protocol", "1to99"], "no protocol '1to99'"),
    (["eval", "--models", "convlstm", "--dataset", "moving-digits", "--checkpoint", "missing.pt"], "not found"),
    (["report", "--runs", "empty"], "no result.json"),
])
def test_bad_input_gives_one_line_and_exit_code_2(bench, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    proc = bench(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("result.json"))


DATASET_PLUGIN = textwrap.dedent('''
    import torch
    from torch.utils.data import Dataset
    from vpbench import Protocol, VideoDataset, register_dataset

    class Bars(Dataset):
        def __init__(self, offset, size):
            self.offset, self.size = offset, size

        def __len__(self):
            return self.size

        def __getitem__(self, index):
            clip = torch.zeros(6, 1, 16, 16)
            start = (self.offset + index) % 12
            for t in range(6):
                clip[t, 0, :, start + t: start + t + 2] = 1.0
            return clip

    @register_dataset("bars")
    class BarsDataset(VideoDataset):
        """A bar sliding right (an external dataset plugin)."""
        protocols = {"3to3": Protocol("3to3", 3, 3, 16, 16, 1)}

        def split(self, name):
            return Bars({"train": 0, "val": 3, "test": 7}[name], {"train": 40, "val": 4, "test": 5}[name])
''')


def test_dataset_from_a_plugin_file_runs(bench, tmp_path):
    plugin = tmp_path / "bars.py"
    plugin.write_text(DATASET_PLUGIN)
    assert "bars" in bench("list", "datasets", "--plugin", str(plugin)).stdout
    bench("run", "--models", "copy-last", "--dataset", "bars", "--out", "R", "--plugin", str(plugin))
    (result,) = (tmp_path / "R" / "bars" / "copy-last").glob("*/result.json")
    record = json.loads(result.read_text())
    assert record["eval"]["sequences"] == 5 and record["eval"]["whole_split"]
    assert record["protocol"]["context"] == 3 and len(record["eval"]["per_step"]["mse"]) == 3


def test_predictor_from_a_plugin_file_runs(bench, tmp_path):
    plugin = tmp_path / "elsewhere" / "my_predictor.py"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN.format(name="mean-last-two"))
    assert "mean-last-two" in bench("list", "predictors", "--plugin", str(plugin)).stdout
    bench("run", "--models", "mean-last-two,copy-last", "--dataset", "moving-digits", "--quick", "--out", "R",
          "--plugin", str(plugin), *TINY)
    (result,) = (tmp_path / "R" / "moving-digits" / "mean-last-two").glob("*/result.json")
    assert json.loads(result.read_text())["eval"]["sequences"] == 16


def test_predictor_from_an_installed_entry_point_runs(bench, tmp_path):
    package = tmp_path / "pkg"
    (package / "vpbench_ep_demo").mkdir(parents=True)
    (package / "vpbench_ep_demo" / "__init__.py").write_text(PLUGIN.format(name="ep-mean"))
    (package / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "vpbench-ep-demo"
        version = "0.0.1"
        [project.entry-points."vpbench.predictors"]
        ep-mean = "vpbench_ep_demo:MeanOfLastTwo"
        [tool.setuptools]
        packages = ["vpbench_ep_demo"]
    '''))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(package)], check=True, capture_output=True)
    env = {"PYTHONPATH": str(target)}
    assert "ep-mean" in bench("list", "predictors", env=env).stdout
    bench("run", "--models", "ep-mean", "--dataset", "moving-digits", "--quick", "--out", "R", *TINY, env=env)
    assert list((tmp_path / "R" / "moving-digits" / "ep-mean").glob("*/result.json"))
