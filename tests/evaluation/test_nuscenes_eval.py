"""nuScenes detection evaluation against the official devkit's ``DetectionEval``.

One simulated dataset (two val scenes and one train scene of three keyframes, with extra tracks
for every class, range limits, zero-point boxes and bicycle racks) is written once; for each
kind of prediction our NDS, mAP, per-class AP per distance, TP errors and every curve must
equal the devkit's to 1e-6. Also: the matching against an explicit greedy loop, the attribute
rule against its if-chain, the results round trip, input validation and tools/evaluate.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nuscenes_eval_fixtures import (  # noqa: E402
    VERSION, as_detections, ground_truth_detections, perturbed, simulated_scenes,
)
from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.data.readers.nuscenes import NuScenesReader
from pointformer.data.synthetic.nuscenes_writer import write_nuscenes
from pointformer.evaluation.matching import greedy_match_thresholds
from pointformer.evaluation.nuscenes import (
    DetectionConfig, NuScenesGroundTruth, evaluate_nuscenes, evaluate_results_file, evaluate_tables,
)
from pointformer.evaluation.nuscenes_boxes import ATTRIBUTE_NAMES, BoxTable, DEVKIT_DETECTION_NAMES, TP_METRICS
from pointformer.evaluation.nuscenes_results import (
    DEFAULT_ATTRIBUTE, attribute_for, default_attributes, load_results, read_results, results_document, write_results,
)
from pointformer.structures import Boxes3D, Detections

devkit = pytest.importorskip("nuscenes")
from nuscenes import NuScenes  # noqa: E402
from nuscenes.eval.common.config import config_factory  # noqa: E402
from nuscenes.eval.common.data_classes import EvalBoxes  # noqa: E402
from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, load_gt  # noqa: E402
from nuscenes.eval.detection.data_classes import DetectionBox  # noqa: E402
from nuscenes.eval.detection.evaluate import DetectionEval  # noqa: E402

TOLERANCE = 1e-6
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Dataset:
    root: Path
    nusc: NuScenes
    infos: list
    ground_truth: NuScenesGroundTruth


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("nuscenes_eval")
    write_nuscenes(root, simulated_scenes(), VERSION, seed=3)
    infos = NuScenesReader(root, VERSION, split="val", max_sweeps=0).infos
    return Dataset(root, NuScenes(VERSION, str(root), verbose=False), infos,
                   NuScenesGroundTruth.from_tables(root, VERSION, "val"))


def devkit_evaluate(data: Dataset, results_path: Path, output_dir: Path):
    evaluation = DetectionEval(data.nusc, config_factory("detection_cvpr_2019"), str(results_path), eval_set="val",
                               output_dir=str(output_dir), verbose=False)
    return evaluation, *evaluation.evaluate()


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE


def assert_agrees(ours, metrics, metric_data) -> None:
    """Every number of the devkit's summary and every curve of its metric data."""
    theirs = metrics.serialize()
    summary = ours.to_summary()
    for name in DEVKIT_DETECTION_NAMES:
        for threshold, ap in theirs["label_aps"][name].items():
            assert same(summary["label_aps"][name][str(threshold)], ap), (name, threshold)
        for metric in TP_METRICS:
            ours_error, their_error = summary["label_tp_errors"][name][metric], theirs["label_tp_errors"][name][metric]
            assert same(ours_error, their_error), (name, metric)
        assert same(summary["mean_dist_aps"][name], theirs["mean_dist_aps"][name])
        for threshold in (0.5, 1.0, 2.0, 4.0):
            curve, md = ours.curves[(name, threshold)], metric_data[(name, threshold)]
            np.testing.assert_allclose(curve.precision, md.precision, atol=TOLERANCE)
            np.testing.assert_allclose(curve.confidence, md.confidence, atol=TOLERANCE)
            for metric in TP_METRICS:
                np.testing.assert_allclose(curve.errors[metric], getattr(md, metric), atol=TOLERANCE, equal_nan=True)
    for metric in TP_METRICS:
        assert same(summary["tp_errors"][metric], theirs["tp_errors"][metric]), metric
        assert same(summary["tp_scores"][metric], theirs["tp_scores"][metric]), metric
    assert same(summary["mean_ap"], theirs["mean_ap"])
    assert same(summary["nd_score"], theirs["nd_score"])


