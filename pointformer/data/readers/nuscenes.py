"""nuScenes reader: the JSON tables of one version -> ``SampleInfo`` records in our frame.

Reads the tables directly (no devkit at run time). Also reads Lyft Level 5, which uses the same
schema (``v1.01-*`` tables, points under ``lidar/``): every point path is taken from
``sample_data.filename`` relative to the data root.

Frames. nuScenes' LIDAR_TOP sensor frame has x right, y forward, z up; ours has x forward,
y left, z up. Our lidar frame is the LIDAR_TOP frame turned -90 degrees about z:
``ours_x = nus_y``, ``ours_y = -nus_x`` (:data:`OURS_FROM_NUSCENES_LIDAR`). Lyft's LIDAR_TOP
frame has x backward, y right: ours is it turned 180 degrees (:data:`OURS_FROM_LYFT_LIDAR`).
Poses follow the tables: ``global_from_ego`` (ego_pose), ``ego_from_lidar`` (calibrated_sensor).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pointformer.data.classes import NUSCENES_CATEGORY_TO_DETECTION
from pointformer.data.infos import LoadedCloud, PointSource, SampleInfo, load_sample, register_point_format
from pointformer.data.nuscenes_splits import split_scene_names
from pointformer.data.readers.files import read_raw_bin
from pointformer.structures import Boxes3D, Sample
from pointformer.structures.rotation import heading_yaw, invert_pose, normalize_yaw, pose_matrix, quaternion_to_matrix

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ frames
OURS_FROM_NUSCENES_LIDAR = np.array(
    [[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""4x4 pose taking nuScenes LIDAR_TOP coordinates (x right, y forward) into ours (x forward, y left)."""

NUSCENES_LIDAR_FROM_OURS = OURS_FROM_NUSCENES_LIDAR.T.copy()

# Yaw of a heading in our frame minus its yaw in the nuScenes LIDAR_TOP frame.
OURS_MINUS_NUSCENES_LIDAR_YAW = -np.pi / 2

OURS_FROM_LYFT_LIDAR = np.diag([-1.0, -1.0, 1.0, 1.0])
"""4x4 pose taking Lyft LIDAR_TOP coordinates (x backward, y right) into ours."""

# Our lidar frame from each dataset's LIDAR_TOP sensor frame.
OURS_FROM_SENSOR: dict[str, np.ndarray] = {"nuscenes": OURS_FROM_NUSCENES_LIDAR, "lyft": OURS_FROM_LYFT_LIDAR}

NUSCENES_POINT_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "ring")
LIDAR_CHANNEL = "LIDAR_TOP"
POINT_FORMAT = "nuscenes"
MAX_VELOCITY_TIME_DIFF = 1.5  # seconds, the devkit's ``box_velocity`` default

REQUIRED_TABLES: tuple[str, ...] = (
    "scene", "sample", "sample_data", "sample_annotation", "ego_pose", "calibrated_sensor", "sensor",
    "log", "instance", "category", "attribute",
)


def nuscenes_lidar_points_to_ours(points):
    """(N, 3+) points (numpy or torch) in the LIDAR_TOP frame -> our frame; other columns kept.
    Exact: a column swap and a sign flip."""
    out = points.clone() if isinstance(points, torch.Tensor) else np.array(points, copy=True)
    out[:, 0] = points[:, 1]
    out[:, 1] = -points[:, 0]
    return out


def ours_points_to_nuscenes_lidar(points):
    """(N, 3+) points (numpy or torch) in our frame -> the LIDAR_TOP frame; other columns kept."""
    out = points.clone() if isinstance(points, torch.Tensor) else np.array(points, copy=True)
    out[:, 0] = -points[:, 1]
    out[:, 1] = points[:, 0]
    return out


def nuscenes_lidar_boxes_to_ours(boxes: Boxes3D) -> Boxes3D:
    """Boxes ``(x, y, z, l, w, h, yaw[, vx, vy])`` in the LIDAR_TOP frame (mmdetection3d's
    nuScenes ``bbox_3d`` layout) -> our frame. Exact for centres and velocities."""
    tensor = nuscenes_lidar_points_to_ours(boxes.tensor)
    tensor[:, 6] = normalize_yaw(boxes.tensor[:, 6] + OURS_MINUS_NUSCENES_LIDAR_YAW)
    if boxes.has_velocity:
        tensor[:, 7] = boxes.tensor[:, 8]
        tensor[:, 8] = -boxes.tensor[:, 7]
    return Boxes3D(tensor)


