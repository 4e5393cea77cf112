"""Waymo v2 layout: range-image geometry against a per-pixel loop, write -> read round trips,
and bad input (empty / non-finite range images, missing files, corrupted columns)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pointformer.data.infos import load_infos, load_sample, save_infos
from pointformer.data.readers import waymo as v2
from pointformer.data.readers.waymo import WaymoReader, range_image_to_points, read_frame_points
from pointformer.data.synthetic.waymo_layout import WaymoBoxes, WaymoFrame, WaymoLidarCalibration
from pointformer.data.synthetic.waymo_writer import write_waymo_segment
from pointformer.structures.rotation import pose_matrix, quaternion_to_matrix, yaw_matrix

CONTEXT = "segment-0001_000_000"


# ------------------------------------------------------- brute-force twin
def _rotation_rpy(roll: float, pitch: float, yaw: float) -> list[list[float]]:
    rz = [[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]]
    ry = [[math.cos(pitch), 0.0, math.sin(pitch)], [0.0, 1.0, 0.0], [-math.sin(pitch), 0.0, math.cos(pitch)]]
    rx = [[1.0, 0.0, 0.0], [0.0, math.cos(roll), -math.sin(roll)], [0.0, math.sin(roll), math.cos(roll)]]
    return _matmul(rz, _matmul(ry, rx))


def _matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def _rotate(r: list[list[float]], p: list[float]) -> list[float]:
    return [sum(r[i][k] * p[k] for k in range(3)) for i in range(3)]


def _twin_points(image, extrinsic, inc_min, inc_max, beams=None, pixel_pose=None, frame_pose=None) -> np.ndarray:
    """Per-pixel loop straight from the Waymo devkit's formulas (frame pose assumed rigid)."""
    height, width = image.shape[:2]
    e = [[float(extrinsic[i][j]) for j in range(4)] for i in range(4)]
    if beams is None:
        inclinations = [inc_min + (r + 0.5) / height * (inc_max - inc_min) for r in range(height)]
    else:
        inclinations = [float(b) for b in beams]
    inclinations = inclinations[::-1]
    az_correction = math.atan2(e[1][0], e[0][0])
    out = []
    for r in range(height):
        for c in range(width):
            distance = float(image[r, c, 0])
            if distance <= 0:
                continue
            azimuth = (2 * (width - c - 0.5) / width - 1) * math.pi - az_correction
            inc = inclinations[r]
            sensor = [math.cos(azimuth) * math.cos(inc) * distance, math.sin(azimuth) * math.cos(inc) * distance,
                      math.sin(inc) * distance]
            point = [v + e[i][3] for i, v in enumerate(_rotate([row[:3] for row in e], sensor))]
            if pixel_pose is not None:
                roll, pitch, yaw, x, y, z = (float(v) for v in pixel_pose[r, c])
                world = [v + t for v, t in zip(_rotate(_rotation_rpy(roll, pitch, yaw), point), (x, y, z))]
                f_rot = [[float(frame_pose[i][j]) for j in range(3)] for i in range(3)]
                f_rot_t = [[f_rot[j][i] for j in range(3)] for i in range(3)]
                shifted = [world[i] - float(frame_pose[i][3]) for i in range(3)]
                point = _rotate(f_rot_t, shifted)
            out.append(point + [float(v) for v in image[r, c, 1:]])
    return np.array(out, dtype=np.float64).reshape(-1, 3 + image.shape[2] - 1)


def _random_pose(rng: np.random.Generator, scale: float) -> np.ndarray:
    return pose_matrix(rng.normal(size=3) * scale, quaternion_to_matrix(rng.normal(size=4)))


def _random_image(rng: np.random.Generator, height: int = 8, width: int = 32) -> np.ndarray:
    image = np.zeros((height, width, 4), np.float32)
    image[..., 0] = rng.uniform(-5, 80, size=(height, width))
    image[rng.random((height, width)) < 0.2, 0] = 0.0
    image[..., 1:] = rng.uniform(0, 1, size=(height, width, 3))
    return image


