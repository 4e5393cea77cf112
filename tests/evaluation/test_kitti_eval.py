"""KITTI AP against a brute-force twin transcribed from the official devkit
(``evaluate_object_3d_offline.cpp``: cleanData, computeStatistics, getThresholds, eval_class)
with shapely polygons in the camera's ground plane for the BEV / 3D overlaps; a hand-computed
case; the real KITTI frames in shared/realdata (ground truth as detections); the label-folder
entry points and their errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

from pointformer.data.readers.kitti import KittiObject, write_kitti_labels
from pointformer.evaluation.kitti import (
    DIFFICULTIES,
    KittiLabels,
    evaluate_kitti,
    evaluate_label_dirs,
    evaluate_results_dir,
    kitti_thresholds,
    read_label_file,
)

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "kitti_openpcdet_pr653" / "training"
CLASSES = ("Car", "Pedestrian", "Cyclist")
MIN_OVERLAP = {"Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}
DIMS = {"Car": (1.5, 1.6, 3.9), "Van": (2.0, 1.8, 4.5), "Truck": (3.0, 2.5, 8.0), "Pedestrian": (1.75, 0.6, 0.8),
        "Person_sitting": (1.2, 0.6, 0.8), "Cyclist": (1.7, 0.6, 1.8)}


# ------------------------------------------------------------------ twin
def _ground_polygon(obj: dict) -> Polygon:
    """The devkit's toPolygon: corners (+-l/2, +-w/2) rotated by [[c, s], [-s, c]] in (x, z)."""
    c, s = math.cos(obj["ry"]), math.sin(obj["ry"])
    corners = [(obj["l"] / 2, obj["w"] / 2), (obj["l"] / 2, -obj["w"] / 2), (-obj["l"] / 2, -obj["w"] / 2),
               (-obj["l"] / 2, obj["w"] / 2)]
    return Polygon([(c * u + s * v + obj["t1"], -s * u + c * v + obj["t3"]) for u, v in corners])


def _overlap(det: dict, gt: dict, metric: str, criterion: int = -1) -> float:
    if metric == "bbox":
        x1, y1 = max(det["x1"], gt["x1"]), max(det["y1"], gt["y1"])
        x2, y2 = min(det["x2"], gt["x2"]), min(det["y2"], gt["y2"])
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        area_det = (det["x2"] - det["x1"]) * (det["y2"] - det["y1"])
        area_gt = (gt["x2"] - gt["x1"]) * (gt["y2"] - gt["y1"])
        return inter / (area_det + area_gt - inter) if criterion == -1 else inter / area_det
    if "DontCare" in (det["type"], gt["type"]):
        return 0.0
    dp, gp = _ground_polygon(det), _ground_polygon(gt)
    inter = dp.intersection(gp).area
    if metric == "bev":
        return inter / (dp.area + gp.area - inter)
    height = max(0.0, min(det["t2"], gt["t2"]) - max(det["t2"] - det["h"], gt["t2"] - gt["h"]))
    inter *= height
    return inter / (det["h"] * det["w"] * det["l"] + gt["h"] * gt["w"] * gt["l"] - inter)


def _clean(gts, dets, cls, difficulty):
    min_height, max_occ, max_trunc = (40, 25, 25)[difficulty], (0, 1, 2)[difficulty], (0.15, 0.3, 0.5)[difficulty]
    ignored_gt, ignored_det, dontcare, n_gt = [], [], [], 0
    for g in gts:
        if g["type"].lower() == cls.lower():
            valid = 1
        elif cls == "Pedestrian" and g["type"].lower() == "person_sitting":
            valid = 0
        elif cls == "Car" and g["type"].lower() == "van":
            valid = 0
        else:
            valid = -1
        ignore = g["occ"] > max_occ or g["trunc"] > max_trunc or g["y2"] - g["y1"] < min_height
        if valid == 1 and not ignore:
            ignored_gt.append(0)
            n_gt += 1
        elif valid == 0 or (ignore and valid == 1):
            ignored_gt.append(1)
        else:
            ignored_gt.append(-1)
        if g["type"].lower() == "dontcare":
            dontcare.append(g)
    for d in dets:
        valid = 1 if d["type"].lower() == cls.lower() else -1
        if int(abs(d["y1"] - d["y2"])) < min_height:
            ignored_det.append(1)
        elif valid == 1:
            ignored_det.append(0)
        else:
            ignored_det.append(-1)
    return ignored_gt, ignored_det, dontcare, n_gt