def ours_boxes_to_nuscenes_lidar(boxes: Boxes3D) -> Boxes3D:
    """Inverse of :func:`nuscenes_lidar_boxes_to_ours`."""
    tensor = ours_points_to_nuscenes_lidar(boxes.tensor)
    tensor[:, 6] = normalize_yaw(boxes.tensor[:, 6] - OURS_MINUS_NUSCENES_LIDAR_YAW)
    if boxes.has_velocity:
        tensor[:, 7] = -boxes.tensor[:, 8]
        tensor[:, 8] = boxes.tensor[:, 7]
    return Boxes3D(tensor)


# ------------------------------------------------------------- point format
def load_nuscenes_points(source: PointSource, path: Path) -> LoadedCloud:
    """A ``.pcd.bin`` / Lyft ``.bin`` file: float32 rows of ``source.columns`` (x, y, z,
    intensity, ring). Errors name the file and, when known, the sample_data record it came from."""
    context = source.key or {}
    try:
        points = read_raw_bin(path, source.columns, "float32")
    except (FileNotFoundError, ValueError) as error:
        if "sample_data_token" in context:
            where = (f" [{context.get('table', 'sample_data.json')}: sample_data {context['sample_data_token']}, "
                     f"field 'filename']")
            raise type(error)(f"{error}{where}") from error
        raise
    if len(points) == 0:
        log.warning("%s: empty point cloud", path)
    return LoadedCloud(points, source.columns)


register_point_format(POINT_FORMAT, load_nuscenes_points)


# ------------------------------------------------------------------ tables
@dataclass
class Table:
    """One table file: its records in file order, indexed by token."""

    name: str
    path: Path
    records: list[dict[str, Any]]
    by_token: dict[str, dict[str, Any]]

    @staticmethod
    def load(path: Path, name: str) -> "Table":
        if not path.is_file():
            raise FileNotFoundError(f"nuScenes table {path} not found (table {name!r})")
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of {name} records, got {type(records).__name__}")
        by_token = {}
        for index, record in enumerate(records):
            if not isinstance(record, dict) or "token" not in record:
                raise ValueError(f"{path}: record {index} has no field 'token'")
            by_token[record["token"]] = record
        return Table(name, path, records, by_token)

    def value(self, record: dict[str, Any], name: str) -> Any:
        """``record[name]``, or an error naming this file, the record and the field."""
        if name not in record:
            raise ValueError(f"{self.path}: {self.name} record {record.get('token')!r} has no field {name!r}")
        return record[name]


