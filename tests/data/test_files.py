"""Plain point files: every format against an independent reading (numpy, laspy, the written
arrays), real files from shared/realdata, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.data.infos import PointSource, load_sample
from pointformer.data.readers.files import (
    count_points_in_boxes,
    file_info,
    point_source,
    read_point_labels,
    read_points,
)
from pointformer.structures import Boxes3D

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
NUSCENES_PCD_BIN = (
    REALDATA / "mmdetection3d/demo/data/nuscenes/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
)


def realdata(relative: str) -> Path:
    path = REALDATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} not available")
    return path


def write_bin(path: Path, array: np.ndarray) -> Path:
    np.ascontiguousarray(array).tofile(path)
    return path


# ------------------------------------------------------------------ raw .bin / .npy
def test_bin_round_trip_with_declared_columns_and_dtype(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(100, 5)).astype(np.float64)
    path = write_bin(tmp_path / "a.bin", points)
    cloud = read_points(path, columns=("x", "y", "z", "intensity", "t"), dtype="float64")
    assert cloud.columns == ("x", "y", "z", "intensity", "t")
    assert cloud.points.dtype == np.float32
    np.testing.assert_array_equal(cloud.points, points.astype(np.float32))


def test_bin_default_kitti_and_pcd_bin_default_nuscenes(tmp_path):
    points = np.arange(40, dtype=np.float32).reshape(8, 5)
    kitti = read_points(write_bin(tmp_path / "k.bin", points))
    assert kitti.columns == ("x", "y", "z", "intensity") and kitti.points.shape == (10, 4)
    nus = read_points(write_bin(tmp_path / "n.pcd.bin", points))
    assert nus.columns == ("x", "y", "z", "intensity", "ring")
    np.testing.assert_array_equal(nus.points, points)


def test_npy_inferred_and_declared_columns(tmp_path):
    xyz = np.random.default_rng(1).normal(size=(7, 3))
    np.save(tmp_path / "a.npy", xyz)
    cloud = read_points(tmp_path / "a.npy")
    assert cloud.columns == ("x", "y", "z")
    np.testing.assert_array_equal(cloud.points, xyz.astype(np.float32))
    np.save(tmp_path / "b.npy", np.ones((2, 4), np.int32))
    assert read_points(tmp_path / "b.npy").columns == ("x", "y", "z", "intensity")
    np.save(tmp_path / "c.npy", np.ones((2, 6), np.float32))
    assert read_points(tmp_path / "c.npy", ("x", "y", "z", "r", "g", "b")).points.shape == (2, 6)


def test_npy_of_wrong_width_names_the_file(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"w\.npy.*5 columns"):
        read_points(tmp_path / "w.npy")
    with pytest.raises(ValueError, match=r"w\.npy.*shape \(3, 5\).*expected \(N, 4\)"):
        read_points(tmp_path / "w.npy", ("x", "y", "z", "intensity"))
    np.save(tmp_path / "flat.npy", np.ones(6, np.float32))
    with pytest.raises(ValueError, match="flat.npy"):
        read_points(tmp_path / "flat.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy.*not a readable"):
        read_points(tmp_path / "junk.npy")


def test_truncated_bin_and_wrong_column_count(tmp_path):
    path = write_bin(tmp_path / "t.bin", np.zeros((10, 4), np.float32))
    with open(path, "r+b") as handle:
        handle.truncate(10 * 16 - 6)
    with pytest.raises(ValueError, match=r"t\.bin.*154 bytes.*truncated"):
        read_points(path)
    path = write_bin(tmp_path / "five.bin", np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"five\.bin.*60 bytes.*4-column"):
        read_points(path)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_points(tmp_path / "nope.bin")
    (tmp_path / "a.xyz").write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"a\.xyz.*unknown point file extension"):
        read_points(tmp_path / "a.xyz")
    with pytest.raises(FileNotFoundError, match="gone.npy"):
        file_info(tmp_path / "gone.npy")


def test_empty_files_are_empty_clouds(tmp_path):
    (tmp_path / "e.bin").write_bytes(b"")
    cloud = read_points(tmp_path / "e.bin")
    assert cloud.points.shape == (0, 4)
    np.save(tmp_path / "e.npy", np.zeros((0, 3), np.float32))
    assert read_points(tmp_path / "e.npy").points.shape == (0, 3)
    sample = load_sample(file_info(tmp_path / "e.bin"), None)
    assert sample.points.shape == (0, 4) and sample.meta["dropped_non_finite"] == 0


def test_non_finite_points_are_dropped_and_counted_end_to_end(tmp_path):
    points = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    points[[3, 10, 11], 0] = np.nan
    points[20, 2] = np.inf
    points[30, 3] = -np.inf  # a non-finite feature drops the point too
    info = file_info(write_bin(tmp_path / "nan.bin", points))
    sample = load_sample(info, None)
    keep = np.isfinite(points).all(axis=1)
    assert sample.meta["dropped_non_finite"] == 5
    np.testing.assert_array_equal(sample.points.numpy(), points[keep])


# ------------------------------------------------------------------ labels
def test_point_labels_npy_and_semantickitti_label(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "l.npy", np.array([[1], [2], [3], [4]], np.int32))
    cloud = read_points(tmp_path / "p.npy", labels_path=tmp_path / "l.npy")
    np.testing.assert_array_equal(cloud.labels, [1, 2, 3, 4])
    raw = (np.array([7, 8, 9, 10], np.uint32) << 16) | np.array([40, 44, 48, 50], np.uint32)
    raw.tofile(tmp_path / "s.label")
    labels, instances = read_point_labels(tmp_path / "s.label", 4, "cloud")
    np.testing.assert_array_equal(labels, [40, 44, 48, 50])
    np.testing.assert_array_equal(instances, [7, 8, 9, 10])
    with pytest.raises(ValueError, match=r"l\.npy: 4 point labels for 5 points"):
        read_point_labels(tmp_path / "l.npy", 5, "cloud")
    np.save(tmp_path / "f.npy", np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"f\.npy.*integers"):
        read_point_labels(tmp_path / "f.npy", 4, "cloud")


def test_relative_labels_path_in_a_point_source(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((2, 4), np.float32))
    np.save(tmp_path / "p_labels.npy", np.array([5, 6], np.int64))
    source = point_source("p.npy", root=tmp_path, labels_path="p_labels.npy")
    info = file_info(tmp_path / "p.npy")
    info.lidar = source
    sample = load_sample(info, tmp_path)
    np.testing.assert_array_equal(sample.point_labels.numpy(), [5, 6])


# ------------------------------------------------------------------ open3d: pcd / ply
def _open3d():
    return pytest.importorskip("open3d")


@pytest.mark.parametrize("extension", ["pcd", "ply"])
@pytest.mark.parametrize("ascii", [False, True])
def test_open3d_write_then_read_keeps_intensity(tmp_path, extension, ascii):
    o3d = _open3d()
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(64, 3)).astype(np.float32) * 30
    intensity = rng.uniform(0, 1, size=(64, 1)).astype(np.float32)
    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor(xyz)
    cloud.point.intensity = o3d.core.Tensor(intensity)
    path = tmp_path / f"c.{extension}"
    assert o3d.t.io.write_point_cloud(str(path), cloud, write_ascii=ascii)
    loaded = read_points(path)
    assert loaded.columns == ("x", "y", "z", "intensity")
    written = np.concatenate([xyz, intensity], 1)
    if ascii:  # open3d prints 6 significant digits
        np.testing.assert_allclose(loaded.points, written, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(loaded.points, written)
    info = file_info(path)
    assert info.lidar.format == extension and info.lidar.columns == loaded.columns
    sample = load_sample(info, None)
    np.testing.assert_allclose(sample.points.numpy(), loaded.points)


def test_pcd_and_ply_other_attributes_and_column_selection(tmp_path):
    _open3d()
    (tmp_path / "c.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\nproperty double y\nproperty double z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty float reflectance\nend_header\n"
        "1 2 3 255 0 0 0.5\n4 5 6 0 255 0 0.25\n"
    )
    cloud = read_points(tmp_path / "c.ply")
    assert cloud.columns == ("x", "y", "z", "r", "g", "b", "reflectance")
    np.testing.assert_allclose(cloud.points, [[1, 2, 3, 255, 0, 0, 0.5], [4, 5, 6, 0, 255, 0, 0.25]])
    picked = read_points(tmp_path / "c.ply", ("x", "y", "z", "reflectance"))
    np.testing.assert_allclose(picked.points[:, 3], [0.5, 0.25])
    with pytest.raises(ValueError, match=r"c\.ply.*\['intensity'\] requested"):
        read_points(tmp_path / "c.ply", ("x", "y", "z", "intensity"))
    (tmp_path / "r.pcd").write_text(
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity ring\nSIZE 4 4 4 4 2\nTYPE F F F F U\nCOUNT 1 1 1 1 1\n"
        "WIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\n1 2 3 0.5 7\n4 5 6 0.25 9\n"
    )
    cloud = read_points(tmp_path / "r.pcd")
    assert cloud.columns == ("x", "y", "z", "intensity", "ring")
    np.testing.assert_allclose(cloud.points, [[1, 2, 3, 0.5, 7], [4, 5, 6, 0.25, 9]])


def test_empty_pcd_and_ply_are_empty_clouds(tmp_path):
    (tmp_path / "z.pcd").write_text(
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
        "WIDTH 0\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 0\nDATA ascii\n"
    )
    (tmp_path / "z.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    assert read_points(tmp_path / "z.pcd").points.shape == (0, 4)
    assert read_points(tmp_path / "z.ply").points.shape == (0, 3)
    assert load_sample(file_info(tmp_path / "z.pcd"), None).points.shape == (0, 4)


@pytest.mark.parametrize("extension", ["pcd", "ply"])
@pytest.mark.parametrize("ascii", [False, True])
def test_truncated_pcd_and_ply_are_errors(tmp_path, extension, ascii):
    # open3d itself returns garbage or an empty cloud here, with only a printed warning.
    o3d = _open3d()
    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.random.default_rng(4).normal(size=(20, 3)).astype(np.float32)))
    cloud.point.intensity = o3d.core.Tensor(np.ones((20, 1), np.float32))
    path = tmp_path / f"t.{extension}"
    o3d.t.io.write_point_cloud(str(path), cloud, write_ascii=ascii)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=rf"t\.{extension}.*(truncated|data row)"):
        read_points(path)


def test_not_a_pcd_or_ply(tmp_path):
    (tmp_path / "x.pcd").write_text("hello\n")
    with pytest.raises(ValueError, match=r"x\.pcd: not a PCD file"):
        read_points(tmp_path / "x.pcd")
    (tmp_path / "x.ply").write_text("hello\n")
    with pytest.raises(ValueError, match=r"x\.ply: not a PLY file"):
        read_points(tmp_path / "x.ply")


# ------------------------------------------------------------------ real files
def test_nuscenes_pcd_bin_plain_file():
    path = realdata(str(NUSCENES_PCD_BIN.relative_to(REALDATA)))
    cloud = read_points(path)
    reference = np.fromfile(path, np.float32).reshape(-1, 5)
    assert cloud.points.shape == (34688, 5) and cloud.columns[-1] == "ring"
    np.testing.assert_array_equal(cloud.points, reference)
    assert set(np.unique(cloud.points[:, 4]).astype(int)) <= set(range(32))
    sample = load_sample(file_info(path), None, feature_columns=("intensity", "ring"))
    np.testing.assert_array_equal(sample.points.numpy(), reference)


def test_kitti_camera_fov_cropped_bin():
    """mmdetection3d's 000008.bin is 'velodyne_reduced': every point projects inside image_2."""
    path = realdata("mmdetection3d/demo/data/kitti/000008.bin")
    cloud = read_points(path)
    assert cloud.points.shape == (17238, 4)
    cam2img = np.loadtxt(realdata("mmdetection3d/demo/data/kitti/000008.txt")).reshape(4, 4)
    # lidar2cam = R0_rect @ Tr_velo_to_cam of this frame (the 2011_09_26 calibration of KITTI 000001-5).
    from pointformer.data.readers.kitti import read_kitti_calib

    calib = read_kitti_calib(realdata("kitti_openpcdet_pr653/training/calib/000001.txt"))
    np.testing.assert_allclose(calib.P2, cam2img[:3], atol=1e-6)
    xyz = cloud.points[:, :3].astype(np.float64)
    rect = xyz @ calib.velo_to_rect[:3, :3].T + calib.velo_to_rect[:3, 3]
    uv = calib.project_rect(rect)
    assert (rect[:, 2] > 0).all()
    assert (uv[:, 0] >= -1).all() and (uv[:, 0] <= 1242).all() and (uv[:, 1] >= -1).all() and (uv[:, 1] <= 375).all()