def _statistics(gts, dets, dontcare, ignored_gt, ignored_det, compute_fp, metric, min_overlap, thresh=0.0):
    no_detection = -10000000
    assigned = [False] * len(dets)
    below = [compute_fp and d["score"] < thresh for d in dets]
    tp = fp = fn = 0
    scores, deltas = [], []
    for i, g in enumerate(gts):
        if ignored_gt[i] == -1:
            continue
        det_idx, valid, max_overlap, assigned_ignored = -1, no_detection, 0.0, False
        for j, d in enumerate(dets):
            if ignored_det[j] == -1 or assigned[j] or below[j]:
                continue
            overlap = _overlap(d, g, metric)
            if not compute_fp and overlap > min_overlap and d["score"] > valid:
                det_idx, valid = j, d["score"]
            elif (compute_fp and overlap > min_overlap and (overlap > max_overlap or assigned_ignored)
                  and ignored_det[j] == 0):
                max_overlap, det_idx, valid, assigned_ignored = overlap, j, 1, False
            elif compute_fp and overlap > min_overlap and valid == no_detection and ignored_det[j] == 1:
                det_idx, valid, assigned_ignored = j, 1, True
        if valid == no_detection and ignored_gt[i] == 0:
            fn += 1
        elif valid != no_detection and (ignored_gt[i] == 1 or ignored_det[det_idx] == 1):
            assigned[det_idx] = True
        elif valid != no_detection:
            tp += 1
            scores.append(dets[det_idx]["score"])
            deltas.append(g["alpha"] - dets[det_idx]["alpha"])
            assigned[det_idx] = True
    similarity = -1.0
    if compute_fp:
        fp = sum(1 for j in range(len(dets)) if not (assigned[j] or ignored_det[j] in (-1, 1) or below[j]))
        stuff = 0
        if metric == "bbox":
            for dc in dontcare:
                for j, d in enumerate(dets):
                    if assigned[j] or ignored_det[j] in (-1, 1) or below[j]:
                        continue
                    if _overlap(d, dc, "bbox", criterion=0) > min_overlap:
                        assigned[j] = True
                        stuff += 1
        fp -= stuff
        if tp > 0 or fp > 0:
            similarity = sum((1 + math.cos(delta)) / 2 for delta in deltas)
    return tp, fp, fn, similarity, scores


def _twin_thresholds(scores, n_gt):
    scores = sorted(scores, reverse=True)
    out, current = [], 0.0
    for i, score in enumerate(scores):
        left = (i + 1) / n_gt
        right = (i + 2) / n_gt if i < len(scores) - 1 else left
        if right - current < current - left and i < len(scores) - 1:
            continue
        out.append(score)
        current += 1 / 40
    return out


def _twin_eval_class(frames, cls, difficulty, metric):
    """(precision[41], aos[41], n_gt) as the devkit's eval_class computes them."""
    cleaned = [_clean(gts, dets, cls, difficulty) for gts, dets in frames]
    n_gt = sum(c[3] for c in cleaned)
    scores = []
    for (gts, dets), (ig, idt, dc, _) in zip(frames, cleaned):
        scores += _statistics(gts, dets, dc, ig, idt, False, metric, MIN_OVERLAP[cls])[4]
    thresholds = _twin_thresholds(scores, n_gt) if n_gt else []
    precision, aos = [0.0] * 41, [0.0] * 41
    for t, thresh in enumerate(thresholds):
        tp = fp = similarity = 0.0
        for (gts, dets), (ig, idt, dc, _) in zip(frames, cleaned):
            stats = _statistics(gts, dets, dc, ig, idt, True, metric, MIN_OVERLAP[cls], thresh)
            tp, fp = tp + stats[0], fp + stats[1]
            similarity += stats[3] if stats[3] != -1 else 0.0
        precision[t] = tp / (tp + fp)
        aos[t] = similarity / (tp + fp)
    for t in range(len(thresholds)):
        precision[t] = max(precision[t:])
        aos[t] = max(aos[t:])
    return precision, aos, n_gt