@dataclass
class NuScenesTables:
    """The tables of one version folder, with lookups that name the file and field on failure.

    ``strict_links``: a ``prev`` / ``next`` token absent from its table is an error; when False
    (for subsets cut from a larger dataset, such as test fixtures) it ends the chain, is logged
    and counted in ``dangling_links``.
    """

    table_dir: Path
    tables: dict[str, Table]
    strict_links: bool = True
    dangling_links: int = 0
    _warned: set[str] = field(default_factory=set)

    @staticmethod
    def load(table_dir: str | os.PathLike, strict_links: bool = True) -> "NuScenesTables":
        table_dir = Path(table_dir)
        if not table_dir.is_dir():
            raise FileNotFoundError(f"nuScenes table folder {table_dir} not found (expected <root>/<version>/)")
        tables = {name: Table.load(table_dir / f"{name}.json", name) for name in REQUIRED_TABLES}
        if (table_dir / "lidarseg.json").is_file():
            tables["lidarseg"] = Table.load(table_dir / "lidarseg.json", "lidarseg")
        return NuScenesTables(table_dir, tables, strict_links)

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def value(self, table: str, record: dict[str, Any], name: str) -> Any:
        return self.tables[table].value(record, name)

    def follow(self, table: str, record: dict[str, Any], key: str, target: str) -> dict[str, Any]:
        """The ``target`` record whose token is ``record[key]`` (a foreign key of ``table``)."""
        return self.lookup(target, self.value(table, record, key), table, record, key)

    def lookup(self, target: str, token: str, table: str, record: dict[str, Any], key: str) -> dict[str, Any]:
        """The ``target`` record of ``token``, found in field ``key`` of a ``table`` record."""
        found = self.tables[target].by_token.get(token)
        if found is None:
            raise ValueError(
                f"{self.tables[target].path}: no {target} record with token {token!r} "
                f"(referenced by field {key!r} of {table} record {record.get('token')!r} in {self.tables[table].path})"
            )
        return found

    def link(self, table: str, record: dict[str, Any], key: str) -> dict[str, Any] | None:
        """The record a ``prev`` / ``next`` field points to, None at the end of the chain."""
        token = self.value(table, record, key)
        if token == "":
            return None
        found = self.tables[table].by_token.get(token)
        if found is not None:
            return found
        message = (f"{self.tables[table].path}: {table} record {record.get('token')!r} field {key!r} points to "
                   f"token {token!r}, which is not in the table")
        if self.strict_links:
            raise ValueError(message + " (strict_links=False treats it as the end of the chain)")
        self.dangling_links += 1
        if table not in self._warned:
            self._warned.add(table)
            log.warning("%s; treating such links as chain ends", message)
        return None

    def pose(self, table: str, record: dict[str, Any]) -> np.ndarray:
        """4x4 ``parent_from_child`` of an ego_pose / calibrated_sensor record, float64."""
        translation = np.asarray(self.value(table, record, "translation"), dtype=np.float64)
        rotation = np.asarray(self.value(table, record, "rotation"), dtype=np.float64)
        if translation.shape != (3,) or rotation.shape != (4,) or not (
            np.isfinite(translation).all() and np.isfinite(rotation).all()
        ) or np.linalg.norm(rotation) == 0:
            raise ValueError(f"{self.tables[table].path}: {table} record {record.get('token')!r} has an invalid "
                             f"pose (translation {translation.tolist()}, rotation {rotation.tolist()})")
        return pose_matrix(translation, rotation)


# ----------------------------------------------------------------- records
def lidar_frame_of_version(version: str) -> str:
    """``"lyft"`` for Lyft's ``v1.01-*`` versions, ``"nuscenes"`` otherwise."""
    return "lyft" if version.startswith("v1.01") else "nuscenes"


def nuscenes_infos(
    root: str | os.PathLike,
    version: str = "v1.0-trainval",
    split: str | None = None,
    max_sweeps: int = 9,
    *,
    strict_links: bool = True,
    lidar_frame: str | None = None,
) -> list[SampleInfo]:
    """One ``SampleInfo`` per keyframe (scene order, then time) with up to ``max_sweeps`` earlier
    LIDAR_TOP sweeps, newest first. ``split``: None for every sample, else a name of
    ``pointformer.data.nuscenes_splits.SPLITS`` matched against scene names. ``lidar_frame``:
    a key of :data:`OURS_FROM_SENSOR` (default from the version); it also names the dataset."""
    if max_sweeps < 0:
        raise ValueError(f"max_sweeps must be >= 0, got {max_sweeps}")
    lidar_frame = lidar_frame or lidar_frame_of_version(version)
    if lidar_frame not in OURS_FROM_SENSOR:
        raise ValueError(f"unknown lidar_frame {lidar_frame!r}; known: {sorted(OURS_FROM_SENSOR)}")
    tables = NuScenesTables.load(Path(root) / version, strict_links)
    wanted = None if split is None else set(split_scene_names(split))
    keyframes = _lidar_keyframes(tables)
    samples_by_scene: dict[str, list[dict]] = {}
    for sample in tables["sample"].records:
        samples_by_scene.setdefault(tables.value("sample", sample, "scene_token"), []).append(sample)
    annotations_by_sample: dict[str, list[dict]] = {}
    for annotation in tables["sample_annotation"].records:
        annotations_by_sample.setdefault(tables.value("sample_annotation", annotation, "sample_token"), []).append(
            annotation
        )
    labelled = bool(tables["sample_annotation"].records)

    infos = []
    for scene in tables["scene"].records:
        name = tables.value("scene", scene, "name")
        if wanted is not None and name not in wanted:
            continue
        scene_log = tables.follow("scene", scene, "log_token", "log")
        samples = sorted(samples_by_scene.get(scene["token"], []), key=lambda s: tables.value("sample", s, "timestamp"))
        for sample in samples:
            if sample["token"] not in keyframes:
                raise ValueError(f"{tables['sample_data'].path}: sample {sample['token']!r} has no {LIDAR_CHANNEL} "
                                 "keyframe sample_data record")
            annotations = annotations_by_sample.get(sample["token"], []) if labelled else None
            infos.append(_sample_info(tables, sample, scene, scene_log, keyframes[sample["token"]], annotations,
                                      max_sweeps, version, lidar_frame))
    if split is not None and not infos:
        raise ValueError(f"nuScenes split {split!r} selects no sample of version {version!r} in {root} "
                         f"(scenes there: {[s.get('name') for s in tables['scene'].records][:10]})")
    if tables.dangling_links:
        log.warning("%s: %d prev/next links point outside the tables", tables.table_dir, tables.dangling_links)
    return infos