@pytest.mark.parametrize("given_beams", [False, True])
@pytest.mark.parametrize("with_pixel_pose", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_range_image_conversion_matches_per_pixel_loop(given_beams, with_pixel_pose, seed):
    rng = np.random.default_rng(seed)
    image = _random_image(rng)
    extrinsic = _random_pose(rng, 2.0)
    assert abs(math.atan2(extrinsic[1, 0], extrinsic[0, 0])) > 1e-3  # a yaw, so az_correction matters
    beams = np.sort(rng.uniform(-0.4, 0.1, size=8)) if given_beams else None
    calibration = WaymoLidarCalibration(1, extrinsic, -0.3, 0.05, beams)
    pixel_pose = frame_pose = None
    if with_pixel_pose:
        frame_pose = _random_pose(rng, 100.0)
        pixel_pose = np.concatenate(
            [rng.uniform(-0.1, 0.1, (8, 32, 2)), rng.uniform(-np.pi, np.pi, (8, 32, 1)), rng.normal(size=(8, 32, 3)) * 100],
            axis=-1,
        )
    ours = range_image_to_points(image, calibration, pixel_pose, frame_pose)
    twin = _twin_points(image, extrinsic, -0.3, 0.05, beams, pixel_pose, frame_pose)
    assert ours.shape == twin.shape == (int((image[..., 0] > 0).sum()), 6)
    np.testing.assert_allclose(ours, twin, atol=1e-5, rtol=0)


def test_empty_and_single_pixel_range_images():
    calibration = WaymoLidarCalibration(2, np.eye(4), -0.2, 0.2)
    empty = np.zeros((4, 16, 4), np.float32)
    empty[0, :, 0] = -1.0
    assert range_image_to_points(empty, calibration).shape == (0, 6)
    one = empty.copy()
    one[3, 5, :] = (10.0, 0.5, 0.1, 1.0)
    points = range_image_to_points(one, calibration)
    np.testing.assert_allclose(points, _twin_points(one, np.eye(4), -0.2, 0.2), atol=1e-9)
    assert points[0, 2] < 0  # the last row is the lowest beam


def test_azimuth_wraps_at_the_image_edges():
    """Columns run from +pi (col 0) down to -pi in the vehicle frame whatever the sensor yaw."""
    width = 16
    image = np.zeros((1, width, 4), np.float32)
    image[0, :, 0] = 10.0
    for yaw in (0.0, 0.3, 3.0, -3.1):
        extrinsic = pose_matrix([1.0, -0.5, 2.0], yaw_matrix(yaw))
        points = range_image_to_points(image, WaymoLidarCalibration(1, extrinsic, 0.0, 0.0))
        relative = points[:, :2] - extrinsic[:2, 3]
        azimuth = np.arctan2(relative[:, 1], relative[:, 0])
        expected = np.pi * (1 - (2 * np.arange(width) + 1) / width)
        np.testing.assert_allclose(azimuth, expected, atol=1e-9)
        assert relative[0, 0] < 0 < relative[0, 1] and relative[-1, 0] < 0 and relative[-1, 1] < 0
        np.testing.assert_allclose(np.linalg.norm(relative, axis=1), 10.0, atol=1e-5)


def test_inclination_rows_and_count_check():
    calibration = WaymoLidarCalibration(1, np.eye(4), -0.3, 0.1)
    np.testing.assert_allclose(v2.row_inclinations(calibration, 4), [0.05, -0.05, -0.15, -0.25])
    given = WaymoLidarCalibration(1, np.eye(4), -1, 1, np.array([-0.2, 0.0, 0.3]))
    np.testing.assert_allclose(v2.row_inclinations(given, 3), [0.3, 0.0, -0.2])
    with pytest.raises(ValueError, match="3 beam inclinations for a range image of 4 rows"):
        v2.row_inclinations(given, 4)


def test_pose_matrices_are_rz_ry_rx():
    rng = np.random.default_rng(5)
    pose = rng.uniform(-3, 3, size=(5, 6))
    for row, matrix in zip(pose, v2.pose_matrices(pose)):
        np.testing.assert_allclose(matrix[:3, :3], np.array(_rotation_rpy(*row[:3])), atol=1e-12)
        np.testing.assert_allclose(matrix[:3, 3], row[3:])


# ------------------------------------------------------------- fixtures
def _targets(sensor: np.ndarray, width: int, columns, distances, heights) -> np.ndarray:
    """Vehicle-frame points seen from ``sensor`` (a level sensor) at the centres of ``columns``."""
    phi = np.pi * (1 - (2 * np.asarray(columns, np.float64) + 1) / width)
    distances = np.asarray(distances, np.float64)
    return sensor + np.stack([distances * np.cos(phi), distances * np.sin(phi), np.asarray(heights, np.float64)], -1)


def _pixels_of(points: np.ndarray, calibration: WaymoLidarCalibration, height: int, width: int):
    """Exact inverse of the conversion: vehicle-frame points -> (rows, cols, ranges); asserts they sit on pixels."""
    extrinsic = np.asarray(calibration.extrinsic)
    sensor = (points - extrinsic[:3, 3]) @ extrinsic[:3, :3]
    ranges = np.linalg.norm(sensor, axis=1)
    inclination = np.arcsin(sensor[:, 2] / ranges)
    table = v2.row_inclinations(calibration, height)
    rows = np.abs(inclination[:, None] - table[None]).argmin(axis=1)
    np.testing.assert_allclose(table[rows], inclination, atol=1e-9)
    azimuth = np.arctan2(sensor[:, 1], sensor[:, 0]) + math.atan2(extrinsic[1, 0], extrinsic[0, 0])
    cols_float = (width - 0.5 - (azimuth + np.pi) / (2 * np.pi) * width) % width
    cols = np.round(cols_float).astype(int) % width
    np.testing.assert_allclose(np.abs((cols_float - cols + width / 2) % width - width / 2), 0, atol=1e-6)
    return rows, cols, ranges


def _image(height: int, width: int, rows, cols, ranges, intensity) -> np.ndarray:
    image = np.zeros((height, width, 4), np.float32)
    image[rows, cols, 0] = ranges
    image[rows, cols, 1] = intensity
    image[rows, cols, 2] = 0.25
    return image


def _boxes(n: int, seed: int = 0) -> WaymoBoxes:
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([rng.uniform(-30, 30, (n, 3)), rng.uniform(0.5, 5, (n, 3)), rng.uniform(-4, 4, (n, 1))], 1)
    return WaymoBoxes(boxes, np.array([1, 2, 4, 3, 0][:n]), [f"obj{seed}_{i}" for i in range(n)],
                      np.arange(n) * 7 + 1, rng.uniform(-10, 10, (n, 2)))


def _no_boxes() -> WaymoBoxes:
    return WaymoBoxes(np.zeros((0, 7)), np.zeros(0, int), [], np.zeros(0, int), np.zeros((0, 2)))


TOP_SENSOR = np.array([1.4, 0.0, 2.2])
TOP_SHAPE = (3, 12)
FRONT_SENSOR = np.array([4.1, 0.0, 0.7])
FRONT_SHAPE = (4, 8)


def _segment(tmp_path, frame_poses, top_pixel_poses=None, boxes=None, split="training"):
    """Write a 2-laser segment whose points are chosen vehicle-frame targets; returns what each frame holds.

    TOP: given beam inclinations (those of the targets), level, yawed; FRONT: uniform inclinations,
    yawed 0.4 rad. With a TOP pixel pose, the TOP targets sit on pixels of the pixel's own vehicle frame.
    """
    top_targets_local = _targets(TOP_SENSOR, TOP_SHAPE[1], [0, 5, 11], [20.0, 7.5, 33.0], [-1.5, 0.4, 2.0])
    top_beams = np.sort(np.arctan2(top_targets_local[:, 2] - TOP_SENSOR[2],
                                   np.linalg.norm(top_targets_local[:, :2] - TOP_SENSOR[:2], axis=1)))
    top = WaymoLidarCalibration(v2.TOP, pose_matrix(TOP_SENSOR, yaw_matrix(0.7)), -0.5, 0.5, top_beams)
    front = WaymoLidarCalibration(v2.FRONT, pose_matrix(FRONT_SENSOR, yaw_matrix(0.4)), -0.4, 0.2)
    front_inclinations = v2.row_inclinations(front, FRONT_SHAPE[0])
    distances = np.array([5.0, 12.0])
    front_targets = _targets(FRONT_SENSOR, FRONT_SHAPE[1], [1, 4], distances, distances * np.tan(front_inclinations[[0, 3]]))

    frames, expected = [], []
    for index, world_from_vehicle in enumerate(frame_poses):
        top_pose = None
        top_targets = top_targets_local
        if top_pixel_poses is not None and top_pixel_poses[index] is not None:
            pixel = np.asarray(top_pixel_poses[index], np.float32).astype(np.float64)
            top_pose = np.broadcast_to(pixel, TOP_SHAPE + (6,)).astype(np.float32)
            world_from_pixel_vehicle = v2.pose_matrices(pixel)
            top_targets = (np.linalg.inv(world_from_vehicle) @ world_from_pixel_vehicle
                           @ np.c_[top_targets_local, np.ones(3)].T).T[:, :3]
        images = {
            v2.TOP: _image(*TOP_SHAPE, *_pixels_of(top_targets_local, top, *TOP_SHAPE), [0.1, 0.2, 0.3]),
            v2.FRONT: _image(*FRONT_SHAPE, *_pixels_of(front_targets, front, *FRONT_SHAPE), [0.7, 0.8]),
        }
        frame_boxes = boxes[index] if boxes is not None else _boxes(3, seed=index)
        frames.append(WaymoFrame(100_000 * (index + 1), world_from_vehicle, images, frame_boxes, top_pose))
        expected.append({v2.TOP: top_targets, v2.FRONT: front_targets})
    write_waymo_segment(tmp_path, split, CONTEXT, [top, front], frames)
    return frames, expected


def _points_of_laser(sample, laser: int) -> np.ndarray:
    points = sample.points.numpy()
    return points[points[:, sample.point_columns.index("laser")] == laser]


# ------------------------------------------------------------ round trip
def test_write_read_round_trip_points_boxes_and_layout(tmp_path):
    poses = [pose_matrix([100.0, -50.0, 3.0], yaw_matrix(0.2)), pose_matrix([101.0, -49.5, 3.0], yaw_matrix(0.25))]
    boxes = [_boxes(5, seed=1), _no_boxes()]
    boxes[0].boxes[0, 6] = 3.5  # outside [-pi, pi): read back normalised
    boxes[0].speed[1] = np.nan  # unknown speed: read back as NaN
    frames, expected = _segment(tmp_path, poses, boxes=boxes)

    for component in (v2.LIDAR, v2.LIDAR_CALIBRATION, v2.LIDAR_POSE, v2.VEHICLE_POSE, v2.LIDAR_BOX):
        assert (tmp_path / "training" / component / f"{CONTEXT}.parquet").is_file()
    lidar_file = pq.ParquetFile(tmp_path / "training" / v2.LIDAR / f"{CONTEXT}.parquet")
    assert lidar_file.metadata.num_row_groups == 2  # one per frame: timestamp filters skip the others
    assert lidar_file.schema_arrow.field(v2.RANGE_IMAGE_SHAPE[1]).type == pa.list_(pa.int32(), 3)

    columns = ("intensity", "elongation", "no_label_zone", "laser", "return")
    reader = WaymoReader(tmp_path, "training", feature_columns=columns)
    assert len(reader) == 2 and [i.timestamp_us for i in reader.infos] == [100_000, 200_000]
    for index in range(2):
        sample = reader[index]
        assert sample.point_columns == ("x", "y", "z", *columns)
        assert sample.num_points == 5
        for laser, targets in expected[index].items():
            points = _points_of_laser(sample, laser)
            order = np.lexsort(points[:, :3].T[::-1])
            np.testing.assert_allclose(points[order, :3], targets[np.lexsort(targets.T[::-1])], atol=1e-4)
        np.testing.assert_allclose(sorted(sample.column("intensity").tolist()), [0.1, 0.2, 0.3, 0.7, 0.8], atol=1e-6)
        assert set(sample.column("return").tolist()) == {1.0}
        assert sample.meta["global_from_lidar"] == poses[index].tolist()
        assert sample.meta["context_name"] == CONTEXT and sample.meta["dropped_non_finite"] == 0

    annotations = reader[0].annotations
    written = boxes[0]
    np.testing.assert_allclose(annotations.boxes.tensor[:, :6].numpy(), written.boxes[:, :6], atol=1e-5)
    np.testing.assert_allclose(annotations.boxes.yaw.numpy(), (written.boxes[:, 6] + np.pi) % (2 * np.pi) - np.pi, atol=1e-6)
    assert -np.pi <= annotations.boxes.yaw.min() and annotations.boxes.yaw.max() < np.pi
    velocity = annotations.boxes.velocity.numpy()
    np.testing.assert_allclose(velocity[[0, 2, 3, 4]], written.speed[[0, 2, 3, 4]], atol=1e-5)
    assert np.isnan(velocity[1]).all()
    assert annotations.names == ["Vehicle", "Pedestrian", "Cyclist", "Sign", "Unknown"]
    assert annotations.ids == written.ids
    assert annotations.num_points.tolist() == written.num_lidar_points.tolist()
    assert annotations.attributes == [""] * 5
    assert reader.infos[0].meta["detection_difficulty"] == {i: 0 for i in written.ids}
    assert len(reader[1].annotations) == 0 and reader[1].boxes.tensor.shape == (0, 9)


def test_second_returns_and_laser_subsets(tmp_path):
    _, expected = _segment(tmp_path, [np.eye(4)])
    both = WaymoReader(tmp_path, lasers="all", returns=(1, 2), feature_columns=("intensity", "return"))
    assert both[0].num_points == 5  # the writer's second returns are empty images
    top = WaymoReader(tmp_path, lasers="top")
    np.testing.assert_allclose(np.sort(top[0].points[:, 0].numpy()), np.sort(expected[0][v2.TOP][:, 0]), atol=1e-4)
    front = read_frame_points(tmp_path / "training" / v2.LIDAR / f"{CONTEXT}.parquet", 100_000, [v2.FRONT], [1, 2])
    assert front.shape == (2, len(v2.POINT_COLUMNS))
    np.testing.assert_allclose(front[:, 6], v2.FRONT)
    with pytest.raises(ValueError, match="lasers"):
        WaymoReader(tmp_path, lasers=(1, 9))
    with pytest.raises(ValueError, match="returns"):
        WaymoReader(tmp_path, returns=(3,))


def test_top_pixel_pose_moves_points_into_the_frame_pose(tmp_path):
    poses = [pose_matrix([500.0, 200.0, 10.0], yaw_matrix(1.0)), pose_matrix([502.0, 201.0, 10.0], yaw_matrix(1.05))]
    # Per-pixel poses: the vehicle a little earlier than the frame pose (rolling shutter), float32-exact.
    pixel_poses = [[0.01, -0.02, 0.95, 499.0, 199.5, 10.1], None]
    frames, expected = _segment(tmp_path, poses, top_pixel_poses=pixel_poses)
    assert not np.allclose(expected[0][v2.TOP], expected[1][v2.TOP])  # the pixel pose does move points
    reader = WaymoReader(tmp_path, lasers="top")
    for index in range(2):
        points = reader[index].points.numpy()[:, :3].astype(np.float64)
        targets = expected[index][v2.TOP]
        np.testing.assert_allclose(points[np.lexsort(points.T[::-1])], targets[np.lexsort(targets.T[::-1])], atol=2e-4)


def test_sweeps_are_moved_into_the_current_vehicle_frame(tmp_path):
    poses = [pose_matrix([10.0, 5.0, 0.0], yaw_matrix(0.0)), pose_matrix([14.0, 6.0, 0.5], yaw_matrix(0.3)),
             pose_matrix([18.0, 8.0, 1.0], yaw_matrix(0.6))]
    _, expected = _segment(tmp_path, poses)
    reader = WaymoReader(tmp_path, max_sweeps=2)
    assert [len(i.sweeps) for i in reader.infos] == [0, 1, 2]
    assert [s.time_lag for s in reader.infos[2].sweeps] == pytest.approx([0.1, 0.2])  # newest first
    sample = reader[2]
    assert sample.point_columns == ("x", "y", "z", "intensity", "elongation", "time_lag")
    assert sample.num_points == 15
    lag = sample.column("time_lag").numpy()
    for frame, want_lag in ((2, 0.0), (1, 0.1), (0, 0.2)):
        local = np.concatenate([expected[frame][v2.TOP], expected[frame][v2.FRONT]])
        now = (np.linalg.inv(poses[2]) @ poses[frame] @ np.c_[local, np.ones(len(local))].T).T[:, :3]
        got = sample.points.numpy()[np.isclose(lag, want_lag), :3]
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], now[np.lexsort(now.T[::-1])], atol=1e-4)


