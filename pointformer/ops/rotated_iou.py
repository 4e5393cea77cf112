"""Exact IoU of rotated 3D boxes, in bird's-eye view (x-y) or in 3D, pairwise or aligned.

The BEV intersection of two oriented rectangles is found by Sutherland–Hodgman clipping of the
second rectangle against the four edges of the first, in the first box's own frame (float64,
relative to its centre, so huge coordinates lose nothing). Clipping one edge emits at most two
vertices per input vertex, so a fixed 64-vertex buffer can never overflow, and a crossing is
only interpolated between vertices strictly on opposite sides, so nothing divides by zero:
touching, identical, nested, parallel and zero-size boxes all give finite results. 3D IoU is
the BEV intersection area times the z overlap over the union of volumes.

Both paths (numba on CPU, torch anywhere) run the same float64 operations in the same order
on the same per-box table (``box_table``), so on CPU they agree bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from pointformer.structures import Boxes3D

# Columns of the per-box table of ``box_table`` (float64).
X, Y, Z, HALF_L, HALF_W, HALF_H, COS, SIN, RADIUS = range(9)
MODES = ("bev", "3d")
MAX_VERTICES = 64  # 4 corners, each of the 4 clips at most doubles the count
PAIR_CHUNK = 1 << 16  # candidate pairs clipped at once on the torch path (~100 MB of temporaries)
FILTER_CHUNK = 1 << 22  # pair distances tested at once when listing candidates
# Pairs whose centres are farther apart than the sum of their BEV circumradii cannot overlap;
# the relative slack only keeps rounding from dropping a touching pair.
REACH_SLACK = 1.0 + 1e-6

BoxesLike = Boxes3D | torch.Tensor


# ------------------------------------------------------------------ inputs
def box_tensor(boxes: BoxesLike, name: str = "boxes") -> torch.Tensor:
    """A ``Boxes3D`` or an (N, 7+) floating tensor -> its (N, 7+) tensor, checked: finite
    ``x, y, z, l, w, h, yaw`` and sizes >= 0 (a ValueError naming ``name`` otherwise)."""
    tensor = boxes.tensor if isinstance(boxes, Boxes3D) else boxes
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a Boxes3D or a torch.Tensor, got {type(boxes).__name__}")
    if tensor.dim() != 2 or tensor.shape[1] < 7:
        raise ValueError(f"{name}: expected boxes (N, 7+) as x, y, z, l, w, h, yaw[, ...], got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name}: expected a floating tensor, got {tensor.dtype}")
    geometry = tensor[:, :7]
    finite = torch.isfinite(geometry).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).reshape(-1)[:5].tolist()
        raise ValueError(f"{name}: x, y, z, l, w, h, yaw must be finite; rows {rows} are not")
    negative = (geometry[:, 3:6] < 0).any(dim=1)
    if bool(negative.any()):
        rows = torch.nonzero(negative).reshape(-1)[:5].tolist()
        raise ValueError(f"{name}: sizes l, w, h must be >= 0; rows {rows} are negative")
    return tensor


def box_table(tensor: torch.Tensor) -> torch.Tensor:
    """(N, 7+) boxes -> (N, 9) float64 on the same device: x, y, z, l/2, w/2, h/2, cos(yaw),
    sin(yaw), BEV circumradius. The one place yaw goes through cos/sin for both paths."""
    tensor = tensor.detach().to(torch.float64)
    half = tensor[:, 3:6] / 2
    yaw = tensor[:, 6]
    radius = torch.sqrt(half[:, 0] * half[:, 0] + half[:, 1] * half[:, 1])
    return torch.stack(
        [tensor[:, 0], tensor[:, 1], tensor[:, 2], half[:, 0], half[:, 1], half[:, 2], torch.cos(yaw), torch.sin(yaw), radius],
        dim=1,
    ).contiguous()


def _output_dtype(first: torch.Tensor, second: torch.Tensor) -> torch.dtype:
    return torch.promote_types(first.dtype, second.dtype)


# ---------------------------------------------------------------- public
def box_iou(boxes1: BoxesLike, boxes2: BoxesLike, mode: str = "bev", aligned: bool = False) -> torch.Tensor:
    """IoU of rotated boxes: ``mode="bev"`` (x-y footprints) or ``"3d"`` (volumes).

    boxes1 (N, 7+), boxes2 (M, 7+) as ``Boxes3D`` or tensors, layout x, y, z, l, w, h, yaw.
    Returns (N, M) pairwise, or (N,) with ``aligned=True`` (row i against row i, N == M), in the
    promoted dtype of the inputs, on their device. Zero-size boxes have IoU 0 with anything.
    CPU tensors run the numba path, others the torch path; both compute in float64.
    """
    first, second = box_tensor(boxes1, "boxes1"), box_tensor(boxes2, "boxes2")
    if mode not in MODES:
        raise ValueError(f"box_iou: mode must be one of {MODES}, got {mode!r}")
    if first.device != second.device:
        raise ValueError(f"box_iou: boxes1 on {first.device} and boxes2 on {second.device}")
    if aligned and first.shape[0] != second.shape[0]:
        raise ValueError(f"box_iou: aligned needs as many boxes1 as boxes2, got {first.shape[0]} and {second.shape[0]}")
    table1, table2 = box_table(first), box_table(second)
    path = _box_iou_numba if first.device.type == "cpu" else _box_iou_torch
    return path(table1, table2, mode, aligned).to(_output_dtype(first, second))


# ------------------------------------------------------------ numba path
@numba.njit(cache=True, inline="always")
def _clip_numba(u, v, count, sign, bound, out_u, out_v):
    """Keep the part of polygon (u, v)[:count] where ``sign * u <= bound``; returns the new count.
    ``u`` is the clipped coordinate (x or y), ``v`` the other one."""
    kept = 0
    for i in range(count):
        j = i + 1 if i + 1 < count else 0
        d_cur = bound - sign * u[i]
        d_nxt = bound - sign * u[j]
        if d_cur >= 0.0:
            out_u[kept] = u[i]
            out_v[kept] = v[i]
            kept += 1
        if (d_cur >= 0.0) != (d_nxt >= 0.0):
            t = d_cur / (d_cur - d_nxt)
            out_u[kept] = sign * bound
            out_v[kept] = v[i] + t * (v[j] - v[i])
            kept += 1
    return kept


@numba.njit(cache=True, inline="always")
def _bev_intersection_numba(table1, i, table2, j, scratch):
    """BEV intersection area of box-table rows table1[i] and table2[j]; scratch is (4, 64)."""
    dx = table2[j, X] - table1[i, X]
    dy = table2[j, Y] - table1[i, Y]
    reach = table1[i, RADIUS] + table2[j, RADIUS]
    if dx * dx + dy * dy > reach * reach * REACH_SLACK:
        return 0.0
    cos_a, sin_a, cos_b, sin_b = table1[i, COS], table1[i, SIN], table2[j, COS], table2[j, SIN]
    # the second box's centre and half-axes in the first box's frame
    cx = dx * cos_a + dy * sin_a
    cy = dy * cos_a - dx * sin_a
    cr = cos_b * cos_a + sin_b * sin_a
    sr = sin_b * cos_a - cos_b * sin_a
    ux = cr * table2[j, HALF_L]
    uy = sr * table2[j, HALF_L]
    vx = -sr * table2[j, HALF_W]
    vy = cr * table2[j, HALF_W]
    xs, ys, xt, yt = scratch[0], scratch[1], scratch[2], scratch[3]
    xs[0] = cx + ux + vx
    ys[0] = cy + uy + vy
    xs[1] = cx - ux + vx
    ys[1] = cy - uy + vy
    xs[2] = cx - ux - vx
    ys[2] = cy - uy - vy
    xs[3] = cx + ux - vx
    ys[3] = cy + uy - vy
    half_l, half_w = table1[i, HALF_L], table1[i, HALF_W]
    count = _clip_numba(xs, ys, 4, 1.0, half_l, xt, yt)
    count = _clip_numba(xt, yt, count, -1.0, half_l, xs, ys)
    count = _clip_numba(ys, xs, count, 1.0, half_w, yt, xt)
    count = _clip_numba(yt, xt, count, -1.0, half_w, ys, xs)
    area = 0.0
    for k in range(count):
        n = k + 1 if k + 1 < count else 0
        area += xs[k] * ys[n] - xs[n] * ys[k]
    return max(area * 0.5, 0.0)


@numba.njit(cache=True, inline="always")
def pair_iou_numba(table1, i, table2, j, three_d, scratch):
    """IoU of box-table rows table1[i] and table2[j] (BEV, or 3D when ``three_d``);
    scratch is a (4, MAX_VERTICES) float64 buffer."""
    area_a = 4.0 * table1[i, HALF_L] * table1[i, HALF_W]
    area_b = 4.0 * table2[j, HALF_L] * table2[j, HALF_W]
    inter = min(_bev_intersection_numba(table1, i, table2, j, scratch), area_a, area_b)
    if three_d:
        half_a, half_b = table1[i, HALF_H], table2[j, HALF_H]
        dz = table2[j, Z] - table1[i, Z]
        overlap = max(min(half_a, dz + half_b) - max(-half_a, dz - half_b), 0.0)
        inter = inter * overlap
        area_a = area_a * (2.0 * half_a)
        area_b = area_b * (2.0 * half_b)
    union = area_a + area_b - inter
    return inter / union if union > 0.0 else 0.0


@numba.njit(cache=True, parallel=True)
def _pairwise_kernel(table1, table2, three_d, out):
    for i in numba.prange(table1.shape[0]):
        scratch = np.empty((4, MAX_VERTICES))
        for j in range(table2.shape[0]):
            out[i, j] = pair_iou_numba(table1, i, table2, j, three_d, scratch)


@numba.njit(cache=True, parallel=True)
def _aligned_kernel(table1, table2, three_d, out):
    for i in numba.prange(table1.shape[0]):
        scratch = np.empty((4, MAX_VERTICES))
        out[i] = pair_iou_numba(table1, i, table2, i, three_d, scratch)


def _box_iou_numba(table1: torch.Tensor, table2: torch.Tensor, mode: str, aligned: bool) -> torch.Tensor:
    """IoU from two CPU box tables with the numba kernels; float64 (N, M) or (N,)."""
    first, second = table1.numpy(), table2.numpy()
    if aligned:
        out = np.zeros(first.shape[0], np.float64)
        if len(out):
            _aligned_kernel(first, second, mode == "3d", out)
    else:
        out = np.zeros((first.shape[0], second.shape[0]), np.float64)
        if out.size:
            _pairwise_kernel(first, second, mode == "3d", out)
    return torch.from_numpy(out)


# ------------------------------------------------------------ torch path
def _clip_torch(u: torch.Tensor, v: torch.Tensor, count: torch.Tensor, sign: float, bound: torch.Tensor):
    """Batched ``_clip_numba``: polygons (K, n) with ``count`` (K,) vertices, ``bound`` (K,).
    Returns (u, v, count) of the clipped polygons, vertices in the numba path's order."""
    pairs, n = u.shape
    slot = torch.arange(n, device=u.device)[None, :]
    valid = slot < count[:, None]
    following = torch.where(slot + 1 < count[:, None], slot + 1, 0)
    u_next, v_next = u.gather(1, following), v.gather(1, following)
    d_cur = bound[:, None] - sign * u
    d_next = bound[:, None] - sign * u_next
    inside, inside_next = d_cur >= 0, d_next >= 0
    emit_vertex = valid & inside
    emit_crossing = valid & (inside != inside_next)
    t = d_cur / torch.where(emit_crossing, d_cur - d_next, torch.ones_like(d_cur))
    crossing_v = v + t * (v_next - v)
    crossing_u = (sign * bound)[:, None].expand(pairs, n)
    emit = torch.stack([emit_vertex, emit_crossing], dim=2).reshape(pairs, 2 * n)
    candidates_u = torch.stack([u, crossing_u], dim=2).reshape(pairs, 2 * n)
    candidates_v = torch.stack([v, crossing_v], dim=2).reshape(pairs, 2 * n)
    new_count = emit.sum(dim=1)
    width = int(new_count.max()) if pairs else 0
    target = torch.where(emit, emit.cumsum(dim=1) - 1, width)  # dropped candidates go to a spare slot
    out_u = u.new_zeros((pairs, width + 1)).scatter_(1, target, candidates_u)[:, :width]
    out_v = v.new_zeros((pairs, width + 1)).scatter_(1, target, candidates_v)[:, :width]
    return out_u, out_v, new_count


