"""Transforms against independent twins: point-in-box masks, numeric velocity derivatives,
Python loops for the filters, shapely polygons for the BEV overlap test."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from pointformer.data.transforms import (
    CameraFOVFilter,
    Compose,
    GlobalRotScaleTrans,
    NonFiniteFilter,
    ObjectMinPointsFilter,
    ObjectNameFilter,
    ObjectRangeFilter,
    PointRangeFilter,
    PointShuffle,
    RandomFlip,
    SweepSubsample,
    apply_rot_scale_trans,
    bev_boxes_overlap,
    flip,
    invert_augmentations,
)
from pointformer.structures import Annotations, Boxes3D, Sample

NAMES = ("car", "pedestrian", "bicycle", "animal")


# ------------------------------------------------------------------ helpers
def random_boxes(rng: np.random.Generator, n: int, velocity: bool = True) -> Boxes3D:
    centre = rng.uniform([-20, -20, -1], [20, 20, 1], size=(n, 3))
    dims = rng.uniform([1, 0.5, 1], [5, 2.5, 3], size=(n, 3))
    yaw = rng.uniform(-math.pi, math.pi, size=(n, 1))
    columns = [centre, dims, yaw] + ([rng.normal(0, 5, size=(n, 2))] if velocity else [])
    return Boxes3D(torch.from_numpy(np.concatenate(columns, axis=1)).float())


def surface_margin(points: torch.Tensor, boxes: Boxes3D) -> torch.Tensor:
    """(P,) smallest distance (m) from each point to any face plane of any box, in box coordinates."""
    xyz = points[:, :3].double()
    tensor = boxes.tensor.double()
    offset = xyz[:, None, :] - tensor[None, :, :3]
    cos, sin = torch.cos(tensor[:, 6]), torch.sin(tensor[:, 6])
    local = torch.stack([offset[..., 0] * cos + offset[..., 1] * sin,
                         -offset[..., 0] * sin + offset[..., 1] * cos, offset[..., 2]], -1)
    margin = (local.abs() - tensor[None, :, 3:6] / 2).abs().amin(dim=2)
    return margin.amin(dim=1) if len(boxes) else torch.full((len(points),), float("inf"))


def make_sample(seed: int, num_points: int = 3000, num_boxes: int = 6, velocity: bool = True,
                columns: tuple[str, ...] = ("x", "y", "z", "intensity"), labels: bool = True) -> Sample:
    """Boxes, points scattered around and inside them (none within 2 cm of a face)."""
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, num_boxes, velocity)
    background = rng.uniform([-25, -25, -3], [25, 25, 3], size=(num_points, 3))
    inside = []
    for box in boxes.tensor.double().numpy():
        local = rng.uniform(-0.5, 0.5, size=(60, 3)) * box[3:6]
        cos, sin = math.cos(box[6]), math.sin(box[6])
        inside.append(np.stack([local[:, 0] * cos - local[:, 1] * sin + box[0],
                                local[:, 0] * sin + local[:, 1] * cos + box[1], local[:, 2] + box[2]], 1))
    xyz = np.concatenate([background, *inside], axis=0)
    features = rng.uniform(0, 1, size=(len(xyz), len(columns) - 3))
    points = torch.from_numpy(np.concatenate([xyz, features], axis=1)).float()
    points = points[surface_margin(points, boxes) > 0.02]
    names = [NAMES[i % len(NAMES)] for i in range(num_boxes)]
    annotations = Annotations(boxes, names, torch.arange(num_boxes) * 3 - 1, ["a"] * num_boxes,
                              [f"id{i}" for i in range(num_boxes)])
    point_labels = torch.arange(len(points)) % 7 if labels else None
    return Sample(points, columns, annotations, point_labels=point_labels, meta={"sample_id": f"s{seed}"})


def empty_sample(columns: tuple[str, ...] = ("x", "y", "z", "intensity")) -> Sample:
    return Sample(torch.zeros((0, len(columns))), columns, Annotations.empty(), meta={"sample_id": "empty"})


def snapshot(sample: Sample):
    return (sample.points.clone(), sample.boxes.tensor.clone(), list(sample.annotations.names),
            None if sample.point_labels is None else sample.point_labels.clone(), copy.deepcopy(sample.meta))


def assert_unchanged(sample: Sample, before) -> None:
    points, boxes, names, labels, meta = before
    assert torch.equal(sample.points.nan_to_num(123.0), points.nan_to_num(123.0))
    assert torch.equal(sample.boxes.tensor.nan_to_num(123.0), boxes.nan_to_num(123.0))
    assert sample.annotations.names == names
    if labels is not None:
        assert torch.equal(sample.point_labels, labels)
    assert sample.meta == meta


def yaw_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    diff = torch.remainder(a.double() - b.double() + math.pi, 2 * math.pi) - math.pi
    return bool((diff.abs() < atol).all())


ALL_TRANSFORMS = [
    PointRangeFilter((-10, -10, -2, 10, 10, 2)),
    ObjectRangeFilter((-10, -10, -2, 10, 10, 2)),
    ObjectNameFilter(("car", "bicycle")),
    ObjectMinPointsFilter(2),
    NonFiniteFilter(),
    GlobalRotScaleTrans(translation_std=(0.5, 0.5, 0.2)),
    RandomFlip(),
    PointShuffle(),
]


# --------------------------------------------------- global augmentations
@pytest.mark.parametrize("seed", range(4))
def test_rot_scale_trans_keeps_points_in_boxes(seed):
    sample = make_sample(seed)
    before = snapshot(sample)
    inside = sample.boxes.points_in_boxes(sample.points)
    assert inside.any(), "the scene must put points in boxes for this test to mean anything"
    out = GlobalRotScaleTrans(translation_std=(1.0, 1.0, 0.3))(sample, np.random.default_rng(seed))
    assert torch.equal(out.boxes.points_in_boxes(out.points), inside)
    assert torch.equal(out.points[:, 3:], sample.points[:, 3:])
    assert torch.equal(out.point_labels, sample.point_labels)
    assert_unchanged(sample, before)


def test_rot_scale_trans_matches_matrix_twin():
    sample = make_sample(7)
    angle, factor, offset = 0.7, 1.04, [1.5, -2.0, 0.25]
    out = apply_rot_scale_trans(sample, angle, factor, offset)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    expected = sample.points[:, :3].double().numpy() @ rotation.T * factor + np.array(offset)
    np.testing.assert_allclose(out.points[:, :3].double().numpy(), expected, atol=1e-4)
    centres = sample.boxes.center.double().numpy() @ rotation.T * factor + np.array(offset)
    np.testing.assert_allclose(out.boxes.center.double().numpy(), centres, atol=1e-4)
    np.testing.assert_allclose(out.boxes.dims.numpy(), sample.boxes.dims.numpy() * factor, rtol=1e-6)
    assert yaw_close(out.boxes.yaw, sample.boxes.yaw + angle)
    assert [op["op"] for op in out.meta["augmentations"]] == ["rotate_z", "scale", "translate"]


def velocity_twin(sample: Sample, transform, dt: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Box velocities after ``transform`` and the central difference of the transformed
    positions ``centre -+ v dt`` (carried as points through the same transform)."""
    centre = sample.boxes.center.double()
    velocity = torch.cat([sample.boxes.velocity.double(), torch.zeros(len(centre), 1, dtype=torch.float64)], 1)
    probe = torch.cat([centre - velocity * dt, centre + velocity * dt]).float()
    probe = torch.cat([probe, torch.zeros(len(probe), sample.points.shape[1] - 3)], 1)
    moved = transform(Sample(probe, sample.point_columns, sample.annotations, meta={}))
    before, after = moved.points[: len(centre), :2].double(), moved.points[len(centre):, :2].double()
    return moved.boxes.velocity.double(), (after - before) / (2 * dt)


