"""Voxelization against Python loop twins (dicts keyed on (b, z, y, x) tuples) on random and
adversarial clouds; the torch path against the numba path for exact equality on every input;
hard voxelization against spconv's PointToVoxel (one sample, random and real clouds)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pointformer.ops.voxelize as vz
from pointformer.ops import (
    dynamic_voxelize,
    hard_voxelize,
    voxel_max,
    voxel_mean,
    voxelize_mean,
)
from pointformer.ops.spconv_compat import spconv  # noqa: F401  (spconv patched before its utils load)
from pointformer.structures import PointBatch, SparseVoxels

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
KITTI_SCAN = REALDATA / "kitti_openpcdet_pr653" / "training" / "velodyne" / "000000.bin"

# Exactly representable in float32: boundaries x0 + k * vx are exact.
BINARY_SIZE = (0.25, 0.5, 1.0)
BINARY_RANGE = (-2.0, -4.0, -3.0, 2.0, 4.0, 1.0)  # 16 x 16 x 4 voxels
FINE_SIZE = (0.05, 0.05, 0.05)  # 12.8 million voxels: sparse keys
FINE_RANGE = (-10.0, -10.0, -3.0, 10.0, 10.0, 1.0)
PILLAR_SIZE = (0.32, 0.32, 6.0)
PILLAR_RANGE = (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0)
VOXEL_SIZE = (0.1, 0.1, 0.15)
VOXEL_RANGE = (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0)


# ------------------------------------------------------------------ twins
def _twin_voxel(point, grid: vz.VoxelGrid):
    """(z, y, x), "out" or "non-finite" for one point, written from the rule in the docstring."""
    xyz = [np.float32(v) for v in point[:3]]
    if not all(math.isfinite(v) for v in xyz):
        return "non-finite"
    lo = [np.float32(v) for v in grid.point_cloud_range[:3]]
    hi = [np.float32(v) for v in grid.point_cloud_range[3:]]
    size = [np.float32(v) for v in grid.voxel_size]
    shape_xyz = grid.spatial_shape[::-1]
    index = []
    for p, a, b, s, n in zip(xyz, lo, hi, size, shape_xyz):
        if not a <= p < b:
            return "out"
        i = math.floor(np.float32(np.float32(p - a) / s))
        if not 0 <= i < n:
            return "out"
        index.append(i)
    return index[2], index[1], index[0]


def _samples(offsets: list[int]):
    """(sample, point index) of every point, in input order."""
    for b in range(len(offsets) - 1):
        for i in range(offsets[b], offsets[b + 1]):
            yield b, i


def _twin_dynamic(points: torch.Tensor, offsets: list[int], grid: vz.VoxelGrid):
    members: dict[tuple, list[int]] = {}
    dropped = {"out": 0, "non-finite": 0}
    for b, i in _samples(offsets):
        voxel = _twin_voxel(points[i].tolist(), grid)
        if isinstance(voxel, str):
            dropped[voxel] += 1
        else:
            members.setdefault((b, *voxel), []).append(i)
    coords = sorted(members)
    point_to_voxel = [-1] * points.shape[0]
    for row, key in enumerate(coords):
        for i in members[key]:
            point_to_voxel[i] = row
    return coords, point_to_voxel, [len(members[key]) for key in coords], dropped


def _twin_hard(points: torch.Tensor, offsets: list[int], grid: vz.VoxelGrid, max_points: int, max_voxels: int):
    """spconv's loop: per sample, voxels created by their first point while fewer than V."""
    coords: list[tuple] = []
    slots: list[list[list[float]]] = []
    point_to_voxel = [-1] * points.shape[0]
    dropped = {"out": 0, "non-finite": 0, "voxels": 0, "points": 0}
    for b in range(len(offsets) - 1):
        ids: dict[tuple, int] = {}
        for i in range(offsets[b], offsets[b + 1]):
            voxel = _twin_voxel(points[i].tolist(), grid)
            if isinstance(voxel, str):
                dropped[voxel] += 1
                continue
            if voxel not in ids:
                if len(ids) == max_voxels:
                    dropped["voxels"] += 1
                    continue
                ids[voxel] = len(coords)
                coords.append((b, *voxel))
                slots.append([])
            v = ids[voxel]
            point_to_voxel[i] = v
            if len(slots[v]) < max_points:
                slots[v].append(points[i].tolist())
            else:
                dropped["points"] += 1
    voxels = torch.zeros((len(coords), max_points, points.shape[1]))
    for v, rows in enumerate(slots):
        if rows:
            voxels[v, : len(rows)] = torch.tensor(rows)
    return coords, voxels, [len(rows) for rows in slots], point_to_voxel, dropped


