"""Files on disk for the stored datasets: the error that names a bad file, checksums, placing files
into a data root, and extracting downloaded archives without letting them write outside the target."""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from vpbench import UserError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SCRATCH_PREFIX = ".extract-"  # folder of a prepare run's extracted archives, inside the data root


class BadFile(UserError):
    """A data file that is missing, truncated, of the wrong resolution or undecodable."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def load_npy(path: Path, hint: str = "") -> np.ndarray:
    """An .npy array, memory-mapped; BadFile names the file when it is missing or cut short."""
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise BadFile(path, f"missing{hint}") from None
    except (ValueError, OSError) as exc:
        raise BadFile(path, f"truncated or not an .npy array ({exc}){hint}") from None


def place(source: Path, target: Path) -> None:
    """Put `source` at `target`: a hard link where the file system allows it (no copy of big frame
    sets), else a copy. Nothing to do when both name the same file (a root indexed in place)."""
    if target.exists() and target.samefile(source):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_inside(archive: Path, name: str, target: Path) -> None:
    norm = posixpath.normpath(name.replace("\\", "/"))
    escapes = norm.startswith("/") or norm == ".." or norm.startswith("../")
    destination = (target / norm).resolve()
    if escapes or (destination != target and target not in destination.parents):
        raise UserError(f"archive {archive}: member {name!r} would be written outside {target}; refusing to extract")


def extract(archive: Path, target: Path) -> None:
    """Extract a zip or tar archive into `target`, refusing any member (path, symbolic or hard link)
    that would land outside it: a crafted archive must not overwrite files elsewhere."""
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    _check_inside(archive, info.filename, target)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise UserError(f"archive {archive}: member {info.filename!r} is a symbolic link; "
                                        "refusing to extract")
                bundle.extractall(target)
            return
        with tarfile.open(archive) as bundle:
            for member in bundle.getmembers():
                _check_inside(archive, member.name, target)
                if member.issym():  # relative to the link's own folder
                    _check_inside(archive, posixpath.join(posixpath.dirname(member.name), member.linkname), target)
                elif member.islnk():  # relative to the archive's root
                    _check_inside(archive, member.linkname, target)
            bundle.extractall(target, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise BadFile(archive, f"cannot be extracted ({exc})") from None


def source_relative(path: Path, source: Path) -> str:
    """`path` relative to the source it was found in; for a file extracted from an archive, relative
    to the archive's own top (the scratch folder and the archive's name are dropped)."""
    parts = path.parts
    scratch = next((i for i, part in enumerate(parts) if part.startswith(SCRATCH_PREFIX)), None)
    if scratch is not None:
        return "/".join(parts[scratch + 2:])
    base = source if source.is_dir() else source.parent
    return path.relative_to(base).as_posix()


def walk(source: Path, scratch: Path) -> Iterator[Path]:
    """Every file under `source` (a folder, one file or an archive), archives extracted into
    `scratch` and walked in turn; sorted, so that a prepare run is reproducible."""
    if not source.exists():
        raise UserError(f"source {source} does not exist")
    if is_archive(source):
        folder = scratch / source.name
        extract(source, folder)
        yield from walk(folder, scratch)
        return
    if source.is_file():
        yield source
        return
    for path in sorted(source.rglob("*")):
        # Hidden names are skipped: .DS_Store and the like, and a prepare run's own scratch folder.
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(source).parts):
            if is_archive(path):
                yield from walk(path, scratch)
            else:
                yield path
