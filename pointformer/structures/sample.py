"""``Sample``: one LiDAR frame as every reader returns it — points, their labels, and the boxes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from .boxes import Boxes3D


@dataclass
class Annotations:
    """M labelled boxes and what each one carries; every field is indexed by box.

    ``names``: the benchmark class name where the dataset's category maps to one (``car``,
    ``pedestrian`` ...), otherwise the dataset's own category (``animal``, ``DontCare``).
    ``num_points``: LiDAR points inside the box as the dataset counts them (-1 unknown).
    ``attributes``: the benchmark attribute (nuScenes ``vehicle.moving`` ...) or "".
    ``ids``: instance / track identifiers or "".
    """

    boxes: Boxes3D
    names: list[str]
    num_points: torch.Tensor
    attributes: list[str]
    ids: list[str]

    def __post_init__(self) -> None:
        n = len(self.boxes)
        self.num_points = torch.as_tensor(self.num_points, dtype=torch.int64).reshape(-1)
        for name, value in (("names", self.names), ("num_points", self.num_points),
                            ("attributes", self.attributes), ("ids", self.ids)):
            if len(value) != n:
                raise ValueError(f"Annotations.{name} has {len(value)} entries for {n} boxes")

    @staticmethod
    def empty(with_velocity: bool = True) -> "Annotations":
        return Annotations(Boxes3D.empty(with_velocity), [], torch.zeros(0, dtype=torch.int64), [], [])

    @staticmethod
    def from_boxes(boxes: Boxes3D, names: Sequence[str]) -> "Annotations":
        n = len(boxes)
        return Annotations(boxes, list(names), torch.full((n,), -1, dtype=torch.int64), [""] * n, [""] * n)

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> "Annotations":
        """Keep the boxes picked by a bool mask or an index list, with everything they carry."""
        index = torch.as_tensor(np.asarray(index))
        if index.dtype == torch.bool:
            index = torch.nonzero(index, as_tuple=False).reshape(-1)
        index = index.long().reshape(-1)
        picks = index.tolist()
        return Annotations(
            Boxes3D(self.boxes.tensor[index]),
            [self.names[i] for i in picks],
            self.num_points[index],
            [self.attributes[i] for i in picks],
            [self.ids[i] for i in picks],
        )

    def with_boxes(self, boxes: Boxes3D) -> "Annotations":
        if len(boxes) != len(self):
            raise ValueError(f"replacing {len(self)} boxes with {len(boxes)}")
        return replace(self, boxes=boxes)

    def labels(self, class_names: Sequence[str]) -> torch.Tensor:
        """(M,) int64 index of each box's name in ``class_names``, -1 where absent."""
        lookup = {name: i for i, name in enumerate(class_names)}
        return torch.tensor([lookup.get(name, -1) for name in self.names], dtype=torch.int64)

    @staticmethod
    def cat(parts: Sequence["Annotations"]) -> "Annotations":
        parts = list(parts)
        if not parts:
            return Annotations.empty()
        return Annotations(
            Boxes3D.cat([p.boxes for p in parts]),
            [n for p in parts for n in p.names],
            torch.cat([p.num_points for p in parts]),
            [a for p in parts for a in p.attributes],
            [i for p in parts for i in p.ids],
        )


@dataclass
class Sample:
    """One frame in our frame (x forward, y left, z up, metres).

    ``points`` float32 (N, F) whose columns are named by ``point_columns`` (x, y, z first,
    then e.g. intensity, time_lag). ``point_labels``: int64 (N,) semantic ids in the dataset's
    own numbering, -1 unlabelled (e.g. points of earlier sweeps). ``instance_ids``: int64 (N,)
    or None, -1 for background. ``meta``: JSON-able facts (dataset, sample id, timestamps,
    pose ``global_from_lidar`` ...).
    """

    points: torch.Tensor
    point_columns: tuple[str, ...]
    annotations: Annotations
    point_labels: torch.Tensor | None = None
    instance_ids: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.points.dim() != 2 or self.points.shape[1] != len(self.point_columns):
            raise ValueError(
                f"Sample.points has shape {tuple(self.points.shape)} but columns {self.point_columns}"
            )
        if tuple(self.point_columns[:3]) != ("x", "y", "z"):
            raise ValueError(f"Sample.point_columns must start with x, y, z, got {self.point_columns}")
        for name in ("point_labels", "instance_ids"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != self.points.shape[0]:
                raise ValueError(f"Sample.{name} has {value.shape[0]} entries for {self.points.shape[0]} points")

    @property
    def boxes(self) -> Boxes3D:
        return self.annotations.boxes

    @property
    def num_points(self) -> int:
        return self.points.shape[0]

    def column(self, name: str) -> torch.Tensor:
        if name not in self.point_columns:
            raise KeyError(f"sample has no point column {name!r}; columns are {self.point_columns}")
        return self.points[:, self.point_columns.index(name)]

    def select_points(self, index: torch.Tensor) -> "Sample":
        """Keep the points picked by a bool mask or an index tensor, with their labels."""
        return replace(
            self,
            points=self.points[index],
            point_labels=None if self.point_labels is None else self.point_labels[index],
            instance_ids=None if self.instance_ids is None else self.instance_ids[index],
        )

    def with_points(self, points: torch.Tensor) -> "Sample":
        """Same sample with point coordinates/features replaced (same count and order)."""
        if points.shape != self.points.shape:
            raise ValueError(f"replacing points {tuple(self.points.shape)} with {tuple(points.shape)}")
        return replace(self, points=points)

    def with_annotations(self, annotations: Annotations) -> "Sample":
        return replace(self, annotations=annotations)