@pytest.mark.parametrize("seed", range(3))
def test_velocity_transforms_like_position_derivative(seed):
    sample = make_sample(seed)
    rng = np.random.default_rng(seed)
    angle, factor, offset = float(rng.uniform(-3, 3)), float(rng.uniform(0.9, 1.1)), list(rng.normal(0, 2, 3))
    for transform in (lambda s: apply_rot_scale_trans(s, angle, factor, offset),
                      lambda s: flip(s, "x"), lambda s: flip(s, "y"),
                      lambda s: flip(apply_rot_scale_trans(s, angle, factor, offset), "y")):
        velocity, numeric = velocity_twin(sample, transform)
        np.testing.assert_allclose(velocity.numpy(), numeric.numpy(), atol=1e-4)
        assert numeric.abs().max() > 1.0


@pytest.mark.parametrize("seed", range(3))
def test_flip_keeps_points_in_boxes_and_negates(seed):
    sample = make_sample(seed)
    before = snapshot(sample)
    inside = sample.boxes.points_in_boxes(sample.points)
    out = RandomFlip(1.0, 1.0)(sample, np.random.default_rng(seed))
    assert torch.equal(out.points[:, :2], -sample.points[:, :2])
    assert torch.equal(out.points[:, 2:], sample.points[:, 2:])
    assert torch.equal(out.boxes.points_in_boxes(out.points), inside)
    assert yaw_close(out.boxes.yaw, sample.boxes.yaw + math.pi)
    assert [op["coordinate"] for op in out.meta["augmentations"]] == ["y", "x"]
    only_y = RandomFlip(1.0, 0.0)(sample, np.random.default_rng(seed))
    assert torch.equal(only_y.points[:, 1], -sample.points[:, 1])
    assert torch.equal(only_y.points[:, 0], sample.points[:, 0])
    assert torch.equal(only_y.boxes.points_in_boxes(only_y.points), inside)
    none = RandomFlip(0.0, 0.0)(sample, np.random.default_rng(seed))
    assert torch.equal(none.points, sample.points) and "augmentations" not in none.meta
    assert_unchanged(sample, before)


