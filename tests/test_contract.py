"""The contract (vpbench.contract) held over every registered predictor, and `bench check` for plugin authors.

What every predictor must do is checked here once for all of them; a predictor's own files test only what is
its own (reference equations, hand-counted sizes, its objective's terms).
"""
from functools import lru_cache

import pytest

from vpbench.contract import CHECKS, TINY, Subject, run_check
from vpbench.cpu import set_threads
from vpbench.registry import PREDICTORS

from conftest import readme_plugin_source, run_bench

set_threads()  # VPBENCH_THREADS, as `bench` itself honours it


BROKEN_PLUGIN = '''
from torch import nn
from vpbench import register_predictor
from vpbench.predictor import Predictor


@register_predictor("wrong-shape")
class WrongShape(Predictor):
    """Drops the channel axis."""
    trainable = False

    def forward(self, context, future):
        return context[:, -1:, 0].expand(-1, future, -1, -1)


@register_predictor("stuck")
class Stuck(Predictor):
    """Copies the last frame; its one parameter changes nothing, so its loss cannot fall."""

    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.scale = nn.Parameter(0.5 * __import__("torch").ones(1))

    def forward(self, context, future):
        return context[:, -1:].expand(-1, future, -1, -1, -1) + 0 * self.scale
'''


@lru_cache(maxsize=1)  # a predictor's checks run one after another: its quick run is trained once
def subject(name: str) -> Subject:
    return Subject(name)


@pytest.mark.parametrize("name,check", [
    pytest.param(name, check, id=f"{name}-{check.name}")
    for name, cls in PREDICTORS.classes().items() for check in CHECKS if check.applies(cls)])
def test_every_registered_predictor_keeps_the_contract(name, check):
    outcome = run_check(subject(name), check)
    # Built-ins are held to every check; an installed third-party plugin only warns on the soft ones.
    assert outcome.status in ({"PASS"} if subject(name).builtin else {"PASS", "WARN"}), outcome.line()


def test_every_trainable_built_in_declares_its_tiny_size():
    missing = [name for name, cls in PREDICTORS.classes().items()
               if cls.trainable and cls.__module__.startswith("vpbench.predictors.") and TINY not in cls.presets]
    assert not missing, f"built-in predictors without a {TINY!r} preset: {missing}"


def test_bench_check_passes_the_example_plugin_and_checks_only_its_predictors(tmp_path):
    (tmp_path / "window_cnn.py").write_text(readme_plugin_source())
    proc = run_bench("check", "--plugin", "window_cnn.py", cwd=tmp_path, env={"VPBENCH_THREADS": "1"})
    lines = proc.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"{'SKIP' if check.only == 'stochastic' else 'PASS'} window-cnn: {check.name}" for check in CHECKS], proc.stdout


def test_bench_check_fails_a_broken_plugin_naming_the_check(tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN_PLUGIN)
    proc = run_bench("check", "--plugin", "broken.py", cwd=tmp_path, check=False, env={"VPBENCH_THREADS": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "FAIL wrong-shape: forward (forward(context [2, 4, 1, 64, 64], future=4) returned shape [2, 4, 64, 64], " \
           "expected [2, 4, 1, 64, 64])" in out, out
    assert "FAIL wrong-shape: rollout (" in out and "PASS wrong-shape: checkpoint (" in out
    assert "FAIL stuck: learns (its loss did not fall by 15% in 30 steps of batch 4" in out, out
    # A plugin that does not beat copy-last is warned, not failed: a quality figure, not the interface.
    assert "WARN stuck: beats-copy-last (" in out
    assert out.splitlines()[-1] == "3 failed: stuck: learns, wrong-shape: forward, wrong-shape: rollout"


def test_bench_check_refuses_an_unknown_name(tmp_path):
    proc = run_bench("check", "no-such-model", cwd=tmp_path, check=False, env={"VPBENCH_THREADS": "1"})
    assert proc.returncode == 2 and "unknown predictor 'no-such-model'" in proc.stderr


@pytest.mark.parametrize("setting,says", [
    ("simvp.translator=nosuch", "translator"),  # a value the setting cannot take
    ("data.height=32", "predictor settings only"),  # the contract fixes the data
])
def test_bench_check_refuses_a_bad_set_in_one_line_before_any_check(tmp_path, setting, says):
    proc = run_bench("check", "simvp", "--set", setting, cwd=tmp_path, check=False, env={"VPBENCH_THREADS": "1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""  # no check ran
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], proc.stderr
