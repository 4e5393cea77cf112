"""nuScenes detection results files: our ``Detections`` written as a submission, and read back.

A submission is one JSON document::

    {"meta": {"use_camera": false, "use_lidar": true, ...},
     "results": {<sample token>: [{"sample_token", "translation", "size", "rotation", "velocity",
                                   "detection_name", "detection_score", "attribute_name"}, ...]}}

with boxes in the global frame (translation x, y, z; size w, l, h; rotation quaternion
w, x, y, z; velocity vx, vy in m/s), at most 500 per sample, and every sample of the evaluated
split present (an empty list where nothing was detected). Attributes follow mmdetection3d's and
CenterPoint's rule: from the speed (moving above 0.2 m/s) and the class, falling back to the
class's default attribute. An unknown velocity (boxes without velocity columns) is written as
NaN, as mmdetection3d writes it; the devkit then counts the box's velocity error as 1.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.evaluation.nuscenes_boxes import (
    ATTRIBUTE_INDEX, ATTRIBUTE_NAMES, DEVKIT_DETECTION_NAMES, BoxTable, boxes_from_global, boxes_to_global,
    gc_paused, matrix_quaternion, sample_poses,
)
from pointformer.structures import Boxes3D, Detections

DEFAULT_META: dict[str, bool] = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
                                 "use_external": False}
MAX_BOXES_PER_SAMPLE = 500
MOVING_SPEED = 0.2  # m/s: faster is "moving" for the attribute rule

# The attribute a class gets when the speed rule does not pick one (mmdetection3d's DefaultAttribute).
DEFAULT_ATTRIBUTE: dict[str, str] = {
    "car": "vehicle.parked", "pedestrian": "pedestrian.moving", "trailer": "vehicle.parked",
    "truck": "vehicle.parked", "bus": "vehicle.moving", "motorcycle": "cycle.without_rider",
    "construction_vehicle": "vehicle.parked", "bicycle": "cycle.without_rider", "barrier": "", "traffic_cone": "",
}
MOVING_ATTRIBUTE: dict[str, str] = {
    **{name: "vehicle.moving" for name in ("car", "construction_vehicle", "bus", "truck", "trailer")},
    "bicycle": "cycle.with_rider", "motorcycle": "cycle.with_rider",
}
STATIC_ATTRIBUTE: dict[str, str] = {"pedestrian": "pedestrian.standing", "bus": "vehicle.stopped"}

BOX_KEYS: tuple[str, ...] = ("sample_token", "translation", "size", "rotation", "velocity", "detection_name",
                             "detection_score", "attribute_name")
_ATTRIBUTE_LOOKUP = {"": -1, **ATTRIBUTE_INDEX}


def attribute_for(name: str, velocity_xy: Sequence[float]) -> str:
    """The attribute of one box of class ``name``: moving above 0.2 m/s (vehicles ->
    ``vehicle.moving``, cycles -> ``cycle.with_rider``), else pedestrians ``pedestrian.standing``
    and buses ``vehicle.stopped``; otherwise the class default. A NaN speed is not moving."""
    speed = float(np.hypot(*velocity_xy[:2]))
    rule = MOVING_ATTRIBUTE if speed > MOVING_SPEED else STATIC_ATTRIBUTE
    return rule.get(name, DEFAULT_ATTRIBUTE[name])


def default_attributes(labels: np.ndarray, velocity: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(N,) int64 attribute indices (-1 for none) by :func:`attribute_for`, vectorised:
    ``labels`` index ``class_names``; ``velocity`` (N, 2) global m/s."""
    with np.errstate(invalid="ignore"):
        moving = np.sqrt(velocity[:, 0] ** 2 + velocity[:, 1] ** 2) > MOVING_SPEED
    moving_table = np.array([_ATTRIBUTE_LOOKUP[MOVING_ATTRIBUTE.get(n, DEFAULT_ATTRIBUTE[n])] for n in class_names])
    static_table = np.array([_ATTRIBUTE_LOOKUP[STATIC_ATTRIBUTE.get(n, DEFAULT_ATTRIBUTE[n])] for n in class_names])
    if len(labels) == 0:
        return np.zeros(0, np.int64)
    return np.where(moving, moving_table[labels], static_table[labels]).astype(np.int64)