def test_random_flip_frequency():
    rng = np.random.default_rng(0)
    sample = make_sample(0, num_points=50, num_boxes=1)
    flips = [RandomFlip(0.3, 0.8)(sample, rng).meta.get("augmentations", []) for _ in range(2000)]
    ys = np.mean([any(op["coordinate"] == "y" for op in f) for f in flips])
    xs = np.mean([any(op["coordinate"] == "x" for op in f) for f in flips])
    assert abs(ys - 0.3) < 0.05 and abs(xs - 0.8) < 0.05


def test_invert_augmentations_round_trip():
    sample = make_sample(3)
    pipeline = Compose([GlobalRotScaleTrans(translation_std=(2, 2, 0.5)), RandomFlip(1.0, 1.0),
                        GlobalRotScaleTrans(rot_range=(-3, 3), scale_range=(0.5, 2.0))])
    out = pipeline(sample, np.random.default_rng(5))
    assert len(out.meta["augmentations"]) == 8
    back = invert_augmentations(out.boxes, out.meta)
    np.testing.assert_allclose(back.tensor[:, [0, 1, 2, 3, 4, 5, 7, 8]].numpy(),
                               sample.boxes.tensor[:, [0, 1, 2, 3, 4, 5, 7, 8]].numpy(), atol=1e-4)
    assert yaw_close(back.yaw, sample.boxes.yaw, atol=1e-4)
    assert invert_augmentations(sample.boxes, {}).tensor.equal(sample.boxes.tensor)
    with pytest.raises(ValueError, match="unknown operation"):
        invert_augmentations(sample.boxes, {"augmentations": [{"op": "shear"}]})


def test_nan_velocity_stays_nan_and_geometry_transforms():
    sample = make_sample(4)
    tensor = sample.boxes.tensor.clone()
    tensor[::2, 7:9] = float("nan")
    sample = sample.with_annotations(sample.annotations.with_boxes(Boxes3D(tensor)))
    inside = sample.boxes.points_in_boxes(sample.points)
    out = RandomFlip(1.0, 1.0)(GlobalRotScaleTrans()(sample, np.random.default_rng(1)), np.random.default_rng(2))
    assert torch.isnan(out.boxes.tensor[::2, 7:9]).all()
    assert torch.isfinite(out.boxes.tensor[1::2]).all() and torch.isfinite(out.boxes.tensor[:, :7]).all()
    assert torch.equal(out.boxes.points_in_boxes(out.points), inside)
    assert len(NonFiniteFilter()(out, None).annotations) == len(out.annotations)


# ------------------------------------------------------------------ filters
def range_loop_twin(points: np.ndarray, bounds) -> np.ndarray:
    lo = [np.float32(v) for v in bounds[:3]]
    hi = [np.float32(v) for v in bounds[3:]]
    keep = []
    for row in points:
        keep.append(all(lo[k] <= row[k] < hi[k] for k in range(3)))
    return np.array(keep, dtype=bool)


