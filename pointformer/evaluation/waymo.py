"""Waymo Open Dataset 3D detection metrics: AP and APH at LEVEL_1 / LEVEL_2, per class and range.

Implemented from the published definition (waymo-open-dataset ``metrics/detection_metrics.cc``,
``matcher.cc``, ``metrics_utils.cc``, ``breakdown_generator.cc`` and the reference configuration
of ``tools/compute_detection_metrics_main.cc``); there is no official library to run here.

Definition, per frame and per breakdown shard (a class, or a class within a range band):

- Ground truth with ``num_points <= 0`` is dropped. Difficulty: a human-annotated level
  (``meta['detection_difficulty']``, 1 or 2) is kept; otherwise LEVEL_2 when the box holds
  ``<= 5`` lidar points, else LEVEL_1.
- Score cutoffs 0.00, 0.01, ..., 0.99, 1.00 (float32, as the proto stores them). At each cutoff
  the predictions with ``score >= cutoff`` are matched to the shard's ground truth by the
  assignment that maximises the sum of IoUs quantised to 1e-6 (Hungarian; here
  ``scipy.optimize.linear_sum_assignment`` per connected component), over pairs whose 3D IoU
  (upright boxes, with heading; :func:`pointformer.ops.box_iou`) is ``>= threshold`` (Vehicle
  0.7, Pedestrian 0.5, Cyclist 0.5; IoU compared in float32 as the official code does).
- A matched prediction is a TP (whatever the difficulty of its ground truth), an unmatched one
  an FP; an unmatched ground truth is an FN at level L when its difficulty is ``<= L``, so
  LEVEL_2 counts LEVEL_1 boxes too. Each TP adds heading accuracy ``1 - |dyaw| / pi`` (dyaw
  wrapped to [0, pi]) to the APH numerator.
- Counts are summed over frames; precision = TP / (TP + FP) (0 without predictions),
  recall = TP / (TP + FN) (0 without ground truth), precision 1 where recall is 0; APH uses
  the heading-weighted TP sum for precision and the plain recall.
- AP (``waymo_average_precision``): best precision per distinct recall plus (recall 0,
  precision 1), walked from high to low recall with the precision made monotone; wherever two
  recalls are more than 0.05 apart, points are inserted every 0.05 below the higher one at its
  precision; the recall-0 point takes the precision of its neighbour; AP is the trapezoid area.
  A shard without ground truth (recall always 0) has AP 0.
- Range bands [0, 30), [30, 50), [50, inf) m of the box centre's 3D distance from the origin of
  the frame (the vehicle frame), for predictions and ground truth alike; a band is matched on
  its own (a prediction in one band never matches ground truth in another).
- mAP / mAPH of a level: the mean over the evaluated classes (a class without ground truth
  counts with AP 0, as in the official per-class output).

Not modelled: no-label-zone overlap (the official leaderboard drops predictions overlapping
NLZ polygons, which our infos do not carry; the official command-line tool does the same
without them). Arithmetic is float64 where the official code uses float32 (AP differs by
~1e-6). Among assignments of equal quantised IoU sum the pick is implementation-defined, in
the official code as here.

Results file (JSON, boxes in our frame: x forward, y left, z up, metres; centre of gravity;
yaw counter-clockwise from +x)::

    {"meta": {...},
     "results": {"<frame id = SampleInfo.sample_id>": [
         {"box": [x, y, z, l, w, h, yaw], "score": 0.93, "name": "Vehicle"}, ...]}}

``box`` may carry a velocity (9 numbers); it is not scored. Names are Waymo types (Vehicle,
Pedestrian, Cyclist, Sign, Unknown); classes outside the evaluated ones are ignored.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pointformer.data.classes import WAYMO_CLASSES, WAYMO_TYPES
from pointformer.data.infos import SampleInfo
from pointformer.evaluation.block_iou import block_box_iou
from pointformer.structures import Detections

log = logging.getLogger(__name__)

WAYMO_IOU_THRESHOLDS: dict[str, float] = {"Vehicle": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
LEVELS: tuple[int, ...] = (1, 2)
LEVEL_NAMES: dict[int, str] = {1: "LEVEL_1", 2: "LEVEL_2"}
LEVEL_2_MAX_POINTS = 5
RANGE_EDGES: tuple[float, float] = (30.0, 50.0)
RANGE_NAMES: tuple[str, ...] = ("[0, 30)", "[30, 50)", "[50, +inf)")
DESIRED_RECALL_DELTA = 0.05
IOU_QUANTIZATION = 1_000_000
FRAME_CHUNK = 256  # frames whose IoUs are computed in one batch
_RECALL_GAP_TOLERANCE = 1e-6


def default_score_cutoffs() -> np.ndarray:
    """(101,) float32: 0.00, 0.01, ..., 0.99, 1.00 (the reference configuration)."""
    return np.array([i * 0.01 for i in range(100)] + [1.0], dtype=np.float32)


# ------------------------------------------------------------------ inputs
@dataclass
class WaymoGroundTruth:
    """Ground truth of one frame: ``boxes`` (N, 7) float64 in our frame, ``names`` (N,),
    ``num_points`` (N,) int64 lidar points per box, ``difficulty`` (N,) int64 annotated level
    (0 = none, then decided by the point count)."""

    boxes: np.ndarray
    names: list[str]
    num_points: np.ndarray
    difficulty: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = _box_array(self.boxes, "ground truth boxes")
        count = len(self.boxes)
        self.names = [str(n) for n in self.names]
        self.num_points = np.asarray(self.num_points, dtype=np.int64).reshape(-1)
        self.difficulty = (np.zeros(count, np.int64) if self.difficulty is None
                           else np.asarray(self.difficulty, dtype=np.int64).reshape(-1))
        if len(self.names) != count or len(self.num_points) != count or len(self.difficulty) != count:
            raise ValueError(f"WaymoGroundTruth: {count} boxes but {len(self.names)} names, "
                             f"{len(self.num_points)} num_points, {len(self.difficulty)} difficulty levels")
        if not np.isin(self.difficulty, (0, 1, 2)).all():
            raise ValueError(f"WaymoGroundTruth.difficulty: levels must be 0, 1 or 2, got {np.unique(self.difficulty)}")

    @staticmethod
    def from_info(info: SampleInfo) -> WaymoGroundTruth:
        """The annotations of an info record; ``meta['detection_difficulty']`` ({id: level}, the
        Waymo reader's) gives annotated levels. Unknown point counts (-1) are an error."""
        record = info.annotations
        if record is None:
            raise ValueError(f"sample {info.sample_id}: no annotations (an unlabelled split cannot be evaluated)")
        boxes = np.array([[np.nan if v is None else v for v in row[:7]] for row in record["boxes"]],
                         dtype=np.float64).reshape(-1, 7)
        num_points = np.asarray(record["num_points"], dtype=np.int64).reshape(-1)
        unknown = int((num_points < 0).sum())
        if unknown:
            raise ValueError(f"sample {info.sample_id}: annotations.num_points is unknown (-1) for {unknown} boxes; "
                             f"the Waymo metric needs lidar point counts (difficulty, empty-box filter)")
        annotated = info.meta.get("detection_difficulty", {})
        ids = record.get("ids") or [""] * len(boxes)
        difficulty = [int(annotated.get(str(i), 0)) for i in ids]
        return WaymoGroundTruth(boxes, list(record["names"]), num_points, np.asarray(difficulty, np.int64))


@dataclass
class WaymoPredictions:
    """Predictions of one frame: ``boxes`` (K, 7) float64 in our frame, ``scores`` (K,),
    ``names`` (K,)."""

    boxes: np.ndarray
    scores: np.ndarray
    names: list[str]

    def __post_init__(self) -> None:
        self.boxes = _box_array(self.boxes, "predicted boxes")
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.names = [str(n) for n in self.names]
        count = len(self.boxes)
        if len(self.scores) != count or len(self.names) != count:
            raise ValueError(f"WaymoPredictions: {count} boxes but {len(self.scores)} scores and {len(self.names)} names")
        if not np.isfinite(self.scores).all():
            raise ValueError("WaymoPredictions.scores: every score must be finite")

    @staticmethod
    def empty() -> WaymoPredictions:
        return WaymoPredictions(np.zeros((0, 7)), np.zeros(0), [])

    @staticmethod
    def from_detections(detections: Detections, class_names: Sequence[str]) -> WaymoPredictions:
        """A detector's output: ``labels`` index ``class_names``."""
        labels = detections.labels.detach().cpu().numpy()
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ValueError(f"Detections.labels must index the {len(class_names)} class names, "
                             f"got range [{labels.min()}, {labels.max()}]")
        return WaymoPredictions(
            detections.boxes.tensor.detach().cpu().to(torch.float64).numpy()[:, :7],
            detections.scores.detach().cpu().to(torch.float64).numpy(),
            [class_names[i] for i in labels],
        )


def _box_array(boxes: Any, what: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 7))
    if array.ndim != 2 or array.shape[1] not in (7, 9):
        raise ValueError(f"{what}: expected (N, 7) or (N, 9) boxes x, y, z, l, w, h, yaw[, vx, vy], got {array.shape}")
    array = array[:, :7]
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: x, y, z, l, w, h, yaw must be finite")
    if (array[:, 3:6] < 0).any():
        raise ValueError(f"{what}: sizes l, w, h must be >= 0")
    return np.ascontiguousarray(array)


