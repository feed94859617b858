"""Plugins and built-ins use one public API: names in `vpbench.__all__` and `vpbench.layers.__all__`. Read from the
source with ast, so a private import (`from vpbench.config import ...`) fails here by file and line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vpbench
import vpbench.layers
from conftest import readme_plugin_source

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"vpbench": set(vpbench.__all__), "vpbench.layers": set(vpbench.layers.__all__)}
# The `bench data` command's own modules: harness code that lives beside the datasets it prepares (cli.py mounts
# the command), allowed these harness internals and no other.
HARNESS = {"datasets/_commands.py": {"vpbench.cpu": {"set_threads"}},
           "datasets/_manifest.py": {"vpbench.files": {"write_json_atomic"}}}


def private_imports(source: str, allowed: dict[str, set[str]] | None = None) -> list[str]:
    """Each import of a vpbench name outside the public API, as 'line: module.name'. A package's own modules
    (vpbench.predictors.*, vpbench.datasets.*, relative imports) are its own business."""
    allowed = {**PUBLIC, **(allowed or {})}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.startswith("vpbench.") and not _own(a.name) and a.name not in PUBLIC]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vpbench"):
            if _own(node.module):
                continue
            found += [f"{node.lineno}: {node.module}.{a.name}" for a in node.names
                      if a.name not in allowed.get(node.module, set())]
    return found


def _own(module: str) -> bool:
    return module.startswith(("vpbench.predictors", "vpbench.datasets"))


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for folder in ("predictors", "datasets")
                                        for p in (ROOT / folder).glob("*.py")))
def test_built_ins_import_only_public_names(path: str) -> None:
    assert private_imports((ROOT / path).read_text(encoding="utf-8"), HARNESS.get(path)) == []


def test_the_readme_plugin_imports_only_public_names() -> None:
    source = readme_plugin_source()
    assert "from vpbench import" in source and private_imports(source) == []


def test_a_private_import_is_found() -> None:
    source = ("from vpbench import Predictor\nfrom vpbench.config import COUNT\nfrom vpbench.layers import gate_conv\n"
              "from vpbench.layers import FUSED_MAX_WEIGHTS\nimport vpbench.recurrent\nfrom .predrnn import PredRNN\n")
    assert private_imports(source) == ["2: vpbench.config.COUNT", "4: vpbench.layers.FUSED_MAX_WEIGHTS",
                                       "5: import vpbench.recurrent"]


def test_every_public_name_resolves() -> None:
    for module, names in PUBLIC.items():
        loaded = vpbench if module == "vpbench" else vpbench.layers
        assert all(getattr(loaded, name) is not None for name in names), module


# timm: its public API only. A private module (`timm.models._efficientnet_blocks`, which OpenSTL's WaST imports) is
# renamed or moved between timm releases without notice, and OpenSTL's users met that again and again.
def private_timm_imports(source: str) -> list[str]:
    """Each import of a private timm module or name (a dotted part starting with '_'), as 'line: module'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found += [f"{node.lineno}: {m}" for m in modules
                  if m.split(".")[0] == "timm" and any(part.startswith("_") for part in m.split(".")[1:])]
    return found


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                                        if not {".venv", ".git", "build"} & set(p.relative_to(ROOT).parts)))
def test_no_module_imports_a_private_timm_module(path: str) -> None:
    assert private_timm_imports((ROOT / path).read_text(encoding="utf-8")) == []


def test_a_private_timm_import_is_found() -> None:
    source = ("from timm.layers import DropPath\nfrom timm.models._efficientnet_blocks import SqueezeExcite\n"
              "import timm.models._builder\nfrom timm.models import _registry\nfrom timm.models.convnext import ConvNeXtBlock\n")
    assert private_timm_imports(source) == ["2: timm.models._efficientnet_blocks.SqueezeExcite",
                                            "3: timm.models._builder", "4: timm.models._registry"]
