"""Simulated nuScenes scenes and Waymo segments: one scene sampler, one ray caster, one labeller,
and a thin conversion to each dataset's writer containers.

Labelling rule (both datasets): an agent is annotated at a keyframe when its box centre lies
within ``annotation_radius`` metres (horizontally) of the LiDAR and the keyframe has at least one
of its points inside the box -- or, for nuScenes, when it is hidden at this keyframe but seen at
the keyframes just before and after (annotators keep a track through a short occlusion, so a few
boxes carry 0 points, as in nuScenes; the detection evaluation drops those).
``num_lidar_pts`` counts every point of the keyframe cloud inside the box (nuScenes' definition:
ground and other returns included), computed on the points exactly as they are written.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

import numba as nb
import numpy as np

from pointformer.structures.rotation import pose_matrix, yaw_to_quaternion

from .agents import ego_body_shapes
from .lidar import (
    LidarModel,
    Sweep,
    count_unoccluded,
    nuscenes_hdl32e,
    scan,
    waymo_top64,
)
from .nuscenes_layout import NuScenesBox, NuScenesSceneData, NuScenesSweep
from .scene import NUSCENES_LOCATIONS, Scene, sample_scene
from .shapes import Shapes, place_shapes
from .waymo_layout import WaymoBoxes, WaymoFrame, WaymoLidarCalibration

# nuScenes LIDAR_TOP calibration of a real car: x right, y forward, z up, ~1.84 m above the ground.
NUSCENES_EGO_FROM_LIDAR = pose_matrix([0.943713, 0.0, 1.84023], [0.7077955, -0.0064922, 0.0106462, -0.7063073])
# A Waymo-like TOP laser on the roof: nearly level, turned 0.85 deg, 2.12 m up.
WAYMO_VEHICLE_FROM_TOP = pose_matrix([1.43, 0.0, 2.12], [0.99997, 0.0012, -0.0018, -0.0074])
WAYMO_TOP_LASER = 1
WAYMO_LOCATIONS: tuple[tuple[str, bool, float], ...] = (("location_sf", False, 0.5), ("location_phx", False, 0.3),
                                                         ("location_other", False, 0.2))
WAYMO_TYPE = {"car": 1, "truck": 1, "bus": 1, "trailer": 1, "construction_vehicle": 1, "pedestrian": 2,
              "bicycle": 4, "motorcycle": 4}
NUSCENES_BASE_TIMESTAMP_US = 1_533_000_000_000_000
WAYMO_BASE_TIMESTAMP_US = 1_550_000_000_000_000


# --------------------------------------------------------------------------- the core
def _generators(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent streams for the scene, the sensor and the bookkeeping (timestamps, frames)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3))


def _random_world_from_map(rng: np.random.Generator) -> np.ndarray:
    """Where the scene's map frame sits in a dataset's global frame: a turn and a city-scale offset."""
    yaw = rng.uniform(-np.pi, np.pi)
    return pose_matrix([rng.uniform(300.0, 2000.0), rng.uniform(300.0, 2000.0), 0.0], yaw_to_quaternion(yaw))


def ego_body_in_map(map_from_ego: np.ndarray) -> Shapes:
    """The ego body placed at the ego's position and heading (its small roll and pitch ignored)."""
    body = ego_body_shapes()
    owner = body.select(slice(None))
    owner.agent = np.zeros(len(body), np.int32)
    yaw = np.arctan2(map_from_ego[1, 0], map_from_ego[0, 0])
    placed = place_shapes(owner, map_from_ego[None, :3, 3], np.array([yaw]), np.zeros(1))
    placed.agent = np.full(len(body), -1, np.int32)
    return placed


