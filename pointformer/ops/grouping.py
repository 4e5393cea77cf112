"""Flattened-window grouping (FlatFormer, Liu et al. CVPR 2023) and the equal-size cut that
every sort-based grouping shares.

FlatFormer's idea: give every voxel one int64 sort key built from (sample, window, position in
the window), sort, and cut each sample's sorted list into groups of exactly ``group_size``
tokens — groups of equal size, not windows of equal shape. Four orders alternate between blocks:

- ``"x"``: windows of ``window_shape = (wx, wy)`` voxels form bands of constant window row
  (``y // wy``); bands are visited along +y, and within a band the windows and the voxel
  columns in them are swept along +x in even bands and along -x in odd bands (boustrophedon).
  Inside the band, each voxel column (constant x) is traversed along +y when x is even and
  -y when x is odd, so consecutive tokens stay spatial neighbours across window borders. For
  Z > 1, z is the lowest priority: ascending where x + y is even, descending where odd.
- ``"y"``: the transpose (bands of constant window column, swept along y, rows along x).
- ``"x_shift"`` / ``"y_shift"``: the same on windows shifted by half a window on both axes
  (x, y above are then the shifted coordinates x + wx // 2, y + wy // 2).

The cut (shared with space-filling curves): sample by sample in sample order, groups of
``group_size`` consecutive tokens; the last group of a sample is filled up by repeating that
group's own real tokens from its first slot on (wrapping), so filler slots never hold a token
of another sample, nor of another group; ``padding`` marks them. A sample with no voxel has no
group. Ties between equal keys (duplicate coordinates, not a valid ``SparseVoxels``) keep the
input order.

Both paths (numba on CPU tensors, torch on any device) sort with a stable sort on the same
keys, so their plans are identical.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numba as nb
import numpy as np
import torch

from pointformer.structures import GroupBucket, GroupPlan, SparseVoxels

from . import grouping_kernels as kernels

FLAT_ORDERS = ("x", "x_shift", "y", "y_shift")
Backend = Literal["auto", "numba", "torch"]
_MAX_KEY = 1 << 62


# ----------------------------------------------------------------------- checks
def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def window_shape_xy(window_shape: Sequence[int]) -> tuple[int, int]:
    """(wx, wy) in voxels, both >= 1."""
    if len(window_shape) != 2:
        raise ValueError(f"window_shape must be (wx, wy) in voxels, got {tuple(window_shape)}")
    return positive_int("window_shape[0] (wx)", window_shape[0]), positive_int("window_shape[1] (wy)", window_shape[1])


def check_voxel_coords(voxels: SparseVoxels) -> None:
    """Raise a ValueError unless every coordinate lies in [0, batch_size) x [0, Z) x [0, Y) x [0, X)."""
    _check_shape(voxels)
    if voxels.num_voxels:
        low, high = torch.stack([voxels.coords.amin(0), voxels.coords.amax(0)]).tolist()
        _check_ranges(voxels, low, high)


def _check_shape(voxels: SparseVoxels) -> None:
    if voxels.batch_size < 1:
        raise ValueError(f"SparseVoxels.batch_size must be >= 1, got {voxels.batch_size}")
    if min(voxels.spatial_shape) < 1:
        raise ValueError(f"SparseVoxels.spatial_shape must be positive, got {voxels.spatial_shape}")


def _check_ranges(voxels: SparseVoxels, low: Sequence[int], high: Sequence[int]) -> None:
    limits = (voxels.batch_size, *voxels.spatial_shape)
    for column, name in enumerate(("batch", "z", "y", "x")):
        if low[column] < 0 or high[column] >= limits[column]:
            raise ValueError(f"SparseVoxels.coords[:, {column}] ({name}) spans [{low[column]}, {high[column]}], "
                             f"outside [0, {limits[column]})")


def checked_coords_numba(voxels: SparseVoxels) -> tuple[np.ndarray, np.ndarray]:
    """``voxels.coords`` as a contiguous int32 (M, 4) array, and the voxel count of each sample
    (B,), after the checks of ``check_voxel_coords``."""
    _check_shape(voxels)
    coords = np.ascontiguousarray(voxels.coords.numpy())
    low, high, counts = kernels.ranges_and_counts(coords, voxels.batch_size)
    if coords.shape[0]:
        _check_ranges(voxels, low.tolist(), high.tolist())
    return coords, counts


def use_numba(device: torch.device, backend: Backend) -> bool:
    """numba for CPU tensors (unless ``backend="torch"``), torch otherwise."""
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"backend='numba' needs CPU tensors, got {device}")
    return device.type == "cpu" and backend != "torch"


def check_key_range(max_key: int, what: str) -> None:
    if max_key >= _MAX_KEY:
        raise ValueError(f"{what}: sort keys need {max_key.bit_length()} bits, more than the 62 an int64 key allows; "
                         "use fewer samples or a smaller grid")


# ----------------------------------------------------------------------- numba: plan and wrap
def plan_orders_numba(voxels: SparseVoxels, table: np.ndarray, group_size: int) -> list[GroupPlan]:
    """One plan per row of a ``grouping_kernels`` order table, on the CPU: the orders run on
    parallel lanes when the input is large enough to pay for waking threads."""
    coords, counts = checked_coords_numba(voxels)
    source, destination, padding, group_batch = kernels.equal_size_layout(counts, group_size)
    lanes = min(nb.get_num_threads(), table.shape[0])
    if lanes > 1 and coords.shape[0] >= kernels.PARALLEL_MIN_VOXELS:
        index, inverse = kernels.plan_orders_parallel(coords, table, source, destination, lanes)
    else:
        index, inverse = kernels.plan_orders(coords, table, source, destination)
    padding_t, group_batch_t = torch.from_numpy(padding), torch.from_numpy(group_batch)
    return [GroupPlan((GroupBucket(torch.from_numpy(index[k]), padding_t, group_batch_t),),
                      torch.from_numpy(inverse[k])) for k in range(table.shape[0])]


# ----------------------------------------------------------------------- torch: sort and cut
def _equal_size_layout_torch(batch: torch.Tensor, batch_size: int, group_size: int):
    """``grouping_kernels.equal_size_layout`` in torch (same outputs), from the sample of each voxel."""
    device = batch.device
    counts = torch.bincount(batch, minlength=batch_size)
    groups = (counts + group_size - 1) // group_size
    starts = torch.cumsum(counts, 0) - counts
    group_starts = torch.cumsum(groups, 0) - groups
    num_groups = int(groups.sum())
    samples = torch.arange(batch_size, device=device)
    group_batch = torch.repeat_interleave(samples, groups, output_size=num_groups)
    rank = torch.arange(num_groups, device=device) - group_starts[group_batch]
    real = torch.clamp(counts[group_batch] - rank * group_size, max=group_size)
    slot = torch.arange(group_size, device=device)
    source = (starts[group_batch] + rank * group_size)[:, None] + slot[None, :] % real[:, None]
    padding = slot[None, :] >= real[:, None]
    sorted_batch = torch.repeat_interleave(samples, counts, output_size=batch.shape[0])
    destination = torch.arange(batch.shape[0], device=device) + (group_starts * group_size - starts)[sorted_batch]
    return source.reshape(-1), destination, padding, group_batch


def cut_plans_torch(batch: torch.Tensor, batch_size: int, keys: Sequence[torch.Tensor],
                    group_size: int) -> list[GroupPlan]:
    """One plan per int64 (M,) key tensor whose most significant part is the sample ``batch``
    (M,): stable sort, then the equal-size cut."""
    source, destination, padding, group_batch = _equal_size_layout_torch(batch, batch_size, group_size)
    plans = []
    for key in keys:
        order = torch.argsort(key, stable=True)
        inverse = torch.empty_like(order).scatter_(0, order, destination)
        plans.append(GroupPlan((GroupBucket(order[source], padding, group_batch),), inverse))
    return plans


# ----------------------------------------------------------------------- flattened-window keys
def _order_parameters(order: str, window: tuple[int, int], spatial_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """(sweep_is_x, sx, sy, bands, extent): the shift, the number of bands and the sweep extent
    (voxels, a multiple of the window) of one flattened-window order."""
    if order not in FLAT_ORDERS:
        raise ValueError(f"flattened-window order must be one of {FLAT_ORDERS}, got {order!r}")
    wx, wy = window
    _, size_y, size_x = spatial_shape
    sx, sy = (wx // 2, wy // 2) if order.endswith("_shift") else (0, 0)
    sweep_is_x = order.startswith("x")
    windows_x, windows_y = (size_x - 1 + sx) // wx + 1, (size_y - 1 + sy) // wy + 1
    bands, extent = (windows_y, windows_x * wx) if sweep_is_x else (windows_x, windows_y * wy)
    return int(sweep_is_x), sx, sy, bands, extent


def _flat_key_bound(params: tuple[int, ...], window: tuple[int, int], batch_size: int, depth: int) -> int:
    """One more than the largest key of an order."""
    sweep_is_x, _, _, bands, extent = params
    across = window[1] if sweep_is_x else window[0]
    return batch_size * bands * extent * across * depth


def _flat_window_key_torch(coords: torch.Tensor, params: tuple[int, ...], window: tuple[int, int],
                           depth: int) -> torch.Tensor:
    """The keys of one flattened-window order, in torch (as ``grouping_kernels``)."""
    sweep_is_x, sx, sy, bands, extent = params
    batch, z, y, x = coords.long().unbind(1)
    xs, ys = x + sx, y + sy
    along, across, across_size = (xs, ys, window[1]) if sweep_is_x else (ys, xs, window[0])
    band = torch.div(across, across_size, rounding_mode="floor")
    line = torch.where(band % 2 == 0, along, extent - 1 - along)
    local = across - band * across_size
    local = torch.where(along % 2 == 1, across_size - 1 - local, local)
    z = torch.where((xs + ys) % 2 == 1, depth - 1 - z, z)
    return (((batch * bands + band) * extent + line) * across_size + local) * depth + z


# ----------------------------------------------------------------------- public
def flat_window_plans(voxels: SparseVoxels, window_shape: Sequence[int], group_size: int,
                      orders: Sequence[str] = FLAT_ORDERS, backend: Backend = "auto") -> dict[str, GroupPlan]:
    """One ``GroupPlan`` per flattened-window order (default all four), sharing the cut.

    ``window_shape`` (wx, wy) in voxels (FlatFormer on Waymo: 13 x 13 windows of 0.32 m pillars
    on a 468 x 468 grid, ``group_size`` 144). Plans lie on the device of ``voxels.coords``.
    ``backend``: "auto" (numba for CPU tensors, torch otherwise), or force "numba" / "torch".
    """
    window = window_shape_xy(window_shape)
    group_size = positive_int("group_size", group_size)
    orders = list(orders)
    if len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct, got {orders}")
    depth = voxels.spatial_shape[0]
    params = [_order_parameters(order, window, voxels.spatial_shape) for order in orders]
    bounds = [_flat_key_bound(p, window, voxels.batch_size, depth) for p in params]
    for order, bound in zip(orders, bounds):
        check_key_range(bound, f"flattened window order {order!r}")
    if use_numba(voxels.coords.device, backend):
        table = np.zeros((len(orders), kernels.TABLE_COLUMNS), np.int64)
        for row, p, bound in zip(table, params, bounds):
            across = window[1] if p[0] else window[0]
            row[:] = (kernels.FLAT_WINDOW, bound - 1, *p, across, depth)
        plans = plan_orders_numba(voxels, table, group_size)
    else:
        check_voxel_coords(voxels)
        keys = [_flat_window_key_torch(voxels.coords, p, window, depth) for p in params]
        plans = cut_plans_torch(voxels.batch_idx, voxels.batch_size, keys, group_size)
    return dict(zip(orders, plans))


def flat_window_plan(voxels: SparseVoxels, window_shape: Sequence[int], group_size: int, order: str = "x",
                     backend: Backend = "auto") -> GroupPlan:
    """The ``GroupPlan`` of one flattened-window order (see ``flat_window_plans``)."""
    return flat_window_plans(voxels, window_shape, group_size, (order,), backend)[order]


def window_positions(voxels: SparseVoxels, window_shape: Sequence[int], shifted: bool = False) -> torch.Tensor:
    """float32 (M, 3): each voxel's position inside its window, as the centre of its cell
    normalised to (-1, 1): ``x -> (2 * (x mod wx) + 1) / wx - 1`` (x shifted by wx // 2 when
    ``shifted``), the same for y; z is taken over the whole grid height, (2 z + 1) / Z - 1
    (0 for pillars). The same for the x and y orders of a shift; on the coords' device."""
    wx, wy = window_shape_xy(window_shape)
    sx, sy = (wx // 2, wy // 2) if shifted else (0, 0)
    coords = voxels.coords.long()
    local_x = (coords[:, 3] + sx) % wx
    local_y = (coords[:, 2] + sy) % wy
    cells = torch.stack([local_x, local_y, coords[:, 1]], 1).float()
    sizes = torch.tensor([wx, wy, voxels.spatial_shape[0]], dtype=torch.float32, device=coords.device)
    return (2 * cells + 1) / sizes - 1
