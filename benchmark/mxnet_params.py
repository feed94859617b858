"""Reading MXNet 1.x parameter files (`Module.save_checkpoint`'s `<prefix>-<epoch>.params`, `mx.nd.save`) without
MXNet: the NDArray list format of MXNet's src/ndarray/ndarray.cc (`NDArray::Save`, list magic 0x112). Only what
checkpoints hold is read: dense arrays of the usual number types, with their names ("arg:" / "aux:" prefixes kept).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import UserError

LIST_MAGIC = 0x112
ARRAY_MAGICS = (0xF993FAC9, 0xF993FACA)  # NDARRAY_V2_MAGIC, V3 (NumPy shape semantics): the same layout here
# MXNet's type flags (mshadow): float32, float64, float16, uint8, int32, int8, int64
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64}


def is_mxnet_params(path: Path) -> bool:
    """Whether the file starts as an MXNet NDArray list does."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return len(head) == 16 and struct.unpack("<QQ", head) == (LIST_MAGIC, 0)


def read_mxnet_params(path: Path) -> dict[str, Tensor]:
    """The named arrays of an MXNet parameter file, as CPU tensors."""
    reader = _Reader(Path(path).read_bytes(), Path(path))
    if reader.take("<QQ") != (LIST_MAGIC, 0):
        raise UserError(f"checkpoint {path} is not an MXNet parameter file")
    arrays = [reader.array() for _ in range(reader.take("<Q")[0])]
    names = [reader.text() for _ in range(reader.take("<Q")[0])]
    if len(names) != len(arrays) or reader.offset != len(reader.data):
        raise UserError(f"checkpoint {path}: an MXNet parameter file with {len(arrays)} arrays, {len(names)} names "
                        "and trailing bytes: damaged, or not a checkpoint (which names every array)")
    return dict(zip(names, arrays))


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def take(self, layout: str) -> tuple:
        size = struct.calcsize(layout)
        if self.offset + size > len(self.data):
            raise UserError(f"checkpoint {self.path}: the MXNet parameter file ends early (truncated)")
        values = struct.unpack_from(layout, self.data, self.offset)
        self.offset += size
        return values

    def text(self) -> str:
        (length,) = self.take("<Q")
        return self.take(f"<{length}s")[0].decode("utf-8")

    def array(self) -> Tensor:
        magic, storage = self.take("<Ii")
        if magic not in ARRAY_MAGICS or storage != 0:
            raise UserError(f"checkpoint {self.path}: an MXNet array vpbench cannot read (magic {magic:#x}, storage "
                            f"type {storage}; only dense arrays are read)")
        (ndim,) = self.take("<i")
        if ndim <= 0:  # an array never given a shape: NDArray::Save writes nothing more
            return torch.empty(0)
        shape = self.take(f"<{ndim}q")
        self.take("<ii")  # the device it was saved from
        (flag,) = self.take("<i")
        if flag not in DTYPES:
            raise UserError(f"checkpoint {self.path}: MXNet type flag {flag} is not a number type vpbench reads")
        dtype = np.dtype(DTYPES[flag]).newbyteorder("<")
        count = int(np.prod(shape))
        raw = self.take(f"<{count * dtype.itemsize}s")[0]
        return torch.from_numpy(np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))).reshape(shape)