def _as_dicts(labels: KittiLabels) -> list[dict]:
    out = []
    for i, name in enumerate(labels.names):
        h, w, l = labels.dimensions_hwl[i]
        x1, y1, x2, y2 = labels.bbox[i]
        t1, t2, t3 = labels.location[i]
        out.append({"type": name, "trunc": labels.truncated[i], "occ": labels.occluded[i], "alpha": labels.alpha[i],
                    "x1": x1, "y1": y1, "x2": x2, "y2": y2, "h": h, "w": w, "l": l, "t1": t1, "t2": t2, "t3": t3,
                    "ry": labels.rotation_y[i], "score": None if labels.score is None else labels.score[i]})
    return out


def _assert_agrees(ground_truth, detections, metrics_to_check=("bbox", "bev", "3d")):
    metrics = evaluate_kitti(ground_truth, detections)
    frames = [(_as_dicts(g), _as_dicts(d)) for g, d in zip(ground_truth, detections)]
    for metric in metrics_to_check:
        for cls in CLASSES:
            for difficulty, name in enumerate(DIFFICULTIES):
                precision, aos, n_gt = _twin_eval_class(frames, cls, difficulty, metric)
                got = metrics.get(cls, metric, name)
                where = f"{cls} {metric} {name}"
                assert got.num_gt == n_gt, where
                np.testing.assert_allclose(got.precision, precision, atol=1e-12, err_msg=where)
                assert got.ap_r40 == pytest.approx(sum(precision[1:]) / 40 * 100, abs=1e-9), where
                assert got.ap_r11 == pytest.approx(sum(precision[::4]) / 11 * 100, abs=1e-9), where
                if metric == "bbox":
                    np.testing.assert_allclose(metrics.get(cls, "aos", name).precision, aos, atol=1e-12, err_msg=where)
    return metrics


# ---------------------------------------------------------------- cases
def _object(name, bbox, location, ry=0.0, truncated=0.0, occluded=0, score=None, dims=None) -> KittiObject:
    return KittiObject(name, truncated, occluded, ry - math.atan2(location[0], location[2]), tuple(bbox),
                       tuple(dims or DIMS.get(name, (-1.0, -1.0, -1.0))), tuple(location), ry, score)


def _labels(objects) -> KittiLabels:
    return KittiLabels.from_objects(objects)


def _random_frame(rng: np.random.Generator, offset: float = 0.0):
    gts, dets = [], []
    for _ in range(rng.integers(0, 7)):
        name = str(rng.choice(["Car", "Car", "Van", "Pedestrian", "Person_sitting", "Cyclist", "Truck", "DontCare"]))
        x1, y1 = rng.uniform(0, 1100), rng.uniform(100, 250)
        height = float(rng.choice([rng.uniform(10, 120), 25.0, 40.0, 24.99]))
        bbox = (x1, y1, x1 + rng.uniform(20, 150), y1 + height)
        location = (offset + rng.uniform(-15, 15), rng.uniform(1.4, 1.8), offset + rng.uniform(4, 50))
        ry = rng.uniform(-np.pi, np.pi)
        if name == "DontCare":
            gts.append(_object(name, bbox, (-1000.0, -1000.0, -1000.0), -10.0, -1.0, -1))
            if rng.random() < 0.5:  # a detection inside the DontCare region
                cls = str(rng.choice(CLASSES))
                inner = (bbox[0] + 1, bbox[1] + 1, bbox[2] - 1, bbox[3] - 1)
                dets.append(_object(cls, inner, location, ry, score=float(rng.uniform(0, 1))))
            continue
        truncated = float(rng.choice([0.0, 0.15, 0.3, 0.5, rng.uniform(0, 0.6)]))
        gts.append(_object(name, bbox, location, ry, truncated, int(rng.integers(0, 4))))
        for _ in range(rng.integers(0, 3)):
            jitter = rng.normal(0, 3, 4)
            moved = (location[0] + rng.normal(0, 0.2), location[1] + rng.normal(0, 0.05), location[2] + rng.normal(0, 0.3))
            cls = name if rng.random() < 0.8 else str(rng.choice(CLASSES))
            dims = tuple(float(v) * rng.uniform(0.9, 1.1) for v in DIMS[name])
            dets.append(_object(cls, tuple(np.add(bbox, jitter)), moved, ry + rng.normal(0, 0.2),
                                score=float(rng.choice([rng.uniform(0, 1), 0.5])), dims=dims))
    for _ in range(rng.integers(0, 3)):
        x1, y1 = rng.uniform(0, 1100), rng.uniform(100, 250)
        cls = str(rng.choice(CLASSES))
        dets.append(_object(cls, (x1, y1, x1 + 60, y1 + rng.uniform(15, 90)),
                            (offset + rng.uniform(-15, 15), 1.6, offset + rng.uniform(4, 50)), rng.uniform(-3, 3),
                            score=float(rng.uniform(0, 1))))
    return _labels(gts), _labels(dets)


