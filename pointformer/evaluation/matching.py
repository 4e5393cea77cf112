"""Greedy centre-distance matching of predictions to ground truth, vectorised.

The rule (the nuScenes devkit's ``accumulate``): predictions are taken in a fixed order (by
descending score); each takes the nearest ground-truth box of its group (same sample, same
class) that no earlier prediction took, ties going to the ground-truth box that comes first,
and it is a true positive when that distance is below the threshold. Nearest-untaken-then-test
equals nearest-untaken-among-those-below-the-threshold, so only pairs closer than the largest
threshold are ever looked at.

The sequential rule is solved in rounds over candidate pairs: in each round every prediction
whose candidates are wanted by no earlier pending prediction is settled at once (its choice
cannot change any more); the earliest pending prediction always qualifies, so the rounds end,
and in practice a handful of rounds settles millions of predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PAIR_CHUNK = 4_000_000  # candidate pairs built per block of predictions, to bound memory


@dataclass
class CandidatePairs:
    """Prediction / ground-truth pairs of one group closer than a distance, sorted by the
    prediction's rank, then distance, then ground-truth index: ``pred`` int64 (K,),
    ``gt`` int64 (K,), ``distance`` float64 (K,)."""

    pred: np.ndarray
    gt: np.ndarray
    distance: np.ndarray

    def closer_than(self, threshold: float) -> "CandidatePairs":
        keep = self.distance < threshold
        return CandidatePairs(self.pred[keep], self.gt[keep], self.distance[keep])


def center_distance(a_xy: np.ndarray, b_xy: np.ndarray) -> np.ndarray:
    """(K, 2) and (K, 2) -> (K,) Euclidean distance in the xy plane."""
    dx = a_xy[:, 0] - b_xy[:, 0]
    dy = a_xy[:, 1] - b_xy[:, 1]
    return np.sqrt(dx * dx + dy * dy)


def candidate_pairs(pred_group: np.ndarray, pred_xy: np.ndarray, pred_rank: np.ndarray,
                    gt_group: np.ndarray, gt_xy: np.ndarray, max_distance: float) -> CandidatePairs:
    """Every (prediction, ground truth) pair of the same group closer than ``max_distance``.

    ``pred_group`` / ``gt_group`` int64 (P,) / (G,): group ids (e.g. sample * classes + class);
    ``pred_xy`` / ``gt_xy`` (P, 2) / (G, 2); ``pred_rank`` int64 (P,): the order predictions
    are taken in (lower first, all distinct).
    """
    gt_order = np.argsort(gt_group, kind="stable")
    sorted_groups = gt_group[gt_order]
    start = np.searchsorted(sorted_groups, pred_group, side="left")
    counts = np.searchsorted(sorted_groups, pred_group, side="right") - start
    parts_pred, parts_gt, parts_distance = [], [], []
    for block in _blocks(counts, PAIR_CHUNK):
        block_counts = counts[block]
        total = int(block_counts.sum())
        if total == 0:
            continue
        pred = np.repeat(block, block_counts)
        first = np.cumsum(block_counts) - block_counts
        offset = np.arange(total) - np.repeat(first, block_counts)
        gt = gt_order[np.repeat(start[block], block_counts) + offset]
        distance = center_distance(pred_xy[pred], gt_xy[gt])
        keep = distance < max_distance
        parts_pred.append(pred[keep])
        parts_gt.append(gt[keep])
        parts_distance.append(distance[keep])
    if not parts_pred:
        return CandidatePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    pred, gt, distance = (np.concatenate(p) for p in (parts_pred, parts_gt, parts_distance))
    order = np.lexsort((gt, distance, pred_rank[pred]))
    return CandidatePairs(pred[order], gt[order], distance[order])


def _blocks(counts: np.ndarray, limit: int) -> list[np.ndarray]:
    """Consecutive index ranges of ``counts`` whose sums stay within ``limit`` (or one element each)."""
    cumulative = np.cumsum(counts)
    edges = [0]
    while edges[-1] < len(counts):
        before = int(cumulative[edges[-1] - 1]) if edges[-1] > 0 else 0
        end = int(np.searchsorted(cumulative, before + limit, side="right"))
        edges.append(max(end, edges[-1] + 1))
    return [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:])]


def greedy_match(pairs: CandidatePairs, pred_rank: np.ndarray, num_gt: int) -> np.ndarray:
    """(P,) int64: the ground-truth index each prediction takes, -1 for none (a false positive).

    ``pairs``: the candidates below the matching threshold (from :func:`candidate_pairs`, sorted
    by rank, distance, ground-truth index); ``pred_rank`` (P,) the order of the predictions.
    """
    num_pred = len(pred_rank)
    match = np.full(num_pred, -1, np.int64)
    pred, gt = pairs.pred, pairs.gt
    rank = pred_rank[pred]
    taken = np.zeros(num_gt, bool)
    settled = np.zeros(num_pred, bool)
    blocked = np.zeros(num_pred, bool)
    sentinel = np.iinfo(np.int64).max
    while len(pred):
        earliest = np.full(num_gt, sentinel, np.int64)
        np.minimum.at(earliest, gt, rank)
        blocked[:] = False
        blocked[pred[earliest[gt] != rank]] = True
        first = np.ones(len(pred), bool)
        first[1:] = pred[1:] != pred[:-1]
        choose = first & ~blocked[pred]
        match[pred[choose]] = gt[choose]
        taken[gt[choose]] = True
        settled[pred[choose]] = True
        keep = ~settled[pred] & ~taken[gt]
        pred, gt, rank = pred[keep], gt[keep], rank[keep]
    return match


def greedy_match_thresholds(pred_group: np.ndarray, pred_xy: np.ndarray, pred_rank: np.ndarray,
                            gt_group: np.ndarray, gt_xy: np.ndarray,
                            thresholds: Sequence[float]) -> dict[float, np.ndarray]:
    """:func:`greedy_match` at every threshold: threshold -> (P,) matched ground-truth index or -1."""
    if len(thresholds) == 0:
        return {}
    pairs = candidate_pairs(pred_group, pred_xy, pred_rank, gt_group, gt_xy, max(thresholds))
    return {float(th): greedy_match(pairs.closer_than(th), pred_rank, len(gt_group)) for th in thresholds}