# ------------------------------------------------------------------ helpers
def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and values, NaN where the other has NaN."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.dtype.is_floating_point:
        return torch.equal(a, b)
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


def _both_paths_dynamic(points, offsets, size, bounds) -> vz.DynamicVoxelization:
    """Public (numba) result, after checking the torch path gives exactly the same."""
    result = dynamic_voxelize(points, size, bounds, torch.tensor(offsets))
    grid = vz.VoxelGrid.create(size, bounds)
    other = vz._dynamic_torch(points, np.array(offsets), grid)
    for field in ("coords", "point_to_voxel", "counts"):
        assert _identical(getattr(result, field), getattr(other, field)), field
    assert (result.num_out_of_range, result.num_non_finite) == (other.num_out_of_range, other.num_non_finite)
    return result


def _both_paths_hard(points, offsets, size, bounds, max_points, max_voxels) -> vz.HardVoxelization:
    result = hard_voxelize(points, size, bounds, max_points, max_voxels, torch.tensor(offsets))
    grid = vz.VoxelGrid.create(size, bounds)
    other = vz._hard_torch(points, np.array(offsets), grid, max_points, min(max_voxels, max(points.shape[0], 1)))
    for field in ("voxels", "coords", "num_points", "point_to_voxel"):
        assert _identical(getattr(result, field), getattr(other, field)), field
    counts = ("num_out_of_range", "num_non_finite", "num_over_max_voxels", "num_over_max_points")
    assert [getattr(result, c) for c in counts] == [getattr(other, c) for c in counts]
    return result


def _check_dynamic(points, offsets, size, bounds) -> vz.DynamicVoxelization:
    result = _both_paths_dynamic(points, offsets, size, bounds)
    coords, point_to_voxel, counts, dropped = _twin_dynamic(points, offsets, vz.VoxelGrid.create(size, bounds))
    assert result.coords.dtype == torch.int32 and result.point_to_voxel.dtype == torch.int64
    assert result.coords.reshape(-1, 4).tolist() == [list(c) for c in coords]
    assert result.point_to_voxel.tolist() == point_to_voxel
    assert result.counts.tolist() == counts
    assert (result.num_out_of_range, result.num_non_finite) == (dropped["out"], dropped["non-finite"])
    assert result.batch_size == len(offsets) - 1
    return result


def _check_hard(points, offsets, size, bounds, max_points, max_voxels) -> vz.HardVoxelization:
    result = _both_paths_hard(points, offsets, size, bounds, max_points, max_voxels)
    coords, voxels, num_points, point_to_voxel, dropped = _twin_hard(
        points, offsets, vz.VoxelGrid.create(size, bounds), max_points, max_voxels)
    assert result.coords.reshape(-1, 4).tolist() == [list(c) for c in coords]
    assert _identical(result.voxels, voxels)
    assert result.num_points.tolist() == num_points
    assert result.point_to_voxel.tolist() == point_to_voxel
    assert (result.num_out_of_range, result.num_non_finite, result.num_over_max_voxels, result.num_over_max_points) == (
        dropped["out"], dropped["non-finite"], dropped["voxels"], dropped["points"])
    return result


def _random_cloud(generator: torch.Generator, n: int, bounds, margin: float = 1.0, columns: int = 4) -> torch.Tensor:
    lo = torch.tensor(bounds[:3]) - margin
    hi = torch.tensor(bounds[3:]) + margin
    xyz = lo + (hi - lo) * torch.rand(n, 3, generator=generator)
    return torch.cat([xyz, torch.rand(n, columns - 3, generator=generator)], dim=1)


# ------------------------------------------------------------------ grid rule and errors
def test_grid_shape_is_zyx_and_pillars_have_one_z():
    assert vz.VoxelGrid.create(BINARY_SIZE, BINARY_RANGE).spatial_shape == (4, 16, 16)
    assert vz.VoxelGrid.create(PILLAR_SIZE, PILLAR_RANGE).spatial_shape == (1, 468, 468)
    assert vz.VoxelGrid.create(VOXEL_SIZE, VOXEL_RANGE).spatial_shape == (40, 1504, 1504)


