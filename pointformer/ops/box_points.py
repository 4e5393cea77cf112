"""Which box each point falls in: ``points_in_boxes`` (one cloud) and ``points_in_boxes_batch``.

The test is :meth:`Boxes3D.points_in_boxes`'s, operation for operation in float64: a point is
inside when its offset from the centre, turned into the box frame, has ``|x| <= l/2``,
``|y| <= w/2`` and ``|z| <= h/2`` (the surface counts). Where boxes overlap the lowest box index
wins; points in no box, and non-finite points, get -1.

The CPU path (numba) files every box's axis-aligned BEV bound into a uniform grid once and
tests each point only against the boxes of its cell; the torch path tests chunks of points
against all boxes at once.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from pointformer.ops.rotated_iou import (
    COS,
    HALF_H,
    HALF_L,
    HALF_W,
    SIN,
    BoxesLike,
    X,
    Y,
    Z,
    box_table,
    box_tensor,
)

MAX_CELLS = 1 << 20  # grid cells at most on the CPU path
MAX_LINKS_PER_BOX = 16  # box-to-cell links per box on average, at most (plus MAX_CELLS)
CHUNK = 1 << 22  # point-box tests at once on the torch path


# ---------------------------------------------------------------- public
def points_in_boxes(points: torch.Tensor, boxes: BoxesLike) -> torch.Tensor:
    """points (P, 3+) x, y, z[, ...] and boxes (N, 7+) -> (P,) int64 index of the first box
    holding each point (surface included), -1 for none; on the points' device."""
    xyz = _point_xyz(points, "points")
    tensor = box_tensor(boxes)
    if tensor.device != xyz.device:
        raise ValueError(f"points_in_boxes: points on {xyz.device}, boxes on {tensor.device}")
    table = box_table(tensor)
    path = _points_in_boxes_numba if xyz.device.type == "cpu" else _points_in_boxes_torch
    return path(xyz, table)


def points_in_boxes_batch(
    points: torch.Tensor, point_offsets: torch.Tensor, boxes: BoxesLike, box_offsets: torch.Tensor
) -> torch.Tensor:
    """A batch of clouds and box sets back to back: sample ``b`` owns
    ``points[point_offsets[b]:point_offsets[b+1]]`` and the boxes between ``box_offsets[b]``
    and ``box_offsets[b+1]`` (int64 (B+1,) each, from 0). Returns (P,) int64 indices into the
    concatenated boxes (the first holding box of the point's own sample), -1 for none."""
    xyz = _point_xyz(points, "points")
    tensor = box_tensor(boxes)
    if tensor.device != xyz.device:
        raise ValueError(f"points_in_boxes_batch: points on {xyz.device}, boxes on {tensor.device}")
    point_bounds = _offsets(point_offsets, xyz.shape[0], "point_offsets")
    box_bounds = _offsets(box_offsets, tensor.shape[0], "box_offsets")
    if len(point_bounds) != len(box_bounds):
        raise ValueError(f"points_in_boxes_batch: {len(point_bounds) - 1} point samples but {len(box_bounds) - 1} box samples")
    out = torch.full((xyz.shape[0],), -1, dtype=torch.int64, device=xyz.device)
    for sample in range(len(point_bounds) - 1):
        p0, p1 = point_bounds[sample], point_bounds[sample + 1]
        b0, b1 = box_bounds[sample], box_bounds[sample + 1]
        if p1 > p0 and b1 > b0:
            inside = points_in_boxes(xyz[p0:p1], tensor[b0:b1])
            out[p0:p1] = torch.where(inside >= 0, inside + b0, inside)
    return out


