"""points_in_boxes against its twin Boxes3D.points_in_boxes (first True column, -1 for none) on
random, boundary, overlapping and degenerate inputs and on a real KITTI scan; the torch path
against the numba path, exactly, on every input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import pointformer.ops.box_points as box_points_module
from pointformer.ops import points_in_boxes, points_in_boxes_batch
from pointformer.structures import Boxes3D

KITTI_SCAN = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "kitti_openpcdet_pr653" / "training" / "velodyne" / "000000.bin"


def _twin(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """First box holding each point by Boxes3D.points_in_boxes' (P, N) mask, -1 for none."""
    mask = Boxes3D(boxes).points_in_boxes(points)
    if mask.shape[1] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.int64)
    return torch.where(mask.any(dim=1), mask.to(torch.int8).argmax(dim=1), -1)


def _both_paths(monkeypatch, points, boxes) -> torch.Tensor:
    ours = points_in_boxes(points, boxes)
    assert ours.dtype == torch.int64 and ours.shape == (points.shape[0],)
    with monkeypatch.context() as patch:
        patch.setattr(box_points_module, "_points_in_boxes_numba", box_points_module._points_in_boxes_torch)
        assert torch.equal(points_in_boxes(points, boxes), ours)
    return ours


def _random_boxes(generator: np.random.Generator, count: int, spread: float) -> torch.Tensor:
    boxes = np.empty((count, 7))
    boxes[:, :2] = generator.uniform(-spread, spread, (count, 2))
    boxes[:, 2] = generator.uniform(-1, 1, count)
    boxes[:, 3:6] = generator.uniform(0.2, 6.0, (count, 3))
    boxes[:, 6] = generator.uniform(-7, 7, count)
    return torch.from_numpy(boxes)


def _surface_points(boxes: torch.Tensor) -> torch.Tensor:
    """Points exactly on every face, edge and corner of axis-aligned boxes with dyadic sizes,
    and just outside them."""
    rows = []
    for x, y, z, l, w, h, _ in boxes.tolist():
        for a in (-l / 2, 0.0, l / 2):
            for b in (-w / 2, 0.0, w / 2):
                for c in (-h / 2, 0.0, h / 2):
                    rows.append([x + a, y + b, z + c])
        rows += [[x + l / 2 + 1e-9, y, z], [x, y - w / 2 - 1e-9, z], [x, y, z + h / 2 + 1e-9]]
    return torch.tensor(rows, dtype=torch.float64)


# ----------------------------------------------------------------- random
@pytest.mark.parametrize("seed", range(3))
def test_random_matches_twin(monkeypatch, seed):
    generator = np.random.default_rng(seed)
    boxes = _random_boxes(generator, 40, 15.0)  # many overlap: the lowest index must win
    points = torch.from_numpy(generator.uniform(-20, 20, (4000, 4)).astype(np.float32))
    points[:, 2] = points[:, 2] / 10
    ours = _both_paths(monkeypatch, points, boxes)
    assert torch.equal(ours, _twin(points, boxes))
    assert (ours >= 0).float().mean() > 0.08 and len(set(ours.tolist())) > 20


def test_surface_is_inside(monkeypatch):
    boxes = torch.tensor([[0, 0, 0, 2, 1, 0.5, 0], [10, -3, 1, 4, 2, 1, 0], [-5, 5, 0, 0.25, 0.125, 2, -math.pi]], dtype=torch.float64)
    points = _surface_points(boxes)
    ours = _both_paths(monkeypatch, points, boxes)
    assert torch.equal(ours, _twin(points, boxes))
    per_box = ours.reshape(3, -1)  # the third box is turned by -pi, where sin(yaw) is not 0
    assert (per_box[:2, :27] == torch.arange(2)[:, None]).all() and (per_box[:, 27:] == -1).all()


