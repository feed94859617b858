"""Typed configs: presets, --set / YAML overrides, checked types, quick schedules."""
from dataclasses import dataclass
from typing import Literal

import pytest

from vpbench.config import (TrainConfig, apply_overrides, identity_dict, load_config_file, parse_set_options,
                            shrink_schedule)
from vpbench.errors import UserError
from vpbench.predictor import resolve_config
from vpbench.registry import PREDICTORS


@dataclass
class Demo(TrainConfig):
    hidden: int = 8
    norm: bool = False
    kernel: tuple[int, ...] = (3, 3)
    mode: Literal["a", "b"] = "a"
    ratio: float = 0.5
    name: str | None = None


def test_strings_from_the_command_line_are_converted_to_field_types():
    cfg = apply_overrides(Demo(), {"hidden": "64", "norm": "true", "kernel": "5,5,1", "mode": "b",
                                   "ratio": "1e-3", "max_iterations": "2e4", "name": "none"}, "test")
    assert (cfg.hidden, cfg.norm, cfg.kernel, cfg.mode, cfg.ratio, cfg.max_iterations, cfg.name) == \
        (64, True, (5, 5, 1), "b", 1e-3, 20000, None)


@pytest.mark.parametrize("key,value", [("hidden", "6.5"), ("hidden", "many"), ("norm", "maybe"),
                                       ("mode", "c"), ("ratio", "fast"), ("hidden", True)])
def test_wrong_types_are_rejected_with_the_key_and_expected_type(key, value):
    with pytest.raises(UserError, match=rf"{key}=.* is not a valid"):
        apply_overrides(Demo(), {key: value}, "predictor demo")


def test_unknown_key_suggests_close_names():
    with pytest.raises(UserError, match=r"unknown key 'hiden' for predictor demo; did you mean hidden"):
        apply_overrides(Demo(), {"hiden": 3}, "predictor demo")


def test_quick_schedule_scales_every_iteration_field_alike():
    cfg = shrink_schedule(TrainConfig(max_iterations=10_000, quick_iterations=100, val_every=1000,
                                      lr_step_every=2000, checkpoint_every=500))
    assert (cfg.max_iterations, cfg.val_every, cfg.lr_step_every) == (100, 10, 20)
    assert cfg.checkpoint_every == 500  # bookkeeping, not schedule
    assert cfg.val_sequences <= 64
    assert shrink_schedule(TrainConfig(lr_decay_start=0)).lr_decay_start == 0  # 0 is "off", not one iteration


def test_bookkeeping_fields_stay_out_of_the_run_identity():
    base = identity_dict(TrainConfig())
    assert identity_dict(TrainConfig(eval_batch_size=3, checkpoint_every=7)) == base
    assert identity_dict(TrainConfig(lr=0.5)) != base


def test_set_options_are_scoped_to_everyone_one_predictor_or_the_dataset():
    ov = parse_set_options(["lr=0.1", "convlstm.num_hidden=16", "data.height=96"], {"convlstm", "copy-last"})
    assert ov.everyone == {"lr": "0.1"}
    assert ov.per_predictor == {"convlstm": {"num_hidden": "16"}}
    assert ov.dataset == {"height": "96"}
    with pytest.raises(UserError, match="expects key=value"):
        parse_set_options(["lr"], set())
    with pytest.raises(UserError, match="neither 'data' nor a registered predictor"):
        parse_set_options(["predrnn.lr=1"], {"convlstm"})


def test_yaml_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nconvlstm:\n  num_layers: 3\ndata:\n  test_size: 10\n")
    ov = load_config_file(path, {"convlstm"})
    assert ov.everyone == {"lr": 0.01} and ov.per_predictor == {"convlstm": {"num_layers": 3}}
    assert ov.dataset == {"test_size": 10}
    path.write_text("lr: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config_file(path, {"convlstm"})
    with pytest.raises(UserError, match="not found"):
        load_config_file(tmp_path / "missing.yaml", set())


def test_presets_apply_before_user_overrides():
    cls = PREDICTORS.get("convlstm")
    resolved = resolve_config(cls, ("mmnist",), {"num_hidden": 7})
    assert resolved.preset == "mmnist"
    assert (resolved.config.num_layers, resolved.config.num_hidden, resolved.config.patch_size) == (4, 7, 4)
    assert resolve_config(cls, ("no-such-dataset",)).preset is None
    with pytest.raises(UserError, match="has no preset 'kth2'"):
        resolve_config(cls, (), preset="kth2")


def test_every_numeric_setting_of_a_builtin_declares_its_rule():
    """A size, rate or count without a rule would let 0 or -1 through to a traceback deep in a loop."""
    import dataclasses
    import typing

    from vpbench.config import declared
    from vpbench.registry import DATASETS, PREDICTORS

    missing = []
    for registry in (PREDICTORS, DATASETS):
        for name, cls in registry.classes().items():
            for f in dataclasses.fields(cls.Config):
                tp = typing.get_type_hints(cls.Config)[f.name]
                args = typing.get_args(tp)
                numeric = tp in (int, float) or any(a in (int, float) for a in args)
                if numeric and declared(cls.Config, f.name, "rule") is None:
                    missing.append(f"{name}.{f.name}")
    assert not missing, missing