def _point_xyz(points: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(points, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(points).__name__}")
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"{name}: expected (P, 3+) x, y, z[, ...], got shape {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"{name}: expected a floating tensor, got {points.dtype}")
    return points[:, :3].detach().to(torch.float64).contiguous()


def _offsets(offsets: torch.Tensor, total: int, name: str) -> list[int]:
    bounds = torch.as_tensor(offsets).reshape(-1).tolist()
    if not bounds or bounds[0] != 0 or bounds[-1] != total or any(b > a for a, b in zip(bounds[1:], bounds)):
        raise ValueError(f"points_in_boxes_batch: {name} must run non-decreasing from 0 to {total}, got {bounds[:8]}...")
    return [int(b) for b in bounds]


# ------------------------------------------------------------ numba path
@numba.njit(cache=True, inline="always")
def _inside(points, p, table, b):
    """Boxes3D.points_in_boxes' test for point ``p`` and box-table row ``b``."""
    ox = points[p, 0] - table[b, X]
    oy = points[p, 1] - table[b, Y]
    oz = points[p, 2] - table[b, Z]
    local_x = ox * table[b, COS] + oy * table[b, SIN]
    local_y = -ox * table[b, SIN] + oy * table[b, COS]
    return abs(local_x) <= table[b, HALF_L] and abs(local_y) <= table[b, HALF_W] and abs(oz) <= table[b, HALF_H]


@numba.njit(cache=True)
def _cell_ranges(table, origin_x, origin_y, cell, columns, rows):
    """(N, 4) inclusive cell ranges x0, x1, y0, y1 of each box's BEV bound, one spare cell on
    every side so that rounding can never leave a point of the box outside them."""
    ranges = np.empty((table.shape[0], 4), np.int64)
    for b in range(table.shape[0]):
        reach_x = table[b, HALF_L] * abs(table[b, COS]) + table[b, HALF_W] * abs(table[b, SIN])
        reach_y = table[b, HALF_L] * abs(table[b, SIN]) + table[b, HALF_W] * abs(table[b, COS])
        ranges[b, 0] = max(math.floor((table[b, X] - reach_x - origin_x) / cell) - 1, 0)
        ranges[b, 1] = min(math.floor((table[b, X] + reach_x - origin_x) / cell) + 1, columns - 1)
        ranges[b, 2] = max(math.floor((table[b, Y] - reach_y - origin_y) / cell) - 1, 0)
        ranges[b, 3] = min(math.floor((table[b, Y] + reach_y - origin_y) / cell) + 1, rows - 1)
    return ranges


@numba.njit(cache=True)
def _build_grid(ranges, columns, rows):
    """CSR cell -> boxes: ``starts`` (cells + 1,), ``members`` ascending box indices per cell."""
    starts = np.zeros(columns * rows + 1, np.int64)
    for b in range(ranges.shape[0]):
        for iy in range(ranges[b, 2], ranges[b, 3] + 1):
            for ix in range(ranges[b, 0], ranges[b, 1] + 1):
                starts[iy * columns + ix + 1] += 1
    for c in range(columns * rows):
        starts[c + 1] += starts[c]
    fill = starts[:-1].copy()
    members = np.empty(starts[-1], np.int64)
    for b in range(ranges.shape[0]):
        for iy in range(ranges[b, 2], ranges[b, 3] + 1):
            for ix in range(ranges[b, 0], ranges[b, 1] + 1):
                members[fill[iy * columns + ix]] = b
                fill[iy * columns + ix] += 1
    return starts, members


@numba.njit(cache=True, parallel=True)
def _lookup_kernel(points, table, origin_x, origin_y, cell, columns, rows, starts, members, out):
    for p in numba.prange(points.shape[0]):
        out[p] = -1
        fx = (points[p, 0] - origin_x) / cell
        fy = (points[p, 1] - origin_y) / cell
        if not (fx >= 0.0 and fx < columns and fy >= 0.0 and fy < rows):
            continue  # also every NaN and inf
        c = int(fy) * columns + int(fx)
        for k in range(starts[c], starts[c + 1]):
            if _inside(points, p, table, members[k]):
                out[p] = members[k]
                break


def _grid_geometry(table: np.ndarray) -> tuple[float, float, float, int, int]:
    """origin x, y, cell size, columns, rows of a grid over all boxes' BEV bounds with one spare
    ring of cells; the cell is about the median box extent, grown to stay within MAX_CELLS cells
    and MAX_LINKS_PER_BOX box-to-cell links per box (plus MAX_CELLS): a few huge boxes among small
    ones would otherwise be filed into nearly every cell."""
    reach_x = table[:, HALF_L] * np.abs(table[:, COS]) + table[:, HALF_W] * np.abs(table[:, SIN])
    reach_y = table[:, HALF_L] * np.abs(table[:, SIN]) + table[:, HALF_W] * np.abs(table[:, COS])
    low_x, high_x = float(np.min(table[:, X] - reach_x)), float(np.max(table[:, X] + reach_x))
    low_y, high_y = float(np.min(table[:, Y] - reach_y)), float(np.max(table[:, Y] + reach_y))
    span = max(high_x - low_x, high_y - low_y)
    cell = max(float(np.median(2 * np.maximum(reach_x, reach_y))), span / 1024, 1e-6 * max(1.0, abs(low_x), abs(low_y)))
    while True:
        columns = math.floor((high_x - low_x) / cell) + 3
        rows = math.floor((high_y - low_y) / cell) + 3
        links = np.sum((np.floor(2 * reach_x / cell) + 2) * (np.floor(2 * reach_y / cell) + 2))
        if columns * rows <= MAX_CELLS and links <= MAX_LINKS_PER_BOX * len(table) + MAX_CELLS:
            return low_x - cell, low_y - cell, cell, columns, rows
        cell *= 2


def _points_in_boxes_numba(xyz: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(P,) int64 from (P, 3) float64 CPU points and a CPU box table."""
    out = np.full(xyz.shape[0], -1, np.int64)
    if xyz.shape[0] and table.shape[0]:
        boxes = table.numpy()
        origin_x, origin_y, cell, columns, rows = _grid_geometry(boxes)
        ranges = _cell_ranges(boxes, origin_x, origin_y, cell, columns, rows)
        starts, members = _build_grid(ranges, columns, rows)
        _lookup_kernel(xyz.numpy(), boxes, origin_x, origin_y, cell, columns, rows, starts, members, out)
    return torch.from_numpy(out)


# ------------------------------------------------------------ torch path
def _points_in_boxes_torch(xyz: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(P,) int64 from (P, 3) float64 points and a box table on any device, in chunks of points."""
    count = table.shape[0]
    out = torch.full((xyz.shape[0],), -1, dtype=torch.int64, device=xyz.device)
    if count == 0:
        return out
    index = torch.arange(count, device=xyz.device)
    rows = max(1, CHUNK // count)
    for start in range(0, xyz.shape[0], rows):
        chunk = xyz[start : start + rows]
        offset = chunk[:, None, :] - table[None, :, X : Z + 1]
        local_x = offset[..., 0] * table[:, COS] + offset[..., 1] * table[:, SIN]
        local_y = -offset[..., 0] * table[:, SIN] + offset[..., 1] * table[:, COS]
        inside = (
            (local_x.abs() <= table[:, HALF_L]) & (local_y.abs() <= table[:, HALF_W]) & (offset[..., 2].abs() <= table[:, HALF_H])
        )
        first = torch.where(inside, index, count).amin(dim=1)
        out[start : start + rows] = torch.where(first < count, first, -1)
    return out
