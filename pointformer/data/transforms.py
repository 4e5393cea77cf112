"""Training transforms on ``Sample``: filters, global augmentations, sweep subsampling, GT sampling.

Every transform is a small class configured by its constructor (defaults follow mmdetection3d /
OpenPCDet) and called as ``transform(sample, rng) -> Sample``. Calls are pure: the input sample
is left as it was and a new one is returned; all randomness comes from ``rng``, so the same
generator state gives the same output. Points, their labels, boxes and velocities stay
consistent. Dropped things are counted in ``meta`` (``dropped_*`` keys, accumulated) and logged
at debug level. Geometric augmentations are appended to ``meta["augmentations"]`` as primitive
operations, and :func:`invert_augmentations` maps predicted boxes back to the original frame.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import torch

from pointformer.data.gt_database import GTDatabase, points_in_any_box
from pointformer.structures import Annotations, Boxes3D, Sample

log = logging.getLogger(__name__)


class Transform(Protocol):
    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample: ...


# ------------------------------------------------------------------ helpers
def _with_meta(sample: Sample, counts: Mapping[str, int] | None = None, **updates: Any) -> Sample:
    """A copy of ``sample`` with a new meta dict: ``counts`` added to existing counters."""
    meta = dict(sample.meta)
    for key, value in (counts or {}).items():
        meta[key] = int(meta.get(key, 0)) + int(value)
    meta.update(updates)
    return replace(sample, meta=meta)


def _with_augmentation(sample: Sample, *ops: dict[str, Any]) -> Sample:
    return _with_meta(sample, augmentations=[*sample.meta.get("augmentations", []), *ops])


def _drop_points(sample: Sample, keep: torch.Tensor, counter: str, reason: str) -> Sample:
    dropped = int((~keep).sum())
    if dropped:
        log.debug("%s: dropped %d points (%s)", sample.meta.get("sample_id", "sample"), dropped, reason)
    return _with_meta(sample.select_points(keep), {counter: dropped})


def _drop_boxes(sample: Sample, keep: torch.Tensor, counter: str, reason: str) -> Sample:
    dropped = int((~keep).sum())
    if dropped:
        log.debug("%s: dropped %d boxes (%s)", sample.meta.get("sample_id", "sample"), dropped, reason)
    return _with_meta(sample.with_annotations(sample.annotations.select(keep)), {counter: dropped})


def _as_range(point_cloud_range: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(v) for v in point_cloud_range)
    if len(values) != 6 or not all(lo < hi for lo, hi in zip(values[:3], values[3:])):
        raise ValueError(f"point_cloud_range must be (x0, y0, z0, x1, y1, z1) with x0 < x1 etc., got {point_cloud_range}")
    return values


def _rotate_xy(xyz: torch.Tensor, angle: float) -> torch.Tensor:
    """(N, 3) float64 rotated counter-clockwise about z by ``angle`` radians."""
    cos, sin = math.cos(angle), math.sin(angle)
    out = xyz.clone()
    out[:, 0] = cos * xyz[:, 0] - sin * xyz[:, 1]
    out[:, 1] = sin * xyz[:, 0] + cos * xyz[:, 1]
    return out


def _apply_to_xyz(sample: Sample, op) -> Sample:
    """Apply ``op`` ((N, 3) float64 -> (N, 3) float64) to the point coordinates only."""
    points = sample.points.clone()
    points[:, :3] = op(sample.points[:, :3].to(torch.float64)).to(points.dtype)
    return sample.with_points(points)


class Compose:
    """Apply transforms in order; accepts any callables ``(sample, rng) -> sample``."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


# ------------------------------------------------------------------ filters
@dataclass
class PointRangeFilter:
    """Keep points with ``x0 <= x < x1``, ``y0 <= y < y1``, ``z0 <= z < z1``.

    Compared in the points' dtype (float32): a point stored as ``float32(x0)`` is kept, one at
    ``float32(x1)`` is dropped. Non-finite points are dropped. Counted in
    ``meta["dropped_out_of_range"]``.
    """

    point_cloud_range: Sequence[float]

    def __post_init__(self) -> None:
        self.point_cloud_range = _as_range(self.point_cloud_range)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        xyz = sample.points[:, :3]
        bounds = torch.tensor(self.point_cloud_range, dtype=xyz.dtype, device=xyz.device)
        keep = ((xyz >= bounds[:3]) & (xyz < bounds[3:])).all(dim=1)
        return _drop_points(sample, keep, "dropped_out_of_range", f"outside {self.point_cloud_range}")


