"""Random ``NuScenesSceneData`` for the nuScenes writer/reader tests (no simulator needed)."""

from __future__ import annotations

import numpy as np

from pointformer.data.classes import (
    NUSCENES_CATEGORY_TO_DETECTION, NUSCENES_CLASS_ATTRIBUTES, NUSCENES_DETECTION_CLASSES,
    NUSCENES_LIDARSEG_CATEGORIES,
)
from pointformer.data.synthetic.nuscenes_layout import NuScenesBox, NuScenesSceneData, NuScenesSweep
from pointformer.structures.rotation import matrix_to_quaternion, normalize_yaw, pose_matrix, yaw_matrix

# One raw category per detection class, plus one the benchmark does not score.
DETECTION_CATEGORIES: tuple[str, ...] = tuple(
    next(c for c, d in NUSCENES_CATEGORY_TO_DETECTION.items() if d == name) for name in NUSCENES_DETECTION_CLASSES
)
EXTRA_CATEGORY = "animal"
SWEEP_PERIOD_US = 50_000


def tilt_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(3, 3) Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return yaw_matrix(yaw) @ ry @ rx


def random_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 5) float32 x, y, z, intensity, ring in a sensor frame; a few within the 1 m square."""
    xyz = rng.uniform(-30, 30, (n, 3))
    xyz[:, 2] = rng.uniform(-3, 3, n)
    close = min(n, max(1, n // 20))
    xyz[:close, :2] = rng.uniform(-0.9, 0.9, (close, 2))
    intensity = rng.integers(0, 256, n)
    ring = rng.integers(0, 32, n)
    return np.column_stack([xyz, intensity, ring]).astype(np.float32)


def random_scene(
    rng: np.random.Generator,
    name: str,
    *,
    num_keyframes: int = 3,
    sweeps_per_keyframe: int = 3,
    leading_sweeps: int = 0,
    points_per_sweep: int = 200,
    num_instances: int = 6,
    tilt: float = 0.03,
    box_tilt: float = 0.0,
    lidarseg: bool = True,
    categories: tuple[str, ...] = DETECTION_CATEGORIES + (EXTRA_CATEGORY,),
    max_box_distance: float = 20.0,
    location: str = "singapore-onenorth",
) -> NuScenesSceneData:
    """A scene of ``leading_sweeps`` non-key sweeps then ``num_keyframes`` keyframes, each
    followed by ``sweeps_per_keyframe - 1`` sweeps (20 Hz). The ego drives a straight line with
    random roll/pitch up to ``tilt`` rad; instances move linearly, every instance in every
    keyframe except instance 0, which skips the second keyframe (a gap in its track), and the
    last instance (the unscored ``animal`` when ``num_instances`` = 11), annotated in the
    first keyframe only (no velocity)."""
    start = int(rng.integers(1_500_000_000_000_000, 1_600_000_000_000_000))
    heading = rng.uniform(-np.pi, np.pi)
    origin = rng.uniform(-500, 500, 3) + np.array([1000.0, 1000.0, 0.0])
    speed = rng.uniform(0, 10)
    direction = np.array([np.cos(heading), np.sin(heading), 0.0])
    ego_from_lidar = pose_matrix(
        [rng.uniform(0.5, 1.5), rng.uniform(-0.2, 0.2), rng.uniform(1.5, 2.0)],
        tilt_matrix(*rng.uniform(-tilt, tilt, 2), rng.uniform(-np.pi, np.pi)),
    )

    total = leading_sweeps + num_keyframes * sweeps_per_keyframe
    sweeps, keyframes = [], []
    for index in range(total):
        timestamp = start + index * SWEEP_PERIOD_US + int(rng.integers(-2000, 2000))
        seconds = (timestamp - start) * 1e-6
        global_from_ego = pose_matrix(
            origin + speed * seconds * direction,
            tilt_matrix(*rng.uniform(-tilt, tilt, 2), heading + rng.uniform(-0.02, 0.02)),
        )
        is_key = index >= leading_sweeps and (index - leading_sweeps) % sweeps_per_keyframe == 0
        points = random_points(rng, points_per_sweep)
        labels = rng.integers(0, len(NUSCENES_LIDARSEG_CATEGORIES), len(points)).astype(np.uint8)
        labels = labels if (is_key and lidarseg) else None
        sweeps.append(NuScenesSweep(timestamp, points, global_from_ego, is_key, labels))
        if is_key:
            keyframes.append(index)

    tracks = []
    for instance in range(num_instances):
        category = categories[instance % len(categories)]
        detection = NUSCENES_CATEGORY_TO_DETECTION.get(category)
        choices = NUSCENES_CLASS_ATTRIBUTES.get(detection, ()) if detection else ()
        tracks.append({
            "category": category,
            "attribute": str(rng.choice(choices)) if choices else "",
            "offset": rng.uniform(-1, 1, 2) * max_box_distance / np.sqrt(2),
            "velocity": rng.uniform(-5, 5, 2),
            "yaw": rng.uniform(-np.pi, np.pi),
            "size": rng.uniform(0.5, 5, 3),
        })
    boxes: dict[int, list[NuScenesBox]] = {}
    for position, index in enumerate(keyframes):
        ego = sweeps[index].global_from_ego
        seconds = (sweeps[index].timestamp_us - start) * 1e-6
        boxes[index] = []
        for instance, track in enumerate(tracks):
            if instance == 0 and position == 1 and len(keyframes) > 2:
                continue
            if instance == num_instances - 1 and position > 0:
                continue
            center = ego[:3, 3] + np.array([*(track["offset"] + track["velocity"] * seconds), 0.0])
            rotation = tilt_matrix(*rng.uniform(-box_tilt, box_tilt, 2), track["yaw"])
            boxes[index].append(NuScenesBox(
                instance_id=f"obj{instance}",
                category=track["category"],
                attribute=track["attribute"],
                translation=center,
                size_wlh=track["size"],
                rotation_wxyz=matrix_to_quaternion(rotation),
                num_lidar_pts=int(rng.integers(1, 60)),
                num_radar_pts=int(rng.integers(0, 3)),
                visibility=str(rng.integers(1, 5)),
            ))
    return NuScenesSceneData(
        name=name, description=f"random test scene {name}", location=location,
        ego_from_lidar=ego_from_lidar, sweeps=sweeps, keyframe_boxes=boxes,
    )


def devkit_boxes_in_ours(nusc, sample: dict) -> dict[str, np.ndarray]:
    """Each annotation of a sample, moved into the keyframe LIDAR_TOP frame with the devkit's own
    Box methods (as ``get_sample_data`` does) and then into our frame, keyed by instance token."""
    from nuscenes.eval.common.utils import quaternion_yaw
    from pyquaternion import Quaternion

    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    calibration = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    _, sensor_boxes, _ = nusc.get_sample_data(sd["token"])
    out = {}
    for token, sensor_box in zip(sample["anns"], sensor_boxes):
        box = nusc.get_box(token)
        box.velocity = nusc.box_velocity(token)
        box.translate(-np.array(pose["translation"]))
        box.rotate(Quaternion(pose["rotation"]).inverse)
        box.translate(-np.array(calibration["translation"]))
        box.rotate(Quaternion(calibration["rotation"]).inverse)
        np.testing.assert_allclose(box.center, sensor_box.center, atol=1e-9)
        # Our frame written out independently of the reader's constant: x = nus y, y = -nus x.
        center = np.array([box.center[1], -box.center[0], box.center[2]])
        velocity = np.array([box.velocity[1], -box.velocity[0]])
        yaw = normalize_yaw(quaternion_yaw(box.orientation) - np.pi / 2)
        w, l, h = box.wlh
        instance = nusc.get("sample_annotation", token)["instance_token"]
        out[instance] = np.array([*center, l, w, h, yaw, velocity[0], velocity[1]])
    return out


def assert_box_row_matches(row: list, expected: np.ndarray) -> np.ndarray:
    """An info record's box row (None = NaN) equals a devkit box in our frame to 1e-4 m / rad,
    NaN velocities in the same places; returns the row as an array."""
    ours = np.array([np.nan if v is None else v for v in row])
    np.testing.assert_allclose(ours[:6], expected[:6], atol=1e-4)
    assert abs(normalize_yaw(ours[6] - expected[6])) < 1e-4
    np.testing.assert_array_equal(np.isnan(ours[7:]), np.isnan(expected[7:]))
    np.testing.assert_allclose(ours[7:], expected[7:], atol=1e-4, equal_nan=True)
    return ours


def ground_truth_as_results(nusc, sample_tokens, velocity_of) -> dict[str, list[dict]]:
    """The devkit's annotations of ``sample_tokens`` as a detection submission (score 1):
    ``results`` keyed by sample token; ``velocity_of(annotation)`` gives the (2,) velocity."""
    from pointformer.data.classes import NUSCENES_CATEGORY_TO_DETECTION

    attribute_names = {a["token"]: a["name"] for a in nusc.attribute}
    results: dict[str, list[dict]] = {token: [] for token in sample_tokens}
    for annotation in nusc.sample_annotation:
        name = NUSCENES_CATEGORY_TO_DETECTION.get(annotation["category_name"])
        if name is None or annotation["sample_token"] not in results:
            continue
        velocity = velocity_of(annotation)
        results[annotation["sample_token"]].append({
            "sample_token": annotation["sample_token"], "translation": annotation["translation"],
            "size": annotation["size"], "rotation": annotation["rotation"],
            "velocity": [0.0, 0.0] if np.isnan(velocity).any() else list(map(float, velocity)),
            "detection_name": name, "detection_score": 1.0,
            "attribute_name": "".join(attribute_names[t] for t in annotation["attribute_tokens"]),
        })
    return results
