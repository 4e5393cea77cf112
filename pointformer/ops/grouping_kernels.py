"""numba kernels behind the sort-based groupings (the CPU path of ``grouping``, ``curves`` and
``sst_windows``): sort keys, a stable LSD radix sort, and the equal-size cut.

A stage's orders are planned together from one *order table*, one int64 row per order:

    column 0  kind: FLAT_WINDOW or CURVE
    column 1  largest possible key
    FLAT_WINDOW  2 sweep along x (1) or y (0), 3 shift x, 4 shift y, 5 bands,
                 6 sweep extent (voxels), 7 window size across the sweep, 8 grid depth Z
    CURVE        2 Hilbert (1) or Morton (0), 3 bits per axis, 4 axes D, 5.. coords column of each axis

Orders are spread over ``lanes`` (order k runs on lane k % lanes), each lane with its own work
arrays, so lanes never write to the same memory. The parallel kernel runs the lanes in a
``prange``; it pays only for large inputs (``PARALLEL_MIN_VOXELS``): on small ones, waking
threads on two shared cores costs more than the planning.
"""

from __future__ import annotations

import numba as nb
import numpy as np

FLAT_WINDOW = 0
CURVE = 1
TABLE_COLUMNS = 9
PARALLEL_MIN_VOXELS = 32_768


# ----------------------------------------------------------------------- checks
@nb.njit(cache=True)
def ranges_and_counts(coords: np.ndarray, batch_size: int):
    """Per-column min and max of ``coords`` (M, 4), and the voxel count of each sample (all
    zero unless every batch index lies in [0, batch_size))."""
    low = np.full(4, np.iinfo(np.int64).max, np.int64)
    high = np.full(4, np.iinfo(np.int64).min, np.int64)
    for c in range(4):
        lowest, highest = low[c], high[c]
        for i in range(coords.shape[0]):
            lowest = min(lowest, np.int64(coords[i, c]))
            highest = max(highest, np.int64(coords[i, c]))
        low[c], high[c] = lowest, highest
    counts = np.zeros(batch_size, np.int64)
    if low[0] >= 0 and high[0] < batch_size:
        for i in range(coords.shape[0]):
            counts[coords[i, 0]] += 1
    return low, high, counts


# ----------------------------------------------------------------------- stable radix sort
@nb.njit(cache=True)
def _bit_length(value: int) -> int:
    bits = 1
    while bits < 63 and (value >> bits) > 0:
        bits += 1
    return bits


@nb.njit(cache=True)
def _digit_offsets(keys: np.ndarray, key_bits: int, max_digit_bits: int):
    """LSD digit layout for ``key_bits``-bit keys and every digit's start offsets (one pass)."""
    passes = (key_bits + max_digit_bits - 1) // max_digit_bits
    digit_bits = (key_bits + passes - 1) // passes
    mask = (1 << digit_bits) - 1
    offsets = np.zeros((passes, mask + 1), np.int64)
    for i in range(keys.shape[0]):
        for p in range(passes):
            offsets[p, (keys[i] >> (p * digit_bits)) & mask] += 1
    for p in range(passes):
        total = 0
        for d in range(mask + 1):
            count = offsets[p, d]
            offsets[p, d] = total
            total += count
    return passes, digit_bits, mask, offsets