@pytest.mark.parametrize(
    "size, bounds, match",
    [
        ((0.1, 0.0, 0.1), BINARY_RANGE, "voxel_size must be positive"),
        ((0.1, -0.1, 0.1), BINARY_RANGE, "voxel_size must be positive"),
        ((0.1, 0.1), BINARY_RANGE, "voxel_size must be 3"),
        ((0.1, float("nan"), 0.1), BINARY_RANGE, "voxel_size must be 3 finite"),
        ((1e-46, 0.1, 0.1), BINARY_RANGE, "voxel_size must be positive"),  # 0 in float32
        (BINARY_SIZE, (0, 0, 0, 1, 1), "point_cloud_range must be 6"),
        (BINARY_SIZE, (2, -4, -3, 2, 4, 1), "point_cloud_range must have min < max"),
        (BINARY_SIZE, (3, -4, -3, 2, 4, 1), "point_cloud_range must have min < max"),
        (BINARY_SIZE, (0, 0, 0, 0.1, 1, 1), "less than half a voxel"),
        ((1e-9, 1.0, 1.0), BINARY_RANGE, "more than 2147483647 voxels along x"),
        ((1e-3, 1e-3, 1e-3), (-1e6, -1e6, -1e6, 1e6, 1e6, 1e6), "overflow the int64 voxel key"),
        (BINARY_SIZE, (0, 0, 0, 1e39, 1, 1), "point_cloud_range must fit in float32"),
    ],
)
def test_bad_grids_raise_naming_the_argument(size, bounds, match):
    points = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=match):
        dynamic_voxelize(points, size, bounds)
    with pytest.raises(ValueError, match=match):
        hard_voxelize(points, size, bounds, 4, 10)


def test_key_overflow_counts_the_batch():
    # 2**21 voxels per axis: one sample's 2**63 keys fit only just not; smaller grids times B overflow.
    size, bounds = (1.0, 1.0, 1.0), (0, 0, 0, 2**20, 2**20, 2**20)
    dynamic_voxelize(torch.zeros(1, 3), size, bounds)
    with pytest.raises(ValueError, match="8 of them overflow the int64 voxel key"):
        dynamic_voxelize(torch.zeros(8, 3), size, bounds, torch.arange(9))


@pytest.mark.parametrize(
    "points, offsets, match",
    [
        (torch.zeros(5), None, r"points must be \(N, 3 \+ C\)"),
        (torch.zeros(5, 2), None, r"points must be \(N, 3 \+ C\)"),
        (torch.zeros(2, 5, 4), None, r"points must be \(N, 3 \+ C\)"),
        (torch.zeros(5, 4, dtype=torch.float64), None, "points must be float32"),
        (torch.zeros(5, 4), torch.tensor([0, 4]), "offsets must rise from 0 to the number of points 5"),
        (torch.zeros(5, 4), torch.tensor([1, 5]), "offsets must rise from 0"),
        (torch.zeros(5, 4), torch.tensor([0, 3, 2, 5]), "offsets must rise from 0"),
        (torch.zeros(5, 4), torch.tensor([[0, 5]]), r"offsets must be an integer \(B \+ 1,\) vector"),
        (torch.zeros(5, 4), torch.tensor([0.0, 5.0]), r"offsets must be an integer \(B \+ 1,\) vector"),
        (torch.zeros(5, 4), torch.tensor([], dtype=torch.int64), r"offsets must be an integer \(B \+ 1,\) vector"),
        (PointBatch(torch.zeros(5, 4), torch.tensor([0, 5])), torch.tensor([0, 5]), "offsets must be None"),
    ],
)
def test_bad_points_and_offsets_raise(points, offsets, match):
    with pytest.raises(ValueError, match=match):
        dynamic_voxelize(points, BINARY_SIZE, BINARY_RANGE, offsets)
    with pytest.raises(ValueError, match=match):
        hard_voxelize(points, BINARY_SIZE, BINARY_RANGE, 4, 10, offsets)


def test_points_of_another_type_raise_type_error():
    with pytest.raises(TypeError, match="points must be a torch.Tensor or PointBatch, got ndarray"):
        dynamic_voxelize(np.zeros((5, 4), np.float32), BINARY_SIZE, BINARY_RANGE)


