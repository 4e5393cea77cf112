"""The dataset entry points: the whole nuScenes chain (sensor points -> ego -> global land on the
global boxes, counts match), the Waymo range-image chain, determinism, and the labelling helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointformer.data.classes import (
    NUSCENES_CATEGORY_TO_DETECTION,
    NUSCENES_LIDARSEG_CATEGORIES,
)
from pointformer.data.synthetic.nuscenes_layout import NuScenesSceneData
from pointformer.data.synthetic.simulate import (
    NUSCENES_EGO_FROM_LIDAR,
    boxes_to_frame,
    count_points_in_boxes,
    keep_annotations,
    simulate_nuscenes_scene,
    simulate_waymo_segment,
)
from pointformer.structures import Boxes3D
from pointformer.structures.rotation import quaternion_to_matrix


@pytest.fixture(scope="module")
def nuscenes_scene() -> NuScenesSceneData:
    return simulate_nuscenes_scene(3, "scene-0061", num_keyframes=2)


@pytest.fixture(scope="module")
def waymo_segment():
    return simulate_waymo_segment(4, "1234567890_100_000_120_000", num_frames=2)


def global_boxes(boxes) -> Boxes3D:
    return Boxes3D.from_nuscenes([b.translation for b in boxes], [b.size_wlh for b in boxes],
                                 [b.rotation_wxyz for b in boxes], dtype=torch.float64)


def test_nuscenes_sweeps_timing_and_formats(nuscenes_scene):
    data = nuscenes_scene
    assert len(data.sweeps) == 20
    assert [k for k, s in enumerate(data.sweeps) if s.is_key_frame] == [9, 19] == sorted(data.keyframe_boxes)
    assert all(type(s.timestamp_us) is int for s in data.sweeps)
    stamps = np.array([s.timestamp_us for s in data.sweeps])
    assert np.all(np.abs(np.diff(stamps) - 50_000) <= 2_000), "20 Hz"
    np.testing.assert_allclose(data.ego_from_lidar, NUSCENES_EGO_FROM_LIDAR)
    for sweep in data.sweeps:
        points = sweep.points
        assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 5
        assert 20_000 < len(points) <= 32 * 1084
        assert np.all(points[:, 3] == np.round(points[:, 3])) and 0 <= points[:, 3].min() and points[:, 3].max() <= 255
        assert set(np.unique(points[:, 4]).astype(int)) <= set(range(32))
        assert np.isfinite(points).all() and np.linalg.norm(points[:, :3], axis=1).max() <= 70.1
        if sweep.is_key_frame:
            assert sweep.lidarseg.dtype == np.uint8 and sweep.lidarseg.shape == (len(points),)
            assert sweep.lidarseg.max() < len(NUSCENES_LIDARSEG_CATEGORIES) and sweep.lidarseg.min() >= 1
        else:
            assert sweep.lidarseg is None
        rotation = sweep.global_from_ego[:3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    # The sensor is rotated -90 deg about z: the ego's forward motion is +y in the LiDAR frame.
    first, last = data.sweeps[0].global_from_ego, data.sweeps[-1].global_from_ego
    travel = (np.linalg.inv(first @ data.ego_from_lidar) @ np.append(last[:3, 3], 1.0))[:3]
    assert abs(travel[0]) < 0.2 * max(np.linalg.norm(travel), 1e-3) + 0.05


def test_nuscenes_points_land_on_the_global_boxes(nuscenes_scene):
    data = nuscenes_scene
    vehicle_seg = {NUSCENES_LIDARSEG_CATEGORIES.index(c) for c in NUSCENES_CATEGORY_TO_DETECTION}
    checked = 0
    for index, boxes in data.keyframe_boxes.items():
        sweep = data.sweeps[index]
        assert boxes, "a keyframe of a street scene has boxes"
        global_from_lidar = sweep.global_from_ego @ data.ego_from_lidar
        points = sweep.points[:, :3].astype(np.float64) @ global_from_lidar[:3, :3].T + global_from_lidar[:3, 3]
        gboxes = global_boxes(boxes)
        inside = gboxes.points_in_boxes(torch.from_numpy(points)).numpy()
        assert inside.sum(axis=0).tolist() == [b.num_lidar_pts for b in boxes]
        # Every return labelled as an object, within 60 m, lies in an annotated box of its category.
        sensor_range = np.linalg.norm(sweep.points[:, :3], axis=1)
        box_seg = np.array([NUSCENES_LIDARSEG_CATEGORIES.index(b.category) for b in boxes])
        on_objects = np.flatnonzero(np.isin(sweep.lidarseg, list(vehicle_seg)) & (sensor_range < 60))
        for p in on_objects:
            assert (box_seg[inside[p]] == sweep.lidarseg[p]).any(), p
        checked += len(on_objects)
        for box in boxes:
            assert np.isclose(np.linalg.norm(box.rotation_wxyz), 1.0) and np.all(box.size_wlh > 0)
            assert box.visibility in {"1", "2", "3", "4"}
            assert NUSCENES_CATEGORY_TO_DETECTION[box.category]
            horizontal = quaternion_to_matrix(box.rotation_wxyz)[2]
            np.testing.assert_allclose(horizontal, [0, 0, 1], atol=1e-12)
        ids = [b.instance_id for b in boxes]
        assert len(set(ids)) == len(ids)
    assert checked > 500
    assert {b.instance_id for b in data.keyframe_boxes[9]} & {b.instance_id for b in data.keyframe_boxes[19]}


def test_nuscenes_is_deterministic_and_seeds_differ():
    a = simulate_nuscenes_scene(21, "scene-0001", num_keyframes=1, sweeps_per_keyframe=2)
    b = simulate_nuscenes_scene(21, "scene-0001", num_keyframes=1, sweeps_per_keyframe=2)
    c = simulate_nuscenes_scene(22, "scene-0001", num_keyframes=1, sweeps_per_keyframe=2)
    assert len(a.sweeps) == 2 and a.sweeps[1].is_key_frame and not a.sweeps[0].is_key_frame
    for x, y in zip(a.sweeps, b.sweeps):
        np.testing.assert_array_equal(x.points, y.points)
        assert x.timestamp_us == y.timestamp_us
    assert [box.translation.tolist() for box in a.keyframe_boxes[1]] == [box.translation.tolist() for box in b.keyframe_boxes[1]]
    assert a.sweeps[1].points.shape != c.sweeps[1].points.shape or not np.array_equal(a.sweeps[1].points, c.sweeps[1].points)
    with pytest.raises(ValueError, match="seed"):
        simulate_nuscenes_scene(-1, "scene-0001", num_keyframes=1)
    with pytest.raises(ValueError, match="num_keyframes"):
        simulate_nuscenes_scene(1, "scene-0001", num_keyframes=0)
    with pytest.raises(ValueError, match="ego_from_lidar"):
        simulate_nuscenes_scene(1, "scene-0001", num_keyframes=1, ego_from_lidar=np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="num_frames"):
        simulate_waymo_segment(1, "context", num_frames=0)


def waymo_points(range_image: np.ndarray, calibration) -> np.ndarray:
    """Waymo's recipe, written out: (H, W, 3) vehicle-frame points of a range image."""
    height, width = range_image.shape[:2]
    extrinsic = calibration.extrinsic
    inclination = calibration.beam_inclinations[::-1]
    points = np.zeros((height, width, 3))
    correction = math.atan2(extrinsic[1, 0], extrinsic[0, 0])
    for c in range(width):
        az = ((width - c - 0.5) / width * 2 - 1) * math.pi - correction
        r = range_image[:, c, 0].astype(np.float64)
        local = np.stack([np.cos(az) * np.cos(inclination) * r, np.sin(az) * np.cos(inclination) * r,
                          np.sin(inclination) * r], axis=1)
        points[:, c] = local @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    return points