# ------------------------------------------------------------------ writing
def _check_class_names(class_names: Sequence[str], argument: str) -> tuple[str, ...]:
    names = tuple(class_names)
    unknown = [n for n in names if n not in DEVKIT_DETECTION_NAMES]
    if unknown or not names:
        raise ValueError(f"{argument}: {unknown or 'no names'} are not nuScenes detection classes "
                         f"{list(DEVKIT_DETECTION_NAMES)}")
    return names


def _check_tokens(given: Sequence[str], expected: Sequence[str], what: str, where: str) -> None:
    """Both ways: every expected sample present, nothing else."""
    expected_set, given_set = set(expected), set(given)
    missing = [t for t in expected if t not in given_set]
    if missing:
        raise ValueError(f"{where}: {len(missing)} of {len(expected)} samples have no {what} entry, e.g. "
                         f"{missing[:3]} (every evaluated sample needs one; use an empty list / empty Detections)")
    extra = [t for t in given if t not in expected_set]
    if extra:
        raise ValueError(f"{where}: {len(extra)} {what} entries name samples that are not evaluated here, "
                         f"e.g. {extra[:3]}")


def detections_table(
    detections: Mapping[str, Detections],
    poses: Mapping[str, np.ndarray],
    sample_tokens: Sequence[str],
    class_names: Sequence[str],
    eval_class_names: Sequence[str],
    *,
    attributes: Mapping[str, Sequence[str]] | None = None,
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
) -> BoxTable:
    """Detections in our sample frames -> a global-frame :class:`BoxTable`, rows in the order of
    ``detections`` (its samples, then their boxes).

    ``class_names``: what the detections' labels index; ``eval_class_names``: what the table's
    labels index. ``attributes``: optional attribute names per sample (one per box) replacing
    the speed rule. Raises ``ValueError`` naming the sample for missing or extra samples, more
    than ``max_boxes_per_sample`` boxes, labels out of range or of a class not evaluated,
    non-finite boxes or scores, and non-positive sizes.
    """
    class_names = _check_class_names(class_names, "class_names")
    eval_class_names = tuple(eval_class_names)
    _check_tokens(list(detections), sample_tokens, "detections", "detections")
    sample_index = {token: i for i, token in enumerate(sample_tokens)}
    to_eval = np.array([eval_class_names.index(n) if n in eval_class_names else -1 for n in class_names], np.int64)
    parts = []
    for token, found in detections.items():
        if not isinstance(found, Detections):
            raise ValueError(f"detections[{token!r}] must be a Detections, got {type(found).__name__}")
        count = len(found)
        if count > max_boxes_per_sample:
            raise ValueError(f"detections[{token!r}] has {count} boxes; a nuScenes submission allows at most "
                             f"{max_boxes_per_sample} per sample (keep the highest scores)")
        boxes = found.boxes.tensor.detach().cpu().to(torch.float64).numpy()
        scores = found.scores.detach().cpu().to(torch.float64).numpy()
        labels = found.labels.detach().cpu().numpy().astype(np.int64)
        _check_detections(token, boxes, scores, labels, class_names, to_eval, eval_class_names)
        placed = boxes_to_global(boxes, poses[token], matrix_quaternion(poses[token][:3, :3]))
        eval_labels = to_eval[labels] if count else np.zeros(0, np.int64)
        if attributes is not None and token in attributes:
            attribute = _attribute_indices(token, attributes[token], count)
        else:
            attribute = default_attributes(labels, placed["velocity"], class_names)
        parts.append(BoxTable(
            sample=np.full(count, sample_index[token], np.int64), translation=placed["translation"],
            size=placed["size"], rotation=placed["rotation"], velocity=placed["velocity"], label=eval_labels,
            score=scores, attribute=attribute, num_pts=np.full(count, -1, np.int64),
        ))
    return BoxTable.cat(parts)


def _check_detections(token: str, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                      class_names: tuple[str, ...], to_eval: np.ndarray, eval_class_names: tuple[str, ...]) -> None:
    where = f"detections[{token!r}]"
    if len(labels) == 0:
        return
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"{where}.labels must index class_names ({len(class_names)} names), "
                         f"got values in [{labels.min()}, {labels.max()}]")
    not_evaluated = sorted({class_names[i] for i in labels[to_eval[labels] < 0]})
    if not_evaluated:
        raise ValueError(f"{where}: classes {not_evaluated} are not evaluated "
                         f"(config classes {list(eval_class_names)})")
    if not np.isfinite(boxes[:, :7]).all():
        raise ValueError(f"{where}.boxes: x, y, z, l, w, h, yaw must be finite")
    if not np.isfinite(scores).all():
        raise ValueError(f"{where}.scores must be finite")
    if (boxes[:, 3:6] <= 0).any():
        raise ValueError(f"{where}.boxes: sizes l, w, h must be positive")