@pytest.mark.parametrize("name, value", [("max_points_per_voxel", 0), ("max_voxels", -1), ("max_voxels", 2.5), ("max_voxels", True)])
def test_bad_caps_raise(name, value):
    caps = {"max_points_per_voxel": 4, "max_voxels": 10, name: value}
    with pytest.raises(ValueError, match=name):
        hard_voxelize(torch.zeros(3, 4), BINARY_SIZE, BINARY_RANGE, **caps)


# ------------------------------------------------------------------ dynamic
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("size, bounds", [(BINARY_SIZE, BINARY_RANGE), (FINE_SIZE, FINE_RANGE)])
def test_dynamic_random_batches_with_empty_samples(seed, size, bounds):
    generator = torch.Generator().manual_seed(seed)
    clouds = [_random_cloud(generator, n, bounds) for n in (700, 0, 1500, 1, 0)]
    batch = PointBatch.from_list(clouds)
    result = _check_dynamic(batch.points, batch.offsets.tolist(), size, bounds)
    assert result.num_out_of_range > 0 and result.num_voxels > 100
    assert torch.equal(dynamic_voxelize(batch, size, bounds).coords, result.coords)  # PointBatch input


def test_many_voxels_in_a_crowded_hash_table():
    """Tens of thousands of voxels (long probe runs, voxels beyond max_voxels probed again and
    again) against the twins, two samples sharing one table."""
    generator = torch.Generator().manual_seed(7)
    points = _random_cloud(generator, 12_000, FINE_RANGE, margin=0.0)
    points = torch.cat([points, points[::3]])
    offsets = [0, 6_000, 16_000]
    result = _check_dynamic(points, offsets, (0.1, 0.1, 0.1), FINE_RANGE)
    assert result.num_voxels > 10_000
    capped = _check_hard(points, offsets, (0.1, 0.1, 0.1), FINE_RANGE, 1, 3_000)
    assert capped.num_over_max_voxels > 5_000 and capped.num_over_max_points > 0


@pytest.mark.parametrize("offsets", [[0], [0, 0], [0, 0, 0]])
def test_empty_input(offsets):
    points = torch.zeros(0, 4)
    result = _check_dynamic(points, offsets, BINARY_SIZE, BINARY_RANGE)
    assert result.coords.shape == (0, 4) and result.point_to_voxel.shape == (0,)
    hard = _check_hard(points, offsets, BINARY_SIZE, BINARY_RANGE, 5, 10)
    assert hard.voxels.shape == (0, 5, 4)
    sparse = voxelize_mean(points, BINARY_SIZE, BINARY_RANGE, torch.tensor(offsets))
    assert sparse.feats.shape == (0, 4) and sparse.batch_size == len(offsets) - 1


def test_one_point():
    points = torch.tensor([[0.3, -1.2, 0.1, 7.0]])
    result = _check_dynamic(points, [0, 1], BINARY_SIZE, BINARY_RANGE)
    # x: (0.3 + 2) / 0.25 = 9.2; y: (-1.2 + 4) / 0.5 = 5.6; z: (0.1 + 3) / 1 = 3.1
    assert result.coords.tolist() == [[0, 3, 5, 9]] and result.counts.tolist() == [1]
    hard = _check_hard(points, [0, 1], BINARY_SIZE, BINARY_RANGE, 3, 1)
    assert hard.voxels[0, 0].tolist() == pytest.approx([0.3, -1.2, 0.1, 7.0]) and hard.voxels[0, 1:].abs().sum() == 0


def test_points_on_voxel_boundaries_and_range_edges():
    """x = x0 + k * vx exactly lands in voxel k; the min edge is in, the max edge is out. Just
    below the max edge a point is in the last voxel when its float32 offset from the min is
    below the width, and out when that offset rounds up to the width (as in spconv)."""
    x0, y0, z0, x1, y1, z1 = BINARY_RANGE
    below = lambda v: float(np.nextafter(np.float32(v), np.float32(-np.inf)))
    rows = [
        [x0 + 3 * 0.25, y0 + 5 * 0.5, z0 + 2 * 1.0],  # (z, y, x) = (2, 5, 3)
        [x0, y0, z0],  # (0, 0, 0): min edge in
        [x0 + below(x1 - x0), y0 + below(y1 - y0), z0 + below(z1 - z0)],  # last voxel (3, 15, 15)
        [x1, 0.0, 0.0],  # max edge out
        [0.0, y1, 0.0],
        [0.0, 0.0, z1],
        [below(x0), 0.0, 0.0],  # just below the min edge: out
        [0.0, 0.0, 0.0],  # (3, 8, 8)
        [0.25, 0.5, -1.0],  # (2, 9, 9)
        [below(x1), 0.0, 0.0],  # float32(below(x1) - x0) rounds to 4.0: out
    ]
    points = torch.tensor(rows, dtype=torch.float32)
    assert np.float32(rows[-1][0]) < np.float32(x1) and np.float32(rows[-1][0]) - np.float32(x0) == np.float32(4.0)
    result = _check_dynamic(points, [0, len(rows)], BINARY_SIZE, BINARY_RANGE)
    assert result.coords.tolist() == [[0, 0, 0, 0], [0, 2, 5, 3], [0, 2, 9, 9], [0, 3, 8, 8], [0, 3, 15, 15]]
    assert result.point_to_voxel.tolist() == [1, 0, 4, -1, -1, -1, -1, 3, 2, -1]
    assert result.num_out_of_range == 5
    _check_hard(points, [0, len(rows)], BINARY_SIZE, BINARY_RANGE, 2, 100)