def test_infos_survive_json_and_load_the_same_points(tmp_path):
    _segment(tmp_path, [np.eye(4), pose_matrix([1.0, 0.0, 0.0], np.eye(3))])
    reader = WaymoReader(tmp_path, max_sweeps=1)
    save_infos(tmp_path / "infos.json", reader.infos, dataset="waymo")
    infos, header = load_infos(tmp_path / "infos.json")
    assert header["dataset"] == "waymo"
    again = load_sample(infos[1], tmp_path, feature_columns=("intensity", "elongation"))
    np.testing.assert_array_equal(again.points.numpy(), reader[1].points.numpy())
    assert again.annotations.ids == reader[1].annotations.ids


def test_testing_split_without_boxes(tmp_path):
    _segment(tmp_path, [np.eye(4)], split="testing")
    (tmp_path / "testing" / v2.LIDAR_BOX / f"{CONTEXT}.parquet").unlink()
    reader = WaymoReader(tmp_path, "testing")
    assert reader.infos[0].annotations is None and len(reader[0].annotations) == 0


# ----------------------------------------------------------- adversarial
def _write_one_image(tmp_path, image: np.ndarray, boxes: WaymoBoxes | None = None) -> WaymoReader:
    calibration = WaymoLidarCalibration(v2.FRONT, pose_matrix([1.0, 0.0, 1.0], yaw_matrix(-0.3)), -0.3, 0.3)
    frame = WaymoFrame(5, np.eye(4), {v2.FRONT: image}, boxes or _no_boxes())
    write_waymo_segment(tmp_path, "validation", CONTEXT, [calibration], [frame])
    return WaymoReader(tmp_path, "validation", lasers=(v2.FRONT,))


