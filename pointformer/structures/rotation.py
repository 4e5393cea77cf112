"""Rotations and rigid poses in numpy float64: quaternions (w, x, y, z), yaw, 4x4 matrices.

Poses are 4x4 homogeneous matrices mapping points of a child frame into a parent frame
(``parent_from_child``), the convention of nuScenes' ego_pose and calibrated_sensor tables.
"""

from __future__ import annotations

import numpy as np


def normalize_yaw(yaw):
    """Wrap angles (radians) into [-pi, pi). Works on numpy arrays, torch tensors and floats."""
    return (yaw + np.pi) % (2 * np.pi) - np.pi


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices. Normalises q first."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    m = np.asarray(matrix, dtype=np.float64)
    batch_shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    out = np.empty((m.shape[0], 4))
    for i, r in enumerate(m):
        trace = r[0, 0] + r[1, 1] + r[2, 2]
        if trace > 0:
            s = 2.0 * np.sqrt(trace + 1.0)
            out[i] = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
            out[i] = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif r[1, 1] > r[2, 2]:
            s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
            out[i] = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
            out[i] = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    out = out / np.linalg.norm(out, axis=-1, keepdims=True)
    out = np.where(out[:, :1] < 0, -out, out)
    return out.reshape(*batch_shape, 4)


def yaw_to_quaternion(yaw: np.ndarray) -> np.ndarray:
    """(...,) yaw about +z (radians) -> (..., 4) quaternions (w, x, y, z)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(yaw)
    return np.stack([np.cos(yaw / 2), zeros, zeros, np.sin(yaw / 2)], axis=-1)


def heading_yaw(rotation: np.ndarray) -> np.ndarray:
    """Yaw of the rotated +x axis projected on the xy plane: (..., 3, 3) -> (...,).

    The same definition as the nuScenes devkit's ``quaternion_yaw``.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    return np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])


def yaw_matrix(yaw: float) -> np.ndarray:
    """(3, 3) rotation about +z by ``yaw`` radians, counter-clockwise."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def pose_matrix(translation, rotation) -> np.ndarray:
    """4x4 ``parent_from_child`` from a translation (3,) and a quaternion (4,) wxyz or a 3x3 matrix."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape == (4,):
        rotation = quaternion_to_matrix(rotation)
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = np.asarray(translation, dtype=np.float64)
    return pose


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 pose (rotation transposed), exact for orthonormal rotations."""
    inverse = np.eye(4)
    rotation_t = pose[:3, :3].T
    inverse[:3, :3] = rotation_t
    inverse[:3, 3] = -rotation_t @ pose[:3, 3]
    return inverse


def transform_points(pose: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply a 4x4 pose to (N, 3) points; computed in float64, returned as float64."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return xyz @ pose[:3, :3].T + pose[:3, 3]
