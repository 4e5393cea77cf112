"""Datasets over info records, the samplers that drive their epochs, and the collate that
batches their samples.

``DetectionDataset[i]`` loads record ``i`` with :func:`load_sample`, applies the transforms
with a generator seeded by ``(seed, epoch, i)`` and stores the box labels (index into
``class_names``, -1 for other names) in ``meta["labels"]`` and the epoch in ``meta["epoch"]``.

Epoch contract: the epoch lives in a shared-memory tensor set by
``DetectionDataset.set_epoch(epoch)``, so DataLoader workers (persistent or not, any number, any
DDP rank) see it and draw the same augmentations for the same ``(seed, epoch, index)``. Whoever
runs the epochs calls it before iterating the loader of that epoch. The samplers here do it for
you: :class:`EpochRandomSampler` (one process) and :class:`EpochDistributedSampler` (DDP) forward
their ``set_epoch`` to the dataset, and Lightning calls ``set_epoch`` on a loader's sampler at
the start of every training epoch (with the restored epoch on resume). A plain loop calls
``loader.sampler.set_epoch(epoch)`` itself; without any call every epoch is epoch 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from pointformer.data.infos import PackedInfos, SampleInfo, load_infos, load_sample, record_box_dim
from pointformer.data.transforms import Compose
from pointformer.structures import Annotations, Boxes3D, PointBatch, Sample

SampleTransform = Callable[[Sample, np.random.Generator], Sample]


class DetectionDataset(Dataset):
    """Samples of ``infos`` (records or an info-file path) under ``root``.

    ``transforms``: one callable ``(sample, rng) -> sample`` or a sequence of them, drawing from
    ``default_rng([seed, epoch, index])`` (epoch: see :meth:`set_epoch` and the module docstring).
    ``num_sweeps`` / ``feature_columns`` / ``time_lag`` / ``sweep_min_distance``: passed to
    :func:`load_sample`. ``test_mode``: every load uses epoch 0, whatever :meth:`set_epoch` said.
    ``box_dim``: the box width (7 or 9) of the records with boxes (records of two widths are an
    error; None when no record is labelled); a sample without boxes (an unlabelled frame, an
    empty record) is given that width, so that every sample batches with every other.
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
        self.box_dim = _common_box_dim(infos)
        self.infos = PackedInfos(infos)
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
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.infos)

    def set_epoch(self, epoch: int) -> None:
        """Seed every later load (in this process and in its DataLoader workers) with ``epoch``.

        Called by the samplers' ``set_epoch`` (which Lightning calls each training epoch), or by
        a training loop before iterating the epoch's loader."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        """The epoch the next load uses (0 in ``test_mode``)."""
        return 0 if self.test_mode else int(self._epoch[0])

    def rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

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
        sample = self.prepare(self._with_box_dim(sample))
        epoch = self.epoch
        if self.transforms is not None:
            sample = self.transforms(sample, self.rng(index, epoch))
        sample = self.finish(sample)
        labels = sample.annotations.labels(self.class_names)
        return replace(sample, meta={**sample.meta, "index": index, "epoch": epoch, "labels": labels.tolist()})

    def prepare(self, sample: Sample) -> Sample:
        """Hook applied after loading, before the transforms."""
        return sample

    def finish(self, sample: Sample) -> Sample:
        """Hook applied after the transforms."""
        return sample

    def _with_box_dim(self, sample: Sample) -> Sample:
        """A sample without boxes in the dataset's box width."""
        if self.box_dim is None or len(sample.annotations) or sample.boxes.tensor.shape[1] == self.box_dim:
            return sample
        return sample.with_annotations(Annotations.empty(with_velocity=self.box_dim == 9))


def _common_box_dim(infos: Sequence[SampleInfo]) -> int | None:
    """The box width of the records with boxes (two widths are an error naming a record of
    each); without any box, the ``box_dim`` of the first labelled record; None if none is."""
    first: SampleInfo | None = None
    for info in infos:
        if info.annotations is None or not info.annotations["boxes"]:
            continue
        if first is None:
            first = info
        elif record_box_dim(info.annotations) != record_box_dim(first.annotations):
            raise ValueError(
                f"records of two box widths: {first.sample_id} has {record_box_dim(first.annotations)} columns, "
                f"{info.sample_id} has {record_box_dim(info.annotations)}; one dataset needs one width "
                "(7, or 9 with velocity)"
            )
    if first is not None:
        return record_box_dim(first.annotations)
    return next((record_box_dim(i.annotations) for i in infos if record_box_dim(i.annotations) is not None), None)