def _attribute_indices(token: str, names: Sequence[str], count: int) -> np.ndarray:
    names = list(names)
    if len(names) != count:
        raise ValueError(f"attributes[{token!r}] has {len(names)} names for {count} detections")
    unknown = [n for n in names if n not in _ATTRIBUTE_LOOKUP]
    if unknown:
        raise ValueError(f"attributes[{token!r}]: {unknown[0]!r} is not a nuScenes attribute "
                         f"({list(ATTRIBUTE_NAMES)} or '')")
    return np.array([_ATTRIBUTE_LOOKUP[n] for n in names], np.int64)


def results_document(
    detections: Mapping[str, Detections],
    infos: Any,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    *,
    attributes: Mapping[str, Sequence[str]] | None = None,
    meta: Mapping[str, Any] | None = None,
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
) -> dict[str, Any]:
    """The submission document of :func:`write_results` (see there), as a dict."""
    poses = sample_poses(infos)
    tokens = list(poses)
    class_names = _check_class_names(class_names, "class_names")
    table = detections_table(detections, poses, tokens, class_names, class_names, attributes=attributes,
                             max_boxes_per_sample=max_boxes_per_sample)
    names = [class_names[i] for i in table.label.tolist()]
    attribute_names = ["" if i < 0 else ATTRIBUTE_NAMES[i] for i in table.attribute.tolist()]
    columns = (table.translation.tolist(), table.size.tolist(), table.rotation.tolist(), table.velocity.tolist(),
               names, table.score.tolist(), attribute_names)
    results: dict[str, list[dict]] = {token: [] for token in detections}
    for sample, translation, size, rotation, velocity, name, score, attribute in zip(table.sample.tolist(), *columns):
        token = tokens[sample]
        results[token].append({"sample_token": token, "translation": translation, "size": size, "rotation": rotation,
                               "velocity": velocity, "detection_name": name, "detection_score": score,
                               "attribute_name": attribute})
    return {"meta": dict(DEFAULT_META if meta is None else meta), "results": results}


def write_results(
    path: str | os.PathLike,
    detections: Mapping[str, Detections],
    infos: Any,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    *,
    attributes: Mapping[str, Sequence[str]] | None = None,
    meta: Mapping[str, Any] | None = None,
    max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE,
) -> Path:
    """Write a nuScenes detection submission.

    ``detections``: sample token -> ``Detections`` in our sample frame, labels indexing
    ``class_names``; every sample of ``infos`` needs an entry (empty ``Detections`` for
    none), and no other. ``infos``: ``SampleInfo`` records with ``meta['global_from_lidar']``,
    a ``NuScenesGroundTruth``, or a mapping token -> 4x4 ``global_from_sample`` pose.
    ``attributes``: optional attribute names per sample, one per box (default: the speed rule).
    ``meta``: the submission's ``meta`` block (default: LiDAR only). Returns the path.
    """
    document = results_document(detections, infos, class_names, attributes=attributes, meta=meta,
                                 max_boxes_per_sample=max_boxes_per_sample)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ reading
@dataclass
class Results:
    """A submission as a :class:`BoxTable` (``sample`` indexing ``sample_tokens``, labels
    indexing the class names it was read with) and its ``meta`` block."""

    boxes: BoxTable
    meta: dict[str, Any]
    sample_tokens: list[str]


class _Invalid(Exception):
    """Some box failed a vectorised check; the slow pass finds and names it."""


def load_results(source: str | os.PathLike | Mapping[str, Any], sample_tokens: Sequence[str],
                 class_names: Sequence[str] = DEVKIT_DETECTION_NAMES,
                 max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE) -> Results:
    """Read and check a submission (a path or the parsed document) for ``sample_tokens``.

    Every sample must be present and no other; each box needs the keys of :data:`BOX_KEYS`
    (its ``sample_token`` equal to the sample it is listed under), finite translation, size > 0,
    a non-zero rotation, two velocity numbers (NaN allowed), a finite score, a class of
    ``class_names`` and a known attribute or "". An optional integer ``num_pts`` is kept (the
    devkit drops boxes that give 0). Errors name the file, the sample token, the box and the field.
    """
    with gc_paused():
        return _load_results(source, sample_tokens, tuple(class_names), max_boxes_per_sample)