def test_max_edge_is_out_where_float32_rounds_into_the_last_voxel():
    """(75.2 - -75.2) / 0.1 is 1503.9999 in float32: spconv puts x = 75.2 in voxel 1503, we drop
    it (p < x1 is required); x = 75.19999 is in voxel 1503 for both."""
    grid = vz.VoxelGrid.create(VOXEL_SIZE, VOXEL_RANGE)
    assert np.floor((np.float32(75.2) - np.float32(-75.2)) / np.float32(0.1)) == 1503
    points = torch.tensor([[75.2, 0.0, 0.0], [np.nextafter(np.float32(75.2), np.float32(0)), 0.0, 0.0]])
    result = _check_dynamic(points, [0, 2], VOXEL_SIZE, VOXEL_RANGE)
    assert result.point_to_voxel.tolist() == [-1, 0] and result.coords[0, 3] == grid.spatial_shape[2] - 1


def test_negative_coordinates():
    bounds = (-10.0, -8.0, -6.0, -1.0, -2.0, -0.5)
    generator = torch.Generator().manual_seed(3)
    points = _random_cloud(generator, 800, bounds, margin=0.5)
    result = _check_dynamic(points, [0, 800], (0.3, 0.4, 0.5), bounds)
    assert result.num_out_of_range > 0 and (result.coords >= 0).all()
    _check_hard(points, [0, 800], (0.3, 0.4, 0.5), bounds, 3, 50)


def test_huge_and_non_finite_coordinates_are_counted():
    inf, nan = float("inf"), float("nan")
    rows = [
        [1e30, 0.0, 0.0, 1.0], [0.0, -1e30, 0.0, 1.0], [0.0, 0.0, 3.4e38, 1.0],  # out of range
        [nan, 0.0, 0.0, 1.0], [0.0, inf, 0.0, 1.0], [0.0, 0.0, -inf, 1.0], [nan, 1e30, inf, 1.0],  # non-finite
        [0.1, 0.2, 0.3, nan],  # a NaN feature is kept
        [0.1, 0.2, 0.3, 1.0],
    ]
    points = torch.tensor(rows, dtype=torch.float32)
    result = _check_dynamic(points, [0, len(rows)], BINARY_SIZE, BINARY_RANGE)
    assert (result.num_out_of_range, result.num_non_finite) == (3, 4)
    assert result.counts.tolist() == [2]
    hard = _check_hard(points, [0, len(rows)], BINARY_SIZE, BINARY_RANGE, 4, 10)
    assert (hard.num_out_of_range, hard.num_non_finite) == (3, 4)
    assert math.isnan(hard.voxels[0, 0, 3]) and hard.voxels[0, 1, 3] == 1.0


def test_dropped_counts_are_logged(caplog):
    points = torch.tensor([[1e30, 0.0, 0.0], [float("nan"), 0.0, 0.0], [0.0, 0.0, 0.0]])
    with caplog.at_level(logging.DEBUG, logger="pointformer.ops.voxelize"):
        dynamic_voxelize(points, BINARY_SIZE, BINARY_RANGE)
        hard_voxelize(points, BINARY_SIZE, BINARY_RANGE, 1, 1)
    assert "dropped 1 out of range, 1 non-finite" in caplog.text
    assert "0 in voxels beyond max_voxels=1, 0 beyond max_points_per_voxel=1" in caplog.text


