"""Boxes3D against hand-computed cases, a numpy twin, shapely and the nuScenes devkit."""

import math

import numpy as np
import pytest
import torch

from pointformer.structures import Boxes3D
from pointformer.structures.rotation import (
    heading_yaw, invert_pose, matrix_to_quaternion, normalize_yaw, pose_matrix, quaternion_to_matrix,
    yaw_matrix, yaw_to_quaternion,
)


def random_boxes(rng: np.random.Generator, n: int, velocity=True) -> Boxes3D:
    center = rng.uniform(-50, 50, (n, 3))
    dims = rng.uniform(0.3, 12, (n, 3))
    yaw = rng.uniform(-np.pi, np.pi, (n, 1))
    cols = [center, dims, yaw] + ([rng.normal(0, 5, (n, 2))] if velocity else [])
    return Boxes3D(torch.from_numpy(np.concatenate(cols, 1)))


def numpy_corners(box: np.ndarray) -> np.ndarray:
    """Twin: corners written out one by one."""
    x, y, z, l, w, h, yaw = box[:7]
    c, s = math.cos(yaw), math.sin(yaw)
    out = []
    for dz in (-h / 2, h / 2):
        for dx, dy in ((l / 2, w / 2), (-l / 2, w / 2), (-l / 2, -w / 2), (l / 2, -w / 2)):
            out.append([x + c * dx - s * dy, y + s * dx + c * dy, z + dz])
    return np.array(out)


def test_corners_hand_case():
    box = Boxes3D(torch.tensor([[1.0, 2.0, 3.0, 4.0, 2.0, 6.0, math.pi / 2]], dtype=torch.float64))
    corners = box.corners()[0].numpy()
    # Heading +y: the front-left corner sits at (x - w/2, y + l/2).
    np.testing.assert_allclose(corners[0], [0.0, 4.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(corners[6], [2.0, 0.0, 6.0], atol=1e-12)
    assert box.volume().item() == pytest.approx(48.0)
    np.testing.assert_allclose(box.bottom_center[0].numpy(), [1, 2, 0])


def test_corners_match_twin_and_bev_is_ccw():
    import shapely.geometry

    boxes = random_boxes(np.random.default_rng(0), 50)
    corners = boxes.corners().numpy()
    for i, row in enumerate(boxes.numpy()):
        np.testing.assert_allclose(corners[i], numpy_corners(row), atol=1e-9)
        polygon = shapely.geometry.Polygon(boxes.bev_corners()[i].numpy())
        assert polygon.exterior.is_ccw
        assert polygon.area == pytest.approx(row[3] * row[4], rel=1e-9)


def test_normalize_yaw_range_and_boundaries():
    values = np.array([-np.pi, np.pi, 3 * np.pi, -3 * np.pi, 0.0, 1e6, -1e6, np.nextafter(np.pi, 0)])
    wrapped = normalize_yaw(values)
    assert np.all(wrapped >= -np.pi) and np.all(wrapped < np.pi)
    np.testing.assert_allclose(np.sin(wrapped), np.sin(values), atol=1e-9)
    np.testing.assert_allclose(np.cos(wrapped), np.cos(values), atol=1e-9)
    assert normalize_yaw(np.pi) == pytest.approx(-np.pi)


@pytest.mark.parametrize("angle", [0.0, 0.3, -2.5, np.pi, 7.0])
def test_rotate_matches_twin_and_moves_points_with_boxes(angle):
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 20)
    rotated = boxes.rotate(angle)
    R = yaw_matrix(angle)
    np.testing.assert_allclose(rotated.center.numpy(), boxes.center.numpy() @ R.T, atol=1e-9)
    np.testing.assert_allclose(rotated.velocity.numpy(), boxes.velocity.numpy() @ R[:2, :2].T, atol=1e-9)
    np.testing.assert_allclose(rotated.corners().numpy(), boxes.corners().numpy() @ R.T, atol=1e-9)
    assert torch.all(rotated.yaw >= -np.pi) and torch.all(rotated.yaw < np.pi)


def test_translate_scale_flip_keep_corners_consistent():
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 30)
    corners = boxes.corners().numpy()
    np.testing.assert_allclose(boxes.translate([1, -2, 3]).corners().numpy(), corners + [1, -2, 3], atol=1e-9)
    np.testing.assert_allclose(boxes.scale(1.5).corners().numpy(), corners * 1.5, atol=1e-9)
    np.testing.assert_allclose(boxes.scale(1.5).velocity.numpy(), boxes.velocity.numpy() * 1.5)
    for coordinate, axis in (("y", 1), ("x", 0)):
        flipped = boxes.flip(coordinate)
        mirrored = corners.copy()
        mirrored[..., axis] *= -1
        # Mirroring swaps left and right: compare corner sets, not orders.
        got = np.sort(flipped.corners().numpy().round(6), axis=1)
        np.testing.assert_allclose(got, np.sort(mirrored.round(6), axis=1), atol=1e-5)
        velocity = boxes.velocity.numpy().copy()
        velocity[:, axis] *= -1
        np.testing.assert_allclose(flipped.velocity.numpy(), velocity)
        heading = np.stack([np.cos(boxes.yaw.numpy()), np.sin(boxes.yaw.numpy())], 1)
        heading[:, axis] *= -1
        np.testing.assert_allclose(flipped.yaw.numpy(), np.arctan2(heading[:, 1], heading[:, 0]), atol=1e-9)
    with pytest.raises(ValueError, match="flip coordinate"):
        boxes.flip("z")