def test_point_range_filter_vs_loop_with_boundary_points():
    bounds = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    rng = np.random.default_rng(0)
    points = rng.uniform(-60, 60, size=(500, 4)).astype(np.float32)
    edges = np.array(bounds, dtype=np.float32)
    for k in range(3):  # points exactly on each lower and upper face, and just inside / outside
        for value in (edges[k], edges[k + 3], np.nextafter(edges[k], np.float32(-np.inf)),
                      np.nextafter(edges[k + 3], np.float32(-np.inf))):
            row = np.zeros(4, dtype=np.float32)
            row[k] = value
            points = np.vstack([points, row])
    points = np.vstack([points, [[np.nan, 0, 0, 1], [0, np.inf, 0, 1], [0, 0, -np.inf, 1]]]).astype(np.float32)
    sample = Sample(torch.from_numpy(points), ("x", "y", "z", "intensity"), Annotations.empty(),
                    point_labels=torch.arange(len(points)), meta={"dropped_out_of_range": 2})
    before = snapshot(sample)
    out = PointRangeFilter(bounds)(sample, None)
    expected = range_loop_twin(points, bounds)
    assert expected[-15:-3].tolist() == [True, False, False, True] * 3  # the boundary rows
    assert torch.equal(out.points, torch.from_numpy(points[expected]))
    assert torch.equal(out.point_labels, torch.nonzero(torch.from_numpy(expected)).reshape(-1))
    assert out.meta["dropped_out_of_range"] == 2 + int((~expected).sum())
    assert_unchanged(sample, before)


def test_object_range_filter_vs_loop():
    bounds = (-50.0, -40.0, -5.0, 50.0, 40.0, 3.0)
    centres = [(0, 0), (-50, 0), (50, 0), (0, -40), (0, 40), (-49.99, 39.99), (60, 0), (np.nan, 0), (0, 0)]
    tensor = torch.zeros((len(centres), 9))
    tensor[:, :2] = torch.tensor(centres, dtype=torch.float32)
    tensor[:, 2] = 100.0  # z is not checked
    tensor[:, 3:6] = 1.0
    names = [f"n{i}" for i in range(len(centres))]
    sample = Sample(torch.zeros((0, 4)), ("x", "y", "z", "intensity"), Annotations.from_boxes(Boxes3D(tensor), names))
    out = ObjectRangeFilter(bounds)(sample, None)
    expected = [name for name, (x, y) in zip(names, centres) if -50 < x < 50 and -40 < y < 40]
    assert out.annotations.names == expected == ["n0", "n5", "n8"]
    assert out.meta["dropped_boxes_out_of_range"] == len(centres) - 3


def test_object_name_and_min_points_filters_vs_loop():
    sample = make_sample(5, num_boxes=9)
    counts = sample.annotations.num_points.tolist()  # -1, 2, 5, ...
    out = ObjectNameFilter(["car", "animal"])(sample, None)
    assert out.annotations.names == [n for n in sample.annotations.names if n in ("car", "animal")]
    assert out.annotations.ids == [i for n, i in zip(sample.annotations.names, sample.annotations.ids)
                                   if n in ("car", "animal")]
    out = ObjectMinPointsFilter(5)(sample, None)
    assert out.annotations.ids == [i for c, i in zip(counts, sample.annotations.ids) if c == -1 or c >= 5]
    assert "id0" in out.annotations.ids  # unknown count (-1) keeps
    thresholds = {"car": 100, "pedestrian": 3}
    out = ObjectMinPointsFilter(thresholds)(sample, None)
    expected = [i for n, c, i in zip(sample.annotations.names, counts, sample.annotations.ids)
                if c == -1 or c >= thresholds.get(n, 0)]
    assert out.annotations.ids == expected
    assert out.meta["dropped_boxes_few_points"] == len(counts) - len(expected)


def test_non_finite_filter_counts_and_keeps_labels_aligned():
    sample = make_sample(6, num_points=200, num_boxes=3)
    points = sample.points.clone()
    points[3, 0] = float("nan")
    points[10, 3] = float("inf")
    points[11, 2] = -float("inf")
    tensor = sample.boxes.tensor.clone()
    tensor[0, 7] = float("nan")  # unknown velocity: kept
    tensor[1, 4] = float("nan")  # broken geometry: dropped
    sample = Sample(points, sample.point_columns, sample.annotations.with_boxes(Boxes3D(tensor)),
                    point_labels=sample.point_labels, meta={"dropped_non_finite": 1})
    out = NonFiniteFilter()(sample, None)
    keep = torch.ones(len(points), dtype=torch.bool)
    keep[[3, 10, 11]] = False
    assert torch.equal(out.points, points[keep]) and torch.equal(out.point_labels, sample.point_labels[keep])
    assert out.meta["dropped_non_finite"] == 4 and out.meta["dropped_non_finite_boxes"] == 1
    assert out.annotations.ids == ["id0", "id2"]
    assert len(NonFiniteFilter(drop_boxes=False)(sample, None).annotations) == 3


