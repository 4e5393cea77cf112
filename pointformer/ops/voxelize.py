"""Voxelization: points -> occupied voxels of a regular grid, dynamic (every point kept) or
hard (at most K points per voxel, at most V voxels per sample, spconv's ``PointToVoxel``).

Grid rule. ``voxel_size`` (vx, vy, vz) and ``point_cloud_range`` (x0, y0, z0, x1, y1, z1) are
taken as float32; the grid has ``spatial_shape`` (Z, Y, X) with X = round((x1 - x0) / vx) etc.
A point's voxel index on an axis is ``floor((p - p0) / size)``, computed in float32 exactly as
spconv does, and the point is kept when on every axis ``p0 <= p < p1`` and
``0 <= index < shape``. So a point exactly at the min edge is in, one exactly at the max edge is
out -- also where float32 rounding would put ``(p1 - p0) / size`` just under the shape (x = 75.2
with 0.1 m voxels from -75.2, which spconv's ``PointToVoxel`` keeps in the last voxel; this is
the one difference from spconv). A point just below ``p1`` whose float32 ``p - p0`` rounds up
to the width is out as well, as in spconv. Points with NaN/inf in x, y or z are dropped and
counted apart from out-of-range ones; NaN/inf in other columns is carried along.

Pillars are voxels whose z size spans the whole z range (Z = 1); nothing else differs.

Every public function takes tensors on any device and returns them on that device: CPU tensors
go through numba kernels (``voxelize_kernels``), others through pure torch; both give the same
results.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pointformer.structures import PointBatch, SparseVoxels

from . import voxelize_kernels as kernels

logger = logging.getLogger(__name__)

_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class VoxelGrid:
    """A validated grid: ``voxel_size`` (vx, vy, vz) and ``point_cloud_range``
    (x0, y0, z0, x1, y1, z1) in metres as float32 values, ``spatial_shape`` (Z, Y, X)."""

    voxel_size: tuple[float, float, float]
    point_cloud_range: tuple[float, float, float, float, float, float]
    spatial_shape: tuple[int, int, int]

    @staticmethod
    def create(voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> VoxelGrid:
        size = _float32_values(voxel_size, 3, "voxel_size")
        bounds = _float32_values(point_cloud_range, 6, "point_cloud_range")
        if not (size > 0).all():
            raise ValueError(f"voxel_size must be positive, got {list(voxel_size)}")
        lo, hi = bounds[:3], bounds[3:]
        if not (lo < hi).all():
            raise ValueError(f"point_cloud_range must have min < max on x, y, z, got {list(point_cloud_range)}")
        with np.errstate(over="ignore"):
            cells = (hi - lo) / size  # float32, as spconv
        shape_xyz = []
        for axis, n in zip("xyz", cells.tolist()):
            if not math.isfinite(n) or math.floor(n + 0.5) > _INT32_MAX:
                raise ValueError(
                    f"voxel_size {list(voxel_size)} and point_cloud_range {list(point_cloud_range)} give more "
                    f"than {_INT32_MAX} voxels along {axis}"
                )
            count = math.floor(n + 0.5)  # std::round for positive values
            if count < 1:
                raise ValueError(
                    f"point_cloud_range {list(point_cloud_range)} spans less than half a voxel of "
                    f"voxel_size {list(voxel_size)} along {axis}"
                )
            shape_xyz.append(count)
        return VoxelGrid(tuple(size.tolist()), tuple(bounds.tolist()), tuple(reversed(shape_xyz)))

    @property
    def num_cells(self) -> int:
        z, y, x = self.spatial_shape
        return z * y * x

    def check_key_fits(self, batch_size: int) -> None:
        """ValueError when ``batch_size`` grids overflow the int64 linear voxel key."""
        if batch_size * self.num_cells > _INT64_MAX:
            raise ValueError(
                f"voxel_size {list(self.voxel_size)} and point_cloud_range {list(self.point_cloud_range)} give a "
                f"{self.spatial_shape} grid; {batch_size} of them overflow the int64 voxel key"
            )


def _float32_values(values: Sequence[float], count: int, name: str) -> np.ndarray:
    try:
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {count} numbers, got {values!r}") from None
    if array.shape != (count,) or not np.isfinite(array).all():
        raise ValueError(f"{name} must be {count} finite numbers, got {list(values)}")
    with np.errstate(over="ignore"):
        as_float32 = array.astype(np.float32)
    if not np.isfinite(as_float32).all():
        raise ValueError(f"{name} must fit in float32, got {list(values)}")
    return as_float32


@dataclass
class DynamicVoxelization:
    """Every kept point assigned to its voxel.

    ``coords`` int32 (M, 4) [b, z, y, x] of the occupied voxels, sorted; ``point_to_voxel`` int64
    (N,) row of ``coords`` per point, -1 for dropped points; ``counts`` int64 (M,) points per
    voxel; ``num_out_of_range`` / ``num_non_finite`` dropped points."""

    coords: torch.Tensor
    point_to_voxel: torch.Tensor
    counts: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    num_out_of_range: int
    num_non_finite: int

    @property
    def num_voxels(self) -> int:
        return self.coords.shape[0]


@dataclass
class HardVoxelization:
    """At most K points per voxel, at most V voxels per sample, first come first kept.

    ``voxels`` float32 (M, K, C) points of each voxel in input order, zeros in empty slots;
    ``coords`` int32 (M, 4) [b, z, y, x]; the voxels of sample b come after those of the samples
    before it and are numbered in order of their first point; ``num_points`` int64 (M,) points stored;
    ``point_to_voxel`` int64 (N,) voxel of every point, also one cut by K (as spconv's
    ``pc_voxel_id``), -1 for points out of range, non-finite, or in a voxel beyond V.
    Dropped counts: ``num_out_of_range``, ``num_non_finite``, ``num_over_max_voxels``
    (points of voxels beyond V), ``num_over_max_points`` (points beyond K in a kept voxel)."""

    voxels: torch.Tensor
    coords: torch.Tensor
    num_points: torch.Tensor
    point_to_voxel: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    num_out_of_range: int
    num_non_finite: int
    num_over_max_voxels: int
    num_over_max_points: int

    @property
    def num_voxels(self) -> int:
        return self.coords.shape[0]


def dynamic_voxelize(
    points: PointBatch | torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    offsets: torch.Tensor | None = None,
) -> DynamicVoxelization:
    """Voxels of every point: ``points`` a PointBatch, or a float32 (N, 3 + C) tensor with
    ``offsets`` int64 (B + 1,) (None: one sample). Voxels sorted by (b, z, y, x)."""
    cloud, offsets = _points_and_offsets(points, offsets)
    grid = _grid(voxel_size, point_cloud_range)
    grid.check_key_fits(offsets.shape[0] - 1)
    run = _dynamic_numba if cloud.device.type == "cpu" else _dynamic_torch
    result = run(cloud, offsets, grid)
    logger.debug(
        "dynamic_voxelize: %d points -> %d voxels; dropped %d out of range, %d non-finite",
        cloud.shape[0], result.num_voxels, result.num_out_of_range, result.num_non_finite,
    )
    return result


def hard_voxelize(
    points: PointBatch | torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    max_points_per_voxel: int,
    max_voxels: int,
    offsets: torch.Tensor | None = None,
) -> HardVoxelization:
    """spconv ``PointToVoxel`` per sample of a batch: at most ``max_points_per_voxel`` points per
    voxel and ``max_voxels`` voxels per sample, first come in input order."""
    cloud, offsets = _points_and_offsets(points, offsets)
    grid = _grid(voxel_size, point_cloud_range)
    grid.check_key_fits(offsets.shape[0] - 1)
    for name, value in (("max_points_per_voxel", max_points_per_voxel), ("max_voxels", max_voxels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    run = _hard_numba if cloud.device.type == "cpu" else _hard_torch
    # No sample has more voxels than points: the clamp changes nothing but keeps sizes in int64.
    result = run(cloud, offsets, grid, int(max_points_per_voxel), min(int(max_voxels), max(cloud.shape[0], 1)))
    logger.debug(
        "hard_voxelize: %d points -> %d voxels; dropped %d out of range, %d non-finite, "
        "%d in voxels beyond max_voxels=%d, %d beyond max_points_per_voxel=%d",
        cloud.shape[0], result.num_voxels, result.num_out_of_range, result.num_non_finite,
        result.num_over_max_voxels, max_voxels, result.num_over_max_points, max_points_per_voxel,
    )
    return result


def voxel_mean(feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """(num_voxels, C) mean of ``feats`` (N, C) rows per voxel (``point_to_voxel`` (N,), -1
    ignored), summed in float64 so the result does not depend on the order of addition
    (exact for values of ordinary magnitudes); 0 for voxels without points. Gradients flow
    (through the torch path) when ``feats`` requires them."""
    _check_segments(feats, point_to_voxel, num_voxels)
    return _voxel_mean(feats, point_to_voxel, num_voxels)


def voxel_max(feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """(num_voxels, C) largest ``feats`` (N, C) values per voxel (-1 ignored); NaN propagates
    (torch ``amax``); 0 for voxels without points. Gradients flow when ``feats`` requires them:
    on CPU each maximum's gradient goes to the first point holding it (as mmcv's dynamic
    scatter; torch's ``amax`` backward, the GPU path, splits it between tied points)."""
    _check_segments(feats, point_to_voxel, num_voxels)
    if feats.device.type == "cpu":
        if not _needs_grad(feats):
            return _numba_segment(kernels.segment_max, feats, point_to_voxel, num_voxels)
        if feats.dtype in (torch.float32, torch.float64):
            return _VoxelMaxCPU.apply(feats, point_to_voxel, num_voxels)
    return _voxel_max_torch(feats, point_to_voxel, num_voxels)