def _bev_intersection_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K,) BEV intersection areas of box-table rows a (K, 9) and b (K, 9), all assumed near."""
    dx = b[:, X] - a[:, X]
    dy = b[:, Y] - a[:, Y]
    cx = dx * a[:, COS] + dy * a[:, SIN]
    cy = dy * a[:, COS] - dx * a[:, SIN]
    cr = b[:, COS] * a[:, COS] + b[:, SIN] * a[:, SIN]
    sr = b[:, SIN] * a[:, COS] - b[:, COS] * a[:, SIN]
    ux, uy = cr * b[:, HALF_L], sr * b[:, HALF_L]
    vx, vy = -sr * b[:, HALF_W], cr * b[:, HALF_W]
    xs = torch.stack([cx + ux + vx, cx - ux + vx, cx - ux - vx, cx + ux - vx], dim=1)
    ys = torch.stack([cy + uy + vy, cy - uy + vy, cy - uy - vy, cy + uy - vy], dim=1)
    count = torch.full((a.shape[0],), 4, dtype=torch.int64, device=a.device)
    xs, ys, count = _clip_torch(xs, ys, count, 1.0, a[:, HALF_L])
    xs, ys, count = _clip_torch(xs, ys, count, -1.0, a[:, HALF_L])
    ys, xs, count = _clip_torch(ys, xs, count, 1.0, a[:, HALF_W])
    ys, xs, count = _clip_torch(ys, xs, count, -1.0, a[:, HALF_W])
    area = torch.zeros_like(dx)
    for k in range(xs.shape[1]):  # sequential, in the numba path's summation order
        j = torch.where(k + 1 < count, k + 1, 0)[:, None]
        term = xs[:, k] * ys.gather(1, j)[:, 0] - xs.gather(1, j)[:, 0] * ys[:, k]
        area = area + torch.where(k < count, term, torch.zeros_like(term))
    return torch.clamp(area * 0.5, min=0.0)


def _iou_torch(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """(K,) IoU of box-table rows a (K, 9) and b (K, 9) that pass the reach test."""
    area_a = 4.0 * a[:, HALF_L] * a[:, HALF_W]
    area_b = 4.0 * b[:, HALF_L] * b[:, HALF_W]
    inter = torch.minimum(torch.minimum(_bev_intersection_torch(a, b), area_a), area_b)
    if mode == "3d":
        dz = b[:, Z] - a[:, Z]
        top = torch.minimum(a[:, HALF_H], dz + b[:, HALF_H])
        bottom = torch.maximum(-a[:, HALF_H], dz - b[:, HALF_H])
        inter = inter * torch.clamp(top - bottom, min=0.0)
        area_a = area_a * (2.0 * a[:, HALF_H])
        area_b = area_b * (2.0 * b[:, HALF_H])
    union = area_a + area_b - inter
    positive = union > 0
    return torch.where(positive, inter / torch.where(positive, union, torch.ones_like(union)), torch.zeros_like(union))


def near_pairs(table1: torch.Tensor, table2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j), i-major, of boxes whose BEV circumcircles may overlap (the numba
    path's reach test); all others have zero intersection."""
    rows = max(1, FILTER_CHUNK // max(1, table2.shape[0]))
    firsts, seconds = [], []
    for start in range(0, table1.shape[0], rows):
        a = table1[start : start + rows]
        dx = table2[None, :, X] - a[:, None, X]
        dy = table2[None, :, Y] - a[:, None, Y]
        reach = a[:, None, RADIUS] + table2[None, :, RADIUS]
        i, j = torch.nonzero(dx * dx + dy * dy <= reach * reach * REACH_SLACK, as_tuple=True)
        firsts.append(i + start)
        seconds.append(j)
    if not firsts:
        empty = torch.zeros(0, dtype=torch.int64, device=table1.device)
        return empty, empty
    return torch.cat(firsts), torch.cat(seconds)


def pair_iou_torch(table1: torch.Tensor, table2: torch.Tensor, first: torch.Tensor, second: torch.Tensor, mode: str) -> torch.Tensor:
    """(K,) IoU of table1[first[k]] with table2[second[k]], pairs from ``near_pairs``, in chunks."""
    out = table1.new_zeros(first.shape[0])
    for start in range(0, first.shape[0], PAIR_CHUNK):
        stop = start + PAIR_CHUNK
        out[start:stop] = _iou_torch(table1[first[start:stop]], table2[second[start:stop]], mode)
    return out


def _box_iou_torch(table1: torch.Tensor, table2: torch.Tensor, mode: str, aligned: bool) -> torch.Tensor:
    """IoU from two box tables with batched torch ops on their device; float64 (N, M) or (N,)."""
    if aligned:
        dx = table2[:, X] - table1[:, X]
        dy = table2[:, Y] - table1[:, Y]
        reach = table1[:, RADIUS] + table2[:, RADIUS]
        near = torch.nonzero(dx * dx + dy * dy <= reach * reach * REACH_SLACK).reshape(-1)
        out = table1.new_zeros(table1.shape[0])
        out[near] = pair_iou_torch(table1, table2, near, near, mode)
        return out
    out = table1.new_zeros((table1.shape[0], table2.shape[0]))
    first, second = near_pairs(table1, table2)
    out[first, second] = pair_iou_torch(table1, table2, first, second, mode)
    return out