def test_point_shuffle_is_a_permutation_with_labels():
    sample = make_sample(8)
    sample = sample.with_points(torch.cat([sample.points[:, :3], torch.arange(sample.num_points)[:, None].float()], 1))
    out = PointShuffle()(sample, np.random.default_rng(0))
    order = out.points[:, 3].long()
    assert not torch.equal(order, torch.arange(sample.num_points))
    assert torch.equal(torch.sort(order).values, torch.arange(sample.num_points))
    assert torch.equal(out.points, sample.points[order]) and torch.equal(out.point_labels, sample.point_labels[order])


# ------------------------------------------------------------------- sweeps
def sweep_sample(lags: list[float], per_sweep: int = 20) -> Sample:
    rows = []
    for k, lag in enumerate(lags):
        xyz = np.random.default_rng(k).uniform(-5, 5, size=(per_sweep + k, 3))
        rows.append(np.concatenate([xyz, np.full((len(xyz), 1), 0.5), np.full((len(xyz), 1), lag)], 1))
    points = torch.from_numpy(np.concatenate(rows)).float()
    return Sample(points, ("x", "y", "z", "intensity", "time_lag"), Annotations.empty(),
                  point_labels=torch.arange(len(points)))


@pytest.mark.parametrize("kept", [0, 1, 3, 9, 20])
def test_sweep_subsample_keeps_keyframe_and_k_sweeps(kept):
    lags = [0.0] + [0.05 * k for k in range(1, 10)]
    sample = sweep_sample(lags)
    lag = sample.column("time_lag")
    for seed in range(5):
        out = SweepSubsample(kept)(sample, np.random.default_rng(seed))
        out_lags = out.column("time_lag")
        distinct = sorted(set(out_lags.tolist()) - {0.0})
        assert len(distinct) == min(kept, 9)
        assert distinct == sorted(out.meta["sweep_lags_kept"])
        for value in [0.0, *distinct]:  # every point of a kept sweep, none of the others
            assert int((out_lags == value).sum()) == int((lag == value).sum())
        assert out.num_points == int(torch.isin(lag, torch.tensor([0.0, *distinct])).sum())
        assert torch.equal(out.points, sample.points[out.point_labels])


def test_sweep_subsample_random_choice_deterministic_and_test_mode_newest():
    lags = [0.0] + [0.05 * k for k in range(1, 10)]
    sample = sweep_sample(lags)
    picks = {tuple(SweepSubsample(3)(sample, np.random.default_rng(s)).meta["sweep_lags_kept"]) for s in range(20)}
    assert len(picks) > 5
    first = SweepSubsample(3)(sample, np.random.default_rng(4))
    again = SweepSubsample(3)(sample, np.random.default_rng(4))
    assert torch.equal(first.points, again.points)
    newest = SweepSubsample(3, test_mode=True)(sample, np.random.default_rng(0))
    assert newest.meta["sweep_lags_kept"] == pytest.approx([0.05, 0.1, 0.15])


def test_sweep_subsample_adversarial():
    with pytest.raises(ValueError, match="time_lag"):
        SweepSubsample(2)(make_sample(0), np.random.default_rng(0))
    empty = SweepSubsample(2)(empty_sample(("x", "y", "z", "intensity", "time_lag")), np.random.default_rng(0))
    assert empty.num_points == 0 and empty.meta["sweep_lags_kept"] == []
    sample = sweep_sample([0.0, 0.1, 0.2])
    points = sample.points.clone()
    points[0, 4] = float("nan")
    out = SweepSubsample(5)(sample.with_points(points), np.random.default_rng(0))
    assert out.num_points == sample.num_points - 1 and out.meta["dropped_non_finite"] == 1
    only_sweeps = sweep_sample([0.3, 0.1])  # no keyframe points at all
    kept = SweepSubsample(1, test_mode=True)(only_sweeps, None).column("time_lag")
    assert len(kept) == 21 and bool((kept == np.float32(0.1)).all())


# ------------------------------------------------------- camera field of view
REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"

