"""KITTI reader and label writer: the real OpenPCDet sample frames against OpenPCDet's own infos,
mmdetection3d's camera-FOV-cropped frame against its infos, a brute-force projection twin,
round trips through label_2, and bad input."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.data.infos import load_infos, load_sample, save_infos
from pointformer.data.readers.kitti import (
    KittiCalib,
    KittiObject,
    KittiReader,
    camera_rotation_y,
    image_boxes,
    kitti_objects_from_boxes,
    parse_kitti_label_line,
    read_kitti_calib,
    read_kitti_labels,
    read_png_shape,
    write_kitti_labels,
)
from pointformer.structures import Boxes3D

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
KITTI_ROOT = REALDATA / "kitti_openpcdet_pr653"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Info pkls contain only dicts, lists and numpy arrays; refuse anything else.
    (``_codecs.encode`` is how protocol-2 pickles store an array's raw bytes.)"""

    def find_class(self, module, name):
        if module.split(".")[0] in ("numpy", "builtins") or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def load_pkl(path: Path):
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    with open(path, "rb") as handle:
        return _NumpyOnlyUnpickler(handle).load()


def kitti_root() -> Path:
    if not (KITTI_ROOT / "training" / "velodyne").is_dir():
        pytest.skip(f"real data {KITTI_ROOT} not available")
    return KITTI_ROOT


CALIB_TEXT = """P0: 7.215377e+02 0 6.095593e+02 0 0 7.215377e+02 1.728540e+02 0 0 0 1 0
P1: 7.215377e+02 0 6.095593e+02 -3.875744e+02 0 7.215377e+02 1.728540e+02 0 0 0 1 0
P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
P3: 7.215377e+02 0 6.095593e+02 -3.395242e+02 0 7.215377e+02 1.728540e+02 2.199936e+00 0 0 1 2.729905e-03
R0_rect: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
Tr_velo_to_cam: 7.533745e-03 -9.999714e-01 -6.166020e-04 -4.069766e-03 1.480249e-02 7.280733e-04 -9.998902e-01 -7.631618e-02 9.998621e-01 7.523790e-03 1.480755e-02 -2.717806e-01
Tr_imu_to_velo: 9.999976e-01 7.553071e-04 -2.035826e-03 -8.086759e-01 -7.854027e-04 9.998898e-01 -1.482298e-02 3.195559e-01 2.024406e-03 1.482454e-02 9.998881e-01 -7.997231e-01
"""

LABEL_TEXT = """Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 1.00 1.75 13.22 1.62
Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01
DontCare -1 -1 -10 5.00 229.89 214.12 367.61 -1 -1 -1 -1000 -1000 -1000 -10
"""


def make_layout(root: Path, frames: dict[str, str | None], folder: str = "training", points: int = 50) -> Path:
    """A synthetic KITTI tree: random velodyne clouds, CALIB_TEXT, the given label texts."""
    rng = np.random.default_rng(0)
    for sub in ("velodyne", "calib") + (("label_2",) if any(v is not None for v in frames.values()) else ()):
        (root / folder / sub).mkdir(parents=True, exist_ok=True)
    for frame_id, label in frames.items():
        rng.uniform(-20, 20, size=(points, 4)).astype(np.float32).tofile(root / folder / "velodyne" / f"{frame_id}.bin")
        (root / folder / "calib" / f"{frame_id}.txt").write_text(CALIB_TEXT)
        if label is not None:
            (root / folder / "label_2" / f"{frame_id}.txt").write_text(label)
    return root


def yaw_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi)


