"""`bench profile` needs no data: the protocol (and the options) fix the clip's shape, the clip is random.
The costs themselves are tested in tests/test_costs.py."""
import json

import torch

import pytest

from vpbench.errors import UserError
from vpbench.registry import DATASETS
from vpbench.spec import VideoSpec

REAL = ("sjtu4k", "ucf-sports", "human36m", "mmnist", "kth", "gqn-mazes")


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty data home and HOME: no prepared data (nor cache) can be found."""
    env = {"VPBENCH_DATA": str(tmp_path / "data"), "HOME": str(tmp_path / "home"), "VPBENCH_THREADS": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "data").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    return env


@pytest.mark.parametrize("name", REAL)
def test_real_datasets_give_their_protocol_without_data(no_data, name):
    cls = DATASETS.get(name)
    with pytest.raises(UserError, match="no prepared data"):
        cls.create()  # what `bench profile` used to stop on
    for protocol in cls.protocols.values():
        assert cls.protocol_without_data(protocol.name) == protocol
    first = next(iter(cls.protocols.values()))
    assert cls.protocol_without_data(height=8, future=3).spec == VideoSpec(first.channels, 8, first.width,
                                                                            first.context, 3)
    assert cls.presets_for(first)[0] == f"{name}-{first.name}"


def test_protocol_without_data_is_what_the_built_dataset_uses():
    cls = DATASETS.get("moving-digits")
    options = {"context": 3, "future": 2, "height": 40, "test_size": 1}
    built = cls.create("36to300", **options)
    assert cls.protocol_without_data("36to300", **options) == built.protocol
    assert cls.presets_for(built.protocol) == built.presets()
    with pytest.raises(UserError, match="no protocol"):
        cls.protocol_without_data("1to99")
    with pytest.raises(UserError, match="width=0 must be >= 1"):
        cls.protocol_without_data(width=0)


def test_profile_of_kth_without_data_reports_the_protocols_shape(bench, no_data, tmp_path):
    work = tmp_path / "work"
    proc = bench("profile", "--models", "convlstm,copy-last", "--dataset", "kth", "--preset", "tiny", "--json",
                 "--repeats", "1", "--warmup", "0", "--device", "cpu", cwd=work, env=no_data)
    records = json.loads(proc.stdout)
    assert [r["predictor"] for r in records] == ["convlstm", "copy-last"]
    for record in records:
        assert record["protocol"] == DATASETS.get("kth").protocols["10to20"].to_dict()  # 10 -> 20 at 128x128, grey
        assert "random clip" in record["input"] and "no data needed" in record["input"]
    assert records[0]["preset"] == "tiny" and records[0]["flops"] > 0 and records[0]["ms_per_sequence"] > 0
    assert not any(work.iterdir()) and not any((tmp_path / "data").iterdir())


def test_profile_of_sjtu4k_without_data_takes_the_size_and_lengths_set(bench, no_data, tmp_path):
    proc = bench("profile", "--models", "convlstm", "--dataset", "sjtu4k", "--set", "data.height=24",
                 "--set", "data.width=40", "--context", "2", "--horizon", "3", "--set", "convlstm.num_layers=1",
                 "--set", "convlstm.num_hidden=4", "--json", "--repeats", "1", "--warmup", "0", "--device", "cpu",
                 cwd=tmp_path / "work", env=no_data)
    [record] = json.loads(proc.stdout)
    assert record["protocol"] == {"name": "4to4", "context": 2, "future": 3, "height": 24, "width": 40, "channels": 3}
    assert record["preset"] is None and "(2 frames in, 3 out)" in record["timing"]


@pytest.mark.parametrize("args,message", [
    (["--dataset", "sjtu4q"], "did you mean sjtu4k"),
    (["--dataset", "kth", "--protocol", "1to99"], "no protocol '1to99'"),
    (["--dataset", "kth", "--set", "data.height=0"], "height=0 must be >= 1"),
])
def test_bad_profile_input_gives_one_error_line_and_exit_code_2(bench, no_data, tmp_path, args, message):
    proc = bench("profile", "--models", "copy-last", *args, cwd=tmp_path / "work", env=no_data, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr


def test_a_forward_larger_than_the_free_memory_is_refused_in_one_line(bench, no_data, tmp_path):
    # 21600x38400 (sjtu4k's frames, 10 times each side): convlstm's forward alone would take hundreds of GB
    proc = bench("profile", "--models", "convlstm", "--dataset", "sjtu4k", "--set", "data.height=21600",
                 "--set", "data.width=38400", "--repeats", "1", "--warmup", "0", "--device", "cpu",
                 cwd=tmp_path / "work", env=no_data, check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: convlstm: a batch-1 forward on 21600x38400x3 frames needs about ")
    assert "its peak on smaller frames, scaled by the area" in line and "available" in line


def test_the_forward_estimate_follows_the_frame_area(monkeypatch):
    from vpbench import memory
    from vpbench.predictor import resolve_config
    from vpbench.registry import PREDICTORS

    resolved = resolve_config(PREDICTORS.get("convlstm"), (), {"num_layers": 1, "num_hidden": 8, "patch_size": 4})
    small, large = VideoSpec(1, 128, 256, 2, 2), VideoSpec(1, 512, 1024, 2, 2)
    measured = memory._forward_peak(resolved.build(large).eval(), torch.device("cpu"))  # measured at that size
    # allow clips of 128x256 at most: the estimate is measured there (a frame whose sides divide 512x1024), x16
    monkeypatch.setattr(memory, "DRY_CLIP_BYTES", memory.clip_bytes(small))
    estimated = memory.forward_peak_bytes(resolved, large, torch.device("cpu"))
    assert [(s.height, s.width) for s in memory.smaller_specs(large)][0] == (128, 256)
    assert 0.8 * measured < estimated < 1.25 * measured
    # a hand count of what must be live: the hidden and cell states and the gates' 4 x 8 channels, on 4x4 patches
    assert measured >= (8 + 8 + 32) * (512 // 4) * (1024 // 4) * 4


def test_frames_tried_for_the_dry_forward_divide_the_frame():
    from vpbench import memory

    spec = VideoSpec(3, 2160, 3840, 4, 4)
    sides = [(s.height, s.width) for s in memory.smaller_specs(spec)]
    assert (216, 384) in sides and all(2160 % h == 0 and 3840 % w == 0 for h, w in sides)
    assert all(memory.clip_bytes(s) <= memory.DRY_CLIP_BYTES for s in memory.smaller_specs(spec))
    assert list(memory.smaller_specs(VideoSpec(1, 64, 64, 10, 10))) == [VideoSpec(1, 64, 64, 10, 10)]