# A KITTI calibration (2011_09_26, frames 000001-5 of the object benchmark), 4x4 as KittiReader stores it.
KITTI_CALIB = {
    "P2": [[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
           [0.0, 0.0, 1.0, 0.002745884], [0.0, 0.0, 0.0, 1.0]],
    "R0_rect": [[0.9999239, 0.00983776, -0.007445048, 0.0], [-0.009869795, 0.9999421, -0.004278459, 0.0],
                [0.007402527, 0.004351614, 0.9999631, 0.0], [0.0, 0.0, 0.0, 1.0]],
    "Tr_velo_to_cam": [[0.007533745, -0.9999714, -0.000616602, -0.004069766],
                       [0.01480249, 0.0007280733, -0.9998902, -0.07631618],
                       [0.9998621, 0.00752379, 0.01480755, -0.2717806], [0.0, 0.0, 0.0, 1.0]],
}
# Exact arithmetic: camera looking along +x, f = 512 px, principal point (256, 128), image 256 x 512:
# u = 256 - 512 y / x, v = 128 - 512 z / x, depth = x.
EXACT_CALIB = {
    "P2": [[512.0, 0, 256, 0], [0, 512, 128, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    "R0_rect": np.eye(4).tolist(),
    "Tr_velo_to_cam": [[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]],
}


def camera_sample(xyz: np.ndarray, calib: dict, image_shape: list[int], labels: bool = True) -> Sample:
    points = np.concatenate([xyz, np.arange(len(xyz))[:, None]], axis=1)
    return Sample(torch.from_numpy(points).float(), ("x", "y", "z", "intensity"), Annotations.empty(),
                  point_labels=torch.arange(len(xyz)) if labels else None,
                  meta={"sample_id": "cam", "kitti": {"calib": calib, "image_shape": image_shape}})


def fov_loop(points: list[list[float]], calib: dict, height: int, width: int) -> list[bool]:
    """Per point, by hand: LiDAR -> camera 0 -> rectified -> image_2, then the image bounds."""
    def apply(matrix, vector):
        return [sum(matrix[r][c] * vector[c] for c in range(4)) for r in range(4)]

    keep = []
    for x, y, z in points:
        if not all(math.isfinite(v) for v in (x, y, z)):
            keep.append(False)
            continue
        u, v, depth, _ = apply(calib["P2"], apply(calib["R0_rect"], apply(calib["Tr_velo_to_cam"], [x, y, z, 1.0])))
        keep.append(depth > 0 and 0 <= u / depth < width and 0 <= v / depth < height)
    return keep


def test_camera_fov_filter_border_and_behind_the_camera():
    step = 2.0**-20  # representable in float32: u, v are exact
    cases = [  # (x, y, z), kept
        ((2, 0, 0), True), ((2, 1, 0), True), ((2, 1 - step, 0), True), ((2, 1 + step, 0), False),  # u = 0 kept
        ((2, -1, 0), False), ((2, -1 + step, 0), True),  # u = w dropped, just below kept
        ((2, 0, 0.5), True), ((2, 0, -0.5), False), ((2, 0, -0.5 + step), True),  # v = 0 kept, v = h dropped
        ((2, 1, 0.5), True), ((2, -1, -0.5), False),  # corners
        ((-2, 0, 0), False), ((-2, 1, 0.5), False), ((0, 0, 0), False), ((0, 1, 0), False),  # behind / on the camera
        ((step, 0, 0), True), ((300, 0, 0), True), ((1e30, 0, 0), True),
        ((np.nan, 0, 0), False), ((np.inf, 0, 0), False), ((2, np.inf, 0), False),
    ]
    xyz = np.array([c[0] for c in cases], dtype=np.float64)
    expected = [c[1] for c in cases]
    assert fov_loop(xyz.tolist(), EXACT_CALIB, 256, 512) == expected
    sample = camera_sample(xyz, EXACT_CALIB, [256, 512])
    out = CameraFOVFilter()(sample)
    kept = np.nonzero(expected)[0].tolist()
    assert out.point_labels.tolist() == kept and out.points[:, 3].long().tolist() == kept
    assert out.meta["dropped_outside_camera_fov"] == len(cases) - len(kept)


@pytest.mark.parametrize("seed", range(2))
def test_camera_fov_filter_vs_loop_on_a_kitti_calibration(seed):
    rng = np.random.default_rng(seed)
    xyz = np.concatenate([rng.uniform([-80, -50, -3], [80, 50, 3], (3000, 3)),
                          rng.uniform([-0.5, -3, -1], [0.5, 3, 1], (300, 3))])  # around the camera plane
    expected = fov_loop(xyz.astype(np.float32).astype(np.float64).tolist(), KITTI_CALIB, 375, 1242)
    out = CameraFOVFilter()(camera_sample(xyz, KITTI_CALIB, [375, 1242]), np.random.default_rng(0))
    assert out.point_labels.tolist() == np.nonzero(expected)[0].tolist()
    assert 0 < out.num_points < len(xyz) and out.meta["dropped_outside_camera_fov"] == len(xyz) - out.num_points
    empty = CameraFOVFilter()(camera_sample(np.zeros((0, 3)), KITTI_CALIB, [375, 1242]))
    assert empty.num_points == 0 and empty.meta["dropped_outside_camera_fov"] == 0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("kitti"), r"cam: CameraFOVFilter needs meta\['kitti'\]"),
        (lambda m: m["kitti"].pop("calib"), r"needs meta\['kitti'\]\['calib'\]"),
        (lambda m: m["kitti"]["calib"].pop("R0_rect"), r"needs meta\['kitti'\]\['calib'\]\['R0_rect'\]"),
        (lambda m: m["kitti"].pop("image_shape"), r"needs meta\['kitti'\]\['image_shape'\]"),
        (lambda m: m["kitti"].update(image_shape=None), r"needs meta\['kitti'\]\['image_shape'\]"),
        (lambda m: m["kitti"].update(image_shape=[375]), r"image_shape'\] must be \[h, w\]"),
        (lambda m: m["kitti"]["calib"].update(P2=[[1.0, 0, 0, 0]] * 3), r"\['P2'\] must be a finite 4x4"),
    ],
)
def test_camera_fov_filter_names_the_missing_meta(edit, message):
    sample = camera_sample(np.ones((3, 3)), copy.deepcopy(KITTI_CALIB), [375, 1242])
    edit(sample.meta)
    with pytest.raises(ValueError, match=message):
        CameraFOVFilter()(sample)


