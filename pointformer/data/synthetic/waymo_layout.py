"""What the Waymo v2 writer takes: range images, calibrations, poses and boxes of a segment.

Frames follow Waymo: the vehicle frame is x forward, y left, z up (ours); ``extrinsic`` is
``vehicle_from_sensor``; ``world_from_vehicle`` the frame pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class WaymoLidarCalibration:
    """One laser. ``beam_inclinations`` (H,) radians ascending, as Waymo stores them (row 0 of a
    range image is the highest beam); None means uniform between min and max."""

    laser_name: int
    extrinsic: np.ndarray
    inclination_min: float
    inclination_max: float
    beam_inclinations: np.ndarray | None = None


@dataclass
class WaymoBoxes:
    """M boxes in the vehicle frame: ``boxes`` (M, 7) x, y, z (centre), length, width, height,
    heading; ``types`` (M,) Waymo label types; ``speed`` (M, 2) m/s in the vehicle frame."""

    boxes: np.ndarray
    types: np.ndarray
    ids: list[str]
    num_lidar_points: np.ndarray
    speed: np.ndarray


@dataclass
class WaymoFrame:
    """One frame. ``range_images`` maps laser name -> float32 (H, W, 4): range (m, <= 0 = no
    return), intensity, elongation, is-in-no-label-zone. ``top_pose`` float32 (H, W, 6) per-pixel
    world-from-vehicle (roll, pitch, yaw, x, y, z) of the TOP laser, or None."""

    timestamp_us: int
    world_from_vehicle: np.ndarray
    range_images: dict[int, np.ndarray]
    boxes: WaymoBoxes
    top_pose: np.ndarray | None = None