def _load_results(source: str | os.PathLike | Mapping[str, Any], sample_tokens: Sequence[str],
                  class_names: tuple[str, ...], max_boxes_per_sample: int) -> Results:
    where = str(source) if not isinstance(source, Mapping) else "results"
    document = _read_document(source) if not isinstance(source, Mapping) else source
    if not isinstance(document, Mapping) or "results" not in document:
        raise ValueError(f"{where}: a nuScenes submission is an object with a 'results' field (sample token -> boxes)")
    if "meta" not in document or not isinstance(document["meta"], Mapping):
        raise ValueError(f"{where}: the submission needs a 'meta' object (e.g. {DEFAULT_META})")
    results = document["results"]
    if not isinstance(results, Mapping):
        raise ValueError(f"{where}: 'results' must map sample tokens to lists of boxes, got {type(results).__name__}")
    _check_tokens(list(results), sample_tokens, "results", where)
    for token, boxes in results.items():
        if not isinstance(boxes, list):
            raise ValueError(f"{where}: results[{token!r}] must be a list of boxes, got {type(boxes).__name__}")
        if len(boxes) > max_boxes_per_sample:
            raise ValueError(f"{where}: results[{token!r}] has {len(boxes)} boxes; at most {max_boxes_per_sample} "
                             "per sample are allowed")
    sample_index = {token: i for i, token in enumerate(sample_tokens)}
    try:
        table = _columns(results, sample_index, class_names)
    except _Invalid:
        for token, boxes in results.items():
            for position, box in enumerate(boxes):
                _check_box(box, token, position, class_names, where)
        raise ValueError(f"{where}: invalid boxes (no single box could be blamed)") from None
    return Results(table, dict(document["meta"]), list(sample_tokens))


