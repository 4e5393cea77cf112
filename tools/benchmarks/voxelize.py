"""Voxelization on real and Waymo-size scans: hard voxelization against spconv's
``PointToVoxel`` on the same grid, dynamic voxelization + mean features against
``torch.unique(return_inverse=True)`` + ``scatter_reduce`` mean, and each torch path on CPU
against its numba path.

Grids: 0.32 m pillars over (-74.88, -74.88, -2, 74.88, 74.88, 4) (FlatFormer's Waymo setting,
468 x 468 x 1) with K = 32, and 0.1 x 0.1 x 0.15 m voxels over (-75.2, -75.2, -2, 75.2, 75.2, 4)
with K = 10. spconv's ``PointToVoxel`` zeroes its whole (V, K, C) buffer on every call, so its
time grows with V: it runs once with the V of published Waymo configs (32000 pillars as in
mmdetection3d's PointPillars, 150000 voxels as in OpenPCDet's CenterPoint) and once with V equal
to the cloud's voxel count (the least work spconv can be asked to do). Ours does not depend on V.
spconv's generator keeps its buffers and its dense voxel grid between calls; ours allocates its
outputs on every call. spconv copies its result with a torch ``clone`` (torch's intra-op threads);
on a machine whose cores are busy with other work that copy can wait milliseconds for a thread,
so compare its rows under the same ``torch.get_num_threads()`` as the run they come from.
"""

from __future__ import annotations

import numpy as np
import torch

from .common import Row, inputs, median_seconds

PILLARS = {"name": "0.32 m pillars", "size": (0.32, 0.32, 6.0), "range": (-74.88, -74.88, -2.0, 74.88, 74.88, 4.0),
           "max_points": 32, "config_max_voxels": 32_000}
VOXELS = {"name": "0.1 m voxels", "size": (0.1, 0.1, 0.15), "range": (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0),
          "max_points": 10, "config_max_voxels": 150_000}


def spconv_point_to_voxel(points: torch.Tensor, grid: dict, max_voxels: int):
    """spconv's CPU ``PointToVoxel`` built once for this grid; returns the call to time."""
    import pointformer.ops.spconv_compat  # noqa: F401, I001  (spconv patched for CPU before its utils load)
    from spconv.pytorch.utils import PointToVoxel

    generator = PointToVoxel(vsize_xyz=list(grid["size"]), coors_range_xyz=list(grid["range"]),
                             num_point_features=points.shape[1], max_num_voxels=max_voxels,
                             max_num_points_per_voxel=grid["max_points"])
    return lambda: generator(points)


def torch_unique_mean(points: torch.Tensor, voxel_size, point_cloud_range) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain baseline for dynamic voxels with mean features: linear key of the in-range
    points, ``torch.unique(return_inverse=True)``, ``scatter_reduce`` mean. Returns coords
    [z, y, x] (M, 3) and feats (M, C)."""
    lo = torch.tensor(point_cloud_range[:3], dtype=torch.float32)
    hi = torch.tensor(point_cloud_range[3:], dtype=torch.float32)
    size = torch.tensor(voxel_size, dtype=torch.float32)
    shape = torch.round((hi - lo) / size).long()
    xyz = points[:, :3]
    index = torch.floor((xyz - lo) / size)
    inside = ((xyz >= lo) & (xyz < hi) & (index >= 0) & (index < shape)).all(dim=1)
    index = index[inside].long()
    keys = (index[:, 2] * shape[1] + index[:, 1]) * shape[0] + index[:, 0]
    unique, inverse = torch.unique(keys, return_inverse=True)
    feats = points.new_zeros((unique.numel(), points.shape[1]))
    rows = inverse[:, None].expand(-1, points.shape[1])
    feats.scatter_reduce_(0, rows, points[inside], "mean", include_self=False)
    coords = torch.stack([unique // (shape[0] * shape[1]), unique // shape[0] % shape[1], unique % shape[0]], dim=1)
    return coords, feats


def hard_rows(name: str, points: torch.Tensor, grid: dict, repeats: int) -> list[Row]:
    from pointformer.ops import voxelize

    def ours_call():
        return voxelize.hard_voxelize(points, grid["size"], grid["range"], grid["max_points"], grid["config_max_voxels"])

    result = ours_call()
    if result.num_over_max_voxels:
        raise RuntimeError(f"{name}: {grid['config_max_voxels']} voxels are too few for the benchmark")
    label = f"{name}: {len(points)} points, {grid['name']} ({result.num_voxels} voxels, K={grid['max_points']})"
    ours = median_seconds(ours_call, repeats)
    rows = []
    for max_voxels in (grid["config_max_voxels"], result.num_voxels):
        baseline = median_seconds(spconv_point_to_voxel(points, grid, max_voxels), repeats)
        rows.append(Row("hard voxelize", label, ours, f"spconv PointToVoxel (CPU), V={max_voxels}", baseline))
    cloud, offsets = voxelize._points_and_offsets(points, None)
    voxel_grid = voxelize.VoxelGrid.create(grid["size"], grid["range"])
    rows.append(Row("hard voxelize, torch path on CPU", label,
                    median_seconds(lambda: voxelize._hard_torch(cloud, offsets, voxel_grid, grid["max_points"], len(points)), repeats),
                    "numba path", ours))
    return rows


def dynamic_rows(name: str, points: torch.Tensor, grid: dict, repeats: int) -> list[Row]:
    from pointformer.ops import voxelize

    result = voxelize.dynamic_voxelize(points, grid["size"], grid["range"])
    label = f"{name}: {len(points)} points, {grid['name']} ({result.num_voxels} voxels)"
    ours = median_seconds(lambda: voxelize.voxelize_mean(points, grid["size"], grid["range"]), repeats)
    baseline = median_seconds(lambda: torch_unique_mean(points, grid["size"], grid["range"]), repeats)
    rows = [Row("dynamic voxelize + mean feats", label, ours, "torch.unique(return_inverse) + scatter_reduce mean", baseline)]
    cloud, offsets = voxelize._points_and_offsets(points, None)
    voxel_grid = voxelize.VoxelGrid.create(grid["size"], grid["range"])
    numba_dynamic = median_seconds(lambda: voxelize.dynamic_voxelize(points, grid["size"], grid["range"]), repeats)
    rows.append(Row("dynamic voxelize, torch path on CPU", label,
                    median_seconds(lambda: voxelize._dynamic_torch(cloud, offsets, voxel_grid), repeats),
                    "numba path", numba_dynamic))
    return rows


def rows(repeats: int = 7) -> list[Row]:
    out = []
    for name, cloud in inputs().items():
        points = torch.from_numpy(np.ascontiguousarray(cloud, dtype=np.float32))
        for grid in (PILLARS, VOXELS):
            out += hard_rows(name, points, grid, repeats)
            out += dynamic_rows(name, points, grid, repeats)
    return out