# ------------------------------------------------------------------ real frames vs OpenPCDet
def test_real_frames_match_openpcdet_infos():
    root = kitti_root()
    reference = load_pkl(root / "kitti_infos_train.pkl")
    reader = KittiReader(root)
    assert reader.ids == ["000000", "000001", "000002", "000003", "000004", "000005"]
    max_heading, max_centre, count_diffs = 0.0, 0.0, []
    for info, ref in zip(reader.infos, reference):
        annos = ref["annos"]
        assert info.sample_id == ref["point_cloud"]["lidar_idx"]
        boxes = np.array(info.annotations["boxes"])
        gt = annos["gt_boxes_lidar"]
        keep = annos["name"] != "DontCare"
        assert info.annotations["names"] == annos["name"][keep].tolist()
        centre = np.abs(boxes[:, :3] - gt[:, :3]).max()
        assert centre < 1e-3
        np.testing.assert_allclose(boxes[:, 3:6], gt[:, 3:6], rtol=0, atol=1e-9)
        # OpenPCDet's heading is -ry - pi/2, ours carries the heading through the calibration
        # rotation: they differ by at most the yaw of the camera's x / z axes seen from the LiDAR.
        calib = read_kitti_calib(root / "training" / "calib" / f"{info.sample_id}.txt")
        axes = np.linalg.inv(calib.velo_to_rect)[:3, :3]
        bound = max(abs(np.arctan2(axes[1, 2], axes[0, 2])), abs(np.arctan2(axes[0, 0], -axes[1, 0])))
        heading = yaw_difference(boxes[:, 6], gt[:, 6])
        assert (heading <= bound + 1e-6).all(), (info.sample_id, heading, bound)
        max_heading, max_centre = max(max_heading, heading.max()), max(max_centre, centre)
        counts = np.array(info.annotations["num_points"])
        count_diffs += np.abs(counts - annos["num_points_in_gt"][keep]).tolist()
        # KITTI 2D info and calibration, kept for the evaluation.
        kitti = info.meta["kitti"]
        for key, ref_key in (("truncated", "truncated"), ("occluded", "occluded"), ("alpha", "alpha"),
                             ("bbox", "bbox"), ("location", "location"), ("rotation_y", "rotation_y")):
            np.testing.assert_allclose(kitti["objects"][key], annos[ref_key][keep], atol=1e-4)
        np.testing.assert_allclose(np.array(kitti["objects"]["dimensions_hwl"])[:, [2, 0, 1]],
                                   annos["dimensions"][keep], atol=1e-9)  # OpenPCDet stores (l, h, w)
        assert len(kitti["dontcare"]["bbox"]) == int((~keep).sum())
        np.testing.assert_allclose(np.reshape(kitti["dontcare"]["bbox"], (-1, 4)), annos["bbox"][~keep], atol=1e-4)
        for name in ("P2", "R0_rect", "Tr_velo_to_cam"):
            np.testing.assert_allclose(kitti["calib"][name], ref["calib"][name], atol=1e-12)
    assert max_heading < 2e-3 and max_centre < 1e-5
    # OpenPCDet counts the camera-FOV points in the same LiDAR boxes; all these boxes are in view.
    assert max(count_diffs) <= 2, count_diffs


def test_real_frame_loads_as_a_sample():
    root = kitti_root()
    reader = KittiReader(root, ids=["000002"])
    sample = reader[0]
    raw = np.fromfile(root / "training" / "velodyne" / "000002.bin", np.float32).reshape(-1, 4)
    assert sample.point_columns == ("x", "y", "z", "intensity")
    np.testing.assert_array_equal(sample.points.numpy(), raw)
    assert sample.annotations.names == ["Misc", "Car"]
    assert sample.boxes.tensor.shape == (2, 7)
    assert sample.meta["kitti"]["image_shape"] == [375, 1242]
    # The stored counts are what Boxes3D itself counts in the loaded sample.
    assert sample.boxes.count_points(sample.points).tolist() == sample.annotations.num_points.tolist()


def test_infos_survive_the_json_info_file(tmp_path):
    root = kitti_root()
    reader = KittiReader(root, ids=["000001", "000003"])
    save_infos(tmp_path / "infos.json", reader.infos, dataset="kitti")
    infos, _ = load_infos(tmp_path / "infos.json")
    assert [i.to_dict() for i in infos] == [i.to_dict() for i in reader.infos]
    sample = load_sample(infos[0], root)
    np.testing.assert_array_equal(sample.boxes.tensor.numpy(), reader[0].boxes.tensor.numpy())
    assert KittiCalib.from_meta(infos[1].meta["kitti"]["calib"]).velo_to_rect.shape == (4, 4)


