"""``.npy`` files sized from their header before a byte of data is read (numpy only: no torch)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from magec.errors import file_error

#: The most values magec reads from a ``.npy`` file it is given (a direction has one per latent dimension:
#: 512 for StyleGAN2's W, 100 for the DCGAN; W+ of a 1024 generator is 18 x 512).
MAX_NPY_VALUES = 1 << 20


def npy_header(path: str | Path, max_values: int = MAX_NPY_VALUES) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file declares, checked before its data is read: a real floating-point
    dtype (never pickled objects), at most ``max_values`` values, and a file long enough to hold them.
    Any problem is a one-line ``MagecError`` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder, not a .npy file")
    if not path.is_file():
        raise file_error(path, "no such direction file")
    with open(path, "rb") as fh:
        head = fh.read(6)
        if head.startswith(b"PK\x03\x04"):
            raise file_error(path, "is an .npz archive; expected a single .npy array")
        if head != b"\x93NUMPY":
            raise file_error(path, "not a .npy file (no NumPy header)")
        fh.seek(0)
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, EOFError, SyntaxError, TypeError) as exc:
            text = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise file_error(path, f"not a readable .npy array ({text})") from None
        data_start = fh.tell()
    if dtype.hasobject:
        raise file_error(path, "holds pickled Python objects; only plain numeric .npy arrays are read")
    if dtype.kind != "f":
        raise file_error(path, f"expected a real floating-point array, got dtype {dtype}")
    count = math.prod(shape)
    if count > max_values:
        raise file_error(path, f"declares shape {shape} ({count} values), more than the {max_values} magec reads")
    if path.stat().st_size < data_start + count * dtype.itemsize:
        raise file_error(path, f"truncated: its header declares shape {shape} of {dtype}, the file is shorter")
    return tuple(int(n) for n in shape), dtype
