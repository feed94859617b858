"""sha256 of files, read in blocks: weight files, checkpoints and dataset files are all checked this way; and a
file's git blob id, for a weight file whose only published identity is the repository that commits it."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

_BLOCK = 1 << 20  # read a MiB at a time: files run to gigabytes


def _read_into(digest: Any, path: Path) -> None:  # a hashlib object
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over the contents of `paths` in order (a frame folder hashes as one sequence)."""
    digest = hashlib.sha256()
    for path in paths:
        _read_into(digest, path)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """The hex sha256 of one file's contents."""
    return sha256_files([path])


def git_blob_sha1(path: Path) -> str:
    """The id git gives the file's contents (`git hash-object`): sha1 of "blob <size>\\0" and the bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    _read_into(digest, path)
    return digest.hexdigest()
