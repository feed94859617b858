"""Name -> class registries for predictors and datasets.

Three ways in: the `register` decorator (built-ins and plugin files), the entry point groups
`vpbench.predictors` / `vpbench.datasets` of installed packages, and `load_plugin(path)` for a
single file given on the command line (`--plugin`). Every way checks the class against the contract
(`registration.py`) and refuses a name, or alias, that another class holds.

This module does not import torch: `bench --help` imports it.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Generic, Iterable, TypeVar

from .config import RESERVED_SCOPES
from .errors import UserError

T = TypeVar("T", bound=type)
# Names are written in `--models a,b` and scoped in `--set name.key=value`.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]*")
PLUGIN_PREFIX = "vpbench_plugin_"


def _origin(cls: type) -> tuple[str, str]:
    """Where a class is defined: the same file imported twice (under two module names, or reloaded)
    defines the same class, which may register again; anything else is another class."""
    try:
        where = os.path.realpath(inspect.getfile(cls))
    except (TypeError, OSError):  # defined in __main__ of `python -c` or an interactive session
        where = cls.__module__
    return where, cls.__qualname__


def _describe(cls: type) -> str:
    if cls.__module__.startswith(PLUGIN_PREFIX):  # load_plugin's module names mean nothing to a reader
        return f"{cls.__qualname__} of {_origin(cls)[0]}"
    return f"{cls.__module__}.{cls.__qualname__}"


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str, builtin_package: str, check: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtin_package = builtin_package
        self._check = check  # "module:function", imported at the first registration (it needs torch)
        self._classes: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Class decorator: `@register_predictor("convlstm")`. Raises UserError if the class breaks the
        contract or another class holds the name or an alias."""

        def decorate(cls: T) -> T:
            if not cls.__module__.startswith(f"{self.builtin_package}."):
                self._discover()  # a plugin meets the built-ins first, so a clash names the plugin
            for each in (name, *aliases):
                self._refuse_clash(each, cls)
            module, _, function = self._check.partition(":")
            getattr(importlib.import_module(module), function)(name, cls)
            cls.registry_name = name
            self._classes[name] = cls
            for alias in aliases:
                self._aliases[alias] = name
            return cls

        return decorate

    def _refuse_clash(self, name: str, cls: type) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name) or (self.kind == "predictor"
                                                                      and name in RESERVED_SCOPES):
            raise UserError(f"{self.kind} name {name!r} of {_describe(cls)} is not usable: use letters, digits, "
                            f"'_', '+' and '-', and none of {', '.join(RESERVED_SCOPES)} (the --set scopes of the "
                            "dataset and the evaluation)")
        holder = self._classes.get(self._aliases.get(name, name))
        if holder is not None and _origin(holder) != _origin(cls):
            raise UserError(f"{self.kind} name {name!r} is taken: {_describe(holder)} holds it, "
                            f"{_describe(cls)} cannot register under it; choose another name")

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.builtin_package)
        for module in getattr(package, "BUILTIN_MODULES", ()):
            importlib.import_module(f"{self.builtin_package}.{module}")
        for ep in entry_points(group=self.entry_point_group):
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take the harness down
                raise UserError(f"entry point {ep.name!r} in group {self.entry_point_group} failed to load: {exc}") from exc
            # An entry point may name the class itself or a module whose import registers classes.
            if isinstance(loaded, type) and self._classes.get(getattr(loaded, "registry_name", "")) is not loaded:
                self.register(ep.name)(loaded)

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._classes)

    def classes(self) -> dict[str, T]:
        self._discover()
        return dict(sorted(self._classes.items()))

    def get(self, name: str) -> T:
        self._discover()
        name = self._aliases.get(name, name)
        if name in self._classes:
            return self._classes[name]
        raise self._unknown(name, self.names(), list(self._aliases))

    def _unknown(self, name: str, names: Iterable[str], aliases: Iterable[str]) -> UserError:
        names = sorted(names)
        close = difflib.get_close_matches(name, names + list(aliases), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names)}"
        return UserError(f"unknown {self.kind} {name!r}{hint}")

    def refuse_unknown(self, names: Iterable[str]) -> None:
        """Fail on a name that no class registers, without importing the built-ins (and with them torch): an
        unknown name answers at once. Their names are read from their sources; when installed packages offer
        entry points, which only an import names, the check is left to `get`."""
        if self._discovered or any(True for _ in entry_points(group=self.entry_point_group)):
            for name in names:
                self.get(name)
            return
        builtin = _declared_names(self.builtin_package)
        known = set(self._classes) | {name for name, _ in builtin}
        aliases = set(self._aliases) | {alias for _, some in builtin for alias in some}
        for name in names:
            if name not in known | aliases:
                raise self._unknown(name, known, aliases)


_DECORATOR = re.compile(r"@register_\w+\(\s*[\"']([^\"']+)[\"'](?:\s*,\s*aliases=\(([^)]*)\))?")


def _declared_names(package: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, aliases) of each `@register_...("name", aliases=(...))` in the built-in modules' sources."""
    module = importlib.import_module(package)  # the package itself holds only BUILTIN_MODULES
    folder = Path(next(iter(module.__path__)))
    found = []
    for name in getattr(module, "BUILTIN_MODULES", ()):
        for match in _DECORATOR.finditer((folder / f"{name}.py").read_text(encoding="utf-8")):
            aliases = tuple(a.strip().strip("\"'") for a in (match.group(2) or "").split(",") if a.strip())
            found.append((match.group(1), aliases))
    return found


def load_plugin(path: str | Path) -> None:
    """Import a plugin file so that its `@register_*` decorators run."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}")
    module_name = f"{PLUGIN_PREFIX}{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plugin file is not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        if isinstance(exc, UserError):
            raise UserError(f"plugin {path}: {exc}") from None
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"plugin {path} failed to import: {type(exc).__name__}: {first_line}") from exc


PREDICTORS: Registry = Registry("predictor", "vpbench.predictors", "vpbench.predictors",
                                "vpbench.registration:check_predictor")
DATASETS: Registry = Registry("dataset", "vpbench.datasets", "vpbench.datasets", "vpbench.registration:check_dataset")
register_predictor = PREDICTORS.register
register_dataset = DATASETS.register