def test_camera_fov_filter_on_real_kitti_frames():
    """KittiReader frames: the loop twin on every 7th point; mmdetection3d's camera-cropped
    000008.bin (velodyne_reduced, same calibration as frame 000001) is kept whole."""
    from pointformer.data.readers.kitti import KittiReader, read_png_shape
    from pointformer.data.transforms import kitti_camera, points_in_image

    root = REALDATA / "kitti_openpcdet_pr653"
    reduced = REALDATA / "mmdetection3d" / "demo" / "data" / "kitti" / "000008.bin"
    if not (root / "training" / "image_2" / "000001.png").is_file() or not reduced.is_file():
        pytest.skip(f"real data under {REALDATA} not available")
    reader = KittiReader(root, ids=["000000", "000001"])
    for sample in (reader[0], reader[1]):
        out = CameraFOVFilter()(sample)
        matrix, (height, width) = kitti_camera(sample)
        keep = points_in_image(sample.points[:, :3].double().numpy(), matrix, height, width)
        assert torch.equal(out.points, sample.points[torch.from_numpy(keep)])
        expected = fov_loop(sample.points[::7, :3].double().tolist(), sample.meta["kitti"]["calib"], height, width)
        assert keep[::7].tolist() == expected
        assert 0.1 < out.num_points / sample.num_points < 0.25  # a ~90 degree view of a 360 degree sweep
        assert out.meta["dropped_outside_camera_fov"] == sample.num_points - out.num_points
    cropped = np.fromfile(reduced, np.float32).reshape(-1, 4)
    calib = reader[1].meta["kitti"]["calib"]
    shape = list(read_png_shape(reduced.with_suffix(".png")))
    out = CameraFOVFilter()(camera_sample(cropped[:, :3].astype(np.float64), calib, shape, labels=False))
    assert out.num_points == len(cropped) == 17238


# --------------------------------------------------------- generic checks
@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transforms_are_pure_and_deterministic(transform):
    sample = make_sample(11)
    before = snapshot(sample)
    first = transform(sample, np.random.default_rng(3))
    second = transform(sample, np.random.default_rng(3))
    assert_unchanged(sample, before)
    assert torch.equal(first.points, second.points)
    assert torch.equal(first.boxes.tensor, second.boxes.tensor)
    assert first.meta == second.meta and first.meta is not sample.meta


@pytest.mark.parametrize("transform", ALL_TRANSFORMS + [SweepSubsample(2)], ids=lambda t: type(t).__name__)
def test_transforms_on_empty_cloud_without_boxes(transform):
    sample = empty_sample(("x", "y", "z", "intensity", "time_lag"))
    out = transform(sample, np.random.default_rng(0))
    assert out.points.shape == (0, 5) and len(out.annotations) == 0


def test_boxes_without_points_and_points_without_boxes():
    no_boxes = make_sample(1, num_boxes=0)
    out = Compose(ALL_TRANSFORMS)(no_boxes, np.random.default_rng(0))
    assert len(out.annotations) == 0 and out.num_points > 0
    seven = make_sample(2, velocity=False)
    out = Compose(ALL_TRANSFORMS)(seven, np.random.default_rng(0))
    assert out.boxes.tensor.shape[1] == 7


