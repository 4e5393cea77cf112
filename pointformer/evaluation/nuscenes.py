"""The nuScenes detection benchmark (NDS, mAP, TP errors), computed with numpy.

Same numbers as the official devkit's ``DetectionEval`` (``detection_cvpr_2019``), reproduced
step by step without importing it:

1. Ground truth (:class:`NuScenesGroundTruth`): every annotation of a detection class in the
   split's samples, in the global frame, with ``num_lidar_pts + num_radar_pts``, its attribute
   and the devkit's ``box_velocity`` (centred difference of the neighbouring annotations).
2. Filters, on ground truth and predictions alike: the xy distance to the ego pose of the
   sample's LIDAR_TOP keyframe must be below the class range; boxes with zero points are
   dropped (predictions count -1); bicycles and motorcycles whose centre lies in a
   ``static_object.bicycle_rack`` box of the sample are dropped.
3. Per class and distance threshold (0.5, 1, 2, 4 m): predictions by descending score (ties:
   the later box first) take the nearest untaken ground truth of their sample (xy centre
   distance); precision / recall / confidence resampled on 101 recall points; AP is the mean
   precision above ``min_recall`` less ``min_precision``, normalised.
4. TP errors at ``dist_th_tp`` (2 m): ATE, ASE = 1 - IoU of aligned boxes, AOE (period pi for
   barriers), AVE, AAE as cumulative means resampled on the confidences, averaged between
   ``min_recall`` and the highest recall reached (1 when it is not reached); NaN for the
   traffic cone's AOE/AVE/AAE and the barrier's AVE/AAE. NDS = (5 mAP + sum(max(0, 1 - mTP))) / 10.

:func:`evaluate_results_file` scores a submission JSON against a dataset root;
:func:`evaluate_nuscenes` scores in-memory ``Detections`` (the training loop's path).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pointformer.data.classes import NUSCENES_CATEGORY_TO_DETECTION, NUSCENES_DETECTION_CLASSES
from pointformer.evaluation.matching import center_distance, greedy_match_thresholds
from pointformer.evaluation.nuscenes_boxes import (
    ATTRIBUTE_INDEX, ATTRIBUTE_NAMES, BIKE_RACK_CATEGORY, CYCLE_CLASSES, DEVKIT_DETECTION_NAMES, TP_METRICS,
    BikeRacks, BoxTable, boxes_to_global, gc_paused, matrix_quaternion, unit_quaternion_matrix,
)

RECALL_POINTS = 101
TP_ERROR_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE",
                  "attr_err": "mAAE"}
# TP errors the benchmark does not score for a class (NaN in label_tp_errors).
UNSCORED_TP_ERRORS: dict[str, tuple[str, ...]] = {
    "traffic_cone": ("attr_err", "vel_err", "orient_err"),
    "barrier": ("attr_err", "vel_err"),
}
SPLIT_VERSIONS = {"train": "trainval", "val": "trainval", "train_detect": "trainval", "train_track": "trainval",
                  "mini_train": "mini", "mini_val": "mini", "test": "test"}
DEFAULT_CLASS_RANGE: dict[str, int] = {
    "car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50, "pedestrian": 40,
    "motorcycle": 40, "bicycle": 40, "traffic_cone": 30, "barrier": 30,
}


# --------------------------------------------------------------------- config
@dataclass(frozen=True)
class DetectionConfig:
    """The benchmark's settings (the devkit's ``detection_cvpr_2019`` by default).

    ``class_range``: class name -> maximum xy distance (m) from the ego pose; its key order is
    the class order of every per-class mean. ``dist_ths``: matching thresholds (m);
    ``dist_th_tp``: the one the TP errors use. ``min_recall`` / ``min_precision``: the part of
    the precision-recall curve AP ignores. ``max_boxes_per_sample``: a submission limit.
    ``mean_ap_weight``: weight of mAP in NDS (the five TP scores weigh 1 each).
    """

    class_range: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_RANGE))
    dist_fcn: str = "center_distance"
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: float = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_range", dict(self.class_range))
        object.__setattr__(self, "dist_ths", tuple(float(t) for t in self.dist_ths))
        unknown = [name for name in self.class_range if name not in DEVKIT_DETECTION_NAMES]
        if not self.class_range or unknown:
            raise ValueError(f"DetectionConfig.class_range: unknown classes {unknown} (or none given); "
                             f"nuScenes detection classes are {list(DEVKIT_DETECTION_NAMES)}")
        if any(not np.isfinite(r) or r <= 0 for r in self.class_range.values()):
            raise ValueError(f"DetectionConfig.class_range values must be positive metres, got {self.class_range}")
        if self.dist_fcn != "center_distance":
            raise ValueError(f"DetectionConfig.dist_fcn: only 'center_distance' is defined, got {self.dist_fcn!r}")
        if not self.dist_ths or any(not np.isfinite(t) or t <= 0 for t in self.dist_ths):
            raise ValueError(f"DetectionConfig.dist_ths must be positive distances, got {self.dist_ths}")
        if float(self.dist_th_tp) not in self.dist_ths:
            raise ValueError(f"DetectionConfig.dist_th_tp {self.dist_th_tp} must be one of dist_ths {self.dist_ths}")
        if not 0 <= self.min_recall <= 1 or not 0 <= self.min_precision < 1:
            raise ValueError(f"DetectionConfig: min_recall must lie in [0, 1] and min_precision in [0, 1), "
                             f"got {self.min_recall}, {self.min_precision}")
        if int(self.max_boxes_per_sample) != self.max_boxes_per_sample or self.max_boxes_per_sample < 1:
            raise ValueError(f"DetectionConfig.max_boxes_per_sample must be a positive integer, "
                             f"got {self.max_boxes_per_sample}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.class_range)

    def serialize(self) -> dict[str, Any]:
        """The devkit's ``DetectionConfig.serialize()`` layout (the ``cfg`` block of the summary)."""
        return {"class_range": dict(self.class_range), "dist_fcn": self.dist_fcn, "dist_ths": list(self.dist_ths),
                "dist_th_tp": self.dist_th_tp, "min_recall": self.min_recall, "min_precision": self.min_precision,
                "max_boxes_per_sample": self.max_boxes_per_sample, "mean_ap_weight": self.mean_ap_weight}

    @staticmethod
    def from_dict(content: Mapping[str, Any], where: str = "detection config") -> "DetectionConfig":
        """From the devkit's config JSON layout (every key required, as the devkit reads it)."""
        keys = ("class_range", "dist_fcn", "dist_ths", "dist_th_tp", "min_recall", "min_precision",
                "max_boxes_per_sample", "mean_ap_weight")
        if not isinstance(content, Mapping):
            raise ValueError(f"{where}: expected an object with keys {list(keys)}")
        missing = [k for k in keys if k not in content]
        if missing:
            raise ValueError(f"{where}: missing key {missing[0]!r} (required: {', '.join(keys)})")
        return DetectionConfig(**{k: content[k] for k in keys})

    @staticmethod
    def load(path: str | os.PathLike) -> "DetectionConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detection config {path} not found")
        try:
            content = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        return DetectionConfig.from_dict(content, str(path))


