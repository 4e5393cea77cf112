"""Custom LiDAR-only datasets: the documented layout in every point format, labels against what
was written, point counts against a Python loop, the label writer's round trip, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pointformer.data.dataset import DetectionDataset, collate
from pointformer.data.infos import empty_annotations_record, load_infos, load_sample, save_infos
from pointformer.data.readers.custom import (
    CustomReader,
    custom_class_names,
    read_custom_labels,
    read_dataset_config,
    write_custom_labels,
)
from pointformer.structures import Annotations, Boxes3D


def brute_force_count(points: np.ndarray, box: list[float]) -> int:
    x, y, z, l, w, h, yaw = box[:7]
    count = 0
    for px, py, pz in points[:, :3].tolist():
        dx, dy = px - x, py - y
        u = dx * math.cos(yaw) + dy * math.sin(yaw)
        v = -dx * math.sin(yaw) + dy * math.cos(yaw)
        count += abs(u) <= l / 2 and abs(v) <= w / 2 and abs(pz - z) <= h / 2
    return count


def cloud(seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-10, 10, (n, 3)), rng.uniform(0, 1, (n, 1))], 1).astype(np.float32)


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


BOXES_A = [
    {"box": [1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.3], "name": "car", "id": "track-7"},
    {"box": [-3.0, 1.0, 0.5, 0.8, 0.8, 1.8, 3 * math.pi / 2], "name": "pedestrian", "num_points": 12},
]


def make_dataset(root: Path, with_config: bool = True) -> Path:
    """Frames a (.bin), b (.npy), c (.pcd.bin is nuScenes-shaped, so .npy again), d (unlabelled)."""
    if with_config:
        write_json(root / "dataset.json", {"classes": ["car", "pedestrian", "cyclist"],
                                          "point_columns": ["x", "y", "z", "intensity"], "point_dtype": "float32"})
    (root / "points").mkdir(parents=True)
    cloud(0).tofile(root / "points" / "a.bin")
    np.save(root / "points" / "b.npy", cloud(1))
    np.save(root / "points" / "c.npy", cloud(2))
    cloud(3).tofile(root / "points" / "d.bin")
    write_json(root / "labels" / "a.json", {"boxes": BOXES_A})
    write_json(root / "labels" / "b.json", {"boxes": [
        {"box": [0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 0.0], "name": "cyclist", "velocity": [1.5, -0.5], "attribute": "moving"},
    ]})
    write_json(root / "labels" / "c.json", {"boxes": []})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a\nb\n\n")
    (root / "splits" / "test.txt").write_text("d\n")
    return root


# ------------------------------------------------------------------ the layout
def test_reader_matches_what_was_written(tmp_path):
    root = make_dataset(tmp_path)
    reader = CustomReader(root)
    assert reader.ids == ["a", "b", "c", "d"] and len(reader) == 4
    a, b, c, d = reader.infos
    assert a.dataset == "custom" and a.sample_id == "a" and a.lidar.format == "bin" and b.lidar.format == "npy"
    # Any box with a velocity makes every box of the split 9 wide, NaN (null) where unknown.
    assert [len(row) for row in a.annotations["boxes"]] == [9, 9]
    assert a.annotations["boxes"][0][7:] == [None, None]
    assert b.annotations["boxes"][0][7:] == [1.5, -0.5]
    assert a.annotations["names"] == ["car", "pedestrian"]
    assert a.annotations["ids"] == ["track-7", ""]
    assert b.annotations["attributes"] == ["moving"]
    assert a.annotations["boxes"][1][6] == pytest.approx(-math.pi / 2)  # 3 pi / 2 normalised
    # Counted where missing (against a Python loop), kept where given.
    assert a.annotations["num_points"] == [brute_force_count(cloud(0), BOXES_A[0]["box"]), 12]
    assert b.annotations["num_points"] == [brute_force_count(cloud(1), [0, 0, 0, 5, 5, 5, 0])]
    # d has no label file: in a labelled split, an empty record of the split's width.
    assert c.annotations["boxes"] == [] and d.annotations == empty_annotations_record(9)

    sample = reader[0]
    np.testing.assert_array_equal(sample.points.numpy(), cloud(0))
    assert sample.boxes.has_velocity and torch.isnan(sample.boxes.velocity[0]).all()
    np.testing.assert_allclose(sample.boxes.tensor[0, :7].numpy(), BOXES_A[0]["box"], rtol=1e-6)
    assert len(reader[3].annotations) == 0 and reader[3].boxes.tensor.shape == (0, 9)


def test_infos_survive_the_json_info_file(tmp_path):
    root = make_dataset(tmp_path / "data")
    reader = CustomReader(root)
    save_infos(tmp_path / "infos.json", reader.infos, dataset="custom")
    infos, header = load_infos(tmp_path / "infos.json")
    assert header["dataset"] == "custom" and [i.to_dict() for i in infos] == [i.to_dict() for i in reader.infos]
    again = load_sample(infos[0], root)
    np.testing.assert_array_equal(again.boxes.tensor.numpy(), reader[0].boxes.tensor.numpy())


def test_class_names(tmp_path):
    root = make_dataset(tmp_path)
    assert custom_class_names(root) == ("car", "pedestrian", "cyclist")
    (root / "dataset.json").unlink()
    assert custom_class_names(root) == ("car", "cyclist", "pedestrian")


def test_splits(tmp_path):
    root = make_dataset(tmp_path)
    train = CustomReader(root, "train")
    assert train.ids == ["a", "b"]
    test = CustomReader(root, "test")
    assert test.ids == ["d"] and test.info(0).annotations is None
    with pytest.raises(FileNotFoundError, match=r"splits/val\.txt not found"):
        CustomReader(root, "val")
    (root / "splits" / "bad.txt").write_text("a\nbb\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: frame 'bb' has no point file.*did you mean 'b'"):
        CustomReader(root, "bad")
    (root / "splits" / "twice.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match=r"twice\.txt:2: frame 'a' listed twice"):
        CustomReader(root, "twice")


def test_no_velocity_anywhere_gives_seven_columns_and_no_counting(tmp_path):
    root = make_dataset(tmp_path)
    (root / "labels" / "b.json").unlink()
    reader = CustomReader(root, count_points=False)
    assert [len(row) for row in reader.info(0).annotations["boxes"]] == [7, 7]
    assert reader.info(0).annotations["num_points"] == [-1, 12]
    assert reader.box_dim == 7 and reader.info(1).annotations == empty_annotations_record(7)


def test_frames_without_label_file_batch_with_labelled_ones(tmp_path):
    """A 7-wide split where frames b and d have no label file: every sample has 7-column boxes,
    so a batch of all four concatenates (unlabelled frames used to come back 9 wide)."""
    root = make_dataset(tmp_path / "data")
    (root / "labels" / "b.json").unlink()
    reader = CustomReader(root)
    save_infos(tmp_path / "infos.json", reader.infos)
    dataset = DetectionDataset(tmp_path / "infos.json", root, ("car", "pedestrian", "cyclist"))
    assert dataset.box_dim == 7
    samples = [dataset[i] for i in range(4)]
    assert [s.boxes.tensor.shape for s in samples] == [(2, 7), (0, 7), (0, 7), (0, 7)]
    assert [s.boxes.tensor.shape for s in (reader[1], reader[3])] == [(0, 7), (0, 7)]
    batch = collate(samples)
    assert Boxes3D.cat(batch.boxes).tensor.shape == (2, 7)
    assert [label.tolist() for label in batch.labels] == [[0, 1], [], [], []]
    # A split without any label file stays unlabelled.
    assert CustomReader(root, "test").box_dim is None and CustomReader(root, "test").info(0).annotations is None


def test_defaults_without_dataset_json(tmp_path):
    (tmp_path / "points").mkdir()
    np.save(tmp_path / "points" / "xyz.npy", cloud(4)[:, :3])
    cloud(5).tofile(tmp_path / "points" / "kitti.bin")
    config = read_dataset_config(tmp_path)
    assert config.classes is None and config.point_columns is None and config.point_dtype == "float32"
    reader = CustomReader(tmp_path)
    assert reader.info(0).lidar.columns == ("x", "y", "z", "intensity")
    assert reader.info(1).lidar.columns == ("x", "y", "z")
    assert load_sample(reader.info(1), tmp_path, feature_columns=()).points.shape == (300, 3)
    assert reader.info(0).annotations is None


def test_pcd_and_ply_frames(tmp_path):
    o3d = pytest.importorskip("open3d")
    (tmp_path / "points").mkdir()
    for index, extension in enumerate(("pcd", "ply")):
        points = cloud(10 + index)
        pc = o3d.t.geometry.PointCloud(o3d.core.Tensor(points[:, :3]))
        pc.point.intensity = o3d.core.Tensor(points[:, 3:])
        o3d.t.io.write_point_cloud(str(tmp_path / "points" / f"f{index}.{extension}"), pc)
    write_json(tmp_path / "labels" / "f1.json", {"boxes": [{"box": [0, 0, 0, 6, 6, 6, 0.5], "name": "x"}]})
    reader = CustomReader(tmp_path)
    assert [i.lidar.format for i in reader.infos] == ["pcd", "ply"]
    np.testing.assert_array_equal(reader[0].points.numpy(), cloud(10))
    assert reader.info(1).annotations["num_points"] == [brute_force_count(cloud(11), [0, 0, 0, 6, 6, 6, 0.5])]


def test_non_finite_and_empty_frames(tmp_path):
    (tmp_path / "points").mkdir()
    points = cloud(6)
    points[[0, 5, 9], 1] = np.nan
    points[7, 3] = np.inf
    points.tofile(tmp_path / "points" / "n.bin")
    (tmp_path / "points" / "empty.bin").write_bytes(b"")
    write_json(tmp_path / "labels" / "empty.json", {"boxes": [{"box": [0, 0, 0, 1, 1, 1, 0], "name": "car"}]})
    reader = CustomReader(tmp_path)
    empty, nonfinite = reader[0], reader[1]
    assert empty.points.shape == (0, 4) and empty.annotations.num_points.tolist() == [0]
    assert nonfinite.meta["dropped_non_finite"] == 4 and nonfinite.points.shape == (296, 4)


# ------------------------------------------------------------------ the writer
def test_write_then_read_labels_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    n = 25
    tensor = np.concatenate([rng.uniform(-50, 50, (n, 3)), rng.uniform(0.2, 10, (n, 3)),
                             rng.uniform(-np.pi, np.pi, (n, 1)), rng.normal(size=(n, 2))], 1)
    tensor[::3, 7:] = np.nan  # unknown velocities
    annotations = Annotations(
        Boxes3D(torch.from_numpy(tensor)),
        [["car", "pedestrian"][i % 2] for i in range(n)],
        torch.tensor([i if i % 4 else -1 for i in range(n)]),
        ["moving" if i % 5 == 0 else "" for i in range(n)],
        [f"id-{i}" if i % 2 else "" for i in range(n)],
    )
    write_custom_labels(tmp_path / "labels" / "f.json", annotations)
    record = read_custom_labels(tmp_path / "labels" / "f.json", classes=("car", "pedestrian"))
    back = np.array([[np.nan if v is None else v for v in row] for row in record["boxes"]])
    np.testing.assert_array_equal(back, tensor)
    assert record["names"] == annotations.names and record["ids"] == annotations.ids
    assert record["attributes"] == annotations.attributes
    assert record["num_points"] == annotations.num_points.tolist()
    document = json.loads((tmp_path / "labels" / "f.json").read_text())
    assert "velocity" not in document["boxes"][0] and "num_points" not in document["boxes"][0]

    float32 = Annotations.from_boxes(Boxes3D(torch.from_numpy(tensor).float()), annotations.names)
    write_custom_labels(tmp_path / "f32.json", float32)
    again = read_custom_labels(tmp_path / "f32.json")
    back32 = torch.tensor([[math.nan if v is None else v for v in row] for row in again["boxes"]]).float()
    torch.testing.assert_close(back32, float32.boxes.tensor, rtol=0, atol=0, equal_nan=True)
    short = Annotations.from_boxes(Boxes3D(torch.tensor([[12.3, -1.8, 0.1, 4.5, 1.9, 1.6, 0.05]])), ["car"])
    write_custom_labels(tmp_path / "short.json", short)
    assert json.loads((tmp_path / "short.json").read_text())["boxes"][0]["box"] == [12.3, -1.8, 0.1, 4.5, 1.9, 1.6, 0.05]

    write_custom_labels(tmp_path / "e.json", Annotations.empty(False))
    assert read_custom_labels(tmp_path / "e.json")["boxes"] == []
    bad = Annotations.from_boxes(Boxes3D(torch.tensor([[0.0, 0, 0, 1, 1, 1, float("nan")]])), ["car"])
    with pytest.raises(ValueError, match=r"x\.json: boxes with non-finite"):
        write_custom_labels(tmp_path / "x.json", bad)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "boxes, message",
    [
        ([{"box": [0, 0, 0, 1, 1, 1, 0], "name": "car", "velocty": [1, 2]}],
         r"box 0: unknown key 'velocty' \(did you mean 'velocity'\?\)"),
        ([BOXES_A[0], {"box": [0, 0, 0, 1, 1, 1, 0], "nmae": "car"}], r"box 1: unknown key 'nmae' \(did you mean 'name'\?\)"),
        ([{"box": [0, 0, 0, 1, 1, 1], "name": "car"}], r"box 0: box must be a list of 7 finite numbers"),
        ([{"box": [0, 0, float("nan"), 1, 1, 1, 0], "name": "car"}], r"box 0: box must be a list of 7 finite"),
        ([{"box": [0, 0, 0, 1, -1, 1, 0], "name": "car"}], r"box 0: box size .* must be positive"),
        ([{"box": [0, 0, 0, 1, 1, 1, 0], "name": "cra"}], r"box 0: name 'cra' is not in dataset.json classes \(did you mean 'car'"),
        ([{"box": [0, 0, 0, 1, 1, 1, 0]}], r"box 0: missing required key 'name'"),
        ([{"box": [0, 0, 0, 1, 1, 1, 0], "name": "car", "num_points": 2.5}], r"box 0: num_points must be an integer"),
        ([{"box": [0, 0, 0, 1, 1, 1, 0], "name": "car", "velocity": [1]}], r"box 0: velocity must be a list of 2"),
        (["car"], r"box 0: expected an object"),
    ],
)
def test_bad_label_boxes_name_file_box_and_key(tmp_path, boxes, message):
    root = make_dataset(tmp_path)
    write_json(root / "labels" / "c.json", {"boxes": boxes})
    with pytest.raises(ValueError, match=r"labels/c\.json: " + message):
        CustomReader(root)


def test_bad_label_documents(tmp_path):
    root = make_dataset(tmp_path)
    write_json(root / "labels" / "c.json", {"box": []})
    with pytest.raises(ValueError, match=r"c\.json: unknown key 'box' \(did you mean 'boxes'\?\)"):
        CustomReader(root)
    (root / "labels" / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"c\.json: invalid JSON"):
        CustomReader(root)
    # Labels outside the split are still checked for a point file, not parsed.
    (root / "labels" / "c.json").write_text("{not json")
    assert CustomReader(root, "train").ids == ["a", "b"]


def test_label_without_point_file(tmp_path):
    root = make_dataset(tmp_path)
    write_json(root / "labels" / "zz.json", {"boxes": []})
    with pytest.raises(FileNotFoundError, match=r"zz\.json: label for frame 'zz' but no points/zz"):
        CustomReader(root)


def test_bad_point_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="point folder"):
        CustomReader(tmp_path)
    root = make_dataset(tmp_path)
    np.save(root / "points" / "a.npy", cloud(0))
    with pytest.raises(ValueError, match=r"frame 'a' has two point files, a\.bin and a\.npy"):
        CustomReader(root)
    (root / "points" / "a.npy").unlink()
    (root / "points" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"notes\.txt: unknown point file extension"):
        CustomReader(root)


def test_bad_dataset_json(tmp_path):
    root = make_dataset(tmp_path)
    write_json(root / "dataset.json", {"point_column": ["x", "y", "z"]})
    with pytest.raises(ValueError, match=r"dataset\.json: unknown key 'point_column' \(did you mean 'point_columns'"):
        CustomReader(root)
    write_json(root / "dataset.json", {"point_columns": ["y", "x", "z"]})
    with pytest.raises(ValueError, match="must start with x, y, z"):
        CustomReader(root)
    write_json(root / "dataset.json", {"point_dtype": "float99"})
    with pytest.raises(ValueError, match="float99"):
        CustomReader(root)
    write_json(root / "dataset.json", {"point_columns": ["x", "y", "z", "intensity", "ring", "t", "u"]})
    with pytest.raises(ValueError, match=r"a\.bin: 4800 bytes is not a whole number of 7-column"):
        CustomReader(root).info(0)