# --------------------------------------------------------------- results file
def write_waymo_results(path: str | os.PathLike, results: Mapping[str, WaymoPredictions],
                        meta: Mapping[str, Any] | None = None) -> None:
    """Write ``{"meta", "results": {frame_id: [{"box", "score", "name"}, ...]}}`` (see the module)."""
    document = {
        "meta": dict(meta or {}),
        "results": {
            str(frame_id): [
                {"box": [float(v) for v in box], "score": float(score), "name": name}
                for box, score, name in zip(predictions.boxes, predictions.scores, predictions.names)
            ]
            for frame_id, predictions in results.items()
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, allow_nan=False))


def read_waymo_results(path: str | os.PathLike) -> tuple[dict[str, WaymoPredictions], dict[str, Any]]:
    """Read a results file -> ({frame id: predictions}, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a JSON results file ({error})") from error
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise ValueError(f"{path}: expected an object with a 'results' object {{frame_id: [boxes]}}")
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: 'meta' must be an object, got {type(meta).__name__}")
    known = set(WAYMO_TYPES.values())
    results = {}
    for frame_id, entries in document["results"].items():
        results[frame_id] = _parse_frame_entries(entries, known, f"{path}: results[{frame_id!r}]")
    return results, meta


def _parse_frame_entries(entries: Any, known_names: set[str], where: str) -> WaymoPredictions:
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected a list of boxes, got {type(entries).__name__}")
    boxes, scores, names = [], [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"box", "score", "name"} <= set(entry):
            raise ValueError(f"{where}[{i}]: expected an object with 'box', 'score' and 'name'")
        box, score, name = entry["box"], entry["score"], entry["name"]
        if (not isinstance(box, list) or len(box) not in (7, 9)
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
            raise ValueError(f"{where}[{i}].box: expected 7 (or 9) finite numbers x, y, z, l, w, h, yaw, got {box!r}")
        if min(box[3:6]) < 0:
            raise ValueError(f"{where}[{i}].box: sizes l, w, h must be >= 0, got {box[3:6]}")
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"{where}[{i}].score: expected a finite number, got {score!r}")
        if name not in known_names:
            raise ValueError(f"{where}[{i}].name: {name!r} is not a Waymo type; expected one of {sorted(known_names)}")
        boxes.append(box[:7])
        scores.append(score)
        names.append(name)
    return WaymoPredictions(np.asarray(boxes, np.float64).reshape(-1, 7), np.asarray(scores, np.float64), names)


# ------------------------------------------------------------- definitions
def detection_levels(num_points: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """(N,) int64 level per ground-truth box: the annotated level when 1 or 2, else 2 for
    ``num_points <= 5`` and 1 above."""
    by_points = np.where(np.asarray(num_points) <= LEVEL_2_MAX_POINTS, 2, 1)
    return np.where(np.isin(annotated, (1, 2)), annotated, by_points).astype(np.int64)


def range_bands(boxes: np.ndarray) -> np.ndarray:
    """(N,) int64 band of each box centre's 3D distance from the origin: 0 [0, 30),
    1 [30, 50), 2 [50, inf)."""
    distance = np.sqrt(boxes[:, 0] ** 2 + boxes[:, 1] ** 2 + boxes[:, 2] ** 2)
    return np.searchsorted(np.asarray(RANGE_EDGES), distance, side="right").astype(np.int64)


def heading_accuracy(yaw_pred: np.ndarray, yaw_gt: np.ndarray) -> np.ndarray:
    """``1 - |dyaw| / pi`` with dyaw wrapped to [0, pi] (headings taken modulo 2 pi)."""
    pred = np.mod(np.asarray(yaw_pred, np.float64) + np.pi, 2 * np.pi) - np.pi
    gt = np.mod(np.asarray(yaw_gt, np.float64) + np.pi, 2 * np.pi) - np.pi
    diff = np.abs(pred - gt)
    diff = np.where(diff > np.pi, 2 * np.pi - diff, diff)
    return np.clip(1.0 - diff / np.pi, 0.0, 1.0)


def waymo_average_precision(precisions: Sequence[float], recalls: Sequence[float],
                            max_recall_delta: float = DESIRED_RECALL_DELTA) -> float:
    """Area under the P/R curve as the official ``ComputeMeanAveragePrecision`` samples it."""
    if len(precisions) != len(recalls):
        raise ValueError(f"{len(precisions)} precisions but {len(recalls)} recalls")
    if not 0.0 < max_recall_delta <= 1.0:
        raise ValueError(f"max_recall_delta must be in (0, 1], got {max_recall_delta}")
    best: dict[float, float] = {0.0: 1.0}
    for precision, recall in zip(precisions, recalls):
        best[float(recall)] = max(best.get(float(recall), 0.0), float(precision))
    curve: list[tuple[float, float]] = []  # (recall, precision), recall descending
    last_recall = min(best)
    max_precision = 0.0
    for recall in sorted(best, reverse=True):
        while last_recall - recall > max_recall_delta + _RECALL_GAP_TOLERANCE:
            last_recall -= max_recall_delta
            curve.append((last_recall, max_precision))
        max_precision = max(best[recall], max_precision)
        curve.append((recall, max_precision))
        last_recall = recall
    if len(curve) < 2:
        return 0.0
    curve[-1] = (curve[-1][0], curve[-2][1])
    return float(sum(0.5 * (r0 - r1) * (p0 + p1) for (r0, p0), (r1, p1) in itertools.pairwise(curve)))


# ---------------------------------------------------------------- matching
@dataclass
class MatchedPairs:
    """Pairs matched over score-cutoff ranges: prediction ``pred[i]`` and ground truth ``gt[i]``
    are matched at every cutoff index in ``[first[i], stop[i])``."""

    pred: np.ndarray
    gt: np.ndarray
    first: np.ndarray
    stop: np.ndarray

    @staticmethod
    def concat(parts: Iterable[MatchedPairs]) -> MatchedPairs:
        parts = list(parts)
        if not parts:
            empty = np.zeros(0, np.int64)
            return MatchedPairs(empty, empty, empty, empty)
        return MatchedPairs(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("pred", "gt", "first", "stop")))


def cutoff_counts(scores: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """(K,) int64: how many cutoffs each score passes (``score >= cutoff``, float32 as the
    official proto); prediction k is in the subset of cutoff index c iff ``c < counts[k]``.
    ``cutoffs`` must be ascending."""
    return np.searchsorted(cutoffs.astype(np.float32), np.asarray(scores).astype(np.float32), side="right").astype(np.int64)


def match_over_cutoffs(passes: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> MatchedPairs:
    """The maximum-weight matching of every score-cutoff subset of predictions.

    passes (K,): cutoffs each prediction passes (:func:`cutoff_counts`); weight (K, G) int64
    quantised IoU; valid (K, G) bool: pairs allowed to match (the others weigh 0, as in the
    official edge matrix). The subset at cutoff index c is the predictions with ``passes > c``.
    Components of the bipartite graph of valid pairs are solved apart (a maximum-weight
    matching decomposes over them), each once per distinct subset it sees.
    """
    parts: list[MatchedPairs] = []
    preds = np.nonzero(valid.any(axis=1) & (passes > 0))[0]
    gts = np.nonzero(valid[preds].any(axis=0))[0] if len(preds) else np.zeros(0, np.int64)
    if len(preds) == 0 or len(gts) == 0:
        return MatchedPairs.concat(parts)
    pred_labels, gt_labels = bipartite_components(valid[np.ix_(preds, gts)])
    for component in np.unique(pred_labels):
        parts.extend(_match_component(preds[pred_labels == component], gts[gt_labels == component], passes,
                                      weight, valid))
    return MatchedPairs.concat(parts)


def bipartite_components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of a bipartite graph given as a (P, G) bool matrix in which every
    row and column has an edge: (P,) and (G,) labels, each the smallest row index of its
    component (min-label propagation until nothing changes)."""
    big = np.iinfo(np.int64).max
    row_labels = np.arange(edges.shape[0], dtype=np.int64)
    while True:
        col_labels = np.where(edges, row_labels[:, None], big).min(axis=0)
        updated = np.where(edges, col_labels[None, :], big).min(axis=1)
        if np.array_equal(updated, row_labels):
            return row_labels, col_labels
        row_labels = updated