@nb.njit(cache=True)
def radix_sort_into(keys: np.ndarray, max_key: int, work: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 ``keys`` (M,), all <= ``max_key``, by LSD radix
    sort (digits of 8 to 16 bits as M grows). ``work`` (4, M) int64 is caller-owned, reused
    between sorts; returns the row of it that holds the order.

    When key and index fit 63 bits together, each key travels with its index packed in one
    int64 (half the memory traffic); otherwise keys and indices move as pairs."""
    n = keys.shape[0]
    key_bits = _bit_length(max_key)
    index_bits = _bit_length(max(n - 1, 1))
    passes, digit_bits, mask, offsets = _digit_offsets(keys, key_bits, min(16, max(8, index_bits - 2)))
    if key_bits + index_bits <= 63:
        packed, spare = work[0], work[1]
        for i in range(n):
            d = keys[i] & mask
            slot = offsets[0, d]
            offsets[0, d] = slot + 1
            packed[slot] = (keys[i] << index_bits) | i
        for p in range(1, passes):
            shift = p * digit_bits + index_bits
            for i in range(n):
                d = (packed[i] >> shift) & mask
                slot = offsets[p, d]
                offsets[p, d] = slot + 1
                spare[slot] = packed[i]
            packed, spare = spare, packed
        index_mask = (np.int64(1) << index_bits) - 1
        for i in range(n):
            packed[i] &= index_mask
        return packed
    order, spare_order, sorted_keys, spare_keys = work[0], work[1], work[2], work[3]
    for i in range(n):
        d = keys[i] & mask
        slot = offsets[0, d]
        offsets[0, d] = slot + 1
        order[slot] = i
        sorted_keys[slot] = keys[i]
    for p in range(1, passes):
        shift = p * digit_bits
        for i in range(n):
            d = (sorted_keys[i] >> shift) & mask
            slot = offsets[p, d]
            offsets[p, d] = slot + 1
            spare_order[slot] = order[i]
            spare_keys[slot] = sorted_keys[i]
        order, spare_order = spare_order, order
        sorted_keys, spare_keys = spare_keys, sorted_keys
    return order


@nb.njit(cache=True)
def radix_argsort(keys: np.ndarray, max_key: int) -> np.ndarray:
    """``radix_sort_into`` with its own work array."""
    return radix_sort_into(keys, max_key, np.empty((4, keys.shape[0]), np.int64)).copy()


# ----------------------------------------------------------------------- equal-size cut
@nb.njit(cache=True)
def equal_size_layout(counts: np.ndarray, group_size: int):
    """The cut of sample-contiguous sorted tokens (``counts`` (B,) per sample) into groups.

    Returns ``source`` (G * S,) sorted position each slot takes, ``destination`` (M,) real slot
    of each sorted position, ``padding`` (G, S), ``group_batch`` (G,).
    """
    num_groups = 0
    num_tokens = 0
    for b in range(counts.shape[0]):
        num_groups += (counts[b] + group_size - 1) // group_size
        num_tokens += counts[b]
    source = np.empty(num_groups * group_size, np.int64)
    destination = np.empty(num_tokens, np.int64)
    padding = np.zeros((num_groups, group_size), np.bool_)
    group_batch = np.empty(num_groups, np.int64)
    group = 0
    start = 0
    for b in range(counts.shape[0]):
        count = counts[b]
        groups = (count + group_size - 1) // group_size
        shift = group * group_size - start
        for k in range(start, start + count):
            destination[k] = k + shift
            source[k + shift] = k
        group_batch[group:group + groups] = b
        group += groups
        start += count
        if count:  # fill the last group up with its own tokens
            last = (group - 1) * group_size
            real = count - (groups - 1) * group_size
            for j in range(real, group_size):
                source[last + j] = source[last + j % real]
                padding[group - 1, j] = True
    return source, destination, padding, group_batch


@nb.njit(cache=True)
def _cut(order: np.ndarray, source: np.ndarray, destination: np.ndarray, index: np.ndarray,
         inverse: np.ndarray) -> None:
    """The cut of one sorted ``order`` (M,): ``index`` (G * S,) slot -> voxel and ``inverse``
    (M,) voxel -> real slot, filled in place."""
    for s in range(source.shape[0]):
        index[s] = order[source[s]]
    for i in range(order.shape[0]):
        inverse[order[i]] = destination[i]


# ----------------------------------------------------------------------- flattened-window keys
@nb.njit(cache=True, error_model="numpy")
def _flat_window_keys(coords: np.ndarray, row: np.ndarray, keys: np.ndarray) -> None:
    """Keys of one flattened-window order (table ``row``) into ``keys`` (M,): (sample, band,
    position along the sweep, row in the band, z), snaked as ``grouping`` describes. Bands and
    rows in the band come from lookup tables (no division per voxel)."""
    sweep_is_x, sx, sy, bands, extent, across_size, depth = row[2] == 1, row[3], row[4], row[5], row[6], row[7], row[8]
    band_of = np.empty(bands * across_size, np.int64)
    local_of = np.empty(bands * across_size, np.int64)
    for across in range(bands * across_size):
        band_of[across] = across // across_size
        local_of[across] = across % across_size
    line_stride = across_size * depth
    band_stride = extent * line_stride
    batch_stride = bands * band_stride
    for i in range(coords.shape[0]):
        xs = np.int64(coords[i, 3]) + sx
        ys = np.int64(coords[i, 2]) + sy
        z = np.int64(coords[i, 1])
        along, across = (xs, ys) if sweep_is_x else (ys, xs)
        band = band_of[across]
        line = along if band & 1 == 0 else extent - 1 - along
        local = local_of[across] if along & 1 == 0 else across_size - 1 - local_of[across]
        if (xs + ys) & 1:
            z = depth - 1 - z
        keys[i] = np.int64(coords[i, 0]) * batch_stride + band * band_stride + line * line_stride + local * depth + z


# ----------------------------------------------------------------------- curve codes
# Axis-major (D, M) int64 rows, one streaming, branch-free loop per (level, axis) step.
@nb.njit(cache=True)
def interleave_into(x: np.ndarray, bits: int, codes: np.ndarray) -> None:
    """(D, M) axes -> (M,) ``codes``: bit ``level`` of axis ``a`` lands at ``level * D + (D - 1 - a)``."""
    dims, n = x.shape
    codes[:] = 0
    for level in range(bits):
        for axis in range(dims):
            shift = level * dims + dims - 1 - axis
            row = x[axis]
            for i in range(n):
                codes[i] |= ((row[i] >> level) & 1) << shift


@nb.njit(cache=True)
def hilbert_transpose(x: np.ndarray, bits: int, t: np.ndarray) -> None:
    """Skilling's AxestoTranspose, in place on (D, M) axes; ``t`` (M,) is work memory."""
    dims, n = x.shape
    first = x[0]
    for level in range(bits - 1, 0, -1):  # inverse undo
        low = (np.int64(1) << level) - 1
        for i in range(n):
            first[i] ^= low & -((first[i] >> level) & 1)
        for axis in range(1, dims):
            row = x[axis]
            for i in range(n):
                high = -((row[i] >> level) & 1)
                swap = (first[i] ^ row[i]) & low & ~high  # exchange low bits where the bit is clear
                first[i] ^= (low & high) | swap  # invert them where it is set
                row[i] ^= swap
    for axis in range(1, dims):  # Gray encode
        for i in range(n):
            x[axis, i] ^= x[axis - 1, i]
    last = x[dims - 1]
    t[:] = 0
    for level in range(bits - 1, 0, -1):
        low = (np.int64(1) << level) - 1
        for i in range(n):
            t[i] ^= low & -((last[i] >> level) & 1)
    for axis in range(dims):
        for i in range(n):
            x[axis, i] ^= t[i]


@nb.njit(cache=True)
def curve_codes(table: np.ndarray, columns: np.ndarray, bits: int, hilbert: bool, work: np.ndarray,
                codes: np.ndarray) -> None:
    """Morton or Hilbert codes of the D ``columns`` of an (M, C) integer table into ``codes``
    (M,); ``work`` (D + 1, M) int64 is work memory."""
    dims = columns.shape[0]
    x = work[:dims]
    for axis in range(dims):
        for i in range(table.shape[0]):
            x[axis, i] = table[i, columns[axis]]
    if hilbert:
        hilbert_transpose(x, bits, work[dims])
    interleave_into(x, bits, codes)


@nb.njit(cache=True)
def _curve_keys(coords: np.ndarray, row: np.ndarray, work: np.ndarray, keys: np.ndarray) -> None:
    """``sample << (D * bits) | code`` of one curve order (table ``row``) into ``keys`` (M,)."""
    bits, dims = row[3], row[4]
    curve_codes(coords, row[5:5 + dims], bits, row[2] == 1, work, keys)
    shift = dims * bits
    for i in range(coords.shape[0]):
        keys[i] |= np.int64(coords[i, 0]) << shift


# ----------------------------------------------------------------------- planning
@nb.njit(cache=True)
def _plan_lane(coords: np.ndarray, table: np.ndarray, lane: int, lanes: int, source: np.ndarray,
               destination: np.ndarray, keys: np.ndarray, work: np.ndarray, index: np.ndarray,
               inverse: np.ndarray) -> None:
    """Keys, stable sort and cut of the orders ``lane``, ``lane + lanes``, ... of ``table``."""
    for k in range(lane, table.shape[0], lanes):
        row = table[k]
        if row[0] == FLAT_WINDOW:
            _flat_window_keys(coords, row, keys)
        else:
            _curve_keys(coords, row, work, keys)
        _cut(radix_sort_into(keys, row[1], work), source, destination, index[k], inverse[k])


@nb.njit(cache=True)
def plan_orders(coords: np.ndarray, table: np.ndarray, source: np.ndarray, destination: np.ndarray):
    """Every order of ``table`` (K, TABLE_COLUMNS) over voxel ``coords`` (M, 4), one after the
    other, cut by ``equal_size_layout``'s ``source`` and ``destination``. Returns ``index``
    (K, G * S) and ``inverse`` (K, M)."""
    n = coords.shape[0]
    index = np.empty((table.shape[0], source.shape[0]), np.int64)
    inverse = np.empty((table.shape[0], n), np.int64)
    keys, work = np.empty(n, np.int64), np.empty((4, n), np.int64)
    _plan_lane(coords, table, 0, 1, source, destination, keys, work, index, inverse)
    return index, inverse


@nb.njit(cache=True, parallel=True)
def plan_orders_parallel(coords: np.ndarray, table: np.ndarray, source: np.ndarray, destination: np.ndarray,
                         lanes: int):
    """``plan_orders`` with the orders spread over ``lanes`` threads."""
    n = coords.shape[0]
    index = np.empty((table.shape[0], source.shape[0]), np.int64)
    inverse = np.empty((table.shape[0], n), np.int64)
    keys = np.empty((lanes, n), np.int64)
    work = np.empty((lanes, 4, n), np.int64)
    for lane in nb.prange(lanes):
        _plan_lane(coords, table, lane, lanes, source, destination, keys[lane], work[lane], index, inverse)
    return index, inverse


# ----------------------------------------------------------------------- SST windows
@nb.njit(cache=True, error_model="numpy")
def sst_window_keys(coords: np.ndarray, wx: int, wy: int, sx: int, sy: int, windows_x: int, windows_y: int,
                    depth: int) -> np.ndarray:
    """int64 (M,) keys: (sample, window row, window column) then (y, x, z) in the window."""
    cells = wy * wx * depth
    keys = np.empty(coords.shape[0], np.int64)
    for i in range(coords.shape[0]):
        xs = np.int64(coords[i, 3]) + sx
        ys = np.int64(coords[i, 2]) + sy
        window = (np.int64(coords[i, 0]) * windows_y + ys // wy) * windows_x + xs // wx
        keys[i] = window * cells + ((ys % wy) * wx + xs % wx) * depth + coords[i, 1]
    return keys


@nb.njit(cache=True)
def sst_window_plan(keys: np.ndarray, max_key: int, cells: int, windows_per_sample: int, caps: np.ndarray):
    """Sort, split into windows (``cells`` keys each), bucket and pad. Returns ``index`` and
    ``padding`` (all slots, bucket after bucket), ``group_batch`` (all groups),
    ``groups_per_bucket``, ``inverse`` (M,) (-1: dropped) and the number dropped."""
    n = keys.shape[0]
    order = radix_argsort(keys, max_key)
    window_start = np.empty(n + 1, np.int64)
    num_windows = 0
    previous = -1
    for i in range(n):
        window = keys[order[i]] // cells
        if window != previous:
            window_start[num_windows] = i
            num_windows += 1
            previous = window
    window_start[num_windows] = n
    num_buckets = caps.shape[0]
    bucket = np.empty(num_windows, np.int64)
    groups_per_bucket = np.zeros(num_buckets, np.int64)
    for w in range(num_windows):
        population = window_start[w + 1] - window_start[w]
        level = 0
        while level < num_buckets - 1 and caps[level] < population:
            level += 1
        bucket[w] = level
        groups_per_bucket[level] += 1
    first_slot = np.zeros(num_buckets + 1, np.int64)
    first_group = np.zeros(num_buckets + 1, np.int64)
    for level in range(num_buckets):
        first_slot[level + 1] = first_slot[level] + groups_per_bucket[level] * caps[level]
        first_group[level + 1] = first_group[level] + groups_per_bucket[level]
    index = np.empty(first_slot[num_buckets], np.int64)
    padding = np.empty(first_slot[num_buckets], np.bool_)
    group_batch = np.empty(first_group[num_buckets], np.int64)
    inverse = np.empty(n, np.int64)
    rank = np.zeros(num_buckets, np.int64)
    dropped = 0
    for w in range(num_windows):
        level = bucket[w]
        cap = caps[level]
        start = window_start[w]
        real = min(cap, window_start[w + 1] - start)
        base = first_slot[level] + rank[level] * cap
        group_batch[first_group[level] + rank[level]] = keys[order[start]] // cells // windows_per_sample
        rank[level] += 1
        for j in range(real):
            index[base + j] = order[start + j]
            padding[base + j] = False
            inverse[order[start + j]] = base + j
        for j in range(real, cap):  # filler: the window's own voxels again
            index[base + j] = order[start + j % real]
            padding[base + j] = True
        for k in range(start + real, window_start[w + 1]):
            inverse[order[k]] = -1
            dropped += 1
    return index, padding, group_batch, groups_per_bucket, inverse, dropped