# ------------------------------------------------------------------ scenarios
def scenario_perfect(infos, rng):
    detections = {t: as_detections(b, n, np.ones(len(b))) for t, (b, n, _) in ground_truth_detections(infos).items()}
    return detections, None


def scenario_perturbed(infos, rng):
    return perturbed(infos, rng)


def scenario_heavy_noise(infos, rng):
    return perturbed(infos, rng, keep=0.6, noise=1.5, false_positives=30, wrong_attributes=0.6, flip=0.4)


def scenario_partial(infos, rng):
    detections, attributes = perturbed(infos, rng)
    for token in list(detections)[::2]:
        detections[token] = Detections.empty()
        attributes[token] = []
    return detections, attributes


def scenario_one_class(infos, rng):
    detections, attributes = perturbed(infos, rng)
    car = NUSCENES_DETECTION_CLASSES.index("car")
    for token, found in detections.items():
        mask = found.labels == car
        detections[token] = found.select(mask)
        attributes[token] = [a for a, m in zip(attributes[token], mask.tolist()) if m]
    return detections, attributes


def scenario_out_of_range(infos, rng):
    """Boxes scattered 0-80 m, many beyond their class range, and GT moved past it."""
    detections, attributes = perturbed(infos, rng, false_positives=80)
    for found in detections.values():
        far = torch.from_numpy(rng.random(len(found)) < 0.3)
        found.boxes.tensor[far, :2] *= 1.8
    return detections, attributes


def scenario_score_ties(infos, rng):
    """Scores on a 0.25 grid (exact ties within and across samples), exact-zero scores included,
    and two copies of some boxes (same score, same place)."""
    detections, attributes = perturbed(infos, rng)
    for token, found in detections.items():
        copies = found.select(torch.arange(0, len(found), 3))
        merged = Detections(Boxes3D.cat([found.boxes, copies.boxes]), torch.cat([found.scores, copies.scores]),
                            torch.cat([found.labels, copies.labels]))
        merged.scores.copy_(torch.round(merged.scores * 4) / 4)
        detections[token] = merged
        attributes[token] = attributes[token] + [attributes[token][i] for i in range(0, len(found), 3)]
    return detections, attributes


def scenario_duplicates(infos, rng):
    """Four noisy copies of every box (crowds of candidates that contend for the same ground truth)."""
    detections = {}
    for token, (boxes, names, _) in ground_truth_detections(infos).items():
        copies = np.repeat(boxes, 4, axis=0)
        copies[:, :2] += rng.normal(0, 0.8, (len(copies), 2))
        detections[token] = as_detections(copies, [n for n in names for _ in range(4)], rng.random(len(copies)))
    return detections, None


def scenario_no_velocity(infos, rng):
    detections, attributes = perturbed(infos, rng)
    return {t: Detections(d.boxes.without_velocity(), d.scores, d.labels) for t, d in detections.items()}, attributes


def scenario_yaw_flips(infos, rng):
    """Ground truth with every yaw turned by pi: barriers score AOE 0 (period pi), others pi."""
    detections = {}
    for token, (boxes, names, _) in ground_truth_detections(infos).items():
        boxes = boxes.copy()
        boxes[:, 6] += np.pi
        detections[token] = as_detections(boxes, names, rng.random(len(boxes)))
    return detections, None


