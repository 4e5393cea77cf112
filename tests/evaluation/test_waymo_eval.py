"""Waymo-style AP / APH against a brute-force twin written from the metric's definition
(explicit loops, shapely polygons for 3D IoU, exhaustive maximum-IoU matching at every score
cutoff, the AP area in closed form), on random and adversarial cases, plus hand-computed values
and the results file / info loading paths."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from pointformer.data.infos import PointSource, SampleInfo, save_infos
from pointformer.data.prepare import info_file_name
from pointformer.evaluation.block_iou import block_box_iou
from pointformer.evaluation.waymo import (
    RANGE_NAMES,
    WaymoGroundTruth,
    WaymoPredictions,
    bipartite_components,
    evaluate_results_file,
    evaluate_waymo,
    heading_accuracy,
    read_waymo_results,
    waymo_average_precision,
    write_waymo_results,
)

CLASSES = ("Vehicle", "Pedestrian", "Cyclist")
THRESHOLDS = {"Vehicle": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
SIZES = {"Vehicle": (4.5, 2.0, 1.6), "Pedestrian": (0.9, 0.8, 1.8), "Cyclist": (1.8, 0.7, 1.7), "Sign": (0.3, 0.6, 0.6)}


# ------------------------------------------------------------------ twin
def _polygon(box) -> Polygon:
    x, y, _, length, width, _, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    corners = [(dx * length / 2, dy * width / 2) for dx, dy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x + c * u - s * v, y + s * u + c * v) for u, v in corners])


def _iou_3d(a, b) -> float:
    area = _polygon(a).intersection(_polygon(b)).area
    overlap = max(0.0, min(a[2] + a[5] / 2, b[2] + b[5] / 2) - max(a[2] - a[5] / 2, b[2] - b[5] / 2))
    inter = area * overlap
    union = a[3] * a[4] * a[5] + b[3] * b[4] * b[5] - inter
    return inter / union if union > 0 else 0.0


def _band(box) -> int:
    distance = math.sqrt(box[0] ** 2 + box[1] ** 2 + box[2] ** 2)
    return 0 if distance < 30 else 1 if distance < 50 else 2


def _level(num_points: int, annotated: int) -> int:
    if annotated in (1, 2):
        return annotated
    return 2 if num_points <= 5 else 1


def _heading_accuracy(a: float, b: float) -> float:
    diff = abs(math.remainder(a - b, 2 * math.pi))
    return max(0.0, min(1.0, 1 - diff / math.pi))


def _best_matching(subset, num_gt, iou, threshold):
    """Every matching of ``subset`` predictions to ground truth over pairs with float32 IoU >=
    threshold; the one with the largest sum of IoUs quantised to 1e-6 (first found on ties)."""
    best = (-1, [])

    def extend(position, used, total, pairs):
        nonlocal best
        if position == len(subset):
            if total > best[0]:
                best = (total, list(pairs))
            return
        p = subset[position]
        extend(position + 1, used, total, pairs)
        for g in range(num_gt):
            value = np.float32(iou[p][g])
            if g not in used and value >= np.float32(threshold):
                extend(position + 1, used | {g}, total + int(np.rint(value * np.float32(1e6))), pairs + [(p, g)])

    extend(0, frozenset(), 0, [])
    return best[1]


def _twin_ap(precisions, recalls) -> float:
    """Area under the official curve in closed form: between consecutive recalls lo < hi the
    curve is flat at env(hi) for every whole 0.05 step that still leaves more than 0.05 + 1e-6,
    then a straight line to (lo, env(lo)); at recall 0 it stays at env(hi)."""
    best = {0.0: 1.0}
    for p, r in zip(precisions, recalls):
        best[float(r)] = max(best.get(float(r), 0.0), float(p))
    recalls_up = sorted(best)
    envelope = {r: max(best[q] for q in recalls_up if q >= r) for r in recalls_up}
    area = 0.0
    for lo, hi in itertools.pairwise(recalls_up):
        gap = hi - lo
        steps = 0
        while gap - 0.05 * steps > 0.05 + 1e-6:
            steps += 1
        top = envelope[hi]
        bottom = envelope[lo] if lo > 0 else top
        area += 0.05 * steps * top + 0.5 * (gap - 0.05 * steps) * (top + bottom)
    return area


def _twin_evaluate(truth: dict, predictions: dict):
    """{(class, level, band or None): (ap, aph, precisions, recalls, precisions_ha, num_gt)}."""
    cutoffs = [np.float32(i * 0.01) for i in range(100)] + [np.float32(1.0)]
    out = {}
    for cls, band in itertools.product(CLASSES, (None, 0, 1, 2)):
        tp = [0] * len(cutoffs)
        fp = [0] * len(cutoffs)
        heading = [0.0] * len(cutoffs)
        missed = {1: [0] * len(cutoffs), 2: [0] * len(cutoffs)}
        num_gt = {1: 0, 2: 0}
        for frame, gt in truth.items():
            pred = predictions.get(frame, WaymoPredictions.empty())
            gts = [(list(b), _level(int(n), int(d))) for b, name, n, d in zip(gt.boxes, gt.names, gt.num_points, gt.difficulty)
                   if name == cls and n > 0 and (band is None or _band(b) == band)]
            pds = [(list(b), float(s)) for b, s, name in zip(pred.boxes, pred.scores, pred.names)
                   if name == cls and (band is None or _band(b) == band)]
            for _, level in gts:
                for lv in (1, 2):
                    num_gt[lv] += level <= lv
            iou = [[_iou_3d(p, g) for g, _ in gts] for p, _ in pds]
            cache = {}
            for k, cutoff in enumerate(cutoffs):
                subset = tuple(i for i, (_, s) in enumerate(pds) if np.float32(s) >= cutoff)
                if subset not in cache:
                    cache[subset] = _best_matching(subset, len(gts), iou, THRESHOLDS[cls])
                pairs = cache[subset]
                matched = {g for _, g in pairs}
                tp[k] += len(pairs)
                fp[k] += len(subset) - len(pairs)
                heading[k] += sum(_heading_accuracy(pds[p][0][6], gts[g][0][6]) for p, g in pairs)
                for lv in (1, 2):
                    missed[lv][k] += sum(1 for g, (_, level) in enumerate(gts) if g not in matched and level <= lv)
        for lv in (1, 2):
            precisions, recalls, precisions_ha = [], [], []
            for k in range(len(cutoffs)):
                detections, positives = tp[k] + fp[k], tp[k] + missed[lv][k]
                recall = tp[k] / positives if positives else 0.0
                precision = tp[k] / detections if detections else 0.0
                precision_ha = heading[k] / detections if detections else 0.0
                precisions.append(1.0 if recall == 0 else precision)
                precisions_ha.append(1.0 if recall == 0 else precision_ha)
                recalls.append(recall)
            out[(cls, lv, band)] = (_twin_ap(precisions, recalls), _twin_ap(precisions_ha, recalls),
                                    precisions, recalls, precisions_ha, num_gt[lv])
    return out


def _assert_agrees(truth, predictions):
    metrics = evaluate_waymo(truth, predictions)
    twin = _twin_evaluate(truth, predictions)
    for (cls, level, band), (ap, aph, precisions, recalls, precisions_ha, num_gt) in twin.items():
        got = metrics.get(cls, level, None if band is None else RANGE_NAMES[band])
        where = f"{cls} L{level} band {band}"
        assert got.num_gt == num_gt, where
        np.testing.assert_allclose(got.recalls, recalls, atol=1e-12, err_msg=where)
        np.testing.assert_allclose(got.precisions, precisions, atol=1e-12, err_msg=where)
        np.testing.assert_allclose(got.precisions_ha, precisions_ha, atol=1e-9, err_msg=where)
        assert got.ap == pytest.approx(ap, abs=1e-9), where
        assert got.aph == pytest.approx(aph, abs=1e-9), where
    return metrics


# ---------------------------------------------------------------- cases
def _gt(boxes, names, num_points, difficulty=None) -> WaymoGroundTruth:
    return WaymoGroundTruth(np.asarray(boxes, np.float64).reshape(-1, 7), list(names), np.asarray(num_points),
                            None if difficulty is None else np.asarray(difficulty))


def _pred(boxes, scores, names) -> WaymoPredictions:
    return WaymoPredictions(np.asarray(boxes, np.float64).reshape(-1, 7), np.asarray(scores, np.float64), list(names))


def _box(cls: str, x: float, y: float, z: float = 0.0, yaw: float = 0.0) -> list[float]:
    return [x, y, z, *SIZES[cls], yaw]


def _random_frame(rng: np.random.Generator, offset: float = 0.0):
    """A frame of each class: ground truth near the 30 / 50 m bands, perturbed copies (some
    right at the IoU threshold), duplicates, class confusions, false positives, tied and
    cutoff-valued scores, point counts around the LEVEL_2 limit and 0."""
    gt_boxes, gt_names, points, difficulty = [], [], [], []
    pred_boxes, scores, pred_names = [], [], []
    for cls in ("Vehicle", "Pedestrian", "Cyclist", "Sign"):
        for _ in range(rng.integers(0, 4)):
            distance, angle = rng.choice([rng.uniform(2, 70), 30.0, 50.0, 29.9, 50.1]), rng.uniform(-np.pi, np.pi)
            box = _box(cls, offset + distance * math.cos(angle), distance * math.sin(angle), rng.uniform(-1, 1),
                       rng.uniform(-np.pi, np.pi))
            box[3:6] = [v * rng.uniform(0.8, 1.2) for v in box[3:6]]
            gt_boxes.append(box)
            gt_names.append(cls)
            points.append(int(rng.choice([0, 1, 5, 6, 40, 300])))
            difficulty.append(int(rng.choice([0, 0, 0, 1, 2])))
            for _ in range(rng.integers(0, 3)):
                copy = list(box)
                copy[0] += rng.normal(0, 0.15)
                copy[1] += rng.normal(0, 0.15)
                copy[2] += rng.normal(0, 0.1)
                copy[6] += rng.choice([0.0, rng.normal(0, 0.4), np.pi])
                pred_boxes.append(copy)
                scores.append(float(rng.choice([rng.uniform(0, 1), 0.5, 0.29, 1.0, 0.0])))
                pred_names.append(cls if rng.random() < 0.9 else str(rng.choice(CLASSES)))
    for _ in range(rng.integers(0, 3)):
        cls = str(rng.choice(CLASSES))
        pred_boxes.append(_box(cls, offset + rng.uniform(-60, 60), rng.uniform(-60, 60), 0.0, rng.uniform(-3, 3)))
        scores.append(float(rng.uniform(0, 1)))
        pred_names.append(cls)
    return _gt(gt_boxes, gt_names, points, difficulty), _pred(pred_boxes, scores, pred_names)


@pytest.mark.parametrize("seed", range(8))
def test_random_frames_agree_with_twin(seed):
    rng = np.random.default_rng(seed)
    frames = [_random_frame(rng) for _ in range(10)]
    truth = {f"f{i}": gt for i, (gt, _) in enumerate(frames)}
    predictions = {f"f{i}": pred for i, (_, pred) in enumerate(frames) if i != 0}  # frame f0 without results
    metrics = _assert_agrees(truth, predictions)
    assert metrics.num_frames_without_predictions == 1


@pytest.mark.parametrize("seed", range(4))
def test_crowded_frames_agree_with_twin(seed):
    """Pedestrians and cyclists packed into a few metres: many predictions overlap several
    ground truths above the threshold, so the assignment (not a greedy pick) decides."""
    rng = np.random.default_rng(100 + seed)
    truth, predictions = {}, {}
    for frame in range(3):
        gt_boxes, gt_names, pred_boxes, scores, pred_names = [], [], [], [], []
        for _ in range(5):
            cls = str(rng.choice(["Pedestrian", "Cyclist"]))
            box = _box(cls, 20 + rng.uniform(0, 1.5), rng.uniform(0, 1.5), 0.0, rng.uniform(-0.3, 0.3))
            gt_boxes.append(box)
            gt_names.append(cls)
            for _ in range(rng.integers(1, 3)):
                pred_boxes.append([v + rng.normal(0, 0.15) for v in box])
                scores.append(float(rng.uniform(0, 1)))
                pred_names.append(cls)
        truth[f"f{frame}"] = _gt(gt_boxes, gt_names, rng.choice([3, 50], len(gt_boxes)))
        predictions[f"f{frame}"] = _pred(pred_boxes, scores, pred_names)
    _assert_agrees(truth, predictions)


def test_huge_coordinates_agree_with_twin():
    rng = np.random.default_rng(11)
    frames = [_random_frame(rng, offset=1e6) for _ in range(3)]
    truth = {f"f{i}": gt for i, (gt, _) in enumerate(frames)}
    predictions = {f"f{i}": pred for i, (_, pred) in enumerate(frames)}
    metrics = _assert_agrees(truth, predictions)
    assert all(metrics.get(c, 2, RANGE_NAMES[0]).num_gt == 0 for c in CLASSES)


# ------------------------------------------------------- hand-computed
def test_no_ground_truth_and_no_predictions():
    metrics = _assert_agrees({"a": _gt([], [], [])}, {"a": _pred([], [], [])})
    assert metrics.mean_ap(1) == 0.0 and metrics.mean_aph(2) == 0.0
    metrics = _assert_agrees({"a": _gt([], [], [])}, {"a": _pred([_box("Vehicle", 5, 0)], [0.9], ["Vehicle"])})
    assert metrics.get("Vehicle", 2).ap == 0.0
    metrics = _assert_agrees({"a": _gt([_box("Vehicle", 5, 0)], ["Vehicle"], [50])}, {})
    assert metrics.get("Vehicle", 2).ap == 0.0 and metrics.get("Vehicle", 2).num_gt == 1


def test_duplicates_of_one_ground_truth():
    box = _box("Vehicle", 10, 3)
    truth = {"a": _gt([box], ["Vehicle"], [100])}
    predictions = {"a": _pred([box] * 5, [0.9, 0.8, 0.7, 0.6, 0.6], ["Vehicle"] * 5)}
    metrics = _assert_agrees(truth, predictions)
    item = metrics.get("Vehicle", 1)
    assert item.ap == pytest.approx(1.0) and item.aph == pytest.approx(1.0)
    assert item.precisions[0] == pytest.approx(1 / 5) and item.recalls[0] == 1.0
    assert item.precisions[85] == 1.0  # cutoff 0.85: only the 0.9 copy is left


def test_tied_scores_half_precision():
    """TP and FP both scored 0.5: precision 0.5 at recall 1 up to the 0.5 cutoff -> AP 0.5."""
    gt_box = _box("Pedestrian", 8, -2)
    truth = {"a": _gt([gt_box], ["Pedestrian"], [30])}
    predictions = {"a": _pred([gt_box, _box("Pedestrian", 20, 5)], [0.5, 0.5], ["Pedestrian"] * 2)}
    metrics = _assert_agrees(truth, predictions)
    item = metrics.get("Pedestrian", 2)
    assert item.ap == pytest.approx(0.5) and item.recalls[50] == 1.0 and item.recalls[51] == 0.0


def test_score_exactly_at_a_cutoff_passes_it():
    gt_box = _box("Cyclist", 8, -2)
    predictions = {"a": _pred([gt_box], [0.29], ["Cyclist"])}
    metrics = _assert_agrees({"a": _gt([gt_box], ["Cyclist"], [30])}, predictions)
    item = metrics.get("Cyclist", 1)
    assert item.recalls[29] == 1.0 and item.recalls[30] == 0.0


@pytest.mark.parametrize("cls, height, matches", [
    ("Vehicle", 0.7, True), ("Vehicle", 0.69, False), ("Pedestrian", 0.5, True), ("Pedestrian", 0.49, False),
])
def test_iou_exactly_at_threshold_matches(cls, height, matches):
    """A unit cube and a nested box of the given height: 3D IoU = height."""
    gt_box = [10.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    pred_box = [10.0, 0.0, 0.0, 1.0, 1.0, height, 0.0]
    metrics = _assert_agrees({"a": _gt([gt_box], [cls], [100])}, {"a": _pred([pred_box], [0.8], [cls])})
    assert metrics.get(cls, 1).ap == pytest.approx(1.0 if matches else 0.0)


def test_heading_off_by_pi_counts_for_ap_not_aph():
    box = _box("Vehicle", 12, 4, yaw=0.3)
    flipped = list(box)
    flipped[6] = 0.3 - math.pi
    metrics = _assert_agrees({"a": _gt([box], ["Vehicle"], [100])}, {"a": _pred([flipped], [0.7], ["Vehicle"])})
    assert metrics.get("Vehicle", 1).ap == pytest.approx(1.0)
    assert metrics.get("Vehicle", 1).aph == pytest.approx(0.0)
    assert heading_accuracy(np.array([3.0]), np.array([3.0 - 2 * np.pi]))[0] == pytest.approx(1.0)
    assert heading_accuracy(np.array([0.0]), np.array([np.pi / 2]))[0] == pytest.approx(0.5)


def test_point_counts_decide_levels():
    """One point: LEVEL_2 only (a match still counts as a LEVEL_1 TP, as in the official code);
    no points: ignored, so its prediction is a false positive; annotated LEVEL_2 wins over points."""
    one, empty, annotated = _box("Vehicle", 5, 5), _box("Vehicle", 15, -5), _box("Vehicle", -20, 0)
    truth = {"a": _gt([one, empty, annotated], ["Vehicle"] * 3, [1, 0, 500], [0, 0, 2])}
    predictions = {"a": _pred([one, empty], [0.9, 0.8], ["Vehicle"] * 2)}
    metrics = _assert_agrees(truth, predictions)
    level_1, level_2 = metrics.get("Vehicle", 1), metrics.get("Vehicle", 2)
    assert (level_1.num_gt, level_2.num_gt, metrics.num_gt_without_points) == (0, 2, 1)
    assert level_2.recalls[0] == 0.5 and level_2.precisions[0] == 0.5
    assert level_1.recalls[0] == 1.0


def test_boxes_exactly_at_range_edges():
    at_30, at_50 = _box("Pedestrian", 18, 24), _box("Pedestrian", 0, -50)  # |(18, 24)| = 30
    near, across = _box("Pedestrian", 29.99, 0), _box("Pedestrian", 30.01, 0)
    truth = {"a": _gt([at_30, at_50, near], ["Pedestrian"] * 3, [50] * 3)}
    predictions = {"a": _pred([at_30, at_50, across], [0.9, 0.9, 0.9], ["Pedestrian"] * 3)}
    metrics = _assert_agrees(truth, predictions)
    assert [metrics.get("Pedestrian", 1, r).num_gt for r in RANGE_NAMES] == [1, 1, 1]
    assert metrics.get("Pedestrian", 1).ap == pytest.approx(1.0)  # 29.99 vs 30.01 still match overall
    assert metrics.get("Pedestrian", 1, RANGE_NAMES[0]).ap == 0.0  # ... but not across bands
    assert metrics.get("Pedestrian", 1, RANGE_NAMES[2]).ap == pytest.approx(1.0)


def test_hungarian_beats_greedy():
    """The higher-scored prediction overlaps both ground truths; maximising the IoU sum gives
    it the one it overlaps most and leaves the other for the second prediction."""
    a, b = [0.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0]
    middle = [0.6, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0]
    truth = {"a": _gt([a, b], ["Pedestrian"] * 2, [50, 50])}
    predictions = {"a": _pred([middle, [0.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0]], [0.9, 0.8], ["Pedestrian"] * 2)}
    metrics = _assert_agrees(truth, predictions)
    assert metrics.get("Pedestrian", 1).recalls[0] == 1.0


def test_assignment_never_pairs_boxes_below_the_threshold():
    """Two copies of g1 and, scored low, a box between g1 and g2 that links them into one
    component: above its score the square assignment must not hand g2 to the second copy."""
    g1, g2 = _box("Pedestrian", 10, 0), _box("Pedestrian", 10.5, 0)
    between = _box("Pedestrian", 10.25, 0)
    truth = {"a": _gt([g1, g2], ["Pedestrian"] * 2, [50, 50])}
    predictions = {"a": _pred([g1, g1, between], [0.9, 0.8, 0.1], ["Pedestrian"] * 3)}
    metrics = _assert_agrees(truth, predictions)
    item = metrics.get("Pedestrian", 1)
    assert (item.recalls[50], item.precisions[50]) == (0.5, 0.5)
    assert (item.recalls[0], item.precisions[0]) == (1.0, pytest.approx(2 / 3))


def test_average_precision_hand_values():
    assert waymo_average_precision([1.0], [1.0]) == pytest.approx(1.0)
    assert waymo_average_precision([1.0], [0.0]) == 0.0
    # Recall 0.5 at precision 1, then 1.0 at precision 0.5: flat 0.5 from 1.0 down to 0.55, a
    # line to (0.5, 1), flat 1 below.
    expected = 0.45 * 0.5 + 0.5 * 0.05 * 1.5 + 0.5 * 1.0
    assert waymo_average_precision([1.0, 0.5], [0.5, 1.0]) == pytest.approx(expected)
    assert waymo_average_precision([1.0, 0.5], [0.5, 1.0]) == pytest.approx(_twin_ap([1.0, 0.5], [0.5, 1.0]))
    rng = np.random.default_rng(3)
    for _ in range(50):
        precisions, recalls = rng.random(20), rng.choice([0.0, 0.1, 0.33, 0.5, 0.97, 1.0, rng.random()], 20)
        assert waymo_average_precision(precisions, recalls) == pytest.approx(_twin_ap(precisions, recalls))


@pytest.mark.parametrize("mode", ["bev", "3d"])
def test_block_box_iou_equals_shapely_per_block(mode):
    rng = np.random.default_rng(4)
    firsts, seconds = [], []
    for k in range(12):
        n, m = int(rng.integers(0, 6)), int(rng.integers(0, 6))
        offset = 1e6 if k % 4 == 3 else 0.0
        firsts.append(np.c_[offset + rng.uniform(0, 6, (n, 3)), rng.uniform(0.5, 3, (n, 3)), rng.uniform(-4, 4, n)])
        seconds.append(np.c_[offset + rng.uniform(0, 6, (m, 3)), rng.uniform(0.5, 3, (m, 3)), rng.uniform(-4, 4, m)])
    touching = np.array([[0.0, 0, 0, 2, 2, 2, 0]]), np.array([[2.0, 0, 0, 2, 2, 2, 0], [1.0, 0, 0, 2, 2, 2, 0]])
    firsts.append(touching[0])
    seconds.append(touching[1])
    for first, second, got in zip(firsts, seconds, block_box_iou(firsts, seconds, mode)):
        assert got.shape == (len(first), len(second))
        for i, j in itertools.product(range(len(first)), range(len(second))):
            a, b = first[i], second[j]
            if mode == "bev":
                pa, pb = _polygon(a), _polygon(b)
                inter = pa.intersection(pb).area
                expected = inter / (pa.area + pb.area - inter)
            else:
                expected = _iou_3d(list(a), list(b))
            assert got[i, j] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="finite"):
        block_box_iou([np.full((1, 7), np.nan)], [np.ones((1, 7))])


def test_bipartite_components():
    edges = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]], bool)
    rows, cols = bipartite_components(edges)
    assert rows.tolist() == [0, 0, 2, 0] and cols.tolist() == [0, 0, 2]


# --------------------------------------------------------- files and errors
def test_results_file_round_trip_and_errors(tmp_path):
    predictions = {"f": _pred([_box("Vehicle", 1, 2)], [0.25], ["Vehicle"]), "g": _pred([], [], [])}
    path = tmp_path / "results.json"
    write_waymo_results(path, predictions, {"model": "x"})
    back, meta = read_waymo_results(path)
    assert meta == {"model": "x"} and set(back) == {"f", "g"}
    np.testing.assert_array_equal(back["f"].boxes, predictions["f"].boxes)
    assert back["f"].names == ["Vehicle"] and back["f"].scores.tolist() == [0.25]

    def write(entry):
        path.write_text(json.dumps({"meta": {}, "results": {"f": [entry]}}))
        return path

    good = {"box": _box("Vehicle", 1, 2), "score": 0.5, "name": "Vehicle"}
    for bad, message in (({**good, "box": [1, 2, 3]}, "box"), ({**good, "score": None}, "score"),
                         ({**good, "name": "car"}, "name"), ({**good, "box": [0, 0, 0, -1, 1, 1, 0]}, "sizes")):
        with pytest.raises(ValueError, match=message):
            read_waymo_results(write(bad))
    path.write_text(json.dumps({"meta": {}}))
    with pytest.raises(ValueError, match="results"):
        read_waymo_results(path)
    with pytest.raises(ValueError, match="no ground truth"):
        evaluate_waymo({"a": _gt([], [], [])}, {"b": _pred([], [], [])})


def test_predictions_from_detections():
    import torch

    from pointformer.structures import Boxes3D, Detections

    boxes = torch.tensor([_box("Cyclist", 3, 4) + [1.0, 0.5], _box("Vehicle", 9, 1) + [0.0, 0.0]])
    detections = Detections(Boxes3D(boxes), torch.tensor([0.25, 0.75]), torch.tensor([2, 0]))
    predictions = WaymoPredictions.from_detections(detections, WAYMO_ORDER)
    assert predictions.names == ["Cyclist", "Vehicle"] and predictions.boxes.shape == (2, 7)
    np.testing.assert_allclose(predictions.scores, [0.25, 0.75])
    with pytest.raises(ValueError, match="labels"):
        WaymoPredictions.from_detections(detections, ["Vehicle"])


WAYMO_ORDER = ("Vehicle", "Pedestrian", "Cyclist")


def _info(sample_id: str, boxes, names, num_points, ids, difficulty) -> SampleInfo:
    return SampleInfo(
        dataset="waymo", sample_id=sample_id, lidar=PointSource("x.parquet", "waymo_v2"),
        annotations={"box_dim": 9, "boxes": [list(b) + [0.0, 0.0] for b in boxes], "names": list(names),
                     "num_points": list(num_points), "attributes": [""] * len(names), "ids": list(ids)},
        meta={"detection_difficulty": difficulty},
    )


def test_evaluate_results_file_from_info_file(tmp_path):
    vehicle, pedestrian = _box("Vehicle", 10, 0), _box("Pedestrian", 40, 5)
    infos = [_info("seg_1", [vehicle, pedestrian], ["Vehicle", "Pedestrian"], [100, 3], ["v", "p"], {"v": 2}),
             _info("seg_2", [], [], [], [], {})]
    save_infos(tmp_path / info_file_name("validation"), infos, dataset="waymo", split="validation", root=".")
    write_waymo_results(tmp_path / "r.json", {"seg_1": _pred([vehicle], [0.6], ["Vehicle"])})
    metrics = evaluate_results_file(tmp_path, tmp_path / "r.json", "validation")
    assert metrics.num_frames == 2 and metrics.num_frames_without_predictions == 1
    assert metrics.get("Vehicle", 1).num_gt == 0 and metrics.get("Vehicle", 2).ap == pytest.approx(1.0)
    assert metrics.get("Pedestrian", 2).num_gt == 1 and metrics.get("Pedestrian", 2).ap == 0.0
    summary = metrics.to_json()
    json.dumps(summary, allow_nan=False)
    assert summary["per_range"]["Pedestrian"]["[30, 50)"]["LEVEL_2"]["num_gt"] == 1
    assert summary["mAP_LEVEL_2"] == pytest.approx(1 / 3)
    assert metrics.table().row_count == 2 * len(CLASSES) + 2

    infos[0].annotations["num_points"] = [-1, 3]
    save_infos(tmp_path / info_file_name("validation"), infos, dataset="waymo", split="validation", root=".")
    with pytest.raises(ValueError, match="num_points"):
        evaluate_results_file(tmp_path, tmp_path / "r.json", "validation")


def test_evaluate_results_file_reads_the_dataset_without_infos(tmp_path):
    from pointformer.data.readers import waymo as v2
    from pointformer.data.synthetic.waymo_layout import WaymoBoxes, WaymoFrame, WaymoLidarCalibration
    from pointformer.data.synthetic.waymo_writer import write_waymo_segment

    top = WaymoLidarCalibration(v2.TOP, np.eye(4), -0.3, 0.1)
    gt_boxes = np.array([_box("Vehicle", 10, 0), _box("Cyclist", 35, 0)])
    frame = WaymoFrame(1_000, np.eye(4), {v2.TOP: np.zeros((2, 8, 4), np.float32)},
                       WaymoBoxes(gt_boxes, np.array([1, 4]), ["v", "c"], np.array([20, 20]), np.zeros((2, 2))),
                       np.zeros((2, 8, 6), np.float32))
    write_waymo_segment(tmp_path, "validation", "seg", [top], [frame])
    write_waymo_results(tmp_path / "r.json", {"seg_1000": _pred(gt_boxes, [0.9, 0.4], ["Vehicle", "Cyclist"])})
    metrics = evaluate_results_file(tmp_path, tmp_path / "r.json", "validation")
    assert metrics.mean_ap(1) == pytest.approx(2 / 3)  # no pedestrians: AP 0 for that class
    assert metrics.get("Cyclist", 1, RANGE_NAMES[1]).ap == pytest.approx(1.0)
