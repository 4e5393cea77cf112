"""What the nuScenes writer takes: scenes in the nuScenes frames, free of any simulator type.

Frames follow nuScenes: points in the LIDAR_TOP sensor frame (x right, y forward, z up),
``ego_from_lidar`` the calibrated-sensor pose, ``global_from_ego`` the ego pose, boxes in the
global frame with size as (w, l, h) and rotation as a quaternion (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class NuScenesSweep:
    """One LIDAR_TOP sweep. ``points`` float32 (N, 5): x, y, z, intensity (0-255), ring index.
    ``lidarseg``: uint8 (N,) raw lidarseg ids, keyframes only."""

    timestamp_us: int
    points: np.ndarray
    global_from_ego: np.ndarray
    is_key_frame: bool
    lidarseg: np.ndarray | None = None


@dataclass
class NuScenesBox:
    """One annotation of one instance at one keyframe, in the global frame."""

    instance_id: str
    category: str
    attribute: str
    translation: np.ndarray
    size_wlh: np.ndarray
    rotation_wxyz: np.ndarray
    num_lidar_pts: int
    num_radar_pts: int = 0
    visibility: str = "4"


@dataclass
class NuScenesSceneData:
    """A scene: chronological sweeps (keyframes among them) and the boxes of each keyframe.

    ``name`` must come from the official split lists (``pointformer.data.nuscenes_splits``) for
    the devkit's evaluation to find it. ``keyframe_boxes`` maps a sweep index to its boxes.
    """

    name: str
    description: str
    location: str
    ego_from_lidar: np.ndarray
    sweeps: list[NuScenesSweep]
    keyframe_boxes: dict[int, list[NuScenesBox]] = field(default_factory=dict)
    vehicle: str = "synthetic-car"
    date_captured: str = "2026-01-01"