def test_duplicated_points_share_a_voxel_in_input_order():
    generator = torch.Generator().manual_seed(4)
    base = _random_cloud(generator, 50, BINARY_RANGE, margin=0.0)
    points = torch.cat([base, base, base[:10]])
    result = _check_dynamic(points, [0, 110], BINARY_SIZE, BINARY_RANGE)
    assert torch.equal(result.point_to_voxel[:50], result.point_to_voxel[50:100])
    _check_hard(points, [0, 110], BINARY_SIZE, BINARY_RANGE, 2, 1000)
    _check_hard(points, [0, 60, 110], BINARY_SIZE, BINARY_RANGE, 3, 20)


def test_pillars_put_every_height_in_z_zero():
    generator = torch.Generator().manual_seed(5)
    points = _random_cloud(generator, 2000, PILLAR_RANGE, margin=2.0)
    result = _check_dynamic(points, [0, 2000], PILLAR_SIZE, PILLAR_RANGE)
    assert result.spatial_shape == (1, 468, 468) and (result.coords[:, 1] == 0).all()


# ------------------------------------------------------------------ hard
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("size, bounds", [(BINARY_SIZE, BINARY_RANGE), (FINE_SIZE, FINE_RANGE)])
def test_hard_random_batches_with_caps(seed, size, bounds):
    generator = torch.Generator().manual_seed(10 + seed)
    clouds = [_random_cloud(generator, n, bounds, margin=0.5) for n in (900, 0, 1200, 1)]
    clouds = [torch.cat([c, c[:50], c[:50]]) for c in clouds]  # early voxels of >= 3 points
    batch = PointBatch.from_list(clouds)
    offsets = batch.offsets.tolist()
    roomy = _check_hard(batch.points, offsets, size, bounds, 64, 100_000)
    assert roomy.num_over_max_voxels == 0
    capped = _check_hard(batch.points, offsets, size, bounds, 2, 150)  # both caps reached
    assert capped.num_over_max_voxels > 0 and capped.num_over_max_points > 0
    assert torch.bincount(capped.coords[:, 0].long(), minlength=4).tolist()[:3] == [150, 0, 150]


def test_hard_all_points_in_one_voxel_keeps_the_first_k():
    points = torch.tensor([[0.1, 0.1, 0.1, float(i)] for i in range(12)])
    result = _check_hard(points, [0, 12], BINARY_SIZE, BINARY_RANGE, 5, 3)
    assert result.num_points.tolist() == [5] and result.num_over_max_points == 7
    assert result.voxels[0, :, 3].tolist() == [0, 1, 2, 3, 4]
    assert result.point_to_voxel.tolist() == [0] * 12  # cut points still name their voxel, as spconv


def test_hard_voxels_are_numbered_by_first_point_not_by_key():
    points = torch.tensor([[1.9, 3.9, 0.9], [-1.9, -3.9, -2.9], [1.9, 3.9, 0.9], [0.0, 0.0, 0.0]])
    result = _check_hard(points, [0, 4], BINARY_SIZE, BINARY_RANGE, 4, 10)
    assert result.coords.tolist() == [[0, 3, 15, 15], [0, 0, 0, 0], [0, 3, 8, 8]]
    assert result.num_points.tolist() == [2, 1, 1]


# ------------------------------------------------------------------ spconv
def _spconv_hard(points: torch.Tensor, size, bounds, max_points: int, max_voxels: int):
    from spconv.pytorch.utils import PointToVoxel

    generator = PointToVoxel(vsize_xyz=list(size), coors_range_xyz=list(bounds), num_point_features=points.shape[1],
                             max_num_voxels=max_voxels, max_num_points_per_voxel=max_points)
    return generator.generate_voxel_with_id(points)


def _assert_matches_spconv(points, size, bounds, max_points, max_voxels):
    voxels, coords, num_points, point_ids = _spconv_hard(points, size, bounds, max_points, max_voxels)
    ours = hard_voxelize(points, size, bounds, max_points, max_voxels)
    assert ours.spatial_shape == tuple(vz.VoxelGrid.create(size, bounds).spatial_shape)
    assert torch.equal(ours.coords[:, 1:], coords) and (ours.coords[:, 0] == 0).all()
    assert torch.equal(ours.voxels, voxels)
    assert torch.equal(ours.num_points, num_points.long())
    assert torch.equal(ours.point_to_voxel, point_ids)
    return ours