def test_waymo_range_images_boxes_and_poses(waymo_segment):
    calibrations, frames = waymo_segment
    assert len(calibrations) == 1 and calibrations[0].laser_name == 1 and len(frames) == 2
    calibration = calibrations[0]
    assert calibration.beam_inclinations.shape == (64,) and np.all(np.diff(calibration.beam_inclinations) > 0)
    assert frames[1].timestamp_us - frames[0].timestamp_us == 100_000
    for frame in frames:
        image = frame.range_images[1]
        assert image.shape == (64, 2650, 4) and image.dtype == np.float32
        valid = image[..., 0] > 0
        assert valid.sum() > 100_000 and np.all(image[~valid, 0] == -1)
        assert np.all(image[..., 3] == -1)
        points = waymo_points(image, calibration)[valid]
        world = points @ frame.world_from_vehicle[:3, :3].T + frame.world_from_vehicle[:3, 3]
        assert world[:, 2].min() > -0.1, "nothing below the ground"
        assert np.mean(np.abs(world[:, 2]) < 0.1) > 0.2, "a large share of the returns is on the ground"
        boxes = frame.boxes
        assert boxes.boxes.shape[1] == 7 and set(boxes.types.tolist()) <= {1, 2, 4} and len(boxes.ids) == len(boxes.boxes)
        counted = Boxes3D(torch.from_numpy(boxes.boxes)).points_in_boxes(torch.from_numpy(points)).sum(dim=0)
        assert counted.tolist() == boxes.num_lidar_points.tolist() and np.all(boxes.num_lidar_points > 0)
        assert boxes.num_lidar_points.sum() > 1000
        centers = boxes.boxes[:, :3] @ frame.world_from_vehicle[:3, :3].T + frame.world_from_vehicle[:3, 3]
        np.testing.assert_allclose(centers[:, 2] - boxes.boxes[:, 5] / 2, 0.0, atol=1e-6)
        assert np.isfinite(boxes.speed).all() and np.abs(boxes.speed).max() <= 15.0
        _, _, yaw, x, y, z = frame.top_pose[10, 20]
        assert frame.top_pose.shape == (64, 2650, 6)
        np.testing.assert_allclose([x, y, z], frame.world_from_vehicle[:3, 3], rtol=1e-6)
        assert abs(yaw - math.atan2(frame.world_from_vehicle[1, 0], frame.world_from_vehicle[0, 0])) < 1e-5
    assert set(frames[0].boxes.ids) & set(frames[1].boxes.ids), "ids are stable across frames"