def test_image_shape_from_png_header():
    root = kitti_root()
    assert read_png_shape(root / "training" / "image_2" / "000000.png") == (370, 1224)


def test_fov_cropped_frame_matches_mmdetection3d_infos(tmp_path):
    """mmdetection3d's demo frame 000008 (velodyne_reduced) rebuilt as a KITTI tree from its info
    pkl: calib and label_2 written by our writer, the counts checked against num_lidar_pts."""
    data = REALDATA / "mmdetection3d" / "demo" / "data" / "kitti"
    entry = load_pkl(data / "000008.pkl")["data_list"][0]
    for sub in ("velodyne", "calib", "label_2"):
        (tmp_path / "training" / sub).mkdir(parents=True)
    os.symlink(data / "000008.bin", tmp_path / "training" / "velodyne" / "000008.bin")
    matrices = {
        "P2": np.array(entry["images"]["CAM2"]["cam2img"])[:3],
        "R0_rect": np.array(entry["images"]["R0_rect"])[:3, :3],
        "Tr_velo_to_cam": np.array(entry["lidar_points"]["Tr_velo_to_cam"])[:3],
    }
    (tmp_path / "training" / "calib" / "000008.txt").write_text(
        "".join(f"{k}: {' '.join(f'{v:.12e}' for v in m.ravel())}\n" for k, m in matrices.items())
    )
    classes = {0: "Pedestrian", 1: "Cyclist", 2: "Car", -1: "DontCare"}
    objects = [
        KittiObject(classes[i["bbox_label_3d"]], i["truncated"], i["occluded"], i["alpha"], tuple(i["bbox"]),
                    (i["bbox_3d"][4], i["bbox_3d"][5], i["bbox_3d"][3]), tuple(i["bbox_3d"][:3]), i["bbox_3d"][6])
        for i in entry["instances"]  # mmdet3d camera boxes: x, y, z (bottom), l, h, w, ry
    ]
    write_kitti_labels(tmp_path / "training" / "label_2" / "000008.txt", objects, decimals=2)
    info = KittiReader(tmp_path).info(0)
    expected = [i["num_lidar_pts"] for i in entry["instances"] if i["bbox_label_3d"] >= 0]
    assert info.annotations["names"] == ["Car"] * 6
    assert len(info.meta["kitti"]["dontcare"]["bbox"]) == 4
    assert np.abs(np.array(info.annotations["num_points"]) - expected).max() <= 2
    np.testing.assert_allclose(np.array(matrices["R0_rect"]) @ np.array(matrices["Tr_velo_to_cam"])[:, :3],
                               np.array(entry["images"]["CAM2"]["lidar2cam"])[:3, :3], atol=1e-6)


# ------------------------------------------------------------------ projection and writer
def brute_force_image_box(box: list[float], calib: KittiCalib) -> list[float]:
    """One box's corners by hand (Python loops), into the image, min/max."""
    x, y, z, l, w, h, yaw = box
    us, vs = [], []
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            for sz in (-0.5, 0.5):
                cx = x + sx * l * np.cos(yaw) - sy * w * np.sin(yaw)
                cy = y + sx * l * np.sin(yaw) + sy * w * np.cos(yaw)
                cz = z + sz * h
                rect = calib.velo_to_rect @ np.array([cx, cy, cz, 1.0])
                u, v, depth = calib.P2 @ rect
                us.append(u / depth)
                vs.append(v / depth)
    return [min(us), min(vs), max(us), max(vs)]


def test_image_boxes_match_brute_force_and_the_real_2d_labels():
    root = kitti_root()
    reader = KittiReader(root, count_points=False)
    for info in reader.infos:
        calib = KittiCalib.from_meta(info.meta["kitti"]["calib"])
        boxes = Boxes3D(torch.tensor(info.annotations["boxes"], dtype=torch.float64))
        projected = image_boxes(boxes, calib)
        expected = [brute_force_image_box(b, calib) for b in boxes.tensor.tolist()]
        np.testing.assert_allclose(projected, expected, rtol=0, atol=1e-6)
        # KITTI's 2D boxes of vehicles are the projected 3D boxes; pedestrians' are drawn wider.
        shape = info.meta["kitti"]["image_shape"] or [375, 1242]
        clipped = image_boxes(boxes, calib, tuple(shape))
        labelled = np.array(info.meta["kitti"]["objects"]["bbox"])
        vehicles = np.array([n != "Pedestrian" for n in info.annotations["names"]])
        assert np.abs(clipped - labelled)[vehicles].max(initial=0) < 1.0
        assert np.abs(clipped - labelled).max() < 12.0


