"""Plain point files: raw ``.bin`` / nuScenes ``.pcd.bin``, ``.npy``, ``.pcd`` / ``.ply`` (open3d)
and ``.las`` / ``.laz`` (laspy), plus per-point label files and in-box point counting.

:func:`read_points` picks the reader by extension; :func:`file_info` turns one file into a
``SampleInfo`` (no annotations) that ``load_sample`` loads. Points come back as they are in the
file: no frame conversion (a nuScenes ``.pcd.bin`` stays in its LIDAR_TOP frame).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pointformer.data.gt_database import point_indices_in_boxes
from pointformer.data.infos import LoadedCloud, PointSource, SampleInfo, register_point_format
from pointformer.structures import Boxes3D

log = logging.getLogger(__name__)

KITTI_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity")
NUSCENES_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
LAS_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity")
POINT_EXTENSIONS: tuple[str, ...] = (".pcd.bin", ".bin", ".npy", ".pcd", ".ply", ".las", ".laz")
_FORMAT_OF_EXTENSION = {
    ".pcd.bin": "bin", ".bin": "bin", ".npy": "npy", ".pcd": "pcd", ".ply": "ply", ".las": "las", ".laz": "las",
}
# float32 keeps 1 cm steps up to |coordinate| < 2**17 m; beyond that an origin should be subtracted.
_FLOAT32_SAFE_COORDINATE = 2.0**17


# ------------------------------------------------------------------ naming
def point_extension(path: str | os.PathLike) -> str:
    """The supported extension of ``path`` (``.pcd.bin`` before ``.bin``), lower case."""
    name = Path(path).name.lower()
    for extension in POINT_EXTENSIONS:
        if name.endswith(extension) and len(name) > len(extension):
            return extension
    raise ValueError(f"{path}: unknown point file extension; supported: {', '.join(POINT_EXTENSIONS)}")


def point_format(path: str | os.PathLike) -> str:
    """Point-format registry key for a file: ``bin``, ``npy``, ``pcd``, ``ply`` or ``las``."""
    return _FORMAT_OF_EXTENSION[point_extension(path)]


def frame_stem(path: str | os.PathLike) -> str:
    """File name without its point extension (``a.pcd.bin`` -> ``a``)."""
    name = Path(path).name
    return name[: len(name) - len(point_extension(path))]


# ------------------------------------------------------------------ readers
def read_points(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    dtype: str = "float32",
    *,
    labels_path: str | os.PathLike | None = None,
    origin: Sequence[float] | None = None,
) -> LoadedCloud:
    """Read one point file, chosen by extension, into a float32 ``(N, C)`` cloud.

    ``columns``: for ``.bin`` the file's layout (default KITTI x, y, z, intensity; nuScenes
    x, y, z, intensity, ring for ``.pcd.bin``); for ``.npy`` the names of its columns (default by
    width: 3 -> xyz, 4 -> xyz + intensity); for ``.pcd`` / ``.ply`` / ``.las`` the attributes
    to keep (default: all of a PCD/PLY's attributes, x, y, z, intensity for LAS).
    ``dtype``: element type of a raw ``.bin``. ``labels_path``: per-point labels (``.npy``
    integers, or a SemanticKITTI ``.label``). ``origin`` (3,): subtracted from xyz in float64
    before the float32 cast, for clouds in large (e.g. map) coordinates.
    An empty file of a format that allows it is an empty cloud, not an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file {path} not found")
    columns = None if columns is None else tuple(columns)
    extension = point_extension(path)
    if extension in (".bin", ".pcd.bin"):
        default = NUSCENES_COLUMNS if extension == ".pcd.bin" else KITTI_COLUMNS
        values, names = read_raw_bin(path, columns or default, dtype), columns or default
        labels = None
    elif extension == ".npy":
        values = _read_npy(path, columns)
        names, labels = columns or _columns_for_width(path, values.shape[1]), None
    elif extension in (".pcd", ".ply"):
        values, names, labels = _read_open3d(path, columns)
    else:
        values, names, labels = _read_las(path, columns)
    points = _to_float32(values, names, path, origin)
    cloud = LoadedCloud(points, tuple(names), labels=labels)
    if labels_path is not None:
        cloud.labels, cloud.instance_ids = read_point_labels(labels_path, len(points), path)
    return cloud


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


def _read_npy(path: Path, columns: tuple[str, ...] | None) -> np.ndarray:
    """A 2-D numeric ``.npy`` -> (N, C); its width must match ``columns`` when given."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from error
    if array.ndim != 2 or (columns is not None and array.shape[1] != len(columns)):
        expected = f"(N, {len(columns)}) for {columns}" if columns is not None else "(N, 3) or (N, 4)"
        raise ValueError(f"{path}: array of shape {array.shape}, expected {expected}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{path}: point array of dtype {array.dtype}, expected a numeric dtype")
    return array


def _columns_for_width(path: Path, width: int) -> tuple[str, ...]:
    if width == 3:
        return ("x", "y", "z")
    if width == 4:
        return KITTI_COLUMNS
    raise ValueError(
        f"{path}: {width} columns per point; only 3 (x, y, z) or 4 (x, y, z, intensity) can be "
        f"inferred, pass columns=... (or point_columns in dataset.json)"
    )


def _to_float32(values: np.ndarray, columns: Sequence[str], path: Path, origin: Sequence[float] | None) -> np.ndarray:
    """Shift xyz by ``origin`` in float64 and cast everything to float32."""
    if tuple(columns[:3]) != ("x", "y", "z"):
        raise ValueError(f"{path}: point columns must start with x, y, z, got {tuple(columns)}")
    if origin is None:
        if values.dtype == np.float64 and len(values):
            finite = values[:, :3][np.isfinite(values[:, :3])]
            if finite.size and np.abs(finite).max() > _FLOAT32_SAFE_COORDINATE:
                log.warning(
                    "%s: coordinates up to %.0f lose precision as float32; pass origin=... to re-centre",
                    path, np.abs(finite).max(),
                )
        return np.ascontiguousarray(values, dtype=np.float32)
    shift = np.asarray(origin, dtype=np.float64).reshape(3)
    shifted = values.astype(np.float64, copy=True)
    shifted[:, :3] -= shift
    return np.ascontiguousarray(shifted, dtype=np.float32)


# --------------------------------------------------------------- open3d (pcd / ply)
_PCD_HEADER = re.compile(rb"^(FIELDS|SIZE|TYPE|COUNT|POINTS|WIDTH|HEIGHT|DATA)\s+(.*)$")


def _read_open3d(path: Path, columns: tuple[str, ...] | None) -> tuple[np.ndarray, tuple[str, ...], None]:
    """PCD / PLY through ``open3d.t.io`` (keeps intensity and every other attribute).

    Attribute names: positions -> x, y, z; colors -> r, g, b (values as stored); normals ->
    nx, ny, nz; a one-channel attribute keeps its name; a k-channel one becomes name_0..name_k-1.
    The header is read first because open3d answers an unreadable, truncated or empty file with
    an empty cloud and a warning: the declared count decides between "empty" and "broken".
    """
    header = _pcd_header(path) if path.suffix.lower() == ".pcd" else _ply_header(path)
    if header.count == 0:
        values = np.zeros((0, len(header.columns)), np.float64)
        return _select_columns(values, header.columns, columns, path), columns or header.columns, None
    try:
        import open3d as o3d
    except ImportError as error:
        raise ImportError(f"reading {path} needs open3d (pip install 'pointformer[viz]'): {error}") from error
    cloud = o3d.t.io.read_point_cloud(str(path))
    attributes = {name: cloud.point[name].numpy() for name in cloud.point}
    if "positions" not in attributes or len(attributes["positions"]) != header.count:
        got = len(attributes.get("positions", ()))
        raise ValueError(f"{path}: header declares {header.count} points, open3d read {got} (corrupt file?)")
    names, blocks = ["x", "y", "z"], [attributes.pop("positions")]
    for name, value in attributes.items():
        value = value.reshape(len(value), -1)
        if name == "colors":
            names += ["r", "g", "b"][: value.shape[1]]
        elif name == "normals":
            names += ["nx", "ny", "nz"][: value.shape[1]]
        else:
            names += [name] if value.shape[1] == 1 else [f"{name}_{i}" for i in range(value.shape[1])]
        blocks.append(value)
    values = np.concatenate([b.astype(np.float64) for b in blocks], axis=1)
    # Default order: the file's own field order (open3d's attribute order is not).
    default = tuple([c for c in header.columns if c in names] + [n for n in names if n not in header.columns])
    wanted = columns or default
    return _select_columns(values, tuple(names), wanted, path), wanted, None


@dataclass
class _Header:
    """What a PCD / PLY header declares: the point count and the columns (our naming)."""

    count: int
    columns: tuple[str, ...]


def _pcd_header(path: Path) -> _Header:
    fields: dict[bytes, list[bytes]] = {}
    data_offset = 0
    with open(path, "rb") as handle:
        for raw in iter(lambda: handle.readline(4096), b""):
            match = _PCD_HEADER.match(raw.strip())
            if match:
                fields[match.group(1)] = match.group(2).split()
            if raw.startswith(b"DATA"):
                data_offset = handle.tell()
                break
    missing = [k.decode() for k in (b"FIELDS", b"DATA") if k not in fields]
    if missing:
        raise ValueError(f"{path}: not a PCD file (header has no {', '.join(missing)} line)")
    names = [f.decode() for f in fields[b"FIELDS"]]
    try:
        count = int(fields[b"POINTS"][0]) if b"POINTS" in fields else int(fields[b"WIDTH"][0]) * int(fields[b"HEIGHT"][0])
        sizes = [int(v) for v in fields.get(b"SIZE", [b"4"] * len(names))]
        counts = [int(v) for v in fields.get(b"COUNT", [b"1"] * len(names))]
    except (ValueError, IndexError, KeyError) as error:
        raise ValueError(f"{path}: malformed PCD header ({error})") from error
    data = fields[b"DATA"][0] if fields[b"DATA"] else b""
    if data == b"binary":
        expected = data_offset + count * sum(s * c for s, c in zip(sizes, counts))
        if path.stat().st_size < expected:
            raise ValueError(
                f"{path}: PCD declares {count} binary points ({expected} bytes) but the file has "
                f"{path.stat().st_size} bytes: truncated"
            )
    elif data == b"ascii":
        _check_ascii_rows(path, data_offset, count, sum(counts))
    return _Header(count, _pcd_columns(names, path))


def _check_ascii_rows(path: Path, offset: int, count: int, width: int) -> None:
    """The first ``count`` non-empty lines after ``offset`` must each hold ``width`` values
    (open3d reads a short ASCII file into garbage without failing)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        rows = [line for line in handle.read().splitlines() if line.strip()][:count]
    if len(rows) < count:
        raise ValueError(f"{path}: header declares {count} points but the file has {len(rows)} data rows: truncated")
    for index, row in enumerate(rows):
        if len(row.split()) != width:
            raise ValueError(f"{path}: data row {index} has {len(row.split())} values, expected {width}")


def _pcd_columns(fields: list[str], path: Path) -> tuple[str, ...]:
    rename = {"normal_x": "nx", "normal_y": "ny", "normal_z": "nz"}
    columns = []
    for name in fields:
        if name in ("rgb", "rgba"):
            columns += ["r", "g", "b"]
        else:
            columns.append(rename.get(name, name))
    return _xyz_first(columns, path)


def _ply_header(path: Path) -> _Header:
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"ply":
            raise ValueError(f"{path}: not a PLY file (first line is not 'ply')")
        lines = []
        for raw in iter(lambda: handle.readline(4096), b""):
            line = raw.strip()
            if line == b"end_header":
                break
            lines.append(line.decode("ascii", "replace"))
        else:
            raise ValueError(f"{path}: PLY header has no end_header line")
        body_offset = handle.tell()
    count, properties, element, fixed_row, row_bytes = None, [], None, True, 0
    sizes = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
             "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
    binary = any(line.startswith("format binary") for line in lines)
    vertex_first = None
    for line in lines:
        words = line.split()
        if words[:1] == ["element"]:
            element = words[1] if len(words) > 1 else None
            vertex_first = element == "vertex" if vertex_first is None else vertex_first
            if element == "vertex":
                try:
                    count = int(words[2])
                except (IndexError, ValueError) as error:
                    raise ValueError(f"{path}: malformed PLY line {line!r}") from error
        elif words[:1] == ["property"] and element == "vertex":
            if words[1] == "list":
                fixed_row = False
            else:
                row_bytes += sizes.get(words[1], 0)
            properties.append(words[-1])
    if count is None:
        raise ValueError(f"{path}: PLY header has no 'element vertex' line")
    # Other elements (faces ...) only add bytes, so the vertex rows give a lower bound on the size.
    if binary and fixed_row and path.stat().st_size < body_offset + count * row_bytes:
        raise ValueError(
            f"{path}: PLY declares {count} binary vertices ({body_offset + count * row_bytes} bytes) but the "
            f"file has {path.stat().st_size} bytes: truncated"
        )
    if not binary and fixed_row and vertex_first:
        _check_ascii_rows(path, body_offset, count, len(properties))
    rename = {"red": "r", "green": "g", "blue": "b"}
    columns = [rename.get(p, p) for p in properties if p != "alpha"]
    return _Header(count, _xyz_first(columns, path))


def _xyz_first(columns: list[str], path: Path) -> tuple[str, ...]:
    if not {"x", "y", "z"} <= set(columns):
        raise ValueError(f"{path}: the file's fields {columns} do not include x, y, z")
    return ("x", "y", "z", *[c for c in columns if c not in ("x", "y", "z")])


def _select_columns(values: np.ndarray, names: tuple[str, ...], wanted: tuple[str, ...] | None, path: Path) -> np.ndarray:
    if wanted is None:
        return values
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{path}: point columns {missing} requested but the file has {names}")
    return values[:, [names.index(c) for c in wanted]]


# --------------------------------------------------------------------- laspy
def _read_las(path: Path, columns: tuple[str, ...] | None) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """LAS / LAZ through laspy: x, y, z scaled to file units (float64), intensity as stored
    (uint16), any other requested point dimension by its laspy name; ASPRS classification as
    the point labels."""
    try:
        import laspy
    except ImportError as error:
        raise ImportError(f"reading {path} needs laspy (pip install 'pointformer[las]'): {error}") from error
    try:
        data = laspy.read(str(path))
    except Exception as error:  # laspy raises its own LaspyException, OSError or ValueError subclasses
        raise ValueError(f"{path}: laspy could not read the file ({type(error).__name__}: {error})") from error
    columns = columns or LAS_COLUMNS
    available = {d.lower() for d in data.point_format.dimension_names}
    missing = [c for c in columns if c not in available]
    if missing:
        raise ValueError(f"{path}: point columns {missing} requested but the LAS file has {sorted(available)}")
    values = np.stack([np.asarray(getattr(data, c), dtype=np.float64) for c in columns], axis=1)
    values = values.reshape(-1, len(columns))
    labels = np.asarray(data.classification, dtype=np.int64) if "classification" in available else None
    return values, columns, labels


def las_origin(path: str | os.PathLike) -> list[float]:
    """A round re-centring origin for a LAS/LAZ file: its header minimum, floored (file units)."""
    import laspy

    try:
        with laspy.open(str(path)) as reader:
            mins = np.asarray(reader.header.mins, dtype=np.float64)
    except Exception as error:  # laspy's own exception types
        raise ValueError(f"{path}: laspy could not read the header ({type(error).__name__}: {error})") from error
    return [float(v) for v in np.floor(mins)]


# ------------------------------------------------------------- point labels
def read_point_labels(
    path: str | os.PathLike, expected: int, cloud_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-point labels -> (labels (N,) int64, instance ids (N,) int64 or None).

    ``.npy``: integer (N,) or (N, 1) semantic ids. ``.label``: SemanticKITTI uint32, semantic id
    in the low 16 bits, instance id in the high 16. The count must match the cloud's.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point labels {path} (for {cloud_path}) not found")
    if path.suffix.lower() == ".label":
        raw = read_raw_bin(path, ("label",), "uint32").reshape(-1)
        labels, instances = (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)
    elif path.suffix.lower() == ".npy":
        array = _read_npy_labels(path)
        labels, instances = array.astype(np.int64), None
    else:
        raise ValueError(f"{path}: unknown point-label format; supported: .npy (integers), .label (SemanticKITTI)")
    if labels.shape[0] != expected:
        raise ValueError(f"{path}: {labels.shape[0]} point labels for {expected} points in {cloud_path}")
    return labels, instances


def _read_npy_labels(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from error
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: point labels of shape {array.shape} and dtype {array.dtype}, expected (N,) integers")
    return array


# ------------------------------------------------------------- one file = one sample
def point_source(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    dtype: str = "float32",
    *,
    root: str | os.PathLike | None = None,
    labels_path: str | os.PathLike | None = None,
    origin: Sequence[float] | None = None,
) -> PointSource:
    """A ``PointSource`` for one file with its columns settled (an ``.npy``'s width or a
    PCD/PLY/LAS file's attributes are read from the file when ``columns`` is None).

    ``path`` is relative to ``root`` when one is given. ``labels_path``: absolute, or relative
    to the point file's folder.
    """
    full = Path(root) / path if root is not None else Path(path)
    if not full.is_file():
        raise FileNotFoundError(f"point file {full} not found")
    extension = point_extension(full)
    if columns is None:
        if extension == ".npy":
            columns = _columns_for_width(full, _npy_width(full))
        elif extension in (".pcd", ".ply"):
            header = _pcd_header(full) if extension == ".pcd" else _ply_header(full)
            columns = header.columns
        elif extension in (".las", ".laz"):
            columns = LAS_COLUMNS
        else:
            columns = NUSCENES_COLUMNS if extension == ".pcd.bin" else KITTI_COLUMNS
    key: dict = {}
    if dtype != "float32":
        key["dtype"] = dtype
    if labels_path is not None:
        key["labels"] = str(labels_path)
    if origin is not None:
        key["origin"] = [float(v) for v in origin]
    return PointSource(path=str(path), format=_FORMAT_OF_EXTENSION[extension], columns=tuple(columns), key=key or None)


def _npy_width(path: Path) -> int:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from error
    if array.ndim != 2:
        raise ValueError(f"{path}: array of shape {array.shape}, expected (N, C) points")
    return int(array.shape[1])


def file_info(
    path: str | os.PathLike, columns: Sequence[str] | None = None, *, labels_path: str | os.PathLike | None = None
) -> SampleInfo:
    """One point file as an unlabelled sample (dataset ``file``, id = file stem, absolute path).

    LAS/LAZ clouds are re-centred on :func:`las_origin` (recorded in ``meta['origin']``) so
    that float32 keeps their precision; other formats are read as they are.
    """
    path = Path(path).resolve()
    origin = las_origin(path) if point_format(path) == "las" and path.is_file() else None
    labels = None if labels_path is None else str(Path(labels_path).resolve())
    source = point_source(path, columns, labels_path=labels, origin=origin)
    meta = {"origin": origin} if origin is not None else {}
    return SampleInfo(dataset="file", sample_id=frame_stem(path), lidar=source, meta=meta)


def load_point_file(source: PointSource, path: Path) -> LoadedCloud:
    """Registry loader of every plain format: ``source.columns`` and ``source.key`` (``dtype``,
    ``labels``, ``origin``) passed on to :func:`read_points`."""
    key = source.key or {}
    labels = key.get("labels")
    if labels is not None and not Path(labels).is_absolute():
        labels = path.parent / labels
    return read_points(path, source.columns, key.get("dtype", "float32"), labels_path=labels, origin=key.get("origin"))


# ----------------------------------------------------------- boxes and points
def count_points_in_boxes(points: torch.Tensor | np.ndarray, boxes: Boxes3D) -> torch.Tensor:
    """(M,) int64 points inside each box (surface included), the rule of
    :meth:`Boxes3D.count_points`, one box at a time behind an axis-aligned pre-filter (memory
    O(P) per box, never P x M). Non-finite points count nowhere."""
    counts = [len(inside) for inside in point_indices_in_boxes(torch.as_tensor(points), boxes)]
    return torch.tensor(counts, dtype=torch.int64)


load_bin = load_npy = load_point_file  # the names this module registered first

for _format in ("bin", "npy", "pcd", "ply", "las"):
    register_point_format(_format, load_point_file)