@dataclass
class ObjectRangeFilter:
    """Keep boxes whose BEV centre is strictly inside ``(x0, x1) x (y0, y1)`` (mmdetection3d's
    ``in_range_bev``); z is not checked. Counted in ``meta["dropped_boxes_out_of_range"]``."""

    point_cloud_range: Sequence[float]

    def __post_init__(self) -> None:
        self.point_cloud_range = _as_range(self.point_cloud_range)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        x0, y0, _, x1, y1, _ = self.point_cloud_range
        center = sample.boxes.tensor[:, :2]
        keep = (center[:, 0] > x0) & (center[:, 1] > y0) & (center[:, 0] < x1) & (center[:, 1] < y1)
        return _drop_boxes(sample, keep, "dropped_boxes_out_of_range", "centre out of range")


@dataclass
class ObjectNameFilter:
    """Keep boxes whose name is one of ``class_names``; counted in ``meta["dropped_boxes_by_name"]``."""

    class_names: Sequence[str]

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        wanted = set(self.class_names)
        keep = torch.tensor([name in wanted for name in sample.annotations.names], dtype=torch.bool)
        return _drop_boxes(sample, keep, "dropped_boxes_by_name", "class not listed")


@dataclass
class ObjectMinPointsFilter:
    """Keep boxes with ``Annotations.num_points >= min_points`` (one threshold, or one per class,
    unlisted classes kept); a count of -1 (unknown) keeps the box. Counted in
    ``meta["dropped_boxes_few_points"]``."""

    min_points: int | Mapping[str, int] = 1

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        annotations = sample.annotations
        if isinstance(self.min_points, Mapping):
            thresholds = [int(self.min_points.get(name, 0)) for name in annotations.names]
        else:
            thresholds = [int(self.min_points)] * len(annotations)
        threshold = torch.tensor(thresholds, dtype=torch.int64).reshape(-1)
        counts = annotations.num_points
        keep = (counts < 0) | (counts >= threshold)
        return _drop_boxes(sample, keep, "dropped_boxes_few_points", "too few points")


@dataclass
class NonFiniteFilter:
    """Drop points with any NaN/inf value (``meta["dropped_non_finite"]``) and, when
    ``drop_boxes``, boxes with non-finite geometry (first 7 values; an unknown NaN velocity is
    allowed) (``meta["dropped_non_finite_boxes"]``)."""

    drop_boxes: bool = True

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        sample = _drop_points(sample, torch.isfinite(sample.points).all(dim=1), "dropped_non_finite", "non-finite")
        if self.drop_boxes:
            keep = torch.isfinite(sample.boxes.tensor[:, :7]).all(dim=1)
            sample = _drop_boxes(sample, keep, "dropped_non_finite_boxes", "non-finite geometry")
        return sample


@dataclass
class CameraFOVFilter:
    """Keep the points seen by KITTI's left colour camera (image_2): positive depth and a
    projection inside the image, ``0 <= u < w`` and ``0 <= v < h`` (OpenPCDet's ``FOV_POINTS_ONLY``,
    mmdetection3d's ``velodyne_reduced`` clouds).

    Reads ``meta["kitti"]["calib"]`` (``P2``, ``R0_rect``, ``Tr_velo_to_cam`` as 4x4 lists, as
    :class:`pointformer.data.readers.kitti.KittiReader` stores them) and
    ``meta["kitti"]["image_shape"]`` ([h, w] pixels); a sample without them is an error naming
    the missing key. ``[u, v, d] = P2 @ R0_rect @ Tr_velo_to_cam @ [x, y, z, 1]`` in float64: the
    pixel is ``(u / d, v / d)`` and ``d`` (metres) is the depth along camera 2's axis (OpenPCDet
    divides by the rectified camera-0 depth instead, a few millimetres apart). Non-finite points
    are dropped. Counted in ``meta["dropped_outside_camera_fov"]``.
    """

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        lidar_to_image, (height, width) = kitti_camera(sample)
        xyz = sample.points[:, :3].detach().cpu().to(torch.float64).numpy()
        keep = points_in_image(xyz, lidar_to_image, height, width)
        return _drop_points(sample, torch.from_numpy(keep).to(sample.points.device), "dropped_outside_camera_fov",
                            "outside the image_2 field of view")