SCENARIOS = {
    "perfect": scenario_perfect, "perturbed": scenario_perturbed, "heavy_noise": scenario_heavy_noise,
    "partial": scenario_partial, "one_class": scenario_one_class, "out_of_range": scenario_out_of_range,
    "score_ties": scenario_score_ties, "duplicates": scenario_duplicates, "no_velocity": scenario_no_velocity,
    "yaw_flips": scenario_yaw_flips,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_agrees_with_devkit(dataset, tmp_path, name):
    rng = np.random.default_rng(sorted(SCENARIOS).index(name))
    detections, attributes = SCENARIOS[name](dataset.infos, rng)
    path = write_results(tmp_path / "results.json", detections, dataset.infos, attributes=attributes)
    ours = evaluate_results_file(dataset.root, path, "val")
    _, metrics, metric_data = devkit_evaluate(dataset, path, tmp_path / "devkit")
    assert_agrees(ours, metrics, metric_data)
    # The in-memory path is the file path without the file.
    in_memory = evaluate_nuscenes(dataset.ground_truth, detections, attributes=attributes).to_summary()
    from_file = ours.to_summary()
    in_memory.pop("eval_time"), from_file.pop("eval_time")
    assert json.dumps(in_memory) == json.dumps(from_file)


def test_scenarios_reach_what_they_aim_at(dataset, tmp_path):
    """Guards against vacuous agreement: the perfect run scores close to 1 (its boxes of
    zero-point ground truth are false positives), the flipped run separates barriers from the
    rest, the velocity-less run scores AVE 1."""
    rng = np.random.default_rng(0)
    perfect = evaluate_nuscenes(dataset.ground_truth, scenario_perfect(dataset.infos, rng)[0])
    assert perfect.mean_ap > 0.95 and perfect.tp_errors["trans_err"] < 1e-6 and perfect.tp_errors["scale_err"] < 1e-9
    flipped = evaluate_nuscenes(dataset.ground_truth, scenario_yaw_flips(dataset.infos, rng)[0])
    # (not exactly 0 / pi: the info records' yaw is projected on the tilted sample frame)
    assert flipped.label_tp_errors["barrier"]["orient_err"] < 1e-2
    assert flipped.label_tp_errors["car"]["orient_err"] == pytest.approx(np.pi, abs=1e-2)
    assert math.isnan(flipped.label_tp_errors["traffic_cone"]["orient_err"])
    no_velocity = evaluate_nuscenes(dataset.ground_truth, scenario_no_velocity(dataset.infos, rng)[0])
    assert no_velocity.tp_errors["vel_err"] == pytest.approx(1.0)


def test_submission_level_details_agree(dataset, tmp_path):
    """What a hand-written file can hold: non-unit quaternions, NaN velocities, ``num_pts`` 0
    (dropped), keys in another order, samples listed in another order, boxes in a rack."""
    rng = np.random.default_rng(11)
    detections, attributes = perturbed(dataset.infos, rng)
    document = results_document(detections, dataset.infos, attributes=attributes)
    results = {}
    for token in reversed(list(document["results"])):
        boxes = document["results"][token]
        for index, box in enumerate(boxes):
            if index % 5 == 1:
                box["rotation"] = [2.5 * v for v in box["rotation"]]
            if index % 7 == 2:
                box["velocity"] = [float("nan"), float("nan")]
            if index % 9 == 3:
                box["num_pts"] = 0
            elif index % 9 == 4:
                box["num_pts"] = 3
        results[token] = [dict(reversed(list(b.items()))) for b in boxes]
    racks = dataset.ground_truth.bike_racks
    token = dataset.ground_truth.sample_tokens[int(racks.sample[0])]
    for name in ("bicycle", "motorcycle", "car"):
        results[token].append({"sample_token": token, "translation": racks.translation[0].tolist(),
                               "size": [0.6, 1.8, 1.2], "rotation": racks.rotation[0].tolist(), "velocity": [0.0, 0.0],
                               "detection_name": name, "detection_score": 0.7, "attribute_name": ""})
    path = tmp_path / "edited.json"
    path.write_text(json.dumps({"meta": document["meta"], "results": results}))
    evaluation, metrics, metric_data = devkit_evaluate(dataset, path, tmp_path / "devkit")
    assert_agrees(evaluate_results_file(dataset.root, path, "val"), metrics, metric_data)
    assert len(evaluation.pred_boxes[token]) < len(results[token])


def test_all_empty_predictions_match_devkit_accumulation(dataset, tmp_path):
    """The devkit cannot load a submission without any box (its filter looks for a box to read
    the class field from); its accumulation of empty predictions is the reference."""
    detections = {t: Detections.empty() for t in dataset.ground_truth.sample_tokens}
    ours = evaluate_nuscenes(dataset.ground_truth, detections)
    one_box = scenario_perfect(dataset.infos, None)[0]
    token = next(t for t, d in one_box.items() if len(d))
    single = {t: (d.select(torch.tensor([0])) if t == token else Detections.empty()) for t, d in one_box.items()}
    path = write_results(tmp_path / "one.json", single, dataset.infos)
    evaluation = DetectionEval(dataset.nusc, config_factory("detection_cvpr_2019"), str(path), eval_set="val",
                               output_dir=str(tmp_path / "devkit"), verbose=False)
    evaluation.pred_boxes = EvalBoxes()
    for sample_token in dataset.ground_truth.sample_tokens:
        evaluation.pred_boxes.add_boxes(sample_token, [])
    metrics, metric_data = evaluation.evaluate()
    assert_agrees(ours, metrics, metric_data)
    assert ours.mean_ap == 0.0 and ours.nd_score == 0.0
    with pytest.raises(Exception, match="Invalid box type"):  # the devkit raises a bare Exception
        devkit_evaluate(dataset, write_results(tmp_path / "empty.json", detections, dataset.infos), tmp_path / "x")


def test_more_than_max_boxes_is_refused_like_the_devkit(dataset, tmp_path):
    detections, _ = perturbed(dataset.infos, np.random.default_rng(3))
    token = dataset.ground_truth.sample_tokens[1]
    boxes = np.tile(np.array([[5.0, 0, 0, 4, 2, 1.5, 0, 0, 0]]), (501, 1))
    boxes[:, 0] += np.arange(501) * 0.01
    detections[token] = as_detections(boxes, ["car"] * 501, np.linspace(0, 1, 501))
    with pytest.raises(ValueError, match=f"{token}.*501 boxes"):
        write_results(tmp_path / "r.json", detections, dataset.infos)
    with pytest.raises(ValueError, match=f"{token}.*501 boxes"):
        evaluate_nuscenes(dataset.ground_truth, detections)
    document = results_document(detections, dataset.infos, max_boxes_per_sample=600)
    path = tmp_path / "too_many.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"{token}.*501 boxes"):
        evaluate_results_file(dataset.root, path, "val")
    with pytest.raises(AssertionError):
        devkit_evaluate(dataset, path, tmp_path / "devkit")
    # 500 is allowed.
    detections[token] = detections[token].select(torch.arange(500))
    evaluate_nuscenes(dataset.ground_truth, detections)


# --------------------------------------------------------------- ground truth
def test_ground_truth_and_filters_match_devkit(dataset):
    config = config_factory("detection_cvpr_2019")
    theirs = add_center_dist(dataset.nusc, load_gt(dataset.nusc, "val", DetectionBox))
    ours = dataset.ground_truth
    assert ours.sample_tokens == theirs.sample_tokens
    boxes = ours.boxes
    for index, token in enumerate(ours.sample_tokens):
        rows = np.nonzero(boxes.sample == index)[0]
        expected = theirs[token]
        assert len(rows) == len(expected)
        for row, box in zip(rows, expected):
            np.testing.assert_array_equal(boxes.translation[row], box.translation)
            np.testing.assert_array_equal(boxes.size[row], box.size)
            np.testing.assert_array_equal(boxes.rotation[row], box.rotation)
            np.testing.assert_array_equal(boxes.velocity[row], box.velocity)
            assert boxes.num_pts[row] == box.num_pts
            assert DEVKIT_DETECTION_NAMES[boxes.label[row]] == box.detection_name
            assert (ATTRIBUTE_NAMES[boxes.attribute[row]] if boxes.attribute[row] >= 0 else "") == box.attribute_name
        np.testing.assert_array_equal(ours.ego_translation[index][:2],
                                      np.array(expected[0].translation[:2]) - np.array(expected[0].ego_translation[:2]))
    # The filters: the same boxes survive, and each filter removes some here.
    kept = filter_eval_boxes(dataset.nusc, theirs, config.class_range)
    from pointformer.evaluation.nuscenes import ego_distance, filter_boxes, in_bike_rack

    ours_kept = filter_boxes(boxes, ours, DetectionConfig(class_range=dict(config.class_range)))
    ours_rows = {(ours.sample_tokens[s], tuple(t)) for s, t in zip(ours_kept.sample, ours_kept.translation.tolist())}
    assert ours_rows == {(b.sample_token, tuple(b.translation)) for b in kept.all}
    ranges = np.array([config.class_range[DEVKIT_DETECTION_NAMES[label]] for label in boxes.label])
    assert (ego_distance(boxes, ours.ego_translation) >= ranges).any()
    assert ((boxes.num_pts == 0) & (ego_distance(boxes, ours.ego_translation) < ranges)).any()
    assert in_bike_rack(boxes, ours.bike_racks).any() and len(ours.bike_racks) > 0
    assert np.isnan(boxes.velocity).any() and (boxes.attribute < 0).any()


def test_ground_truth_from_infos_is_close_to_tables(dataset):
    """The info records' path: same samples and boxes (centres exact, yaw within the ego tilt)."""
    tables, infos = dataset.ground_truth, NuScenesGroundTruth.from_infos(dataset.infos)
    assert sorted(infos.sample_tokens) == sorted(tables.sample_tokens)
    order = [infos.sample_tokens.index(t) for t in tables.sample_tokens]
    for index in range(len(tables.sample_tokens)):
        a = tables.boxes.select(tables.boxes.sample == index)
        b = infos.boxes.select(infos.boxes.sample == order[index])
        key_a, key_b = np.lexsort(np.round(a.translation, 3).T), np.lexsort(np.round(b.translation, 3).T)
        np.testing.assert_allclose(a.translation[key_a], b.translation[key_b], atol=1e-6)
        np.testing.assert_allclose(a.size[key_a], b.size[key_b], atol=1e-9)
        np.testing.assert_array_equal(a.label[key_a], b.label[key_b])
        np.testing.assert_array_equal(a.attribute[key_a], b.attribute[key_b])
        yaw_error = np.abs(np.angle(np.exp(1j * (a.yaw[key_a] - b.yaw[key_b]))))
        assert yaw_error.max() < 0.02
    assert len(infos.bike_racks) == len(tables.bike_racks)


# ------------------------------------------------------------------- matching
def greedy_loop(pred_group, pred_xy, pred_rank, gt_group, gt_xy, threshold):
    """The devkit's loop, written out: by rank, nearest untaken same-group ground truth (first on ties)."""
    match = np.full(len(pred_group), -1)
    taken = set()
    for p in np.argsort(pred_rank):
        best, best_distance = None, np.inf
        for g in range(len(gt_group)):
            if gt_group[g] == pred_group[p] and g not in taken:
                distance = np.linalg.norm(pred_xy[p] - gt_xy[g])
                if distance < best_distance:
                    best, best_distance = g, distance
        if best_distance < threshold:
            taken.add(best)
            match[p] = best
    return match


@pytest.mark.parametrize("case", ["random", "crowded", "grid_ties", "empty_gt", "empty_pred", "single", "huge"])
def test_greedy_matching_matches_the_loop(case):
    rng = np.random.default_rng(hash(case) % 2**32)
    num_pred, num_gt, groups, spread = {"random": (300, 120, 6, 20.0), "crowded": (400, 60, 2, 3.0),
                                        "grid_ties": (200, 80, 3, 4.0), "empty_gt": (30, 0, 3, 5.0),
                                        "empty_pred": (0, 30, 3, 5.0), "single": (1, 1, 1, 0.5),
                                        "huge": (50, 40, 2, 5.0)}[case]
    pred_xy, gt_xy = rng.uniform(0, spread, (num_pred, 2)), rng.uniform(0, spread, (num_gt, 2))
    if case == "grid_ties":  # exact distance ties and distances exactly at the thresholds
        pred_xy, gt_xy = np.round(pred_xy * 2) / 2, np.round(gt_xy * 2) / 2
    if case == "huge":
        pred_xy, gt_xy = pred_xy + 1e7, gt_xy + 1e7
    pred_group, gt_group = rng.integers(0, groups, num_pred), rng.integers(0, groups, num_gt)
    rank = rng.permutation(num_pred)
    ours = greedy_match_thresholds(pred_group, pred_xy, rank, gt_group, gt_xy, (0.5, 1.0, 2.0, 4.0))
    for threshold, match in ours.items():
        np.testing.assert_array_equal(match, greedy_loop(pred_group, pred_xy, rank, gt_group, gt_xy, threshold))
    if case == "crowded":
        assert (ours[4.0] >= 0).sum() > 0.8 * num_gt


# ------------------------------------------------------------- results files
def test_attribute_rule_matches_its_if_chain():
    rng = np.random.default_rng(1)
    velocity = rng.normal(0, 0.3, (500, 2))
    velocity[::17] = np.nan
    velocity[5] = [0.2, 0.0]  # exactly 0.2 m/s is not moving
    labels = rng.integers(0, len(NUSCENES_DETECTION_CLASSES), 500)

    def mmdet3d_rule(name, v):
        if np.sqrt(v[0] ** 2 + v[1] ** 2) > 0.2:
            if name in ["car", "construction_vehicle", "bus", "truck", "trailer"]:
                return "vehicle.moving"
            if name in ["bicycle", "motorcycle"]:
                return "cycle.with_rider"
            return DEFAULT_ATTRIBUTE[name]
        if name in ["pedestrian"]:
            return "pedestrian.standing"
        if name in ["bus"]:
            return "vehicle.stopped"
        return DEFAULT_ATTRIBUTE[name]

    indices = default_attributes(labels, velocity, NUSCENES_DETECTION_CLASSES)
    for label, v, index in zip(labels, velocity, indices):
        expected = mmdet3d_rule(NUSCENES_DETECTION_CLASSES[label], v)
        assert (ATTRIBUTE_NAMES[index] if index >= 0 else "") == expected
        assert attribute_for(NUSCENES_DETECTION_CLASSES[label], v) == expected


def test_write_read_round_trip(dataset, tmp_path):
    detections, attributes = perturbed(dataset.infos, np.random.default_rng(4))
    token = dataset.ground_truth.sample_tokens[0]
    detections[token] = Detections(detections[token].boxes.without_velocity(), detections[token].scores,
                                   detections[token].labels)
    path = write_results(tmp_path / "r.json", detections, dataset.infos, attributes=attributes)
    document = json.loads(path.read_text())
    assert document["meta"]["use_lidar"] is True and set(document["results"]) == set(detections)
    box = document["results"][token][0]
    assert set(box) == {"sample_token", "translation", "size", "rotation", "velocity", "detection_name",
                        "detection_score", "attribute_name"}
    assert box["attribute_name"] == attributes[token][0]
    back = read_results(path, dataset.infos)
    assert list(back) == [info.sample_id for info in dataset.infos]
    for name, found in detections.items():
        again = back[name]
        original = found.boxes.tensor.double().numpy()
        restored = again.boxes.tensor.double().numpy()
        np.testing.assert_allclose(restored[:, :6], original[:, :6], atol=2e-4)
        yaw_error = np.angle(np.exp(1j * (restored[:, 6] - original[:, 6])))
        assert np.abs(yaw_error).max() < 1e-5
        assert (restored[:, 6] >= -np.pi).all() and (restored[:, 6] < np.pi).all()
        if original.shape[1] == 9:
            np.testing.assert_allclose(restored[:, 7:], original[:, 7:], atol=1e-4)
        else:
            assert np.isnan(restored[:, 7:]).all()
        np.testing.assert_allclose(again.scores.numpy(), found.scores.numpy(), atol=1e-7)
        np.testing.assert_array_equal(again.labels.numpy(), found.labels.numpy())


def test_write_uses_the_speed_rule_for_attributes(dataset, tmp_path):
    info = dataset.infos[0]
    boxes = np.array([[5, 0, 0, 4, 2, 1.5, 0, 3.0, 0], [8, 2, 0, 4, 2, 1.5, 0, 0.05, 0], [6, 6, 0, 1, 1, 2, 0, 0, 0]])
    detections = {i.sample_id: Detections.empty() for i in dataset.infos}
    detections[info.sample_id] = as_detections(boxes, ["car", "bus", "pedestrian"], np.ones(3))
    document = results_document(detections, dataset.infos)
    names = [b["attribute_name"] for b in document["results"][info.sample_id]]
    assert names == ["vehicle.moving", "vehicle.stopped", "pedestrian.standing"]


def _valid_document(dataset):
    detections, _ = perturbed(dataset.infos, np.random.default_rng(9))
    return results_document(detections, dataset.infos)


@pytest.mark.parametrize("edit, message", [
    (lambda d, t: d["results"].pop(t), r"1 of \d+ samples have no results"),
    (lambda d, t: d["results"].update({"not-a-token": []}), "not evaluated here.*not-a-token"),
    (lambda d, t: d["results"][t][0].pop("detection_score"), "no field 'detection_score'"),
    (lambda d, t: d["results"][t][0].update({"detection_scores": d["results"][t][0].pop("detection_score")}),
     "found 'detection_scores'"),
    (lambda d, t: d["results"][t][0].update({"sample_token": "other"}), "listed under"),
    (lambda d, t: d["results"][t][0].update({"detection_name": "tram"}), "detection_name 'tram'"),
    (lambda d, t: d["results"][t][0].update({"attribute_name": "vehicle.flying"}), "attribute_name"),
    (lambda d, t: d["results"][t][0].update({"detection_score": float("nan")}), "detection_score must be a finite"),
    (lambda d, t: d["results"][t][0].update({"size": [1.0, 0.0, 1.0]}), "size must be positive"),
    (lambda d, t: d["results"][t][0].update({"rotation": [0, 0, 0, 0]}), "zero quaternion"),
    (lambda d, t: d["results"][t][0].update({"translation": [1.0, 2.0]}), "translation must be 3 numbers"),
    (lambda d, t: d["results"][t][0].update({"num_pts": 1.5}), "num_pts must be an integer"),
    (lambda d, t: d["results"].update({t: {}}), "must be a list of boxes"),
    (lambda d, t: d.pop("meta"), "'meta'"),
    (lambda d, t: d.update({"results": []}), "must map sample tokens"),
])
def test_results_validation_names_the_problem(dataset, edit, message):
    document = _valid_document(dataset)
    token = dataset.ground_truth.sample_tokens[2]
    edit(document, token)
    with pytest.raises(ValueError, match=message) as error:
        load_results(document, dataset.ground_truth.sample_tokens)
    if "results[" in str(error.value):
        assert token in str(error.value)


def test_write_validation(dataset, tmp_path):
    detections, _ = perturbed(dataset.infos, np.random.default_rng(2))
    first, second = (info.sample_id for info in dataset.infos[:2])
    missing = dict(detections)
    missing.pop(first)
    with pytest.raises(ValueError, match=f"no detections entry.*{first}"):
        write_results(tmp_path / "r.json", missing, dataset.infos)
    bad = dict(detections)
    bad[second] = Detections(bad[second].boxes, bad[second].scores, torch.full_like(bad[second].labels, 10))
    with pytest.raises(ValueError, match=f"{second}.*labels must index"):
        write_results(tmp_path / "r.json", bad, dataset.infos)
    bad[second] = Detections(detections[second].boxes.clone(), detections[second].scores, detections[second].labels)
    bad[second].boxes.tensor[0, 0] = float("inf")
    with pytest.raises(ValueError, match=f"{second}.*finite"):
        write_results(tmp_path / "r.json", bad, dataset.infos)
    with pytest.raises(ValueError, match="attributes.*names for"):
        write_results(tmp_path / "r.json", detections, dataset.infos, attributes={first: ["vehicle.moving"] * 999})
    with pytest.raises(ValueError, match="not nuScenes detection classes"):
        write_results(tmp_path / "r.json", detections, dataset.infos, class_names=("car", "tram"))
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------ summary, config
def test_summary_has_the_devkit_file_layout(dataset, tmp_path):
    detections, attributes = perturbed(dataset.infos, np.random.default_rng(5))
    path = write_results(tmp_path / "r.json", detections, dataset.infos, attributes=attributes)
    evaluation, _, _ = devkit_evaluate(dataset, path, tmp_path / "devkit")
    evaluation.main(plot_examples=0, render_curves=False)
    theirs = json.loads((tmp_path / "devkit" / "metrics_summary.json").read_text())
    ours = json.loads(json.dumps(evaluate_results_file(dataset.root, path, "val").to_summary()))

    def layout(value):
        if isinstance(value, dict):
            return {k: layout(v) for k, v in value.items()}
        return type(value).__name__ if not isinstance(value, (int, float)) else "number"

    assert list(ours) == list(theirs)
    assert layout(ours) == layout(theirs)
    assert ours["cfg"] == theirs["cfg"] and ours["meta"] == theirs["meta"]
    details = json.loads((tmp_path / "devkit" / "metrics_details.json").read_text())
    assert set(evaluate_results_file(dataset.root, path, "val").details()) == set(details)


def test_config_reads_the_devkit_config():
    devkit_config = config_factory("detection_cvpr_2019").serialize()
    assert DetectionConfig.from_dict(devkit_config).serialize() == devkit_config
    assert DetectionConfig().serialize() == devkit_config
    with pytest.raises(ValueError, match="dist_th_tp"):
        DetectionConfig(dist_th_tp=3.0)
    with pytest.raises(ValueError, match="unknown classes"):
        DetectionConfig(class_range={"tram": 50})
    with pytest.raises(ValueError, match="missing key 'dist_ths'"):
        DetectionConfig.from_dict({k: v for k, v in devkit_config.items() if k != "dist_ths"})


def test_evaluate_tables_checks_indices(dataset):
    table = BoxTable.empty()
    assert evaluate_tables(dataset.ground_truth, table).mean_ap == 0.0
    bad = BoxTable(sample=np.array([99]), translation=np.zeros((1, 3)), size=np.ones((1, 3)),
                   rotation=np.array([[1.0, 0, 0, 0]]), velocity=np.zeros((1, 2)), label=np.array([0]),
                   score=np.ones(1), attribute=np.array([-1]), num_pts=np.array([-1]))
    with pytest.raises(ValueError, match="sample_tokens"):
        evaluate_tables(dataset.ground_truth, bad)


# ---------------------------------------------------------------------- tool
def _evaluate_tool():
    spec = importlib.util.spec_from_file_location("evaluate_tool", REPO / "tools" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_tool_prints_and_writes(dataset, tmp_path, capsys):
    detections, attributes = perturbed(dataset.infos, np.random.default_rng(6))
    path = write_results(tmp_path / "r.json", detections, dataset.infos, attributes=attributes)
    tool = _evaluate_tool()
    out = tmp_path / "metrics" / "summary.json"
    assert tool.main(["--data", str(dataset.root), "--results", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert "NDS" in printed and "traffic_cone" in printed and f"{summary['nd_score']:.4f}" in printed
    expected = evaluate_results_file(dataset.root, path, "val").to_summary()
    assert summary["nd_score"] == expected["nd_score"]
    assert summary["label_aps"] == json.loads(json.dumps(expected["label_aps"]))


def test_evaluate_tool_reports_bad_paths(dataset, tmp_path, capsys):
    tool = _evaluate_tool()
    assert tool.main(["--data", str(tmp_path / "nowhere"), "--results", str(tmp_path / "r.json")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert tool.main(["--data", str(dataset.root), "--results", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    assert tool.main(["--data", str(dataset.root), "--results", str(tmp_path / "broken.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("benchmark, module, function", [("waymo", "waymo", "evaluate_results_file"),
                                                          ("kitti", "kitti", "evaluate_results_dir")])
def test_evaluate_tool_dispatches_other_benchmarks(tmp_path, monkeypatch, capsys, benchmark, module, function):
    from rich.table import Table

    imported = importlib.import_module(f"pointformer.evaluation.{module}")
    calls = []

    class Metrics:
        def table(self):
            table = Table(title=f"{benchmark}-metrics")
            table.add_column("mAP")
            table.add_row("0.4242")
            return table

        def to_json(self):
            return {"benchmark": benchmark}

    monkeypatch.setattr(imported, function, lambda *args: calls.append(args) or Metrics())
    (tmp_path / "results").mkdir()
    out = tmp_path / "m.json"
    tool = _evaluate_tool()
    argv = ["--data", str(tmp_path), "--results", str(tmp_path / "results"), "--benchmark", benchmark,
            "--split", "validation", "--out", str(out)]
    assert tool.main(argv) == 0
    assert calls == [(tmp_path, tmp_path / "results", "validation")]
    assert "0.4242" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {"benchmark": benchmark}


def test_speed_benchmark_runs_small(tmp_path, monkeypatch, capsys):
    """tools/benchmarks/evaluation.py end to end on one scene (the real run is 150 scenes)."""
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    from benchmarks import evaluation

    rows = evaluation.rows(repeats=1, num_scenes=1, boxes_per_sample=30, data=tmp_path)
    assert [row.name for row in rows] == ["nuScenes eval, files to metrics", "nuScenes eval, filter + match + metrics"]
    assert all(row.seconds > 0 and row.baseline_seconds > 0 for row in rows)
    assert "40 samples" in rows[0].input and "NDS" in capsys.readouterr().out