@pytest.mark.parametrize("seed", range(5))
def test_random_frames_agree_with_twin(seed):
    rng = np.random.default_rng(seed)
    frames = [_random_frame(rng) for _ in range(12)]
    _assert_agrees([g for g, _ in frames], [d for _, d in frames])


def test_huge_coordinates_agree_with_twin():
    rng = np.random.default_rng(7)
    frames = [_random_frame(rng, offset=1e5) for _ in range(6)]
    _assert_agrees([g for g, _ in frames], [d for _, d in frames], metrics_to_check=("bev", "3d"))


def test_no_ground_truth_and_no_detections():
    empty = _labels([])
    metrics = _assert_agrees([empty, empty], [empty, empty])
    assert metrics.mean_ap("3d") == 0.0
    car = _object("Car", (100, 100, 200, 160), (0.0, 1.6, 10.0), score=0.9)
    metrics = _assert_agrees([empty], [_labels([car])])
    assert metrics.get("Car", "3d", "easy").ap_r11 == 0.0
    metrics = _assert_agrees([_labels([_object("Car", (100, 100, 200, 160), (0.0, 1.6, 10.0))])], [empty])
    assert metrics.get("Car", "bev", "moderate").num_gt == 1 and metrics.get("Car", "bev", "moderate").ap_r40 == 0.0


def test_hand_computed_precision_curve():
    """4 valid cars; TPs scored 0.9, 0.7, 0.5, FPs 0.8, 0.6 -> thresholds 0.9, 0.7, 0.5 with
    precision 1, 2/3, 3/5 (recall 1/4, 2/4, 3/4): R40 = (2/3 + 3/5) / 40, R11 = 1 / 11."""
    cars = [_object("Car", (100 * i, 100, 100 * i + 80, 160), (4.0 * i, 1.6, 20.0)) for i in range(4)]
    hits = [_object("Car", c.bbox, c.location, score=s) for c, s in zip(cars[:3], (0.9, 0.7, 0.5))]
    misses = [_object("Car", (900, 100, 980, 160), (30.0, 1.6, 40.0 + k * 5), score=s) for k, s in enumerate((0.8, 0.6))]
    ground_truth = [_labels(cars[:2]), _labels(cars[2:])]
    detections = [_labels([hits[0], misses[0], hits[1]]), _labels([hits[2], misses[1]])]
    metrics = _assert_agrees(ground_truth, detections)
    for metric in ("bbox", "bev", "3d"):
        item = metrics.get("Car", metric, "easy")
        np.testing.assert_allclose(item.precision[:4], [1.0, 2 / 3, 3 / 5, 0.0])
        np.testing.assert_allclose(item.recall[:3], [0.75, 0.75, 0.75])  # made monotone from the right
        assert item.ap_r40 == pytest.approx((2 / 3 + 3 / 5) / 40 * 100)
        assert item.ap_r11 == pytest.approx(100 / 11)
    assert metrics.get("Car", "aos", "easy").ap_r40 == pytest.approx((2 / 3 + 3 / 5) / 40 * 100)