def test_compose_seed_dependence():
    sample = make_sample(12)
    pipeline = Compose([GlobalRotScaleTrans(), RandomFlip(), PointShuffle()])
    a = pipeline(sample, np.random.default_rng(1))
    b = pipeline(sample, np.random.default_rng(1))
    c = pipeline(sample, np.random.default_rng(2))
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)


def test_constructor_validation():
    with pytest.raises(ValueError):
        PointRangeFilter((0, 0, 0, 1, 1))
    with pytest.raises(ValueError):
        PointRangeFilter((0, 0, 0, -1, 1, 1))
    with pytest.raises(ValueError):
        GlobalRotScaleTrans(scale_range=(0.0, 1.0))
    with pytest.raises(ValueError):
        RandomFlip(1.5)
    with pytest.raises(ValueError):
        SweepSubsample(-1)


# ----------------------------------------------------------- BEV overlap
def polygon(box) -> Polygon:
    return Polygon(Boxes3D(torch.as_tensor(np.asarray(box, dtype=np.float64))[None]).bev_corners()[0].numpy())


def shapely_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa, pb = [polygon(r) for r in a], [polygon(r) for r in b]
    return np.array([[p.intersection(q).area > 1e-9 for q in pb] for p in pa], dtype=bool).reshape(len(a), len(b))


def box_rows(rng, n, spread=6.0):
    return np.concatenate([rng.uniform(-spread, spread, (n, 3)), rng.uniform(0.2, 5, (n, 3)),
                           rng.uniform(-math.pi, math.pi, (n, 1))], axis=1)


@pytest.mark.parametrize("seed", range(3))
def test_bev_overlap_vs_shapely_random(seed):
    rng = np.random.default_rng(seed)
    a, b = box_rows(rng, 40), box_rows(rng, 30)
    expected = shapely_overlap(a, b)
    assert 0.05 < expected.mean() < 0.95
    assert np.array_equal(bev_boxes_overlap(a, b), expected)
    assert np.array_equal(bev_boxes_overlap(Boxes3D(torch.from_numpy(a)), Boxes3D(torch.from_numpy(b))), expected)


def test_bev_overlap_adversarial():
    base = [0, 0, 0, 4, 2, 1, 0]
    cases = {
        "identical": ([base], [base], True),
        "contained": ([base], [[0.5, 0, 5, 1, 0.5, 1, 0.3]], True),  # z ignored
        "shared edge": ([base], [[4, 0, 0, 4, 2, 1, 0]], False),
        "shared corner": ([base], [[4, 2, 0, 4, 2, 1, 0]], False),
        "cross (no corner inside)": ([[0, 0, 0, 10, 1, 1, 0]], [[0, 0, 0, 10, 1, 1, math.pi / 2]], True),
        "diamond tip gap": ([base], [[2 + math.sqrt(2) / 2 + 1e-6, 0, 0, 1, 1, 1, math.pi / 4]], False),
        "diamond tip in": ([base], [[2 + math.sqrt(2) / 2 - 1e-3, 0, 0, 1, 1, 1, math.pi / 4]], True),
        "huge coordinates": ([[1e6, -1e6, 0, 4, 2, 1, 0.1]], [[1e6 + 3.9, -1e6, 0, 4, 2, 1, 0.1]], True),
        "huge apart": ([[1e6, -1e6, 0, 4, 2, 1, 0.1]], [[1e6 + 4.1, -1e6, 0, 4, 2, 1, 0.1]], False),
    }
    for name, (a, b, expected) in cases.items():
        got = bev_boxes_overlap(np.array(a, dtype=np.float64), np.array(b, dtype=np.float64))
        assert got.shape == (1, 1) and bool(got[0, 0]) == expected, name
        assert bool(shapely_overlap(np.array(a), np.array(b))[0, 0]) == expected, name
    assert bev_boxes_overlap(np.zeros((0, 7)), np.array([base])).shape == (0, 1)
    assert bev_boxes_overlap(Boxes3D.empty(), Boxes3D.empty()).shape == (0, 0)
    nan_box = np.array([[np.nan, 0, 0, 4, 2, 1, 0]])
    assert not bev_boxes_overlap(nan_box, np.array([base])).any()
    with pytest.raises(ValueError, match="box rows"):
        bev_boxes_overlap(np.zeros((2, 5)), np.array([base]))