def test_camera_rotation_y_is_the_exact_inverse_of_the_reader():
    calib = read_kitti_calib_text(CALIB_TEXT)
    rng = np.random.default_rng(1)
    ry = np.concatenate([rng.uniform(-np.pi, np.pi, 200), [-np.pi, 0.0, np.pi / 2, -np.pi / 2, np.pi - 1e-12]])
    boxes = Boxes3D.from_kitti_camera(np.tile([1.0, 1.5, 10.0], (len(ry), 1)), np.tile([1.5, 1.6, 4.0], (len(ry), 1)),
                                      ry, calib.velo_to_rect, dtype=torch.float64)
    back = camera_rotation_y(boxes.yaw.numpy(), calib.velo_to_rect)
    assert yaw_difference(back, ry).max() < 1e-12
    # The projection-based inverse in Boxes3D is close but not exact (second order in the tilt).
    approx = boxes.to_kitti_camera(calib.velo_to_rect)["rotation_y"]
    assert yaw_difference(approx, ry).max() < 1e-3


def read_kitti_calib_text(text: str) -> KittiCalib:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calib.txt"
        path.write_text(text)
        return read_kitti_calib(path)


def test_writer_reproduces_the_real_labels():
    root = kitti_root()
    for info in KittiReader(root, count_points=False).infos:
        kitti = info.meta["kitti"]
        calib = KittiCalib.from_meta(kitti["calib"])
        boxes = Boxes3D(torch.tensor(info.annotations["boxes"], dtype=torch.float64))
        objects = kitti_objects_from_boxes(
            boxes, info.annotations["names"], calib, bbox=np.array(kitti["objects"]["bbox"]),
            truncated=kitti["objects"]["truncated"], occluded=kitti["objects"]["occluded"],
        )
        original = read_kitti_labels(root / "training" / "label_2" / f"{info.sample_id}.txt")
        original = [o for o in original if o.type != "DontCare"]
        for written, label in zip(objects, original, strict=True):
            assert written.type == label.type and written.occluded == label.occluded
            np.testing.assert_allclose(written.location, label.location, atol=1e-9)
            np.testing.assert_allclose(written.dimensions_hwl, label.dimensions_hwl, atol=1e-9)
            assert yaw_difference(written.rotation_y, label.rotation_y) < 1e-9
            # alpha, ry and the location are each rounded to 2 decimals in the label file (0.0105),
            # and the labels' alpha may be seen from camera 2, 6 cm beside camera 0.
            distance = np.hypot(label.location[0], label.location[2])
            assert yaw_difference(written.alpha, label.alpha) <= 0.0105 + 0.06 / distance
            reparsed = parse_kitti_label_line(written.to_line(), "written")
            np.testing.assert_allclose(reparsed.location, label.location, atol=5e-5)
            assert reparsed.score is None


