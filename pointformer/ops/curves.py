"""Space-filling-curve grouping (PTv3-style serialisation, Wu et al. CVPR 2024).

Voxels are ordered along a z-order (Morton) or Hilbert curve over their grid coordinates —
3D (x, y, z), or 2D (x, y) when the grid is one voxel high — with the sample index above the
curve's bits, then cut into patches of ``group_size`` exactly like the flattened windows
(``pointformer.ops.grouping``: per sample, the last patch padded with its own tokens).

Orders: ``"z"`` and ``"hilbert"`` on (x, y[, z]); ``"z_trans"`` and ``"hilbert_trans"`` on
(y, x[, z]). Codes use ``bits`` bits per axis, enough for the largest grid side; in each
level the first axis holds the most significant bit. The Hilbert code is Skilling's
("Programming the Hilbert curve", AIP Conf. Proc. 707, 2004): axes to transposed index, then
the transposed bits interleaved.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pointformer.structures import GroupPlan, SparseVoxels

from . import grouping_kernels as kernels
from .grouping import (Backend, check_key_range, check_voxel_coords, cut_plans_torch, plan_orders_numba, positive_int,
                       use_numba)

CURVE_ORDERS = ("z", "z_trans", "hilbert", "hilbert_trans")


def _check_axes(axes: torch.Tensor, bits: int) -> int:
    """Validate (M, D) integer ``axes`` with values in [0, 2**bits); returns ``bits``."""
    bits = positive_int("bits", bits)
    if axes.dim() != 2 or axes.shape[1] < 1 or axes.dtype.is_floating_point or axes.dtype == torch.bool:
        raise ValueError(f"axes must be an integer (M, D) tensor, got {axes.dtype} {tuple(axes.shape)}")
    if axes.shape[1] * bits > 62:
        raise ValueError(f"a {axes.shape[1]}-axis code of {bits} bits per axis does not fit an int64 key")
    if axes.numel() and (int(axes.min()) < 0 or int(axes.max()) >= 1 << bits):
        raise ValueError(f"axes values must lie in [0, 2**{bits}), got [{int(axes.min())}, {int(axes.max())}]")
    return bits


# ----------------------------------------------------------------------- torch
def _morton_torch(axes: torch.Tensor, bits: int) -> torch.Tensor:
    axes = axes.long()
    code = torch.zeros(axes.shape[0], dtype=torch.int64, device=axes.device)
    for level in range(bits - 1, -1, -1):
        for axis in range(axes.shape[1]):
            code = (code << 1) | ((axes[:, axis] >> level) & 1)
    return code


def _hilbert_torch(axes: torch.Tensor, bits: int) -> torch.Tensor:
    x = list(axes.long().unbind(1))
    dims = len(x)
    q = 1 << (bits - 1)
    while q > 1:  # inverse undo
        p = q - 1
        for axis in range(dims):
            high = (x[axis] & q) != 0
            t = (x[0] ^ x[axis]) & p
            if axis == 0:
                x[0] = torch.where(high, x[0] ^ p, x[0])
            else:
                x[0], x[axis] = torch.where(high, x[0] ^ p, x[0] ^ t), torch.where(high, x[axis], x[axis] ^ t)
        q >>= 1
    for axis in range(1, dims):  # Gray encode
        x[axis] = x[axis] ^ x[axis - 1]
    t = torch.zeros_like(x[0])
    q = 1 << (bits - 1)
    while q > 1:
        t = torch.where((x[dims - 1] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    code = torch.zeros_like(x[0])
    for level in range(bits - 1, -1, -1):
        for axis in range(dims):
            code = (code << 1) | (((x[axis] ^ t) >> level) & 1)
    return code


# ----------------------------------------------------------------------- public: codes and keys
def _codes_numba(axes: torch.Tensor, bits: int, hilbert: bool) -> torch.Tensor:
    table = axes.numpy()
    codes = np.empty(table.shape[0], np.int64)
    work = np.empty((table.shape[1] + 1, table.shape[0]), np.int64)
    kernels.curve_codes(table, np.arange(table.shape[1]), bits, hilbert, work, codes)
    return torch.from_numpy(codes)


def morton_code(axes: torch.Tensor, bits: int, backend: Backend = "auto") -> torch.Tensor:
    """int64 (M,) z-order codes of integer (M, D) ``axes`` in [0, 2**bits): bit ``level`` of
    axis ``a`` lands at bit ``level * D + (D - 1 - a)``."""
    bits = _check_axes(axes, bits)
    if use_numba(axes.device, backend):
        return _codes_numba(axes, bits, hilbert=False)
    return _morton_torch(axes, bits)


def hilbert_code(axes: torch.Tensor, bits: int, backend: Backend = "auto") -> torch.Tensor:
    """int64 (M,) Hilbert indices (Skilling's algorithm) of integer (M, D) ``axes`` in [0, 2**bits)."""
    bits = _check_axes(axes, bits)
    if use_numba(axes.device, backend):
        return _codes_numba(axes, bits, hilbert=True)
    return _hilbert_torch(axes, bits)


def _curve_axes(order: str, spatial_shape: Sequence[int]) -> tuple[list[int], int]:
    """The coords columns a curve reads ([x, y(, z)] or transposed) and its bits per axis."""
    if order not in CURVE_ORDERS:
        raise ValueError(f"curve order must be one of {CURVE_ORDERS}, got {order!r}")
    depth, size_y, size_x = spatial_shape
    columns = [2, 3] if order.endswith("_trans") else [3, 2]
    sizes = [size_x, size_y]
    if depth > 1:
        columns.append(1)
        sizes.append(depth)
    return columns, max(1, max(int(s - 1).bit_length() for s in sizes))


def _curve_key_bound(order: str, spatial_shape: Sequence[int], batch_size: int) -> int:
    columns, bits = _curve_axes(order, spatial_shape)
    return batch_size << (len(columns) * bits)


def curve_keys(coords: torch.Tensor, spatial_shape: Sequence[int], order: str,
               backend: Backend = "auto") -> torch.Tensor:
    """int64 (M,) sort keys of voxel ``coords`` (M, 4) [b, z, y, x] in a grid of ``spatial_shape``
    (Z, Y, X): ``batch << (D * bits) | curve code`` (D = 3, or 2 when Z == 1)."""
    columns, bits = _curve_axes(order, spatial_shape)
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"coords must be (M, 4) [b, z, y, x], got shape {tuple(coords.shape)}")
    batch = coords[:, 0].long()
    if batch.numel() and int(batch.min()) < 0:
        raise ValueError(f"coords[:, 0] (batch) must be >= 0, got {int(batch.min())}")
    check_key_range(_curve_key_bound(order, spatial_shape, int(batch.max()) + 1 if batch.numel() else 1),
                    f"curve order {order!r}")
    encode = hilbert_code if order.startswith("hilbert") else morton_code
    return (batch << (len(columns) * bits)) | encode(coords[:, columns], bits, backend)