# ------------------------------------------------------------------ samplers
class EpochRandomSampler(Sampler[int]):
    """Every index once per epoch, in an order drawn from ``(seed, epoch)`` (``shuffle=False``:
    in order). :meth:`set_epoch` also sets the dataset's epoch (see the module docstring)."""

    def __init__(self, dataset: DetectionDataset, seed: int = 0, shuffle: bool = True):
        self.dataset = dataset
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch (by Lightning, or by a training loop)."""
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(len(self.dataset)))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(len(self.dataset)).tolist())

    def __len__(self) -> int:
        return len(self.dataset)


class EpochDistributedSampler(DistributedSampler):
    """``torch.utils.data.DistributedSampler`` (this rank's share of an order drawn from
    ``seed + epoch``) whose :meth:`set_epoch` also sets the dataset's epoch. Being a
    ``DistributedSampler``, Lightning keeps it instead of putting its own in place and calls its
    ``set_epoch`` every training epoch. ``num_replicas`` / ``rank`` default to the process group's."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)


class SegmentationDataset(DetectionDataset):
    """Like :class:`DetectionDataset`, with the raw point labels mapped to training ids.

    ``label_map[raw_id]`` is the training id (an index into ``class_names``) or a negative
    number for ignored ids, which become ``ignore_index``; points without a label (-1, e.g.
    earlier sweeps, or points pasted by GT sampling during the transforms) become
    ``ignore_index`` too. Batch with ``collate(..., ignore_index=ignore_index)``. E.g. ``label_map =
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

    def finish(self, sample: Sample) -> Sample:
        """Points that the transforms added without a label (-1) get ``ignore_index``."""
        if sample.point_labels is None:
            return sample
        return replace(sample, point_labels=_unlabelled_to(sample.point_labels, self.ignore_index))


def _unlabelled_to(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """int64 labels with every -1 replaced by ``ignore_index``."""
    labels = labels.to(torch.int64)
    return labels if ignore_index == -1 else labels.masked_fill(labels == -1, ignore_index)


# ------------------------------------------------------------------- batches
@dataclass
class SampleBatch:
    """B samples batched.

    ``points``: their clouds concatenated with offsets (columns ``point_columns``).
    ``boxes`` / ``labels``: per sample, ``Boxes3D`` (M_i, 7|9), one width, and int64 (M_i,).
    ``point_labels``: int64 (N,) aligned with ``points.points`` (the ignore index, -1 by default,
    for samples without), or None when no sample has any. ``annotations``: the full per-sample
    records (names, attributes, ids), kept on the CPU. ``metas``: per-sample meta dicts.
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


def collate(
    samples: Sequence[Sample], class_names: Sequence[str] | None = None, ignore_index: int = -1
) -> SampleBatch:
    """Batch samples that share their point columns and their box width.

    Box labels come from ``class_names`` when given, otherwise from ``meta["labels"]`` (set by
    the datasets); a sample with boxes but neither is an error. Point labels -1 (unlabelled) and
    the points of samples without labels become ``ignore_index`` (pass the segmentation
    dataset's, e.g. with ``functools.partial``).
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
    _check_box_widths(samples)
    with_labels = any(s.point_labels is not None for s in samples)
    return SampleBatch(
        points=PointBatch.from_list([s.points for s in samples]),
        point_columns=tuple(columns),
        boxes=[s.boxes for s in samples],
        labels=[_box_labels(s, class_names) for s in samples],
        point_labels=torch.cat([_point_labels(s, ignore_index) for s in samples]) if with_labels else None,
        annotations=[s.annotations for s in samples],
        metas=[s.meta for s in samples],
    )


def _check_box_widths(samples: Sequence[Sample]) -> None:
    first = samples[0]
    for sample in samples[1:]:
        if sample.boxes.tensor.shape[1] != first.boxes.tensor.shape[1]:
            raise ValueError(
                f"collate: sample {first.meta.get('sample_id')} has {first.boxes.tensor.shape[1]}-column boxes, "
                f"sample {sample.meta.get('sample_id')} has {sample.boxes.tensor.shape[1]}; a batch needs one box "
                "width (load them through one dataset, or give unlabelled frames an empty record of that width)"
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


def _point_labels(sample: Sample, ignore_index: int) -> torch.Tensor:
    if sample.point_labels is not None:
        return _unlabelled_to(sample.point_labels, ignore_index)
    return torch.full((sample.num_points,), ignore_index, dtype=torch.int64)