def test_semantickitti_npy_with_labels():
    points = realdata("semantickitti_open3d_ml/examples/demo_data/points/000700.npy")
    labels = realdata("semantickitti_open3d_ml/examples/demo_data/labels/000700.npy")
    info = file_info(points, labels_path=labels)
    assert info.lidar.columns == ("x", "y", "z")
    sample = load_sample(info, None, feature_columns=())
    reference_xyz, reference_labels = np.load(points), np.load(labels)[:, 0]
    assert sample.points.shape == (len(reference_xyz), 3) == (85962, 3)
    np.testing.assert_array_equal(sample.points.numpy(), reference_xyz)
    np.testing.assert_array_equal(sample.point_labels.numpy(), reference_labels)
    assert sample.point_labels.min() >= 0 and sample.point_labels.max() <= 19


def test_semantickitti_bin_with_label_file():
    scan = realdata("mmdetection3d/tests/data/semantickitti/sequences/00/velodyne/000000.bin")
    label = realdata("mmdetection3d/tests/data/semantickitti/sequences/00/labels/000000.label")
    cloud = read_points(scan, labels_path=label)
    raw = np.fromfile(label, np.uint32)
    np.testing.assert_array_equal(cloud.labels, raw & 0xFFFF)
    np.testing.assert_array_equal(cloud.instance_ids, raw >> 16)
    assert set(cloud.labels.tolist()) <= {0, 50, 52, 70, 71, 80}


