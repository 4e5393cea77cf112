"""Info records: everything needed to load a sample except the points themselves.

Every reader resolves its dataset's own tables into ``SampleInfo`` records (which files hold
the points, how each maps into the sample's frame, the boxes already in our frame), and one
loader, :func:`load_sample`, turns a record into a ``Sample``. Info files are these records as
JSON, so training never re-parses a dataset's tables and never unpickles anything.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from pointformer.naming import did_you_mean
from pointformer.structures import Annotations, Boxes3D, Sample

log = logging.getLogger(__name__)

INFO_FORMAT_VERSION = 1


@dataclass
class PointSource:
    """One cloud on disk and how it maps into the sample frame.

    ``path``: relative to the dataset root (or absolute). ``format``: a key of the point-format
    registry (``bin``, ``npy``, ``pcd``, ``ply``, ``las``, ``waymo_v2`` ...). ``columns``: the
    names of the file's columns (for raw formats). ``sample_from_source``: 4x4 pose taking the
    file's xyz into the sample frame (None = identity). ``time_lag``: seconds before the keyframe.
    ``labels_path``: per-point uint8 semantic ids (nuScenes lidarseg). ``key``: format-specific
    lookup (e.g. a frame timestamp inside a Parquet file).
    """

    path: str
    format: str
    columns: tuple[str, ...] = ("x", "y", "z", "intensity")
    sample_from_source: list[list[float]] | None = None
    time_lag: float = 0.0
    labels_path: str | None = None
    key: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.columns = tuple(self.columns)


@dataclass
class SampleInfo:
    """One frame: its keyframe cloud, earlier sweeps (newest first) and annotations in our frame.

    ``annotations`` holds lists: ``boxes`` (M, 7 or 9), ``names``, ``num_points``,
    ``attributes``, ``ids``, and ``box_dim`` (7 or 9, so that a frame without boxes still has
    the dataset's box width); None for unlabelled data. ``max_sweeps``: the sweeps the record
    was built to hold (the first samples of a sequence may have fewer); it fixes the point
    columns, so every sample of a dataset gets the same ones.
    """

    dataset: str
    sample_id: str
    lidar: PointSource
    sweeps: list[PointSource] = field(default_factory=list)
    annotations: dict[str, list] | None = None
    scene: str = ""
    timestamp_us: int = 0
    max_sweeps: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(record: dict[str, Any], where: str = "info record") -> "SampleInfo":
        """Inverse of :meth:`to_dict`. An unknown key (with the nearest valid one suggested), a
        missing required key or a non-object is a ``ValueError`` naming ``where`` and the key."""
        _check_record_keys(record, SampleInfo, where)
        record = dict(record)
        record["lidar"] = _point_source(record["lidar"], f"{where}: lidar")
        sweeps = record.get("sweeps", [])
        if not isinstance(sweeps, list):
            raise ValueError(f"{where}: 'sweeps' must be a list, got {type(sweeps).__name__}")
        record["sweeps"] = [_point_source(s, f"{where}: sweeps[{j}]") for j, s in enumerate(sweeps)]
        return SampleInfo(**record)


def _point_source(record: Any, where: str) -> PointSource:
    _check_record_keys(record, PointSource, where)
    return PointSource(**record)


def _check_record_keys(record: Any, container: type, where: str) -> None:
    """``record`` must be a dict whose keys are fields of the dataclass ``container``, with
    every field that has no default present."""
    names = [f.name for f in fields(container)]
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with keys {names}, got {type(record).__name__}")
    for key in record:
        if key not in names:
            raise ValueError(f"{where}: unknown key {key!r}{did_you_mean(key, names)}; valid keys: {', '.join(names)}")
    required = [f.name for f in fields(container) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in record]
    if missing:
        raise ValueError(f"{where}: missing required key {missing[0]!r} (required: {', '.join(required)})")


# ----------------------------------------------------------------- annotations
def annotations_to_record(annotations: Annotations) -> dict[str, list]:
    """JSON-able form of ``Annotations`` (boxes as float64 lists, NaN kept as null)."""
    boxes = annotations.boxes.tensor.detach().cpu().to(torch.float64).numpy()
    return {
        "box_dim": int(annotations.boxes.tensor.shape[1]),
        "boxes": [[None if not np.isfinite(v) else float(v) for v in row] for row in boxes],
        "names": list(annotations.names),
        "num_points": [int(v) for v in annotations.num_points.tolist()],
        "attributes": list(annotations.attributes),
        "ids": list(annotations.ids),
    }


def empty_annotations_record(box_dim: int) -> dict[str, list]:
    """The record of a labelled frame without boxes, ``box_dim`` (7 or 9) wide."""
    if box_dim not in (7, 9):
        raise ValueError(f"box_dim must be 7 or 9, got {box_dim!r}")
    return {"box_dim": box_dim, "boxes": [], "names": [], "num_points": [], "attributes": [], "ids": []}


def record_box_dim(record: dict[str, list] | None) -> int | None:
    """The width of the boxes a record loads as: its rows' length, else (no boxes) its
    ``box_dim``; None for an unlabelled frame (or an empty record written without ``box_dim``)."""
    if record is None:
        return None
    if record["boxes"]:
        return len(record["boxes"][0])
    return None if record.get("box_dim") is None else int(record["box_dim"])


def annotations_from_record(
    record: dict[str, list] | None, with_velocity: bool = True, where: str = "annotations record"
) -> Annotations:
    """Inverse of :func:`annotations_to_record`; an empty record keeps its ``box_dim``, an
    unlabelled frame (None) gets ``with_velocity`` (9) or 7 columns. Rows of different widths,
    or of a width other than 7 or 9, are an error."""
    box_dim = record_box_dim(record)
    if box_dim is None:
        box_dim = 9 if with_velocity else 7
    widths = {len(row) for row in record["boxes"]} if record is not None else set()
    if box_dim not in (7, 9) or len(widths) > 1:
        raise ValueError(f"{where}: boxes must all be 7 or all 9 wide, got widths {sorted(widths or {box_dim})}")
    if record is None or len(record["boxes"]) == 0:
        return Annotations.empty(with_velocity=box_dim == 9)
    boxes = np.array([[np.nan if v is None else v for v in row] for row in record["boxes"]], dtype=np.float64)
    return Annotations(
        Boxes3D(torch.from_numpy(boxes).float()),
        list(record["names"]),
        torch.tensor(record["num_points"], dtype=torch.int64),
        list(record["attributes"]),
        list(record["ids"]),
    )


# ------------------------------------------------------------- point formats
@dataclass
class LoadedCloud:
    """A cloud as read from one source, still in the source frame."""

    points: np.ndarray  # (N, C) float32
    columns: tuple[str, ...]
    labels: np.ndarray | None = None  # (N,) int64 semantic ids
    instance_ids: np.ndarray | None = None  # (N,) int64
    dropped_close: int = 0


PointLoader = Callable[[PointSource, Path], LoadedCloud]
_POINT_LOADERS: dict[str, PointLoader] = {}


def register_point_format(name: str, loader: PointLoader) -> None:
    """Make ``PointSource(format=name)`` loadable by ``loader(source, path) -> LoadedCloud``."""
    _POINT_LOADERS[name] = loader


def _loader_for(source: PointSource) -> PointLoader:
    if source.format not in _POINT_LOADERS:
        # Formats register themselves when their reader module is imported.
        from pointformer.data import readers  # noqa: F401
    if source.format not in _POINT_LOADERS:
        raise ValueError(
            f"{source.path}: unknown point format {source.format!r}; known: {sorted(_POINT_LOADERS)}"
        )
    return _POINT_LOADERS[source.format]


def resolve(root: str | os.PathLike | None, path: str) -> Path:
    path_obj = Path(path)
    return path_obj if path_obj.is_absolute() or root is None else Path(root) / path_obj


def read_source(source: PointSource, root: str | os.PathLike | None, min_distance: float = 0.0) -> LoadedCloud:
    """Read one source and its lidarseg labels, dropping the points within ``min_distance`` of
    the sensor (square rule); points stay in the source frame."""
    path = resolve(root, source.path)
    cloud = _loader_for(source)(source, path)
    if source.labels_path is not None:
        cloud.labels = read_lidarseg(resolve(root, source.labels_path), expected=len(cloud.points), cloud_path=path)
    if min_distance > 0:
        keep = _outside_ego_square(cloud.points, min_distance)
        dropped = int(len(keep) - np.count_nonzero(keep))
        if dropped:
            cloud = _select_cloud(cloud, keep)
        cloud.dropped_close = dropped
    return cloud


def load_cloud(source: PointSource, root: str | os.PathLike | None, min_distance: float = 0.0) -> LoadedCloud:
    """:func:`read_source`, then xyz moved into the sample frame."""
    cloud = read_source(source, root, min_distance)
    if source.sample_from_source is not None and len(cloud.points):
        xyz = transformed_xyz(cloud.points, np.asarray(source.sample_from_source, dtype=np.float64))
        cloud.points = cloud.points.copy()
        for axis, values in enumerate(xyz):
            cloud.points[:, axis] = values
    return cloud


def transformed_xyz(points: np.ndarray, pose: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """The x, y, z columns of (N, C) ``points`` after a 4x4 pose, each (N,) float64.

    Accumulated column by column in float64 (as precise as a float64 matrix product and about
    three times faster than numpy's mixed-precision matmul).
    """
    x, y, z = (points[:, i].astype(np.float64) for i in range(3))
    if pose is None:
        return x, y, z
    return tuple(pose[row, 0] * x + pose[row, 1] * y + pose[row, 2] * z + pose[row, 3] for row in range(3))


def read_lidarseg(path: Path, expected: int, cloud_path: Path) -> np.ndarray:
    """uint8 per-point label file -> (N,) int64; its length must match the cloud."""
    if not path.is_file():
        raise FileNotFoundError(f"lidarseg labels {path} (for {cloud_path}) not found")
    labels = np.fromfile(path, dtype=np.uint8)
    if labels.shape[0] != expected:
        raise ValueError(f"{path}: {labels.shape[0]} lidarseg labels for {expected} points in {cloud_path}")
    return labels.astype(np.int64)


# ------------------------------------------------------------------- loading
def load_sample(
    info: SampleInfo,
    root: str | os.PathLike | None,
    *,
    num_sweeps: int | None = None,
    feature_columns: Sequence[str] = ("intensity",),
    time_lag: bool | None = None,
    sweep_min_distance: float = 1.0,
) -> Sample:
    """Load a record into a ``Sample`` in our frame.

    ``num_sweeps``: earlier sweeps to merge (None = all in the record, 0 = keyframe only).
    ``feature_columns``: point features kept after x, y, z; a column the data lacks is an error.
    ``time_lag``: append the seconds-before-keyframe column (default: when sweeps are asked for,
    ``num_sweeps`` or else the record's ``max_sweeps`` > 0).
    ``sweep_min_distance``: sweep points with |x| and |y| below this (metres, in their own sensor
    frame) are ego-vehicle returns and are dropped (counted in ``meta['dropped_close']``).
    Non-finite points are dropped and counted in ``meta['dropped_non_finite']``.
    """
    if num_sweeps is not None and num_sweeps < 0:
        raise ValueError(f"num_sweeps must be >= 0 (or None for all recorded), got {num_sweeps}")
    sweeps = info.sweeps if num_sweeps is None else info.sweeps[:num_sweeps]
    if time_lag is None:
        time_lag = (info.max_sweeps if num_sweeps is None else num_sweeps) > 0
    columns = ("x", "y", "z", *feature_columns) + (("time_lag",) if time_lag else ())

    sources = [info.lidar, *sweeps]
    clouds = [read_source(s, root, min_distance=sweep_min_distance if i > 0 else 0.0) for i, s in enumerate(sources)]
    points = _merge_columns(clouds, sources, feature_columns, time_lag)
    counts = [len(c.points) for c in clouds]
    point_labels = _merge_optional([clouds[0].labels] + [None] * len(sweeps), counts)
    instance_ids = _merge_optional([clouds[0].instance_ids] + [None] * len(sweeps), counts)
    dropped_close = sum(c.dropped_close for c in clouds)

    finite = np.isfinite(points).all(axis=1)
    dropped_non_finite = int((~finite).sum())
    if dropped_non_finite:
        log.warning("%s: dropped %d non-finite points", info.lidar.path, dropped_non_finite)
        points = points[finite]
        point_labels = None if point_labels is None else point_labels[finite]
        instance_ids = None if instance_ids is None else instance_ids[finite]

    meta = {
        **info.meta,
        "dataset": info.dataset,
        "sample_id": info.sample_id,
        "scene": info.scene,
        "timestamp_us": info.timestamp_us,
        "lidar_path": info.lidar.path,
        "num_sweeps": len(sweeps),
        "dropped_non_finite": dropped_non_finite,
        "dropped_close": dropped_close,
    }
    return Sample(
        points=torch.from_numpy(points),
        point_columns=columns,
        annotations=annotations_from_record(info.annotations, where=f"sample {info.sample_id}: annotations"),
        point_labels=None if point_labels is None else torch.from_numpy(point_labels),
        instance_ids=None if instance_ids is None else torch.from_numpy(instance_ids),
        meta=meta,
    )


def _outside_ego_square(points: np.ndarray, min_distance: float) -> np.ndarray:
    """Mask of points outside the square |x| < d and |y| < d around the sensor, in the sensor's
    own frame (the nuScenes devkit's and mmdetection3d's ``remove_close`` rule)."""
    close = (np.abs(points[:, 0]) < min_distance) & (np.abs(points[:, 1]) < min_distance)
    return ~close


def _select_cloud(cloud: LoadedCloud, keep: np.ndarray) -> LoadedCloud:
    return LoadedCloud(
        cloud.points[keep],
        cloud.columns,
        None if cloud.labels is None else cloud.labels[keep],
        None if cloud.instance_ids is None else cloud.instance_ids[keep],
    )


def _merge_columns(clouds: Sequence[LoadedCloud], sources: Sequence[PointSource], features: Sequence[str],
                   time_lag: bool) -> np.ndarray:
    """(sum N_i, 3 + F [+ 1]) float32: x, y, z in the sample frame and ``features`` of every
    cloud (still in its source frame) back to back, then each source's time lag; written once
    into one array."""
    wanted = ("x", "y", "z", *features)
    width = len(wanted) + int(time_lag)
    points = np.empty((sum(len(c.points) for c in clouds), width), dtype=np.float32)
    start = 0
    for cloud, source in zip(clouds, sources):
        missing = [c for c in wanted if c not in cloud.columns]
        if missing:
            raise ValueError(f"{source.path}: point columns {missing} requested but the file has {cloud.columns}")
        stop = start + len(cloud.points)
        pose = None if source.sample_from_source is None else np.asarray(source.sample_from_source, np.float64)
        for axis, values in enumerate(transformed_xyz(cloud.points, pose)):
            points[start:stop, axis] = values
        index = [cloud.columns.index(c) for c in features]
        points[start:stop, 3 : len(wanted)] = cloud.points[:, index]
        if time_lag:
            points[start:stop, -1] = source.time_lag
        start = stop
    return points


def _merge_optional(parts: list[np.ndarray | None], counts: list[int]) -> np.ndarray | None:
    """Concatenate per-source arrays, -1 where a source has none; None if no source has any."""
    if all(p is None for p in parts):
        return None
    return np.concatenate(
        [p.astype(np.int64) if p is not None else np.full(n, -1, np.int64) for p, n in zip(parts, counts)]
    )


class PackedInfos(Sequence[SampleInfo]):
    """Records kept as JSON in one uint8 buffer with offsets, decoded on access.

    A list of ~30k record objects costs over a GB of Python objects per process, and every
    DataLoader worker slowly copies it (reference counting dirties the shared pages); one numpy
    buffer is a few hundred MB shared as it is. Records must be JSON-safe, as readers make them
    (a tuple comes back as a list).
    """

    def __init__(self, infos: Sequence[SampleInfo]):
        blobs = [_record_json(info) for info in infos]
        self._offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=self._offsets[1:])
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8) if blobs else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1


    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]
        blob = self._buffer[self._offsets[index] : self._offsets[index + 1]].tobytes()
        return SampleInfo.from_dict(json.loads(blob))

    @property
    def nbytes(self) -> int:
        return self._buffer.nbytes + self._offsets.nbytes


def _record_json(info: SampleInfo) -> bytes:
    try:
        return json.dumps(info.to_dict(), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"info record {info.sample_id!r} is not JSON-safe: {error}") from error


# ---------------------------------------------------------------- info files
def save_infos(path: str | os.PathLike, infos: Sequence[SampleInfo], **header: Any) -> None:
    """Write records as one JSON document ``{"info_version", **header, "infos": [...]}``."""
    reserved = {"info_version", "infos"} & set(header)
    if reserved:
        raise ValueError(f"save_infos: header keys {sorted(reserved)} are reserved")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"info_version": INFO_FORMAT_VERSION, **header, "infos": [i.to_dict() for i in infos]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, allow_nan=False))
    os.replace(tmp, path)


def info_root(path: str | os.PathLike, header: dict[str, Any]) -> Path:
    """The dataset root of an info file: its header's ``root``, relative to the file."""
    return Path(path).parent / header.get("root", ".")


def load_infos(path: str | os.PathLike) -> tuple[list[SampleInfo], dict[str, Any]]:
    """Read an info file -> (records, header)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"info file {path} not found (create it with tools/create_data.py)")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a JSON info file ({error})") from error
    if not isinstance(document, dict) or "infos" not in document:
        raise ValueError(f"{path}: info file has no 'infos' list")
    if document.get("info_version") != INFO_FORMAT_VERSION:
        raise ValueError(
            f"{path}: info format version {document.get('info_version')}, expected {INFO_FORMAT_VERSION}"
        )
    if not isinstance(document["infos"], list):
        raise ValueError(f"{path}: 'infos' must be a list of records, got {type(document['infos']).__name__}")
    header = {k: v for k, v in document.items() if k != "infos"}
    records = [SampleInfo.from_dict(r, f"{path}: info record {i}") for i, r in enumerate(document["infos"])]
    return records, header