def _lidar_keyframes(tables: NuScenesTables) -> dict[str, dict]:
    """sample token -> its LIDAR_TOP keyframe sample_data record."""
    lidar_sensors = {
        s["token"] for s in tables["sensor"].records if tables.value("sensor", s, "channel") == LIDAR_CHANNEL
    }
    lidar_calibrations = {
        c["token"] for c in tables["calibrated_sensor"].records
        if tables.value("calibrated_sensor", c, "sensor_token") in lidar_sensors
    }
    keyframes: dict[str, dict] = {}
    for record in tables["sample_data"].records:
        if not tables.value("sample_data", record, "is_key_frame"):
            continue
        if tables.value("sample_data", record, "calibrated_sensor_token") not in lidar_calibrations:
            continue
        sample_token = tables.value("sample_data", record, "sample_token")
        if sample_token in keyframes:
            raise ValueError(f"{tables['sample_data'].path}: sample {sample_token!r} has two {LIDAR_CHANNEL} keyframes "
                             f"({keyframes[sample_token]['token']!r}, {record['token']!r})")
        keyframes[sample_token] = record
    return keyframes


def _sensor_pose(tables: NuScenesTables, sample_data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(global_from_ego, ego_from_lidar) of one sample_data record."""
    ego = tables.follow("sample_data", sample_data, "ego_pose_token", "ego_pose")
    calibration = tables.follow("sample_data", sample_data, "calibrated_sensor_token", "calibrated_sensor")
    return tables.pose("ego_pose", ego), tables.pose("calibrated_sensor", calibration)


def _point_source(tables: NuScenesTables, sample_data: dict, pose: np.ndarray, time_lag: float,
                  labels_path: str | None = None) -> PointSource:
    return PointSource(
        path=tables.value("sample_data", sample_data, "filename"),
        format=POINT_FORMAT,
        columns=NUSCENES_POINT_COLUMNS,
        sample_from_source=np.asarray(pose, dtype=np.float64).tolist(),
        time_lag=float(time_lag),
        labels_path=labels_path,
        key={"sample_data_token": sample_data["token"]},
    )


def _sample_info(
    tables: NuScenesTables,
    sample: dict,
    scene: dict,
    scene_log: dict,
    key_data: dict,
    annotations: list[dict] | None,
    max_sweeps: int,
    version: str,
    lidar_frame: str,
) -> SampleInfo:
    ours_from_sensor = OURS_FROM_SENSOR[lidar_frame]
    global_from_ego, ego_from_lidar = _sensor_pose(tables, key_data)
    global_from_ours = global_from_ego @ ego_from_lidar @ invert_pose(ours_from_sensor)
    ours_from_global = ours_from_sensor @ invert_pose(ego_from_lidar) @ invert_pose(global_from_ego)
    key_time = float(tables.value("sample_data", key_data, "timestamp"))

    labels_path = None
    if "lidarseg" in tables.tables:
        record = tables["lidarseg"].by_token.get(key_data["token"])
        if record is not None:
            labels_path = tables.value("lidarseg", record, "filename")
    lidar = _point_source(tables, key_data, ours_from_sensor, 0.0, labels_path)

    sweeps, current = [], key_data
    while len(sweeps) < max_sweeps:
        current = tables.link("sample_data", current, "prev")
        if current is None:
            break
        sweep_global_from_ego, sweep_ego_from_lidar = _sensor_pose(tables, current)
        pose = ours_from_global @ sweep_global_from_ego @ sweep_ego_from_lidar
        lag = (key_time - float(tables.value("sample_data", current, "timestamp"))) * 1e-6
        sweeps.append(_point_source(tables, current, pose, lag))

    meta = {
        "sample_token": sample["token"],
        "scene_token": scene["token"],
        "scene_name": scene["name"],
        "location": scene_log.get("location", ""),
        "timestamp_us": int(round(key_time)),
        "global_from_lidar": global_from_ours.tolist(),
        "lidar_token": key_data["token"],
        "version": version,
    }
    return SampleInfo(
        dataset=lidar_frame,
        sample_id=sample["token"],
        lidar=lidar,
        sweeps=sweeps,
        annotations=None if annotations is None else _annotation_record(tables, annotations, ours_from_global),
        scene=scene["name"],
        timestamp_us=int(round(key_time)),
        max_sweeps=max_sweeps,
        meta=meta,
    )


def _annotation_record(tables: NuScenesTables, annotations: list[dict], ours_from_global: np.ndarray) -> dict:
    """sample_annotation records (global frame) -> the info record's lists in our lidar frame."""
    boxes = _boxes_in_frame(tables, annotations, ours_from_global)
    names, num_points, attributes, ids = [], [], [], []
    for annotation in annotations:
        instance = tables.follow("sample_annotation", annotation, "instance_token", "instance")
        category = tables.value("category", tables.follow("instance", instance, "category_token", "category"), "name")
        names.append(NUSCENES_CATEGORY_TO_DETECTION.get(category, category))
        num_points.append(int(tables.value("sample_annotation", annotation, "num_lidar_pts")))
        attributes.append(_attribute_names(tables, annotation))
        ids.append(instance["token"])
    return {"box_dim": 9, "boxes": boxes, "names": names, "num_points": num_points, "attributes": attributes, "ids": ids}


def _attribute_names(tables: NuScenesTables, annotation: dict) -> str:
    """The annotation's attribute name, "" for none; several (Lyft) are joined with commas."""
    names = []
    for token in tables.value("sample_annotation", annotation, "attribute_tokens"):
        record = tables.lookup("attribute", token, "sample_annotation", annotation, "attribute_tokens")
        names.append(tables.value("attribute", record, "name"))
    return ",".join(names)


def _boxes_in_frame(tables: NuScenesTables, annotations: list[dict], frame_from_global: np.ndarray) -> list[list]:
    """Annotations as rows ``[x, y, z, l, w, h, yaw, vx, vy]`` in the target frame (float64).

    The yaw is the heading of each box's rotated +x axis projected on the target xy plane (the
    devkit's ``quaternion_yaw`` of the box after ``Box.rotate``); the velocity is the devkit's
    ``box_velocity`` rotated as a 3D vector, its xy kept; NaN (None) where unknown.
    """
    if not annotations:
        return []
    fields = {name: [tables.value("sample_annotation", a, name) for a in annotations]
              for name in ("translation", "size", "rotation")}
    try:
        translation = np.asarray(fields["translation"], dtype=np.float64).reshape(len(annotations), 3)
        size = np.asarray(fields["size"], dtype=np.float64).reshape(len(annotations), 3)
        rotation = np.asarray(fields["rotation"], dtype=np.float64).reshape(len(annotations), 4)
    except (TypeError, ValueError):
        translation = size = rotation = None
    bad = [a.get("token") for a, ok in zip(annotations, _finite_rows(translation, size, rotation)) if not ok]
    if bad:
        raise ValueError(f"{tables['sample_annotation'].path}: sample_annotation {bad[0]!r} has an "
                         "invalid translation / size / rotation")
    frame_rotation = frame_from_global[:3, :3]
    center = translation @ frame_rotation.T + frame_from_global[:3, 3]
    yaw = normalize_yaw(heading_yaw(frame_rotation @ quaternion_to_matrix(rotation)))
    velocity = np.stack([box_velocity(tables, a) for a in annotations]) @ frame_rotation.T
    rows = np.column_stack([center, size[:, 1], size[:, 0], size[:, 2], yaw, velocity[:, :2]])
    return [[float(v) if np.isfinite(v) else None for v in row] for row in rows.tolist()]


def _finite_rows(*arrays: np.ndarray | None) -> list[bool]:
    """Per row: every array parsed and finite there (all False when one failed to parse)."""
    if any(a is None for a in arrays):
        return [False] * max((len(a) for a in arrays if a is not None), default=1)
    return np.all([np.isfinite(a).all(axis=1) for a in arrays], axis=0).tolist()


def box_velocity(tables: NuScenesTables, annotation: dict, max_time_diff: float = MAX_VELOCITY_TIME_DIFF) -> np.ndarray:
    """(3,) global velocity in m/s by the rule of the devkit's ``NuScenes.box_velocity``: centred
    difference of the previous and next annotation of the instance, one-sided at a track end,
    NaN for a lone annotation or a time gap over ``max_time_diff`` s (doubled when centred).
    A non-positive time gap (corrupt timestamps) also gives NaN."""
    previous = tables.link("sample_annotation", annotation, "prev")
    following = tables.link("sample_annotation", annotation, "next")
    if previous is None and following is None:
        return np.full(3, np.nan)
    first = previous if previous is not None else annotation
    last = following if following is not None else annotation
    position_diff = (np.asarray(tables.value("sample_annotation", last, "translation"), dtype=np.float64)
                     - np.asarray(tables.value("sample_annotation", first, "translation"), dtype=np.float64))
    time_last = _sample_time(tables, last)
    time_first = _sample_time(tables, first)
    # Difference first, then seconds: the devkit scales each ~1.5e15 us timestamp before
    # subtracting, which costs it ~1e-6 relative precision.
    time_diff = (time_last - time_first) * 1e-6
    if previous is not None and following is not None:
        max_time_diff *= 2
    if time_diff > max_time_diff or time_diff <= 0:
        return np.full(3, np.nan)
    return position_diff / time_diff


def _sample_time(tables: NuScenesTables, annotation: dict) -> float:
    """Timestamp (us) of the sample an annotation belongs to."""
    return tables.value("sample", tables.follow("sample_annotation", annotation, "sample_token", "sample"), "timestamp")


# ------------------------------------------------------------------ reader
class NuScenesReader:
    """A nuScenes (or nuScenes-schema) dataset as a sequence of ``Sample``s in our frame.

    ``root``: the data root (point paths in ``sample_data.filename`` are relative to it);
    tables are read from ``root/version``. ``split``: None or a split name (see
    :func:`nuscenes_infos`). ``max_sweeps``: earlier sweeps merged into each sample.
    ``feature_columns`` / ``sweep_min_distance``: passed to ``load_sample``. ``strict_links`` /
    ``lidar_frame``: see :class:`NuScenesTables` and :func:`nuscenes_infos`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        version: str = "v1.0-trainval",
        split: str | None = None,
        max_sweeps: int = 9,
        *,
        feature_columns: Sequence[str] = ("intensity",),
        sweep_min_distance: float = 1.0,
        strict_links: bool = True,
        lidar_frame: str | None = None,
    ):
        self.root = Path(root)
        self.version = version
        self.split = split
        self.max_sweeps = max_sweeps
        self.feature_columns = tuple(feature_columns)
        self.sweep_min_distance = sweep_min_distance
        self.infos: list[SampleInfo] = nuscenes_infos(
            root, version, split, max_sweeps, strict_links=strict_links, lidar_frame=lidar_frame
        )

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> Sample:
        # The time-lag column follows max_sweeps, not the sample, so that the first samples of
        # a scene (fewer or no earlier sweeps) have the same columns as the others.
        return load_sample(
            self.infos[index], self.root, feature_columns=self.feature_columns,
            time_lag=self.max_sweeps > 0, sweep_min_distance=self.sweep_min_distance,
        )