def test_overlaps_go_to_the_lowest_index(monkeypatch):
    boxes = torch.tensor([[5, 0, 0, 1, 1, 1, 0], [0, 0, 0, 4, 4, 4, 0.4], [0, 0, 0, 2, 2, 2, 0], [0, 0, 0, 4, 4, 4, 0.4]])
    points = torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [5, 0, 0], [0.9, 0.9, 0.9], [9, 9, 9]])
    assert _both_paths(monkeypatch, points, boxes).tolist() == [1, 1, 0, 1, -1]


def test_degenerate_boxes_and_non_finite_points(monkeypatch):
    boxes = torch.tensor([[0, 0, 0, 0, 0, 0, 0], [3, 0, 0, 0, 2, 2, 0.5], [6, 0, 0, 2, 2, 2, 0.0]], dtype=torch.float64)
    nan, inf = float("nan"), float("inf")
    points = torch.tensor(
        [[0, 0, 0], [0, 0, 1e-12], [3, 0, 0], [3.1, 0, 0], [nan, 0, 0], [6, inf, 0], [-inf, 0, 0], [6, 0, nan], [6, 0, 1]],
        dtype=torch.float64,
    )
    ours = _both_paths(monkeypatch, points, boxes)
    assert ours.tolist() == [0, -1, 1, -1, -1, -1, -1, -1, 2]
    assert torch.equal(ours, _twin(points, boxes))


def test_huge_coordinates(monkeypatch):
    generator = np.random.default_rng(4)
    boxes = _random_boxes(generator, 30, 10.0)
    points = torch.from_numpy(generator.uniform(-12, 12, (3000, 3)) * [1, 1, 0.1])
    near = points_in_boxes(points, boxes)
    offset = torch.tensor([2.0e6, -7.0e6, 3.0e3], dtype=torch.float64)
    boxes[:, :3] += offset
    points += offset
    far = _both_paths(monkeypatch, points, boxes)
    assert torch.equal(far, _twin(points, boxes))
    assert (far != near).float().mean() < 0.01 and (far >= 0).sum() > 500


def test_spread_out_boxes_grow_the_grid_cell(monkeypatch):
    generator = np.random.default_rng(5)
    boxes = _random_boxes(generator, 30, 5000.0)
    boxes[:3, 3:5] = 1e-3
    points = torch.cat([boxes[:, :3] + torch.from_numpy(generator.normal(0, 0.5, (30, 3))) for _ in range(50)])
    expected = _twin(points, boxes)
    monkeypatch.setattr(box_points_module, "MAX_CELLS", 64)
    assert torch.equal(_both_paths(monkeypatch, points, boxes), expected)
    monkeypatch.setattr(box_points_module, "CHUNK", 7)
    assert torch.equal(_both_paths(monkeypatch, points, boxes), expected)


def test_empty_and_single(monkeypatch):
    boxes = torch.tensor([[0.0, 0, 0, 1, 1, 1, 0]])
    assert _both_paths(monkeypatch, torch.zeros((0, 3)), boxes).shape == (0,)
    assert _both_paths(monkeypatch, torch.zeros((4, 5)), torch.zeros((0, 7))).tolist() == [-1] * 4
    assert _both_paths(monkeypatch, torch.tensor([[0.2, 0.1, -0.5, 7.0]]), Boxes3D(boxes).with_velocity()).tolist() == [0]


def test_bad_inputs_raise():
    boxes = torch.tensor([[0.0, 0, 0, 1, 1, 1, 0]])
    with pytest.raises(ValueError, match=r"points: expected \(P, 3\+\)"):
        points_in_boxes(torch.zeros((5, 2)), boxes)
    with pytest.raises(ValueError, match="points: expected a floating"):
        points_in_boxes(torch.zeros((5, 3), dtype=torch.int32), boxes)
    with pytest.raises(ValueError, match="boxes: .*finite"):
        points_in_boxes(torch.zeros((5, 3)), torch.tensor([[0.0, 0, 0, 1, float("nan"), 1, 0]]))
    with pytest.raises(ValueError, match="box_offsets"):
        points_in_boxes_batch(torch.zeros((5, 3)), torch.tensor([0, 5]), boxes, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="2 point samples but 1 box samples"):
        points_in_boxes_batch(torch.zeros((5, 3)), torch.tensor([0, 2, 5]), boxes, torch.tensor([0, 1]))


