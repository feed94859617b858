"""sha256 of files, read in blocks: weight files, checkpoints and dataset files are all checked this way."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

_BLOCK = 1 << 20  # read a MiB at a time: files run to gigabytes


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over the contents of `paths` in order (a frame folder hashes as one sequence)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """The hex sha256 of one file's contents."""
    return sha256_files([path])