class _VoxelMaxCPU(torch.autograd.Function):
    """Segment max on CPU with an argmax backward (torch's ``scatter_reduce`` amax backward is
    several times slower on large clouds)."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
        values = feats.detach().contiguous().numpy()
        out, source = kernels.segment_argmax(values, point_to_voxel.contiguous().numpy(), num_voxels)
        ctx.save_for_backward(torch.from_numpy(source))
        ctx.num_points = feats.shape[0]
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (source,) = ctx.saved_tensors
        grad = kernels.segment_argmax_backward(grad_out.contiguous().numpy(), source.numpy(), ctx.num_points)
        return torch.from_numpy(grad), None, None


def voxelize_mean(
    points: PointBatch | torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    offsets: torch.Tensor | None = None,
) -> SparseVoxels:
    """Dynamic voxels with the mean of their points' columns (x, y, z, features) as features."""
    cloud, offsets = _points_and_offsets(points, offsets)
    voxelization = dynamic_voxelize(cloud, voxel_size, point_cloud_range, offsets)
    feats = _voxel_mean(cloud, voxelization.point_to_voxel, voxelization.num_voxels)
    return SparseVoxels(voxelization.coords, feats, voxelization.spatial_shape, voxelization.batch_size)


# ---- input checks ---------------------------------------------------------------------------


