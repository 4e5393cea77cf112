"""GT database round trip against points_in_boxes, and GT sampling checked with shapely."""

from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from pointformer.data.gt_database import GTDatabase, build_gt_database, point_indices_in_boxes, points_in_any_box
from pointformer.data.infos import PointSource, SampleInfo, annotations_to_record, load_sample, save_infos
from pointformer.data.transforms import GTSampling
from pointformer.structures import Annotations, Boxes3D, Sample

COLUMNS = ("x", "y", "z", "intensity")
CLASSES = ("car", "pedestrian")


# ------------------------------------------------------------------ scenes
def scene_boxes(rng: np.random.Generator, n: int, spread: float = 30.0) -> np.ndarray:
    """(n, 9) boxes on a coarse grid so that they never overlap one another."""
    cells = rng.choice(36, size=n, replace=False)
    centre = np.stack([(cells % 6 - 2.5) * spread / 3, (cells // 6 - 2.5) * spread / 3, rng.uniform(-1, 1, n)], 1)
    dims = rng.uniform([2, 0.8, 1.2], [4.5, 2.0, 2.0], (n, 3))
    return np.concatenate([centre, dims, rng.uniform(-math.pi, math.pi, (n, 1)), rng.normal(0, 3, (n, 2))], 1)


def scene_points(rng: np.random.Generator, boxes: np.ndarray, per_box: int, background: int) -> np.ndarray:
    parts = [np.concatenate([rng.uniform([-35, -35, -3], [35, 35, 3], (background, 3)),
                             rng.uniform(0, 1, (background, 1))], 1)]
    for box in boxes:
        local = rng.uniform(-0.5, 0.5, (per_box, 3)) * box[3:6]
        cos, sin = math.cos(box[6]), math.sin(box[6])
        xyz = np.stack([local[:, 0] * cos - local[:, 1] * sin, local[:, 0] * sin + local[:, 1] * cos, local[:, 2]], 1)
        parts.append(np.concatenate([xyz + box[:3], rng.uniform(0, 1, (per_box, 1))], 1))
    return np.concatenate(parts).astype(np.float32)


def write_scene(root: Path, name: str, seed: int, num_boxes: int = 5, per_box: int = 40,
                names: list[str] | None = None, sweeps: int = 0) -> SampleInfo:
    rng = np.random.default_rng(seed)
    boxes = scene_boxes(rng, num_boxes)
    scene_points(rng, boxes, per_box, 400).tofile(root / f"{name}.bin")
    sweep_sources = []
    for k in range(sweeps):
        scene_points(rng, boxes, per_box // 2, 100).tofile(root / f"{name}_sweep{k}.bin")
        sweep_sources.append(PointSource(f"{name}_sweep{k}.bin", "bin", COLUMNS, time_lag=0.05 * (k + 1)))
    names = names or [("car", "pedestrian", "barrier")[i % 3] for i in range(num_boxes)]
    annotations = Annotations(Boxes3D(torch.from_numpy(boxes).float()), names, torch.full((num_boxes,), -1),
                              [f"attr{i}" for i in range(num_boxes)], [f"{name}-inst{i}" for i in range(num_boxes)])
    return SampleInfo("custom", name, PointSource(f"{name}.bin", "bin", COLUMNS), sweep_sources,
                      annotations_to_record(annotations))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    infos = [write_scene(root, f"frame{i}", seed=i) for i in range(6)]
    return root, infos


@pytest.fixture(scope="module")
def database(scenes, tmp_path_factory):
    root, infos = scenes
    out = tmp_path_factory.mktemp("db")
    return GTDatabase(build_gt_database(infos, root, out, CLASSES, progress=False))


# ---------------------------------------------------------- points in boxes
def test_point_indices_in_boxes_matches_dense_rule():
    rng = np.random.default_rng(0)
    boxes = scene_boxes(rng, 6)
    boxes[0, :7] = [1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.0]  # axis-aligned, float32-exact faces and corners
    boxes[1, :7] = [1e5, -1e5, 10, 4, 2, 1.5, 0.3]  # huge coordinates
    points = scene_points(rng, boxes, 50, 500)
    half = boxes[0, 3:6] / 2
    surface = [[boxes[0, 0] + sx * half[0], boxes[0, 1] + sy * half[1], boxes[0, 2] + sz * half[2], 0.5]
               for sx in (-1, 0, 1) for sy in (-1, 0, 1) for sz in (-1, 0, 1)]
    points = torch.from_numpy(np.vstack([points, np.array(surface, dtype=np.float32),
                                         [[np.nan, 0, 0, 0], [points[0, 0], np.inf, 0, 0]]]).astype(np.float32))
    box_set = Boxes3D(torch.from_numpy(np.vstack([boxes, [[np.nan, 0, 0, 1, 1, 1, 0, 0, 0]]])).float())
    dense = box_set.points_in_boxes(points)
    indices = point_indices_in_boxes(points, box_set)
    assert len(indices) == len(box_set)
    for k, index in enumerate(indices):
        assert torch.equal(index, torch.nonzero(dense[:, k]).reshape(-1)), k
    assert len(indices[1]) == 50 and len(indices[-1]) == 0
    assert int(dense[-29:-2, 0].sum()) == 27  # all surface points count as inside
    assert torch.equal(points_in_any_box(points, box_set), dense.any(dim=1))
    assert points_in_any_box(torch.zeros((0, 4)), box_set).shape == (0,)
    assert point_indices_in_boxes(points, Boxes3D.empty()) == []


# ---------------------------------------------------------------- database
def test_database_round_trip(scenes, database):
    root, infos = scenes
    expected_objects = 0
    for info in infos:
        sample = load_sample(info, root)
        dense = sample.boxes.points_in_boxes(sample.points)
        for k, name in enumerate(sample.annotations.names):
            if name not in CLASSES:
                continue
            expected_objects += 1
            i = database.keys.index(f"{info.sample_id}_{name}_{k}")
            inside = sample.points[dense[:, k]].double()
            inside[:, :3] -= sample.boxes.tensor[k, :3].double()
            assert np.array_equal(database.points(i), inside.float().numpy())
            assert database.names[i] == name and database.sample_ids[i] == info.sample_id
            assert database.num_points[i] == int(dense[:, k].sum()) >= 40
            assert database.box_indices[i] == k and database.attributes[i] == f"attr{k}"
            assert database.instance_ids[i] == f"{info.sample_id}-inst{k}"
            np.testing.assert_array_equal(database.boxes[i], sample.boxes.tensor[k].double().numpy())
    assert len(database) == expected_objects
    assert database.point_columns == COLUMNS
    assert database.class_counts == {"car": 12, "pedestrian": 12}
    assert database.object_boxes(database.indices("car")).tensor.shape == (12, 9)
    database.points(0)  # opens a memory map, which a copy sent to a DataLoader worker reopens
    copied = pickle.loads(pickle.dumps(database))
    assert copied._shards == {} and all(np.array_equal(copied.points(i), database.points(i)) for i in range(3))


def test_database_skips_empty_nonfinite_and_unlisted(tmp_path):
    info = write_scene(tmp_path, "f", seed=3, num_boxes=5, names=["car"] * 5)
    boxes = info.annotations["boxes"]
    boxes[1][0] += 1000.0  # no points there
    boxes[2][4] = None  # width unknown: not a usable box
    boxes[3][7] = None  # velocity unknown: kept, stored as null
    info.annotations["names"][4] = "pedestrian"
    index_path = build_gt_database([info], tmp_path, tmp_path / "db", ["car"], progress=False)
    database = GTDatabase(index_path)
    assert database.box_indices.tolist() == [0, 3]
    assert np.isnan(database.boxes[1, 7]) and np.isfinite(database.boxes[1, 8])
    document = json.loads(index_path.read_text())
    assert document["objects"]["box"][1][7] is None
    strict = GTDatabase(build_gt_database([info], tmp_path, tmp_path / "db2", ["car"], min_points=41, progress=False))
    assert len(strict) == 0 and strict.indices("car").shape == (0,)


def test_database_with_sweeps_and_shards(tmp_path):
    infos = [write_scene(tmp_path, f"s{i}", seed=10 + i, sweeps=2) for i in range(3)]
    out = tmp_path / "db"
    save_infos(tmp_path / "infos.json", infos)
    database = GTDatabase(build_gt_database(tmp_path / "infos.json", tmp_path, out, CLASSES, num_sweeps=2,
                                            shard_max_points=150, progress=False))
    assert database.point_columns == COLUMNS + ("time_lag",)
    assert len(database.shard_paths) > 3 and all(p.is_file() for p in database.shard_paths)
    for info in infos:
        sample = load_sample(info, tmp_path, num_sweeps=2)
        dense = sample.boxes.points_in_boxes(sample.points)
        for k, name in enumerate(sample.annotations.names):
            if name in CLASSES:
                i = database.keys.index(f"{info.sample_id}_{name}_{k}")
                inside = sample.points[dense[:, k]].double()
                inside[:, :3] -= sample.boxes.tensor[k, :3].double()
                assert np.array_equal(database.points(i), inside.float().numpy())
                assert np.unique(database.points(i)[:, 4]).tolist() == np.float32([0.0, 0.05, 0.1]).tolist()


def test_database_errors(tmp_path, database):
    with pytest.raises(FileNotFoundError, match="gt_database.json"):
        GTDatabase(tmp_path / "gt_database.json")
    document = json.loads(database.index_path.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**document, "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        GTDatabase(bad)
    bad.write_text(json.dumps({**document, "objects": {**document["objects"], "name": ["car"]}}))
    with pytest.raises(ValueError, match="different lengths"):
        GTDatabase(bad)
    bad.write_text(json.dumps({**document, "shards": ["missing.npy"]}))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        GTDatabase(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON"):
        GTDatabase(bad)
    with pytest.raises(ValueError, match="min_points"):
        build_gt_database([], tmp_path, tmp_path / "x", CLASSES, min_points=0)
    assert len(GTDatabase(build_gt_database([], tmp_path, tmp_path / "empty", CLASSES, progress=False))) == 0


# ------------------------------------------------------------- GT sampling
def target_scene(seed: int, num_boxes: int = 2, columns=COLUMNS + ("time_lag",), velocity=True) -> Sample:
    rng = np.random.default_rng(100 + seed)
    boxes = scene_boxes(rng, num_boxes)
    points = scene_points(rng, boxes, 30, 3000)
    extra = rng.uniform(0, 0.5, (len(points), len(columns) - 4)).astype(np.float32)
    tensor = torch.from_numpy(np.concatenate([points, extra], 1))
    box_tensor = torch.from_numpy(boxes if velocity else boxes[:, :7]).float()
    annotations = Annotations.from_boxes(Boxes3D(box_tensor), ["car"] * num_boxes)
    return Sample(tensor, columns, annotations, point_labels=torch.arange(len(tensor)) % 5,
                  meta={"sample_id": f"target{seed}"})


def polygons(boxes: Boxes3D) -> list[Polygon]:
    return [Polygon(c) for c in Boxes3D(boxes.tensor.double()).bev_corners().numpy()]


@pytest.mark.parametrize("seed", range(4))
def test_gt_sampling_pastes_apart_and_clears_scene_points(database, seed):
    sample = target_scene(seed)
    before = (sample.points.clone(), sample.boxes.tensor.clone(), copy.deepcopy(sample.meta))
    sampler = GTSampling(database, {"car": 6, "pedestrian": 4}, min_points=5)
    out = sampler(sample, np.random.default_rng(seed))
    n_old = len(sample.annotations)
    pasted = len(out.annotations) - n_old
    assert pasted > 0 and out.meta["gt_sampled"]["car"] <= 6 - 2 and out.meta["gt_sampled"]["pedestrian"] <= 4
    assert sum(out.meta["gt_sampled"].values()) == pasted
    shapes = polygons(out.boxes)
    for i in range(len(shapes)):
        for j in range(max(i + 1, n_old), len(shapes)):
            assert shapes[i].intersection(shapes[j]).area < 1e-9, (i, j)
    pasted_boxes = out.boxes[list(range(n_old, len(out.boxes)))]
    num_pasted_points = int(out.annotations.num_points[n_old:].sum())
    scene_part = out.points[: out.num_points - num_pasted_points]
    assert not pasted_boxes.points_in_boxes(scene_part).any()
    kept = ~points_in_any_box(sample.points, pasted_boxes)
    assert torch.equal(scene_part, sample.points[kept])
    assert torch.equal(out.point_labels, torch.cat([sample.point_labels[kept], torch.full((num_pasted_points,), -1)]))
    assert out.meta["dropped_by_gt_sampling"] == int((~kept).sum())
    # Pasted points: the database's, moved to their box, time_lag (absent there) filled with 0.
    offset = out.num_points - num_pasted_points
    for k, box_id in enumerate(out.annotations.ids[n_old:]):
        assert box_id.startswith("gt_sampled:")
        sample_id, box_index = box_id[len("gt_sampled:"):].rsplit("/", 1)
        i = next(j for j in range(len(database))
                 if database.sample_ids[j] == sample_id and database.box_indices[j] == int(box_index))
        local = database.points(i)
        rows = out.points[offset: offset + len(local)]
        offset += len(local)
        np.testing.assert_allclose(rows[:, :3].numpy(), local[:, :3] + database.boxes[i, :3], atol=1e-5)
        assert np.array_equal(rows[:, 3].numpy(), local[:, 3]) and not rows[:, 4].any()
        assert out.annotations.attributes[n_old + k] == database.attributes[i]
        assert int(out.annotations.num_points[n_old + k]) == len(local)
    assert offset == out.num_points
    assert torch.equal(sample.points, before[0]) and torch.equal(sample.boxes.tensor, before[1])
    assert sample.meta == before[2]


def test_gt_sampling_deterministic_and_rng_dependent(database):
    sample = target_scene(0)
    sampler = GTSampling(database, {"car": 5, "pedestrian": 5})
    a, b = sampler(sample, np.random.default_rng(7)), sampler(sample, np.random.default_rng(7))
    assert torch.equal(a.points, b.points) and a.annotations.ids == b.annotations.ids
    ids = {tuple(sampler(sample, np.random.default_rng(s)).annotations.ids) for s in range(8)}
    assert len(ids) > 1


def test_gt_sampling_when_nothing_fits(database):
    sample = target_scene(1, num_boxes=0)
    cover = Boxes3D(torch.tensor([[0.0, 0.0, 0.0, 500.0, 500.0, 10.0, 0.3, 0.0, 0.0]]))
    sample = sample.with_annotations(Annotations.from_boxes(cover, ["building"]))
    out = GTSampling(database, {"car": 3, "pedestrian": 3})(sample, np.random.default_rng(0))
    assert torch.equal(out.points, sample.points) and len(out.annotations) == 1
    assert out.meta["gt_sampled"] == {"car": 0, "pedestrian": 0}
    full = target_scene(1, num_boxes=3)
    out = GTSampling(database, {"car": 3})(full, np.random.default_rng(0))  # already 3 cars in the scene
    assert len(out.annotations) == 3
    unknown = GTSampling(database, {"truck": 3})(full, np.random.default_rng(0))
    assert unknown.meta["gt_sampled"] == {"truck": 0}


def test_gt_sampling_into_empty_scene_and_box_widths(database):
    empty = Sample(torch.zeros((0, 4)), COLUMNS, Annotations.empty(with_velocity=False), meta={})
    out = GTSampling(database, {"car": 12}, min_points=1, limit_whole_scene=False)(empty, np.random.default_rng(0))
    assert len(out.annotations) >= 1 and out.boxes.tensor.shape[1] == 7
    assert out.num_points == int(out.annotations.num_points.sum()) > 0
    shapes = polygons(out.boxes)
    assert all(shapes[i].intersection(shapes[j]).area < 1e-9
               for i in range(len(shapes)) for j in range(i + 1, len(shapes)))
    assert out.point_labels is None


def test_gt_sampling_pads_velocity_from_seven_value_database(tmp_path):
    info = write_scene(tmp_path, "f", seed=5, names=["car"] * 5)
    info.annotations["boxes"] = [row[:7] for row in info.annotations["boxes"]]
    database = GTDatabase(build_gt_database([info], tmp_path, tmp_path / "db", ["car"], progress=False))
    assert database.boxes.shape == (5, 7)
    out = GTSampling(tmp_path / "db" / "gt_database.json", {"car": 5})(target_scene(2, num_boxes=0),
                                                                       np.random.default_rng(0))
    assert len(out.annotations) > 0 and torch.isnan(out.boxes.tensor[:, 7:]).all()