# --------------------------------------------------------------- ground truth
@dataclass
class NuScenesGroundTruth:
    """The ground truth of one evaluation, in the global frame.

    ``sample_tokens`` (S): the evaluated samples, in the devkit's order. ``ego_translation``
    (S, 3): the ego pose of each sample's LIDAR_TOP keyframe (class ranges are measured from
    it). ``global_from_sample`` (S, 4, 4): our sample (lidar) frame -> global, to place
    predictions made in our frame. ``boxes``: every annotation of a detection class, labels
    indexing ``class_names``. ``bike_racks``: the samples' bicycle racks.
    """

    sample_tokens: list[str]
    ego_translation: np.ndarray
    global_from_sample: np.ndarray
    boxes: BoxTable
    bike_racks: BikeRacks
    class_names: tuple[str, ...] = DEVKIT_DETECTION_NAMES

    def __post_init__(self) -> None:
        count = len(self.sample_tokens)
        if len(set(self.sample_tokens)) != count:
            raise ValueError("NuScenesGroundTruth.sample_tokens has duplicates")
        if self.ego_translation.shape != (count, 3) or self.global_from_sample.shape != (count, 4, 4):
            raise ValueError(f"NuScenesGroundTruth: ego_translation {self.ego_translation.shape} / global_from_sample "
                             f"{self.global_from_sample.shape} do not fit {count} samples")

    def poses(self) -> dict[str, np.ndarray]:
        """sample token -> 4x4 ``global_from_sample``."""
        return dict(zip(self.sample_tokens, self.global_from_sample))

    @staticmethod
    def from_tables(root: str | os.PathLike, version: str = "v1.0-trainval",
                    split: str | None = "val") -> "NuScenesGroundTruth":
        """Read ``root/version`` tables as the devkit's ``load_gt`` + ``add_center_dist`` do.

        ``split``: an official split name (checked against the version as the devkit does), or
        None for every sample of the version.
        """
        from pointformer.data.readers.nuscenes import NuScenesTables

        check_split_version(split, version)
        with gc_paused():
            tables = NuScenesTables.load(Path(root) / version)
            return _ground_truth_from_tables(tables, version, split)

    @staticmethod
    def from_infos(infos: Sequence[Any]) -> "NuScenesGroundTruth":
        """From ``SampleInfo`` records of a nuScenes-layout reader (boxes in our frame,
        ``meta['global_from_lidar']``).

        Close to, not identical with, the tables: the records keep no radar point counts (a box
        is dropped when its lidar count is 0), their yaw and velocity were projected on the
        sample's xy plane (so ego roll/pitch leaves a small error), and the ego position is
        ``meta['global_from_ego']`` when present, else the lidar's. Use :meth:`from_tables`
        for the benchmark's numbers.
        """
        return _ground_truth_from_infos(infos)


def check_split_version(split: str | None, version: str) -> None:
    """The devkit's rule: train/val need a ``*trainval`` version, mini_* a ``*mini`` one, test ``*test``."""
    if split is None:
        return
    if split not in SPLIT_VERSIONS:
        raise ValueError(f"unknown nuScenes split {split!r}; known: {sorted(SPLIT_VERSIONS)} (or None for all samples)")
    if not version.endswith(SPLIT_VERSIONS[split]):
        raise ValueError(f"split {split!r} needs a version ending in {SPLIT_VERSIONS[split]!r}, got {version!r}")


def _split_scene_names(split: str) -> set[str]:
    from pointformer.data.nuscenes_splits import split_scene_names

    if split in ("train_detect", "train_track"):
        raise ValueError(f"split {split!r} is not in pointformer.data.nuscenes_splits; use 'train'")
    return set(split_scene_names(split))


