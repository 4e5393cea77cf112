"""Colours: one per detection class, one per semantic class, and per-point colourings.

Points can be coloured by ``height`` (z), ``intensity``, ``time_lag`` (seconds before the
keyframe, multi-sweep clouds), ``semantic`` label or ``instance``. Categorical colourings
return legend entries for the classes present; continuous ones return their colour map and
value range.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from pointformer.data.classes import (
    NUSCENES_LIDARSEG_CATEGORIES, NUSCENES_LIDARSEG_CLASSES, nuscenes_lidarseg_to_benchmark,
)
from pointformer.structures import Sample

# One colour per nuScenes detection class (and the Waymo/KITTI names that mean the same thing).
CLASS_COLORS: dict[str, str] = {
    "car": "#1f77b4", "Car": "#1f77b4", "Vehicle": "#1f77b4",
    "truck": "#ff7f0e", "Truck": "#ff7f0e",
    "construction_vehicle": "#8c564b",
    "bus": "#d62728",
    "trailer": "#9467bd",
    "barrier": "#7f7f7f",
    "motorcycle": "#e377c2",
    "bicycle": "#bcbd22", "Cyclist": "#bcbd22",
    "pedestrian": "#2ca02c", "Pedestrian": "#2ca02c",
    "traffic_cone": "#17becf",
}
OTHER_COLOR = "#444444"
# Ground-truth boxes when drawn over predictions in one 3D view (predictions keep class colours).
GROUND_TRUTH_COLOR = "#f0f0f0"
UNLABELLED_COLOR = "#6e6e6e"
BACKGROUND_COLOR = "#000000"

# Semantic (per-point) classes: the detection classes' colours, plus the "stuff" classes of
# nuScenes-lidarseg and SemanticKITTI.
SEMANTIC_COLORS: dict[str, str] = {
    **{name: color for name, color in CLASS_COLORS.items() if name.islower()},
    "driveable_surface": "#6a5acd", "road": "#6a5acd",
    "other_flat": "#a0522d", "other-ground": "#a0522d", "parking": "#ff69b4",
    "sidewalk": "#b15fb1",
    "terrain": "#9acd32",
    "manmade": "#d2b48c", "building": "#d2b48c",
    "vegetation": "#0f7d3c",
    "noise": "#3a3a3a", "unlabeled": UNLABELLED_COLOR,
    "animal": "#ffd700",
    "person": "#2ca02c", "bicyclist": "#f0e442", "motorcyclist": "#ff1493",
    "other-vehicle": "#4169e1",
    "fence": "#ff7f50", "trunk": "#8b4513", "pole": "#fffacd", "traffic-sign": "#ff0000",
}
# nuScenes-lidarseg fine categories take their benchmark class's colour.
_NUSCENES_FINE_TO_CLASS: dict[str, str] = {
    fine: NUSCENES_LIDARSEG_CLASSES[coarse]
    for fine, coarse in zip(NUSCENES_LIDARSEG_CATEGORIES, nuscenes_lidarseg_to_benchmark()) if coarse >= 0
}

# SemanticKITTI's 20 learning classes (the ids of Open3D-ML's and most models' labels).
SEMANTICKITTI_CLASSES: tuple[str, ...] = (
    "unlabeled", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation",
    "trunk", "terrain", "pole", "traffic-sign",
)
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "nuscenes-lidarseg": NUSCENES_LIDARSEG_CATEGORIES,
    "nuscenes-lidarseg16": NUSCENES_LIDARSEG_CLASSES,
    "semantickitti": SEMANTICKITTI_CLASSES,
}

POINT_COLOR_MODES: tuple[str, ...] = ("height", "intensity", "time_lag", "semantic", "instance")
HEIGHT_RANGE = (-3.0, 3.0)
_COLORMAPS = {"height": "viridis", "intensity": "plasma", "time_lag": "cool"}
# Qualitative palette for names and instances without a colour of their own (matplotlib tab20).
_QUALITATIVE: tuple[str, ...] = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
    "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)


@dataclass(frozen=True)
class LegendEntry:
    """One legend row: ``label`` drawn in ``color`` (hex); ``style`` 'patch', 'line' or 'dashed'."""

    label: str
    color: str
    style: str = "patch"


@dataclass
class PointColors:
    """Per-point RGB ``colors`` (N, 3) float32 in [0, 1] and how to explain them: ``legend``
    for categorical modes, ``colormap`` and ``value_range`` for continuous ones."""

    mode: str
    colors: np.ndarray
    legend: list[LegendEntry] = field(default_factory=list)
    colormap: str | None = None
    value_range: tuple[float, float] | None = None


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    """'#rrggbb' -> (r, g, b) floats in [0, 1]."""
    if not (isinstance(color, str) and len(color) == 7 and color.startswith("#")):
        raise ValueError(f"color must be '#rrggbb', got {color!r}")
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def class_color(name: str) -> str:
    """Hex colour of a detection class (:data:`OTHER_COLOR` for names without one)."""
    return CLASS_COLORS.get(name, OTHER_COLOR)


def name_color(name: str) -> str:
    """A stable colour for any name: from the tables above, else hashed into a qualitative palette."""
    return _QUALITATIVE[zlib.crc32(name.encode()) % len(_QUALITATIVE)]


def semantic_color(name: str) -> str:
    """Hex colour of a semantic class name (nuScenes fine categories take their class's colour)."""
    if name in SEMANTIC_COLORS:
        return SEMANTIC_COLORS[name]
    if name in _NUSCENES_FINE_TO_CLASS:
        return SEMANTIC_COLORS[_NUSCENES_FINE_TO_CLASS[name]]
    return name_color(name)


def instance_color(instance: int) -> tuple[float, float, float]:
    """A stable bright colour per instance id (golden-ratio hue steps)."""
    hue = (instance * 0.6180339887) % 1.0
    return _hsv_to_rgb(hue, 0.75, 1.0)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(hue, saturation, value)


def default_label_names(sample: Sample) -> tuple[str, ...] | None:
    """Names of ``sample.point_labels`` ids where the dataset fixes them (nuScenes lidarseg)."""
    if sample.meta.get("dataset") == "nuscenes":
        return NUSCENES_LIDARSEG_CATEGORIES
    return None


def label_name_lookup(label_names: Sequence[str] | Mapping[int, str] | str | None) -> Mapping[int, str]:
    """id -> name from a list (index = id), a mapping, or a key of :data:`LABEL_SETS`."""
    if label_names is None:
        return {}
    if isinstance(label_names, str):
        if label_names not in LABEL_SETS:
            raise ValueError(f"label_names {label_names!r} is not a known label set; known: {sorted(LABEL_SETS)}")
        label_names = LABEL_SETS[label_names]
    if isinstance(label_names, Mapping):
        return {int(key): str(value) for key, value in label_names.items()}
    return dict(enumerate(label_names))


def color_points(
    sample: Sample,
    mode: str = "height",
    *,
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | Mapping[int, str] | str | None = None,
    value_range: tuple[float, float] | None = None,
) -> PointColors:
    """Colour every point of ``sample`` by ``mode`` (one of :data:`POINT_COLOR_MODES`).

    ``labels``: (N,) semantic ids overriding ``sample.point_labels`` (e.g. predictions).
    ``label_names``: names of the semantic ids (default: the dataset's, else ``class <id>``).
    ``value_range``: (low, high) of a continuous mode (default: height -3..3 m, intensity its
    1st..99th percentile, time_lag 0..max). ``instance`` uses ``sample.instance_ids`` where the
    sample has them, else the ground-truth box each point lies in (the first, where boxes overlap). Raises ``ValueError`` when
    the sample lacks what the mode needs.
    """
    if mode not in POINT_COLOR_MODES:
        raise ValueError(f"mode must be one of {POINT_COLOR_MODES}, got {mode!r}")
    if mode == "semantic":
        ids = _semantic_ids(sample, labels)
        names = label_name_lookup(label_names if label_names is not None else default_label_names(sample))
        return categorical_colors(ids, names)
    if mode == "instance":
        return _instance_colors(sample)
    column = "z" if mode == "height" else mode
    if column not in sample.point_columns:
        raise ValueError(f"color mode {mode!r} needs a {column!r} point column; the sample has {sample.point_columns}")
    values = sample.column(column).detach().cpu().numpy().astype(np.float64)
    low, high = value_range if value_range is not None else _default_range(mode, values)
    return PointColors(mode, scalar_colors(values, _COLORMAPS[mode], low, high), colormap=_COLORMAPS[mode],
                       value_range=(low, high))


def _default_range(mode: str, values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if mode == "height":
        return HEIGHT_RANGE
    if len(finite) == 0:
        return (0.0, 1.0)
    if mode == "intensity":
        low, high = np.percentile(finite, [1.0, 99.0])
    else:
        low, high = 0.0, float(finite.max())
    return (float(low), float(high) if high > low else float(low) + 1.0)


def scalar_colors(values: np.ndarray, colormap: str, low: float, high: float) -> np.ndarray:
    """(N,) values -> (N, 3) float32 RGB through a matplotlib colour map, clipped to [low, high]."""
    if not high > low:
        raise ValueError(f"value range must have high > low, got ({low}, {high})")
    from matplotlib import colormaps

    scaled = np.clip((np.nan_to_num(np.asarray(values, np.float64), nan=low) - low) / (high - low), 0.0, 1.0)
    return colormaps[colormap](scaled)[:, :3].astype(np.float32)


def categorical_colors(ids: np.ndarray, names: Mapping[int, str]) -> PointColors:
    """(N,) integer ids -> colours by class name, with a legend of the ids present (sorted by id).
    Negative ids are unlabelled (grey); ids without a name are called ``class <id>``."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    present, inverse = np.unique(ids, return_inverse=True)
    legend = []
    for value in present.tolist():
        name = "unlabelled" if value < 0 else names.get(value, f"class {value}")
        legend.append(LegendEntry(name, UNLABELLED_COLOR if value < 0 else semantic_color(name)))
    palette = np.array([hex_to_rgb(entry.color) for entry in legend], np.float32).reshape(-1, 3)
    return PointColors("semantic", palette[inverse.reshape(-1)], legend=legend)


def _semantic_ids(sample: Sample, labels: np.ndarray | None) -> np.ndarray:
    if labels is None:
        if sample.point_labels is None:
            raise ValueError("color mode 'semantic' needs point labels: the sample has none and no labels were given")
        return sample.point_labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.shape != (sample.num_points,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be ({sample.num_points},) integers, got {labels.dtype} {labels.shape}")
    return labels


def _instance_colors(sample: Sample) -> PointColors:
    if sample.instance_ids is not None:
        ids = sample.instance_ids.detach().cpu().numpy().astype(np.int64)
        background = ids <= 0  # SemanticKITTI: 0 is "no instance"; ours: -1
    else:
        from pointformer.data.gt_database import point_indices_in_boxes

        ids = np.zeros(sample.num_points, np.int64)
        for box, inside in enumerate(point_indices_in_boxes(sample.points[:, :3].cpu(), sample.boxes)):
            unclaimed = inside.numpy()[ids[inside.numpy()] == 0]  # a point in two boxes keeps the first
            ids[unclaimed] = box + 1
        background = ids == 0
    present, inverse = np.unique(ids, return_inverse=True)
    palette = np.array([instance_color(value) for value in present.tolist()], np.float32).reshape(-1, 3)
    colors = palette[inverse.reshape(-1)]
    colors[background] = hex_to_rgb(UNLABELLED_COLOR)
    return PointColors("instance", colors)