# ----------------------------------------------------------------------- public: plans
def curve_plans(voxels: SparseVoxels, group_size: int, orders: Sequence[str] = CURVE_ORDERS,
                backend: Backend = "auto") -> dict[str, GroupPlan]:
    """One ``GroupPlan`` per curve order (default all four): patches of ``group_size`` voxels
    along the curve, per sample, sharing the cut of ``pointformer.ops.grouping``."""
    group_size = positive_int("group_size", group_size)
    orders = list(orders)
    if len(set(orders)) != len(orders):
        raise ValueError(f"orders must be distinct, got {orders}")
    bounds = [_curve_key_bound(order, voxels.spatial_shape, voxels.batch_size) for order in orders]
    for order, bound in zip(orders, bounds):
        check_key_range(bound, f"curve order {order!r}")
    if use_numba(voxels.coords.device, backend):
        table = np.zeros((len(orders), kernels.TABLE_COLUMNS), np.int64)
        for row, order, bound in zip(table, orders, bounds):
            columns, bits = _curve_axes(order, voxels.spatial_shape)
            hilbert = order.startswith("hilbert")
            row[:5 + len(columns)] = (kernels.CURVE, bound - 1, hilbert, bits, len(columns), *columns)
        plans = plan_orders_numba(voxels, table, group_size)
    else:
        check_voxel_coords(voxels)
        keys = []
        for order in orders:
            columns, bits = _curve_axes(order, voxels.spatial_shape)
            encode = _hilbert_torch if order.startswith("hilbert") else _morton_torch
            keys.append((voxels.batch_idx << (len(columns) * bits)) | encode(voxels.coords[:, columns], bits))
        plans = cut_plans_torch(voxels.batch_idx, voxels.batch_size, keys, group_size)
    return dict(zip(orders, plans))


def curve_plan(voxels: SparseVoxels, group_size: int, order: str = "hilbert", backend: Backend = "auto") -> GroupPlan:
    """The ``GroupPlan`` of one curve order (see ``curve_plans``)."""
    return curve_plans(voxels, group_size, (order,), backend)[order]