def kitti_camera(sample: Sample) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, 4) LiDAR -> image_2 projection ``P2 @ R0_rect @ Tr_velo_to_cam`` and the image (h, w)
    from ``meta["kitti"]``; a missing or malformed entry is a ``ValueError`` naming it."""
    where = f"{sample.meta.get('sample_id', 'sample')}: CameraFOVFilter"
    kitti = sample.meta.get("kitti")
    if not isinstance(kitti, Mapping):
        raise ValueError(f"{where} needs meta['kitti'] (load the sample from a KITTI info record)")
    calib = kitti.get("calib")
    if not isinstance(calib, Mapping):
        raise ValueError(f"{where} needs meta['kitti']['calib'] (P2, R0_rect, Tr_velo_to_cam)")
    matrices = []
    for name in ("P2", "R0_rect", "Tr_velo_to_cam"):
        if calib.get(name) is None:
            raise ValueError(f"{where} needs meta['kitti']['calib'][{name!r}]")
        matrix = np.asarray(calib[name], dtype=np.float64)
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
            raise ValueError(f"{where}: meta['kitti']['calib'][{name!r}] must be a finite 4x4 matrix, got shape {matrix.shape}")
        matrices.append(matrix)
    shape = kitti.get("image_shape")
    if shape is None:
        raise ValueError(f"{where} needs meta['kitti']['image_shape'] ([h, w]; the frame has no image_2 file?)")
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"{where}: meta['kitti']['image_shape'] must be [h, w] > 0, got {shape}")
    p2, r0_rect, velo_to_cam = matrices
    return (p2 @ r0_rect @ velo_to_cam)[:3], (int(shape[0]), int(shape[1]))


def points_in_image(xyz: np.ndarray, lidar_to_image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N,) bool: the (N, 3) points whose projection by the (3, 4) ``lidar_to_image`` has depth
    > 0 and lands in ``[0, width) x [0, height)`` pixels."""
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite points give NaN and fail every test
        uvd = xyz @ lidar_to_image[:, :3].T + lidar_to_image[:, 3]
        depth = uvd[:, 2]
        in_front = depth > 0
        u = uvd[:, 0] / np.where(in_front, depth, 1.0)
        v = uvd[:, 1] / np.where(in_front, depth, 1.0)
        return in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)


