"""Boxes of the nuScenes detection benchmark as columns, in the nuScenes global frame.

The benchmark compares boxes in the global frame (x east, y north, z up, metres), with size as
(w, l, h) and orientation as a quaternion (w, x, y, z). :class:`BoxTable` holds a whole set of
them as arrays, one row per box, so that every step of the evaluation is a numpy operation.
This module also holds the benchmark's name lists and the conversions between our sample frame
(x forward, y left, z up) and the global frame.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

# The devkit's DETECTION_NAMES in its config order: the order of every per-class mean.
DEVKIT_DETECTION_NAMES: tuple[str, ...] = (
    "car", "truck", "bus", "trailer", "construction_vehicle", "pedestrian", "motorcycle", "bicycle",
    "traffic_cone", "barrier",
)

# The devkit's ATTRIBUTE_NAMES; a box's attribute is an index into it, -1 for "".
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing", "cycle.with_rider",
    "cycle.without_rider", "vehicle.moving", "vehicle.parked", "vehicle.stopped",
)
ATTRIBUTE_INDEX: dict[str, int] = {name: index for index, name in enumerate(ATTRIBUTE_NAMES)}

TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
BIKE_RACK_CATEGORY = "static_object.bicycle_rack"
CYCLE_CLASSES: tuple[str, ...] = ("bicycle", "motorcycle")


@dataclass
class BoxTable:
    """N boxes in the global frame.

    ``sample`` int64 (N,): index of each box's sample in the evaluation's sample list.
    ``translation`` (N, 3), ``size`` (N, 3) as w, l, h, ``rotation`` (N, 4) quaternions
    w, x, y, z, ``velocity`` (N, 2) m/s (NaN where unknown), all float64. ``label`` int64 (N,):
    index into the evaluation's class names. ``score`` float64 (N,) (-1 for ground truth).
    ``attribute`` int64 (N,): index into :data:`ATTRIBUTE_NAMES`, -1 for none. ``num_pts`` int64
    (N,): lidar + radar points in the box, -1 where unknown (every prediction, as in the devkit).
    Rows keep the order they were given in (the devkit breaks score ties by it).
    """

    sample: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    velocity: np.ndarray
    label: np.ndarray
    score: np.ndarray
    attribute: np.ndarray
    num_pts: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.sample)
        shapes = {"sample": (count,), "translation": (count, 3), "size": (count, 3), "rotation": (count, 4),
                  "velocity": (count, 2), "label": (count,), "score": (count,), "attribute": (count,),
                  "num_pts": (count,)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if tuple(np.shape(value)) != shape:
                raise ValueError(f"BoxTable.{name} must have shape {shape} for {count} boxes, "
                                 f"got {tuple(np.shape(value))}")

    def __len__(self) -> int:
        return len(self.sample)

    def select(self, index: np.ndarray) -> "BoxTable":
        """The rows picked by a bool mask or an index array, in that order."""
        return BoxTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def empty() -> "BoxTable":
        return BoxTable(
            sample=np.zeros(0, np.int64), translation=np.zeros((0, 3)), size=np.zeros((0, 3)),
            rotation=np.zeros((0, 4)), velocity=np.zeros((0, 2)), label=np.zeros(0, np.int64),
            score=np.zeros(0), attribute=np.zeros(0, np.int64), num_pts=np.zeros(0, np.int64),
        )

    @staticmethod
    def cat(tables: Sequence["BoxTable"]) -> "BoxTable":
        tables = list(tables)
        if not tables:
            return BoxTable.empty()
        return BoxTable(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(BoxTable)})

    @property
    def yaw(self) -> np.ndarray:
        """(N,) heading of each box's +x axis projected on the xy plane (the devkit's ``quaternion_yaw``)."""
        return quaternion_yaw(self.rotation)


@dataclass
class BikeRacks:
    """Bicycle racks of the samples (annotations of category ``static_object.bicycle_rack``):
    ``sample`` int64 (R,), ``translation`` (R, 3), ``size`` (R, 3) w, l, h, ``rotation`` (R, 4)."""

    sample: np.ndarray
    translation: np.ndarray
    size: np.ndarray
    rotation: np.ndarray

    def __len__(self) -> int:
        return len(self.sample)

    @staticmethod
    def empty() -> "BikeRacks":
        return BikeRacks(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 4)))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of JSON containers are built: they
    hold no reference cycles, and the collector's repeated passes over them cost more than the
    parse itself (about 40 % of reading a 1.2 GB submission)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ------------------------------------------------------------------ rotations
def quaternion_yaw(rotation: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions w, x, y, z (any non-zero scale) -> (N,) yaw of the rotated +x axis.

    The devkit's ``quaternion_yaw``: ``arctan2`` of the first column of the rotation matrix,
    written with the scale-free entries ``w2 + x2 - y2 - z2`` and ``2 (x y + w z)``.
    """
    w, x, y, z = np.asarray(rotation, dtype=np.float64).reshape(-1, 4).T
    return np.arctan2(2.0 * (x * y + w * z), w * w + x * x - y * y - z * z)