def _read_document(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found")
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _float_array(values: list, width: int) -> np.ndarray:
    """(N, width) float64 from N lists of ``width`` numbers (``_Invalid`` otherwise)."""
    if len(values) == 0:
        return np.zeros((0, width))
    try:
        if set(map(len, values)) != {width}:
            raise _Invalid
        flat = np.fromiter(itertools.chain.from_iterable(values), np.float64, count=width * len(values))
        return flat.reshape(-1, width)
    except (TypeError, ValueError):
        raise _Invalid from None


def _columns(results: Mapping[str, list], sample_index: dict[str, int], class_names: tuple[str, ...]) -> BoxTable:
    """All boxes as a table, with every check vectorised (``_Invalid`` on any failure)."""
    boxes = [box for entries in results.values() for box in entries]
    counts = [len(entries) for entries in results.values()]
    if not all(type(box) is dict for box in boxes):
        raise _Invalid
    try:
        columns = {key: [box[key] for box in boxes] for key in BOX_KEYS}
        num_pts = [box.get("num_pts", -1) for box in boxes]
    except KeyError:
        raise _Invalid from None
    expected_tokens = [token for token, count in zip(results, counts) for _ in range(count)]
    if columns["sample_token"] != expected_tokens:
        raise _Invalid
    translation = _float_array(columns["translation"], 3)
    size = _float_array(columns["size"], 3)
    rotation = _float_array(columns["rotation"], 4)
    velocity = _float_array(columns["velocity"], 2)
    try:
        score = np.array(columns["detection_score"], dtype=np.float64).reshape(len(boxes))
        label_lookup = {name: i for i, name in enumerate(class_names)}
        label = np.array([label_lookup.get(name, -1) for name in columns["detection_name"]], np.int64)
        attribute = np.array([_ATTRIBUTE_LOOKUP.get(name, -2) for name in columns["attribute_name"]], np.int64)
    except (TypeError, ValueError):  # e.g. an unhashable name
        raise _Invalid from None
    if not all(type(n) is int for n in num_pts):
        raise _Invalid
    valid = (np.isfinite(translation).all() and np.isfinite(size).all() and (size > 0).all()
             and np.isfinite(rotation).all() and (np.abs(rotation).sum(axis=1) > 0).all()
             and np.isfinite(score).all() and (label >= 0).all() and (attribute >= -1).all())
    if not valid:
        raise _Invalid
    sample = np.repeat(np.array([sample_index[t] for t in results], np.int64), counts)
    return BoxTable(sample=sample, translation=translation, size=size, rotation=rotation, velocity=velocity,
                    label=label, score=score, attribute=attribute, num_pts=np.array(num_pts, np.int64).reshape(-1))


def _check_box(box: Any, token: str, position: int, class_names: tuple[str, ...], where: str) -> None:
    """Raise ``ValueError`` for the first problem of one box, naming the sample, box and field."""
    at = f"{where}: results[{token!r}][{position}]"
    if not isinstance(box, dict):
        raise ValueError(f"{at} must be an object with keys {list(BOX_KEYS)}, got {type(box).__name__}")
    for key in BOX_KEYS:
        if key not in box:
            close = difflib.get_close_matches(key, [str(k) for k in box if k not in BOX_KEYS], n=1, cutoff=0.6)
            hint = f" (found {close[0]!r})" if close else ""
            raise ValueError(f"{at} has no field {key!r}{hint}; a box needs {list(BOX_KEYS)}")
    if box["sample_token"] != token:
        raise ValueError(f"{at}.sample_token is {box['sample_token']!r}, but the box is listed under {token!r}")
    for key, width, rule in (("translation", 3, "finite"), ("size", 3, "positive"), ("rotation", 4, "nonzero"),
                             ("velocity", 2, "any")):
        try:
            value = np.array(box[key], dtype=np.float64)
        except (TypeError, ValueError):
            value = None
        if value is None or value.shape != (width,):
            raise ValueError(f"{at}.{key} must be {width} numbers, got {box[key]!r}")
        if rule != "any" and not np.isfinite(value).all():
            raise ValueError(f"{at}.{key} must be finite, got {box[key]!r}")
        if rule == "positive" and (value <= 0).any():
            raise ValueError(f"{at}.size must be positive (w, l, h), got {box[key]!r}")
        if rule == "nonzero" and not np.abs(value).sum() > 0:
            raise ValueError(f"{at}.rotation is the zero quaternion")
    if not isinstance(box["detection_name"], str) or box["detection_name"] not in class_names:
        raise ValueError(f"{at}.detection_name {box['detection_name']!r} is not one of {list(class_names)}")
    try:
        score = float(box["detection_score"])
    except (TypeError, ValueError):
        score = float("nan")
    if not np.isfinite(score):
        raise ValueError(f"{at}.detection_score must be a finite number, got {box['detection_score']!r}")
    if not isinstance(box["attribute_name"], str) or box["attribute_name"] not in _ATTRIBUTE_LOOKUP:
        raise ValueError(f"{at}.attribute_name {box['attribute_name']!r} is not one of {list(ATTRIBUTE_NAMES)} or ''")
    if "num_pts" in box and type(box["num_pts"]) is not int:
        raise ValueError(f"{at}.num_pts must be an integer, got {box['num_pts']!r}")


def read_results(path: str | os.PathLike, infos: Any, class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
                 *, max_boxes_per_sample: int = MAX_BOXES_PER_SAMPLE) -> dict[str, Detections]:
    """A submission back in our sample frames: sample token -> ``Detections`` (9-column boxes,
    float32; labels indexing ``class_names``), in the order of ``infos`` (``SampleInfo``
    records with ``meta['global_from_lidar']``, a ``NuScenesGroundTruth`` or a token -> pose
    mapping). The file must hold exactly the samples of ``infos``; see :func:`load_results`."""
    poses = sample_poses(infos)
    tokens = list(poses)
    class_names = _check_class_names(class_names, "class_names")
    table = load_results(path, tokens, class_names, max_boxes_per_sample).boxes
    order = np.argsort(table.sample, kind="stable")
    bounds = np.searchsorted(table.sample[order], np.arange(len(tokens) + 1))
    out: dict[str, Detections] = {}
    for index, token in enumerate(tokens):
        rows = order[bounds[index]:bounds[index + 1]]
        boxes = boxes_from_global(table.translation[rows], table.size[rows], table.rotation[rows],
                                  table.velocity[rows], poses[token])
        out[token] = Detections(Boxes3D(torch.from_numpy(boxes).float()),
                                torch.from_numpy(table.score[rows]).float(),
                                torch.from_numpy(table.label[rows]).long())
    return out