def test_random_boxes_round_trip_through_label_files(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    yaw = np.concatenate([rng.uniform(-np.pi, np.pi, n - 4), [-np.pi, 0.0, np.pi / 2, np.pi - 1e-7]])
    tensor = np.concatenate([
        np.stack([rng.uniform(2, 70, n), rng.uniform(-30, 30, n), rng.uniform(-2, 1, n)], 1),
        rng.uniform(0.3, 12, (n, 3)), yaw[:, None],
    ], 1)
    boxes = Boxes3D(torch.from_numpy(tensor))
    names = [["Car", "Pedestrian", "Cyclist"][i % 3] for i in range(n)]
    scores = rng.uniform(0, 1, n)
    make_layout(tmp_path, {"000007": ""})
    calib = read_kitti_calib(tmp_path / "training" / "calib" / "000007.txt")
    objects = kitti_objects_from_boxes(boxes, names, calib, scores=scores, image_shape=(375, 1242))
    write_kitti_labels(tmp_path / "training" / "label_2" / "000007.txt", objects)
    info = KittiReader(tmp_path, count_points=False).info(0)
    back = np.array(info.annotations["boxes"])
    assert info.annotations["names"] == names
    np.testing.assert_allclose(back[:, :6], tensor[:, :6], rtol=0, atol=2e-4)  # 4 decimals in the file
    assert yaw_difference(back[:, 6], tensor[:, 6]).max() < 1e-4
    np.testing.assert_allclose(info.meta["kitti"]["objects"]["score"], scores, atol=5e-5)
    bbox = np.array(info.meta["kitti"]["objects"]["bbox"])
    assert (bbox[:, [0, 2]] >= 0).all() and (bbox[:, [0, 2]] <= 1241).all()
    assert (bbox[:, [1, 3]] >= 0).all() and (bbox[:, [1, 3]] <= 374).all()
    assert (np.array(info.meta["kitti"]["objects"]["truncated"]) == -1).all()


def test_writer_with_no_boxes_writes_an_empty_file(tmp_path):
    calib = read_kitti_calib_text(CALIB_TEXT)
    objects = kitti_objects_from_boxes(Boxes3D.empty(False), [], calib)
    write_kitti_labels(tmp_path / "e.txt", objects)
    assert (tmp_path / "e.txt").read_text() == "" and read_kitti_labels(tmp_path / "e.txt") == []
    with pytest.raises(ValueError, match="1 boxes but 2 names"):
        kitti_objects_from_boxes(Boxes3D(torch.zeros(1, 7) + 1), ["Car", "Car"], calib)


# ------------------------------------------------------------------ layout, splits, DontCare
def test_dontcare_kept_out_of_annotations_but_recorded(tmp_path):
    make_layout(tmp_path, {"000000": LABEL_TEXT, "000001": "DontCare -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10\n",
                           "000002": ""})
    reader = KittiReader(tmp_path)
    first, only_dontcare, empty = reader.infos
    assert first.annotations["names"] == ["Car", "Pedestrian"]
    assert first.meta["kitti"]["dontcare"]["bbox"] == [[5.0, 229.89, 214.12, 367.61]]
    assert first.meta["kitti"]["objects"]["occluded"] == [0, 0]
    assert only_dontcare.annotations["boxes"] == [] and len(only_dontcare.meta["kitti"]["dontcare"]["type"]) == 1
    assert empty.annotations["boxes"] == [] and empty.meta["kitti"]["dontcare"]["bbox"] == []
    assert len(reader[2].annotations) == 0
    counts = first.annotations["num_points"]
    points = np.fromfile(tmp_path / "training" / "velodyne" / "000000.bin", np.float32).reshape(-1, 4)
    boxes = Boxes3D(torch.tensor(first.annotations["boxes"], dtype=torch.float64))
    assert counts == boxes.count_points(torch.from_numpy(points)).tolist()


def test_splits_from_imagesets_and_explicit_ids(tmp_path):
    make_layout(tmp_path, {"000000": LABEL_TEXT, "000001": LABEL_TEXT, "000002": LABEL_TEXT})
    make_layout(tmp_path, {"000010": None, "000011": None}, folder="testing")
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "train.txt").write_text("000000\n000002\n\n")
    (tmp_path / "ImageSets" / "test.txt").write_text("000011\n")
    assert KittiReader(tmp_path).ids == ["000000", "000001", "000002"]
    assert KittiReader(tmp_path, "train").ids == ["000000", "000002"]
    assert KittiReader(tmp_path, "training", ids=["000001"]).ids == ["000001"]
    assert KittiReader(tmp_path, "val", ids=["000001"]).folder == "training"  # no ImageSets/val.txt needed
    test = KittiReader(tmp_path, "test")
    assert test.folder == "testing" and test.ids == ["000011"] and not test.labelled
    info = test.info(0)
    assert info.annotations is None and "calib" in info.meta["kitti"]
    assert test[0].points.shape == (50, 4) and len(test[0].annotations) == 0
    assert len(KittiReader(tmp_path, "testing")) == 2
    with pytest.raises(FileNotFoundError, match=r"ImageSets/val\.txt not found"):
        KittiReader(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"velodyne/000099\.bin"):
        KittiReader(tmp_path, ids=["000000", "000099"])
    with pytest.raises(IndexError):
        KittiReader(tmp_path).info(3)
    assert KittiReader(tmp_path).info(-1).sample_id == "000002"


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "line, message",
    [
        ("Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 1.00 1.75 13.22", "14 columns"),
        ("Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 1.00 1.75 13.22 1.62 0.9 7", "17 columns"),
        ("Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 abc 4.15 1.00 1.75 13.22 1.62", "non-numeric"),
        ("Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 nan 1.75 13.22 1.62", "non-finite"),
        ("Car 0.00 0.5 1.55 614.24 181.78 727.31 284.77 1.57 1.73 4.15 1.00 1.75 13.22 1.62", "occluded"),
        ("Car 0.00 0 1.55 614.24 181.78 727.31 284.77 1.57 0 4.15 1.00 1.75 13.22 1.62", "non-positive size"),
    ],
)
def test_bad_label_line_names_file_and_line(tmp_path, line, message):
    make_layout(tmp_path, {"000000": LABEL_TEXT.splitlines()[0] + "\n\n" + line + "\n"})
    with pytest.raises(ValueError, match=rf"label_2/000000\.txt:3: .*{message}"):
        KittiReader(tmp_path).info(0)