@nb.njit(parallel=True, cache=True)
def _count_in_boxes_kernel(points, boxes, out):
    for b in nb.prange(boxes.shape[0]):
        cx, cy, cz, hl, hw, hh = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3] / 2, boxes[b, 4] / 2, boxes[b, 5] / 2
        cos, sin = np.cos(boxes[b, 6]), np.sin(boxes[b, 6])
        reach = hl + hw
        count = 0
        for i in range(points.shape[0]):
            ox, oy, oz = points[i, 0] - cx, points[i, 1] - cy, points[i, 2] - cz
            if abs(ox) > reach or abs(oy) > reach:
                continue
            if abs(ox * cos + oy * sin) <= hl and abs(-ox * sin + oy * cos) <= hw and abs(oz) <= hh:
                count += 1
        out[b] = count


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) int64 number of ``points`` (P, 3+) inside each of ``boxes`` (N, 7+) (x, y, z, l, w, h, yaw),
    surface included -- the same test as ``Boxes3D.points_in_boxes``, in float64."""
    points, boxes = np.asarray(points), np.asarray(boxes, np.float64)
    if points.ndim != 2 or points.shape[1] < 3 or boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f"count_points_in_boxes expects points (P, 3+) and boxes (N, 7+), got {points.shape}, {boxes.shape}")
    points = np.ascontiguousarray(points[:, :3], np.float64)
    boxes = np.ascontiguousarray(boxes[:, :7])
    out = np.zeros(len(boxes), np.int64)
    if len(boxes) and len(points):
        _count_in_boxes_kernel(points, boxes, out)
    return out


def boxes_to_frame(boxes: np.ndarray, frame_from_map: np.ndarray) -> np.ndarray:
    """(N, 9) map-frame boxes -> the frame of ``frame_from_map`` (4x4): centres transformed, yaw the
    heading of the turned box axis projected on the xy plane, velocity turned (xy kept)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 9)
    rotation, translation = frame_from_map[:3, :3], frame_from_map[:3, 3]
    out = boxes.copy()
    out[:, :3] = boxes[:, :3] @ rotation.T + translation
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(len(boxes))], axis=1) @ rotation.T
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    velocity = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1) @ rotation.T
    out[:, 7:9] = velocity[:, :2]
    return out


@dataclass
class KeyframeCandidates:
    """Agents near the sensor at one keyframe: ``agents`` (M,) indices into ``Scene.agents``,
    ``boxes`` (M, 9) in the map frame, ``visible_fraction`` (M,) share of the rays that would meet
    the agent's shapes unoccluded which do return from it (NaN when not computed)."""

    agents: np.ndarray
    boxes: np.ndarray
    visible_fraction: np.ndarray


def keyframe_candidates(scene: Scene, sweep: Sweep, radius: float, max_range: float | None = None) -> KeyframeCandidates:
    """Agents whose box centre is within ``radius`` m (horizontally) of the sensor at the sweep;
    their visible fraction when the sensor's ``max_range`` is given."""
    boxes = scene.agent_boxes(sweep.time_s)
    origin = sweep.map_from_sensor[:3, 3]
    near = np.flatnonzero(np.hypot(boxes[:, 0] - origin[0], boxes[:, 1] - origin[1]) <= radius)
    visible = np.full(len(near), np.nan)
    if max_range is not None and len(near):
        directions = sweep.image.directions.reshape(-1, 3) @ sweep.map_from_sensor[:3, :3].T
        free = count_unoccluded(origin, directions, sweep.shapes, near, max_range)
        hit_agents = sweep.shapes.agent[sweep.geometric_hit[sweep.geometric_hit >= 0]]
        seen = np.bincount(hit_agents[hit_agents >= 0], minlength=len(scene.agents))[near]
        visible = np.where(free > 0, np.minimum(seen / np.maximum(free, 1), 1.0), 0.0)
    return KeyframeCandidates(near, boxes[near], visible)


def keep_annotations(counts: np.ndarray, in_range: np.ndarray, bridge_occlusions: bool) -> np.ndarray:
    """(K, A) bool: which agents to annotate at each of K keyframes, from their point ``counts``
    (K, A) and ``in_range`` (K, A). With ``bridge_occlusions`` an agent hidden at one keyframe but
    seen at both neighbours keeps its box."""
    seen = (counts > 0) & in_range
    keep = seen.copy()
    if bridge_occlusions and len(seen) >= 3:
        keep[1:-1] |= in_range[1:-1] & seen[:-2] & seen[2:]
    return keep


