"""Write a segment in the Waymo Open Dataset v2 layout: ``root/<split>/<component>/<context>.parquet``.

Components written: ``lidar`` (one row per frame and laser, one Parquet row group per frame so
that readers filtering on the timestamp skip the other frames), ``lidar_calibration``,
``lidar_pose`` (TOP per-pixel poses of the frames that have them), ``vehicle_pose`` and
``lidar_box``. Column names and Arrow types are the v2 dataset's; the names come from
``pointformer.data.readers.waymo``.

What the containers do not hold is written the way the v2 dataset writes an absent value:
``range_image_return2`` is an all-zero image (no second returns), ``num_top_lidar_points_in_box``,
``speed.z`` and ``acceleration`` are null, difficulty levels are 0 (UNKNOWN: no labeller set one;
the Waymo metrics promote boxes with <= 5 points to level 2 themselves).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pointformer.data.classes import WAYMO_TYPES
from pointformer.data.readers import waymo as v2
from pointformer.data.synthetic.waymo_layout import WaymoBoxes, WaymoFrame, WaymoLidarCalibration

_TRANSFORM = pa.list_(pa.float64(), 16)
_IMAGE_VALUES = pa.list_(pa.float32())
_IMAGE_SHAPE = pa.list_(pa.int32(), 3)

LIDAR_SCHEMA = pa.schema([
    (v2.KEY_SEGMENT, pa.string()),
    (v2.KEY_TIMESTAMP, pa.int64()),
    (v2.KEY_LASER, pa.int8()),
    (v2.RANGE_IMAGE_VALUES[1], _IMAGE_VALUES),
    (v2.RANGE_IMAGE_SHAPE[1], _IMAGE_SHAPE),
    (v2.RANGE_IMAGE_VALUES[2], _IMAGE_VALUES),
    (v2.RANGE_IMAGE_SHAPE[2], _IMAGE_SHAPE),
])
LIDAR_CALIBRATION_SCHEMA = pa.schema([
    (v2.KEY_SEGMENT, pa.string()),
    (v2.KEY_LASER, pa.int8()),
    (v2.EXTRINSIC, _TRANSFORM),
    (v2.BEAM_INCLINATION_MIN, pa.float64()),
    (v2.BEAM_INCLINATION_MAX, pa.float64()),
    (v2.BEAM_INCLINATION_VALUES, pa.list_(pa.float64())),
])
LIDAR_POSE_SCHEMA = pa.schema([
    (v2.KEY_SEGMENT, pa.string()),
    (v2.KEY_TIMESTAMP, pa.int64()),
    (v2.KEY_LASER, pa.int8()),
    (v2.POSE_VALUES, _IMAGE_VALUES),
    (v2.POSE_SHAPE, _IMAGE_SHAPE),
])
VEHICLE_POSE_SCHEMA = pa.schema([
    (v2.KEY_SEGMENT, pa.string()),
    (v2.KEY_TIMESTAMP, pa.int64()),
    (v2.WORLD_FROM_VEHICLE, _TRANSFORM),
])
LIDAR_BOX_SCHEMA = pa.schema(
    [(v2.KEY_SEGMENT, pa.string()), (v2.KEY_TIMESTAMP, pa.int64()), (v2.KEY_OBJECT_ID, pa.string())]
    + [(c, pa.float64()) for c in (*v2.BOX_CENTER, *v2.BOX_SIZE, v2.BOX_HEADING)]
    + [(v2.BOX_TYPE, pa.int8()), (v2.BOX_NUM_LIDAR_POINTS, pa.int64()), (v2.BOX_NUM_TOP_LIDAR_POINTS, pa.int64())]
    + [(c, pa.float64()) for c in (*v2.BOX_SPEED, *v2.BOX_ACCELERATION)]
    + [(v2.BOX_DIFFICULTY_DETECTION, pa.int8()), (v2.BOX_DIFFICULTY_TRACKING, pa.int8())]
)


def write_waymo_segment(
    root: str | os.PathLike,
    split: str,
    context_name: str,
    calibrations: Sequence[WaymoLidarCalibration],
    frames: Sequence[WaymoFrame],
) -> dict[str, Path]:
    """Write one segment's components; returns {component: file written}.

    Frames must have distinct timestamps; every laser of a frame needs a calibration, a range
    image of shape (H, W, 4) and, with ``beam_inclinations``, H of them; ``top_pose`` must be
    (H, W, 6) like the TOP range image.
    """
    if split not in v2.SPLITS:
        raise ValueError(f"Waymo split {split!r} unknown; expected one of {v2.SPLITS}")
    if not context_name or "/" in context_name or os.sep in context_name:
        raise ValueError(f"context name {context_name!r} must be a non-empty file name")
    by_laser = _check_calibrations(calibrations)
    if not frames:
        raise ValueError(f"segment {context_name}: no frames to write")
    timestamps = [int(f.timestamp_us) for f in frames]
    if len(set(timestamps)) != len(timestamps):
        raise ValueError(f"segment {context_name}: frame timestamps are not distinct")
    for frame in frames:
        _check_frame(frame, by_laser)

    paths = {c: v2.component_path(root, split, c, context_name)
             for c in (v2.LIDAR, v2.LIDAR_CALIBRATION, v2.LIDAR_POSE, v2.VEHICLE_POSE, v2.LIDAR_BOX)}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(frames, key=lambda f: int(f.timestamp_us))
    _write_row_group_per_frame(paths[v2.LIDAR], LIDAR_SCHEMA, [_lidar_table(context_name, f) for f in ordered])
    _write_row_group_per_frame(paths[v2.LIDAR_POSE], LIDAR_POSE_SCHEMA, [_pose_table(context_name, f) for f in ordered])
    pq.write_table(_calibration_table(context_name, calibrations), paths[v2.LIDAR_CALIBRATION])
    pq.write_table(_vehicle_pose_table(context_name, ordered), paths[v2.VEHICLE_POSE])
    pq.write_table(_box_table(context_name, ordered), paths[v2.LIDAR_BOX])
    return paths


# ----------------------------------------------------------------- checks
def _check_calibrations(calibrations: Sequence[WaymoLidarCalibration]) -> dict[int, WaymoLidarCalibration]:
    by_laser: dict[int, WaymoLidarCalibration] = {}
    for calibration in calibrations:
        laser = int(calibration.laser_name)
        if laser not in v2.LASER_NAMES:
            raise ValueError(f"calibration of unknown laser {laser}; expected one of {v2.ALL_LASERS}")
        if laser in by_laser:
            raise ValueError(f"two calibrations for laser {laser}")
        if np.asarray(calibration.extrinsic).shape != (4, 4):
            raise ValueError(f"laser {laser}: extrinsic of shape {np.asarray(calibration.extrinsic).shape}, expected (4, 4)")
        by_laser[laser] = calibration
    if not by_laser:
        raise ValueError("no lidar calibrations to write")
    return by_laser


def _check_frame(frame: WaymoFrame, by_laser: dict[int, WaymoLidarCalibration]) -> None:
    where = f"frame {frame.timestamp_us}"
    if np.asarray(frame.world_from_vehicle).shape != (4, 4):
        raise ValueError(f"{where}: world_from_vehicle of shape {np.asarray(frame.world_from_vehicle).shape}, expected (4, 4)")
    for laser, image in frame.range_images.items():
        image = np.asarray(image)
        if laser not in by_laser:
            raise ValueError(f"{where}: range image of laser {laser}, which has no calibration")
        if image.ndim != 3 or image.shape[2] != v2.RANGE_IMAGE_CHANNELS:
            raise ValueError(f"{where}, laser {laser}: range image of shape {image.shape}, expected (H, W, 4)")
        inclinations = by_laser[laser].beam_inclinations
        if inclinations is not None and len(inclinations) != image.shape[0]:
            raise ValueError(f"{where}, laser {laser}: {len(inclinations)} beam inclinations for {image.shape[0]} rows")
    if frame.top_pose is not None:
        if v2.TOP not in frame.range_images:
            raise ValueError(f"{where}: a TOP pixel pose without a TOP range image")
        expected = np.asarray(frame.range_images[v2.TOP]).shape[:2] + (v2.POSE_CHANNELS,)
        if np.asarray(frame.top_pose).shape != expected:
            raise ValueError(f"{where}: TOP pixel pose of shape {frame.top_pose.shape}, expected {expected}")
    _check_boxes(frame.boxes, where)


def _check_boxes(boxes: WaymoBoxes, where: str) -> None:
    array = np.asarray(boxes.boxes, dtype=np.float64)
    array = array.reshape(0, 7) if array.size == 0 else array
    if array.ndim != 2 or array.shape[1] != 7:
        raise ValueError(f"{where}: boxes of shape {array.shape}, expected (M, 7)")
    m = array.shape[0]
    speed = np.asarray(boxes.speed, dtype=np.float64)
    if speed.shape != (m, 2) and not (m == 0 and speed.size == 0):
        raise ValueError(f"{where}: box speeds of shape {speed.shape}, expected ({m}, 2)")
    sizes = {"types": len(boxes.types), "ids": len(boxes.ids), "num_lidar_points": len(boxes.num_lidar_points)}
    wrong = {k: n for k, n in sizes.items() if n != m}
    if wrong:
        raise ValueError(f"{where}: {m} boxes but {wrong} entries")
    if len(set(boxes.ids)) != m:
        raise ValueError(f"{where}: box ids are not distinct")
    unknown = sorted({int(t) for t in boxes.types} - set(WAYMO_TYPES))
    if unknown:
        raise ValueError(f"{where}: box types {unknown} not among the Waymo types {sorted(WAYMO_TYPES)}")


# ----------------------------------------------------------------- tables
def _write_row_group_per_frame(path: Path, schema: pa.Schema, tables: list[pa.Table]) -> None:
    with pq.ParquetWriter(path, schema) as writer:
        for table in tables:
            if table.num_rows:
                writer.write_table(table)


def _images_column(images: list[np.ndarray | None]) -> tuple[pa.Array, pa.Array]:
    """Images (H, W, C) -> (list<float32> values, fixed_size_list<int32>[3] shapes)."""
    flat = [np.asarray(i, dtype=np.float32).reshape(-1) for i in images]
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in flat])]).astype(np.int32)
    values = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(flat) if flat else np.zeros(0, np.float32)))
    shapes = np.asarray([i.shape for i in images], dtype=np.int32).reshape(-1)
    return values, pa.FixedSizeListArray.from_arrays(pa.array(shapes), 3)


def _lidar_table(context_name: str, frame: WaymoFrame) -> pa.Table:
    lasers = sorted(frame.range_images)
    first = [frame.range_images[laser] for laser in lasers]
    second = [np.zeros(image.shape, dtype=np.float32) for image in first]
    values1, shapes1 = _images_column(first)
    values2, shapes2 = _images_column(second)
    n = len(lasers)
    return pa.Table.from_arrays(
        [pa.array([context_name] * n), pa.array([int(frame.timestamp_us)] * n, pa.int64()),
         pa.array(lasers, pa.int8()), values1, shapes1, values2, shapes2],
        schema=LIDAR_SCHEMA,
    )


def _pose_table(context_name: str, frame: WaymoFrame) -> pa.Table:
    poses = [] if frame.top_pose is None else [frame.top_pose]
    values, shapes = _images_column(poses)
    n = len(poses)
    return pa.Table.from_arrays(
        [pa.array([context_name] * n, pa.string()), pa.array([int(frame.timestamp_us)] * n, pa.int64()),
         pa.array([v2.TOP] * n, pa.int8()), values, shapes],
        schema=LIDAR_POSE_SCHEMA,
    )


def _transforms(matrices: list[np.ndarray]) -> pa.Array:
    flat = np.asarray(matrices, dtype=np.float64).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), 16)


def _calibration_table(context_name: str, calibrations: Sequence[WaymoLidarCalibration]) -> pa.Table:
    ordered = sorted(calibrations, key=lambda c: int(c.laser_name))
    inclinations = [None if c.beam_inclinations is None else np.asarray(c.beam_inclinations, np.float64).tolist()
                    for c in ordered]
    return pa.Table.from_arrays(
        [pa.array([context_name] * len(ordered)), pa.array([int(c.laser_name) for c in ordered], pa.int8()),
         _transforms([c.extrinsic for c in ordered]),
         pa.array([float(c.inclination_min) for c in ordered], pa.float64()),
         pa.array([float(c.inclination_max) for c in ordered], pa.float64()),
         pa.array(inclinations, pa.list_(pa.float64()))],
        schema=LIDAR_CALIBRATION_SCHEMA,
    )


def _vehicle_pose_table(context_name: str, frames: Sequence[WaymoFrame]) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([context_name] * len(frames)), pa.array([int(f.timestamp_us) for f in frames], pa.int64()),
         _transforms([f.world_from_vehicle for f in frames])],
        schema=VEHICLE_POSE_SCHEMA,
    )


def _box_table(context_name: str, frames: Sequence[WaymoFrame]) -> pa.Table:
    rows = [(int(f.timestamp_us), f.boxes) for f in frames]
    counts = [len(b.ids) for _, b in rows]
    m = sum(counts)
    boxes = np.concatenate([np.asarray(b.boxes, np.float64).reshape(-1, 7) for _, b in rows]) if m else np.zeros((0, 7))
    speed = np.concatenate([np.asarray(b.speed, np.float64).reshape(-1, 2) for _, b in rows]) if m else np.zeros((0, 2))
    nulls = pa.nulls(m, pa.float64())
    columns = [
        pa.array([context_name] * m, pa.string()),
        pa.array(np.repeat([t for t, _ in rows], counts).astype(np.int64)),
        pa.array([str(i) for _, b in rows for i in b.ids], pa.string()),
        *[pa.array(boxes[:, k]) for k in range(7)],
        pa.array([int(t) for _, b in rows for t in b.types], pa.int8()),
        pa.array([int(n) for _, b in rows for n in b.num_lidar_points], pa.int64()),
        pa.nulls(m, pa.int64()),
        pa.array(speed[:, 0]), pa.array(speed[:, 1]), nulls,
        nulls, nulls, nulls,
        pa.array(np.zeros(m, np.int8)), pa.array(np.zeros(m, np.int8)),
    ]
    return pa.Table.from_arrays(columns, schema=LIDAR_BOX_SCHEMA)
