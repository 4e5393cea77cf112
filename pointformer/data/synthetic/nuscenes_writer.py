"""Write scenes as a nuScenes dataset: JSON tables, LIDAR_TOP point files, lidarseg labels.

The layout is the real one, for the LIDAR_TOP channel only::

    <root>/<version>/{attribute,calibrated_sensor,category,ego_pose,instance,log,map,sample,
                      sample_annotation,sample_data,scene,sensor,visibility}.json  (+ lidarseg.json)
    <root>/samples/LIDAR_TOP/<log>__LIDAR_TOP__<timestamp>.pcd.bin    keyframes
    <root>/sweeps/LIDAR_TOP/<log>__LIDAR_TOP__<timestamp>.pcd.bin     the sweeps between them
    <root>/lidarseg/<version>/<sample_data token>_lidarseg.bin        uint8 per keyframe point
    <root>/maps/<map token>.png                                       an all-background mask

The official devkit's ``NuScenes`` loads it and its ``DetectionEval`` evaluates against it.
Point files and label files are written first (each through a temporary file), the tables last
into a staging folder renamed into place, so a crashed run leaves no table folder that looks
complete. Replacing a dataset (``overwrite=True``) leaves point files that the new tables do not
name where they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pointformer.data.classes import NUSCENES_ATTRIBUTES, NUSCENES_LIDARSEG_CATEGORIES
from pointformer.data.synthetic.nuscenes_layout import NuScenesBox, NuScenesSceneData, NuScenesSweep
from pointformer.structures.rotation import matrix_to_quaternion

LIDAR_CHANNEL = "LIDAR_TOP"
POINT_COLUMNS = 5  # x, y, z, intensity, ring

TABLE_NAMES: tuple[str, ...] = (
    "attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
    "sample_annotation", "sample_data", "scene", "sensor", "visibility",
)

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "noise": "Any lidar return that does not correspond to a physical object, such as dust, vapor, "
             "noise, fog, raindrops, smoke and reflections.",
    "animal": "All animals, e.g. cats, rats, dogs, deer, birds.",
    "human.pedestrian.adult": "Adult subcategory.",
    "human.pedestrian.child": "Child subcategory.",
    "human.pedestrian.construction_worker": "Construction worker.",
    "human.pedestrian.personal_mobility": "A small electric or self-propelled vehicle, e.g. skateboard, "
                                          "segway, or scooters, on which the person typically travels.",
    "human.pedestrian.police_officer": "Police officer.",
    "human.pedestrian.stroller": "Strollers. If a person is in the stroller, include in the annotation.",
    "human.pedestrian.wheelchair": "Wheelchairs. If a person is in the wheelchair, include in the annotation.",
    "movable_object.barrier": "Temporary road barrier placed in the scene in order to redirect traffic.",
    "movable_object.debris": "Movable object that is left on the driveable surface.",
    "movable_object.pushable_pullable": "Objects that a pedestrian may push or pull, e.g. dolleys, "
                                        "wheel barrows, garbage-bins, or shopping carts.",
    "movable_object.trafficcone": "All types of traffic cone.",
    "static_object.bicycle_rack": "Area or device intended to park or secure the bicycles in a row.",
    "vehicle.bicycle": "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds "
                       "either on road surface, sidewalks or bike paths.",
    "vehicle.bus.bendy": "Bendy bus subcategory.",
    "vehicle.bus.rigid": "Rigid bus subcategory.",
    "vehicle.car": "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, wagons, vans, "
                   "mini-vans, SUVs and jeeps.",
    "vehicle.construction": "Vehicles primarily designed for construction. Typically very slow moving or "
                            "stationary.",
    "vehicle.emergency.ambulance": "All types of ambulances.",
    "vehicle.emergency.police": "All types of police vehicles.",
    "vehicle.motorcycle": "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly on the "
                          "road surface.",
    "vehicle.trailer": "Any vehicle trailer, both for trucks, cars and bikes.",
    "vehicle.truck": "Vehicles primarily designed to haul cargo including pick-ups, lorrys, trucks and "
                     "semi-tractors.",
    "flat.driveable_surface": "All paved or unpaved surfaces that a car can drive on with no concern of "
                              "traffic rules.",
    "flat.other": "All other forms of horizontal ground-level structures that do not belong to any of "
                  "driveable_surface, curb, sidewalk and terrain.",
    "flat.sidewalk": "Sidewalk, pedestrian walkways, bike paths, etc.",
    "flat.terrain": "Natural horizontal surfaces such as ground level horizontal vegetation (< 20 cm "
                    "tall), grass, rolling hills, soil, sand and gravel.",
    "static.manmade": "Includes man-made structures but not limited to: buildings, walls, guard rails, "
                      "fences, poles, drainages, hydrants, flags, banners, street signs.",
    "static.other": "Points in the background that are not distinguishable, or objects that do not match "
                    "any of the above labels.",
    "static.vegetation": "Any vegetation in the frame that is higher than the ground, including "
                         "bushes, plants, potted plants, trees, etc.",
    "vehicle.ego": "The vehicle on which the cameras, radar and lidar are mounted, that is sometimes "
                   "visible at the bottom of the image.",
}

ATTRIBUTE_DESCRIPTIONS: dict[str, str] = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent "
                       "to move.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no immediate intent to move.",
    "cycle.with_rider": "There is a rider on the bicycle or motorcycle.",
    "cycle.without_rider": "There is NO rider on the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.moving": "The human is moving.",
}

# nuScenes visibility tokens are the strings "1".."4".
VISIBILITY_LEVELS: dict[str, tuple[str, str]] = {
    "1": ("v0-40", "visibility of whole object is between 0 and 40%"),
    "2": ("v40-60", "visibility of whole object is between 40 and 60%"),
    "3": ("v60-80", "visibility of whole object is between 60 and 80%"),
    "4": ("v80-100", "visibility of whole object is between 80 and 100%"),
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+\-]+$")


@dataclass
class NuScenesWriteSummary:
    """What ``write_nuscenes`` wrote: tokens per scene name, keyframes and sweeps in time order."""

    root: Path
    version: str
    scene_tokens: dict[str, str] = field(default_factory=dict)
    sample_tokens: dict[str, list[str]] = field(default_factory=dict)
    lidar_tokens: dict[str, list[str]] = field(default_factory=dict)


def make_token(seed: int, *parts: Any) -> str:
    """32 lowercase hex characters, a deterministic function of the seed and the parts."""
    text = "|".join([str(seed), *(str(p) for p in parts)])
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def write_nuscenes(
    root: str | os.PathLike,
    scenes: Iterable[NuScenesSceneData],
    version: str = "v1.0-trainval",
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> NuScenesWriteSummary:
    """Write ``scenes`` as the nuScenes dataset ``<root>/<version>``.

    Every token is a function of ``seed`` and scene content names, so the same input gives the
    same bytes. An existing ``<root>/<version>`` is an error unless ``overwrite`` (then it is
    replaced, with its lidarseg folder). Raises ``ValueError`` naming the scene, sweep or box
    for invalid input: for a list, before anything is written; for an iterator (scenes made
    one at a time, so that only one is ever in memory), before that scene's files are written.
    The tables appear only once every scene is written.
    """
    root = Path(root)
    if not _SAFE_NAME.match(version):
        raise ValueError(f"nuScenes version {version!r} must be a plain folder name")
    if isinstance(scenes, Sequence):
        if not scenes:
            raise ValueError("write_nuscenes: no scenes given")
        names = [scene.name for scene in scenes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"write_nuscenes: duplicate scene names {duplicates}")
        for scene in scenes:
            validate_scene(scene)
    if (root / version).exists() and not overwrite:
        raise FileExistsError(f"{root / version} already exists (pass overwrite=True to replace it)")

    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{version}.staging-{os.getpid()}"
    lidarseg_staging = root / "lidarseg" / f".{version}.staging-{os.getpid()}"
    try:
        summary = _write_staged(root, scenes, version, seed, staging, lidarseg_staging,
                                validate_each=not isinstance(scenes, Sequence))
    finally:
        _remove_tree(staging)
        _remove_tree(lidarseg_staging)
    return summary


def _write_staged(root: Path, scenes: Iterable[NuScenesSceneData], version: str, seed: int,
                  staging: Path, lidarseg_staging: Path, validate_each: bool) -> NuScenesWriteSummary:
    """Point and label files, then the tables into ``staging``, then both folders into place
    (the table folder last: its presence marks a complete dataset)."""
    _remove_tree(staging)
    _remove_tree(lidarseg_staging)
    tables = _static_tables(seed)
    summary = NuScenesWriteSummary(root=root, version=version)
    for scene in scenes:
        if validate_each:
            if scene.name in summary.scene_tokens:
                raise ValueError(f"write_nuscenes: duplicate scene names ['{scene.name}']")
            validate_scene(scene)
        _add_scene(tables, summary, scene, seed, root, version, lidarseg_staging)
        del scene  # let a streamed scene go before the next one is made
    if not summary.scene_tokens:
        raise ValueError("write_nuscenes: no scenes given")
    _add_maps(tables, seed, root)

    staging.mkdir(parents=True)
    for name, records in tables.items():
        if name == "lidarseg" and not records:
            continue
        _write_bytes_atomic(staging / f"{name}.json", json.dumps(records, allow_nan=False).encode("utf-8"))
    if tables["lidarseg"]:
        _publish_dir(lidarseg_staging, root / "lidarseg" / version)
    else:
        _remove_tree(root / "lidarseg" / version)
    _publish_dir(staging, root / version)
    return summary


# ------------------------------------------------------------------ validation
def validate_scene(scene: NuScenesSceneData) -> None:
    """Raise ``ValueError`` naming the scene, sweep or box for anything the format cannot hold."""
    where = f"scene {scene.name!r}"
    if not scene.name or not scene.sweeps:
        raise ValueError(f"{where}: a scene needs a name and at least one sweep")
    _check_rigid(scene.ego_from_lidar, f"{where} ego_from_lidar")
    if not _SAFE_NAME.match(_log_name(scene)):
        raise ValueError(f"{where}: vehicle {scene.vehicle!r} / date {scene.date_captured!r} / name must be "
                         "plain file-name characters (they form the point file names)")
    keyframes = [i for i, s in enumerate(scene.sweeps) if s.is_key_frame]
    if not keyframes:
        raise ValueError(f"{where}: no keyframe among its {len(scene.sweeps)} sweeps")
    previous = None
    for index, sweep in enumerate(scene.sweeps):
        _check_sweep(sweep, f"{where} sweep {index}")
        if previous is not None and sweep.timestamp_us <= previous:
            raise ValueError(f"{where} sweep {index}: timestamp {sweep.timestamp_us} is not after {previous}")
        previous = sweep.timestamp_us
    for index, boxes in scene.keyframe_boxes.items():
        if not (0 <= index < len(scene.sweeps)) or not scene.sweeps[index].is_key_frame:
            raise ValueError(f"{where}: keyframe_boxes key {index} is not the index of a keyframe sweep")
        seen = set()
        for box in boxes:
            if box.instance_id in seen:
                raise ValueError(f"{where} sweep {index}: instance {box.instance_id!r} annotated twice")
            seen.add(box.instance_id)
            _check_box(box, f"{where} sweep {index} box {box.instance_id!r}")
    categories: dict[str, str] = {}
    for boxes in scene.keyframe_boxes.values():
        for box in boxes:
            known = categories.setdefault(box.instance_id, box.category)
            if known != box.category:
                raise ValueError(f"{where}: instance {box.instance_id!r} is both {known!r} and {box.category!r}")


def _check_sweep(sweep: NuScenesSweep, where: str) -> None:
    points = np.asarray(sweep.points)
    if points.ndim != 2 or points.shape[1] != POINT_COLUMNS:
        raise ValueError(f"{where}: points of shape {points.shape}, expected (N, 5) x, y, z, intensity, ring")
    with np.errstate(over="ignore"):
        stored = points.astype(np.float32)
    if not np.isfinite(stored).all():
        raise ValueError(f"{where}: points contain NaN or inf (or values beyond float32, as which they are stored)")
    if int(sweep.timestamp_us) != sweep.timestamp_us or sweep.timestamp_us < 0:
        raise ValueError(f"{where}: timestamp_us {sweep.timestamp_us!r} must be a non-negative integer")
    _check_rigid(sweep.global_from_ego, f"{where} global_from_ego")
    if sweep.lidarseg is not None:
        if not sweep.is_key_frame:
            raise ValueError(f"{where}: lidarseg labels on a sweep that is not a keyframe")
        labels = np.asarray(sweep.lidarseg)
        if labels.shape != (points.shape[0],):
            raise ValueError(f"{where}: lidarseg of shape {labels.shape} for {points.shape[0]} points")
        if labels.size and (labels.min() < 0 or labels.max() >= len(NUSCENES_LIDARSEG_CATEGORIES)):
            raise ValueError(f"{where}: lidarseg ids must lie in [0, {len(NUSCENES_LIDARSEG_CATEGORIES)})")


def _check_box(box: NuScenesBox, where: str) -> None:
    if box.category not in NUSCENES_LIDARSEG_CATEGORIES:
        raise ValueError(f"{where}: unknown category {box.category!r}; nuScenes categories are "
                         f"{list(NUSCENES_LIDARSEG_CATEGORIES)}")
    if box.attribute and box.attribute not in NUSCENES_ATTRIBUTES:
        raise ValueError(f"{where}: unknown attribute {box.attribute!r}; known: {list(NUSCENES_ATTRIBUTES)}")
    if box.visibility not in VISIBILITY_LEVELS:
        raise ValueError(f"{where}: visibility {box.visibility!r} must be one of {list(VISIBILITY_LEVELS)}")
    for name, expected in (("translation", 3), ("size_wlh", 3), ("rotation_wxyz", 4)):
        value = np.asarray(getattr(box, name), dtype=np.float64)
        if value.shape != (expected,) or not np.isfinite(value).all():
            raise ValueError(f"{where}: {name} must be {expected} finite numbers, got {value.tolist()}")
    if (np.asarray(box.size_wlh) <= 0).any():
        raise ValueError(f"{where}: size_wlh {np.asarray(box.size_wlh).tolist()} must be positive")
    if np.linalg.norm(np.asarray(box.rotation_wxyz, dtype=np.float64)) < 1e-9:
        raise ValueError(f"{where}: rotation_wxyz is the zero quaternion")
    if box.num_lidar_pts < 0 or box.num_radar_pts < 0:
        raise ValueError(f"{where}: num_lidar_pts / num_radar_pts must be >= 0")


def _check_rigid(pose: np.ndarray, where: str) -> None:
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"{where}: expected a finite 4x4 pose, got shape {pose.shape}")
    rotation = pose[:3, :3]
    if (not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6) or np.linalg.det(rotation) <= 0
            or not np.allclose(pose[3], [0, 0, 0, 1])):
        raise ValueError(f"{where}: not a rigid pose (rotation must be orthonormal with det +1)")


# ---------------------------------------------------------------------- tables
def _static_tables(seed: int) -> dict[str, list[dict]]:
    """Tables that do not depend on the scenes, and empty lists for the others."""
    tables: dict[str, list[dict]] = {name: [] for name in TABLE_NAMES}
    tables["lidarseg"] = []
    tables["category"] = [
        {"token": make_token(seed, "category", name), "name": name,
         "description": CATEGORY_DESCRIPTIONS[name], "index": index}
        for index, name in enumerate(NUSCENES_LIDARSEG_CATEGORIES)
    ]
    tables["attribute"] = [
        {"token": make_token(seed, "attribute", name), "name": name, "description": ATTRIBUTE_DESCRIPTIONS[name]}
        for name in NUSCENES_ATTRIBUTES
    ]
    tables["visibility"] = [
        {"token": token, "level": level, "description": text} for token, (level, text) in VISIBILITY_LEVELS.items()
    ]
    tables["sensor"] = [{"token": make_token(seed, "sensor", LIDAR_CHANNEL), "channel": LIDAR_CHANNEL,
                         "modality": "lidar"}]
    return tables


def _log_name(scene: NuScenesSceneData) -> str:
    return f"{scene.vehicle}-{scene.date_captured}-{scene.name}"


def _owner_keyframes(sweeps: Sequence[NuScenesSweep]) -> list[int]:
    """For each sweep, the keyframe index its sample_data belongs to: the next keyframe at or
    after it, or the last keyframe for the sweeps after it."""
    owners, upcoming = [0] * len(sweeps), None
    for index in range(len(sweeps) - 1, -1, -1):
        if sweeps[index].is_key_frame:
            upcoming = index
        owners[index] = upcoming if upcoming is not None else -1
    last = max(i for i, s in enumerate(sweeps) if s.is_key_frame)
    return [last if owner == -1 else owner for owner in owners]


def _add_scene(
    tables: dict[str, list[dict]],
    summary: NuScenesWriteSummary,
    scene: NuScenesSceneData,
    seed: int,
    root: Path,
    version: str,
    lidarseg_staging: Path,
) -> None:
    name, log_name = scene.name, _log_name(scene)
    scene_token = make_token(seed, "scene", name)
    log_token = make_token(seed, "log", name)
    calibration_token = make_token(seed, "calibrated_sensor", name)
    keyframes = [i for i, s in enumerate(scene.sweeps) if s.is_key_frame]
    sample_tokens = {i: make_token(seed, "sample", name, i) for i in keyframes}
    sweep_tokens = [make_token(seed, "sample_data", name, i) for i in range(len(scene.sweeps))]

    tables["log"].append({"token": log_token, "logfile": log_name, "vehicle": scene.vehicle,
                          "date_captured": scene.date_captured, "location": scene.location})
    tables["calibrated_sensor"].append({
        "token": calibration_token, "sensor_token": tables["sensor"][0]["token"],
        **_pose_fields(scene.ego_from_lidar), "camera_intrinsic": [],
    })
    tables["scene"].append({
        "token": scene_token, "log_token": log_token, "nbr_samples": len(keyframes),
        "first_sample_token": sample_tokens[keyframes[0]], "last_sample_token": sample_tokens[keyframes[-1]],
        "name": name, "description": scene.description,
    })
    for position, index in enumerate(keyframes):
        tables["sample"].append({
            "token": sample_tokens[index], "timestamp": int(scene.sweeps[index].timestamp_us),
            "prev": sample_tokens[keyframes[position - 1]] if position > 0 else "",
            "next": sample_tokens[keyframes[position + 1]] if position + 1 < len(keyframes) else "",
            "scene_token": scene_token,
        })

    owners = _owner_keyframes(scene.sweeps)
    for index, sweep in enumerate(scene.sweeps):
        token = sweep_tokens[index]
        folder = "samples" if sweep.is_key_frame else "sweeps"
        filename = f"{folder}/{LIDAR_CHANNEL}/{log_name}__{LIDAR_CHANNEL}__{int(sweep.timestamp_us)}.pcd.bin"
        _write_bytes_atomic(root / filename, np.ascontiguousarray(sweep.points, dtype=np.float32).tobytes())
        # As in nuScenes, the ego pose of a sample_data record shares its token.
        tables["ego_pose"].append({"token": token, "timestamp": int(sweep.timestamp_us),
                                   **_pose_fields(sweep.global_from_ego)})
        tables["sample_data"].append({
            "token": token, "sample_token": sample_tokens[owners[index]], "ego_pose_token": token,
            "calibrated_sensor_token": calibration_token, "timestamp": int(sweep.timestamp_us),
            "fileformat": "pcd", "is_key_frame": bool(sweep.is_key_frame), "height": 0, "width": 0,
            "filename": filename,
            "prev": sweep_tokens[index - 1] if index > 0 else "",
            "next": sweep_tokens[index + 1] if index + 1 < len(scene.sweeps) else "",
        })
        if sweep.lidarseg is not None:
            label_name = f"{token}_lidarseg.bin"
            _write_bytes_atomic(lidarseg_staging / label_name, np.asarray(sweep.lidarseg, dtype=np.uint8).tobytes())
            tables["lidarseg"].append({"token": token, "sample_data_token": token,
                                       "filename": f"lidarseg/{version}/{label_name}"})

    _add_annotations(tables, scene, seed, sample_tokens)
    summary.scene_tokens[name] = scene_token
    summary.sample_tokens[name] = [sample_tokens[i] for i in keyframes]
    summary.lidar_tokens[name] = sweep_tokens


def _add_annotations(tables: dict[str, list[dict]], scene: NuScenesSceneData, seed: int,
                     sample_tokens: dict[int, str]) -> None:
    """instance and sample_annotation records; each instance's annotations chained in time order."""
    category_tokens = {c["name"]: c["token"] for c in tables["category"]}
    attribute_tokens = {a["name"]: a["token"] for a in tables["attribute"]}
    tracks: dict[str, list[tuple[int, NuScenesBox]]] = {}
    for index in sorted(scene.keyframe_boxes):
        for box in scene.keyframe_boxes[index]:
            tracks.setdefault(box.instance_id, []).append((index, box))

    for instance_id, track in tracks.items():
        instance_token = make_token(seed, "instance", scene.name, instance_id)
        tokens = [make_token(seed, "sample_annotation", scene.name, instance_id, index) for index, _ in track]
        tables["instance"].append({
            "token": instance_token, "category_token": category_tokens[track[0][1].category],
            "nbr_annotations": len(track), "first_annotation_token": tokens[0], "last_annotation_token": tokens[-1],
        })
        for position, (index, box) in enumerate(track):
            rotation = np.asarray(box.rotation_wxyz, dtype=np.float64)
            tables["sample_annotation"].append({
                "token": tokens[position], "sample_token": sample_tokens[index], "instance_token": instance_token,
                "visibility_token": box.visibility,
                "attribute_tokens": [attribute_tokens[box.attribute]] if box.attribute else [],
                "translation": [float(v) for v in box.translation],
                "size": [float(v) for v in box.size_wlh],
                "rotation": [float(v) for v in rotation / np.linalg.norm(rotation)],
                "prev": tokens[position - 1] if position > 0 else "",
                "next": tokens[position + 1] if position + 1 < len(track) else "",
                "num_lidar_pts": int(box.num_lidar_pts), "num_radar_pts": int(box.num_radar_pts),
            })


