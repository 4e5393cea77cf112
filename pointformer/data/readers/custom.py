"""A LiDAR-only dataset of your own: point files, JSON labels in our box convention, split lists.

Layout (see ``datasets/README.md``)::

    root/dataset.json            {"classes": [...], "point_columns": [...], "point_dtype": "float32"}  (optional)
    root/points/<frame_id>.{bin,npy,pcd,ply,las,laz,pcd.bin}
    root/labels/<frame_id>.json  {"boxes": [{"box": [x, y, z, l, w, h, yaw], "name": "car", ...}]}
    root/splits/<split>.txt      frame ids, one per line (optional)

Boxes are in our convention: x forward, y left, z up, metres, centre of gravity, yaw
counter-clockwise from +x. A frame without a label file has no boxes: in a split where some
frame has labels its record is an empty annotations record of the split's box width; in a
split without any label file every record is unlabelled (annotations None).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pointformer.data.infos import SampleInfo, empty_annotations_record, load_cloud
from pointformer.data.readers.base import LazyFrameReader
from pointformer.data.readers.files import (
    count_points_in_boxes,
    frame_stem,
    point_extension,
    point_source,
)
from pointformer.naming import did_you_mean
from pointformer.structures import Annotations, Boxes3D
from pointformer.structures.rotation import normalize_yaw

DATASET_KEYS: tuple[str, ...] = ("classes", "point_columns", "point_dtype")
LABEL_KEYS: tuple[str, ...] = ("boxes",)
BOX_KEYS: tuple[str, ...] = ("box", "name", "velocity", "id", "num_points", "attribute")


@dataclass
class CustomDatasetConfig:
    """``dataset.json``. ``classes``: allowed box names (None = any); ``point_columns``: the
    columns of every point file (None = per file: KITTI x, y, z, intensity for ``.bin``, by
    width for ``.npy``, the file's own fields for PCD/PLY); ``point_dtype``: element type of ``.bin``."""

    classes: tuple[str, ...] | None = None
    point_columns: tuple[str, ...] | None = None
    point_dtype: str = "float32"


def read_dataset_config(root: str | os.PathLike) -> CustomDatasetConfig:
    """``root/dataset.json`` -> config (defaults when the file is absent)."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return CustomDatasetConfig()
    document = _read_json(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object with keys {DATASET_KEYS}")
    _check_keys(document, DATASET_KEYS, f"{path}")
    classes, columns = document.get("classes"), document.get("point_columns")
    for name, value in (("classes", classes), ("point_columns", columns)):
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"{path}: {name} must be a list of strings, got {value!r}")
    if columns is not None and tuple(columns[:3]) != ("x", "y", "z"):
        raise ValueError(f"{path}: point_columns must start with x, y, z, got {columns}")
    dtype = document.get("point_dtype", "float32")
    try:
        np.dtype(dtype)
    except TypeError as error:
        raise ValueError(f"{path}: point_dtype {dtype!r} is not a numpy dtype") from error
    return CustomDatasetConfig(
        None if classes is None else tuple(classes), None if columns is None else tuple(columns), str(dtype)
    )


def custom_class_names(root: str | os.PathLike) -> tuple[str, ...]:
    """The dataset's classes: ``dataset.json`` ``classes``, else every box name in ``labels/``, sorted."""
    config = read_dataset_config(root)
    if config.classes is not None:
        return config.classes
    folder = Path(root) / "labels"
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return tuple(sorted({name for path in paths for name in read_custom_labels(path)["names"]}))


# ------------------------------------------------------------------ labels
def read_custom_labels(path: str | os.PathLike, classes: Sequence[str] | None = None) -> dict[str, list]:
    """A ``labels/<frame_id>.json`` -> an annotations record (boxes (M, 7), or (M, 9) when any
    box has a velocity, NaN for the others). Unknown keys, bad numbers and names outside
    ``classes`` are errors naming the file and the box index."""
    path = Path(path)
    document = _read_json(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object {{\"boxes\": [...]}}")
    _check_keys(document, LABEL_KEYS, f"{path}")
    boxes = document.get("boxes", [])
    if not isinstance(boxes, list):
        raise ValueError(f"{path}: 'boxes' must be a list")
    parsed = [_parse_box(box, f"{path}: box {index}", classes) for index, box in enumerate(boxes)]
    with_velocity = any(p["velocity"] is not None for p in parsed)
    rows = [p["box"] + ((p["velocity"] or [math.nan, math.nan]) if with_velocity else []) for p in parsed]
    return {
        "box_dim": 9 if with_velocity else 7,
        "boxes": [[None if math.isnan(v) else v for v in row] for row in rows],
        "names": [p["name"] for p in parsed],
        "num_points": [p["num_points"] for p in parsed],
        "attributes": [p["attribute"] for p in parsed],
        "ids": [p["id"] for p in parsed],
    }


def _parse_box(box: Any, where: str, classes: Sequence[str] | None) -> dict[str, Any]:
    if not isinstance(box, dict):
        raise ValueError(f"{where}: expected an object with keys {BOX_KEYS}, got {type(box).__name__}")
    _check_keys(box, BOX_KEYS, where)
    for key in ("box", "name"):
        if key not in box:
            raise ValueError(f"{where}: missing required key {key!r}")
    values = _numbers(box["box"], 7, where, "box")
    if min(values[3:6]) <= 0:
        raise ValueError(f"{where}: box size (l, w, h) = {values[3:6]} must be positive")
    values[6] = float(normalize_yaw(values[6]))
    name = box["name"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: name must be a non-empty string, got {name!r}")
    if classes is not None and name not in classes:
        raise ValueError(f"{where}: name {name!r} is not in dataset.json classes{did_you_mean(name, classes)}")
    num_points = box.get("num_points", -1)
    if "num_points" in box and (not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 0):
        raise ValueError(f"{where}: num_points must be an integer >= 0, got {num_points!r}")
    identifier, attribute = box.get("id", ""), box.get("attribute", "")
    if not isinstance(identifier, (str, int)) or isinstance(identifier, bool):
        raise ValueError(f"{where}: id must be a string or an integer, got {identifier!r}")
    if not isinstance(attribute, str):
        raise ValueError(f"{where}: attribute must be a string, got {attribute!r}")
    velocity = _numbers(box["velocity"], 2, where, "velocity") if box.get("velocity") is not None else None
    return {"box": values, "name": name, "num_points": num_points, "id": str(identifier),
            "attribute": attribute, "velocity": velocity}


def _numbers(value: Any, count: int, where: str, key: str) -> list[float]:
    ok = isinstance(value, list) and len(value) == count
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise ValueError(f"{where}: {key} must be a list of {count} finite numbers, got {value!r}")
    return [float(v) for v in value]


def _check_keys(record: dict, allowed: Sequence[str], where: str) -> None:
    for key in record:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; valid keys: {', '.join(allowed)}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from error


def write_custom_labels(path: str | os.PathLike, annotations: Annotations) -> None:
    """Write annotations as a ``labels/<frame_id>.json`` (the inverse of :func:`read_custom_labels`):
    velocity only where finite, id / attribute only where set, num_points only where known."""
    path = Path(path)
    tensor = annotations.boxes.tensor.detach().cpu()
    boxes = tensor.to(torch.float64).numpy()
    # float32 boxes are written with the shortest decimals that read back to the same float32.
    number = (lambda v: float(str(np.float32(v)))) if tensor.dtype == torch.float32 else float
    records = []
    for index, row in enumerate(boxes):
        record: dict[str, Any] = {"box": [number(v) for v in row[:7]], "name": annotations.names[index]}
        if annotations.boxes.has_velocity and np.isfinite(row[7:9]).all():
            record["velocity"] = [number(v) for v in row[7:9]]
        if annotations.ids[index]:
            record["id"] = annotations.ids[index]
        if int(annotations.num_points[index]) >= 0:
            record["num_points"] = int(annotations.num_points[index])
        if annotations.attributes[index]:
            record["attribute"] = annotations.attributes[index]
        records.append(record)
    if not np.isfinite(boxes[:, :7]).all():
        raise ValueError(f"{path}: boxes with non-finite values cannot be written")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ",\n".join("  " + json.dumps(record) for record in records)
    path.write_text('{"boxes": [\n' + lines + "\n]}\n" if records else '{"boxes": []}\n')


# ------------------------------------------------------------------ the reader
class CustomReader(LazyFrameReader):
    """A custom LiDAR dataset (layout in the module docstring) as ``SampleInfo`` records.

    ``split``: None (every frame in ``points/``) or the name of ``splits/<split>.txt``.
    ``count_points``: fill a box's missing ``num_points`` with the points inside it (reads the
    frame's cloud when its record is built); otherwise missing counts stay -1.
    Every label file must belong to a point file; all labels of the split are read and checked
    when the reader is made. One box width for the split (``box_dim``: 9 when any box has a
    velocity, else 7; None when no frame of the split has a label file); a frame without a label
    file in a labelled split gets an empty record of that width. Records: dataset ``custom``,
    sample id = frame id.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, *, count_points: bool = True):
        super().__init__()
        self.root = Path(root)
        self.config = read_dataset_config(self.root)
        self.count_points = count_points
        self._point_files = _scan_points(self.root / "points")
        self._label_files = _scan_labels(self.root / "labels", self._point_files)
        self.ids = _split_ids(self.root, split, self._point_files)
        self._labels = {
            i: read_custom_labels(self._label_files[i], self.config.classes) for i in self.ids if i in self._label_files
        }
        self.box_dim = self._align_box_width()

    def _align_box_width(self) -> int | None:
        """One box width for the whole split: 9 columns (NaN velocity where absent) if any box has
        one, else 7; None when the split has no label file."""
        if not self._labels:
            return None
        if not any(r["box_dim"] == 9 for r in self._labels.values()):
            return 7
        for record in self._labels.values():
            record["box_dim"] = 9
            record["boxes"] = [row + [None, None] if len(row) == 7 else row for row in record["boxes"]]
        return 9

    def _build_info(self, frame_id: str) -> SampleInfo:
        relative = self._point_files[frame_id].relative_to(self.root)
        source = point_source(relative, self.config.point_columns, self.config.point_dtype, root=self.root)
        record = self._labels.get(frame_id)
        if record is None and self.box_dim is not None:
            record = empty_annotations_record(self.box_dim)
        if record is not None and self.count_points and any(n < 0 for n in record["num_points"]):
            record = dict(record)
            boxes = np.array([[np.nan if v is None else v for v in row[:7]] for row in record["boxes"]])
            points = load_cloud(source, self.root).points
            counted = count_points_in_boxes(torch.from_numpy(points[:, :3].astype(np.float64)),
                                            Boxes3D(torch.from_numpy(boxes))).tolist()
            record["num_points"] = [c if n < 0 else n for n, c in zip(record["num_points"], counted)]
        return SampleInfo(dataset="custom", sample_id=frame_id, lidar=source, annotations=record)


def _scan_points(folder: Path) -> dict[str, Path]:
    """frame id -> point file; unknown extensions and two files for one id are errors."""
    if not folder.is_dir():
        raise FileNotFoundError(f"custom dataset point folder {folder} not found")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        point_extension(path)
        frame_id = frame_stem(path)
        if frame_id in files:
            raise ValueError(f"{folder}: frame {frame_id!r} has two point files, {files[frame_id].name} and {path.name}")
        files[frame_id] = path
    return files


def _scan_labels(folder: Path, point_files: dict[str, Path]) -> dict[str, Path]:
    """frame id -> label file; a label without a point file is an error."""
    if not folder.is_dir():
        return {}
    labels = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix != ".json":
            raise ValueError(f"{path}: label files must be <frame_id>.json")
        if path.stem not in point_files:
            raise FileNotFoundError(
                f"{path}: label for frame {path.stem!r} but no points/{path.stem}.<ext> point file"
            )
        labels[path.stem] = path
    return labels


def _split_ids(root: Path, split: str | None, point_files: dict[str, Path]) -> list[str]:
    if split is None:
        return sorted(point_files)
    path = root / "splits" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found (split=None takes every frame)")
    ids: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        frame_id = line.strip()
        if not frame_id:
            continue
        if frame_id not in point_files:
            raise ValueError(f"{path}:{number}: frame {frame_id!r} has no point file in {root / 'points'}"
                             f"{did_you_mean(frame_id, sorted(point_files))}")
        if frame_id in ids:
            raise ValueError(f"{path}:{number}: frame {frame_id!r} listed twice")
        ids.append(frame_id)
    return ids