# --------------------------------------------------------- global augments
@dataclass
class GlobalRotScaleTrans:
    """Rotate about z by ``U(rot_range)`` radians, scale by ``U(scale_range)``, then translate by
    ``N(0, translation_std)`` metres — points' x, y, z (features untouched) and boxes alike
    (velocities rotate and scale). Recorded in ``meta["augmentations"]`` as ``rotate_z``,
    ``scale`` and ``translate`` operations."""

    rot_range: Sequence[float] = (-math.pi / 4, math.pi / 4)
    scale_range: Sequence[float] = (0.95, 1.05)
    translation_std: Sequence[float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        self.rot_range = tuple(float(v) for v in self.rot_range)
        self.scale_range = tuple(float(v) for v in self.scale_range)
        self.translation_std = tuple(float(v) for v in self.translation_std)
        if len(self.rot_range) != 2 or self.rot_range[0] > self.rot_range[1]:
            raise ValueError(f"rot_range must be (low, high), got {self.rot_range}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if len(self.translation_std) != 3 or min(self.translation_std) < 0:
            raise ValueError(f"translation_std must be 3 non-negative values, got {self.translation_std}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        angle = float(rng.uniform(*self.rot_range))
        factor = float(rng.uniform(*self.scale_range))
        offset = [float(v) for v in rng.normal(0.0, self.translation_std)]
        return apply_rot_scale_trans(sample, angle, factor, offset)


def apply_rot_scale_trans(sample: Sample, angle: float, factor: float, offset: Sequence[float]) -> Sample:
    """Rotate (about z, radians), scale, then translate (metres) a sample; recorded in meta."""
    shift = torch.tensor(offset, dtype=torch.float64)
    sample = _apply_to_xyz(sample, lambda xyz: _rotate_xy(xyz, angle) * factor + shift)
    boxes = sample.boxes.rotate(angle).scale(factor).translate(offset)
    sample = sample.with_annotations(sample.annotations.with_boxes(boxes))
    return _with_augmentation(
        sample,
        {"op": "rotate_z", "angle": angle},
        {"op": "scale", "factor": factor},
        {"op": "translate", "offset": list(offset)},
    )


@dataclass
class RandomFlip:
    """Mirror the scene: with probability ``flip_ratio_x`` across the x axis (y -> -y, OpenPCDet's
    ``random_flip_along_x``, mmdetection3d's BEV horizontal flip), then with probability
    ``flip_ratio_y`` across the y axis (x -> -x). Recorded as ``flip`` operations."""

    flip_ratio_x: float = 0.5
    flip_ratio_y: float = 0.5

    def __post_init__(self) -> None:
        for name in ("flip_ratio_x", "flip_ratio_y"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        # Both draws always happen so that later transforms see the same generator state.
        negate_y = bool(rng.random() < self.flip_ratio_x)
        negate_x = bool(rng.random() < self.flip_ratio_y)
        if negate_y:
            sample = flip(sample, "y")
        if negate_x:
            sample = flip(sample, "x")
        return sample


def flip(sample: Sample, coordinate: str) -> Sample:
    """Negate one coordinate (``"x"`` or ``"y"``) of points and boxes; recorded in meta."""
    column = {"x": 0, "y": 1}.get(coordinate)
    if column is None:
        raise ValueError(f"flip coordinate must be 'x' or 'y', got {coordinate!r}")
    points = sample.points.clone()
    points[:, column] = -points[:, column]
    boxes = sample.boxes.flip(coordinate)
    sample = sample.with_points(points).with_annotations(sample.annotations.with_boxes(boxes))
    return _with_augmentation(sample, {"op": "flip", "coordinate": coordinate})


def invert_augmentations(boxes: Boxes3D, meta: Mapping[str, Any]) -> Boxes3D:
    """Map boxes from an augmented sample's frame back to the frame it was loaded in, undoing
    ``meta["augmentations"]`` in reverse order."""
    for op in reversed(meta.get("augmentations", [])):
        kind = op["op"]
        if kind == "rotate_z":
            boxes = boxes.rotate(-op["angle"])
        elif kind == "scale":
            boxes = boxes.scale(1.0 / op["factor"])
        elif kind == "translate":
            boxes = boxes.translate([-v for v in op["offset"]])
        elif kind == "flip":
            boxes = boxes.flip(op["coordinate"])
        else:
            raise ValueError(f"meta['augmentations'] holds an unknown operation {op!r}")
    return boxes


@dataclass
class PointShuffle:
    """Randomly permute the points (with their labels)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        order = torch.from_numpy(rng.permutation(sample.num_points))
        return _with_meta(sample.select_points(order))


# ------------------------------------------------------------------ sweeps
@dataclass
class SweepSubsample:
    """Keep the keyframe points and those of ``num_sweeps_kept`` earlier sweeps.

    Sweeps are the distinct values of the ``column`` (seconds before the keyframe); the keyframe
    is every point with a lag ``<= keyframe_max_lag``. Training picks a random subset of the
    earlier sweeps (all of them when there are fewer); ``test_mode`` keeps the newest ones.
    Points with a non-finite lag are dropped (``meta["dropped_non_finite"]``). The kept lags are
    recorded in ``meta["sweep_lags_kept"]``.
    """

    num_sweeps_kept: int
    column: str = "time_lag"
    keyframe_max_lag: float = 1e-4
    test_mode: bool = False

    def __post_init__(self) -> None:
        if self.num_sweeps_kept < 0:
            raise ValueError(f"num_sweeps_kept must be >= 0, got {self.num_sweeps_kept}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.column not in sample.point_columns:
            raise ValueError(
                f"{sample.meta.get('sample_id', 'sample')}: SweepSubsample needs a {self.column!r} point column; "
                f"columns are {sample.point_columns} (load with num_sweeps > 0)"
            )
        lag = sample.column(self.column).cpu().numpy()
        finite = np.isfinite(lag)
        keyframe = finite & (lag <= self.keyframe_max_lag)
        lags = np.unique(lag[finite & ~keyframe])
        if len(lags) <= self.num_sweeps_kept:
            chosen = lags
        elif self.test_mode:
            chosen = lags[: self.num_sweeps_kept]
        else:
            chosen = np.sort(rng.choice(lags, size=self.num_sweeps_kept, replace=False))
        keep = keyframe | np.isin(lag, chosen)
        sample = _with_meta(sample.select_points(torch.from_numpy(keep)), {"dropped_non_finite": int((~finite).sum())})
        return _with_meta(sample, sweep_lags_kept=[float(v) for v in chosen])


# ------------------------------------------------------------ GT sampling
def bev_boxes_overlap(boxes_a: Boxes3D | np.ndarray, boxes_b: Boxes3D | np.ndarray) -> np.ndarray:
    """(N, M) bool: True where the BEV rectangles of two boxes overlap with positive area.

    Exact separating-axis test in float64 on ``(x, y, l, w, yaw)`` (columns 0, 1, 3, 4, 6 of
    our box rows): two rectangles are apart when, along one of the four edge directions, the
    distance between their centres is at least the sum of their projected half-extents.
    Touching rectangles (shared edge or corner) do not overlap. Boxes with non-finite
    geometry overlap nothing.
    """
    a, b = _bev_params(boxes_a), _bev_params(boxes_b)
    axes_a, axes_b = _edge_directions(a[:, 4]), _edge_directions(b[:, 4])  # (N, 2, 2), (M, 2, 2)
    n, m = len(a), len(b)
    axes = np.concatenate(
        [np.broadcast_to(axes_a[:, None], (n, m, 2, 2)), np.broadcast_to(axes_b[None], (n, m, 2, 2))], axis=2
    )  # (N, M, 4, 2)
    between = np.abs(np.einsum("nmd,nmkd->nmk", b[None, :, :2] - a[:, None, :2], axes))
    reach_a = _projected_half_extent(a, axes_a, axes, first=True)
    reach_b = _projected_half_extent(b, axes_b, axes, first=False)
    return (between < reach_a + reach_b).all(axis=2)


def _bev_params(boxes: Boxes3D | np.ndarray) -> np.ndarray:
    array = boxes.tensor.detach().cpu().numpy() if isinstance(boxes, Boxes3D) else np.asarray(boxes)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 7:
        raise ValueError(f"bev_boxes_overlap expects (N, 7+) box rows, got shape {array.shape}")
    return array[:, [0, 1, 3, 4, 6]]


def _edge_directions(yaw: np.ndarray) -> np.ndarray:
    """(N, 2, 2): unit vectors along the length and the width of each rectangle."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], axis=1)


def _projected_half_extent(params: np.ndarray, own_axes: np.ndarray, axes: np.ndarray, first: bool) -> np.ndarray:
    """(N, M, 4) half-extent of each rectangle of one side along each pair's four axes."""
    own = own_axes[:, None] if first else own_axes[None]  # (N|1, 1|M, 2, 2)
    half = params[:, 2:4] / 2
    half = half[:, None] if first else half[None]  # (N|1, 1|M, 2)
    along = np.abs(np.einsum("nmkd,nmjd->nmkj", axes, np.broadcast_to(own, axes.shape[:2] + (2, 2))))
    return (along * half[:, :, None, :]).sum(axis=3)


@dataclass
class GTSampling:
    """Paste objects from a GT database into the scene (SECOND's / mmdetection3d's ObjectSample).

    For each class of ``sample_groups`` in order, draw (without replacement) up to
    ``sample_groups[name]`` objects, less the boxes of that class already in the scene when
    ``limit_whole_scene`` (mmdetection3d's rule), among the database objects with at least
    ``min_points`` points (an int for all classes or a per-class mapping, 1 for unlisted
    classes). A drawn box is kept only when its BEV rectangle overlaps no box already in the
    scene or kept before it. The kept objects are pasted where they were annotated: scene points
    inside their boxes are removed and the objects' own points added after the scene's.

    Point columns are matched by name; a column of the scene the database lacks is filled with 0
    (e.g. ``time_lag`` 0: pasted points count as keyframe points), database-only columns are
    dropped. Pasted points get point label and instance id -1 (``pointformer.data.dataset.SegmentationDataset`` and
    ``collate(ignore_index=...)`` turn label -1 into the ignore index). Annotations gain the pasted
    boxes (velocity NaN when the database has none, dropped when the scene has none), names,
    point counts, the database's attributes and ids ``gt_sampled:<sample_id>/<box_index>``.
    ``meta["gt_sampled"]`` counts pasted objects per class, ``meta["dropped_by_gt_sampling"]``
    the removed scene points.
    """

    database: GTDatabase | str | os.PathLike
    sample_groups: Mapping[str, int]
    min_points: int | Mapping[str, int] = 5
    limit_whole_scene: bool = True
    _pools: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.database, GTDatabase):
            self.database = GTDatabase(self.database)
        self.sample_groups = {str(k): int(v) for k, v in self.sample_groups.items()}
        self._pools = {}
        for name in self.sample_groups:
            threshold = self.min_points.get(name, 1) if isinstance(self.min_points, Mapping) else self.min_points
            self._pools[name] = self.database.indices(name, int(threshold))
            if len(self._pools[name]) == 0:
                log.warning("GTSampling: %s has no %r objects with >= %d points", self.database, name, threshold)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        chosen = self._choose(sample.annotations, rng)
        counts = {name: 0 for name in self.sample_groups}
        for index in chosen:
            counts[self.database.names[index]] += 1
        if not chosen:
            return _with_meta(sample, gt_sampled=counts)
        boxes = self._scene_boxes(chosen, sample.boxes)
        scene_keep = ~points_in_any_box(sample.points, boxes)
        pasted = [self._object_points(index, sample) for index in chosen]
        sample = _drop_points(sample, scene_keep, "dropped_by_gt_sampling", "inside a pasted box")
        sample = _append_points(sample, torch.cat(pasted, dim=0))
        annotations = Annotations(
            boxes,
            [self.database.names[i] for i in chosen],
            torch.tensor([len(p) for p in pasted], dtype=torch.int64),
            [self.database.attributes[i] for i in chosen],
            [f"gt_sampled:{self.database.sample_ids[i]}/{self.database.box_indices[i]}" for i in chosen],
        )
        sample = sample.with_annotations(Annotations.cat([sample.annotations, annotations]))
        return _with_meta(sample, gt_sampled=counts)

    def _choose(self, annotations: Annotations, rng: np.random.Generator) -> list[int]:
        """Database indices of the objects to paste, in drawing order, mutually apart."""
        occupied = annotations.boxes.tensor.detach().cpu().numpy().astype(np.float64)[:, [0, 1, 2, 3, 4, 5, 6]]
        chosen: list[int] = []
        for name, target in self.sample_groups.items():
            wanted = target - (annotations.names.count(name) if self.limit_whole_scene else 0)
            pool = self._pools[name]
            if wanted <= 0 or len(pool) == 0:
                continue
            drawn = rng.choice(pool, size=min(wanted, len(pool)), replace=False)
            candidates = self.database.boxes[drawn][:, :7]
            free = ~bev_boxes_overlap(candidates, occupied).any(axis=1)
            among = bev_boxes_overlap(candidates, candidates)
            kept: list[int] = []
            for i in np.nonzero(free)[0]:
                if not among[i, kept].any():
                    kept.append(int(i))
            occupied = np.concatenate([occupied, candidates[kept]], axis=0)
            chosen.extend(int(drawn[i]) for i in kept)
        return chosen

    def _scene_boxes(self, chosen: list[int], scene_boxes: Boxes3D) -> Boxes3D:
        """The pasted boxes in the scene's box width and dtype."""
        boxes = self.database.boxes[chosen]
        if scene_boxes.has_velocity and boxes.shape[1] == 7:
            boxes = np.concatenate([boxes, np.full((len(boxes), 2), np.nan)], axis=1)
        elif not scene_boxes.has_velocity:
            boxes = boxes[:, :7]
        return Boxes3D(torch.from_numpy(np.ascontiguousarray(boxes)).to(scene_boxes.tensor.dtype))

    def _object_points(self, index: int, sample: Sample) -> torch.Tensor:
        """One object's points in the scene's columns and dtype, moved back to its box."""
        local = self.database.points(index)
        columns = self.database.point_columns
        out = np.zeros((len(local), len(sample.point_columns)), dtype=np.float64)
        for j, name in enumerate(sample.point_columns):
            if name in columns:
                out[:, j] = local[:, columns.index(name)]
        out[:, :3] += self.database.boxes[index, :3]
        return torch.from_numpy(out).to(sample.points.dtype)


def _append_points(sample: Sample, points: torch.Tensor) -> Sample:
    """Points added after the sample's own, with label and instance id -1."""
    def extend(values: torch.Tensor | None) -> torch.Tensor | None:
        if values is None:
            return None
        return torch.cat([values, torch.full((len(points),), -1, dtype=values.dtype, device=values.device)])

    return replace(
        sample,
        points=torch.cat([sample.points, points.to(sample.points.device)], dim=0),
        point_labels=extend(sample.point_labels),
        instance_ids=extend(sample.instance_ids),
    )
