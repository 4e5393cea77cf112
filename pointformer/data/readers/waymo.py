"""Waymo Open Dataset v2 ("Perception v2"): Parquet components -> ``SampleInfo`` records, and
range images -> points.

Layout: ``root/<split>/<component>/<context_name>.parquet``; one file per segment and component.
Components read here: ``lidar`` (range images, one row per frame and laser), ``lidar_calibration``
(one row per laser), ``lidar_pose`` (per-pixel poses of the TOP laser, one row per frame),
``vehicle_pose`` (one row per frame) and ``lidar_box`` (one row per box and frame). Column names
are the v2 dataset's (``key.*`` and ``[XxxComponent].field.subfield``), kept below as the one
place the writer (``pointformer.data.synthetic.waymo_writer``) takes them from.

The range-image conversion follows the Waymo devkit (``range_image_utils.compute_range_image_polar``
/ ``compute_range_image_cartesian``, ``v2.perception.utils.lidar_utils``). Points come out in the
vehicle frame of their frame, which is our frame (x forward, y left, z up).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pointformer.data.classes import WAYMO_TYPES
from pointformer.data.infos import LoadedCloud, PointSource, SampleInfo, load_sample, register_point_format
from pointformer.data.synthetic.waymo_layout import WaymoLidarCalibration
from pointformer.structures import Sample
from pointformer.structures.rotation import normalize_yaw

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("training", "validation", "testing")

# Components: the directory names under ``root/<split>/``.
LIDAR = "lidar"
LIDAR_CALIBRATION = "lidar_calibration"
LIDAR_POSE = "lidar_pose"
VEHICLE_POSE = "vehicle_pose"
LIDAR_BOX = "lidar_box"
STATS = "stats"

# ``LaserName`` of the v2 dataset.
TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR = 1, 2, 3, 4, 5
LASER_NAMES: dict[int, str] = {TOP: "TOP", FRONT: "FRONT", SIDE_LEFT: "SIDE_LEFT", SIDE_RIGHT: "SIDE_RIGHT", REAR: "REAR"}
ALL_LASERS: tuple[int, ...] = (TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR)
RETURNS: tuple[int, ...] = (1, 2)

# Key columns.
KEY_SEGMENT = "key.segment_context_name"
KEY_TIMESTAMP = "key.frame_timestamp_micros"
KEY_LASER = "key.laser_name"
KEY_OBJECT_ID = "key.laser_object_id"

# lidar: range images [H, W, 4] (range, intensity, elongation, is-in-no-label-zone), flattened.
RANGE_IMAGE_VALUES: dict[int, str] = {r: f"[LiDARComponent].range_image_return{r}.values" for r in RETURNS}
RANGE_IMAGE_SHAPE: dict[int, str] = {r: f"[LiDARComponent].range_image_return{r}.shape" for r in RETURNS}
RANGE_IMAGE_CHANNELS = 4

# lidar_calibration.
EXTRINSIC = "[LiDARCalibrationComponent].extrinsic.transform"
BEAM_INCLINATION_MIN = "[LiDARCalibrationComponent].beam_inclination.min"
BEAM_INCLINATION_MAX = "[LiDARCalibrationComponent].beam_inclination.max"
BEAM_INCLINATION_VALUES = "[LiDARCalibrationComponent].beam_inclination.values"

# lidar_pose: per-pixel world_from_vehicle [H, W, 6] (roll, pitch, yaw, x, y, z), TOP laser only.
POSE_VALUES = "[LiDARPoseComponent].range_image_return1.values"
POSE_SHAPE = "[LiDARPoseComponent].range_image_return1.shape"
POSE_CHANNELS = 6

# vehicle_pose.
WORLD_FROM_VEHICLE = "[VehiclePoseComponent].world_from_vehicle.transform"

# lidar_box: boxes in the vehicle frame of their frame.
_BOX = "[LiDARBoxComponent]"
BOX_CENTER: tuple[str, str, str] = (f"{_BOX}.box.center.x", f"{_BOX}.box.center.y", f"{_BOX}.box.center.z")
BOX_SIZE: tuple[str, str, str] = (f"{_BOX}.box.size.x", f"{_BOX}.box.size.y", f"{_BOX}.box.size.z")
BOX_HEADING = f"{_BOX}.box.heading"
BOX_TYPE = f"{_BOX}.type"
BOX_NUM_LIDAR_POINTS = f"{_BOX}.num_lidar_points_in_box"
BOX_NUM_TOP_LIDAR_POINTS = f"{_BOX}.num_top_lidar_points_in_box"
BOX_SPEED: tuple[str, str, str] = (f"{_BOX}.speed.x", f"{_BOX}.speed.y", f"{_BOX}.speed.z")
BOX_ACCELERATION: tuple[str, str, str] = (f"{_BOX}.acceleration.x", f"{_BOX}.acceleration.y", f"{_BOX}.acceleration.z")
BOX_DIFFICULTY_DETECTION = f"{_BOX}.difficulty_level.detection"
BOX_DIFFICULTY_TRACKING = f"{_BOX}.difficulty_level.tracking"

# What a ``waymo_v2`` source loads: xyz in the vehicle frame, the range image's channels 1..3,
# then the laser name and the return index (1 or 2) of each point.
POINT_FORMAT = "waymo_v2"
POINT_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "elongation", "no_label_zone", "laser", "return")


# ------------------------------------------------------------------- geometry
def row_inclinations(calibration: WaymoLidarCalibration, height: int) -> np.ndarray:
    """(H,) float64 inclination (radians) of each range-image row, row 0 the highest.

    Waymo stores ``beam_inclination.values`` ascending; without them the beams are uniform
    between min and max at the centres of H equal bins (``range_image_utils.compute_inclination``).
    """
    if calibration.beam_inclinations is not None:
        values = np.asarray(calibration.beam_inclinations, dtype=np.float64).reshape(-1)
        if values.shape[0] != height:
            raise ValueError(
                f"laser {calibration.laser_name}: {values.shape[0]} beam inclinations for a range image of {height} rows"
            )
    else:
        low, high = float(calibration.inclination_min), float(calibration.inclination_max)
        values = low + (np.arange(height, dtype=np.float64) + 0.5) / height * (high - low)
    return values[::-1].copy()


def column_azimuths(width: int, extrinsic: np.ndarray) -> np.ndarray:
    """(W,) float64 azimuth (radians, sensor frame) of each range-image column.

    Column c is centred at ratio (W - c - 0.5) / W of a turn running from +pi down to -pi in the
    vehicle frame; the sensor's own yaw (``atan2(R[1,0], R[0,0])`` of ``vehicle_from_sensor``) is
    taken off so that columns keep fixed vehicle-frame directions.
    """
    az_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (width - np.arange(width, dtype=np.float64) - 0.5) / width
    return (ratios * 2.0 - 1.0) * np.pi - az_correction


def pose_matrices(pose: np.ndarray) -> np.ndarray:
    """(..., 6) roll, pitch, yaw, x, y, z -> (..., 4, 4) ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` plus translation."""
    pose = np.asarray(pose, dtype=np.float64)
    cr, sr = np.cos(pose[..., 0]), np.sin(pose[..., 0])
    cp, sp = np.cos(pose[..., 1]), np.sin(pose[..., 1])
    cy, sy = np.cos(pose[..., 2]), np.sin(pose[..., 2])
    matrix = np.zeros(pose.shape[:-1] + (4, 4))
    matrix[..., 0, 0] = cy * cp
    matrix[..., 0, 1] = cy * sp * sr - sy * cr
    matrix[..., 0, 2] = cy * sp * cr + sy * sr
    matrix[..., 1, 0] = sy * cp
    matrix[..., 1, 1] = sy * sp * sr + cy * cr
    matrix[..., 1, 2] = sy * sp * cr - cy * sr
    matrix[..., 2, 0] = -sp
    matrix[..., 2, 1] = cp * sr
    matrix[..., 2, 2] = cp * cr
    matrix[..., :3, 3] = pose[..., 3:6]
    matrix[..., 3, 3] = 1.0
    return matrix


def range_image_to_points(
    range_image: np.ndarray,
    calibration: WaymoLidarCalibration,
    pixel_pose: np.ndarray | None = None,
    world_from_vehicle: np.ndarray | None = None,
) -> np.ndarray:
    """One range image -> (N, 3 + C - 1) float64: x, y, z in the vehicle frame, then channels 1..C-1.

    ``range_image`` (H, W, C), channel 0 the range in metres. Pixels with range <= 0 are no
    return and give no point; a NaN/inf range gives a non-finite point (so that the loader drops
    and counts it). Points are in row-major pixel order. ``pixel_pose`` (H, W, 6): per-pixel
    world_from_vehicle (roll, pitch, yaw, x, y, z); with it each point goes to the world with its
    pixel's pose and back with the inverse of ``world_from_vehicle`` (4, 4), the frame pose.
    """
    range_image = np.asarray(range_image)
    if range_image.ndim != 3 or range_image.shape[2] < 1:
        raise ValueError(f"range image of shape {range_image.shape}, expected (H, W, C)")
    height, width = range_image.shape[:2]
    extrinsic = np.asarray(calibration.extrinsic, dtype=np.float64).reshape(4, 4)
    ranges = range_image[..., 0].astype(np.float64)
    rows, cols = np.nonzero(~(ranges <= 0))
    distance = ranges[rows, cols]

    inclination = row_inclinations(calibration, height)[rows]
    azimuth = column_azimuths(width, extrinsic)[cols]
    cos_inclination = np.cos(inclination)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite ranges give non-finite points, by design
        sensor = np.stack(
            [np.cos(azimuth) * cos_inclination * distance, np.sin(azimuth) * cos_inclination * distance,
             np.sin(inclination) * distance],
            axis=-1,
        )
        xyz = sensor @ extrinsic[:3, :3].T + extrinsic[:3, 3]

    if pixel_pose is not None:
        pixel_pose = np.asarray(pixel_pose)
        if pixel_pose.shape != (height, width, POSE_CHANNELS):
            raise ValueError(f"pixel pose of shape {pixel_pose.shape} for a range image of shape {range_image.shape}")
        if world_from_vehicle is None:
            raise ValueError("a per-pixel pose needs the frame pose world_from_vehicle")
        world_from_pixel_vehicle = pose_matrices(pixel_pose[rows, cols])
        vehicle_from_world = np.linalg.inv(np.asarray(world_from_vehicle, dtype=np.float64).reshape(4, 4))
        with np.errstate(invalid="ignore", over="ignore"):
            world = np.einsum("nij,nj->ni", world_from_pixel_vehicle[:, :3, :3], xyz) + world_from_pixel_vehicle[:, :3, 3]
            xyz = world @ vehicle_from_world[:3, :3].T + vehicle_from_world[:3, 3]

    features = range_image[rows, cols, 1:].astype(np.float64)
    return np.concatenate([xyz, features], axis=1)


# --------------------------------------------------------------- file access
def component_path(root: str | os.PathLike, split: str, component: str, context_name: str) -> Path:
    """``root/<split>/<component>/<context_name>.parquet``."""
    return Path(root) / split / component / f"{context_name}.parquet"


def _segment_file(lidar_path: Path, component: str) -> Path:
    """The file of another component of the segment whose ``lidar`` file is ``lidar_path``."""
    return lidar_path.parent.parent / component / lidar_path.name


def _require_file(path: Path, component: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"Waymo v2 component {component!r}: file {path} not found")


def _read_table(path: Path, component: str, columns: Sequence[str], filters: list | None = None) -> pa.Table:
    _require_file(path, component)
    try:
        return pq.read_table(path, columns=list(columns), filters=filters)
    except pa.ArrowException as error:
        raise ValueError(f"{path}: cannot read Waymo v2 {component!r} columns {list(columns)}: {error}") from error


def _file_version(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def _column_values(table: pa.Table, column: str) -> list[Any]:
    return table.column(column).to_pylist()


def _transform(value: Sequence[float] | None, path: Path, column: str, where: str) -> np.ndarray:
    array = np.asarray([np.nan] * 16 if value is None else value, dtype=np.float64)
    if array.shape != (16,) or not np.isfinite(array).all():
        raise ValueError(f"{path}: column {column!r} at {where} must hold 16 finite numbers, got {value}")
    return array.reshape(4, 4)


def read_calibrations(path: str | os.PathLike) -> dict[int, WaymoLidarCalibration]:
    """``lidar_calibration`` file -> {laser name: calibration}. Cached per file version."""
    path = Path(path)
    _require_file(path, LIDAR_CALIBRATION)
    return dict(_read_calibrations_cached(*_file_version(path)))


@functools.lru_cache(maxsize=64)
def _read_calibrations_cached(path_str: str, mtime_ns: int, size: int) -> dict[int, WaymoLidarCalibration]:
    path = Path(path_str)
    columns = (KEY_LASER, EXTRINSIC, BEAM_INCLINATION_MIN, BEAM_INCLINATION_MAX, BEAM_INCLINATION_VALUES)
    table = _read_table(path, LIDAR_CALIBRATION, columns)
    calibrations: dict[int, WaymoLidarCalibration] = {}
    for laser, extrinsic, low, high, values in zip(*(_column_values(table, c) for c in columns)):
        where = f"laser {laser}"
        if laser in calibrations:
            raise ValueError(f"{path}: two calibrations for laser {laser}")
        if values is None and (low is None or high is None):
            raise ValueError(f"{path}: {where} has neither {BEAM_INCLINATION_VALUES!r} nor min/max inclinations")
        calibrations[int(laser)] = WaymoLidarCalibration(
            laser_name=int(laser),
            extrinsic=_transform(extrinsic, path, EXTRINSIC, where),
            inclination_min=float("nan") if low is None else float(low),
            inclination_max=float("nan") if high is None else float(high),
            beam_inclinations=None if values is None else np.asarray(values, dtype=np.float64),
        )
    return calibrations


def read_vehicle_poses(path: str | os.PathLike) -> dict[int, np.ndarray]:
    """``vehicle_pose`` file -> {frame timestamp (us): (4, 4) world_from_vehicle}. Cached per file version."""
    path = Path(path)
    _require_file(path, VEHICLE_POSE)
    return dict(_read_vehicle_poses_cached(*_file_version(path)))


@functools.lru_cache(maxsize=64)
def _read_vehicle_poses_cached(path_str: str, mtime_ns: int, size: int) -> dict[int, np.ndarray]:
    path = Path(path_str)
    table = _read_table(path, VEHICLE_POSE, (KEY_TIMESTAMP, WORLD_FROM_VEHICLE))
    poses: dict[int, np.ndarray] = {}
    for timestamp, transform in zip(_column_values(table, KEY_TIMESTAMP), _column_values(table, WORLD_FROM_VEHICLE)):
        poses[int(timestamp)] = _transform(transform, path, WORLD_FROM_VEHICLE, f"frame {timestamp}")
    return poses


def _image_from_row(
    table: pa.Table, row: int, values_column: str, shape_column: str, channels: int, path: Path, where: str
) -> np.ndarray:
    """One flattened ``values`` / ``shape`` pair of a row -> float32 (H, W, channels)."""
    shape = table.column(shape_column)[row].as_py()
    values = table.column(values_column)[row].values
    if values is None or shape is None:
        raise ValueError(f"{path}: {values_column!r} / {shape_column!r} is null at {where}")
    if len(shape) != 3 or shape[2] != channels or min(shape) < 0:
        raise ValueError(f"{path}: column {shape_column!r} at {where} is {shape}, expected [H, W, {channels}]")
    if len(values) != int(np.prod(shape)):
        raise ValueError(
            f"{path}: column {values_column!r} at {where} holds {len(values)} values but "
            f"{shape_column!r} is {shape} ({int(np.prod(shape))} values)"
        )
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(shape)


def read_frame_points(
    lidar_path: str | os.PathLike,
    timestamp_us: int,
    lasers: Sequence[int] = ALL_LASERS,
    returns: Sequence[int] = (1,),
) -> np.ndarray:
    """All points of one frame -> (N, len(POINT_COLUMNS)) float64 in its vehicle frame.

    ``lidar_path``: the segment's ``lidar`` file; its calibration, TOP per-pixel poses and
    vehicle poses are the same file name under the sibling component folders. Only the rows of
    ``timestamp_us`` are read (Parquet row-group statistics skip the other frames). The TOP
    laser's points use their per-pixel poses where ``lidar_pose`` has a row for the frame.
    """
    lidar_path = Path(lidar_path)
    lasers, returns = [int(x) for x in lasers], [int(x) for x in returns]
    calibrations = read_calibrations(_segment_file(lidar_path, LIDAR_CALIBRATION))
    for laser in lasers:
        if laser not in calibrations:
            raise ValueError(
                f"{_segment_file(lidar_path, LIDAR_CALIBRATION)}: no calibration for laser {laser} "
                f"(has {sorted(calibrations)})"
            )

    columns = [KEY_LASER] + [c for r in returns for c in (RANGE_IMAGE_VALUES[r], RANGE_IMAGE_SHAPE[r])]
    filters = [(KEY_TIMESTAMP, "==", int(timestamp_us)), (KEY_LASER, "in", lasers)]
    table = _read_table(lidar_path, LIDAR, columns, filters)
    row_of_laser = _row_of_laser(table, lidar_path, timestamp_us, lasers)
    top_pose, world_from_vehicle = _top_pixel_pose(lidar_path, timestamp_us) if TOP in lasers else (None, None)

    parts = []
    for laser in lasers:
        for return_index in returns:
            where = f"frame {timestamp_us}, laser {laser}"
            image = _image_from_row(
                table, row_of_laser[laser], RANGE_IMAGE_VALUES[return_index], RANGE_IMAGE_SHAPE[return_index],
                RANGE_IMAGE_CHANNELS, lidar_path, where,
            )
            pose = top_pose if laser == TOP else None
            if pose is not None and pose.shape[:2] != image.shape[:2]:
                raise ValueError(
                    f"{_segment_file(lidar_path, LIDAR_POSE)}: TOP pixel pose of shape {pose.shape} at frame "
                    f"{timestamp_us} does not match the range image of shape {image.shape} in {lidar_path}"
                )
            try:
                points = range_image_to_points(image, calibrations[laser], pose, world_from_vehicle)
            except ValueError as error:
                raise ValueError(f"{lidar_path}: {where}, return {return_index}: {error}") from error
            tags = np.broadcast_to(np.array([laser, return_index], dtype=np.float64), (len(points), 2))
            parts.append(np.concatenate([points, tags], axis=1))
    if not parts:
        return np.zeros((0, len(POINT_COLUMNS)))
    return np.concatenate(parts, axis=0)


def _row_of_laser(table: pa.Table, path: Path, timestamp_us: int, lasers: Sequence[int]) -> dict[int, int]:
    row_of_laser: dict[int, int] = {}
    for row, laser in enumerate(_column_values(table, KEY_LASER)):
        if laser in row_of_laser:
            raise ValueError(f"{path}: two range-image rows for frame {timestamp_us}, laser {laser}")
        row_of_laser[int(laser)] = row
    missing = [laser for laser in lasers if laser not in row_of_laser]
    if missing:
        raise ValueError(f"{path}: no range image for frame {timestamp_us}, lasers {missing}")
    return row_of_laser


def _top_pixel_pose(lidar_path: Path, timestamp_us: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(H, W, 6) TOP per-pixel pose and the (4, 4) frame pose; (None, None) without a pose row."""
    pose_path = _segment_file(lidar_path, LIDAR_POSE)
    filters = [(KEY_TIMESTAMP, "==", int(timestamp_us)), (KEY_LASER, "==", TOP)]
    table = _read_table(pose_path, LIDAR_POSE, (POSE_VALUES, POSE_SHAPE), filters)
    if table.num_rows == 0:
        log.debug("%s: no TOP pixel pose at frame %d; using the frame pose", pose_path, timestamp_us)
        return None, None
    if table.num_rows > 1:
        raise ValueError(f"{pose_path}: {table.num_rows} TOP pixel-pose rows at frame {timestamp_us}")
    where = f"frame {timestamp_us}, laser {TOP}"
    pose = _image_from_row(table, 0, POSE_VALUES, POSE_SHAPE, POSE_CHANNELS, pose_path, where)
    poses_path = _segment_file(lidar_path, VEHICLE_POSE)
    world_from_vehicle = read_vehicle_poses(poses_path).get(int(timestamp_us))
    if world_from_vehicle is None:
        raise ValueError(f"{poses_path}: no vehicle pose for frame {timestamp_us}")
    return pose, world_from_vehicle


def load_waymo_v2(source: PointSource, path: Path) -> LoadedCloud:
    """Point-format loader: ``source.key`` holds ``timestamp_us`` and optionally ``lasers`` / ``returns``."""
    key = source.key or {}
    if "timestamp_us" not in key:
        raise ValueError(f"{path}: a {POINT_FORMAT!r} point source needs key['timestamp_us'], got key {key}")
    points = read_frame_points(path, int(key["timestamp_us"]), key.get("lasers", ALL_LASERS), key.get("returns", (1,)))
    return LoadedCloud(points.astype(np.float32), POINT_COLUMNS)


register_point_format(POINT_FORMAT, load_waymo_v2)


# ------------------------------------------------------------------- labels
def read_box_records(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """``lidar_box`` file -> {frame timestamp: annotation record} (``SampleInfo.annotations`` form).

    Boxes (x, y, z, l, w, h, heading, vx, vy) in the frame's vehicle frame, heading in [-pi, pi);
    a null speed is None (NaN); names from ``WAYMO_TYPES``; ``num_points`` from
    ``num_lidar_points_in_box`` (-1 when null); ids are the ``laser_object_id``s. Each record also
    carries ``detection_difficulty`` {id: level} (0 when null), read into ``SampleInfo.meta``.
    """
    path = Path(path)
    columns = (KEY_TIMESTAMP, KEY_OBJECT_ID, *BOX_CENTER, *BOX_SIZE, BOX_HEADING, BOX_TYPE,
               BOX_NUM_LIDAR_POINTS, BOX_SPEED[0], BOX_SPEED[1], BOX_DIFFICULTY_DETECTION)
    table = _read_table(path, LIDAR_BOX, columns)
    data = {c: _column_values(table, c) for c in columns}
    records: dict[int, dict[str, Any]] = {}
    for i in range(table.num_rows):
        timestamp = int(data[KEY_TIMESTAMP][i])
        object_id = data[KEY_OBJECT_ID][i]
        where = f"frame {timestamp}, object {object_id!r}"
        geometry = []
        for column in (*BOX_CENTER, *BOX_SIZE, BOX_HEADING):
            value = data[column][i]
            if value is None or not np.isfinite(value):
                raise ValueError(f"{path}: column {column!r} at {where} is {value}, expected a finite number")
            geometry.append(float(value))
        geometry[6] = float(normalize_yaw(geometry[6]))
        box_type = data[BOX_TYPE][i]
        if box_type not in WAYMO_TYPES:
            raise ValueError(f"{path}: column {BOX_TYPE!r} at {where} is {box_type}, expected one of {sorted(WAYMO_TYPES)}")
        speed = [data[BOX_SPEED[0]][i], data[BOX_SPEED[1]][i]]
        num_points = data[BOX_NUM_LIDAR_POINTS][i]
        difficulty = data[BOX_DIFFICULTY_DETECTION][i]

        record = records.setdefault(timestamp, _empty_box_record())
        if object_id in record["detection_difficulty"]:
            raise ValueError(f"{path}: two boxes with {KEY_OBJECT_ID!r} {object_id!r} at frame {timestamp}")
        record["boxes"].append(geometry + [None if v is None or not np.isfinite(v) else float(v) for v in speed])
        record["names"].append(WAYMO_TYPES[box_type])
        record["num_points"].append(-1 if num_points is None else int(num_points))
        record["attributes"].append("")
        record["ids"].append(str(object_id))
        record["detection_difficulty"][str(object_id)] = 0 if difficulty is None else int(difficulty)
    return records


def _empty_box_record() -> dict[str, Any]:
    return {"box_dim": 9, "boxes": [], "names": [], "num_points": [], "attributes": [], "ids": [], "detection_difficulty": {}}


# ------------------------------------------------------------------- reader
class WaymoReader:
    """One ``SampleInfo`` per frame of every segment of a split, ordered by segment then time.

    ``lasers``: laser names to load (each must be calibrated and present in every frame), ``'top'``,
    or ``'all'``: every laser with range images in the segment. ``returns``: (1,) or (1, 2).
    ``max_sweeps``: earlier frames of the same segment merged, newest first, moved into the
    current vehicle frame (fewer at the start of a segment). ``with_annotations``: read
    ``lidar_box`` (default: every split but ``testing``). ``feature_columns``: point columns
    after x, y, z that ``__getitem__`` returns.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        lasers: Sequence[int] | str = "all",
        returns: Sequence[int] = (1,),
        max_sweeps: int = 0,
        feature_columns: Sequence[str] = ("intensity", "elongation"),
        with_annotations: bool | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"Waymo split {split!r} unknown; expected one of {SPLITS}")
        self.root = Path(root)
        self.split = split
        self.lasers = _laser_names(lasers)
        self.returns = tuple(int(r) for r in returns)
        if not self.returns or any(r not in RETURNS for r in self.returns) or len(set(self.returns)) != len(self.returns):
            raise ValueError(f"returns {returns!r}: expected distinct values among {RETURNS}")
        if max_sweeps < 0:
            raise ValueError(f"max_sweeps must be >= 0, got {max_sweeps}")
        self.max_sweeps = int(max_sweeps)
        self.feature_columns = tuple(feature_columns)
        self.with_annotations = split != "testing" if with_annotations is None else bool(with_annotations)
        self.infos: list[SampleInfo] = [info for name in self.context_names() for info in self._segment_infos(name)]

    def context_names(self) -> list[str]:
        """Segments of the split: the names of the ``lidar`` component's files, sorted."""
        lidar_dir = self.root / self.split / LIDAR
        if not lidar_dir.is_dir():
            raise FileNotFoundError(f"Waymo v2 component {LIDAR!r}: folder {lidar_dir} not found")
        return sorted(p.stem for p in lidar_dir.glob("*.parquet"))

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index: int) -> Sample:
        return load_sample(self.infos[index], self.root, feature_columns=self.feature_columns)

    def _segment_infos(self, context_name: str) -> list[SampleInfo]:
        lidar_path = component_path(self.root, self.split, LIDAR, context_name)
        frame_lasers = _frame_lasers(lidar_path, context_name)
        calibration_path = component_path(self.root, self.split, LIDAR_CALIBRATION, context_name)
        calibrations = read_calibrations(calibration_path)
        lasers = tuple(sorted(set().union(*frame_lasers.values()))) if self.lasers is None else self.lasers
        missing = [laser for laser in lasers if laser not in calibrations]
        if missing:
            raise ValueError(f"{calibration_path}: no calibration for lasers {missing} (has {sorted(calibrations)})")
        if TOP in lasers:
            _require_file(component_path(self.root, self.split, LIDAR_POSE, context_name), LIDAR_POSE)
        pose_path = component_path(self.root, self.split, VEHICLE_POSE, context_name)
        poses = read_vehicle_poses(pose_path)
        boxes = None
        if self.with_annotations:
            boxes = read_box_records(component_path(self.root, self.split, LIDAR_BOX, context_name))

        timestamps = sorted(frame_lasers)
        for timestamp in timestamps:
            missing = [laser for laser in lasers if laser not in frame_lasers[timestamp]]
            if missing:
                raise ValueError(f"{lidar_path}: no range image for frame {timestamp}, lasers {missing}")
            if timestamp not in poses:
                raise ValueError(f"{pose_path}: no vehicle pose for frame {timestamp} of {lidar_path}")
        relative_path = lidar_path.relative_to(self.root).as_posix()
        return [self._frame_info(context_name, relative_path, lasers, poses, timestamps[: i + 1], boxes)
                for i in range(len(timestamps))]

    def _frame_info(
        self,
        context_name: str,
        relative_path: str,
        lasers: Sequence[int],
        poses: dict[int, np.ndarray],
        timestamps: list[int],
        boxes: dict[int, dict[str, Any]] | None,
    ) -> SampleInfo:
        """The record of the last of ``timestamps`` (the segment's frames up to it, in time order)."""
        timestamp = timestamps[-1]
        earlier = timestamps[max(0, len(timestamps) - 1 - self.max_sweeps):-1][::-1]
        meta: dict[str, Any] = {
            "context_name": context_name,
            "split": self.split,
            "global_from_lidar": poses[timestamp].tolist(),
            "lasers": list(lasers),
            "returns": list(self.returns),
        }
        annotations = None
        if boxes is not None:
            record = boxes.get(timestamp, _empty_box_record())
            annotations = {k: v for k, v in record.items() if k != "detection_difficulty"}
            meta["detection_difficulty"] = record["detection_difficulty"]
        return SampleInfo(
            dataset="waymo",
            sample_id=f"{context_name}_{timestamp}",
            lidar=self._source(relative_path, lasers, timestamp),
            sweeps=[self._sweep(relative_path, lasers, poses, timestamp, t) for t in earlier],
            annotations=annotations,
            scene=context_name,
            timestamp_us=timestamp,
            max_sweeps=self.max_sweeps,
            meta=meta,
        )

    def _source(self, relative_path: str, lasers: Sequence[int], timestamp: int) -> PointSource:
        key = {"timestamp_us": int(timestamp), "lasers": list(lasers), "returns": list(self.returns)}
        return PointSource(path=relative_path, format=POINT_FORMAT, columns=POINT_COLUMNS, key=key)

    def _sweep(
        self, relative_path: str, lasers: Sequence[int], poses: dict[int, np.ndarray], now: int, before: int
    ) -> PointSource:
        source = self._source(relative_path, lasers, before)
        source.sample_from_source = (np.linalg.inv(poses[now]) @ poses[before]).tolist()
        source.time_lag = (now - before) * 1e-6
        return source


def _laser_names(lasers: Sequence[int] | str) -> tuple[int, ...] | None:
    """Requested laser names; None for 'all' (the lasers of each segment's range images)."""
    if isinstance(lasers, str):
        if lasers.lower() == "top":
            return (TOP,)
        if lasers.lower() == "all":
            return None
        raise ValueError(f"lasers {lasers!r}: expected 'top', 'all' or laser names among {ALL_LASERS}")
    names = tuple(int(x) for x in lasers)
    if not names or any(x not in LASER_NAMES for x in names) or len(set(names)) != len(names):
        raise ValueError(f"lasers {lasers!r}: expected distinct laser names among {ALL_LASERS}")
    return names


def _frame_lasers(lidar_path: Path, context_name: str) -> dict[int, set[int]]:
    """{frame timestamp: laser names with a range image} from the key columns of a ``lidar`` file."""
    table = _read_table(lidar_path, LIDAR, (KEY_SEGMENT, KEY_TIMESTAMP, KEY_LASER))
    others = set(_column_values(table, KEY_SEGMENT)) - {context_name}
    if others:
        raise ValueError(f"{lidar_path}: column {KEY_SEGMENT!r} holds other segments {sorted(map(str, others))}")
    frames: dict[int, set[int]] = {}
    for timestamp, laser in zip(_column_values(table, KEY_TIMESTAMP), _column_values(table, KEY_LASER)):
        frames.setdefault(int(timestamp), set()).add(int(laser))
    return frames
