"""numba kernels behind ``pointformer.ops.voxelize`` (the CPU path).

Every point gets a linear voxel key ``((b * Z + z) * Y + y) * X + x`` (int64) or a negative
code saying why it has none. Occupied voxels are found with an open-addressing hash table
(linear probing, Fibonacci hashing) of voxel ids, at most half full, that compares keys through
``voxel_keys``: the first point of a voxel creates it, in input order. The table is sized once,
from the most voxels there can be: a table that grows (an array reassigned inside the point
loop) made the loop twice as slow under numba.

The kernels are serial: voxelizing on the CPU happens in data-loading workers, one per core,
and on two cores shared with other work a parallel region costs more in thread wake-ups than
the few hundred microseconds it could save.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

OUT_OF_RANGE = -1
NON_FINITE = -2

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)
MIN_HASH_BITS = 10


@nb.njit(cache=True, inline="always")
def _grid_scalars(lo, hi, size, shape):
    """The grid as one tuple of scalars (float32 bounds and sizes, int64 shape), read once per
    kernel: array loads inside the point loop cannot be hoisted past the output stores."""
    return (lo[0], lo[1], lo[2], hi[0], hi[1], hi[2], size[0], size[1], size[2], shape[0], shape[1], shape[2])


@nb.njit(cache=True)
def _voxel_xyz(x, y, z, grid):
    """(in range?, x, y, z voxel indices) of a point: on every axis ``lo <= p < hi`` and
    ``0 <= floor((p - lo) / size) < n``, in float32 arithmetic as spconv. Indices are 0 when out.

    Given ``p >= lo`` the quotient is >= 0, so truncation is its floor and ``q < n`` is
    ``floor(q) < n`` (compared in float64, exact for any int32 ``n``)."""
    lx, ly, lz, hx, hy, hz, sx, sy, sz, nz, ny, nx = grid
    qx = (x - lx) / sx
    qy = (y - ly) / sy
    qz = (z - lz) / sz
    inside = ((x >= lx) & (x < hx) & (qx < nx)
              & (y >= ly) & (y < hy) & (qy < ny)
              & (z >= lz) & (z < hz) & (qz < nz))
    if inside:
        return True, np.int64(qx), np.int64(qy), np.int64(qz)
    return False, 0, 0, 0


@nb.njit(cache=True)
def point_keys(points, offsets, lo, hi, size, shape):
    """(N, C) float32 points of the samples in ``offsets`` -> (N,) int64 linear voxel keys
    ``((b * Z + z) * Y + y) * X + x``, or OUT_OF_RANGE / NON_FINITE (NaN or inf in x, y, z).
    ``lo``/``hi``/``size`` float32 (3,) x, y, z; ``shape`` int64 (Z, Y, X)."""
    grid = _grid_scalars(lo, hi, size, shape)
    nz, ny, nx = grid[9], grid[10], grid[11]
    keys = np.empty(points.shape[0], np.int64)
    for b in range(offsets.shape[0] - 1):
        for i in range(offsets[b], offsets[b + 1]):
            x, y, z = points[i, 0], points[i, 1], points[i, 2]
            inside, ix, iy, iz = _voxel_xyz(x, y, z, grid)
            if inside:
                keys[i] = ((b * nz + iz) * ny + iy) * nx + ix
            elif math.isfinite(x) and math.isfinite(y) and math.isfinite(z):
                keys[i] = OUT_OF_RANGE
            else:
                keys[i] = NON_FINITE
    return keys


@nb.njit(cache=True)
def first_point_coords(points, first_point, sample, lo, hi, size, shape):
    """(M, 4) int32 [b, z, y, x] of voxels from the point that created each (no integer division)."""
    grid = _grid_scalars(lo, hi, size, shape)
    coords = np.empty((first_point.shape[0], 4), np.int32)
    for v in range(first_point.shape[0]):
        i = first_point[v]
        _, ix, iy, iz = _voxel_xyz(points[i, 0], points[i, 1], points[i, 2], grid)
        coords[v, 0] = sample[v]
        coords[v, 1] = iz
        coords[v, 2] = iy
        coords[v, 3] = ix
    return coords


@nb.njit(cache=True, inline="always")
def _hash_slot(key, bits):
    return np.int64((np.uint64(key) * _FIBONACCI) >> np.uint64(64 - bits))


@nb.njit(cache=True)
def _hash_bits(max_voxels):
    """log2 of a table size at least twice ``max_voxels`` (load factor <= 1/2)."""
    bits = MIN_HASH_BITS
    while (1 << bits) < 2 * max_voxels:
        bits += 1
    return bits


@nb.njit(cache=True, inline="always")
def _find(table, voxel_keys, key, bits):
    """(voxel id or -1, table position) of ``key``; the position is where to insert when absent."""
    mask = np.int64(table.shape[0] - 1)
    pos = _hash_slot(key, bits)
    while True:
        v = table[pos]
        if v < 0 or voxel_keys[v] == key:
            return v, pos
        pos = (pos + 1) & mask


@nb.njit(cache=True)
def hard_assign(keys, offsets, max_voxels, max_points):
    """First-come voxels of at most ``max_points`` points, at most ``max_voxels`` per sample.

    ``keys`` from ``point_keys``. Returns voxel id per point (-1: dropped), slot in its voxel
    per point (-1: beyond ``max_points`` or no voxel), per voxel its first point and sample
    (M,), points kept per voxel (M,), and dropped counts (out of range, non-finite, in voxels
    over max_voxels, over max_points).
    """
    n = keys.shape[0]
    voxel_of_point = np.empty(n, np.int64)
    slot_of_point = np.empty(n, np.int32)
    capacity = min(n, (offsets.shape[0] - 1) * max_voxels)
    voxel_keys = np.empty(capacity, np.int64)
    first_point = np.empty(capacity, np.int64)
    sample = np.empty(capacity, np.int32)
    num_points = np.zeros(capacity, np.int64)
    bits = _hash_bits(capacity)
    table = np.full(1 << bits, -1, np.int32)
    num_voxels = 0
    out_of_range = 0
    non_finite = 0
    over_voxels = 0
    over_points = 0
    for b in range(offsets.shape[0] - 1):
        sample_first = num_voxels
        last_key = -1
        v = -1
        for i in range(offsets[b], offsets[b + 1]):
            key = keys[i]
            if key < 0:
                voxel_of_point[i] = -1
                slot_of_point[i] = -1
                if key == NON_FINITE:
                    non_finite += 1
                else:
                    out_of_range += 1
                continue
            if key != last_key:  # LiDAR points come in scan order: often the voxel of the last one
                v, pos = _find(table, voxel_keys, key, bits)
                if v < 0 and num_voxels - sample_first < max_voxels:
                    v = num_voxels
                    num_voxels += 1
                    voxel_keys[v] = key
                    first_point[v] = i
                    sample[v] = b
                    table[pos] = v
                last_key = key
            voxel_of_point[i] = v
            if v < 0:
                slot_of_point[i] = -1
                over_voxels += 1
                continue
            count = num_points[v]
            if count < max_points:
                slot_of_point[i] = count
                num_points[v] = count + 1
            else:
                slot_of_point[i] = -1
                over_points += 1
    return (voxel_of_point, slot_of_point, first_point[:num_voxels].copy(), sample[:num_voxels].copy(),
            num_points[:num_voxels].copy(), out_of_range, non_finite, over_voxels, over_points)


@nb.njit(cache=True)
def fill_voxels(points, voxel_of_point, slot_of_point, voxels):
    """Copy every point with a slot into ``voxels`` (M, K, C) (zeroed by the caller)."""
    for i in range(points.shape[0]):
        s = slot_of_point[i]
        if s >= 0:
            v = voxel_of_point[i]
            for c in range(points.shape[1]):
                voxels[v, s, c] = points[i, c]


@nb.njit(cache=True)
def dynamic_assign(keys, offsets, key_bits):
    """Voxels in key order, i.e. sorted by (b, z, y, x): voxel id per point (-1 when dropped),
    per voxel its first point and sample (M,) and its point count (M,), out-of-range and
    non-finite counts. Keys are below 2**key_bits."""
    n = keys.shape[0]
    voxel_of_point = np.empty(n, np.int64)
    voxel_keys = np.empty(n, np.int64)
    first_point = np.empty(n, np.int64)
    sample = np.empty(n, np.int32)
    counts = np.zeros(n, np.int64)
    bits = _hash_bits(n)
    table = np.full(1 << bits, -1, np.int32)
    num_voxels = 0
    out_of_range = 0
    non_finite = 0
    for b in range(offsets.shape[0] - 1):
        last_key = -1
        v = -1
        for i in range(offsets[b], offsets[b + 1]):
            key = keys[i]
            if key < 0:
                voxel_of_point[i] = -1
                if key == NON_FINITE:
                    non_finite += 1
                else:
                    out_of_range += 1
                continue
            if key != last_key:
                v, pos = _find(table, voxel_keys, key, bits)
                if v < 0:
                    v = num_voxels
                    num_voxels += 1
                    voxel_keys[v] = key
                    first_point[v] = i
                    sample[v] = b
                    table[pos] = v
                last_key = key
            voxel_of_point[i] = v
            counts[v] += 1
    rank = _sorted_rank(voxel_keys[:num_voxels], key_bits)
    sorted_first = np.empty(num_voxels, np.int64)
    sorted_sample = np.empty(num_voxels, np.int32)
    sorted_counts = np.empty(num_voxels, np.int64)
    for v in range(num_voxels):
        sorted_first[rank[v]] = first_point[v]
        sorted_sample[rank[v]] = sample[v]
        sorted_counts[rank[v]] = counts[v]
    for i in range(n):
        if voxel_of_point[i] >= 0:
            voxel_of_point[i] = rank[voxel_of_point[i]]
    return voxel_of_point, sorted_first, sorted_sample, sorted_counts, out_of_range, non_finite


@nb.njit(cache=True)
def _sorted_rank(voxel_keys, key_bits):
    """Rank of every voxel in ascending key order (keys distinct, < 2**key_bits): LSD radix sort."""
    m = voxel_keys.shape[0]
    order = np.arange(m)
    scratch = np.empty(m, np.int64)
    digit_bits = 11
    radix = 1 << digit_bits
    shift = 0
    while shift < key_bits:
        histogram = np.zeros(radix + 1, np.int64)
        for j in range(m):
            histogram[((voxel_keys[order[j]] >> shift) & (radix - 1)) + 1] += 1
        for d in range(radix):
            histogram[d + 1] += histogram[d]
        for j in range(m):
            d = (voxel_keys[order[j]] >> shift) & (radix - 1)
            scratch[histogram[d]] = order[j]
            histogram[d] += 1
        order, scratch = scratch, order
        shift += digit_bits
    rank = np.empty(m, np.int64)
    for j in range(m):
        rank[order[j]] = j
    return rank


@nb.njit(cache=True)
def segment_mean(feats, index, num_voxels):
    """Mean of ``feats`` (N, C) rows per voxel ``index`` (N,) (-1 ignored), summed in float64;
    0 for voxels with no point. Same dtype as ``feats``."""
    sums = np.zeros((num_voxels, feats.shape[1]), np.float64)
    counts = np.zeros(num_voxels, np.int64)
    for i in range(feats.shape[0]):
        v = index[i]
        if v < 0:
            continue
        counts[v] += 1
        for c in range(feats.shape[1]):
            sums[v, c] += feats[i, c]
    out = np.zeros((num_voxels, feats.shape[1]), feats.dtype)
    for v in range(num_voxels):
        if counts[v] > 0:
            for c in range(feats.shape[1]):
                out[v, c] = sums[v, c] / counts[v]
    return out


@nb.njit(cache=True)
def segment_max(feats, index, num_voxels):
    """Largest ``feats`` (N, C) row values per voxel ``index`` (N,) (-1 ignored); NaN wins, as in
    torch's ``amax``; 0 for voxels with no point."""
    out = np.zeros((num_voxels, feats.shape[1]), feats.dtype)
    seen = np.zeros(num_voxels, np.bool_)
    for i in range(feats.shape[0]):
        v = index[i]
        if v < 0:
            continue
        if not seen[v]:
            seen[v] = True
            for c in range(feats.shape[1]):
                out[v, c] = feats[i, c]
            continue
        for c in range(feats.shape[1]):
            x = feats[i, c]
            if x > out[v, c] or math.isnan(x):
                out[v, c] = x
    return out


@nb.njit(cache=True)
def segment_argmax(feats, index, num_voxels):
    """``segment_max`` plus, per voxel and column, the row it came from (the first row holding
    the maximum, or the first NaN); -1 for voxels with no point."""
    out = np.zeros((num_voxels, feats.shape[1]), feats.dtype)
    source = np.full((num_voxels, feats.shape[1]), -1, np.int64)
    for i in range(feats.shape[0]):
        v = index[i]
        if v < 0:
            continue
        for c in range(feats.shape[1]):
            x = feats[i, c]
            best = source[v, c]
            if best < 0 or (x > out[v, c] and not math.isnan(out[v, c])) or (math.isnan(x) and not math.isnan(out[v, c])):
                out[v, c] = x
                source[v, c] = i
    return out, source


@nb.njit(cache=True)
def segment_argmax_backward(grad_out, source, num_points):
    """Gradient of ``segment_argmax``'s maxima w.r.t. the rows: each voxel's gradient goes to
    the row its maximum came from."""
    grad = np.zeros((num_points, grad_out.shape[1]), grad_out.dtype)
    for v in range(source.shape[0]):
        for c in range(source.shape[1]):
            i = source[v, c]
            if i >= 0:
                grad[i, c] += grad_out[v, c]
    return grad
