"""`bench data prepare | check | info`: turn downloads into the prepared layout, verify it, show where
each dataset is looked for and what is there."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vpbench import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Prepare, check and locate the datasets read from files (KTH, Human3.6M, ...).")

RootOpt = typer.Option(None, "--root", help="Prepared data folder; default $VPBENCH_DATA/NAME "
                                            "(~/.cache/vpbench/data/NAME), as `--set data.root=DIR` for runs.")


def _stored(name: str) -> type:
    from vpbench import DATASETS
    from vpbench.cpu import set_threads

    from ._stored import StoredDataset

    set_threads()  # prepare and check decode frames with torch

    cls = DATASETS.get(name)
    if not issubclass(cls, StoredDataset):
        raise UserError(f"dataset {name} is generated, not read from files: nothing to prepare")
    return cls


def _root(name: str, root: Optional[Path]) -> Path:
    from ._manifest import resolve_root

    return resolve_root(name, str(root) if root else None)[0]


@app.command()
def prepare(name: str = typer.Argument(..., help="Dataset name, e.g. kth."),
            source: Path = typer.Option(..., "--source", help="The original download: a folder, a file or an archive."),
            root: Optional[Path] = RootOpt,
            force: bool = typer.Option(False, "--force", help="Prepare again over an existing manifest.")) -> None:
    """Convert the original download into the prepared layout and write its manifest."""
    cls = _stored(name)
    target = _root(name, root)
    manifest = cls.prepare(source, target, force=force)
    frames = sum(s.frames for s in manifest.sequences)
    print(f"{name}: {len(manifest.sequences)} sequences, {frames} frames, {len(manifest.files)} extra files "
          f"-> {target}")
    if manifest.problems:
        print(f"{len(manifest.problems)} source file(s) left out (recorded in the manifest, counted in results):")
        for problem in manifest.problems:
            print(f"  {problem.file}: {problem.message}")


@app.command()
def check(name: str = typer.Argument(...), root: Optional[Path] = RootOpt,
          fast: bool = typer.Option(False, "--fast", help="Sizes and frame counts only, no checksums.")) -> None:
    """Verify the prepared files against the manifest: frame counts, sizes, checksums. Exit 1 on a difference."""
    from ._manifest import check as check_files
    from ._manifest import load_manifest, resolve_root

    cls = _stored(name)
    target, origin = resolve_root(name, str(root) if root else None)
    manifest = load_manifest(name, target, origin, cls.source_help)
    found = check_files(target, manifest, checksums=not fast)
    for line in found:
        print(line)
    for problem in manifest.problems:
        print(f"left out at prepare: {problem.file}: {problem.message}")
    print(f"{name}: {len(manifest.sequences)} sequences checked in {target}: "
          f"{'ok' if not found else f'{len(found)} difference(s)'}"
          + (f", {len(manifest.problems)} source file(s) left out at prepare" if manifest.problems else ""))
    if found:
        raise typer.Exit(1)


@app.command()
def info(name: Optional[str] = typer.Argument(None, help="One dataset; default: all."),
         root: Optional[Path] = RootOpt) -> None:
    """Where each dataset is looked for and what is there."""
    from vpbench import DATASETS

    from ._manifest import MANIFEST, Manifest, data_home
    from ._stored import StoredDataset

    home, origin = data_home()
    print(f"data home: {home} ({origin}); each dataset is looked for in <data home>/<name> unless "
          "--set data.root=DIR (runs) or --root DIR (bench data) says otherwise")
    names = [name] if name else DATASETS.names()
    for each in names:
        cls = DATASETS.get(each)
        if not issubclass(cls, StoredDataset):
            print(f"  {each:<14} generated from a seed, no files")
            continue
        target = _root(each, root if name else None)
        if not (target / MANIFEST).is_file():
            state = "missing" if not target.exists() else "not prepared (no manifest)"
            print(f"  {each:<14} {state:<12} {target}   prepare: bench data prepare {each} --source DIR "
                  f"(DIR: {cls.source_help})")
            continue
        try:
            manifest = Manifest.load(target)
        except UserError as exc:
            print(f"  {each:<14} unreadable   {exc}")
            continue
        frames = sum(s.frames for s in manifest.sequences)
        extra = f", {len(manifest.files)} extra files" if manifest.files else ""
        left = f", {len(manifest.problems)} left out" if manifest.problems else ""
        print(f"  {each:<14} prepared     {target}   {len(manifest.sequences)} sequences, {frames} frames"
              f"{extra}{left} (prepared {manifest.created})")