def _add_maps(tables: dict[str, list[dict]], seed: int, root: Path) -> None:
    """One map record per location; the devkit only checks that its file exists at load time."""
    logs_by_location: dict[str, list[str]] = {}
    for log in tables["log"]:
        logs_by_location.setdefault(log["location"], []).append(log["token"])
    for location, log_tokens in logs_by_location.items():
        token = make_token(seed, "map", location)
        filename = f"maps/{token}.png"
        _write_bytes_atomic(root / filename, background_png(1, 1))
        tables["map"].append({"token": token, "log_tokens": log_tokens, "category": "semantic_prior",
                              "filename": filename})


def _pose_fields(pose: np.ndarray) -> dict[str, list[float]]:
    pose = np.asarray(pose, dtype=np.float64)
    return {"translation": [float(v) for v in pose[:3, 3]],
            "rotation": [float(v) for v in matrix_to_quaternion(pose[:3, :3])]}


# ------------------------------------------------------------------- file I/O
def background_png(width: int, height: int) -> bytes:
    """An 8-bit greyscale PNG of the given size, every pixel 0 (map background)."""
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _publish_dir(staging: Path, final: Path) -> None:
    """Move a fully written folder into place, replacing any previous one."""
    if final.exists():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove_tree(retired)
        final.rename(retired)
        staging.rename(final)
        _remove_tree(retired)
    else:
        staging.rename(final)


def _remove_tree(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
