"""Rotated-box IoU of many small independent blocks (each frame's predictions against its ground
truth) in a few :func:`pointformer.ops.box_iou` calls.

Evaluations need one small IoU matrix per frame and class; calling ``box_iou`` for each costs a
kernel launch per block, which dominates on small blocks. Here the pairs of every block whose
bird's-eye-view circumcircles meet (the others cannot overlap: IoU 0) go through one aligned
``box_iou`` call per chunk, and the values are scattered back into the blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pointformer.ops import box_iou

PAIR_CHUNK = 1 << 20  # pairs per box_iou call, to bound memory
_REACH_SLACK = 1.0 + 1e-9


def near_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) of the boxes of ``first`` (N, 7+) and ``second`` (M, 7+) whose BEV centres are
    within the sum of their BEV circumradii (a pair farther apart cannot overlap)."""
    radius_1 = 0.5 * np.hypot(first[:, 3], first[:, 4])
    radius_2 = 0.5 * np.hypot(second[:, 3], second[:, 4])
    dx = first[:, None, 0] - second[None, :, 0]
    dy = first[:, None, 1] - second[None, :, 1]
    reach = (radius_1[:, None] + radius_2[None, :]) * _REACH_SLACK
    return np.nonzero(dx * dx + dy * dy <= reach * reach)


def block_box_iou(firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray], mode: str = "3d") -> list[np.ndarray]:
    """IoU matrices of independent blocks: ``firsts[k]`` (N_k, 7+) against ``seconds[k]``
    (M_k, 7+), float64 boxes x, y, z, l, w, h, yaw -> [(N_k, M_k) float64]; ``mode`` as in
    :func:`box_iou` (``bev`` or ``3d``). Same values as ``box_iou`` per block."""
    if len(firsts) != len(seconds):
        raise ValueError(f"block_box_iou: {len(firsts)} first blocks but {len(seconds)} second blocks")
    for name, group in (("firsts", firsts), ("seconds", seconds)):
        for k, boxes in enumerate(group):
            if boxes.ndim != 2 or (len(boxes) and boxes.shape[1] < 7):
                raise ValueError(f"block_box_iou: {name}[{k}] must be (N, 7+) boxes, got shape {boxes.shape}")
            if not np.isfinite(boxes[:, :7]).all() or (boxes[:, 3:6] < 0).any():
                raise ValueError(f"block_box_iou: {name}[{k}] needs finite boxes with sizes >= 0")
    out = [np.zeros((len(a), len(b))) for a, b in zip(firsts, seconds)]
    rows_1, rows_2, blocks, cells_i, cells_j = [], [], [], [], []
    for k, (first, second) in enumerate(zip(firsts, seconds)):
        if len(first) == 0 or len(second) == 0:
            continue
        i, j = near_pairs(first, second)
        rows_1.append(first[i, :7])
        rows_2.append(second[j, :7])
        blocks.append(np.full(len(i), k, np.int64))
        cells_i.append(i)
        cells_j.append(j)
    if not blocks:
        return out
    boxes_1 = np.ascontiguousarray(np.concatenate(rows_1), np.float64)
    boxes_2 = np.ascontiguousarray(np.concatenate(rows_2), np.float64)
    block, cell_i, cell_j = np.concatenate(blocks), np.concatenate(cells_i), np.concatenate(cells_j)
    values = np.zeros(len(block))
    for start in range(0, len(block), PAIR_CHUNK):
        stop = start + PAIR_CHUNK
        values[start:stop] = box_iou(torch.from_numpy(boxes_1[start:stop]), torch.from_numpy(boxes_2[start:stop]),
                                     mode=mode, aligned=True).numpy()
    bounds = np.searchsorted(block, np.arange(len(out) + 1))
    for k in np.unique(block):
        lo, hi = bounds[k], bounds[k + 1]
        out[k][cell_i[lo:hi], cell_j[lo:hi]] = values[lo:hi]
    return out