def unit_quaternion_matrix(rotation: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions -> (N, 3, 3) rotation matrices of the normalised quaternions."""
    q = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=1)


def multiply_by_yaw(rotation: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions q -> (N, 4) unit quaternions of ``q * (rotation about +z by yaw)``
    (the rotation ``R(q) @ Rz(yaw)``), with w >= 0."""
    q = np.asarray(rotation, dtype=np.float64).reshape(-1, 4)
    half = np.asarray(yaw, dtype=np.float64).reshape(-1) / 2
    cos, sin = np.cos(half), np.sin(half)
    w, x, y, z = q.T
    out = np.stack([w * cos - z * sin, x * cos + y * sin, y * cos - x * sin, w * sin + z * cos], axis=1)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(out[:, :1] < 0, -out, out)


def matrix_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion w, x, y, z with w >= 0."""
    from pointformer.structures.rotation import matrix_to_quaternion

    return matrix_to_quaternion(np.asarray(matrix, dtype=np.float64))


# ------------------------------------------------------ sample frame <-> global
def sample_poses(source: Any) -> dict[str, np.ndarray]:
    """sample token -> 4x4 ``global_from_sample`` pose (float64).

    ``source``: a mapping token -> 4x4 pose, an object with a ``poses()`` method (such as
    ``NuScenesGroundTruth``), or a sequence of ``SampleInfo`` records whose
    ``meta["global_from_lidar"]`` holds the pose (the nuScenes reader writes it).
    """
    if hasattr(source, "poses") and callable(source.poses):
        return source.poses()
    if isinstance(source, Mapping):
        return {str(token): _pose_array(pose, f"pose of sample {token!r}") for token, pose in source.items()}
    poses: dict[str, np.ndarray] = {}
    for index, info in enumerate(source):
        meta = getattr(info, "meta", None)
        if not isinstance(meta, Mapping) or "global_from_lidar" not in meta:
            raise ValueError(f"infos[{index}] (sample {getattr(info, 'sample_id', '?')!r}) has no "
                             "meta['global_from_lidar']: nuScenes results need each sample's global pose")
        poses[info.sample_id] = _pose_array(meta["global_from_lidar"], f"infos[{index}].meta['global_from_lidar']")
    return poses


def _pose_array(pose: Any, where: str) -> np.ndarray:
    array = np.asarray(pose, dtype=np.float64)
    if array.shape != (4, 4) or not np.isfinite(array).all():
        raise ValueError(f"{where} must be a finite 4x4 matrix, got shape {array.shape}")
    return array


def boxes_to_global(boxes: np.ndarray, pose: np.ndarray,
                    pose_quaternion: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """(N, 7|9) boxes ``(x, y, z, l, w, h, yaw[, vx, vy])`` in a sample frame -> global
    ``translation`` (N, 3), ``size`` (N, 3) w, l, h, ``rotation`` (N, 4), ``velocity`` (N, 2).

    The centre is moved by the full 4x4 pose; the rotation is the pose's rotation times the
    box's yaw rotation; the velocity is the xy part of the pose's rotation applied to (vx, vy, 0)
    (NaN when the boxes have no velocity columns).
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    rotation = pose[:3, :3]
    if pose_quaternion is None:
        pose_quaternion = matrix_quaternion(rotation)
    count = len(boxes)
    translation = boxes[:, :3] @ rotation.T + pose[:3, 3]
    if boxes.shape[1] >= 9:
        velocity = boxes[:, 7:9] @ rotation[:2, :2].T
    else:
        velocity = np.full((count, 2), np.nan)
    return {
        "translation": translation,
        "size": boxes[:, [4, 3, 5]],
        "rotation": multiply_by_yaw(np.broadcast_to(pose_quaternion, (count, 4)), boxes[:, 6]),
        "velocity": velocity,
    }


def boxes_from_global(translation: np.ndarray, size: np.ndarray, rotation: np.ndarray, velocity: np.ndarray,
                      pose: np.ndarray) -> np.ndarray:
    """The inverse of :func:`boxes_to_global`: (N, 9) boxes in the sample frame (float64).

    The yaw is the heading of each box's +x axis seen from the sample frame, projected on its
    xy plane; the velocity (vx, vy) is the one whose rotated xy part is the given global (vx, vy)
    (exact for boxes written by :func:`boxes_to_global`); NaN velocities stay NaN.
    """
    rotation_matrix = pose[:3, :3]
    center = (np.asarray(translation, dtype=np.float64) - pose[:3, 3]) @ rotation_matrix
    in_sample = rotation_matrix.T[None] @ unit_quaternion_matrix(rotation)
    yaw = np.arctan2(in_sample[:, 1, 0], in_sample[:, 0, 0])
    velocity = np.linalg.solve(rotation_matrix[:2, :2], np.asarray(velocity, dtype=np.float64).T).T
    size = np.asarray(size, dtype=np.float64)
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    return np.column_stack([center, size[:, 1], size[:, 0], size[:, 2], yaw, velocity])
