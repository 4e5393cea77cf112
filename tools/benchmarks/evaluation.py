"""nuScenes detection evaluation: ours against the official devkit's ``DetectionEval`` on the same files.

The input is nuScenes-val-sized: 150 val scenes of 40 keyframes (6,000 samples), ground truth
from the simulator's scene sampler (agents within 60 m of the ego, every 0.5 s of a 20 s drive,
a few with zero lidar points), written as real nuScenes tables with empty point files (no ray
casting: the evaluation reads only the tables). The submission holds ``boxes_per_sample`` boxes
per sample: the ground truth kept with 85 % chance and perturbed (centre, size, yaw, velocity,
attribute), then false positives around the ego, scores drawn higher for the kept boxes.

Rows: end to end from the files (ours: tables + submission -> metrics; devkit: ``NuScenes``
+ ``DetectionEval`` + ``evaluate()``), and the evaluation proper on loaded boxes (ours:
``evaluate_tables``; devkit: ``add_center_dist`` + ``filter_eval_boxes`` on both sets +
``evaluate()``). The devkit runs once, timed step by step (it takes many minutes); ours is the
median of ``repeats`` runs. NDS and mAP must agree to 1e-6.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Row, median_seconds

VERSION = "v1.0-trainval"
KEYFRAMES_PER_SCENE = 40
KEYFRAME_PERIOD_S = 0.5
ANNOTATION_RADIUS = 60.0


def ground_truth_scene(seed: int, name: str, keyframes: int):
    """One scene of keyframes only: simulator agents and ego path, no points (boxes in the global frame)."""
    from pointformer.data.synthetic.nuscenes_layout import NuScenesBox, NuScenesSceneData, NuScenesSweep
    from pointformer.data.synthetic.scene import NUSCENES_LOCATIONS, sample_scene
    from pointformer.data.synthetic.simulate import NUSCENES_EGO_FROM_LIDAR, boxes_to_frame
    from pointformer.structures.rotation import pose_matrix, yaw_to_quaternion

    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, keyframes * KEYFRAME_PERIOD_S + 0.5, NUSCENES_LOCATIONS)
    global_from_map = pose_matrix([rng.uniform(300, 2000), rng.uniform(300, 2000), 0.0],
                                  yaw_to_quaternion(rng.uniform(-np.pi, np.pi)))
    start_us = 1_533_000_000_000_000 + int(rng.integers(0, 10**13))
    sweeps, boxes = [], {}
    empty = np.zeros((0, 5), np.float32)
    for k in range(keyframes):
        t = 0.25 + k * KEYFRAME_PERIOD_S
        global_from_ego = global_from_map @ scene.ego.pose(t)
        sweeps.append(NuScenesSweep(start_us + round(t * 1e6), empty, global_from_ego, True))
        agent_boxes = boxes_to_frame(scene.agent_boxes(t), global_from_map)
        near = np.hypot(*(agent_boxes[:, :2] - global_from_ego[:2, 3]).T) < ANNOTATION_RADIUS
        boxes[k] = [
            NuScenesBox(instance_id=f"agent{a}", category=scene.agents[a].category, attribute=scene.agents[a].attribute,
                        translation=agent_boxes[a, :3], size_wlh=agent_boxes[a, [4, 3, 5]],
                        rotation_wxyz=yaw_to_quaternion(agent_boxes[a, 6]),
                        num_lidar_pts=int(rng.integers(0, 200)) if rng.random() > 0.03 else 0)
            for a in np.nonzero(near)[0]
        ]
    return NuScenesSceneData(name=name, description="benchmark scene", location=scene.location,
                             ego_from_lidar=NUSCENES_EGO_FROM_LIDAR, sweeps=sweeps, keyframe_boxes=boxes)


def write_ground_truth(root: Path, num_scenes: int, keyframes: int = KEYFRAMES_PER_SCENE, seed: int = 0) -> None:
    """``num_scenes`` val scenes (streamed to the writer one at a time)."""
    from pointformer.data.nuscenes_splits import split_scene_names
    from pointformer.data.synthetic.nuscenes_writer import write_nuscenes

    names = split_scene_names("val")[:num_scenes]
    scenes = (ground_truth_scene(seed * 100_000 + i, name, keyframes) for i, name in enumerate(names))
    write_nuscenes(root, scenes, VERSION, seed=seed, overwrite=True)


def write_submission(path: Path, ground_truth, boxes_per_sample: int, seed: int = 0) -> int:
    """A submission of ``boxes_per_sample`` boxes per sample (see the module docstring); returns the box count."""
    from pointformer.evaluation.nuscenes_boxes import (
        ATTRIBUTE_NAMES, DEVKIT_DETECTION_NAMES, multiply_by_yaw, quaternion_yaw,
    )

    rng = np.random.default_rng(seed)
    gt = ground_truth.boxes
    order = np.argsort(gt.sample, kind="stable")
    bounds = np.searchsorted(gt.sample[order], np.arange(len(ground_truth.sample_tokens) + 1))
    results, total = {}, 0
    for index, token in enumerate(ground_truth.sample_tokens):
        rows = order[bounds[index]:bounds[index + 1]]
        rows = rows[rng.random(len(rows)) < 0.85][:boxes_per_sample]
        count_fp = boxes_per_sample - len(rows)
        ego = ground_truth.ego_translation[index]
        translation = np.concatenate([gt.translation[rows] + rng.normal(0, 0.4, (len(rows), 3)) * [1, 1, 0.3],
                                      ego + rng.uniform(-55, 55, (count_fp, 3)) * [1, 1, 0.02]])
        size = np.concatenate([gt.size[rows] * rng.uniform(0.85, 1.15, (len(rows), 3)),
                               rng.uniform(0.4, 5.0, (count_fp, 3))])
        yaw = np.concatenate([quaternion_yaw(gt.rotation[rows]) + rng.normal(0, 0.2, len(rows)),
                              rng.uniform(-np.pi, np.pi, count_fp)])
        rotation = multiply_by_yaw(np.tile([1.0, 0, 0, 0], (len(yaw), 1)), yaw)
        velocity = np.concatenate([np.nan_to_num(gt.velocity[rows]) + rng.normal(0, 0.5, (len(rows), 2)),
                                   rng.normal(0, 1, (count_fp, 2))])
        label = np.concatenate([gt.label[rows], rng.choice(gt.label, count_fp)])
        score = np.concatenate([rng.beta(4, 2, len(rows)), rng.beta(1, 6, count_fp)])
        attribute = [str(rng.choice(ATTRIBUTE_NAMES)) for _ in range(len(label))]
        results[token] = [
            {"sample_token": token, "translation": t, "size": s, "rotation": r, "velocity": v,
             "detection_name": DEVKIT_DETECTION_NAMES[c], "detection_score": p, "attribute_name": a}
            for t, s, r, v, c, p, a in zip(translation.tolist(), size.tolist(), rotation.tolist(), velocity.tolist(),
                                           label.tolist(), score.tolist(), attribute)
        ]
        total += len(label)
    meta = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}
    path.write_text(json.dumps({"meta": meta, "results": results}))
    return total


def devkit_timed(root: Path, results: Path) -> tuple[dict[str, float], object]:
    """The devkit's ``DetectionEval`` (its ``__init__`` steps, then ``evaluate()``), timed by step:
    seconds of ``tables``, ``predictions``, ``ground_truth``, ``filters`` (centre distances and
    filtering) and ``evaluate``; and its ``DetectionMetrics``."""
    from nuscenes import NuScenes
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, load_gt, load_prediction
    from nuscenes.eval.detection.data_classes import DetectionBox
    from nuscenes.eval.detection.evaluate import DetectionEval

    config = config_factory("detection_cvpr_2019")
    times, start = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        now = time.perf_counter()
        times[name], start = now - start, now

    nusc = NuScenes(VERSION, str(root), verbose=False)
    lap("tables")
    predictions, _ = load_prediction(str(results), config.max_boxes_per_sample, DetectionBox)
    lap("predictions")
    ground_truth = load_gt(nusc, "val", DetectionBox)
    lap("ground_truth")
    if set(predictions.sample_tokens) != set(ground_truth.sample_tokens):
        raise AssertionError("samples in split do not match samples in predictions")
    evaluation = DetectionEval.__new__(DetectionEval)
    evaluation.cfg, evaluation.verbose = config, False
    evaluation.pred_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, predictions), config.class_range)
    evaluation.gt_boxes = filter_eval_boxes(nusc, add_center_dist(nusc, ground_truth), config.class_range)
    lap("filters")
    metrics, _ = evaluation.evaluate()
    lap("evaluate")
    return times, metrics


def rows(repeats: int = 3, num_scenes: int = 150, boxes_per_sample: int = 500, data: Path | None = None) -> list[Row]:
    """End-to-end and evaluation-only rows; ``data``: a folder to keep (and reuse) the generated files in."""
    from pointformer.evaluation.nuscenes import NuScenesGroundTruth, evaluate_results_file, evaluate_tables
    from pointformer.evaluation.nuscenes_results import load_results

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(data) if data is not None else Path(tmp)
        root = folder / f"gt_{num_scenes}x{KEYFRAMES_PER_SCENE}"
        results = folder / f"results_{num_scenes}x{KEYFRAMES_PER_SCENE}_{boxes_per_sample}.json"
        if not (root / VERSION / "sample.json").is_file():
            write_ground_truth(root, num_scenes)
        ground_truth = NuScenesGroundTruth.from_tables(root, VERSION, "val")
        if not results.is_file():
            write_submission(results, ground_truth, boxes_per_sample)
        num_samples, num_gt = len(ground_truth.sample_tokens), len(ground_truth.boxes)
        label = (f"{num_samples} samples, {num_gt} GT boxes, {boxes_per_sample} predictions per sample "
                 f"({results.stat().st_size / 2**20:.0f} MiB JSON)")

        ours_end_to_end = median_seconds(lambda: evaluate_results_file(root, results, "val"), repeats, warmup=0)
        ours = evaluate_results_file(root, results, "val")
        loaded = load_results(results, ground_truth.sample_tokens)
        ours_only = median_seconds(lambda: evaluate_tables(ground_truth, loaded.boxes), repeats, warmup=1)
        loaded = None  # free the boxes before the devkit loads its own

        devkit_times, devkit_metrics = devkit_timed(root, results)
        if abs(devkit_metrics.nd_score - ours.nd_score) > 1e-6 or abs(devkit_metrics.mean_ap - ours.mean_ap) > 1e-6:
            raise AssertionError(f"NDS / mAP disagree: ours {ours.nd_score} / {ours.mean_ap}, "
                                 f"devkit {devkit_metrics.nd_score} / {devkit_metrics.mean_ap}")
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in devkit_times.items())
        print(f"devkit steps: {steps}; NDS {ours.nd_score:.6f} both")
        return [
            Row("nuScenes eval, files to metrics", label, ours_end_to_end, "devkit NuScenes + DetectionEval",
                sum(devkit_times.values())),
            Row("nuScenes eval, filter + match + metrics", label, ours_only,
                "devkit add_center_dist + filter_eval_boxes + evaluate",
                devkit_times["filters"] + devkit_times["evaluate"]),
        ]
