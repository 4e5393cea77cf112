"""A small simulated nuScenes dataset for the detection-evaluation tests, and predictions made
from its ground truth (perturbed, partial, duplicated, tied, out of range ...).

The simulator's scenes get extra tracks so that every rule of the benchmark is exercised: all
ten classes, boxes beyond the class ranges, annotations without attribute, boxes with zero lidar
points (with and without radar points), and bicycle racks with bicycles and motorcycles inside
and beside them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pointformer.data.classes import (
    NUSCENES_CATEGORY_TO_DETECTION, NUSCENES_CLASS_ATTRIBUTES, NUSCENES_DETECTION_CLASSES,
)
from pointformer.data.synthetic.nuscenes_layout import NuScenesBox, NuScenesSceneData
from pointformer.data.synthetic.simulate import simulate_nuscenes_scene
from pointformer.evaluation.nuscenes_boxes import ATTRIBUTE_NAMES
from pointformer.structures import Boxes3D, Detections
from pointformer.structures.rotation import yaw_to_quaternion

VERSION = "v1.0-trainval"
VAL_SCENES = ("scene-0003", "scene-0012")  # both in the official val split
TRAIN_SCENE = "scene-0001"
CATEGORY_OF = {name: next(c for c, d in NUSCENES_CATEGORY_TO_DETECTION.items() if d == name)
               for name in NUSCENES_DETECTION_CLASSES}
RACK = "static_object.bicycle_rack"


def simulated_scenes(seed: int = 5, keyframes: int = 3) -> list[NuScenesSceneData]:
    """Two val scenes and one train scene from the simulator (2 sweeps per keyframe), with extra tracks."""
    rng = np.random.default_rng(seed)
    scenes = []
    for index, name in enumerate(VAL_SCENES + (TRAIN_SCENE,)):
        scene = simulate_nuscenes_scene(seed + index, name, num_keyframes=keyframes, sweeps_per_keyframe=2)
        scenes.append(with_extra_tracks(scene, rng))
    return scenes


def with_extra_tracks(scene: NuScenesSceneData, rng: np.random.Generator) -> NuScenesSceneData:
    """Add to every keyframe: two tracks per class (ranges 5-60 m, some without attribute),
    a bicycle rack with a bicycle and a motorcycle inside and a bicycle beside it, and set
    point counts to zero on a few simulated boxes (some keep radar points)."""
    keys = sorted(scene.keyframe_boxes)
    start = scene.sweeps[keys[0]].timestamp_us
    tracks = []
    for name in NUSCENES_DETECTION_CLASSES:
        for copy in range(2):
            choices = NUSCENES_CLASS_ATTRIBUTES[name]
            attribute = str(rng.choice(choices)) if choices and rng.random() < 0.85 else ""
            distance, bearing = rng.uniform(5, 60), rng.uniform(-np.pi, np.pi)
            tracks.append(dict(id=f"extra-{name}-{copy}", category=CATEGORY_OF[name], attribute=attribute,
                               offset=distance * np.array([np.cos(bearing), np.sin(bearing)]),
                               velocity=rng.uniform(-4, 4, 2) * (rng.random() < 0.7), yaw=rng.uniform(-np.pi, np.pi),
                               size=rng.uniform(0.5, 4.0, 3), z=rng.uniform(-1, 1)))
    rack_offset = rng.uniform(8, 20) * np.array([1.0, 0.3])
    rack_yaw = rng.uniform(-np.pi, np.pi)
    along = np.array([np.cos(rack_yaw), np.sin(rack_yaw)])
    for ident, category, shift in (("rack", RACK, 0.0), ("rack-bicycle", CATEGORY_OF["bicycle"], 0.8),
                                   ("rack-motorcycle", CATEGORY_OF["motorcycle"], -0.9),
                                   ("beside-bicycle", CATEGORY_OF["bicycle"], 4.0)):
        size = np.array([2.5, 4.0, 1.5]) if category == RACK else np.array([0.6, 1.8, 1.2])
        tracks.append(dict(id=ident, category=category, attribute="" if category == RACK else "cycle.without_rider",
                           offset=rack_offset + shift * along, velocity=np.zeros(2), yaw=rack_yaw, size=size, z=0.0))
    boxes = {}
    for position, key in enumerate(keys):
        ego = scene.sweeps[key].global_from_ego[:3, 3]
        seconds = (scene.sweeps[key].timestamp_us - start) * 1e-6
        frame = [replace(b) for b in scene.keyframe_boxes[key]]
        for count, box in enumerate(frame[:4]):
            box.num_lidar_pts = 0
            box.num_radar_pts = 2 if count % 2 else 0
        for track in tracks:
            if track["id"].endswith("-1") and position == 1:
                continue  # a gap in the track: one-sided and NaN velocities
            center = np.array([*(ego[:2] + track["offset"] + track["velocity"] * seconds), ego[2] + track["z"]])
            frame.append(NuScenesBox(
                instance_id=track["id"], category=track["category"], attribute=track["attribute"],
                translation=center, size_wlh=track["size"], rotation_wxyz=yaw_to_quaternion(track["yaw"]),
                num_lidar_pts=int(rng.integers(1, 40)), num_radar_pts=int(rng.integers(0, 3)),
            ))
        boxes[key] = frame
    return replace(scene, keyframe_boxes=boxes)


# ------------------------------------------------------------------ predictions
def ground_truth_detections(infos) -> dict[str, tuple[np.ndarray, list[str], list[str]]]:
    """sample token -> (boxes (M, 9) in our frame, detection class names, attributes) of the
    annotations of the ten detection classes."""
    out = {}
    for info in infos:
        record = info.annotations
        rows = [i for i, name in enumerate(record["names"]) if name in NUSCENES_DETECTION_CLASSES]
        boxes = np.array([[np.nan if v is None else v for v in record["boxes"][i]] for i in rows],
                         dtype=np.float64).reshape(-1, 9)
        out[info.sample_id] = (boxes, [record["names"][i] for i in rows], [record["attributes"][i] for i in rows])
    return out


def as_detections(boxes: np.ndarray, names: list[str], scores: np.ndarray) -> Detections:
    labels = torch.tensor([NUSCENES_DETECTION_CLASSES.index(n) for n in names], dtype=torch.int64)
    width = boxes.shape[1] if len(boxes) else 9
    return Detections(Boxes3D(torch.from_numpy(np.asarray(boxes, np.float64).reshape(-1, width)).double()),
                      torch.from_numpy(np.asarray(scores, np.float64)).double(), labels)


def perturbed(infos, rng: np.random.Generator, *, keep: float = 0.8, noise: float = 0.4, false_positives: int = 6,
              wrong_attributes: float = 0.3, flip: float = 0.1) -> tuple[dict, dict]:
    """Ground truth with missed boxes, noisy centres / sizes / yaws / velocities, some yaws
    flipped by pi, random scores, false positives around the ego, random wrong attributes.
    Returns (detections, attributes)."""
    detections, attributes = {}, {}
    for token, (boxes, names, gt_attributes) in ground_truth_detections(infos).items():
        kept = rng.random(len(boxes)) < keep
        boxes, names = boxes[kept].copy(), [n for n, k in zip(names, kept) if k]
        chosen = [a for a, k in zip(gt_attributes, kept) if k]
        boxes[:, :2] += rng.normal(0, noise, (len(boxes), 2)) * rng.choice([0.3, 1.0, 4.0], (len(boxes), 1))
        boxes[:, 2] += rng.normal(0, 0.2, len(boxes))
        boxes[:, 3:6] *= rng.uniform(0.8, 1.25, (len(boxes), 3))
        boxes[:, 6] += rng.normal(0, 0.3, len(boxes)) + np.pi * (rng.random(len(boxes)) < flip)
        boxes[:, 7:9] = np.nan_to_num(boxes[:, 7:9]) + rng.normal(0, 0.8, (len(boxes), 2))
        extra = rng.uniform(-55, 55, (false_positives, 9))
        extra[:, 2] = rng.uniform(-2, 1, false_positives)
        extra[:, 3:6] = rng.uniform(0.4, 5, (false_positives, 3))
        extra_names = list(rng.choice(NUSCENES_DETECTION_CLASSES, false_positives))
        boxes = np.concatenate([boxes, extra])
        names = names + extra_names
        chosen = chosen + [""] * false_positives
        chosen = [str(rng.choice(ATTRIBUTE_NAMES)) if rng.random() < wrong_attributes else a for a in chosen]
        detections[token] = as_detections(boxes, names, rng.random(len(boxes)))
        attributes[token] = chosen
    return detections, attributes
