"""Datasets over info records, and the collate that batches their samples.

``DetectionDataset[i]`` loads record ``i`` with :func:`load_sample`, applies the transforms
with a generator seeded by ``(seed, i, visit)`` — ``visit`` counts how often sample ``i`` was
loaded before, i.e. the epoch under a sampler that visits every index once per epoch — and
stores the box labels (index into ``class_names``, -1 for other names) in
``meta["labels"]``. The visit counters live in shared memory, so DataLoader workers (persistent
or not, any number) draw the same augmentations for the same seed; :meth:`set_epoch` sets them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pointformer.data.infos import SampleInfo, load_infos, load_sample
from pointformer.data.transforms import Compose
from pointformer.structures import Annotations, Boxes3D, PointBatch, Sample

SampleTransform = Callable[[Sample, np.random.Generator], Sample]


class DetectionDataset(Dataset):
    """Samples of ``infos`` (records or an info-file path) under ``root``.

    ``transforms``: one callable ``(sample, rng) -> sample`` or a sequence of them.
    ``num_sweeps`` / ``feature_columns`` / ``time_lag`` / ``sweep_min_distance``: passed to
    :func:`load_sample`. ``test_mode``: every load of sample ``i`` uses the generator of visit 0
    (and leaves the counters alone).
    """

    def __init__(
        self,
        infos: Sequence[SampleInfo] | str | os.PathLike,
        root: str | os.PathLike | None,
        class_names: Sequence[str],
        transforms: SampleTransform | Sequence[SampleTransform] | None = None,
        num_sweeps: int | None = None,
        feature_columns: Sequence[str] = ("intensity",),
        test_mode: bool = False,
        seed: int = 0,
        *,
        time_lag: bool | None = None,
        sweep_min_distance: float = 1.0,
    ):
        if isinstance(infos, (str, os.PathLike)):
            infos, _ = load_infos(infos)
        self.infos = list(infos)
        self.root = root
        self.class_names = tuple(class_names)
        if transforms is not None and not callable(transforms):
            transforms = Compose(list(transforms))
        self.transforms = transforms
        self.num_sweeps = num_sweeps
        self.feature_columns = tuple(feature_columns)
        self.test_mode = test_mode
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.time_lag = time_lag
        self.sweep_min_distance = sweep_min_distance
        self._visits = torch.zeros(len(self.infos), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.infos)

    def set_epoch(self, epoch: int) -> None:
        """Make the next load of every sample use visit number ``epoch`` (e.g. when resuming)."""
        self._visits.fill_(int(epoch))

    def rng(self, index: int, visit: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index, visit])

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)}")
        info = self.infos[index]
        sample = load_sample(
            info,
            self.root,
            num_sweeps=self.num_sweeps,
            feature_columns=self.feature_columns,
            time_lag=self.time_lag,
            sweep_min_distance=self.sweep_min_distance,
        )
        sample = self.prepare(sample)
        if self.transforms is not None:
            sample = self.transforms(sample, self.rng(index, self._next_visit(index)))
        labels = sample.annotations.labels(self.class_names)
        return replace(sample, meta={**sample.meta, "index": index, "labels": labels.tolist()})

    def prepare(self, sample: Sample) -> Sample:
        """Hook applied after loading, before the transforms."""
        return sample

    def _next_visit(self, index: int) -> int:
        if self.test_mode:
            return 0
        visit = int(self._visits[index])
        self._visits[index] = visit + 1
        return visit


class SegmentationDataset(DetectionDataset):
    """Like :class:`DetectionDataset`, with the raw point labels mapped to training ids.

    ``label_map[raw_id]`` is the training id (an index into ``class_names``) or a negative
    number for ignored ids, which become ``ignore_index``; points without a label (-1, e.g.
    earlier sweeps) become ``ignore_index`` too. E.g. ``label_map =
    pointformer.data.classes.nuscenes_lidarseg_to_benchmark()`` with the 16 benchmark classes.
    Outside ``test_mode`` a sample without point labels is an error.
    """

    def __init__(
        self,
        infos: Sequence[SampleInfo] | str | os.PathLike,
        root: str | os.PathLike | None,
        class_names: Sequence[str],
        label_map: Sequence[int] | np.ndarray,
        transforms: SampleTransform | Sequence[SampleTransform] | None = None,
        num_sweeps: int | None = None,
        feature_columns: Sequence[str] = ("intensity",),
        test_mode: bool = False,
        seed: int = 0,
        *,
        ignore_index: int = -1,
        time_lag: bool | None = None,
        sweep_min_distance: float = 1.0,
    ):
        super().__init__(infos, root, class_names, transforms, num_sweeps, feature_columns, test_mode, seed,
                         time_lag=time_lag, sweep_min_distance=sweep_min_distance)
        table = torch.as_tensor(np.asarray(label_map), dtype=torch.int64).reshape(-1)
        if len(table) and int(table.max()) >= len(self.class_names):
            raise ValueError(f"label_map holds id {int(table.max())} but there are {len(self.class_names)} class names")
        self.label_map = torch.where(table < 0, torch.tensor(ignore_index), table)
        self.ignore_index = ignore_index

    def prepare(self, sample: Sample) -> Sample:
        raw = sample.point_labels
        if raw is None:
            if self.test_mode:
                return sample
            raise ValueError(
                f"{sample.meta.get('lidar_path')}: sample {sample.meta.get('sample_id')} has no point labels "
                "(its info record has no labels_path)"
            )
        if len(raw) and int(raw.max()) >= len(self.label_map):
            raise ValueError(
                f"{sample.meta.get('lidar_path')}: point label {int(raw.max())} outside label_map "
                f"(ids 0..{len(self.label_map) - 1})"
            )
        mapped = torch.full_like(raw, self.ignore_index)
        labelled = raw >= 0
        mapped[labelled] = self.label_map[raw[labelled]]
        return replace(sample, point_labels=mapped)


# ------------------------------------------------------------------- batches
@dataclass
class SampleBatch:
    """B samples batched.

    ``points``: their clouds concatenated with offsets (columns ``point_columns``).
    ``boxes`` / ``labels``: per sample, ``Boxes3D`` (M_i, 7|9) and int64 (M_i,).
    ``point_labels``: int64 (N,) aligned with ``points.points`` (-1 for samples without), or
    None when no sample has any. ``annotations``: the full per-sample records (names,
    attributes, ids), kept on the CPU. ``metas``: per-sample meta dicts.
    """

    points: PointBatch
    point_columns: tuple[str, ...]
    boxes: list[Boxes3D]
    labels: list[torch.Tensor]
    point_labels: torch.Tensor | None
    annotations: list[Annotations]
    metas: list[dict[str, Any]]

    @property
    def batch_size(self) -> int:
        return self.points.batch_size

    def __len__(self) -> int:
        return self.batch_size

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "SampleBatch":
        """Points, boxes, labels and point labels on ``device``; annotations and metas as they are."""
        return replace(
            self,
            points=PointBatch(self.points.points.to(device, non_blocking=non_blocking),
                              self.points.offsets.to(device, non_blocking=non_blocking)),
            boxes=[Boxes3D(b.tensor.to(device, non_blocking=non_blocking)) for b in self.boxes],
            labels=[label.to(device, non_blocking=non_blocking) for label in self.labels],
            point_labels=None if self.point_labels is None else self.point_labels.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> "SampleBatch":
        """Page-locked copies of the tensors (called by ``DataLoader(pin_memory=True)``)."""
        return replace(
            self,
            points=PointBatch(self.points.points.pin_memory(), self.points.offsets.pin_memory()),
            boxes=[Boxes3D(b.tensor.pin_memory()) for b in self.boxes],
            labels=[label.pin_memory() for label in self.labels],
            point_labels=None if self.point_labels is None else self.point_labels.pin_memory(),
        )


def collate(samples: Sequence[Sample], class_names: Sequence[str] | None = None) -> SampleBatch:
    """Batch samples that share their point columns.

    Box labels come from ``class_names`` when given, otherwise from ``meta["labels"]`` (set by
    the datasets); a sample with boxes but neither is an error.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("collate needs at least one sample")
    columns = samples[0].point_columns
    for sample in samples[1:]:
        if sample.point_columns != columns:
            raise ValueError(
                f"collate: sample {sample.meta.get('sample_id')} has point columns {sample.point_columns}, "
                f"expected {columns}"
            )
    with_labels = any(s.point_labels is not None for s in samples)
    return SampleBatch(
        points=PointBatch.from_list([s.points for s in samples]),
        point_columns=tuple(columns),
        boxes=[s.boxes for s in samples],
        labels=[_box_labels(s, class_names) for s in samples],
        point_labels=torch.cat([_point_labels(s) for s in samples]) if with_labels else None,
        annotations=[s.annotations for s in samples],
        metas=[s.meta for s in samples],
    )


def _box_labels(sample: Sample, class_names: Sequence[str] | None) -> torch.Tensor:
    if class_names is not None:
        return sample.annotations.labels(class_names)
    labels = sample.meta.get("labels")
    if labels is None:
        if len(sample.annotations) == 0:
            return torch.zeros(0, dtype=torch.int64)
        raise ValueError(
            f"collate: sample {sample.meta.get('sample_id')} has {len(sample.annotations)} boxes but no "
            "meta['labels']; load it through a dataset or pass class_names"
        )
    if len(labels) != len(sample.annotations):
        raise ValueError(
            f"collate: sample {sample.meta.get('sample_id')} has {len(labels)} labels in meta for "
            f"{len(sample.annotations)} boxes"
        )
    return torch.tensor(labels, dtype=torch.int64).reshape(-1)


def _point_labels(sample: Sample) -> torch.Tensor:
    if sample.point_labels is not None:
        return sample.point_labels.to(torch.int64)
    return torch.full((sample.num_points,), -1, dtype=torch.int64)
