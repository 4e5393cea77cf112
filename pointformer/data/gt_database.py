"""GT database: the points of every annotated object, saved once, pasted into other scenes.

Layout of a database folder (all NumPy / JSON, no pickle):

- ``gt_points_00000.npy`` ...: float32 ``(P, C)`` shards, the objects' points back to back,
  x, y, z relative to the box centre (the box frame is *not* rotated), other columns as read;
  opened memory-mapped, so loading an object is a slice.
- ``gt_database.json``: the index. ``point_columns`` (the columns of every shard's rows),
  ``shards`` (file names) and ``objects``, a table of per-object columns: ``name``, ``box``
  (our format, 7 or 9 values as annotated, null for an unknown velocity), ``num_points``,
  ``shard`` / ``start`` (where its rows are), ``sample_id``, ``box_index`` (its index in the
  sample's annotations), ``key`` (``<sample_id>_<name>_<box_index>``), ``attribute``,
  ``instance_id``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pointformer.data.infos import SampleInfo, load_infos, load_sample
from pointformer.structures import Boxes3D

log = logging.getLogger(__name__)

GT_DATABASE_VERSION = 1
INDEX_NAME = "gt_database.json"
_SHARD_PATTERN = "gt_points_{:05d}.npy"


# ------------------------------------------------------------ points in boxes
def point_indices_in_boxes(points: torch.Tensor, boxes: Boxes3D) -> list[torch.Tensor]:
    """Indices (int64) of the points inside each box, surface included.

    The same rule as :meth:`Boxes3D.points_in_boxes`, which decides every point that passes an
    axis-aligned bound (half-size ``(l + w) / 2`` around the centre, a superset of the box), so
    memory stays O(P) per box instead of O(P x N). Boxes with non-finite geometry hold nothing.
    """
    xyz = torch.as_tensor(points)[:, :3].to(torch.float64)
    tensor = boxes.tensor.detach().to(device=xyz.device, dtype=torch.float64)
    indices = []
    for row in tensor:
        reach = (row[3] + row[4]) / 2 + 1e-6
        offset = xyz - row[:3]
        near = (offset[:, 0].abs() <= reach) & (offset[:, 1].abs() <= reach) & (offset[:, 2].abs() <= row[5] / 2 + 1e-6)
        candidates = torch.nonzero(near, as_tuple=False).reshape(-1)
        inside = Boxes3D(row[None]).points_in_boxes(xyz[candidates])[:, 0]
        indices.append(candidates[inside])
    return indices


def points_in_any_box(points: torch.Tensor, boxes: Boxes3D) -> torch.Tensor:
    """(P,) bool: True where a point lies inside (or on the surface of) at least one box."""
    mask = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    for index in point_indices_in_boxes(points, boxes):
        mask[index.to(points.device)] = True
    return mask


# --------------------------------------------------------------------- build
class _ShardWriter:
    """Appends (n, C) float32 chunks and writes a ``.npy`` shard every ``max_points`` rows."""

    def __init__(self, out_dir: Path, num_columns: int, max_points: int):
        self.out_dir = out_dir
        self.num_columns = num_columns
        self.max_points = max_points
        self.shards: list[str] = []
        self._chunks: list[np.ndarray] = []
        self._rows = 0

    def add(self, rows: np.ndarray) -> tuple[int, int]:
        """Queue rows; returns (shard number, first row) where they will be stored."""
        if self._rows and self._rows + len(rows) > self.max_points:
            self.flush()
        location = (len(self.shards), self._rows)
        self._chunks.append(rows)
        self._rows += len(rows)
        return location

    def flush(self) -> None:
        if not self._chunks:
            return
        name = _SHARD_PATTERN.format(len(self.shards))
        _save_npy_atomic(self.out_dir / name, np.concatenate(self._chunks, axis=0))
        self.shards.append(name)
        self._chunks, self._rows = [], 0


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)


def _box_record(row: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in row]


def build_gt_database(
    infos: Sequence[SampleInfo] | str | os.PathLike,
    root: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    num_sweeps: int = 0,
    *,
    feature_columns: Sequence[str] = ("intensity",),
    min_points: int = 1,
    sweep_min_distance: float = 1.0,
    shard_max_points: int = 4_000_000,
    progress: bool = True,
) -> Path:
    """Save the points inside every annotated box of ``class_names``; return the index path.

    ``infos``: records from any reader (or an info-file path); points are loaded with
    :func:`load_sample` (``num_sweeps`` earlier sweeps merged, then a ``time_lag`` column is
    added; ``feature_columns`` after x, y, z). A box is kept when its geometry (first 7 values)
    is finite and it holds at least ``min_points`` (>= 1) points of that cloud; the count saved
    is that number, not the dataset's own. Shards hold at most ``shard_max_points`` rows.
    """
    if min_points < 1:
        raise ValueError(f"build_gt_database: min_points must be >= 1, got {min_points}")
    if isinstance(infos, (str, os.PathLike)):
        infos, _ = load_infos(infos)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(class_names)
    columns: tuple[str, ...] | None = None
    writer: _ShardWriter | None = None
    objects: dict[str, list] = {k: [] for k in (
        "name", "box", "num_points", "shard", "start", "sample_id", "box_index", "key", "attribute", "instance_id")}
    skipped: Counter[str] = Counter()

    for info in _progress(infos, "GT database", progress):
        if not info.annotations or not any(n in wanted for n in info.annotations.get("names", [])):
            continue
        sample = load_sample(info, root, num_sweeps=num_sweeps, feature_columns=feature_columns,
                             sweep_min_distance=sweep_min_distance)
        if columns is None:
            columns = sample.point_columns
            writer = _ShardWriter(out_dir, len(columns), shard_max_points)
        elif sample.point_columns != columns:
            raise ValueError(f"{info.lidar.path}: point columns {sample.point_columns} differ from {columns}")
        annotations = sample.annotations
        boxes = annotations.boxes.tensor.detach().to(torch.float64)
        picked = [k for k, name in enumerate(annotations.names) if name in wanted]
        finite = [k for k in picked if bool(torch.isfinite(boxes[k, :7]).all())]
        skipped["non_finite"] += len(picked) - len(finite)
        inside = point_indices_in_boxes(sample.points, annotations.boxes[finite]) if finite else []
        points64 = sample.points.to(torch.float64)
        for k, index in zip(finite, inside):
            if len(index) < min_points:
                skipped["too_few_points"] += 1
                continue
            local = points64[index]
            local[:, :3] -= boxes[k, :3]
            shard, start = writer.add(local.to(torch.float32).numpy())
            name = annotations.names[k]
            objects["name"].append(name)
            objects["box"].append(_box_record(boxes[k].numpy()))
            objects["num_points"].append(len(index))
            objects["shard"].append(shard)
            objects["start"].append(start)
            objects["sample_id"].append(info.sample_id)
            objects["box_index"].append(k)
            objects["key"].append(f"{info.sample_id}_{name}_{k}")
            objects["attribute"].append(annotations.attributes[k])
            objects["instance_id"].append(annotations.ids[k])
    if writer is not None:
        writer.flush()

    index_path = out_dir / INDEX_NAME
    document = {
        "version": GT_DATABASE_VERSION,
        "point_columns": list(columns or ("x", "y", "z", *feature_columns)),
        "class_names": list(class_names),
        "num_sweeps": num_sweeps,
        "min_points": min_points,
        "shards": writer.shards if writer is not None else [],
        "objects": objects,
    }
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.write_text(json.dumps(document, allow_nan=False))
    os.replace(tmp, index_path)
    log.info("GT database %s: %d objects %s; skipped %s", index_path, len(objects["name"]),
             dict(Counter(objects["name"])), {k: v for k, v in skipped.items() if v})
    return index_path


def _progress(items: Sequence, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, total=len(items))


# ---------------------------------------------------------------------- load
class GTDatabase:
    """A built database: per-object columns in memory, points memory-mapped from the shards.

    ``names`` list[str]; ``boxes`` float64 (N, 7) or (N, 9) (7-value boxes padded with NaN
    velocity when the database mixes both); ``num_points`` int64 (N,); ``sample_ids``,
    ``box_indices``, ``keys``, ``attributes``, ``instance_ids``; ``point_columns``.
    """

    def __init__(self, index_path: str | os.PathLike):
        self.index_path = Path(index_path)
        if self.index_path.is_dir():
            self.index_path = self.index_path / INDEX_NAME
        if not self.index_path.is_file():
            raise FileNotFoundError(f"GT database index {self.index_path} not found (build it with build_gt_database)")
        try:
            document = json.loads(self.index_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.index_path}: not a JSON GT database index ({error})") from error
        self._check_document(document)
        objects = document["objects"]
        self.point_columns: tuple[str, ...] = tuple(document["point_columns"])
        self.shard_paths = [self.index_path.parent / name for name in document["shards"]]
        for path in self.shard_paths:
            if not path.is_file():
                raise FileNotFoundError(f"{self.index_path}: shard {path} not found")
        self.names: list[str] = list(objects["name"])
        self.boxes = _boxes_array(objects["box"], self.index_path)
        self.num_points = np.asarray(objects["num_points"], dtype=np.int64)
        self.shard = np.asarray(objects["shard"], dtype=np.int64)
        self.start = np.asarray(objects["start"], dtype=np.int64)
        self.sample_ids: list[str] = list(objects["sample_id"])
        self.box_indices = np.asarray(objects["box_index"], dtype=np.int64)
        self.keys: list[str] = list(objects["key"])
        self.attributes: list[str] = list(objects["attribute"])
        self.instance_ids: list[str] = list(objects["instance_id"])
        if len(self.names) and (self.shard.min() < 0 or self.shard.max() >= len(self.shard_paths)):
            raise ValueError(f"{self.index_path}: objects.shard refers to shards outside 0..{len(self.shard_paths) - 1}")
        self._shards: dict[int, np.ndarray] = {}

    def _check_document(self, document: Any) -> None:
        where = self.index_path
        if not isinstance(document, dict) or document.get("version") != GT_DATABASE_VERSION:
            version = document.get("version") if isinstance(document, dict) else None
            raise ValueError(f"{where}: GT database version {version}, expected {GT_DATABASE_VERSION}")
        for field in ("point_columns", "shards", "objects"):
            if field not in document:
                raise ValueError(f"{where}: GT database index has no field {field!r}")
        objects = document["objects"]
        fields = ("name", "box", "num_points", "shard", "start", "sample_id", "box_index", "key", "attribute", "instance_id")
        missing = [f for f in fields if f not in objects]
        if missing:
            raise ValueError(f"{where}: objects table lacks fields {missing}")
        lengths = {f: len(objects[f]) for f in fields}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{where}: objects table fields have different lengths {lengths}")

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"GTDatabase({str(self.index_path)!r}, objects={len(self)}, columns={self.point_columns})"

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in the receiving process instead of being copied.
        state = dict(self.__dict__)
        state["_shards"] = {}
        return state

    @property
    def class_counts(self) -> dict[str, int]:
        return dict(Counter(self.names))

    def indices(self, name: str, min_points: int = 1) -> np.ndarray:
        """(K,) int64 indices of the objects called ``name`` with at least ``min_points`` points."""
        names = np.asarray(self.names, dtype=object)
        return np.nonzero((names == name) & (self.num_points >= min_points))[0].astype(np.int64)

    def object_boxes(self, indices: Sequence[int] | np.ndarray) -> Boxes3D:
        """Boxes (float64) of the objects at ``indices``, where they were annotated."""
        return Boxes3D(torch.from_numpy(self.boxes[np.asarray(indices, dtype=np.int64)].copy()))

    def points(self, index: int) -> np.ndarray:
        """float32 (num_points, C) points of one object, x, y, z relative to its box centre."""
        shard = self._shard(int(self.shard[index]))
        start, count = int(self.start[index]), int(self.num_points[index])
        if start < 0 or start + count > shard.shape[0]:
            raise ValueError(
                f"{self.shard_paths[self.shard[index]]}: object {self.keys[index]} rows {start}..{start + count} "
                f"outside the shard's {shard.shape[0]} rows"
            )
        return np.array(shard[start:start + count], dtype=np.float32)

    def _shard(self, number: int) -> np.ndarray:
        if number not in self._shards:
            path = self.shard_paths[number]
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as error:
                raise ValueError(f"{path}: not a NumPy shard ({error})") from error
            if array.ndim != 2 or array.shape[1] != len(self.point_columns):
                raise ValueError(f"{path}: shard of shape {array.shape}, expected (P, {len(self.point_columns)}) "
                                 f"for columns {self.point_columns}")
            self._shards[number] = array
        return self._shards[number]


def _boxes_array(rows: Sequence[Sequence[float | None]], where: Path) -> np.ndarray:
    widths = {len(r) for r in rows}
    if not widths <= {7, 9}:
        raise ValueError(f"{where}: objects.box rows must have 7 or 9 values, found widths {sorted(widths)}")
    width = max(widths, default=9)
    boxes = np.full((len(rows), width), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        boxes[i, :len(row)] = [np.nan if v is None else v for v in row]
    if len(rows) and not np.isfinite(boxes[:, :7]).all():
        raise ValueError(f"{where}: objects.box has non-finite geometry")
    return boxes