# ------------------------------------------------------------------ batch
def test_batch_matches_per_sample_twin():
    generator = np.random.default_rng(6)
    clouds = [torch.from_numpy(generator.uniform(-8, 8, (n, 3)) * [1, 1, 0.1]) for n in (500, 0, 300, 400)]
    box_sets = [_random_boxes(generator, n, 6.0) for n in (10, 4, 0, 12)]
    points, boxes = torch.cat(clouds), torch.cat(box_sets)
    point_offsets = torch.tensor([0, 500, 500, 800, 1200])
    box_offsets = torch.tensor([0, 10, 14, 14, 26])
    ours = points_in_boxes_batch(points, point_offsets, boxes, box_offsets)
    expected = []
    for cloud, box_set, first in zip(clouds, box_sets, box_offsets.tolist()):
        local = _twin(cloud, box_set)
        expected.append(torch.where(local >= 0, local + first, local))
    assert torch.equal(ours, torch.cat(expected))
    assert (ours[800:] >= 14).sum() > 50 and (ours[500:800] == -1).all()


# --------------------------------------------------------------- real scan
def test_real_kitti_scan_matches_twin(monkeypatch):
    if not KITTI_SCAN.is_file():
        pytest.skip("shared/realdata is absent")
    points = torch.from_numpy(np.fromfile(KITTI_SCAN, np.float32).reshape(-1, 4))
    generator = np.random.default_rng(7)
    centres = points[generator.choice(len(points), 50, replace=False), :3]
    sizes = torch.from_numpy(generator.uniform(0.5, 5, (50, 3)).astype(np.float32))
    boxes = torch.cat([centres, sizes, torch.from_numpy(generator.uniform(-4, 4, (50, 1)).astype(np.float32))], dim=1)
    ours = _both_paths(monkeypatch, points, boxes)
    assert torch.equal(ours, _twin(points, boxes)) and (ours >= 0).sum() > 1000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    generator = np.random.default_rng(8)
    boxes = _random_boxes(generator, 60, 15.0)
    points = torch.from_numpy(generator.uniform(-20, 20, (50000, 4)).astype(np.float32))
    cpu = points_in_boxes(points, boxes)
    cuda = points_in_boxes(points.cuda(), boxes.cuda())
    assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)
    offsets = torch.tensor([0, 20000, 50000])
    box_offsets = torch.tensor([0, 30, 60])
    batch = points_in_boxes_batch(points.cuda(), offsets.cuda(), boxes.cuda(), box_offsets.cuda())
    assert torch.equal(batch.cpu(), points_in_boxes_batch(points, offsets, boxes, box_offsets))


def test_grid_stays_small_with_huge_boxes_among_tiny_ones():
    """Mostly 0.1 m boxes and a few 1 km ones: the cell follows the small ones, and the CPU grid
    must not file every huge box into every cell (1000 + 1000 such boxes once made 265M links);
    results still equal the twin."""
    rng = np.random.default_rng(11)
    boxes = np.zeros((320, 7))
    boxes[:, :2] = rng.uniform(-500, 500, (320, 2))
    boxes[:, 3:6] = 0.1
    boxes[300:, 3:5] = 1000.0
    boxes[:, 6] = rng.uniform(-np.pi, np.pi, 320)
    points = torch.from_numpy(rng.uniform(-600, 600, (3000, 3)))
    assert torch.equal(points_in_boxes(points, torch.from_numpy(boxes)), _twin(points, torch.from_numpy(boxes)))
    table = box_points_module.box_table(torch.from_numpy(boxes)).numpy()
    origin_x, origin_y, cell, columns, rows = box_points_module._grid_geometry(table)
    ranges = box_points_module._cell_ranges(table, origin_x, origin_y, cell, columns, rows)
    _, members = box_points_module._build_grid(ranges, columns, rows)
    assert len(members) <= box_points_module.MAX_LINKS_PER_BOX * len(boxes) + box_points_module.MAX_CELLS
