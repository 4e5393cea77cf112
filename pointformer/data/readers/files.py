"""Plain point files: raw ``.bin`` (declared dtype and columns) and ``.npy``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pointformer.data.infos import LoadedCloud, PointSource, register_point_format


def read_raw_bin(path: Path, columns: tuple[str, ...], dtype: str = "float32") -> np.ndarray:
    """A headerless binary file of ``len(columns)`` values per point -> (N, C) array.

    A size that is not a whole number of rows is a truncated or mis-declared file: an error
    naming the file, its size and the row width.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file {path} not found")
    item = np.dtype(dtype).itemsize
    row_bytes = item * len(columns)
    size = path.stat().st_size
    if size % row_bytes:
        raise ValueError(
            f"{path}: {size} bytes is not a whole number of {len(columns)}-column {dtype} rows "
            f"({row_bytes} bytes each): truncated file or wrong column count {columns}"
        )
    return np.fromfile(path, dtype=dtype).reshape(-1, len(columns))


def load_bin(source: PointSource, path: Path) -> LoadedCloud:
    dtype = (source.key or {}).get("dtype", "float32")
    return LoadedCloud(read_raw_bin(path, source.columns, dtype).astype(np.float32, copy=False), source.columns)


def load_npy(source: PointSource, path: Path) -> LoadedCloud:
    if not path.is_file():
        raise FileNotFoundError(f"point file {path} not found")
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[1] != len(source.columns):
        raise ValueError(f"{path}: array of shape {array.shape}, expected (N, {len(source.columns)}) for {source.columns}")
    return LoadedCloud(array.astype(np.float32, copy=False), source.columns)


register_point_format("bin", load_bin)
register_point_format("npy", load_npy)