@pytest.mark.parametrize("seed", range(3))
def test_hard_matches_spconv_on_random_clouds(seed):
    generator = torch.Generator().manual_seed(20 + seed)
    points = _random_cloud(generator, 3000, FINE_RANGE, margin=1.0, columns=5)
    points[::7, :3] = points[::7, :3].round(decimals=1)  # many points on 0.05 m boundaries
    points = torch.cat([points, points[:100]])  # duplicates
    _assert_matches_spconv(points, FINE_SIZE, FINE_RANGE, 4, 100_000)
    capped = _assert_matches_spconv(points, FINE_SIZE, FINE_RANGE, 2, 500)
    assert capped.num_over_max_voxels > 0
    _assert_matches_spconv(points, BINARY_SIZE, BINARY_RANGE, 3, 200)


def test_hard_matches_spconv_on_a_real_kitti_scan():
    if not KITTI_SCAN.is_file():
        pytest.skip("shared/realdata KITTI scan absent")
    points = torch.from_numpy(np.fromfile(KITTI_SCAN, np.float32).reshape(-1, 4))
    pillars = _assert_matches_spconv(points, PILLAR_SIZE, PILLAR_RANGE, 32, 30_000)
    voxels = _assert_matches_spconv(points, VOXEL_SIZE, VOXEL_RANGE, 10, 30_000)
    assert pillars.num_over_max_points > 0 and voxels.num_over_max_voxels > 0
    result = _both_paths_hard(points, [0, points.shape[0]], VOXEL_SIZE, VOXEL_RANGE, 5, 20_000)
    assert result.num_voxels == 20_000
    _both_paths_dynamic(points, [0, points.shape[0]], VOXEL_SIZE, VOXEL_RANGE)


# ------------------------------------------------------------------ segment reductions
def _twin_segments(feats: torch.Tensor, index: list[int], num_voxels: int):
    rows: list[list[list[float]]] = [[] for _ in range(num_voxels)]
    for i, v in enumerate(index):
        if v >= 0:
            rows[v].append(feats[i].tolist())
    mean = torch.zeros(num_voxels, feats.shape[1], dtype=torch.float64)
    high = torch.zeros(num_voxels, feats.shape[1], dtype=torch.float64)
    for v, members in enumerate(rows):
        if members:
            mean[v] = torch.tensor([sum(col) / len(col) for col in zip(*members)], dtype=torch.float64)
            high[v] = torch.tensor([math.nan if any(math.isnan(x) for x in col) else max(col) for col in zip(*members)])
    return mean.to(feats.dtype), high.to(feats.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxel_mean_and_max_against_loops(dtype):
    generator = torch.Generator().manual_seed(30)
    feats = (torch.randn(500, 3, generator=generator) * 100).to(dtype)
    feats[7, 1] = math.nan
    index = torch.randint(-1, 40, (500,), generator=generator)
    index[index == 13] = -1  # an empty voxel
    mean, high = _twin_segments(feats, index.tolist(), 45)
    for fn, twin in ((voxel_mean, mean), (voxel_max, high)):
        ours = fn(feats, index, 45)
        torch_path = (vz._voxel_mean_torch if fn is voxel_mean else vz._voxel_max_torch)(feats, index, 45)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, twin, equal_nan=True, rtol=0, atol=0)
        assert _identical(ours, torch_path)
        assert (ours[13] == 0).all() and (ours[40:] == 0).all()


def test_voxel_mean_max_of_half_precision_and_gradients():
    feats = torch.tensor([[1.0, 2.0], [3.0, -4.0], [5.0, 6.0]])
    index = torch.tensor([0, 0, -1])
    assert voxel_mean(feats.half(), index, 1).dtype == torch.float16
    assert voxel_mean(feats.half(), index, 1).tolist() == [[2.0, -1.0]]
    leaf = feats.clone().requires_grad_(True)
    voxel_mean(leaf, index, 1).sum().backward()
    assert leaf.grad.tolist() == [[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]]
    leaf = feats.clone().requires_grad_(True)
    voxel_max(leaf, index, 1).sum().backward()
    assert leaf.grad.tolist() == [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    "feats, index, num_voxels, match",
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.int64), 1, "feats must be floating point"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), 1, "feats must be floating point"),
        (torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64), 1, "point_to_voxel must be int64"),
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32), 1, "point_to_voxel must be int64"),
        (torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2, r"point_to_voxel must lie in \[-1, num_voxels=2\)"),
        (torch.zeros(3, 2), torch.tensor([0, -2, 0]), 2, r"point_to_voxel must lie in"),
        (torch.zeros(3, 2), torch.tensor([0, 0, 0]), -1, "num_voxels must be >= 0"),
    ],
)
def test_segment_reductions_reject_bad_input(feats, index, num_voxels, match):
    for fn in (voxel_mean, voxel_max):
        with pytest.raises(ValueError, match=match):
            fn(feats, index, num_voxels)