def test_points_in_boxes_against_loop_and_boundaries():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 8, velocity=False)
    points = torch.from_numpy(rng.uniform(-60, 60, (3000, 3)))
    # Points exactly on faces and corners are inside.
    points = torch.cat([points, boxes.corners().reshape(-1, 3), boxes.center])
    mask = boxes.points_in_boxes(points).numpy()
    for j, row in enumerate(boxes.numpy()):
        x, y, z, l, w, h, yaw = row
        for i in rng.choice(len(points), 200, replace=False).tolist() + list(range(len(points) - 72, len(points))):
            dx, dy, dz = points[i].numpy() - [x, y, z]
            lx = dx * math.cos(yaw) + dy * math.sin(yaw)
            ly = -dx * math.sin(yaw) + dy * math.cos(yaw)
            inside = abs(lx) <= l / 2 + 1e-9 and abs(ly) <= w / 2 + 1e-9 and abs(dz) <= h / 2 + 1e-9
            assert mask[i, j] == inside or abs(abs(lx) - l / 2) < 1e-7 or abs(abs(ly) - w / 2) < 1e-7
    assert mask[-8:].diagonal().all()  # each centre in its own box
    assert boxes.count_points(points).shape == (8,)


def test_points_in_boxes_empty_inputs():
    boxes = Boxes3D.empty()
    assert boxes.points_in_boxes(torch.zeros(5, 3)).shape == (5, 0)
    one = Boxes3D(torch.tensor([[0, 0, 0, 1, 1, 1, 0.0]]))
    assert one.points_in_boxes(torch.zeros(0, 4)).shape == (0, 1)


def test_huge_coordinates_keep_precision_in_float64():
    boxes = Boxes3D(torch.tensor([[1e7, -1e7, 5.0, 4.0, 2.0, 1.5, 0.4]], dtype=torch.float64))
    points = boxes.center + torch.tensor([[1.9 * math.cos(0.4), 1.9 * math.sin(0.4), 0.0]], dtype=torch.float64)
    assert boxes.points_in_boxes(points).item()


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"\(N, 7\) or \(N, 9\)"):
        Boxes3D(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="with_velocity"):
        Boxes3D(torch.zeros(3, 7), with_velocity=True)
    assert Boxes3D(torch.zeros(0)).tensor.shape == (0, 7)
    assert Boxes3D([], with_velocity=True).tensor.shape == (0, 9)
    with pytest.raises(ValueError, match="concatenate"):
        Boxes3D.cat([Boxes3D.empty(True), Boxes3D.empty(False)])