def _points_and_offsets(points: PointBatch | torch.Tensor, offsets: torch.Tensor | None) -> tuple[torch.Tensor, np.ndarray]:
    """Validated float32 (N, 3 + C) points and int64 (B + 1,) offsets (on the host)."""
    if isinstance(points, PointBatch):
        if offsets is not None:
            raise ValueError("offsets must be None when points is a PointBatch (it carries its own)")
        points, offsets = points.points, points.offsets
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor or PointBatch, got {type(points).__name__}")
    if points.dim() != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, 3 + C) with x, y, z first, got shape {tuple(points.shape)}")
    if points.dtype != torch.float32:
        raise ValueError(f"points must be float32, got {points.dtype}")
    n = points.shape[0]
    if n > _INT32_MAX:
        raise ValueError(f"points has {n} rows, more than {_INT32_MAX}")
    points = points.detach().contiguous()
    if offsets is None:
        return points, np.array([0, n], np.int64)
    offsets = torch.as_tensor(offsets)
    if offsets.dim() != 1 or offsets.numel() < 1 or offsets.dtype.is_floating_point or offsets.dtype == torch.bool:
        raise ValueError(f"offsets must be an integer (B + 1,) vector, got {offsets.dtype} shape {tuple(offsets.shape)}")
    bounds = offsets.detach().cpu().numpy().astype(np.int64)
    if bounds[0] != 0 or bounds[-1] != n or (bounds[1:] < bounds[:-1]).any():
        raise ValueError(f"offsets must rise from 0 to the number of points {n}, got {bounds.tolist()}")
    return points, bounds


