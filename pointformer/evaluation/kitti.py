"""KITTI 3D object detection AP: 2D (image) box, bird's-eye-view and 3D, with R40 and R11
interpolation, per class and difficulty, from KITTI-format label files; AOS with the 2D boxes.

The rules are the official devkit's (``evaluate_object_3d_offline.cpp``; its Python port in
OpenPCDet / mmdetection3d ``kitti_object_eval_python/eval.py`` computes the same numbers):

- Classes Car, Pedestrian, Cyclist with minimum overlaps 0.7 / 0.5 / 0.5 for every metric; an
  overlap must be strictly greater than it.
- Difficulty easy / moderate / hard: a ground truth of the class counts when its 2D box is at
  least 40 / 25 / 25 px high, its occlusion at most 0 / 1 / 2 and its truncation at most
  0.15 / 0.3 / 0.5; otherwise it is ignored (a detection on it is neither TP nor FP), as are
  the neighbouring classes (Van for Car, Person_sitting for Pedestrian). Detections lower than
  the minimum height are ignored too (they may still be assigned to a ground truth).
- DontCare regions: an unassigned detection whose 2D box lies inside one (intersection over
  the detection's own area above the minimum overlap) is not a false positive; this applies to
  the 2D metric only (BEV / 3D overlaps with DontCare's placeholder boxes are 0 in the devkit).
- Per frame, every ground truth in file order takes the unassigned detection of largest
  overlap (first pass: of largest score) above the minimum. Score thresholds: the TP scores,
  sampled by ``get_thresholds`` to approximate 41 recall steps; at each threshold precision =
  TP / (TP + FP) (summed over frames), made monotone from the right; precision at thresholds
  beyond those found is 0. AP R40 = mean of precision[1:41], AP R11 = mean of
  precision[0:41:4] (the devkit's 11 points are every fourth of the same 41), in percent.
  With fewer than ~80 valid ground-truth boxes fewer than 41 thresholds exist, so even a
  perfect detector scores below 100 (e.g. R40 = (n - 1) / 40 for n <= 40 boxes): that is the
  benchmark's definition.
- Overlaps: 2D IoU of image boxes (no +1 pixel); BEV and 3D IoU of the upright boxes in the
  rectified camera frame (ground plane x-z, height along -y), computed exactly by
  :func:`pointformer.ops.box_iou` (batched by :mod:`.block_iou`) after relabelling the axes (x, z, -y) -- a rotation, so IoU
  is unchanged and no calibration is needed.

One choice where the two reference implementations differ: a ground truth exactly at the
minimum height counts (the C++ devkit's ``height < MIN_HEIGHT`` ignore rule; the Python port
ignores it with ``<=``). Results layout: one ``<frame id>.txt`` label_2 file per frame with
a 16th score column, in a folder (or its ``data/`` subfolder, as the devkit expects).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from pointformer.data.readers.kitti import DONT_CARE, KittiObject, read_kitti_labels
from pointformer.evaluation.block_iou import block_box_iou

KITTI_EVAL_CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
MIN_OVERLAPS: dict[str, float] = {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
NEIGHBOUR_CLASSES: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}
DIFFICULTIES: tuple[str, ...] = ("easy", "moderate", "hard")
MIN_HEIGHT: tuple[float, ...] = (40.0, 25.0, 25.0)
MAX_OCCLUSION: tuple[int, ...] = (0, 1, 2)
MAX_TRUNCATION: tuple[float, ...] = (0.15, 0.3, 0.5)
METRICS: tuple[str, ...] = ("bbox", "bev", "3d")
NUM_SAMPLE_POINTS = 41
INVALID_ALPHA = -10.0


# ------------------------------------------------------------------ labels
@dataclass
class KittiLabels:
    """The label_2 columns of one frame: ``names`` (N,), ``truncated`` (N,), ``occluded`` (N,)
    int, ``alpha`` (N,), ``bbox`` (N, 4) x1 y1 x2 y2 px, ``dimensions_hwl`` (N, 3) m,
    ``location`` (N, 3) bottom centre in the rectified camera frame, ``rotation_y`` (N,),
    ``score`` (N,) or None (ground truth)."""

    names: list[str]
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    bbox: np.ndarray
    dimensions_hwl: np.ndarray
    location: np.ndarray
    rotation_y: np.ndarray
    score: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    @staticmethod
    def from_objects(objects: Sequence[KittiObject]) -> KittiLabels:
        scores = [o.score for o in objects]
        return KittiLabels(
            names=[o.type for o in objects],
            truncated=np.array([o.truncated for o in objects], np.float64),
            occluded=np.array([o.occluded for o in objects], np.int64),
            alpha=np.array([o.alpha for o in objects], np.float64),
            bbox=np.array([o.bbox for o in objects], np.float64).reshape(-1, 4),
            dimensions_hwl=np.array([o.dimensions_hwl for o in objects], np.float64).reshape(-1, 3),
            location=np.array([o.location for o in objects], np.float64).reshape(-1, 3),
            rotation_y=np.array([o.rotation_y for o in objects], np.float64),
            score=np.array(scores, np.float64) if all(s is not None for s in scores) else None,
        )

    @staticmethod
    def concat(frames: Sequence[KittiLabels]) -> KittiLabels:
        """All objects of ``frames`` in one record (scores kept when every frame has them)."""
        columns = ("truncated", "occluded", "alpha", "bbox", "dimensions_hwl", "location", "rotation_y")
        empty = KittiLabels.from_objects([])
        merged = {c: np.concatenate([getattr(f, c) for f in (empty, *frames)]) for c in columns}
        scores = None if any(f.score is None for f in frames) else np.concatenate([f.score for f in (empty, *frames)])
        return KittiLabels([n for f in frames for n in f.names], score=scores, **merged)

    def camera_boxes(self) -> np.ndarray:
        """(N, 7) boxes for :func:`box_iou` in the camera frame with axes relabelled
        (x, z, -y): centre (x, z, h/2 - y), sizes (l, w, h), yaw -rotation_y."""
        h, w, l = self.dimensions_hwl[:, 0], self.dimensions_hwl[:, 1], self.dimensions_hwl[:, 2]
        x, y, z = self.location[:, 0], self.location[:, 1], self.location[:, 2]
        return np.stack([x, z, h / 2 - y, l, w, h, -self.rotation_y], axis=1)


def read_label_file(path: str | os.PathLike, *, with_scores: bool) -> KittiLabels:
    """One label_2 file; ``with_scores``: every line must have the 16th (score) column."""
    objects = read_kitti_labels(path)
    if with_scores and any(o.score is None for o in objects):
        raise ValueError(f"{path}: result lines need a 16th column (score)")
    return KittiLabels.from_objects(objects)


# ---------------------------------------------------------------- overlaps
def image_overlaps(boxes: np.ndarray, query: np.ndarray, criterion: int = -1) -> np.ndarray:
    """(N, M) overlap of 2D boxes x1 y1 x2 y2: criterion -1 IoU, 0 intersection over the area of
    ``boxes``, 1 over the area of ``query`` (the devkit's ``imageBoxOverlap``, no +1 pixel)."""
    boxes, query = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(query, np.float64).reshape(-1, 4)
    iw = np.minimum(boxes[:, None, 2], query[None, :, 2]) - np.maximum(boxes[:, None, 0], query[None, :, 0])
    ih = np.minimum(boxes[:, None, 3], query[None, :, 3]) - np.maximum(boxes[:, None, 1], query[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_boxes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None]
    area_query = ((query[:, 2] - query[:, 0]) * (query[:, 3] - query[:, 1]))[None, :]
    if criterion == -1:
        denominator = area_boxes + area_query - inter
    elif criterion == 0:
        denominator = np.broadcast_to(area_boxes, inter.shape)
    elif criterion == 1:
        denominator = np.broadcast_to(area_query, inter.shape)
    else:
        raise ValueError(f"criterion must be -1, 0 or 1, got {criterion}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / denominator, 0.0)


def frame_overlaps(detections: Sequence[KittiLabels], ground_truth: Sequence[KittiLabels], metric: str
                   ) -> list[np.ndarray]:
    """(D, G) overlaps of each frame's detections with its ground truth for ``metric`` (bbox,
    bev, 3d); DontCare entries (placeholder geometry) overlap nothing in BEV / 3D."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric == "bbox":
        return [image_overlaps(d.bbox, g.bbox) for d, g in zip(detections, ground_truth)]
    det_rows = [np.array([n != DONT_CARE for n in d.names], bool).reshape(-1) for d in detections]
    gt_cols = [np.array([n != DONT_CARE for n in g.names], bool).reshape(-1) for g in ground_truth]
    blocks = block_box_iou([d.camera_boxes()[rows] for d, rows in zip(detections, det_rows)],
                           [g.camera_boxes()[cols] for g, cols in zip(ground_truth, gt_cols)], mode=metric)
    out = []
    for d, g, rows, cols, block in zip(detections, ground_truth, det_rows, gt_cols, blocks):
        frame = np.zeros((len(d), len(g)))
        frame[np.ix_(rows, cols)] = block
        out.append(frame)
    return out


# ------------------------------------------------------------ data cleaning
def ignore_flags(ground_truth: KittiLabels, detections: KittiLabels, class_name: str, difficulty: int
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """The devkit's ``cleanData``: (G,) ground-truth flags, (D,) detection flags and the number
    of valid ground truths. Flags: 0 evaluated, 1 ignored (may absorb a detection), -1 other."""
    current = class_name.lower()
    gt_names = np.array([n.lower() for n in ground_truth.names], dtype=object)
    height = ground_truth.bbox[:, 3] - ground_truth.bbox[:, 1]
    same = gt_names == current
    neighbour = gt_names == NEIGHBOUR_CLASSES.get(current, "\0")
    ignored = ((ground_truth.occluded > MAX_OCCLUSION[difficulty])
               | (ground_truth.truncated > MAX_TRUNCATION[difficulty])
               | (height < MIN_HEIGHT[difficulty]))
    gt_flags = np.where(same & ~ignored, 0, np.where(neighbour | (same & ignored), 1, -1)).astype(np.int64)

    det_names = np.array([n.lower() for n in detections.names], dtype=object)
    det_height = np.abs(detections.bbox[:, 3] - detections.bbox[:, 1])
    det_flags = np.where(det_height < MIN_HEIGHT[difficulty], 1, np.where(det_names == current, 0, -1)).astype(np.int64)
    return gt_flags, det_flags, int((gt_flags == 0).sum())


def kitti_thresholds(scores: np.ndarray, num_gt: int, num_sample_points: int = NUM_SAMPLE_POINTS) -> np.ndarray:
    """The devkit's ``getThresholds``: TP scores (descending) kept where the recall they reach
    is the nearest to the next of ``num_sample_points`` evenly spaced recall steps."""
    scores = np.sort(np.asarray(scores, np.float64))[::-1]
    thresholds = []
    current_recall = 0.0
    for i, score in enumerate(scores):
        left = (i + 1) / num_gt
        right = (i + 2) / num_gt if i < len(scores) - 1 else left
        if right - current_recall < current_recall - left and i < len(scores) - 1:
            continue
        thresholds.append(score)
        current_recall += 1.0 / (num_sample_points - 1.0)
    return np.asarray(thresholds, np.float64)


# ------------------------------------------------------------- statistics
_NO_DETECTION = -10000000.0


@numba.njit(cache=True)
def _frame_statistics(overlaps, det_scores, det_alpha, gt_alpha, gt_flags, det_flags, dc_overlaps, min_overlap,
                      threshold, compute_fp, compute_aos, tp_scores):
    """The devkit's ``computeStatistics`` for one frame. overlaps (D, G); dc_overlaps (D, C)
    detection-in-DontCare overlaps (C = 0 outside the 2D metric). Writes the TP scores into
    ``tp_scores`` and returns (tp, fp, fn, orientation similarity sum of the TPs, number of TP
    scores)."""
    num_det, num_gt = overlaps.shape
    assigned = np.zeros(num_det, np.bool_)
    below = np.zeros(num_det, np.bool_)
    if compute_fp:
        for j in range(num_det):
            below[j] = det_scores[j] < threshold
    tp = 0
    fp = 0
    fn = 0
    similarity_sum = 0.0
    for i in range(num_gt):
        if gt_flags[i] == -1:
            continue
        det_index = -1
        valid_detection = _NO_DETECTION
        max_overlap = 0.0
        assigned_ignored = False
        for j in range(num_det):
            if det_flags[j] == -1 or assigned[j] or below[j]:
                continue
            overlap = overlaps[j, i]
            if not compute_fp and overlap > min_overlap and det_scores[j] > valid_detection:
                det_index = j
                valid_detection = det_scores[j]
            elif (compute_fp and overlap > min_overlap and (overlap > max_overlap or assigned_ignored)
                  and det_flags[j] == 0):
                max_overlap = overlap
                det_index = j
                valid_detection = 1.0
                assigned_ignored = False
            elif compute_fp and overlap > min_overlap and valid_detection == _NO_DETECTION and det_flags[j] == 1:
                det_index = j
                valid_detection = 1.0
                assigned_ignored = True
        if valid_detection == _NO_DETECTION and gt_flags[i] == 0:
            fn += 1
        elif valid_detection != _NO_DETECTION and (gt_flags[i] == 1 or det_flags[det_index] == 1):
            assigned[det_index] = True
        elif valid_detection != _NO_DETECTION:
            tp_scores[tp] = det_scores[det_index]
            tp += 1
            if compute_aos:
                similarity_sum += (1.0 + np.cos(gt_alpha[i] - det_alpha[det_index])) / 2.0
            assigned[det_index] = True
    if compute_fp:
        for j in range(num_det):
            if not (assigned[j] or det_flags[j] == -1 or det_flags[j] == 1 or below[j]):
                fp += 1
        in_dontcare = 0
        for c in range(dc_overlaps.shape[1]):
            for j in range(num_det):
                if assigned[j] or det_flags[j] == -1 or det_flags[j] == 1 or below[j]:
                    continue
                if dc_overlaps[j, c] > min_overlap:
                    assigned[j] = True
                    in_dontcare += 1
        fp -= in_dontcare
    return tp, fp, fn, similarity_sum, tp


@numba.njit(cache=True)
def _collect_tp_scores(overlaps, overlap_start, det_start, gt_start, dc_overlaps, dc_start, num_dc, det_scores,
                       det_alpha, gt_alpha, gt_flags, det_flags, min_overlap):
    """First pass over frames: the scores of the detections that become TPs (no threshold)."""
    out = np.empty(gt_flags.shape[0])
    count = 0
    for f in range(det_start.shape[0] - 1):
        d0, d1, g0, g1 = det_start[f], det_start[f + 1], gt_start[f], gt_start[f + 1]
        frame = overlaps[overlap_start[f]:overlap_start[f] + (d1 - d0) * (g1 - g0)].reshape(d1 - d0, g1 - g0)
        dc = dc_overlaps[dc_start[f]:dc_start[f] + (d1 - d0) * num_dc[f]].reshape(d1 - d0, num_dc[f])
        _, _, _, _, found = _frame_statistics(frame, det_scores[d0:d1], det_alpha[d0:d1], gt_alpha[g0:g1],
                                              gt_flags[g0:g1], det_flags[d0:d1], dc, min_overlap, 0.0, False,
                                              False, out[count:])
        count += found
    return out[:count]


@numba.njit(cache=True)
def _threshold_counts(overlaps, overlap_start, det_start, gt_start, dc_overlaps, dc_start, num_dc, det_scores,
                      det_alpha, gt_alpha, gt_flags, det_flags, min_overlap, thresholds, compute_aos):
    """Second pass: (T, 4) summed TP, FP, FN and orientation similarity at each threshold."""
    counts = np.zeros((thresholds.shape[0], 4))
    scratch = np.empty(gt_flags.shape[0] + 1)
    for f in range(det_start.shape[0] - 1):
        d0, d1, g0, g1 = det_start[f], det_start[f + 1], gt_start[f], gt_start[f + 1]
        frame = overlaps[overlap_start[f]:overlap_start[f] + (d1 - d0) * (g1 - g0)].reshape(d1 - d0, g1 - g0)
        dc = dc_overlaps[dc_start[f]:dc_start[f] + (d1 - d0) * num_dc[f]].reshape(d1 - d0, num_dc[f])
        for t in range(thresholds.shape[0]):
            tp, fp, fn, similarity, _ = _frame_statistics(
                frame, det_scores[d0:d1], det_alpha[d0:d1], gt_alpha[g0:g1], gt_flags[g0:g1], det_flags[d0:d1], dc,
                min_overlap, thresholds[t], True, compute_aos, scratch)
            counts[t, 0] += tp
            counts[t, 1] += fp
            counts[t, 2] += fn
            counts[t, 3] += similarity
    return counts


# ---------------------------------------------------------------- results
@dataclass
class KittiAP:
    """AP of one class, metric (bbox, bev, 3d, aos) and difficulty, in percent, with the 41
    precision / recall samples behind it."""

    class_name: str
    metric: str
    difficulty: str
    ap_r40: float
    ap_r11: float
    num_gt: int
    precision: np.ndarray
    recall: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"R40": self.ap_r40, "R11": self.ap_r11, "num_gt": self.num_gt}


@dataclass
class KittiMetrics:
    """Every (class, metric, difficulty) AP of a KITTI evaluation; ``aos`` metric entries exist
    when every detection has a valid alpha."""

    classes: tuple[str, ...]
    results: list[KittiAP]
    num_frames: int

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m in (*METRICS, "aos") if any(r.metric == m for r in self.results))

    def get(self, class_name: str, metric: str, difficulty: str) -> KittiAP:
        for item in self.results:
            if (item.class_name, item.metric, item.difficulty) == (class_name, metric, difficulty):
                return item
        raise KeyError(f"no KITTI AP for class {class_name!r}, metric {metric!r}, difficulty {difficulty!r}")

    def mean_ap(self, metric: str, difficulty: str = "moderate", interpolation: str = "R40") -> float:
        """Mean over the classes of the AP (percent)."""
        if interpolation not in ("R40", "R11"):
            raise ValueError(f"interpolation must be 'R40' or 'R11', got {interpolation!r}")
        values = [self.get(c, metric, difficulty) for c in self.classes]
        return float(np.mean([v.ap_r40 if interpolation == "R40" else v.ap_r11 for v in values]))

    def to_json(self) -> dict[str, Any]:
        per_class = {c: {m: {d: self.get(c, m, d).to_json() for d in DIFFICULTIES} for m in self.metrics}
                     for c in self.classes}
        summary = {f"mAP_{m}_{d}_{i}": self.mean_ap(m, d, i) for m in self.metrics for d in DIFFICULTIES
                   for i in ("R40", "R11")}
        return {**summary, "per_class": per_class, "num_frames": self.num_frames}

    def table(self):
        """A ``rich.table.Table``: AP R40 (R11) in percent per class, metric and difficulty."""
        from rich.table import Table

        table = Table(title=f"KITTI detection ({self.num_frames} frames), AP R40 (R11) %")
        for column in ("Class", "Metric", *DIFFICULTIES):
            table.add_column(column, justify="left" if column in ("Class", "Metric") else "right")
        for class_name in self.classes:
            for metric in self.metrics:
                cells = [self.get(class_name, metric, d) for d in DIFFICULTIES]
                table.add_row(class_name, metric, *(f"{c.ap_r40:.2f} ({c.ap_r11:.2f})" for c in cells))
        for metric in self.metrics:
            table.add_row("mean", metric, *(f"{self.mean_ap(metric, d):.2f} ({self.mean_ap(metric, d, 'R11'):.2f})"
                                            for d in DIFFICULTIES))
        return table


# -------------------------------------------------------------- evaluation
class _Frames:
    """Frames flattened for the kernels: per-frame offsets of detections, ground truth, their
    overlap blocks and the detection-in-DontCare blocks."""

    def __init__(self, ground_truth: Sequence[KittiLabels], detections: Sequence[KittiLabels]):
        self.ground_truth, self.detections = list(ground_truth), list(detections)
        self.all_ground_truth, self.all_detections = KittiLabels.concat(ground_truth), KittiLabels.concat(detections)
        self.det_start = np.concatenate([[0], np.cumsum([len(d) for d in detections])]).astype(np.int64)
        self.gt_start = np.concatenate([[0], np.cumsum([len(g) for g in ground_truth])]).astype(np.int64)
        blocks = [len(d) * len(g) for d, g in zip(detections, ground_truth)]
        self.overlap_start = np.concatenate([[0], np.cumsum(blocks)]).astype(np.int64)
        self.det_scores = np.concatenate([d.score for d in detections] + [np.zeros(0)]).astype(np.float64)
        self.det_alpha = np.concatenate([d.alpha for d in detections] + [np.zeros(0)]).astype(np.float64)
        self.gt_alpha = np.concatenate([g.alpha for g in ground_truth] + [np.zeros(0)]).astype(np.float64)
        dontcare = [g.bbox[[n == DONT_CARE for n in g.names]] for g in ground_truth]
        self.num_dc = np.array([len(b) for b in dontcare], np.int64)
        dc_blocks = [image_overlaps(d.bbox, b, criterion=0).reshape(-1) for d, b in zip(detections, dontcare)]
        self.dc_overlaps = np.concatenate(dc_blocks + [np.zeros(0)])
        self.dc_start = np.concatenate([[0], np.cumsum([len(b) for b in dc_blocks])]).astype(np.int64)
        self.no_dc_start = np.zeros(len(detections) + 1, np.int64)
        self.no_dc = np.zeros(len(detections), np.int64)

    def overlaps(self, metric: str) -> np.ndarray:
        blocks = frame_overlaps(self.detections, self.ground_truth, metric)
        return np.concatenate([b.reshape(-1) for b in blocks] + [np.zeros(0)])

    def flags(self, class_name: str, difficulty: int) -> tuple[np.ndarray, np.ndarray, int]:
        """:func:`ignore_flags` of every frame at once (each object's flag depends on it alone)."""
        return ignore_flags(self.all_ground_truth, self.all_detections, class_name, difficulty)

    def kernel_inputs(self, overlaps: np.ndarray, with_dontcare: bool) -> tuple:
        dc = (self.dc_overlaps, self.dc_start, self.num_dc) if with_dontcare else (
            np.zeros(0), self.no_dc_start, self.no_dc)
        return (overlaps, self.overlap_start, self.det_start, self.gt_start, *dc, self.det_scores, self.det_alpha,
                self.gt_alpha)


def _class_metric_ap(frames: _Frames, inputs: tuple, class_name: str, metric: str, difficulty: int,
                     min_overlap: float, compute_aos: bool) -> list[KittiAP]:
    gt_flags, det_flags, num_valid = frames.flags(class_name, difficulty)
    scores = _collect_tp_scores(*inputs, gt_flags, det_flags, min_overlap)
    thresholds = kitti_thresholds(scores, num_valid) if num_valid > 0 else np.zeros(0)
    counts = _threshold_counts(*inputs, gt_flags, det_flags, min_overlap, thresholds, compute_aos)
    curves = {"precision": np.zeros(NUM_SAMPLE_POINTS), "recall": np.zeros(NUM_SAMPLE_POINTS),
              "aos": np.zeros(NUM_SAMPLE_POINTS)}
    n = len(thresholds)
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    detected = np.maximum(tp + fp, 1.0)  # 0 only if a threshold's TP went to an ignored box: precision 0
    curves["recall"][:n] = tp / (tp + fn)
    curves["precision"][:n] = tp / detected
    curves["aos"][:n] = counts[:, 3] / detected
    for curve in curves.values():
        curve[:n] = np.maximum.accumulate(curve[::-1])[::-1][:n]
    name = DIFFICULTIES[difficulty]
    out = [KittiAP(class_name, metric, name, *_interpolated(curves["precision"]), num_valid, curves["precision"],
                   curves["recall"])]
    if compute_aos:
        out.append(KittiAP(class_name, "aos", name, *_interpolated(curves["aos"]), num_valid, curves["aos"],
                           curves["recall"]))
    return out


def _interpolated(curve: np.ndarray) -> tuple[float, float]:
    """(AP R40, AP R11) in percent of a 41-sample precision (or AOS) curve."""
    return float(curve[1:].sum() / 40 * 100), float(curve[::4].sum() / 11 * 100)


def evaluate_kitti(
    ground_truth: Sequence[KittiLabels],
    detections: Sequence[KittiLabels],
    classes: Sequence[str] = KITTI_EVAL_CLASSES,
    min_overlaps: dict[str, float] | None = None,
) -> KittiMetrics:
    """KITTI AP of ``detections`` against ``ground_truth`` (one entry per frame, same order)."""
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth frames but {len(detections)} detection frames")
    overlaps_by_class = dict(MIN_OVERLAPS if min_overlaps is None else min_overlaps)
    missing = [c for c in classes if c not in overlaps_by_class]
    if missing:
        raise ValueError(f"min_overlaps: no minimum overlap for classes {missing}")
    for index, frame in enumerate(detections):
        if frame.score is None or not np.isfinite(frame.score).all():
            raise ValueError(f"detections[{index}]: every detection needs a finite score")
    frames = _Frames(ground_truth, detections)
    compute_aos = not (frames.det_alpha == INVALID_ALPHA).any()
    results: list[KittiAP] = []
    for metric in METRICS:
        inputs = frames.kernel_inputs(frames.overlaps(metric), with_dontcare=metric == "bbox")
        for class_name in classes:
            for difficulty in range(len(DIFFICULTIES)):
                results += _class_metric_ap(frames, inputs, class_name, metric, difficulty,
                                            overlaps_by_class[class_name], compute_aos and metric == "bbox")
    return KittiMetrics(tuple(classes), results, len(ground_truth))


# ------------------------------------------------------------- entry points
def split_frame_ids(data_root: str | os.PathLike, split: str) -> tuple[Path, list[str]]:
    """(label folder, frame ids) of a labelled split: ``ImageSets/<split>.txt`` of the root, or
    ``training`` for every label file of ``training/label_2``."""
    root = Path(data_root)
    label_dir = root / "training" / "label_2"
    if split in ("testing", "test"):
        raise ValueError(f"KITTI split {split!r} has no labels to evaluate against")
    image_set = root / "ImageSets" / f"{split}.txt"
    if image_set.is_file():
        ids = [line.strip() for line in image_set.read_text().splitlines() if line.strip()]
    elif split == "training":
        ids = sorted(p.stem for p in label_dir.glob("*.txt"))
    else:
        raise FileNotFoundError(f"KITTI split file {image_set} not found (or use split 'training')")
    if not label_dir.is_dir():
        raise FileNotFoundError(f"KITTI label folder {label_dir} not found")
    return label_dir, ids


def evaluate_label_dirs(gt_dir: str | os.PathLike, results_dir: str | os.PathLike,
                        frame_ids: Sequence[str] | None = None) -> KittiMetrics:
    """Evaluate result files against ground-truth label files, frame by frame. ``frame_ids``
    default: every ground-truth file. Every frame needs a result file (empty when nothing was
    detected), and every result file a frame."""
    gt_dir, results_dir = Path(gt_dir), Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"KITTI results folder {results_dir} not found")
    if not any(results_dir.glob("*.txt")) and (results_dir / "data").is_dir():
        results_dir = results_dir / "data"
    ids = sorted(p.stem for p in gt_dir.glob("*.txt")) if frame_ids is None else [str(i) for i in frame_ids]
    result_ids = {p.stem for p in results_dir.glob("*.txt")}
    missing = [i for i in ids if i not in result_ids]
    if missing:
        raise ValueError(f"{results_dir}: {len(missing)} frames have no result file, e.g. {missing[0]}.txt "
                         f"(write an empty file for a frame without detections)")
    extra = sorted(result_ids - set(ids))
    if extra:
        raise ValueError(f"{results_dir}: {len(extra)} result files are not frames of the split, e.g. {extra[0]}.txt")
    ground_truth = [read_label_file(gt_dir / f"{i}.txt", with_scores=False) for i in ids]
    detections = [read_label_file(results_dir / f"{i}.txt", with_scores=True) for i in ids]
    return evaluate_kitti(ground_truth, detections)


def evaluate_results_dir(data_root: str | os.PathLike, results_dir: str | os.PathLike, split: str) -> KittiMetrics:
    """Evaluate a folder of KITTI-format result files against the labels of ``split`` of a KITTI
    root (``ImageSets/<split>.txt`` or ``training``)."""
    label_dir, ids = split_frame_ids(data_root, split)
    return evaluate_label_dirs(label_dir, results_dir, ids)