def _token(*parts) -> str:
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def _nuscenes_visibility(fraction: float) -> str:
    """nuScenes visibility token: '1' 0-40 %, '2' 40-60 %, '3' 60-80 %, '4' 80-100 %."""
    return "1" if fraction <= 0.4 else "2" if fraction <= 0.6 else "3" if fraction <= 0.8 else "4"


# ------------------------------------------------------------------------- nuScenes
def _nuscenes_points(sweep: Sweep) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5) float32 x, y, z, intensity, ring in firing order (column by column, ring 0 up),
    and (N,) uint8 lidarseg ids of the same points."""
    image = sweep.image
    valid = image.valid.T
    xyz = image.points().transpose(1, 0, 2)[valid]
    ring = np.broadcast_to(np.arange(image.range.shape[0], dtype=np.float32)[None, :], valid.shape)[valid]
    points = np.concatenate([xyz.astype(np.float32), image.intensity.T[valid][:, None],
                             ring[:, None].astype(np.float32)], axis=1)
    return np.ascontiguousarray(points, np.float32), image.lidarseg.T[valid].copy()


def simulate_nuscenes_scene(seed: int, name: str, num_keyframes: int = 40, sweeps_per_keyframe: int = 10,
                            lidar: LidarModel | None = None, ego_from_lidar: np.ndarray | None = None,
                            annotation_radius: float = 70.0, with_ego_body: bool = True) -> NuScenesSceneData:
    """One nuScenes-like scene: ``num_keyframes * sweeps_per_keyframe`` LIDAR_TOP sweeps at 20 Hz,
    every ``sweeps_per_keyframe``-th a keyframe (the first keyframe preceded by its own
    ``sweeps_per_keyframe - 1`` sweeps), keyframe boxes in the global frame and lidarseg.

    Points are in the LIDAR_TOP frame (x right, y forward, z up), cast from exactly
    ``ego_from_lidar`` (default: a real nuScenes calibration) on the ego poses ``global_from_ego``.
    """
    if num_keyframes < 1 or sweeps_per_keyframe < 1:
        raise ValueError(f"need num_keyframes >= 1 and sweeps_per_keyframe >= 1, got {num_keyframes}, {sweeps_per_keyframe}")
    lidar = lidar or nuscenes_hdl32e()
    ego_from_lidar = NUSCENES_EGO_FROM_LIDAR if ego_from_lidar is None else np.asarray(ego_from_lidar, np.float64)
    if ego_from_lidar.shape != (4, 4) or not np.isfinite(ego_from_lidar).all():
        raise ValueError(f"ego_from_lidar must be a finite 4x4 pose, got shape {ego_from_lidar.shape}")
    scene_rng, sensor_rng, misc_rng = _generators(seed)
    num_sweeps = num_keyframes * sweeps_per_keyframe
    period = 1.0 / lidar.sweep_hz
    times = np.arange(num_sweeps) * period + np.clip(misc_rng.normal(0.0, 3e-4, num_sweeps), -1e-3, 1e-3) + 0.002
    scene = sample_scene(scene_rng, float(times[-1] + 0.05), NUSCENES_LOCATIONS)
    global_from_map = _random_world_from_map(misc_rng)
    start_us = NUSCENES_BASE_TIMESTAMP_US + int(misc_rng.integers(0, 10**13))
    sweeps: list[NuScenesSweep] = []
    key_indices, key_counts, key_candidates = [], [], []
    for k, t in enumerate(times):
        map_from_ego = scene.ego.pose(t)
        body = ego_body_in_map(map_from_ego) if with_ego_body else None
        sweep = scan(scene, lidar, map_from_ego @ ego_from_lidar, t, sensor_rng, extra_shapes=body)
        points, lidarseg = _nuscenes_points(sweep)
        is_key = k % sweeps_per_keyframe == sweeps_per_keyframe - 1
        global_from_ego = global_from_map @ map_from_ego
        sweeps.append(NuScenesSweep(start_us + round(t * 1e6), points, global_from_ego, is_key,
                                    lidarseg if is_key else None))
        if is_key:
            candidates = keyframe_candidates(scene, sweep, annotation_radius, lidar.max_range)
            boxes_global = boxes_to_frame(candidates.boxes, global_from_map)
            points_global = points[:, :3].astype(np.float64) @ (global_from_ego @ ego_from_lidar)[:3, :3].T
            points_global += (global_from_ego @ ego_from_lidar)[:3, 3]
            key_indices.append(k)
            key_counts.append(count_points_in_boxes(points_global, boxes_global))
            key_candidates.append((candidates, boxes_global))
    keyframe_boxes = _nuscenes_boxes(scene, name, key_indices, key_counts, key_candidates)
    date = datetime.datetime.fromtimestamp(start_us / 1e6, tz=datetime.timezone.utc).strftime("%Y-%m-%d")
    return NuScenesSceneData(name=name, description=scene.description, location=scene.location,
                             ego_from_lidar=ego_from_lidar.copy(), sweeps=sweeps, keyframe_boxes=keyframe_boxes,
                             date_captured=date)


def _nuscenes_boxes(scene: Scene, name: str, key_indices, key_counts, key_candidates) -> dict[int, list[NuScenesBox]]:
    num_agents = len(scene.agents)
    counts = np.zeros((len(key_indices), num_agents), np.int64)
    in_range = np.zeros((len(key_indices), num_agents), bool)
    for i, (candidates, _) in enumerate(key_candidates):
        counts[i, candidates.agents] = key_counts[i]
        in_range[i, candidates.agents] = True
    keep = keep_annotations(counts, in_range, bridge_occlusions=True)
    result: dict[int, list[NuScenesBox]] = {}
    for i, sweep_index in enumerate(key_indices):
        candidates, boxes_global = key_candidates[i]
        boxes = []
        for row, a in enumerate(candidates.agents):
            if not keep[i, a]:
                continue
            agent = scene.agents[a]
            box = boxes_global[row]
            boxes.append(NuScenesBox(
                instance_id=_token(name, "instance", agent.instance_id), category=agent.category,
                attribute=agent.attribute, translation=box[:3].copy(), size_wlh=box[[4, 3, 5]].copy(),
                rotation_wxyz=yaw_to_quaternion(box[6]), num_lidar_pts=int(counts[i, a]),
                visibility=_nuscenes_visibility(float(candidates.visible_fraction[row])),
            ))
        result[sweep_index] = boxes
    return result


# ---------------------------------------------------------------------------- Waymo
def _rpy_xyz(pose: np.ndarray) -> np.ndarray:
    """(6,) roll, pitch, yaw, x, y, z of a 4x4 pose with R = Rz(yaw) Ry(pitch) Rx(roll)."""
    r = pose[:3, :3]
    return np.array([np.arctan2(r[2, 1], r[2, 2]), -np.arcsin(np.clip(r[2, 0], -1, 1)), np.arctan2(r[1, 0], r[0, 0]),
                     *pose[:3, 3]])


def waymo_points_from_range_image(range_image: np.ndarray, calibration: WaymoLidarCalibration) -> np.ndarray:
    """(H, W, 3) vehicle-frame points of a range image (channel 0 = range) the way Waymo's tools
    compute them: row r at inclination ``beam_inclinations[::-1][r]``, column c at Waymo's azimuth."""
    height, width = range_image.shape[:2]
    extrinsic = np.asarray(calibration.extrinsic, np.float64)
    inclination = (np.asarray(calibration.beam_inclinations, np.float64)[::-1] if calibration.beam_inclinations is not None
                   else np.linspace(calibration.inclination_max, calibration.inclination_min, height))
    az_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    azimuth = (2.0 * (width - np.arange(width) - 0.5) / width - 1.0) * np.pi - az_correction
    r = range_image[..., 0].astype(np.float64)
    cos_inc = np.cos(inclination)[:, None]
    sensor = np.stack([np.cos(azimuth)[None, :] * cos_inc * r, np.sin(azimuth)[None, :] * cos_inc * r,
                       np.sin(inclination)[:, None] * r], axis=-1)
    return sensor @ extrinsic[:3, :3].T + extrinsic[:3, 3]


