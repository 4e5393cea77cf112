"""Our nuScenes writer and reader against the official nuscenes-devkit.

A random dataset (tilted ego poses, a random calibrated-sensor rotation, tilted boxes,
lidarseg) is written with ``write_nuscenes``, loaded with ``nuscenes.NuScenes`` and with
``NuScenesReader``, and every box, merged multi-sweep cloud and label file must agree; the
devkit's detection evaluation must give a perfect score to the ground truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nuscenes")
from nuscenes import NuScenes  # noqa: E402
from nuscenes.eval.common.config import config_factory  # noqa: E402
from nuscenes.eval.detection.evaluate import DetectionEval  # noqa: E402
from nuscenes.utils.data_classes import LidarPointCloud  # noqa: E402
from nuscenes.utils.data_io import load_bin_file  # noqa: E402
from nuscenes_fixtures import assert_box_row_matches, devkit_boxes_in_ours, ground_truth_as_results, random_scene  # noqa: E402

from pointformer.data.classes import NUSCENES_CATEGORY_TO_DETECTION  # noqa: E402
from pointformer.data.readers.nuscenes import (  # noqa: E402
    NuScenesReader, NuScenesTables, box_velocity, ours_points_to_nuscenes_lidar,
)
from pointformer.data.synthetic.nuscenes_writer import write_nuscenes  # noqa: E402
from pointformer.structures.rotation import matrix_to_quaternion, yaw_matrix  # noqa: E402

VERSION = "v1.0-trainval"
SCENE_NAMES = ("scene-0003", "scene-0012")  # both in the official val split
MAX_SWEEPS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(20260101)
    root = tmp_path_factory.mktemp("nuscenes_devkit")
    scenes = [
        random_scene(rng, SCENE_NAMES[0], leading_sweeps=2, num_instances=11, tilt=0.05, box_tilt=0.03),
        random_scene(rng, SCENE_NAMES[1], num_keyframes=3, sweeps_per_keyframe=2, num_instances=11, tilt=0.05),
    ]
    summary = write_nuscenes(root, scenes, VERSION, seed=7)
    nusc = NuScenes(VERSION, str(root), verbose=False)
    return root, scenes, summary, nusc


def test_devkit_loads_every_table(dataset):
    root, scenes, summary, nusc = dataset
    keyframes = sum(sum(s.is_key_frame for s in scene.sweeps) for scene in scenes)
    assert len(nusc.scene) == 2 and [s["name"] for s in nusc.scene] == list(SCENE_NAMES)
    assert len(nusc.sample) == keyframes
    assert len(nusc.sample_data) == sum(len(scene.sweeps) for scene in scenes)
    assert len(nusc.sample_annotation) == sum(len(b) for scene in scenes for b in scene.keyframe_boxes.values())
    assert len(nusc.lidarseg) == keyframes
    for sample in nusc.sample:
        assert set(sample["data"]) == {"LIDAR_TOP"}
    # The devkit walks scenes through first_sample_token / next.
    for scene, name in zip(nusc.scene, SCENE_NAMES):
        tokens, token = [], scene["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
        assert tokens == summary.sample_tokens[name]
        assert tokens[-1] == scene["last_sample_token"] and len(tokens) == scene["nbr_samples"]


def test_boxes_and_velocities_agree_with_devkit(dataset):
    root, _, _, nusc = dataset
    reader = NuScenesReader(root, VERSION, max_sweeps=MAX_SWEEPS)
    assert len(reader) == len(nusc.sample)
    compared = nan_velocities = 0
    for info in reader.infos:
        sample = nusc.get("sample", info.sample_id)
        expected = devkit_boxes_in_ours(nusc, sample)
        record = info.annotations
        assert sorted(record["ids"]) == sorted(expected)
        for index, instance in enumerate(record["ids"]):
            ours = assert_box_row_matches(record["boxes"][index], expected[instance])
            nan_velocities += int(np.isnan(ours[7]))
            compared += 1
            annotation = next(nusc.get("sample_annotation", t) for t in sample["anns"]
                              if nusc.get("sample_annotation", t)["instance_token"] == instance)
            category = annotation["category_name"]
            assert record["names"][index] == NUSCENES_CATEGORY_TO_DETECTION.get(category, category)
            assert record["num_points"][index] == annotation["num_lidar_pts"]
            attributes = [nusc.get("attribute", t)["name"] for t in annotation["attribute_tokens"]]
            assert record["attributes"][index] == (attributes[0] if attributes else "")
    assert compared == len(nusc.sample_annotation)
    # The track with a gap and the track ends exercise one-sided and NaN velocities.
    assert 0 < nan_velocities < compared


def test_global_velocity_matches_devkit_box_velocity(dataset):
    root, _, _, nusc = dataset
    tables = NuScenesTables.load(root / VERSION)
    for annotation in tables["sample_annotation"].records:
        # The devkit converts each timestamp to seconds before subtracting (~1e-6 relative error).
        np.testing.assert_allclose(box_velocity(tables, annotation), nusc.box_velocity(annotation["token"]),
                                   rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("min_distance", [0.0, 1.0])
def test_multisweep_points_match_from_file_multisweep(dataset, min_distance):
    root, _, _, nusc = dataset
    reader = NuScenesReader(root, VERSION, max_sweeps=MAX_SWEEPS, sweep_min_distance=min_distance)
    sweep_counts = set()
    for index, info in enumerate(reader.infos):
        sample = reader[index]
        assert sample.point_columns == ("x", "y", "z", "intensity", "time_lag")
        cloud, times = LidarPointCloud.from_file_multisweep(
            nusc, nusc.get("sample", info.sample_id), "LIDAR_TOP", "LIDAR_TOP",
            nsweeps=MAX_SWEEPS + 1, min_distance=min_distance,
        )
        theirs = np.concatenate([cloud.points.T, times.T], axis=1)
        ours = sample.points.numpy().astype(np.float64)
        ours[:, :3] = ours_points_to_nuscenes_lidar(ours[:, :3])
        sweep_counts.add(len(info.sweeps))
        if min_distance > 0:
            # The devkit also drops close points of the keyframe; we keep them: compare per part.
            key_ours, key_theirs = ours[ours[:, 4] == 0], theirs[theirs[:, 4] == 0]
            close = (np.abs(key_ours[:, 0]) < min_distance) & (np.abs(key_ours[:, 1]) < min_distance)
            assert close.any()
            np.testing.assert_allclose(key_ours[~close], key_theirs, atol=1e-4)
            ours, theirs = ours[ours[:, 4] > 0], theirs[theirs[:, 4] > 0]
            assert sample.meta["dropped_close"] > 0 or not info.sweeps
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours[:, :4], theirs[:, :4], atol=1e-4)
        np.testing.assert_allclose(ours[:, 4], theirs[:, 4], atol=1e-6)
    # Scene starts hold fewer sweeps than the maximum; later samples are full.
    assert min(sweep_counts) < MAX_SWEEPS and MAX_SWEEPS in sweep_counts


def test_lidarseg_labels_match_devkit_files(dataset):
    root, _, _, nusc = dataset
    reader = NuScenesReader(root, VERSION, max_sweeps=2)
    for index, info in enumerate(reader.infos):
        sample = reader[index]
        record = nusc.get("lidarseg", info.meta["lidar_token"])
        expected = load_bin_file(str(root / record["filename"]))
        labels = sample.point_labels.numpy()
        np.testing.assert_array_equal(labels[: len(expected)], expected)
        assert (labels[len(expected):] == -1).all()
        assert len(labels) == sample.num_points


def _write_results(path, boxes_by_sample: dict[str, list[dict]]) -> None:
    document = {"meta": {"use_lidar": True, "use_camera": False, "use_radar": False, "use_map": False,
                         "use_external": False}, "results": boxes_by_sample}
    path.write_text(json.dumps(document))


def _evaluate(nusc, results_path, output_dir):
    evaluation = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(results_path), eval_set="val",
                               output_dir=str(output_dir), verbose=False)
    metrics, _ = evaluation.evaluate()
    return metrics.serialize()


def test_detection_eval_scores_ground_truth_perfectly(dataset, tmp_path):
    root, _, _, nusc = dataset
    tables = NuScenesTables.load(root / VERSION)
    by_token = tables["sample_annotation"].by_token
    results = ground_truth_as_results(nusc, [s["token"] for s in nusc.sample],
                                      lambda a: box_velocity(tables, by_token[a["token"]])[:2])
    assert {b["detection_name"] for boxes in results.values() for b in boxes} == set(
        NUSCENES_CATEGORY_TO_DETECTION.values()
    )
    _write_results(tmp_path / "gt.json", results)
    metrics = _evaluate(nusc, tmp_path / "gt.json", tmp_path / "eval_gt")
    assert metrics["mean_ap"] == pytest.approx(1.0)
    assert all(ap == pytest.approx(1.0) for ap in metrics["mean_dist_aps"].values())
    assert metrics["tp_errors"]["trans_err"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["tp_errors"]["scale_err"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["tp_errors"]["orient_err"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["tp_errors"]["attr_err"] == pytest.approx(0.0, abs=1e-9)
    # Our velocities subtract timestamps before scaling them; the devkit's ground truth does not.
    assert metrics["tp_errors"]["vel_err"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["nd_score"] == pytest.approx(1.0, abs=1e-5)


def test_detection_eval_of_reader_boxes_mapped_back_to_global(dataset, tmp_path):
    """Our frame -> global through meta['global_from_lidar'] must land on the ground truth."""
    root, _, _, nusc = dataset
    reader = NuScenesReader(root, VERSION, split="val", max_sweeps=0)
    results: dict[str, list[dict]] = {}
    for info in reader.infos:
        global_from_ours = np.asarray(info.meta["global_from_lidar"])
        rotation = global_from_ours[:3, :3]
        results[info.sample_id] = []
        for box, name, attribute in zip(info.annotations["boxes"], info.annotations["names"],
                                        info.annotations["attributes"]):
            if name not in set(NUSCENES_CATEGORY_TO_DETECTION.values()):
                continue
            box = np.array([np.nan if v is None else v for v in box])
            velocity = rotation @ np.array([box[7], box[8], 0.0])
            results[info.sample_id].append({
                "sample_token": info.sample_id,
                "translation": (rotation @ box[:3] + global_from_ours[:3, 3]).tolist(),
                "size": [box[4], box[3], box[5]],
                "rotation": matrix_to_quaternion(rotation @ yaw_matrix(box[6])).tolist(),
                "velocity": [0.0, 0.0] if np.isnan(velocity).any() else velocity[:2].tolist(),
                "detection_name": name, "detection_score": 1.0, "attribute_name": attribute,
            })
    _write_results(tmp_path / "ours.json", results)
    metrics = _evaluate(nusc, tmp_path / "ours.json", tmp_path / "eval_ours")
    assert metrics["mean_ap"] == pytest.approx(1.0)
    assert metrics["tp_errors"]["trans_err"] < 1e-6
    assert metrics["tp_errors"]["scale_err"] < 1e-9
    # Ego roll/pitch tilts the box axes out of our xy plane: a small, not a zero, yaw change.
    assert metrics["tp_errors"]["orient_err"] < 1e-2
    # Our xy velocity drops the part the tilt turns into our z: up to |v| sin(2 tilt) ~ 0.7 m/s
    # here (tilt 0.05 rad, |v| < 7 m/s), far less on average; a wrong frame gives metres.
    assert metrics["tp_errors"]["vel_err"] < 0.2
    assert metrics["tp_errors"]["attr_err"] == pytest.approx(0.0, abs=1e-9)