def _ground_truth_from_tables(tables, version: str, split: str | None) -> NuScenesGroundTruth:
    tokens = _split_samples(tables, split)
    ego_translation, global_from_sample = _sample_frames(tables, tokens, version)
    boxes, racks = _annotation_boxes(tables, {token: i for i, token in enumerate(tokens)})
    return NuScenesGroundTruth(tokens, ego_translation, global_from_sample, boxes, racks)


def _split_samples(tables, split: str | None) -> list[str]:
    """Tokens of the split's samples in table order (the devkit's order)."""
    if not tables["sample"].records:
        raise ValueError(f"{tables['sample'].path}: the database has no samples")
    wanted = None if split is None else _split_scene_names(split)
    tokens = []
    for sample in tables["sample"].records:
        scene = tables.lookup("scene", tables.value("sample", sample, "scene_token"), "sample", sample, "scene_token")
        if wanted is None or tables.value("scene", scene, "name") in wanted:
            tokens.append(sample["token"])
    return tokens


def _sample_frames(tables, tokens: list[str], version: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, 3) ego position and (S, 4, 4) ``global_from_sample`` of each sample's LIDAR_TOP keyframe."""
    from pointformer.data.readers.nuscenes import OURS_FROM_SENSOR, lidar_frame_of_version
    from pointformer.structures.rotation import invert_pose

    keyframes = _lidar_keyframes(tables)
    sensor_from_ours = invert_pose(OURS_FROM_SENSOR[lidar_frame_of_version(version)])
    ego_translation = np.zeros((len(tokens), 3))
    global_from_sample = np.zeros((len(tokens), 4, 4))
    for i, token in enumerate(tokens):
        if token not in keyframes:
            raise ValueError(f"{tables['sample_data'].path}: sample {token!r} has no LIDAR_TOP keyframe")
        record = keyframes[token]
        ego = tables.follow("sample_data", record, "ego_pose_token", "ego_pose")
        calibration = tables.follow("sample_data", record, "calibrated_sensor_token", "calibrated_sensor")
        ego_translation[i] = np.asarray(tables.value("ego_pose", ego, "translation"), dtype=np.float64)
        global_from_sample[i] = (tables.pose("ego_pose", ego) @ tables.pose("calibrated_sensor", calibration)
                                 @ sensor_from_ours)
    return ego_translation, global_from_sample


def _annotation_boxes(tables, sample_index: dict[str, int]) -> tuple[BoxTable, BikeRacks]:
    """The split's annotations of detection classes (the devkit's ``load_gt``) and its bicycle racks."""
    columns = _annotation_columns(tables)
    annotation_sample = np.array([sample_index.get(t, -1) for t in columns["sample_token"]], np.int64)
    category = _annotation_categories(tables, columns["instance_token"])
    detection_index = {name: i for i, name in enumerate(DEVKIT_DETECTION_NAMES)}
    label = np.array([detection_index.get(NUSCENES_CATEGORY_TO_DETECTION.get(c), -1) for c in category], np.int64)
    in_split = annotation_sample >= 0
    is_box = in_split & (label >= 0)
    is_rack = in_split & np.array([c == BIKE_RACK_CATEGORY for c in category], bool)
    translation = _float_columns(tables, columns, "translation", 3)
    size = _float_columns(tables, columns, "size", 3)
    rotation = _float_columns(tables, columns, "rotation", 4)
    num_pts = np.array(columns["num_lidar_pts"], np.int64) + np.array(columns["num_radar_pts"], np.int64)
    boxes = BoxTable(
        sample=annotation_sample[is_box], translation=translation[is_box], size=size[is_box],
        rotation=rotation[is_box], velocity=_annotation_velocities(tables, columns, translation)[is_box],
        label=label[is_box], score=np.full(int(is_box.sum()), -1.0),
        attribute=_annotation_attributes(tables, columns["attribute_tokens"], is_box), num_pts=num_pts[is_box],
    )
    return boxes, BikeRacks(annotation_sample[is_rack], translation[is_rack], size[is_rack], rotation[is_rack])


ANNOTATION_FIELDS: tuple[str, ...] = ("sample_token", "instance_token", "attribute_tokens", "translation", "size",
                                      "rotation", "num_lidar_pts", "num_radar_pts", "prev", "next")


def _annotation_columns(tables) -> dict[str, list]:
    """The sample_annotation fields the benchmark reads, as lists in table order."""
    records = tables["sample_annotation"].records
    try:
        return {name: [record[name] for record in records] for name in ANNOTATION_FIELDS}
    except KeyError:
        for record in records:
            for name in ANNOTATION_FIELDS:
                tables.value("sample_annotation", record, name)  # raises, naming the record and the field
        raise


def _annotation_categories(tables, instance_tokens: list[str]) -> list[str]:
    """The category name of each annotation, through its instance."""
    category_of_instance = {}
    for instance in tables["instance"].records:
        category = tables.follow("instance", instance, "category_token", "category")
        category_of_instance[instance["token"]] = tables.value("category", category, "name")
    names = [category_of_instance.get(token) for token in instance_tokens]
    if None in names:
        row = names.index(None)
        record = tables["sample_annotation"].records[row]
        tables.lookup("instance", instance_tokens[row], "sample_annotation", record, "instance_token")
    return names