def _grid(voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> VoxelGrid:
    """``VoxelGrid.create``, remembered for the last few (voxel_size, point_cloud_range)."""
    try:
        key = (tuple(float(v) for v in voxel_size), tuple(float(v) for v in point_cloud_range))
    except (TypeError, ValueError):
        return VoxelGrid.create(voxel_size, point_cloud_range)  # raises, naming the argument
    return _cached_grid(*key)


@functools.lru_cache(maxsize=32)
def _cached_grid(voxel_size: tuple[float, ...], point_cloud_range: tuple[float, ...]) -> VoxelGrid:
    return VoxelGrid.create(voxel_size, point_cloud_range)


def _check_segments(feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> None:
    if feats.dim() != 2 or not feats.dtype.is_floating_point:
        raise ValueError(f"feats must be floating point (N, C), got {feats.dtype} shape {tuple(feats.shape)}")
    if point_to_voxel.shape != (feats.shape[0],) or point_to_voxel.dtype != torch.int64:
        raise ValueError(
            f"point_to_voxel must be int64 ({feats.shape[0]},) like feats' rows, got "
            f"{point_to_voxel.dtype} shape {tuple(point_to_voxel.shape)}"
        )
    if point_to_voxel.device != feats.device:
        raise ValueError(f"point_to_voxel is on {point_to_voxel.device}, feats on {feats.device}")
    if num_voxels < 0:
        raise ValueError(f"num_voxels must be >= 0, got {num_voxels}")
    if point_to_voxel.numel():
        values = point_to_voxel.detach().numpy() if point_to_voxel.device.type == "cpu" else point_to_voxel
        if int(values.min()) < -1 or int(values.max()) >= num_voxels:
            raise ValueError(f"point_to_voxel must lie in [-1, num_voxels={num_voxels})")


def _needs_grad(feats: torch.Tensor) -> bool:
    return feats.requires_grad and torch.is_grad_enabled()


# ---- CPU path (numba) -----------------------------------------------------------------------


def _grid_arrays(grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    bounds = np.asarray(grid.point_cloud_range, np.float32)
    return (bounds[:3].copy(), bounds[3:].copy(), np.asarray(grid.voxel_size, np.float32),
            np.asarray(grid.spatial_shape, np.int64))


def _dynamic_numba(points: torch.Tensor, offsets: np.ndarray, grid: VoxelGrid) -> DynamicVoxelization:
    batch_size = offsets.shape[0] - 1
    num_keys = batch_size * grid.num_cells
    cloud, bounds = points.numpy(), offsets
    arrays = _grid_arrays(grid)
    keys = kernels.point_keys(cloud, bounds, *arrays)
    point_to_voxel, first_point, sample, counts, out_of_range, non_finite = kernels.dynamic_assign(
        keys, bounds, max(1, (num_keys - 1).bit_length()))
    return DynamicVoxelization(
        coords=torch.from_numpy(kernels.first_point_coords(cloud, first_point, sample, *arrays)),
        point_to_voxel=torch.from_numpy(point_to_voxel),
        counts=torch.from_numpy(counts),
        spatial_shape=grid.spatial_shape,
        batch_size=batch_size,
        num_out_of_range=int(out_of_range),
        num_non_finite=int(non_finite),
    )


def _hard_numba(points: torch.Tensor, offsets: np.ndarray, grid: VoxelGrid, max_points: int, max_voxels: int) -> HardVoxelization:
    batch_size = offsets.shape[0] - 1
    cloud, bounds = points.numpy(), offsets
    arrays = _grid_arrays(grid)
    keys = kernels.point_keys(cloud, bounds, *arrays)
    (voxel_of_point, slot_of_point, first_point, sample, num_points,
     out_of_range, non_finite, over_voxels, over_points) = kernels.hard_assign(
        keys, bounds, max_voxels, max_points)
    # numpy's zeros (calloc) rather than torch's: a large torch fill is a parallel region, and on
    # a busy machine waking its threads costs more than the fill.
    voxels = np.zeros((first_point.shape[0], max_points, cloud.shape[1]), np.float32)
    kernels.fill_voxels(cloud, voxel_of_point, slot_of_point, voxels)
    return HardVoxelization(
        voxels=torch.from_numpy(voxels),
        coords=torch.from_numpy(kernels.first_point_coords(cloud, first_point, sample, *arrays)),
        num_points=torch.from_numpy(num_points),
        point_to_voxel=torch.from_numpy(voxel_of_point),
        spatial_shape=grid.spatial_shape,
        batch_size=batch_size,
        num_out_of_range=int(out_of_range),
        num_non_finite=int(non_finite),
        num_over_max_voxels=int(over_voxels),
        num_over_max_points=int(over_points),
    )


def _voxel_mean(feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    if feats.device.type == "cpu" and not _needs_grad(feats):
        return _numba_segment(kernels.segment_mean, feats, point_to_voxel, num_voxels)
    return _voxel_mean_torch(feats, point_to_voxel, num_voxels)


def _numba_segment(kernel, feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """Run a numba segment kernel on float32/float64 (others go through float32 and back)."""
    native = feats.dtype in (torch.float32, torch.float64)
    values = (feats if native else feats.float()).detach().contiguous().numpy()
    out = torch.from_numpy(kernel(values, point_to_voxel.contiguous().numpy(), num_voxels))
    return out if native else out.to(feats.dtype)


# ---- GPU path (pure torch; runs on any device) ----------------------------------------------


def _torch_keys(points: torch.Tensor, offsets: np.ndarray, grid: VoxelGrid) -> torch.Tensor:
    """(N,) int64 linear voxel keys, OUT_OF_RANGE or NON_FINITE (as ``kernels.point_keys``)."""
    device = points.device
    bounds = torch.tensor(grid.point_cloud_range, dtype=torch.float32, device=device)
    lo, hi = bounds[:3], bounds[3:]
    size = torch.tensor(grid.voxel_size, dtype=torch.float32, device=device)
    # float64: a float32 count is inexact beyond 2**24 cells along an axis (numba compares in float64).
    shape_xyz = torch.tensor(grid.spatial_shape[::-1], dtype=torch.float64, device=device)
    xyz = points[:, :3]
    finite = torch.isfinite(xyz).all(dim=1)
    index = torch.floor((xyz - lo) / size)
    inside = ((xyz >= lo) & (xyz < hi) & (index >= 0) & (index.double() < shape_xyz)).all(dim=1)
    index = torch.where(inside[:, None], index, torch.zeros_like(index)).long()
    counts = torch.from_numpy(np.diff(offsets)).to(device)
    batch = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
    z_count, y_count, x_count = grid.spatial_shape
    keys = ((batch * z_count + index[:, 2]) * y_count + index[:, 1]) * x_count + index[:, 0]
    keys = torch.where(inside, keys, torch.full_like(keys, kernels.OUT_OF_RANGE))
    return torch.where(finite, keys, torch.full_like(keys, kernels.NON_FINITE))


def _torch_key_coords(keys: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    z_count, y_count, x_count = shape
    x = keys % x_count
    rest = keys // x_count
    y = rest % y_count
    rest = rest // y_count
    return torch.stack([rest // z_count, rest % z_count, y, x], dim=1).to(torch.int32)


def _dynamic_torch(points: torch.Tensor, offsets: np.ndarray, grid: VoxelGrid) -> DynamicVoxelization:
    keys = _torch_keys(points, offsets, grid)
    kept = keys >= 0
    voxel_keys, inverse, counts = torch.unique(keys[kept], sorted=True, return_inverse=True, return_counts=True)
    point_to_voxel = torch.full_like(keys, -1)
    point_to_voxel[kept] = inverse
    return DynamicVoxelization(
        coords=_torch_key_coords(voxel_keys, grid.spatial_shape),
        point_to_voxel=point_to_voxel,
        counts=counts,
        spatial_shape=grid.spatial_shape,
        batch_size=offsets.shape[0] - 1,
        num_out_of_range=int((keys == kernels.OUT_OF_RANGE).sum()),
        num_non_finite=int((keys == kernels.NON_FINITE).sum()),
    )


def _hard_torch(points: torch.Tensor, offsets: np.ndarray, grid: VoxelGrid, max_points: int, max_voxels: int) -> HardVoxelization:
    device = points.device
    batch_size = offsets.shape[0] - 1
    keys = _torch_keys(points, offsets, grid)
    kept_points = torch.nonzero(keys >= 0).squeeze(1)
    # Stable sort by key: the points of a voxel stay in input order, so the rank of a point in
    # its run is its arrival order in the voxel and the run's first point created the voxel.
    sorted_keys, order = torch.sort(keys[kept_points], stable=True)
    point_of_sorted = kept_points[order]
    run_starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    run_starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run_of_sorted = torch.cumsum(run_starts, 0) - 1
    start_positions = torch.nonzero(run_starts).squeeze(1)
    rank = torch.arange(sorted_keys.numel(), device=device) - start_positions[run_of_sorted]
    first_point = point_of_sorted[start_positions]
    run_keys = sorted_keys[start_positions]

    # Voxels in order of their first point: samples in order, then arrival within a sample.
    arrival = torch.argsort(first_point)
    run_sample = run_keys[arrival] // grid.num_cells
    voxels_per_sample = torch.bincount(run_sample, minlength=batch_size)
    sample_start = torch.cumsum(voxels_per_sample, 0) - voxels_per_sample
    ordinal = torch.arange(arrival.numel(), device=device) - sample_start[run_sample]
    kept_voxel = ordinal < max_voxels
    voxel_id_of_arrival = torch.where(kept_voxel, torch.cumsum(kept_voxel, 0) - 1, torch.full_like(ordinal, -1))
    voxel_id_of_run = torch.empty_like(voxel_id_of_arrival)
    voxel_id_of_run[arrival] = voxel_id_of_arrival

    voxel_of_sorted = voxel_id_of_run[run_of_sorted]
    point_to_voxel = torch.full_like(keys, -1)
    point_to_voxel[point_of_sorted] = voxel_of_sorted
    stored = (voxel_of_sorted >= 0) & (rank < max_points)
    num_voxels = int(kept_voxel.sum())
    voxels = torch.zeros((num_voxels, max_points, points.shape[1]), dtype=torch.float32, device=device)
    voxels[voxel_of_sorted[stored], rank[stored]] = points[point_of_sorted[stored]]
    run_counts = torch.diff(torch.cat([start_positions, start_positions.new_tensor([sorted_keys.numel()])]))
    kept_runs = arrival[kept_voxel]
    return HardVoxelization(
        voxels=voxels,
        coords=_torch_key_coords(run_keys[kept_runs], grid.spatial_shape),
        num_points=run_counts[kept_runs].clamp(max=max_points),
        point_to_voxel=point_to_voxel,
        spatial_shape=grid.spatial_shape,
        batch_size=batch_size,
        num_out_of_range=int((keys == kernels.OUT_OF_RANGE).sum()),
        num_non_finite=int((keys == kernels.NON_FINITE).sum()),
        num_over_max_voxels=int((voxel_of_sorted < 0).sum()),
        num_over_max_points=int(((voxel_of_sorted >= 0) & (rank >= max_points)).sum()),
    )


def _voxel_mean_torch(feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    kept = point_to_voxel >= 0
    index = point_to_voxel[kept]
    sums = feats.new_zeros((num_voxels, feats.shape[1]), dtype=torch.float64).index_add_(0, index, feats[kept].double())
    counts = torch.bincount(index, minlength=num_voxels).clamp(min=1)
    return (sums / counts[:, None]).to(feats.dtype)


def _voxel_max_torch(feats: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    kept = point_to_voxel >= 0
    index = point_to_voxel[kept][:, None].expand(-1, feats.shape[1])
    out = feats.new_zeros((num_voxels, feats.shape[1]))
    return out.scatter_reduce(0, index, feats[kept], reduce="amax", include_self=False)
