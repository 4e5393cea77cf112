"""Greedy non-maximum suppression of 3D boxes: rotated BEV IoU (``nms_rotated``) and centre
distance (``nms_circle``, CenterPoint's circle NMS).

Both share one pipeline: drop scores below ``score_threshold``, order by descending score with
ties broken by input index (a stable sort, the same on every device), keep the first
``pre_max_size``, then walk that order keeping each box not suppressed by an earlier kept one
(of the same label when ``labels`` are given), and stop at ``post_max_size`` kept boxes.
The CPU path walks the order in numba; the torch path lists the suppressing pairs in batched
ops and walks blocks of the order on the host, so it syncs once per block, not once per box.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from pointformer.ops.rotated_iou import (
    MAX_VERTICES,
    BoxesLike,
    X,
    Y,
    box_table,
    box_tensor,
    near_pairs,
    pair_iou_numba,
    pair_iou_torch,
)

BLOCK = 256  # boxes resolved per host round trip on the torch path
FILTER_CHUNK = 1 << 22  # pair distances tested at once on the torch path


# ---------------------------------------------------------------- public
def nms_rotated(
    boxes: BoxesLike,
    scores: torch.Tensor,
    iou_threshold: float,
    *,
    labels: torch.Tensor | None = None,
    score_threshold: float | None = None,
    pre_max_size: int | None = None,
    post_max_size: int | None = None,
) -> torch.Tensor:
    """Greedy NMS on rotated BEV IoU: a box is dropped when its IoU with a kept, higher-ranked
    box is ``> iou_threshold``.

    boxes (N, 7+) ``Boxes3D`` or tensor; scores (N,); labels (N,) integer for class-aware NMS
    (suppression only within a label). Scores ``>= score_threshold`` take part, the best
    ``pre_max_size`` of them (over all labels) are walked, at most ``post_max_size`` (over all
    labels) are kept. Returns int64
    indices into the input, by descending score (ties by index), on the input's device.
    """
    tensor = box_tensor(boxes)
    order, labels_sorted = _ranked(tensor, scores, labels, score_threshold, pre_max_size)
    table = box_table(tensor[order])
    limit = _limit(post_max_size, order.shape[0])
    if tensor.device.type == "cpu":
        keep = _nms_rotated_numba(table, labels_sorted, float(iou_threshold), limit)
    else:
        keep = _nms_rotated_torch(table, labels_sorted, float(iou_threshold), limit)
    return order[keep]


def nms_circle(
    boxes: BoxesLike,
    scores: torch.Tensor,
    distance_squared_threshold: float,
    *,
    labels: torch.Tensor | None = None,
    score_threshold: float | None = None,
    pre_max_size: int | None = None,
    post_max_size: int | None = None,
) -> torch.Tensor:
    """Greedy circle NMS (CenterPoint): a box is dropped when its squared xy centre distance
    to a kept, higher-ranked box is ``< distance_squared_threshold`` (m^2). (CenterPoint's own
    loop suppresses at ``<=``; the two differ only at exact equality.)

    Arguments and result as :func:`nms_rotated`.
    """
    tensor = box_tensor(boxes)
    order, labels_sorted = _ranked(tensor, scores, labels, score_threshold, pre_max_size)
    centres = tensor[order][:, :2].detach().to(torch.float64).contiguous()
    limit = _limit(post_max_size, order.shape[0])
    if tensor.device.type == "cpu":
        keep = _nms_circle_numba(centres, labels_sorted, float(distance_squared_threshold), limit)
    else:
        keep = _nms_circle_torch(centres, labels_sorted, float(distance_squared_threshold), limit)
    return order[keep]


# ------------------------------------------------------------ ranking
def _ranked(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    score_threshold: float | None,
    pre_max_size: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (K,) of the boxes taking part, best first (ties by index), and their labels (K,)
    int64 (all zero without ``labels``)."""
    count = boxes.shape[0]
    scores = torch.as_tensor(scores)
    if scores.shape != (count,) or not scores.is_floating_point():
        raise ValueError(f"nms: scores must be a floating ({count},) tensor, got {scores.dtype} {tuple(scores.shape)}")
    if scores.device != boxes.device:
        raise ValueError(f"nms: scores on {scores.device}, boxes on {boxes.device}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("nms: scores must be finite")
    if labels is None:
        labels = torch.zeros(count, dtype=torch.int64, device=boxes.device)
    labels = torch.as_tensor(labels)
    if labels.shape != (count,) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"nms: labels must be an integer ({count},) tensor, got {labels.dtype} {tuple(labels.shape)}")
    if labels.device != boxes.device:
        raise ValueError(f"nms: labels on {labels.device}, boxes on {boxes.device}")
    if pre_max_size is not None and pre_max_size < 0:
        raise ValueError(f"nms: pre_max_size must be >= 0, got {pre_max_size}")
    candidates = torch.arange(count, device=boxes.device)
    if score_threshold is not None:
        candidates = candidates[scores >= score_threshold]
    ranking = torch.sort(scores[candidates], descending=True, stable=True).indices
    order = candidates[ranking][:pre_max_size]
    return order, labels[order].to(torch.int64).contiguous()


def _limit(post_max_size: int | None, count: int) -> int:
    if post_max_size is not None and post_max_size < 0:
        raise ValueError(f"nms: post_max_size must be >= 0, got {post_max_size}")
    return count if post_max_size is None else min(post_max_size, count)