def _float_columns(tables, columns: dict[str, list], name: str, width: int) -> np.ndarray:
    """(A, width) float64 of one list field of every annotation; an error names the first bad record."""
    values = columns[name]
    try:
        array = np.array(values, dtype=np.float64).reshape(len(values), width)
        if np.isfinite(array).all():
            return array
    except (TypeError, ValueError):
        pass
    for record, value in zip(tables["sample_annotation"].records, values):
        row = np.asarray(value, dtype=object)
        if row.shape != (width,) or not np.isfinite(np.asarray(value, dtype=np.float64)).all():
            raise ValueError(f"{tables['sample_annotation'].path}: sample_annotation {record.get('token')!r} field "
                             f"{name!r} must be {width} finite numbers, got {value!r}")
    raise ValueError(f"{tables['sample_annotation'].path}: field {name!r} must hold {width} finite numbers per record")


def _annotation_attributes(tables, attribute_tokens: list[list[str]], rows: np.ndarray) -> np.ndarray:
    """(K,) attribute index of the annotations at ``rows`` (bool mask), -1 for none; more than one
    attribute is an error (as in the devkit's ``load_gt``)."""
    names = {a["token"]: tables.value("attribute", a, "name") for a in tables["attribute"].records}
    out = []
    for row in np.nonzero(rows)[0]:
        tokens = attribute_tokens[row]
        if len(tokens) == 0:
            out.append(-1)
            continue
        record = tables["sample_annotation"].records[row]
        if len(tokens) > 1:
            raise ValueError(f"{tables['sample_annotation'].path}: sample_annotation {record.get('token')!r} has "
                             f"{len(tokens)} attributes; the detection benchmark allows at most one")
        if tokens[0] not in names:
            tables.lookup("attribute", tokens[0], "sample_annotation", record, "attribute_tokens")
        if names[tokens[0]] not in ATTRIBUTE_INDEX:
            raise ValueError(f"{tables['sample_annotation'].path}: sample_annotation {record.get('token')!r} has "
                             f"attribute {names[tokens[0]]!r}, not one of {list(ATTRIBUTE_NAMES)}")
        out.append(ATTRIBUTE_INDEX[names[tokens[0]]])
    return np.array(out, np.int64)


def _lidar_keyframes(tables) -> dict[str, dict]:
    """sample token -> its LIDAR_TOP keyframe sample_data record (the devkit's ``sample['data']['LIDAR_TOP']``)."""
    channel_of_sensor = {s["token"]: tables.value("sensor", s, "channel") for s in tables["sensor"].records}
    lidar_calibrations = {
        c["token"] for c in tables["calibrated_sensor"].records
        if channel_of_sensor.get(tables.value("calibrated_sensor", c, "sensor_token")) == "LIDAR_TOP"
    }
    keyframes: dict[str, dict] = {}
    for record in tables["sample_data"].records:
        if tables.value("sample_data", record, "is_key_frame") and \
                tables.value("sample_data", record, "calibrated_sensor_token") in lidar_calibrations:
            keyframes[tables.value("sample_data", record, "sample_token")] = record
    return keyframes