def test_difficulty_neighbours_dontcare_and_strict_overlap():
    """A 30 px car (ignored when easy, valid when moderate), a van under a Car detection (never
    a TP nor an FP), a Car detection in a DontCare region (not an FP in 2D, an FP in 3D) and a
    pedestrian detection at exactly IoU 0.5 (not a match: overlaps must exceed the minimum)."""
    small = _object("Car", (100, 100, 180, 130), (0.0, 1.6, 30.0))
    van = _object("Van", (300, 100, 400, 170), (5.0, 1.6, 15.0))
    dontcare = _object("DontCare", (600, 100, 700, 200), (-1000.0, -1000.0, -1000.0), -10.0, -1.0, -1)
    pedestrian = _object("Pedestrian", (800, 100, 840, 200), (8.0, 2.0, 12.0), dims=(2.0, 1.0, 1.0))
    ground_truth = [_labels([small, van, dontcare, pedestrian])]
    half = _object("Pedestrian", (800, 100, 840, 200), (8.0, 2.0, 12.0), dims=(1.0, 1.0, 1.0), score=0.7)
    detections = [_labels([
        _object("Car", small.bbox, small.location, score=0.9), _object("Car", van.bbox, van.location, score=0.8),
        _object("Car", (610, 110, 690, 190), (-5.0, 1.6, 25.0), score=0.95), half,
    ])]
    metrics = _assert_agrees(ground_truth, detections)
    assert metrics.get("Car", "bbox", "easy").num_gt == 0
    moderate_2d, moderate_3d = metrics.get("Car", "bbox", "moderate"), metrics.get("Car", "3d", "moderate")
    assert moderate_2d.num_gt == 1 and moderate_2d.precision[0] == 1.0
    assert moderate_3d.precision[0] == 0.5  # the DontCare detection is an FP in 3D
    assert metrics.get("Pedestrian", "3d", "easy").ap_r11 == 0.0  # 3D IoU exactly 0.5
    assert metrics.get("Pedestrian", "bev", "easy").ap_r11 == pytest.approx(100 / 11)  # BEV IoU 1


def test_overlap_exactly_at_the_minimum_never_matches():
    """3D IoU exactly 0.5 (a 1 m pedestrian box in a 2 m one): not a match in the threshold
    pass (the best-scored candidate is the perfect box) nor in the counting pass (FP, FN)."""
    def tall(x):
        return _object("Pedestrian", (500 + 50 * x, 100, 540 + 50 * x, 200), (x, 2.0, 12.0), dims=(2.0, 1.0, 1.0))

    def half(x, score):
        return _object("Pedestrian", tall(x).bbox, (x, 2.0, 12.0), dims=(1.0, 1.0, 1.0), score=score)

    def copy(x, score):
        return _object("Pedestrian", tall(x).bbox, (x, 2.0, 12.0), dims=(2.0, 1.0, 1.0), score=score)

    metrics = _assert_agrees([_labels([tall(8.0)])], [_labels([half(8.0, 0.9), copy(8.0, 0.6)])])
    item = metrics.get("Pedestrian", "3d", "easy")
    assert (item.precision[0], item.recall[0]) == (0.5, 1.0)
    metrics = _assert_agrees([_labels([tall(0.0), tall(-8.0)])], [_labels([half(0.0, 0.9), copy(-8.0, 0.8)])])
    item = metrics.get("Pedestrian", "3d", "easy")
    assert (item.precision[0], item.recall[0]) == (0.5, 0.5)


def test_thresholds_follow_recall_steps():
    assert kitti_thresholds(np.ones(5), 5).tolist() == [1.0] * 5
    assert len(kitti_thresholds(np.ones(80), 80)) == 41
    assert len(kitti_thresholds(np.linspace(0, 1, 500), 1000)) in (20, 21)  # recall 0.5: half the steps
    scores = np.random.default_rng(0).random(300)
    for num_gt in (300, 350, 1000):
        assert kitti_thresholds(scores.copy(), num_gt).tolist() == _twin_thresholds(scores.tolist(), num_gt)


# ------------------------------------------------------------- real KITTI
def _real_frames():
    if not REALDATA.is_dir():
        pytest.skip(f"real KITTI sample not found at {REALDATA}")
    ids = sorted(p.stem for p in (REALDATA / "label_2").glob("*.txt"))
    ground_truth = [read_label_file(REALDATA / "label_2" / f"{i}.txt", with_scores=False) for i in ids]
    detections = []
    for frame in ground_truth:
        keep = np.array([n != "DontCare" for n in frame.names], bool)
        detections.append(KittiLabels([n for n, k in zip(frame.names, keep) if k], frame.truncated[keep],
                                      frame.occluded[keep], frame.alpha[keep], frame.bbox[keep],
                                      frame.dimensions_hwl[keep], frame.location[keep], frame.rotation_y[keep],
                                      np.ones(int(keep.sum()))))
    return ids, ground_truth, detections


