"""SST-style window batching (Fan et al., CVPR 2022): the baseline FlatFormer's equal-size
groups replace.

Each (regular or shifted) window of ``window_shape = (wx, wy)`` voxels (full height) is one
group. Windows are bucketed by population: a window of n voxels goes to the first bucket whose
cap is >= n and is padded to that cap; a window with more voxels than the largest cap keeps
its first ``cap`` voxels in window raster order (y, then x, then z, ties by input index) and
drops the rest, like SST's drop levels. Dropped voxels have ``inverse == -1`` in the plan; the
count is ``plan.num_dropped`` and is logged. Filler slots repeat the window's own voxels.

Groups are ordered by sample, then window row (y), then window column (x), within a bucket.
Shifted windows move by half a window on both axes, as in FlatFormer's shifted orders.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from pointformer.structures import GroupBucket, GroupPlan, SparseVoxels

from . import grouping_kernels as kernels
from .grouping import (Backend, check_key_range, check_voxel_coords, checked_coords_numba, positive_int, use_numba,
                       window_shape_xy)

logger = logging.getLogger(__name__)

SST_BUCKET_CAPS = (30, 60, 100, 169)


def _bucket_caps(bucket_caps: Sequence[int]) -> tuple[int, ...]:
    caps = tuple(positive_int(f"bucket_caps[{i}]", cap) for i, cap in enumerate(bucket_caps))
    if not caps or any(a >= b for a, b in zip(caps, caps[1:])):
        raise ValueError("bucket_caps must be a non-empty, strictly increasing list of group sizes, "
                         f"got {tuple(bucket_caps)}")
    return caps


def _window_grid(window: tuple[int, int], spatial_shape: tuple[int, int, int], shifted: bool) -> tuple[int, ...]:
    """(sx, sy, windows along x, windows along y)."""
    wx, wy = window
    _, size_y, size_x = spatial_shape
    sx, sy = (wx // 2, wy // 2) if shifted else (0, 0)
    return sx, sy, (size_x - 1 + sx) // wx + 1, (size_y - 1 + sy) // wy + 1


# ----------------------------------------------------------------------- torch
def _window_keys_torch(coords: torch.Tensor, wx: int, wy: int, sx: int, sy: int, windows_x: int, windows_y: int,
                       depth: int) -> torch.Tensor:
    batch, z, y, x = coords.long().unbind(1)
    xs, ys = x + sx, y + sy
    row, column = torch.div(ys, wy, rounding_mode="floor"), torch.div(xs, wx, rounding_mode="floor")
    window = (batch * windows_y + row) * windows_x + column
    return window * (wy * wx * depth) + ((ys % wy) * wx + xs % wx) * depth + z


def _window_plan_torch(keys: torch.Tensor, cells: int, windows_per_sample: int, caps: tuple[int, ...]):
    """``grouping_kernels.sst_window_plan`` in torch (same groups, as tensors), per bucket."""
    device = keys.device
    n = keys.shape[0]
    order = torch.argsort(keys, stable=True)
    sorted_window = keys[order] // cells
    new_window = torch.ones(n, dtype=torch.bool, device=device)
    new_window[1:] = sorted_window[1:] != sorted_window[:-1]
    window_of = torch.cumsum(new_window, 0) - 1
    num_windows = int(new_window.sum())
    population = torch.bincount(window_of, minlength=num_windows)
    window_start = torch.cumsum(population, 0) - population
    caps_t = torch.tensor(caps, dtype=torch.int64, device=device)
    bucket = torch.searchsorted(caps_t, population).clamp_max(len(caps) - 1)
    real = torch.minimum(population, caps_t[bucket])
    groups_per_bucket = torch.bincount(bucket, minlength=len(caps))
    first_slot = torch.cumsum(groups_per_bucket * caps_t, 0) - groups_per_bucket * caps_t
    by_bucket = torch.argsort(bucket, stable=True)
    rank = torch.empty_like(by_bucket)
    first_group = torch.cumsum(groups_per_bucket, 0) - groups_per_bucket
    rank[by_bucket] = torch.arange(num_windows, device=device) - first_group[bucket[by_bucket]]
    base = first_slot[bucket] + rank * caps_t[bucket]
    position = torch.arange(n, device=device) - window_start[window_of]
    kept = position < real[window_of]
    inverse = torch.empty_like(order).scatter_(0, order, torch.where(kept, base[window_of] + position, -1))
    buckets = []
    for level, cap in enumerate(caps):
        windows = by_bucket[bucket[by_bucket] == level]
        slot = torch.arange(cap, device=device)
        source = window_start[windows][:, None] + slot[None, :] % real[windows][:, None]
        padding = slot[None, :] >= real[windows][:, None]
        group_batch = torch.div(sorted_window[window_start[windows]], windows_per_sample, rounding_mode="floor")
        buckets.append((order[source.reshape(-1)], padding, group_batch))
    return buckets, inverse, int((~kept).sum())


# ----------------------------------------------------------------------- public
def sst_window_plan(voxels: SparseVoxels, window_shape: Sequence[int], shifted: bool = False,
                    bucket_caps: Sequence[int] = SST_BUCKET_CAPS, backend: Backend = "auto") -> GroupPlan:
    """SST window batching: one group per non-empty window, one bucket per cap in
    ``bucket_caps`` (strictly increasing; default for 13 x 13 windows). See the module doc."""
    window = window_shape_xy(window_shape)
    caps = _bucket_caps(bucket_caps)
    sx, sy, windows_x, windows_y = _window_grid(window, voxels.spatial_shape, shifted)
    depth = voxels.spatial_shape[0]
    cells = window[0] * window[1] * depth
    bound = voxels.batch_size * windows_y * windows_x * cells
    check_key_range(bound, "SST windows")
    if use_numba(voxels.coords.device, backend):
        coords, _ = checked_coords_numba(voxels)
        keys = kernels.sst_window_keys(coords, *window, sx, sy, windows_x, windows_y, depth)
        index, padding, group_batch, groups_per_bucket, inverse, dropped = kernels.sst_window_plan(
            keys, bound - 1, cells, windows_x * windows_y, np.array(caps, np.int64))
        buckets = []
        slot = group = 0
        for cap, count in zip(caps, groups_per_bucket.tolist()):
            buckets.append(GroupBucket(torch.from_numpy(index[slot:slot + count * cap]),
                                       torch.from_numpy(padding[slot:slot + count * cap].reshape(count, cap)),
                                       torch.from_numpy(group_batch[group:group + count])))
            slot, group = slot + count * cap, group + count
        plan = GroupPlan(tuple(buckets), torch.from_numpy(inverse), int(dropped))
    else:
        check_voxel_coords(voxels)
        keys = _window_keys_torch(voxels.coords, *window, sx, sy, windows_x, windows_y, depth)
        parts, inverse, dropped = _window_plan_torch(keys, cells, windows_x * windows_y, caps)
        buckets = tuple(GroupBucket(*part) for part in parts)
        plan = GroupPlan(buckets, inverse, dropped)
    if plan.num_dropped:
        logger.debug("sst_window_plan: %d of %d voxels dropped from windows fuller than the largest cap %d",
                     plan.num_dropped, plan.num_voxels, caps[-1])
    return plan


def sst_window_plans(voxels: SparseVoxels, window_shape: Sequence[int], bucket_caps: Sequence[int] = SST_BUCKET_CAPS,
                     backend: Backend = "auto") -> dict[str, GroupPlan]:
    """The regular and the shifted SST plans of a stage: ``{"regular": ..., "shifted": ...}``."""
    return {name: sst_window_plan(voxels, window_shape, name == "shifted", bucket_caps, backend)
            for name in ("regular", "shifted")}