def _annotation_velocities(tables, columns: dict[str, list], translation: np.ndarray) -> np.ndarray:
    """(A, 2) global xy velocity of every annotation by the devkit's ``NuScenes.box_velocity``
    arithmetic (timestamps scaled to seconds before subtracting): centred difference of the
    previous and next annotation, one-sided at a track end, NaN alone or over 1.5 s (3 s centred)."""
    records = tables["sample_annotation"].records
    if not records:
        return np.zeros((0, 2))
    row_of = {r["token"]: i for i, r in enumerate(records)}
    sample_time = {s["token"]: tables.value("sample", s, "timestamp") for s in tables["sample"].records}

    def neighbours(key: str) -> np.ndarray:
        rows = np.array([row_of.get(token, -2) if token else -1 for token in columns[key]], np.int64)
        if (rows == -2).any():
            bad = int(np.argmax(rows == -2))
            tables.lookup("sample_annotation", columns[key][bad], "sample_annotation", records[bad], key)
        return rows

    previous, following = neighbours("prev"), neighbours("next")
    times = [sample_time.get(token) for token in columns["sample_token"]]
    if None in times:
        bad = times.index(None)
        tables.lookup("sample", columns["sample_token"][bad], "sample_annotation", records[bad], "sample_token")
    own = np.arange(len(records))
    has_prev, has_next = previous >= 0, following >= 0
    first = np.where(has_prev, previous, own)
    last = np.where(has_next, following, own)
    seconds = 1e-6 * np.array(times, np.int64)
    time_diff = seconds[last] - seconds[first]
    max_time_diff = np.where(has_prev & has_next, 1.5 * 2, 1.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        velocity = (translation[last] - translation[first]) / time_diff[:, None]
    velocity[(~has_prev & ~has_next) | (time_diff > max_time_diff)] = np.nan
    return velocity[:, :2]


def _ground_truth_from_infos(infos: Sequence[Any]) -> NuScenesGroundTruth:
    tokens, ego, poses, tables, racks = [], [], [], [], []
    for index, info in enumerate(infos):
        meta = info.meta if isinstance(info.meta, Mapping) else {}
        if "global_from_lidar" not in meta:
            raise ValueError(f"infos[{index}] (sample {info.sample_id!r}) has no meta['global_from_lidar']")
        pose = np.asarray(meta["global_from_lidar"], dtype=np.float64)
        ego_pose = np.asarray(meta.get("global_from_ego", pose), dtype=np.float64)
        if pose.shape != (4, 4) or ego_pose.shape != (4, 4):
            raise ValueError(f"infos[{index}]: meta['global_from_lidar'] / ['global_from_ego'] must be 4x4")
        tokens.append(info.sample_id)
        ego.append(ego_pose[:3, 3])
        poses.append(pose)
        if info.annotations is not None and info.annotations["boxes"]:
            boxes, sample_racks = _info_boxes(info.annotations, pose, len(tokens) - 1, f"infos[{index}]")
            tables.append(boxes)
            racks.append(sample_racks)
    bike_racks = BikeRacks(*(np.concatenate([getattr(r, f) for r in racks]) for f in
                             ("sample", "translation", "size", "rotation"))) if racks else BikeRacks.empty()
    return NuScenesGroundTruth(tokens, np.array(ego, np.float64).reshape(-1, 3),
                               np.array(poses, np.float64).reshape(-1, 4, 4), BoxTable.cat(tables), bike_racks)


def _info_boxes(record: Mapping[str, list], pose: np.ndarray, sample: int, where: str) -> tuple[BoxTable, BikeRacks]:
    """One info record's annotations (our frame) -> its detection-class boxes and bicycle racks, global frame."""
    boxes = np.array([[np.nan if v is None else v for v in row] for row in record["boxes"]], dtype=np.float64)
    if boxes.shape[1] == 7:
        boxes = np.concatenate([boxes, np.full((len(boxes), 2), np.nan)], axis=1)
    names = list(record["names"])
    detection_index = {name: i for i, name in enumerate(DEVKIT_DETECTION_NAMES)}
    keep = np.array([n in detection_index for n in names], bool)
    is_rack = np.array([n == BIKE_RACK_CATEGORY for n in names], bool)
    attributes = [a for a, k in zip(record["attributes"], keep) if k]
    unknown = [a for a in attributes if a and a not in ATTRIBUTE_INDEX]
    if unknown:
        raise ValueError(f"{where}: attribute {unknown[0]!r} is not one of {list(ATTRIBUTE_NAMES)}")
    quaternion = matrix_quaternion(pose[:3, :3])
    placed = boxes_to_global(boxes[keep], pose, quaternion)
    rack = boxes_to_global(boxes[is_rack], pose, quaternion)
    count = int(keep.sum())
    table = BoxTable(
        sample=np.full(count, sample, np.int64), translation=placed["translation"], size=placed["size"],
        rotation=placed["rotation"], velocity=placed["velocity"],
        label=np.array([detection_index[n] for n, k in zip(names, keep) if k], np.int64),
        score=np.full(count, -1.0), attribute=np.array([ATTRIBUTE_INDEX.get(a, -1) for a in attributes], np.int64),
        num_pts=np.array([n for n, k in zip(record["num_points"], keep) if k], np.int64),
    )
    racks = BikeRacks(np.full(int(is_rack.sum()), sample, np.int64), rack["translation"], rack["size"],
                      rack["rotation"])
    return table, racks


# -------------------------------------------------------------------- filters
def ego_distance(boxes: BoxTable, ego_translation: np.ndarray) -> np.ndarray:
    """(N,) xy distance of each box centre from its sample's ego position (m)."""
    ego = ego_translation[boxes.sample]
    dx = boxes.translation[:, 0] - ego[:, 0]
    dy = boxes.translation[:, 1] - ego[:, 1]
    return np.sqrt(dx ** 2 + dy ** 2)


def in_bike_rack(boxes: BoxTable, racks: BikeRacks) -> np.ndarray:
    """(N,) bool: the box centre lies inside (or on) a bicycle rack of its sample, tested as the
    devkit's ``points_in_box`` does (projections on three corner edges)."""
    inside = np.zeros(len(boxes), bool)
    if len(racks) == 0 or len(boxes) == 0:
        return inside
    order = np.argsort(racks.sample, kind="stable")
    rack_samples = racks.sample[order]
    start = np.searchsorted(rack_samples, boxes.sample, side="left")
    counts = np.searchsorted(rack_samples, boxes.sample, side="right") - start
    box = np.repeat(np.arange(len(boxes)), counts)
    offset = np.arange(len(box)) - np.repeat(np.cumsum(counts) - counts, counts)
    rack = order[np.repeat(start, counts) + offset]
    if len(box) == 0:
        return inside
    rotation = unit_quaternion_matrix(racks.rotation[rack])
    w, l, h = racks.size[rack].T
    center = racks.translation[rack]

    def corner(sx: int, sy: int, sz: int) -> np.ndarray:
        local = np.stack([sx * l / 2, sy * w / 2, sz * h / 2], axis=1)
        return np.einsum("nij,nj->ni", rotation, local) + center

    p1 = corner(1, 1, 1)
    edges = (corner(-1, 1, 1) - p1, corner(1, -1, 1) - p1, corner(1, 1, -1) - p1)
    v = boxes.translation[box] - p1
    hit = np.ones(len(box), bool)
    for edge in edges:
        projection = np.einsum("ni,ni->n", edge, v)
        hit &= (0 <= projection) & (projection <= np.einsum("ni,ni->n", edge, edge))
    inside[box[hit]] = True
    return inside


def filter_boxes(boxes: BoxTable, ground_truth: NuScenesGroundTruth, config: DetectionConfig) -> BoxTable:
    """The devkit's ``filter_eval_boxes``: class range, zero points, bicycles in racks.
    ``boxes.label`` indexes ``config.class_names``."""
    ranges = np.array([config.class_range[name] for name in config.class_names], np.float64)
    keep = ego_distance(boxes, ground_truth.ego_translation) < ranges[boxes.label]
    keep &= boxes.num_pts != 0
    cycles = [config.class_names.index(name) for name in CYCLE_CLASSES if name in config.class_names]
    is_cycle = np.isin(boxes.label, cycles) & keep
    if is_cycle.any():
        keep[is_cycle] &= ~in_bike_rack(boxes.select(is_cycle), ground_truth.bike_racks)
    return boxes.select(keep)


# ----------------------------------------------------------------- accumulate
@dataclass
class MetricCurve:
    """One class at one threshold, on 101 recall points (the devkit's ``DetectionMetricData``):
    ``recall``, ``precision``, ``confidence`` and the five TP error curves, each (101,)."""

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    errors: dict[str, np.ndarray]

    @staticmethod
    def no_predictions() -> "MetricCurve":
        return MetricCurve(np.linspace(0, 1, RECALL_POINTS), np.zeros(RECALL_POINTS), np.zeros(RECALL_POINTS),
                           {name: np.ones(RECALL_POINTS) for name in TP_METRICS})

    @property
    def max_recall_index(self) -> int:
        """Index of the highest recall reached: the last non-zero confidence (0 without any)."""
        nonzero = np.nonzero(self.confidence)[0]
        return int(nonzero[-1]) if len(nonzero) else 0

    def average_precision(self, min_recall: float, min_precision: float) -> float:
        """The devkit's ``calc_ap``."""
        precision = self.precision[round(100 * min_recall) + 1:] - min_precision
        precision[precision < 0] = 0
        return float(np.mean(precision)) / (1.0 - min_precision)

    def tp_error(self, name: str, min_recall: float) -> float:
        """The devkit's ``calc_tp``: mean error between min_recall and the highest recall reached."""
        first = round(100 * min_recall) + 1
        last = self.max_recall_index
        if last < first:
            return 1.0
        return float(np.mean(self.errors[name][first:last + 1]))

    def to_json(self) -> dict[str, list[float]]:
        """The devkit's ``DetectionMetricData.serialize()`` layout."""
        errors = {name: self.errors[name].tolist() for name in ("trans_err", "vel_err", "scale_err", "orient_err",
                                                                 "attr_err")}
        return {"recall": self.recall.tolist(), "precision": self.precision.tolist(),
                "confidence": self.confidence.tolist(), **errors}


def cumulative_mean(values: np.ndarray) -> np.ndarray:
    """Running mean ignoring NaN (0 before the first number); all ones when every value is NaN."""
    finite = ~np.isnan(values)
    if not finite.any():
        return np.ones(len(values))
    sums = np.nancumsum(values.astype(float))
    counts = np.cumsum(finite)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def angle_difference(a: np.ndarray, b: np.ndarray, period: float) -> np.ndarray:
    """(N,) |a - b| wrapped by ``period``, in [0, pi] (the devkit's ``yaw_diff``)."""
    diff = (a - b + period / 2) % period - period / 2
    diff = np.where(diff > np.pi, diff - 2 * np.pi, diff)
    return np.abs(diff)


def match_errors(gt: BoxTable, pred: BoxTable, barrier: bool) -> dict[str, np.ndarray]:
    """TP errors of matched pairs (row i of ``gt`` with row i of ``pred``), each (K,)."""
    min_size = np.minimum(gt.size, pred.size)
    gt_volume, pred_volume = np.prod(gt.size, axis=1), np.prod(pred.size, axis=1)
    intersection = np.prod(min_size, axis=1)
    iou = intersection / (gt_volume + pred_volume - intersection)
    accuracy = np.where(gt.attribute < 0, np.nan, (gt.attribute == pred.attribute).astype(np.float64))
    dv = pred.velocity - gt.velocity
    return {
        "trans_err": center_distance(pred.translation, gt.translation),
        "vel_err": np.sqrt(dv[:, 0] * dv[:, 0] + dv[:, 1] * dv[:, 1]),
        "scale_err": 1 - iou,
        "orient_err": angle_difference(gt.yaw, pred.yaw, np.pi if barrier else 2 * np.pi),
        "attr_err": 1 - accuracy,
    }


def class_curve(is_tp: np.ndarray, scores: np.ndarray, num_gt: int, errors: dict[str, np.ndarray]) -> MetricCurve:
    """The devkit's ``accumulate`` tail: predictions of one class in processing order, whether
    each matched, and the matched pairs' errors (in the same order) -> the resampled curves."""
    if num_gt == 0 or not is_tp.any():
        return MetricCurve.no_predictions()
    tp = np.cumsum(is_tp).astype(float)
    fp = np.cumsum(~is_tp).astype(float)
    precision = tp / (fp + tp)
    recall = tp / float(num_gt)
    recall_points = np.linspace(0, 1, RECALL_POINTS)
    precision = np.interp(recall_points, recall, precision, right=0)
    confidence = np.interp(recall_points, recall, scores, right=0)
    matched_scores = scores[is_tp][::-1]
    curves = {name: np.interp(confidence[::-1], matched_scores, cumulative_mean(values)[::-1])[::-1]
              for name, values in errors.items()}
    return MetricCurve(recall_points, precision, confidence, curves)


def accumulate(gt: BoxTable, pred: BoxTable, config: DetectionConfig) -> dict[tuple[str, float], MetricCurve]:
    """(class, threshold) -> curve, for filtered boxes whose labels index ``config.class_names``.

    Prediction order per class: descending score, ties by descending row (the devkit sorts
    ``(score, index)`` pairs and reverses them).
    """
    num_classes = len(config.class_names)
    position = np.arange(len(pred))
    order = np.lexsort((-position, -pred.score, pred.label))
    rank = np.empty(len(pred), np.int64)
    rank[order] = np.arange(len(pred))
    matches = greedy_match_thresholds(pred.sample * num_classes + pred.label, pred.translation[:, :2], rank,
                                      gt.sample * num_classes + gt.label, gt.translation[:, :2], config.dist_ths)
    sorted_labels = pred.label[order]
    class_start = np.searchsorted(sorted_labels, np.arange(num_classes), side="left")
    class_end = np.searchsorted(sorted_labels, np.arange(num_classes), side="right")
    num_gt = np.bincount(gt.label, minlength=num_classes)
    curves = {}
    for c, name in enumerate(config.class_names):
        rows = order[class_start[c]:class_end[c]]
        for threshold in config.dist_ths:
            matched = matches[threshold][rows]
            is_tp = matched >= 0
            if num_gt[c] == 0 or not is_tp.any():
                curves[(name, threshold)] = MetricCurve.no_predictions()
                continue
            errors = match_errors(gt.select(matched[is_tp]), pred.select(rows[is_tp]), name == "barrier")
            curves[(name, threshold)] = class_curve(is_tp, pred.score[rows], int(num_gt[c]), errors)
    return curves


# -------------------------------------------------------------------- metrics
@dataclass
class NuScenesMetrics:
    """Per-class AP per distance threshold and TP errors, with the benchmark's summaries.

    ``label_aps[class][threshold]``, ``label_tp_errors[class][metric]`` (NaN where the class
    is not scored), ``curves[(class, threshold)]``, ``eval_time`` seconds, ``meta`` of the results.
    """

    config: DetectionConfig
    label_aps: dict[str, dict[float, float]]
    label_tp_errors: dict[str, dict[str, float]]
    curves: dict[tuple[str, float], MetricCurve]
    eval_time: float = 0.0
    meta: dict[str, Any] | None = None

    @property
    def mean_dist_aps(self) -> dict[str, float]:
        return {name: float(np.mean(list(aps.values()))) for name, aps in self.label_aps.items()}

    @property
    def mean_ap(self) -> float:
        return float(np.mean(list(self.mean_dist_aps.values())))

    @property
    def tp_errors(self) -> dict[str, float]:
        return {metric: float(np.nanmean([self.label_tp_errors[name][metric] for name in self.config.class_names]))
                for metric in TP_METRICS}

    @property
    def tp_scores(self) -> dict[str, float]:
        return {metric: max(0.0, 1.0 - error) for metric, error in self.tp_errors.items()}

    @property
    def nd_score(self) -> float:
        total = float(self.config.mean_ap_weight * self.mean_ap + np.sum(list(self.tp_scores.values())))
        return total / float(self.config.mean_ap_weight + len(TP_METRICS))

    def to_summary(self) -> dict[str, Any]:
        """The devkit's ``metrics_summary.json``: the same keys and layout (thresholds as
        strings such as "0.5", NaN for unscored TP errors), ``meta`` from the results."""
        summary = {
            "label_aps": {name: {str(float(th)): ap for th, ap in aps.items()} for name, aps in self.label_aps.items()},
            "mean_dist_aps": self.mean_dist_aps,
            "mean_ap": self.mean_ap,
            "label_tp_errors": {name: dict(errors) for name, errors in self.label_tp_errors.items()},
            "tp_errors": self.tp_errors,
            "tp_scores": self.tp_scores,
            "nd_score": self.nd_score,
            "eval_time": self.eval_time,
            "cfg": self.config.serialize(),
        }
        if self.meta is not None:
            summary["meta"] = dict(self.meta)
        return summary

    def to_json(self) -> dict[str, Any]:
        return self.to_summary()

    def details(self) -> dict[str, dict[str, list[float]]]:
        """The devkit's ``metrics_details.json``: ``"class:threshold"`` -> curves."""
        return {f"{name}:{threshold}": curve.to_json() for (name, threshold), curve in self.curves.items()}

    def table(self):
        """A rich ``Table``: per-class AP at each threshold, mean AP and TP errors; mAP, mTP and NDS below."""
        from rich.table import Table

        table = Table(title="nuScenes detection", caption=self._caption())
        table.add_column("class", justify="left")
        for threshold in self.config.dist_ths:
            table.add_column(f"AP@{threshold:g}m", justify="right")
        for column in ("AP", "ATE", "ASE", "AOE", "AVE", "AAE"):
            table.add_column(column, justify="right")
        mean_dist_aps = self.mean_dist_aps
        for name in self.config.class_names:
            aps = [f"{self.label_aps[name][th]:.4f}" for th in self.config.dist_ths]
            errors = [_format(self.label_tp_errors[name][metric]) for metric in TP_METRICS]
            table.add_row(name, *aps, f"{mean_dist_aps[name]:.4f}", *errors)
        errors = self.tp_errors
        table.add_section()
        table.add_row("mean", *[f"{np.mean([self.label_aps[n][th] for n in self.config.class_names]):.4f}"
                                for th in self.config.dist_ths],
                      f"{self.mean_ap:.4f}", *[_format(errors[m]) for m in TP_METRICS])
        return table

    def _caption(self) -> str:
        errors = self.tp_errors
        parts = [f"mAP {self.mean_ap:.4f}"] + [f"{TP_ERROR_NAMES[m]} {errors[m]:.4f}" for m in TP_METRICS]
        return "  ".join(parts + [f"NDS {self.nd_score:.4f}", f"({self.eval_time:.2f} s)"])


def _format(value: float) -> str:
    return "nan" if np.isnan(value) else f"{value:.4f}"


def metrics_from_curves(curves: dict[tuple[str, float], MetricCurve], config: DetectionConfig) -> tuple[dict, dict]:
    """(label_aps, label_tp_errors) from the curves, with the benchmark's NaN rules."""
    label_aps = {name: {th: curves[(name, th)].average_precision(config.min_recall, config.min_precision)
                        for th in config.dist_ths} for name in config.class_names}
    label_tp_errors = {}
    for name in config.class_names:
        curve = curves[(name, float(config.dist_th_tp))]
        label_tp_errors[name] = {
            metric: float("nan") if metric in UNSCORED_TP_ERRORS.get(name, ())
            else curve.tp_error(metric, config.min_recall)
            for metric in TP_METRICS
        }
    return label_aps, label_tp_errors


# ------------------------------------------------------------------- evaluate
def evaluate_tables(ground_truth: NuScenesGroundTruth, predictions: BoxTable, config: DetectionConfig | None = None,
                    meta: Mapping[str, Any] | None = None) -> NuScenesMetrics:
    """Score predictions (global frame, ``sample`` indexing ``ground_truth.sample_tokens``,
    labels indexing ``config.class_names``) against the ground truth."""
    config = config or DetectionConfig()
    start = time.perf_counter()
    num_samples = len(ground_truth.sample_tokens)
    if len(predictions) and (predictions.sample.min() < 0 or predictions.sample.max() >= num_samples):
        raise ValueError("predictions.sample must index ground_truth.sample_tokens")
    if len(predictions) and (predictions.label.min() < 0 or predictions.label.max() >= len(config.class_names)):
        raise ValueError(f"predictions.label must index config.class_names {config.class_names}")
    gt = _gt_in_config_classes(ground_truth, config)
    gt = filter_boxes(gt, ground_truth, config)
    pred = filter_boxes(predictions, ground_truth, config)
    curves = accumulate(gt, pred, config)
    label_aps, label_tp_errors = metrics_from_curves(curves, config)
    return NuScenesMetrics(config, label_aps, label_tp_errors, curves, time.perf_counter() - start,
                           None if meta is None else dict(meta))


def _gt_in_config_classes(ground_truth: NuScenesGroundTruth, config: DetectionConfig) -> BoxTable:
    lookup = np.array([config.class_names.index(n) if n in config.class_names else -1
                       for n in ground_truth.class_names], np.int64)
    boxes = ground_truth.boxes
    labels = lookup[boxes.label] if len(boxes) else boxes.label
    kept = boxes.select(labels >= 0)
    kept.label = labels[labels >= 0]
    return kept


def evaluate_nuscenes(
    gt: NuScenesGroundTruth | Sequence[Any],
    predictions: Mapping[str, Any],
    config: DetectionConfig | None = None,
    *,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    attributes: Mapping[str, Sequence[str]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> NuScenesMetrics:
    """Score in-memory detections (sample token -> ``Detections`` in our sample frame, labels
    indexing ``class_names``) against ``gt`` (a :class:`NuScenesGroundTruth`, or ``SampleInfo``
    records: see :meth:`NuScenesGroundTruth.from_infos`). Every sample of ``gt`` needs an entry.

    Boxes go to the global frame and get attributes exactly as :func:`write_results` writes
    them, so this equals evaluating the file ``write_results`` would write.
    """
    from pointformer.evaluation.nuscenes_results import DEFAULT_META, detections_table

    config = config or DetectionConfig()
    if not isinstance(gt, NuScenesGroundTruth):
        gt = NuScenesGroundTruth.from_infos(gt)
    table = detections_table(predictions, gt.poses(), gt.sample_tokens, class_names, config.class_names,
                             attributes=attributes, max_boxes_per_sample=config.max_boxes_per_sample)
    return evaluate_tables(gt, table, config, DEFAULT_META if meta is None else meta)


def evaluate_results_file(data_root: str | os.PathLike, results_path: str | os.PathLike, split: str | None = "val",
                          *, version: str | None = None, config: DetectionConfig | None = None) -> NuScenesMetrics:
    """Score a submission JSON against the tables of ``data_root`` (the devkit's
    ``DetectionEval(nusc, config, results_path, split).evaluate()``).

    ``version``: the table folder; by default ``v1.0-trainval`` when present, else the only
    ``v1.0-*`` folder of the root. ``split``: an official split, or None for every sample.
    """
    from pointformer.evaluation.nuscenes_results import load_results

    config = config or DetectionConfig()
    root = Path(data_root)
    version = version or find_version(root)
    ground_truth = NuScenesGroundTruth.from_tables(root, version, split)
    results = load_results(results_path, ground_truth.sample_tokens, config.class_names, config.max_boxes_per_sample)
    return evaluate_tables(ground_truth, results.boxes, config, results.meta)


def find_version(root: Path) -> str:
    """The nuScenes version folder of a data root: ``v1.0-trainval`` if present, else the only ``v1.*`` one."""
    if not root.is_dir():
        raise FileNotFoundError(f"nuScenes data root {root} not found")
    if (root / "v1.0-trainval").is_dir():
        return "v1.0-trainval"
    found = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and p.name.startswith("v1.") and (p / "sample.json").is_file())
    if len(found) != 1:
        raise FileNotFoundError(f"{root}: expected one nuScenes version folder (v1.0-trainval, v1.0-mini, ...) with "
                                f"sample.json, found {found or 'none'}; pass version=")
    return found[0]