def test_score_column_is_read():
    obj = parse_kitti_label_line("Car -1 -1 0.1 1 2 3 4 1.5 1.6 4.0 1 2 10 0.2 0.875", "x")
    assert obj.score == 0.875 and obj.occluded == -1
    assert parse_kitti_label_line(obj.to_line(), "y") == obj


def test_missing_calib_and_bad_calib(tmp_path):
    make_layout(tmp_path, {"000000": LABEL_TEXT})
    (tmp_path / "training" / "calib" / "000000.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"calib/000000\.txt"):
        KittiReader(tmp_path).info(0)
    (tmp_path / "training" / "calib" / "000000.txt").write_text(CALIB_TEXT.replace("R0_rect", "R9"))
    with pytest.raises(ValueError, match=r"000000\.txt: calibration has no R0_rect"):
        KittiReader(tmp_path).info(0)
    (tmp_path / "training" / "calib" / "000000.txt").write_text(CALIB_TEXT.replace("2.163791e-01 ", ""))
    with pytest.raises(ValueError, match=r"000000\.txt: P2 has 11 values"):
        KittiReader(tmp_path).info(0)


def test_missing_label_file_and_truncated_velodyne(tmp_path):
    make_layout(tmp_path, {"000000": LABEL_TEXT, "000001": LABEL_TEXT})
    (tmp_path / "training" / "label_2" / "000001.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"label_2/000001\.txt"):
        KittiReader(tmp_path).info(1)
    velodyne = tmp_path / "training" / "velodyne" / "000000.bin"
    velodyne.write_bytes(velodyne.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"velodyne/000000\.bin.*truncated"):
        KittiReader(tmp_path).info(0)


def test_non_finite_velodyne_points_dropped_and_counted(tmp_path):
    make_layout(tmp_path, {"000000": LABEL_TEXT})
    velodyne = tmp_path / "training" / "velodyne" / "000000.bin"
    points = np.fromfile(velodyne, np.float32).reshape(-1, 4)
    points[[1, 2], 0] = np.nan
    points[3, 3] = np.inf
    points.tofile(velodyne)
    sample = KittiReader(tmp_path)[0]
    assert sample.meta["dropped_non_finite"] == 3 and sample.points.shape == (47, 4)
    assert torch.isfinite(sample.points).all()
    assert load_sample(KittiReader(tmp_path).info(0), tmp_path).meta["dropped_non_finite"] == 3