def test_quaternion_helpers_against_pyquaternion():
    from pyquaternion import Quaternion

    rng = np.random.default_rng(4)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(quaternion_to_matrix(q), Quaternion(q).rotation_matrix, atol=1e-12)
        back = matrix_to_quaternion(quaternion_to_matrix(q))
        np.testing.assert_allclose(back, q * np.sign(q[0]), atol=1e-9)
    for yaw in rng.uniform(-np.pi, np.pi, 20):
        np.testing.assert_allclose(quaternion_to_matrix(yaw_to_quaternion(yaw)), yaw_matrix(yaw), atol=1e-12)
        assert heading_yaw(yaw_matrix(yaw)) == pytest.approx(yaw)
    pose = pose_matrix(rng.normal(size=3), rng.normal(size=4))
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)


def test_nuscenes_round_trip_and_devkit_box():
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    boxes = random_boxes(np.random.default_rng(5), 20).normalize_yaw()
    params = boxes.to_nuscenes()
    back = Boxes3D.from_nuscenes(**params, dtype=torch.float64)
    torch.testing.assert_close(back.tensor, boxes.tensor, atol=1e-9, rtol=0)
    for i in range(len(boxes)):
        box = Box(params["translation"][i], params["size"][i], Quaternion(params["rotation"][i]))
        ours = boxes.corners()[i].numpy()  # (8, 3)
        theirs = box.corners().T  # devkit order differs: compare as sets
        np.testing.assert_allclose(np.sort(ours.round(6), 0), np.sort(theirs.round(6), 0), atol=1e-5)


def test_transform_matches_devkit_box_rotate():
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    rng = np.random.default_rng(6)
    boxes = random_boxes(rng, 10)
    params = boxes.to_nuscenes()
    q = Quaternion(axis=rng.normal(size=3), angle=0.1) * Quaternion(axis=[0, 0, 1], angle=1.0)
    t = rng.normal(size=3) * 10
    moved = boxes.transform(pose_matrix(t, q.elements))
    for i in range(len(boxes)):
        box = Box(params["translation"][i], params["size"][i], Quaternion(params["rotation"][i]),
                  velocity=(*params["velocity"][i], 0.0))
        box.rotate(q)
        box.translate(t)
        np.testing.assert_allclose(moved.center[i].numpy(), box.center, atol=1e-9)
        yaw = heading_yaw(box.orientation.rotation_matrix)
        assert abs(normalize_yaw(moved.yaw[i].item() - yaw)) < 1e-9
        np.testing.assert_allclose(moved.velocity[i].numpy(), box.velocity[:2], atol=1e-9)


def test_kitti_camera_round_trip_with_tilted_calibration():
    rng = np.random.default_rng(7)
    velo_to_rect = pose_matrix([0.1, -0.2, -0.3], Quaternion_like(rng))
    boxes = random_boxes(rng, 15, velocity=False).normalize_yaw()
    kitti = boxes.to_kitti_camera(velo_to_rect)
    back = Boxes3D.from_kitti_camera(kitti["location"], kitti["dims_hwl"], kitti["rotation_y"], velo_to_rect, torch.float64)
    # KITTI boxes turn about the camera's y axis and stand on the camera's floor: with a tilted
    # calibration the round trip loses the tilt (~0.01 rad here), so exactness is not expected.
    torch.testing.assert_close(back.tensor[:, :6], boxes.tensor[:, :6], atol=2e-2, rtol=0)
    assert (normalize_yaw(back.yaw - boxes.yaw)).abs().max() < 1e-4


def test_kitti_nominal_calibration_is_minus_ry_minus_half_pi():
    # Camera axes: x right, y down, z forward = lidar (-y, -z, x).
    velo_to_rect = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    ry = np.array([0.0, 0.7, -2.0])
    boxes = Boxes3D.from_kitti_camera([[1, 1.5, 10]] * 3, [[1.5, 1.6, 3.9]] * 3, ry, velo_to_rect, torch.float64)
    np.testing.assert_allclose(boxes.yaw.numpy(), normalize_yaw(-ry - np.pi / 2), atol=1e-12)
    np.testing.assert_allclose(boxes.center[0].numpy(), [10, -1, -1.5 + 0.75], atol=1e-12)


def Quaternion_like(rng) -> np.ndarray:
    """A calibration-like rotation: the nominal lidar->camera axes with a small random tilt."""
    nominal = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    tilt = quaternion_to_matrix(np.r_[1.0, rng.normal(0, 0.01, 3)])
    return tilt @ nominal
