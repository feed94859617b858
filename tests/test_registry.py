"""The predictor and dataset contract, checked at registration; the public API in `vpbench`; a CLI that
answers --help without torch."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import vpbench
from vpbench import (PREDICTORS, Predictor, Protocol, RecurrentConfig, StochasticConfig, StochasticPredictor,
                     TrainConfig, UserError, VideoDataset, VideoSpec, create_predictor, resolve_config)
from vpbench.registry import Registry
from conftest import readme_plugin_source

ROOT = Path(__file__).resolve().parents[1]
HEAD = "from dataclasses import dataclass\nfrom vpbench import Predictor, TrainConfig, register_predictor\n"
FORWARD = "    def forward(self, context, future):\n        return context[:, -1:].expand(-1, future, -1, -1, -1)\n"
BROKEN_PLUGINS = {
    "plain-dataclass": (HEAD + "@dataclass\nclass Cfg:\n    hidden: int = 3\n\n@register_predictor('plain')\n"
                        "class Plain(Predictor):\n    Config = Cfg\n" + FORWARD,
                        "Config must be a @dataclass extending vpbench.TrainConfig"),
    "shadows-a-builtin": (HEAD + "@register_predictor('convlstm')\nclass ConvLSTM(Predictor):\n" + FORWARD,
                          "predictor name 'convlstm' is taken: vpbench.predictors.convlstm.ConvLSTM holds it"),
    "preset-names-an-unknown-field": (HEAD + "@register_predictor('typo')\nclass Typo(Predictor):\n"
                                      "    presets = {'moving-digits': {'bach_size': 4}}\n" + FORWARD,
                                      "unknown key 'bach_size' for preset 'moving-digits' of predictor 'typo'"),
    "preset-value-of-the-wrong-type": (HEAD + "@register_predictor('wrong')\nclass Wrong(Predictor):\n"
                                       "    presets = {'moving-digits': {'batch_size': 'many'}}\n" + FORWARD,
                                       "batch_size='many' is not a valid int"),
    "stochastic-without-the-sampling-signature": (
        "from vpbench import StochasticPredictor, register_predictor\n@register_predictor('nosig')\n"
        "class NoSig(StochasticPredictor):\n" + FORWARD, "forward must accept keyword arguments samples and generator"),
    # `--set eval.x=...` must reach the evaluation settings, `data.x` the dataset's: such a name is refused
    **{f"named-{scope}": (HEAD + f"@register_predictor('{scope}')\nclass Scoped(Predictor):\n" + FORWARD,
                          f"predictor name '{scope}' of Scoped of ") for scope in ("data", "eval")},
}


def _one_error_line(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("case", sorted(BROKEN_PLUGINS))
def test_a_plugin_that_breaks_the_contract_fails_at_load_with_one_line(bench, tmp_path, case):
    source, message = BROKEN_PLUGINS[case]
    plugin = tmp_path / "plugin.py"
    plugin.write_text(source)
    _one_error_line(bench("list", "--plugin", str(plugin), check=False), message)


def test_run_refuses_a_plain_dataclass_config_before_any_work(bench, tmp_path):
    source, message = BROKEN_PLUGINS["plain-dataclass"]
    (tmp_path / "plugin.py").write_text(source)
    proc = bench("run", "--models", "plain", "--dataset", "moving-digits", "--quick", "--plugin", "plugin.py",
                 "--out", "R", check=False)
    _one_error_line(proc, message)
    assert not (tmp_path / "R").exists()


def test_the_readme_plugin_registers_and_list_verbose_shows_its_settings_and_presets(bench, tmp_path):
    assert "from vpbench.predictor" not in readme_plugin_source()  # a plugin imports from `vpbench` only
    (tmp_path / "window_cnn.py").write_text(readme_plugin_source())
    out = bench("list", "predictors", "--verbose", "--plugin", "window_cnn.py").stdout
    block = out[out.index("  window-cnn "):]
    block = block[:block.index("\n  ", block.index("preset moving-digits"))]
    assert re.search(r"adam_beta1\s+float = 0.9  # adam/adamw first-moment decay", block), block
    assert re.search(r"hidden\s+int = 64", block) and "preset moving-digits: hidden=32" in block
    assert re.search(r"adam_beta1\s+float = 0.5", out[out.index("  convgru "):])  # a predictor's own default


def fresh(kind: str) -> Registry:
    """A registry of no built-ins, so that tests leave the global ones as they were."""
    return Registry(kind, "vpbench.tests.none", f"vpbench.{kind}s", f"vpbench.registration:check_{kind}")


class Last(Predictor):
    def forward(self, context, future):
        return context[:, -1:].expand(-1, future, -1, -1, -1)


def test_stochastic_predictors_need_the_sampling_signature_and_config():
    class NoSignature(StochasticPredictor):
        forward = Last.forward

    class Sampling(StochasticPredictor):
        def forward(self, context, future, *, samples=None, generator=None):
            return context

    class TrainConfigOnly(Sampling):
        Config = TrainConfig

    registry = fresh("predictor")
    with pytest.raises(UserError, match="samples and generator.*missing: samples, generator"):
        registry.register("a")(NoSignature)
    with pytest.raises(UserError, match="extending vpbench.StochasticConfig"):
        registry.register("b")(TrainConfigOnly)
    assert registry.register("c")(Sampling).registry_name == "c" and registry.names() == ["c"]


def test_configs_that_would_silently_misbehave_are_refused():
    @dataclass
    class Unannotated(TrainConfig):
        lr = 0.5  # no annotation: not a field, Config().lr would stay 1e-3

    class Undecorated(TrainConfig):
        hidden: int = 3

    @dataclass
    class LostKind(TrainConfig):
        max_iterations: int = 500  # no longer shrunk by --quick

    @dataclass(kw_only=True)
    class NoDefault(TrainConfig):
        hidden: int

    registry = fresh("predictor")
    for config, message in [(Unannotated, "Unannotated.lr changes a field's default without a type annotation"),
                            (Undecorated, "must be decorated with @dataclass"),
                            (LostKind, "LostKind.max_iterations must keep the kind"),
                            (NoDefault, "every Config field needs a default")]:
        with pytest.raises(UserError, match=message):
            registry.register("m")(type("M", (Last,), {"Config": config}))
    with pytest.raises(UserError, match="not a subclass of vpbench.Predictor"):
        registry.register("n")(type("N", (), {}))
    with pytest.raises(UserError, match="does not define forward"):
        registry.register("o")(type("O", (Predictor,), {}))
    with pytest.raises(UserError, match="a floor learns nothing"):  # reports would never bold its costs
        registry.register("f")(type("F", (Last,), {"floor": True, "trainable": True}))
    with pytest.raises(UserError, match="name 'a.b' .* is not usable"):
        registry.register("a.b")(Last)
    assert registry.names() == []


def test_any_name_clash_is_refused_but_the_same_file_may_register_twice(tmp_path, monkeypatch):
    class ConvLSTM(Last):  # a built-in's class name, another class: refused like any other
        pass

    with pytest.raises(UserError, match="predictor name 'convlstm' is taken"):
        PREDICTORS.register("convlstm")(ConvLSTM)
    assert PREDICTORS.get("convlstm").__module__ == "vpbench.predictors.convlstm"

    source = tmp_path / "twice.py"
    source.write_text("from vpbench import Predictor\n\nclass Twice(Predictor):\n" + textwrap.indent(
        "def forward(self, context, future):\n    return context\n", "    "))
    loaded = []
    for module_name in ("twice_a", "twice_b"):  # one file imported under two names, as a reload would
        spec = importlib.util.spec_from_file_location(module_name, source)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, module_name, module)  # as the import system does
        spec.loader.exec_module(module)
        loaded.append(module.Twice)
    registry = fresh("predictor")
    registry.register("twice", aliases=("again",))(loaded[0])
    registry.register("twice", aliases=("again",))(loaded[1])
    assert registry.get("again") is loaded[1]
    with pytest.raises(UserError, match="name 'again' is taken"):
        registry.register("other", aliases=("again",))(Last)
    with pytest.raises(UserError, match="name 'twice' is taken"):
        registry.register("twice")(Last)


def test_datasets_need_a_videodataset_a_dataclass_config_and_protocols():
    class Options:  # not a dataclass
        size: int = 3

    class Frames(VideoDataset):
        protocols = {"2to2": Protocol("2to2", 2, 2, 8, 8, 1)}

    registry = fresh("dataset")
    with pytest.raises(UserError, match="dataset 'x': Config must be a @dataclass"):
        registry.register("x")(type("X", (Frames,), {"Config": Options}))
    with pytest.raises(UserError, match="not a subclass of vpbench.VideoDataset"):
        registry.register("y")(Last)
    with pytest.raises(UserError, match="protocols must map a name"):
        registry.register("z")(type("Z", (Frames,), {"protocols": {}}))
    assert registry.register("frames")(Frames).registry_name == "frames"


def test_create_predictor_is_the_one_construction_path():
    spec = VideoSpec(1, 16, 16, 2, 2)
    model = create_predictor("convlstm", spec, preset="moving-digits", quick=True, num_hidden=8,
                             overrides={"num_layers": 1})
    resolved = resolve_config("convlstm", ("no-such", "moving-digits"), {"num_layers": 1, "num_hidden": 8},
                              quick=True)
    assert resolved.preset == "moving-digits" and resolved.config == model.config
    torch.manual_seed(0)
    a = resolved.build(spec)
    torch.manual_seed(0)
    b = create_predictor(resolved.predictor, spec, preset_keys=("moving-digits",), quick=True,
                         overrides={"num_layers": 1, "num_hidden": 8})
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_every_setting_the_harness_reads_is_declared_and_documented():
    for config in (TrainConfig, StochasticConfig, RecurrentConfig):
        undocumented = [f.name for f in dataclasses.fields(config) if not f.metadata.get("help")]
        assert not undocumented, f"{config.__name__}: {undocumented}"
    assert {"adam_beta1", "adam_eps", "lr_decay_start"} <= {f.name for f in dataclasses.fields(TrainConfig)}
    # No setting read through getattr(config, "name", fallback): such a field is invisible to --set and docs.
    fallback = re.compile(r"getattr\((?:self\.)?(?:cfg|config|resolved\.config|model\.config), [\"'](?!__)")
    readers = [p for p in (ROOT / "benchmark").rglob("*.py") if fallback.search(p.read_text())]
    assert not readers, readers


def test_every_public_name_is_importable():
    assert vpbench.__all__ and set(vpbench.__all__) <= set(dir(vpbench))
    for name in vpbench.__all__:
        assert getattr(vpbench, name) is not None, name
    with pytest.raises(AttributeError):
        vpbench.no_such_name  # noqa: B018


TORCH_AFTER = ("import sys\nsys.argv = ['bench', *sys.argv[1:]]\nfrom vpbench.cli import main\ntry:\n    main()\n"
               "except SystemExit as exc:\n    code = exc.code\nprint('TORCH', 'torch' in sys.modules, code)")


@pytest.mark.parametrize("args", [[], ["--help"], ["run", "--help"], ["list", "--help"], ["data", "--help"],
                                  ["no-such-command"]])
def test_help_and_usage_errors_do_not_import_torch(tmp_path, args):
    proc = subprocess.run([sys.executable, "-c", TORCH_AFTER, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert "TORCH False" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.split()[-1] == ("2" if args in ([], ["no-such-command"]) else "0"), proc.stdout


def test_importing_vpbench_and_its_cli_does_not_import_torch(tmp_path):
    code = "import sys, vpbench, vpbench.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