def test_real_kitti_ground_truth_as_detections():
    """Perfect detections score the benchmark's maximum: (n - 1) / 40 (R40) with n <= 40 valid
    boxes, as few thresholds exist; repeated to >= 80 boxes per class, 100 for every class with
    valid boxes. The twin agrees on the frames as they are."""
    _, ground_truth, detections = _real_frames()
    metrics = _assert_agrees(ground_truth, detections)
    for cls in CLASSES:
        for difficulty in DIFFICULTIES:
            for metric in ("bbox", "bev", "3d", "aos"):
                item = metrics.get(cls, metric, difficulty)
                n = item.num_gt
                assert item.ap_r40 == pytest.approx(max(n - 1, 0) / 40 * 100)
                assert item.ap_r11 == pytest.approx(math.ceil(n / 4) / 11 * 100)
    assert metrics.get("Car", "3d", "moderate").num_gt > 0 and metrics.get("Pedestrian", "3d", "easy").num_gt > 0

    smallest = min(m.num_gt for m in metrics.results if m.num_gt > 0)
    repeat = math.ceil(80 / smallest)
    metrics = evaluate_kitti(ground_truth * repeat, detections * repeat)
    for item in metrics.results:
        assert item.ap_r40 == pytest.approx(100.0 if item.num_gt else 0.0), (item.class_name, item.metric)
        assert item.ap_r11 == pytest.approx(100.0 if item.num_gt else 0.0)


def test_real_kitti_label_folder_against_result_files(tmp_path):
    ids, ground_truth, detections = _real_frames()
    results = tmp_path / "results" / "data"
    for frame_id, frame in zip(ids, detections):
        objects = [KittiObject(n, -1.0, -1, float(a), tuple(b), tuple(d), tuple(loc), float(r), 1.0)
                   for n, a, b, d, loc, r in zip(frame.names, frame.alpha, frame.bbox, frame.dimensions_hwl,
                                                 frame.location, frame.rotation_y)]
        write_kitti_labels(results / f"{frame_id}.txt", objects)
    from_files = evaluate_label_dirs(REALDATA / "label_2", tmp_path / "results")
    in_memory = evaluate_kitti(ground_truth, detections)
    assert from_files.to_json() == in_memory.to_json()


# --------------------------------------------------------- files and errors
def test_results_dir_entry_point_and_errors(tmp_path):
    root = tmp_path / "kitti"
    car = _object("Car", (100, 100, 200, 170), (1.0, 1.6, 12.0))
    for frame_id in ("000000", "000001", "000002"):
        write_kitti_labels(root / "training" / "label_2" / f"{frame_id}.txt", [car])
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "val.txt").write_text("000001\n000002\n")
    results = tmp_path / "results"
    write_kitti_labels(results / "000001.txt", [_object("Car", car.bbox, car.location, score=0.9)])
    write_kitti_labels(results / "000002.txt", [])

    metrics = evaluate_results_dir(root, results, "val")
    assert metrics.num_frames == 2 and metrics.get("Car", "3d", "moderate").num_gt == 2
    assert metrics.get("Car", "3d", "moderate").ap_r11 == pytest.approx(100 / 11)
    summary = metrics.to_json()
    assert summary["per_class"]["Car"]["3d"]["moderate"]["num_gt"] == 2
    assert summary["mAP_3d_moderate_R11"] == pytest.approx(100 / 33)
    assert metrics.table().row_count == 3 * 4 + 4

    with pytest.raises(ValueError, match="no result file"):
        evaluate_results_dir(root, results, "training")
    write_kitti_labels(results / "000003.txt", [])
    with pytest.raises(ValueError, match="not frames of the split"):
        evaluate_results_dir(root, results, "val")
    (results / "000003.txt").unlink()
    write_kitti_labels(results / "000002.txt", [car])
    with pytest.raises(ValueError, match="16th column"):
        evaluate_results_dir(root, results, "val")
    with pytest.raises(ValueError, match="no labels"):
        evaluate_results_dir(root, results, "test")
    with pytest.raises(FileNotFoundError, match="ImageSets"):
        evaluate_results_dir(root, results, "minival")
    with pytest.raises(ValueError, match="frames"):
        evaluate_kitti([_labels([])], [])