def test_empty_range_image_gives_no_points(tmp_path):
    image = np.zeros((4, 16, 4), np.float32)
    image[1, :, 0] = -1.0
    sample = _write_one_image(tmp_path, image)[0]
    assert sample.num_points == 0 and sample.points.shape == (0, 5)
    assert len(sample.annotations) == 0


def test_non_finite_ranges_are_dropped_and_counted_end_to_end(tmp_path):
    image = np.zeros((4, 16, 4), np.float32)
    image[0, :4, 0] = [np.nan, np.nan, np.inf, 1e30]
    image[1, :3, 0] = [np.nan, -np.inf, 25.0]  # -inf is "no return", like any range <= 0
    image[2, 7] = (12.0, np.nan, 0.0, 0.0)  # finite range, NaN intensity: a non-finite point too
    sample = _write_one_image(tmp_path, image)[0]
    assert sample.meta["dropped_non_finite"] == 5
    assert sample.num_points == 2
    assert np.isfinite(sample.points.numpy()).all()
    norms = np.sort(np.linalg.norm(sample.points.numpy()[:, :3].astype(np.float64) - [1.0, 0.0, 1.0], axis=1))
    np.testing.assert_allclose(norms, [25.0, 1e30], rtol=1e-5)


def test_missing_component_files(tmp_path):
    _segment(tmp_path, [np.eye(4)])
    for component in (v2.LIDAR_CALIBRATION, v2.VEHICLE_POSE, v2.LIDAR_BOX, v2.LIDAR_POSE):
        path = tmp_path / "training" / component / f"{CONTEXT}.parquet"
        kept = path.read_bytes()
        path.unlink()
        with pytest.raises(FileNotFoundError, match=rf"'{component}'.*{CONTEXT}\.parquet"):
            WaymoReader(tmp_path)
        path.write_bytes(kept)
    assert len(WaymoReader(tmp_path, lasers=(v2.FRONT,))) == 1

    reader = WaymoReader(tmp_path)
    (tmp_path / "training" / v2.LIDAR / f"{CONTEXT}.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=rf"'lidar'.*{CONTEXT}\.parquet"):
        reader[0]
    with pytest.raises(FileNotFoundError, match="lidar"):
        WaymoReader(tmp_path, "validation")


def _rewrite(path, column: str, values: list) -> None:
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
    pq.write_table(table, path)


def test_corrupted_range_image_shape(tmp_path):
    _segment(tmp_path, [np.eye(4)])
    lidar = tmp_path / "training" / v2.LIDAR / f"{CONTEXT}.parquet"
    reader = WaymoReader(tmp_path)
    shapes = pq.read_table(lidar).column(v2.RANGE_IMAGE_SHAPE[1]).to_pylist()
    _rewrite(lidar, v2.RANGE_IMAGE_SHAPE[1], [[s[0], s[1] + 1, 4] for s in shapes])
    with pytest.raises(ValueError, match=r"lidar/.*parquet.*range_image_return1\.values.*frame 100000"):
        reader[0]
    _rewrite(lidar, v2.RANGE_IMAGE_SHAPE[1], [[s[0], s[1], 3] for s in shapes])
    with pytest.raises(ValueError, match=r"range_image_return1\.shape.*frame 100000.*expected \[H, W, 4\]"):
        reader[0]


def test_missing_calibration_and_bad_beam_count(tmp_path):
    _segment(tmp_path, [np.eye(4)])
    path = tmp_path / "training" / v2.LIDAR_CALIBRATION / f"{CONTEXT}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 1), path)  # TOP only
    with pytest.raises(ValueError, match=r"lidar_calibration.*no calibration for lasers \[2\]"):
        WaymoReader(tmp_path)
    with pytest.raises(ValueError, match="no calibration for laser 2"):
        read_frame_points(tmp_path / "training" / v2.LIDAR / f"{CONTEXT}.parquet", 100_000, [v2.FRONT])
    pq.write_table(table, path)
    _rewrite(path, v2.BEAM_INCLINATION_VALUES, [[0.1, 0.2], None])
    with pytest.raises(ValueError, match="2 beam inclinations for a range image of 3 rows"):
        WaymoReader(tmp_path)[0]


def test_writer_rejects_inconsistent_input(tmp_path):
    calibration = WaymoLidarCalibration(v2.TOP, np.eye(4), -0.3, 0.3, np.linspace(-0.3, 0.3, 4))
    good = np.zeros((4, 8, 4), np.float32)
    cases = {
        "expected \\(H, W, 4\\)": [WaymoFrame(1, np.eye(4), {v2.TOP: good[..., :3]}, _no_boxes())],
        "3 beam inclinations|4 beam inclinations for 3 rows": [WaymoFrame(1, np.eye(4), {v2.TOP: good[:3]}, _no_boxes())],
        "no calibration": [WaymoFrame(1, np.eye(4), {v2.FRONT: good}, _no_boxes())],
        "not distinct": [WaymoFrame(1, np.eye(4), {v2.TOP: good}, _no_boxes())] * 2,
        "TOP pixel pose": [WaymoFrame(1, np.eye(4), {v2.TOP: good}, _no_boxes(), np.zeros((4, 7, 6)))],
        "box types": [WaymoFrame(1, np.eye(4), {v2.TOP: good},
                                 WaymoBoxes(np.zeros((1, 7)), np.array([9]), ["a"], np.array([1]), np.zeros((1, 2))))],
        "1 boxes but": [WaymoFrame(1, np.eye(4), {v2.TOP: good},
                                   WaymoBoxes(np.zeros((1, 7)), np.array([1]), [], np.array([1]), np.zeros((1, 2))))],
    }
    for message, frames in cases.items():
        with pytest.raises(ValueError, match=message):
            write_waymo_segment(tmp_path, "training", CONTEXT, [calibration], frames)
    with pytest.raises(ValueError, match="split"):
        write_waymo_segment(tmp_path, "train", CONTEXT, [calibration], cases["no calibration"])