def simulate_waymo_segment(seed: int, context_name: str, num_frames: int, lidar_width: int = 2650,
                           label_radius: float = 75.0) -> tuple[list[WaymoLidarCalibration], list[WaymoFrame]]:
    """One Waymo-like segment: ``num_frames`` frames at 10 Hz of the 64-beam TOP laser as range
    images (H, W, 4) float32 (range, intensity, elongation, no-label-zone), a per-pixel pose, and
    vehicle-frame boxes of vehicles, pedestrians and cyclists.

    Intensity is the diffuse albedo scale (0-1, retro-reflectors above 1); pixels without a return
    hold range -1. The TOP per-pixel pose equals the frame pose (no rolling shutter simulated) and
    is a read-only broadcast view (no memory per pixel). A frame holds ~2.7 MB of range image.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    extrinsic = WAYMO_VEHICLE_FROM_TOP
    lidar = waymo_top64(extrinsic, lidar_width)
    calibration = WaymoLidarCalibration(
        laser_name=WAYMO_TOP_LASER, extrinsic=extrinsic.copy(), inclination_min=float(lidar.inclinations.min()),
        inclination_max=float(lidar.inclinations.max()), beam_inclinations=lidar.inclinations[::-1].copy(),
    )
    scene_rng, sensor_rng, misc_rng = _generators(seed)
    period = 1.0 / lidar.sweep_hz
    times = np.arange(num_frames) * period + 0.002
    scene = sample_scene(scene_rng, float(times[-1] + 0.05), WAYMO_LOCATIONS)
    world_from_map = _random_world_from_map(misc_rng)
    start_us = WAYMO_BASE_TIMESTAMP_US + int(misc_rng.integers(0, 10**13))
    frames = []
    for t in times:
        map_from_vehicle = scene.ego.pose(t)
        sweep = scan(scene, lidar, map_from_vehicle @ extrinsic, t, sensor_rng)
        image = sweep.image
        returned = image.valid
        range_image = np.stack([
            np.where(returned, image.range, -1.0), image.intensity / 100.0, image.elongation,
            np.full(image.range.shape, -1.0),
        ], axis=-1).astype(np.float32)
        world_from_vehicle = world_from_map @ map_from_vehicle
        points = waymo_points_from_range_image(range_image, calibration)[returned]
        frames.append(WaymoFrame(
            timestamp_us=start_us + round(t * 1e6), world_from_vehicle=world_from_vehicle,
            range_images={WAYMO_TOP_LASER: range_image}, boxes=_waymo_boxes(scene, sweep, map_from_vehicle, points, context_name, label_radius),
            top_pose=np.broadcast_to(_rpy_xyz(world_from_vehicle).astype(np.float32), (*image.range.shape, 6)),
        ))
    return [calibration], frames


def _waymo_boxes(scene: Scene, sweep: Sweep, map_from_vehicle: np.ndarray, points_vehicle: np.ndarray,
                 context_name: str, radius: float) -> WaymoBoxes:
    """Boxes of the labelled Waymo types with at least one point, in the vehicle frame."""
    candidates = keyframe_candidates(scene, sweep, radius)
    types = np.array([WAYMO_TYPE.get(scene.agents[a].detection_class, 0) for a in candidates.agents], np.int64)
    riderless = np.array([scene.agents[a].attribute == "cycle.without_rider" for a in candidates.agents], bool)
    labelled = (types > 0) & ~riderless
    vehicle_from_map = np.linalg.inv(map_from_vehicle)
    boxes = boxes_to_frame(candidates.boxes[labelled], vehicle_from_map)
    counts = count_points_in_boxes(points_vehicle, boxes)
    seen = counts > 0
    agents = candidates.agents[labelled][seen]
    return WaymoBoxes(
        boxes=boxes[seen, :7].copy(), types=types[labelled][seen],
        ids=[_token(context_name, "object", scene.agents[a].instance_id)[:22] for a in agents],
        num_lidar_points=counts[seen], speed=boxes[seen, 7:9].copy(),
    )