# ------------------------------------------------------------ numba path
@numba.njit(cache=True)
def _greedy_iou_kernel(table, labels, threshold, limit, keep):
    removed = np.zeros(table.shape[0], np.bool_)
    scratch = np.empty((4, MAX_VERTICES))
    kept = 0
    for i in range(table.shape[0]):
        if kept == limit:
            return
        if removed[i]:
            continue
        keep[i] = True
        kept += 1
        for j in range(i + 1, table.shape[0]):
            if removed[j] or labels[j] != labels[i]:
                continue
            if pair_iou_numba(table, i, table, j, False, scratch) > threshold:
                removed[j] = True


@numba.njit(cache=True)
def _greedy_circle_kernel(centres, labels, threshold, limit, keep):
    removed = np.zeros(centres.shape[0], np.bool_)
    kept = 0
    for i in range(centres.shape[0]):
        if kept == limit:
            return
        if removed[i]:
            continue
        keep[i] = True
        kept += 1
        for j in range(i + 1, centres.shape[0]):
            if removed[j] or labels[j] != labels[i]:
                continue
            dx = centres[j, 0] - centres[i, 0]
            dy = centres[j, 1] - centres[i, 1]
            if dx * dx + dy * dy < threshold:
                removed[j] = True


def _nms_rotated_numba(table: torch.Tensor, labels: torch.Tensor, threshold: float, limit: int) -> torch.Tensor:
    """(K,) bool keep mask over ranked box-table rows."""
    keep = np.zeros(table.shape[0], np.bool_)
    if limit:
        _greedy_iou_kernel(table.numpy(), labels.numpy(), threshold, limit, keep)
    return torch.from_numpy(keep)


def _nms_circle_numba(centres: torch.Tensor, labels: torch.Tensor, threshold: float, limit: int) -> torch.Tensor:
    """(K,) bool keep mask over ranked (K, 2) float64 centres."""
    keep = np.zeros(centres.shape[0], np.bool_)
    if limit:
        _greedy_circle_kernel(centres.numpy(), labels.numpy(), threshold, limit, keep)
    return torch.from_numpy(keep)


# ------------------------------------------------------------ torch path
def _nms_rotated_torch(table: torch.Tensor, labels: torch.Tensor, threshold: float, limit: int) -> torch.Tensor:
    """(K,) bool keep mask: suppressing pairs from batched IoU, then the blocked greedy walk."""
    first, second = near_pairs(table, table)
    later = (first < second) & (labels[first] == labels[second])
    first, second = first[later], second[later]
    overlapping = pair_iou_torch(table, table, first, second, "bev") > threshold
    return greedy_walk(table.shape[0], first[overlapping], second[overlapping], limit)


def _nms_circle_torch(centres: torch.Tensor, labels: torch.Tensor, threshold: float, limit: int) -> torch.Tensor:
    """(K,) bool keep mask: close pairs from batched distances, then the blocked greedy walk."""
    count = centres.shape[0]
    rows = max(1, FILTER_CHUNK // max(1, count))
    firsts, seconds = [centres.new_zeros(0, dtype=torch.int64)], [centres.new_zeros(0, dtype=torch.int64)]
    for start in range(0, count, rows):
        block = centres[start : start + rows]
        dx = centres[None, :, X] - block[:, None, X]
        dy = centres[None, :, Y] - block[:, None, Y]
        i, j = torch.nonzero(dx * dx + dy * dy < threshold, as_tuple=True)
        i = i + start
        later = (i < j) & (labels[i] == labels[j])
        firsts.append(i[later])
        seconds.append(j[later])
    return greedy_walk(count, torch.cat(firsts), torch.cat(seconds), limit)


def greedy_walk(count: int, first: torch.Tensor, second: torch.Tensor, limit: int) -> torch.Tensor:
    """(count,) bool: which ranks the greedy walk keeps, where rank ``first[e]`` suppresses rank
    ``second[e] > first[e]`` if kept, stopping after ``limit`` kept.

    Blocks of ``BLOCK`` ranks are resolved in order on the host (only the pairs inside the
    block travel); each block's kept ranks then suppress all later ranks in one batched step.
    """
    device = first.device
    keep = torch.zeros(count, dtype=torch.bool, device=device)
    removed = torch.zeros(count, dtype=torch.bool, device=device)
    by_first = torch.sort(first, stable=True).indices
    first, second = first[by_first], second[by_first]
    starts = torch.arange(0, count + BLOCK, BLOCK, device=device).clamp(max=count)
    bounds = torch.searchsorted(first, starts).tolist()
    kept = 0
    for block, start in enumerate(range(0, count, BLOCK)):
        if kept == limit:
            break
        stop = min(start + BLOCK, count)
        lo, hi = bounds[block], bounds[block + 1]
        block_first, block_second = first[lo:hi], second[lo:hi]
        inside = block_second < stop
        suppressed = removed[start:stop].tolist()
        targets: list[list[int]] = [[] for _ in range(stop - start)]
        for i, j in zip(block_first[inside].tolist(), block_second[inside].tolist()):
            targets[i - start].append(j - start)
        block_keep = [False] * (stop - start)
        for rank in range(stop - start):
            if kept == limit:
                break
            if suppressed[rank]:
                continue
            block_keep[rank] = True
            kept += 1
            for target in targets[rank]:
                suppressed[target] = True
        keep[start:stop] = torch.tensor(block_keep, dtype=torch.bool, device=device)
        outward = ~inside & keep[block_first]
        removed[block_second[outward]] = True
    return keep