def test_count_points_in_boxes_matches_boxes3d():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(-20, 20, (50, 3)), rng.uniform(0.3, 6, (50, 3)), rng.uniform(-4, 4, (50, 1))], 1)
    points = rng.uniform(-25, 25, (20000, 3))
    on_face = boxes[:5, :3] + np.stack([boxes[:5, 3] / 2 * np.cos(boxes[:5, 6]), boxes[:5, 3] / 2 * np.sin(boxes[:5, 6]),
                                        np.zeros(5)], 1)
    points = np.concatenate([points, on_face, boxes[:, :3], boxes[:, :3]])
    expected = Boxes3D(torch.from_numpy(boxes)).count_points(torch.from_numpy(points)).numpy()
    assert np.array_equal(count_points_in_boxes(points, boxes), expected)
    assert np.all(count_points_in_boxes(points, boxes) >= 2)
    assert count_points_in_boxes(np.zeros((0, 3)), boxes).tolist() == [0] * 50
    with pytest.raises(ValueError, match="count_points_in_boxes"):
        count_points_in_boxes(points[:, :2], boxes)


def test_boxes_to_frame_matches_boxes3d_transform():
    rng = np.random.default_rng(1)
    boxes = np.concatenate([rng.uniform(-20, 20, (30, 3)), rng.uniform(0.3, 6, (30, 3)), rng.uniform(-3, 3, (30, 3))], 1)
    pose = np.linalg.inv(NUSCENES_EGO_FROM_LIDAR)
    ours = boxes_to_frame(boxes, pose)
    reference = Boxes3D(torch.from_numpy(boxes)).transform(pose).tensor.numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_keep_annotations_bridges_short_occlusions():
    counts = np.array([[3, 0, 5], [0, 0, 0], [4, 2, 0], [0, 0, 1]])
    in_range = np.ones_like(counts, bool)
    in_range[1, 2] = False
    keep = keep_annotations(counts, in_range, bridge_occlusions=True)
    assert keep.tolist() == [[True, False, True], [True, False, False], [True, True, False], [False, False, True]]
    assert keep_annotations(counts, in_range, bridge_occlusions=False).tolist() == (counts > 0).tolist()
