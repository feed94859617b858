"""Name -> class registries for predictors and datasets.

Three ways in: the `register` decorator (built-ins and plugin files), the entry point groups
`vpbench.predictors` / `vpbench.datasets` of installed packages, and `load_plugin(path)` for a
single file given on the command line (`--plugin`).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Generic, Iterable, TypeVar

from .errors import UserError

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str, builtin_package: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtin_package = builtin_package
        self._classes: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Class decorator: `@register_predictor("convlstm")`."""

        def decorate(cls: T) -> T:
            existing = self._classes.get(name)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise UserError(f"{self.kind} name {name!r} is registered twice: "
                                f"{existing.__module__}.{existing.__qualname__} and {cls.__module__}.{cls.__qualname__}")
            cls.registry_name = name
            self._classes[name] = cls
            for alias in aliases:
                self._aliases[alias] = name
            return cls

        return decorate

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
            if isinstance(loaded, type) and ep.name not in self._classes:
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
        close = difflib.get_close_matches(name, list(self._classes) + list(self._aliases), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names())}"
        raise UserError(f"unknown {self.kind} {name!r}{hint}")


def load_plugin(path: str | Path) -> None:
    """Import a plugin file so that its `@register_*` decorators run."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}")
    module_name = f"vpbench_plugin_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plugin file is not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except UserError:
        raise
    except Exception as exc:
        del sys.modules[module_name]
        raise UserError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc


PREDICTORS: Registry = Registry("predictor", "vpbench.predictors", "vpbench.predictors")
DATASETS: Registry = Registry("dataset", "vpbench.datasets", "vpbench.datasets")
register_predictor = PREDICTORS.register
register_dataset = DATASETS.register