def test_voxelize_mean_gives_sparse_voxels_of_point_means():
    generator = torch.Generator().manual_seed(40)
    batch = PointBatch.from_list([_random_cloud(generator, n, BINARY_RANGE, margin=0.3) for n in (300, 0, 200)])
    sparse = voxelize_mean(batch, BINARY_SIZE, BINARY_RANGE)
    assert isinstance(sparse, SparseVoxels) and sparse.batch_size == 3 and sparse.spatial_shape == (4, 16, 16)
    coords, point_to_voxel, _, _ = _twin_dynamic(batch.points, batch.offsets.tolist(), vz.VoxelGrid.create(BINARY_SIZE, BINARY_RANGE))
    mean, _ = _twin_segments(batch.points, point_to_voxel, len(coords))
    assert sparse.coords.tolist() == [list(c) for c in coords]
    assert torch.equal(sparse.feats, mean)


# ------------------------------------------------------------------ devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(50)
    batch = PointBatch.from_list([_random_cloud(generator, n, FINE_RANGE) for n in (5000, 0, 3000)])
    batch.points[::97, 0] = float("nan")
    cpu_dynamic = dynamic_voxelize(batch, FINE_SIZE, FINE_RANGE)
    gpu_dynamic = dynamic_voxelize(batch.to("cuda"), FINE_SIZE, FINE_RANGE)
    for field in ("coords", "point_to_voxel", "counts"):
        assert getattr(gpu_dynamic, field).is_cuda
        assert torch.equal(getattr(cpu_dynamic, field), getattr(gpu_dynamic, field).cpu())
    assert (cpu_dynamic.num_out_of_range, cpu_dynamic.num_non_finite) == (gpu_dynamic.num_out_of_range, gpu_dynamic.num_non_finite)
    cpu_hard = hard_voxelize(batch, FINE_SIZE, FINE_RANGE, 3, 2000)
    gpu_hard = hard_voxelize(batch.to("cuda"), FINE_SIZE, FINE_RANGE, 3, 2000)
    for field in ("voxels", "coords", "num_points", "point_to_voxel"):
        assert _identical(getattr(cpu_hard, field), getattr(gpu_hard, field).cpu())
    cpu_mean = voxel_mean(batch.points, cpu_dynamic.point_to_voxel, cpu_dynamic.num_voxels)
    gpu_mean = voxel_mean(batch.points.cuda(), gpu_dynamic.point_to_voxel, gpu_dynamic.num_voxels)
    assert torch.equal(cpu_mean, gpu_mean.cpu())
    cpu_max = voxel_max(batch.points, cpu_dynamic.point_to_voxel, cpu_dynamic.num_voxels)
    gpu_max = voxel_max(batch.points.cuda(), gpu_dynamic.point_to_voxel, gpu_dynamic.num_voxels)
    assert _identical(cpu_max, gpu_max.cpu())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxel_max_gradient_goes_to_the_first_maximum(dtype):
    generator = torch.Generator().manual_seed(31)
    feats = torch.randint(-3, 4, (400, 5), generator=generator).to(dtype)  # many ties
    feats[11, 2] = math.nan
    index = torch.randint(-1, 30, (400,), generator=generator)
    grad_out = torch.randn(32, 5, generator=generator, dtype=dtype)
    leaf = feats.clone().requires_grad_(True)
    out = voxel_max(leaf, index, 32)
    out.backward(grad_out)
    _, high = _twin_segments(feats, index.tolist(), 32)
    torch.testing.assert_close(out.detach(), high, equal_nan=True, rtol=0, atol=0)
    expected = torch.zeros_like(feats)
    for v in range(32):
        for c in range(5):
            rows = [i for i in range(400) if index[i] == v]
            if not rows:
                continue
            column = feats[rows, c]
            nan_rows = [r for r in rows if math.isnan(feats[r, c])]
            first = nan_rows[0] if nan_rows else rows[int(torch.nonzero(column == column.max())[0])]
            expected[first, c] += grad_out[v, c]
    assert torch.equal(leaf.grad, expected)