def _match_component(preds: np.ndarray, gts: np.ndarray, passes: np.ndarray, weight: np.ndarray,
                     valid: np.ndarray) -> list[MatchedPairs]:
    """Matchings of one component for each distinct score-cutoff subset of its predictions."""
    order = preds[np.argsort(-passes[preds], kind="stable")]
    levels = passes[order]
    allowed = valid[np.ix_(order, gts)]
    weights = np.where(allowed, weight[np.ix_(order, gts)], 0)
    parts = []
    for end in range(1, len(order) + 1):
        if end < len(order) and levels[end] == levels[end - 1]:
            continue
        rows, cols = _max_weight_assignment(weights[:end], allowed[:end])
        first, stop = (int(levels[end]) if end < len(order) else 0), int(levels[end - 1])
        parts.append(MatchedPairs(order[rows], gts[cols], np.full(len(rows), first, np.int64),
                                  np.full(len(rows), stop, np.int64)))
    return parts


def _max_weight_assignment(weights: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a maximum-weight matching over the allowed cells of (P, G) weights.
    A single row or column (most components) is its best allowed cell."""
    if weights.shape[0] == 1 or weights.shape[1] == 1:
        masked = np.where(allowed, weights, -1)
        row, col = np.unravel_index(int(np.argmax(masked)), masked.shape)
        keep = bool(allowed[row, col])
        return np.array([row] if keep else [], np.int64), np.array([col] if keep else [], np.int64)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    keep = allowed[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


# -------------------------------------------------------------- accumulation
class _Counts:
    """Per (class, shard, cutoff) sums over frames; shard 0 = all ranges, 1..3 = range bands.
    Per-cutoff sums are kept as difference arrays over the cutoff axis (one extra slot)."""

    def __init__(self, num_cutoffs: int, num_classes: int):
        self.num_cutoffs = num_cutoffs
        shape = (num_classes, 1 + len(RANGE_NAMES), num_cutoffs + 1)
        self.predictions = np.zeros(shape)
        self.matches = np.zeros(shape)
        self.matches_level_1 = np.zeros(shape)
        self.heading = np.zeros(shape)
        self.gt_level_1 = np.zeros(shape[:2], np.int64)
        self.gt_all = np.zeros(shape[:2], np.int64)

    def add_predictions(self, cls: int, shards: np.ndarray, passes: np.ndarray) -> None:
        np.add.at(self.predictions, (cls, shards, 0), 1.0)
        np.add.at(self.predictions, (cls, shards, passes), -1.0)

    def add_ground_truth(self, cls: int, shards: np.ndarray, levels: np.ndarray) -> None:
        np.add.at(self.gt_all, (cls, shards), 1)
        np.add.at(self.gt_level_1, (cls, shards), (levels == 1).astype(np.int64))

    def add_matches(self, cls: int, shards: np.ndarray, pairs: MatchedPairs, accuracy: np.ndarray,
                    level_1: np.ndarray) -> None:
        for array, value in ((self.matches, 1.0), (self.matches_level_1, level_1.astype(np.float64)),
                             (self.heading, accuracy)):
            np.add.at(array, (cls, shards, pairs.first), value)
            np.add.at(array, (cls, shards, pairs.stop), -np.asarray(value))

    def totals(self) -> dict[str, np.ndarray]:
        """Cumulative sums: (classes, shards, cutoffs) counts at every cutoff."""
        def running(array: np.ndarray) -> np.ndarray:
            return np.cumsum(array, axis=2)[:, :, : self.num_cutoffs]
        return {"predictions": np.rint(running(self.predictions)), "matches": np.rint(running(self.matches)),
                "matches_level_1": np.rint(running(self.matches_level_1)), "heading": running(self.heading)}


# ------------------------------------------------------------------ results
@dataclass
class WaymoBreakdown:
    """AP / APH of one class (``range_name`` None) or one class within a range band, at one
    level; the P/R points per score cutoff behind them."""

    class_name: str
    level: int
    range_name: str | None
    ap: float
    aph: float
    num_gt: int
    score_cutoffs: np.ndarray
    precisions: np.ndarray
    recalls: np.ndarray
    precisions_ha: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"AP": self.ap, "APH": self.aph, "num_gt": self.num_gt}


@dataclass
class WaymoMetrics:
    """Every breakdown of a Waymo-style evaluation. Values are fractions in [0, 1]."""

    classes: tuple[str, ...]
    breakdowns: list[WaymoBreakdown]
    num_frames: int
    num_frames_without_predictions: int
    num_gt_without_points: int

    def get(self, class_name: str, level: int, range_name: str | None = None) -> WaymoBreakdown:
        for item in self.breakdowns:
            if (item.class_name, item.level, item.range_name) == (class_name, level, range_name):
                return item
        raise KeyError(f"no breakdown for class {class_name!r}, level {level}, range {range_name!r}")

    def mean_ap(self, level: int) -> float:
        return float(np.mean([self.get(c, level).ap for c in self.classes])) if self.classes else float("nan")

    def mean_aph(self, level: int) -> float:
        return float(np.mean([self.get(c, level).aph for c in self.classes])) if self.classes else float("nan")

    def to_json(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for level in LEVELS:
            summary[f"mAP_{LEVEL_NAMES[level]}"] = self.mean_ap(level)
            summary[f"mAPH_{LEVEL_NAMES[level]}"] = self.mean_aph(level)
        per_class = {c: {LEVEL_NAMES[lv]: self.get(c, lv).to_json() for lv in LEVELS} for c in self.classes}
        per_range = {c: {r: {LEVEL_NAMES[lv]: self.get(c, lv, r).to_json() for lv in LEVELS} for r in RANGE_NAMES}
                     for c in self.classes}
        return {**summary, "per_class": per_class, "per_range": per_range, "num_frames": self.num_frames,
                "num_frames_without_predictions": self.num_frames_without_predictions,
                "num_gt_without_points": self.num_gt_without_points}

    def table(self):
        """A ``rich.table.Table``: AP / APH (%) per class and level, overall and per range band."""
        from rich.table import Table

        table = Table(title=f"Waymo-style detection ({self.num_frames} frames)")
        for column in ("Class", "Level", "GT", "AP", "APH", *(f"AP/APH {r}" for r in RANGE_NAMES)):
            table.add_column(column, justify="left" if column in ("Class", "Level") else "right")
        for class_name in self.classes:
            for level in LEVELS:
                item = self.get(class_name, level)
                bands = [self.get(class_name, level, r) for r in RANGE_NAMES]
                table.add_row(class_name, LEVEL_NAMES[level], str(item.num_gt), f"{100 * item.ap:.2f}",
                              f"{100 * item.aph:.2f}", *(f"{100 * b.ap:.2f} / {100 * b.aph:.2f}" for b in bands))
        for level in LEVELS:
            table.add_row("mean", LEVEL_NAMES[level], "", f"{100 * self.mean_ap(level):.2f}",
                          f"{100 * self.mean_aph(level):.2f}", *[""] * len(RANGE_NAMES))
        return table


# --------------------------------------------------------------- evaluation
def evaluate_waymo(
    ground_truth: Mapping[str, WaymoGroundTruth],
    predictions: Mapping[str, WaymoPredictions],
    classes: Sequence[str] = WAYMO_CLASSES,
    iou_thresholds: Mapping[str, float] | None = None,
    score_cutoffs: np.ndarray | None = None,
) -> WaymoMetrics:
    """Waymo-style AP / APH of ``predictions`` against ``ground_truth`` (both keyed by frame id).

    A frame with predictions but no ground-truth entry is an error; a ground-truth frame
    without predictions counts as predicting nothing (logged and counted in the result).
    """
    thresholds = dict(WAYMO_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds)
    missing = [c for c in classes if c not in thresholds]
    if missing:
        raise ValueError(f"iou_thresholds: no threshold for classes {missing}")
    cutoffs = default_score_cutoffs() if score_cutoffs is None else np.asarray(score_cutoffs, np.float32)
    if cutoffs.ndim != 1 or len(cutoffs) == 0 or (np.diff(cutoffs) <= 0).any():
        raise ValueError("score_cutoffs: expected a non-empty strictly ascending list")
    unknown = sorted(set(predictions) - set(ground_truth))
    if unknown:
        raise ValueError(f"{len(unknown)} predicted frames have no ground truth, e.g. {unknown[0]!r}")
    without = [f for f in ground_truth if f not in predictions]
    if without:
        log.warning("%d of %d frames have no predictions; scored as predicting nothing", len(without), len(ground_truth))

    counts = _Counts(len(cutoffs), len(classes))
    frame_ids = list(ground_truth)
    for start in range(0, len(frame_ids), FRAME_CHUNK):
        frames = [(ground_truth[f], predictions.get(f, WaymoPredictions.empty()))
                  for f in frame_ids[start:start + FRAME_CHUNK]]
        selections = [_class_selections(truth, predicted, classes) for truth, predicted in frames]
        ious = iter(block_box_iou(
            [predicted.boxes[pred] for (_, predicted), chosen in zip(frames, selections) for _, pred in chosen],
            [truth.boxes[gt] for (truth, _), chosen in zip(frames, selections) for gt, _ in chosen], mode="3d"))
        for (truth, predicted), chosen in zip(frames, selections):
            for cls, (gt_index, pred_index) in enumerate(chosen):
                _add_class(counts, cls, truth, predicted, gt_index, pred_index, next(ious),
                           thresholds[classes[cls]], cutoffs)
    dropped = sum(int((truth.num_points <= 0).sum()) for truth in ground_truth.values())
    breakdowns = _breakdowns(counts, classes, cutoffs)
    return WaymoMetrics(tuple(classes), breakdowns, len(ground_truth), len(without), dropped)


def _class_selections(truth: WaymoGroundTruth, predicted: WaymoPredictions, classes: Sequence[str]
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per class: (ground-truth rows with points, prediction rows) of a frame."""
    gt_names, pred_names = np.asarray(truth.names, dtype=object), np.asarray(predicted.names, dtype=object)
    return [(np.nonzero((gt_names == name) & (truth.num_points > 0))[0], np.nonzero(pred_names == name)[0])
            for name in classes]


def _add_class(counts: _Counts, cls: int, truth: WaymoGroundTruth, predicted: WaymoPredictions,
               gt_index: np.ndarray, pred_index: np.ndarray, iou: np.ndarray, threshold: float,
               cutoffs: np.ndarray) -> None:
    """Add one frame's counts for one class; ``iou`` (K, G) of the chosen predictions and
    ground truth."""
    gt_boxes, pred_boxes = truth.boxes[gt_index], predicted.boxes[pred_index]
    gt_band, pred_band = range_bands(gt_boxes), range_bands(pred_boxes)
    gt_levels = detection_levels(truth.num_points[gt_index], truth.difficulty[gt_index])
    passes = cutoff_counts(predicted.scores[pred_index], cutoffs)
    for shards in (np.zeros(len(pred_index), np.int64), 1 + pred_band):
        counts.add_predictions(cls, shards, passes)
    for shards in (np.zeros(len(gt_index), np.int64), 1 + gt_band):
        counts.add_ground_truth(cls, shards, gt_levels)
    if len(gt_index) == 0 or len(pred_index) == 0:
        return
    iou = iou.astype(np.float32)
    valid = iou >= np.float32(threshold)
    weight = np.rint(iou * np.float32(IOU_QUANTIZATION)).astype(np.int64)
    same_band = pred_band[:, None] == gt_band[None, :]
    for valid_pairs, gt_shards in ((valid, np.zeros(len(gt_index), np.int64)), (valid & same_band, 1 + gt_band)):
        pairs = match_over_cutoffs(passes, weight, valid_pairs)
        accuracy = heading_accuracy(pred_boxes[pairs.pred, 6], gt_boxes[pairs.gt, 6])
        counts.add_matches(cls, gt_shards[pairs.gt], pairs, accuracy, gt_levels[pairs.gt] == 1)


def _breakdowns(counts: _Counts, classes: Sequence[str], cutoffs: np.ndarray) -> list[WaymoBreakdown]:
    totals = counts.totals()
    out = []
    for cls, class_name in enumerate(classes):
        for shard in range(1 + len(RANGE_NAMES)):
            predicted = totals["predictions"][cls, shard]
            matches = totals["matches"][cls, shard]
            heading = totals["heading"][cls, shard]
            for level in LEVELS:
                if level == 1:
                    num_gt = int(counts.gt_level_1[cls, shard])
                    missed = num_gt - totals["matches_level_1"][cls, shard]
                else:
                    num_gt = int(counts.gt_all[cls, shard])
                    missed = num_gt - matches
                precisions, recalls, precisions_ha = pr_points(matches, predicted - matches, missed, heading)
                out.append(WaymoBreakdown(
                    class_name, level, None if shard == 0 else RANGE_NAMES[shard - 1],
                    waymo_average_precision(precisions, recalls), waymo_average_precision(precisions_ha, recalls),
                    num_gt, cutoffs.copy(), precisions, recalls, precisions_ha,
                ))
    return out


def pr_points(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, heading_sum: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cutoff precision, recall and heading-weighted precision from summed counts (the
    official ``ToDetectionMetrics``: 0 for an empty denominator, precision 1 where recall is 0)."""
    detections = tp + fp
    positives = tp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(detections > 0, tp / detections, 0.0)
        precision_ha = np.where(detections > 0, heading_sum / detections, 0.0)
        recall = np.where(positives > 0, tp / positives, 0.0)
    precision = np.where(recall == 0, 1.0, precision)
    precision_ha = np.where(recall == 0, 1.0, precision_ha)
    return precision, recall, precision_ha


# ------------------------------------------------------------- entry point
def load_ground_truth(data_root: str | os.PathLike, split: str) -> dict[str, WaymoGroundTruth]:
    """{sample id: ground truth} of a split: from ``pointformer_infos_<split>.json`` in the root
    when present, else read through the dataset's reader."""
    from pointformer.data.infos import load_infos
    from pointformer.data.prepare import info_file_name
    from pointformer.data.readers.layouts import open_reader

    info_path = Path(data_root) / info_file_name(split)
    infos = load_infos(info_path)[0] if info_path.is_file() else open_reader(data_root, None, split).infos
    truth: dict[str, WaymoGroundTruth] = {}
    for info in infos:
        if info.sample_id in truth:
            raise ValueError(f"{data_root} split {split}: sample id {info.sample_id!r} appears twice")
        truth[info.sample_id] = WaymoGroundTruth.from_info(info)
    return truth


def evaluate_results_file(data_root: str | os.PathLike, results_path: str | os.PathLike, split: str) -> WaymoMetrics:
    """Evaluate a Waymo-style results file against the ground truth of ``split`` of ``data_root``."""
    predictions, _ = read_waymo_results(results_path)
    return evaluate_waymo(load_ground_truth(data_root, split), predictions)