def test_las_through_laspy():
    laspy = pytest.importorskip("laspy")
    path = realdata("aerial_laspy/simple.las")
    reference = laspy.read(str(path))
    xyz = np.stack([np.asarray(reference.x), np.asarray(reference.y), np.asarray(reference.z)], 1)
    info = file_info(path)
    origin = np.asarray(info.meta["origin"])
    np.testing.assert_array_equal(origin, np.floor(xyz.min(axis=0)))
    sample = load_sample(info, None)
    assert sample.points.shape == (1065, 4)
    # Re-centred float32 keeps the 0.01 ft scale; absolute float32 would be off by up to 0.03 ft.
    np.testing.assert_allclose(sample.points[:, :3].numpy() + origin, xyz, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(sample.points[:, 3].numpy(), np.asarray(reference.intensity))
    labels = sample.point_labels.numpy()
    assert (labels == 1).sum() == 789 and (labels == 2).sum() == 276
    gps = read_points(path, ("x", "y", "z", "gps_time"), origin=origin)
    np.testing.assert_allclose(gps.points[:, 3], np.asarray(reference.gps_time).astype(np.float32))
    with pytest.raises(ValueError, match=r"simple\.las.*\['ring'\] requested"):
        read_points(path, ("x", "y", "z", "ring"))


def test_truncated_las_is_an_error(tmp_path):
    pytest.importorskip("laspy")
    data = realdata("aerial_laspy/simple.las").read_bytes()
    (tmp_path / "cut.las").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.las: laspy could not read"):
        read_points(tmp_path / "cut.las")


# ------------------------------------------------------------------ point counting
def test_count_points_in_boxes_matches_a_python_loop():
    rng = np.random.default_rng(5)
    points = rng.uniform(-10, 10, size=(500, 3))
    points[:5] = np.nan
    boxes = Boxes3D(torch.from_numpy(np.concatenate(
        [rng.uniform(-8, 8, (13, 3)), rng.uniform(0.5, 6, (13, 3)), rng.uniform(-np.pi, np.pi, (13, 1))], 1)))
    expected = []
    for x, y, z, l, w, h, yaw in boxes.tensor.double().tolist():
        count = 0
        for px, py, pz in points.tolist():
            dx, dy = px - x, py - y
            u, v = dx * np.cos(yaw) + dy * np.sin(yaw), -dx * np.sin(yaw) + dy * np.cos(yaw)
            count += abs(u) <= l / 2 and abs(v) <= w / 2 and abs(pz - z) <= h / 2
        expected.append(count)
    assert count_points_in_boxes(points, boxes).tolist() == expected
    assert count_points_in_boxes(torch.from_numpy(points).float(), boxes).tolist() == boxes.count_points(
        torch.from_numpy(points).float()).tolist()
    assert count_points_in_boxes(np.zeros((0, 3)), boxes).tolist() == [0] * 13
    assert count_points_in_boxes(points, Boxes3D.empty(False)).tolist() == []
    assert count_points_in_boxes(points, Boxes3D.empty(False)).dtype == torch.int64


def points_on_faces(box: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n * 7, 3): points on each of the 6 faces of a box and on its corners, rotated by its yaw."""
    half = box[3:6] / 2
    local = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            face = rng.uniform(-1, 1, (n, 3)) * half
            face[:, axis] = sign * half[axis]
            local.append(face)
    local.append(rng.choice([-1.0, 1.0], (n, 3)) * half)
    local = np.concatenate(local)
    cos, sin = np.cos(box[6]), np.sin(box[6])
    x = local[:, 0] * cos - local[:, 1] * sin + box[0]
    y = local[:, 0] * sin + local[:, 1] * cos + box[1]
    return np.stack([x, y, local[:, 2] + box[2]], axis=1)


@pytest.mark.parametrize("seed", range(3))
def test_count_points_in_boxes_equals_boxes3d_count_points(seed):
    """Same counts as the dense rule on random boxes, points on their faces and corners (after
    rounding some land just inside, some just outside), axis-aligned and quarter-turn boxes, huge
    coordinates, NaN / inf points and a NaN box."""
    rng = np.random.default_rng(seed)
    m = 40
    boxes = np.concatenate([rng.uniform(-30, 30, (m, 3)), rng.uniform(0.3, 8, (m, 3)),
                            rng.uniform(-np.pi, np.pi, (m, 1))], axis=1)
    boxes[:4, 6] = [0.0, np.pi / 2, -np.pi, -np.pi / 2]
    boxes[4, :3] = [5e4, -5e4, 10.0]
    boxes[5] = np.nan
    points = np.concatenate([
        rng.uniform(-35, 35, (4000, 3)),
        *[points_on_faces(box, rng, 20) for box in boxes[:5]],
        boxes[:5, :3],  # centres
        [[np.nan, 0, 0], [np.inf, 0, 0], [0, -np.inf, 0], [1e30, 1e30, 1e30]],
    ])
    for dtype in (torch.float64, torch.float32):
        tensor = torch.from_numpy(points).to(dtype)
        box_tensor = Boxes3D(torch.from_numpy(boxes).to(dtype))
        expected = box_tensor.count_points(tensor)
        got = count_points_in_boxes(tensor, box_tensor)
        assert got.dtype == torch.int64 and got.tolist() == expected.tolist()
        assert got[5] == 0 and (got[:5] >= 1).all()
    assert count_points_in_boxes(points, Boxes3D(torch.from_numpy(boxes))).tolist() == Boxes3D(
        torch.from_numpy(boxes)).count_points(torch.from_numpy(points)).tolist()
    # Points on the faces of an axis-aligned box with representable values: all counted.
    cube = Boxes3D(torch.tensor([[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 0.0]], dtype=torch.float64))
    faces = torch.tensor([[3.0, 2, 3], [-1, 2, 3], [1, 3, 3], [1, 1, 3], [1, 2, 3.5], [1, 2, 2.5], [3, 3, 3.5],
                          [3.0 + 1e-9, 2, 3]], dtype=torch.float64)
    assert count_points_in_boxes(faces, cube).tolist() == [7] == cube.count_points(faces).tolist()


def test_registered_loader_for_a_point_source(tmp_path):
    points = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "p.npy", points)
    info = file_info(tmp_path / "p.npy")
    info.lidar = PointSource(path="p.npy", format="npy", columns=("x", "y", "z"))
    sample = load_sample(info, tmp_path, feature_columns=())
    np.testing.assert_array_equal(sample.points.numpy(), points)


def test_count_points_in_boxes_never_pairs_every_point_with_every_box(monkeypatch):
    """The exact test sees only the points near each box (the axis-aligned pre-filter), so memory
    stays O(P) per box: no call pairs all 20 000 points with even one box."""
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(-50, 50, (20_000, 3)))
    boxes = Boxes3D(torch.from_numpy(np.concatenate([rng.uniform(-40, 40, (30, 3)), rng.uniform(1, 4, (30, 3)),
                                                     rng.uniform(-np.pi, np.pi, (30, 1))], 1)))
    expected = boxes.count_points(points).tolist()
    pairs = []
    dense = Boxes3D.points_in_boxes

    def spy(self, query):
        pairs.append(len(query) * len(self))
        return dense(self, query)

    monkeypatch.setattr(Boxes3D, "points_in_boxes", spy)
    assert count_points_in_boxes(points, boxes).tolist() == expected
    assert pairs and max(pairs) < 2_000


def test_real_waymo_kitti_format_bin_with_declared_columns():
    path = realdata("mmdetection3d/tests/data/waymo/kitti_format/training/velodyne/0000000.bin")
    columns = ("x", "y", "z", "intensity", "elongation", "timestamp")
    cloud = read_points(path, columns)
    assert cloud.points.shape == (800, 6) and cloud.columns == columns
    np.testing.assert_array_equal(cloud.points, np.fromfile(path, np.float32).reshape(-1, 6))
    with pytest.raises(ValueError, match="not a whole number"):
        read_points(path, ("x", "y", "z", "intensity", "elongation", "timestamp", "extra"))
