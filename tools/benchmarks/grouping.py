"""Grouping (planning) benchmarks: FlatFormer's flattened windows, all four orders, against
SST's window batching (regular + shifted) on the same voxels; the torch path on CPU against
numba; space-filling-curve plans against flattened windows.

Inputs: every cloud of ``common.inputs()`` pillarised at 0.32 m on FlatFormer's Waymo grid
(468 x 468 pillars over +-74.88 m; a plain ``np.unique`` on floor coordinates here, so the
benchmark does not depend on the voxelizer), and, for the < 10 ms planning aim, 150,000
distinct cells drawn at random from that pillar grid (68 % full) and from a 1504 x 1504 x 40
grid (0.1 m voxels over +-75.2 m, 6 m high).

``tools/benchmark.py`` settles the allocator first (``common.settle_allocator``): without it a
short benchmark process pays ~3,800 page faults (~6 ms here) per four-order plan of 150k voxels.
"""

from __future__ import annotations

import numpy as np
import torch

from pointformer.ops.curves import curve_plans
from pointformer.ops.grouping import flat_window_plans
from pointformer.ops.sst_windows import SST_BUCKET_CAPS, sst_window_plans
from pointformer.structures import SparseVoxels

from .common import Row, inputs, median_seconds

PILLAR_SIZE = 0.32
GRID_SIDE = 468  # 468 * 0.32 m = 149.76 m
WINDOW = (13, 13)
GROUP_SIZE = 144


def pillarise(points: np.ndarray) -> SparseVoxels:
    """0.32 m pillars of one cloud on the 468 x 468 grid centred on the sensor (one sample)."""
    cells = np.floor((points[:, :2] + GRID_SIDE * PILLAR_SIZE / 2) / PILLAR_SIZE).astype(np.int64)
    cells = cells[((cells >= 0) & (cells < GRID_SIDE)).all(1)]
    xy = np.unique(cells, axis=0)
    coords = np.zeros((len(xy), 4), np.int32)
    coords[:, 2], coords[:, 3] = xy[:, 1], xy[:, 0]
    return SparseVoxels(torch.from_numpy(coords), torch.zeros(len(xy), 1), (1, GRID_SIDE, GRID_SIDE), 1)


def random_voxels(count: int = 150_000, shape: tuple[int, int, int] = (40, 1504, 1504), seed: int = 0) -> SparseVoxels:
    """``count`` distinct voxels of one sample, uniformly at random in the grid, shuffled."""
    depth, size_y, size_x = shape
    cells = np.random.default_rng(seed).choice(depth * size_y * size_x, count, replace=False)
    coords = np.stack([np.zeros(count, np.int64), cells // (size_y * size_x), cells // size_x % size_y, cells % size_x], 1)
    return SparseVoxels(torch.from_numpy(coords.astype(np.int32)), torch.zeros(count, 1), shape, 1)


def bench_inputs() -> dict[str, SparseVoxels]:
    named = {}
    for name, points in inputs().items():
        voxels = pillarise(points)
        named[f"{name}, {voxels.num_voxels} pillars"] = voxels
    named["random 150k pillars, 468x468 grid"] = random_voxels(shape=(1, GRID_SIDE, GRID_SIDE))
    named["random 150k voxels, 1504x1504x40 grid"] = random_voxels()
    return named


def rows(repeats: int = 7) -> list[Row]:
    results = []
    for name, voxels in bench_inputs().items():
        flat = median_seconds(lambda: flat_window_plans(voxels, WINDOW, GROUP_SIZE), repeats)
        sst = median_seconds(lambda: sst_window_plans(voxels, WINDOW, SST_BUCKET_CAPS), repeats)
        flat_torch = median_seconds(lambda: flat_window_plans(voxels, WINDOW, GROUP_SIZE, backend="torch"), repeats)
        curves = median_seconds(lambda: curve_plans(voxels, GROUP_SIZE), repeats)
        results += [
            Row("flat-window plans, 4 orders (numba)", name, flat, "SST window batching, regular + shifted (numba)", sst),
            Row("flat-window plans, 4 orders (numba)", name, flat, "the same on the torch path, CPU tensors", flat_torch),
            Row("curve plans: z, z_trans, hilbert, hilbert_trans (numba)", name, curves,
                "flat-window plans, 4 orders (numba)", flat),
        ]
    return results
