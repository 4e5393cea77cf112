"""Data for the engine: the DataModule a config describes, with a training loader that can stop
and resume in the middle of an epoch, and evaluation loaders split across DDP ranks.

Training order: an epoch is a permutation of the dataset drawn from ``(seed, epoch)`` (as
``EpochRandomSampler``), padded by wrapping around to a multiple of the world size W; rank r
takes positions r, r + W, r + 2W, ... So W processes with batch B see, step by step, the same
samples as one process with batch W * B, and one process is the plain permutation.

Resuming: :class:`ResumableLoader` counts the samples it has handed out this epoch;
``state_dict()`` (which Lightning saves in every checkpoint of a stateful training loader)
records the epoch and the global position reached, and ``load_state_dict`` makes the next
iteration of that epoch skip the positions already consumed, so a run killed mid-epoch goes on
with the next batch it would have trained on. The count is rank 0's times W (every rank steps
in lockstep); a resume with another world size skips the same global prefix.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from pointformer.data.classes import nuscenes_lidarseg_to_benchmark
from pointformer.data.datamodule import PointCloudDataModule
from pointformer.data.dataset import collate
from pointformer.data.prepare import info_file_name
from pointformer.engine.config import DatasetConfig, transform_classes

NAMED_LABEL_MAPS = {"nuscenes_lidarseg": nuscenes_lidarseg_to_benchmark}


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ------------------------------------------------------------------ samplers
@dataclass
class _Pending:
    epoch: int
    consumed: int


class ResumableSampler(Sampler[int]):
    """This rank's share of an epoch's order (see the module docstring); resumable mid-epoch.

    ``set_epoch`` (called by Lightning every training epoch) also sets the dataset's epoch, which
    seeds its augmentations. ``num_replicas`` / ``rank`` default to the process group's.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        default_rank, default_world = world()
        self.dataset = dataset
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_replicas = default_world if num_replicas is None else int(num_replicas)
        self.rank = default_rank if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank must lie in [0, {self.num_replicas}), got {self.rank}")
        self.epoch = 0
        self.start = 0
        self._pending: _Pending | None = None

    @property
    def total_size(self) -> int:
        """Positions of an epoch over all ranks (the dataset padded to a multiple of the world size)."""
        return math.ceil(len(self.dataset) / self.num_replicas) * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def resume(self, epoch: int, consumed: int) -> None:
        """Make the next iteration of ``epoch`` start at global position ``consumed``."""
        if consumed < 0:
            raise ValueError(f"consumed must be >= 0, got {consumed}")
        self._pending = _Pending(int(epoch), int(consumed))

    def begin(self) -> int:
        """Fix where the coming iteration starts (the pending resume position when it is for this
        epoch, else 0); returns it. Called by the loader before it iterates."""
        pending, self._pending = self._pending, None
        self.start = pending.consumed if pending is not None and pending.epoch == self.epoch else 0
        return self.start

    def order(self) -> np.ndarray:
        """The epoch's padded global order (``total_size`` dataset indices)."""
        count = len(self.dataset)
        base = np.random.default_rng([self.seed, self.epoch]).permutation(count) if self.shuffle else np.arange(count)
        if count == 0:
            return base
        return np.resize(base, self.total_size)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        positions = range(self.rank, len(order), self.num_replicas)
        return iter([int(order[p]) for p in positions if p >= self.start])

    def __len__(self) -> int:
        """Samples of a whole epoch on this rank (a resumed iteration yields fewer; Lightning
        counts the batches already trained)."""
        return self.total_size // self.num_replicas


class ShardSampler(Sampler[int]):
    """Evaluation order: indices 0..N-1 in order, padded by wrapping to a multiple of the world
    size, rank r taking every W-th from r. Every rank gets as many samples (so DDP ranks run the
    same number of steps); index i belongs to rank ``i % W`` (:meth:`owns`), the others' copies
    are padding to leave out when results are merged."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        default_rank, default_world = world()
        self.dataset = dataset
        self.num_replicas = default_world if num_replicas is None else int(num_replicas)
        self.rank = default_rank if rank is None else int(rank)

    def owns(self, index: int) -> bool:
        return index % self.num_replicas == self.rank

    def __iter__(self) -> Iterator[int]:
        count = len(self.dataset)
        if count == 0:
            return iter([])
        order = np.resize(np.arange(count), len(self) * self.num_replicas)
        return iter(order[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.num_replicas)


# ------------------------------------------------------------------ loaders
class ResumableLoader(DataLoader):
    """A training ``DataLoader`` over a :class:`ResumableSampler` with ``state_dict`` /
    ``load_state_dict`` (Lightning saves and restores these with every checkpoint)."""

    def __init__(self, dataset: Dataset, sampler: ResumableSampler, **options: Any):
        super().__init__(dataset, sampler=sampler, **options)
        self._epoch = sampler.epoch
        self._start = 0
        self._yielded = 0

    def __iter__(self):
        sampler: ResumableSampler = self.sampler
        self._epoch, self._start, self._yielded = sampler.epoch, sampler.begin(), 0
        for batch in super().__iter__():
            self._yielded += len(batch)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``epoch`` and ``consumed`` (global positions of that epoch handed out, all ranks)."""
        sampler: ResumableSampler = self.sampler
        consumed = min(self._start + self._yielded * sampler.num_replicas, sampler.total_size)
        return {"epoch": int(self._epoch), "consumed": int(consumed), "dataset_size": len(self.dataset),
                "seed": sampler.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: ResumableSampler = self.sampler
        missing = [key for key in ("epoch", "consumed", "dataset_size") if key not in state]
        if missing:
            raise ValueError(f"training loader state lacks {missing}: {state}")
        if int(state["dataset_size"]) != len(self.dataset):
            raise ValueError(f"cannot resume mid-epoch: the checkpoint's training set had {state['dataset_size']} "
                             f"samples, this one has {len(self.dataset)}")
        sampler.resume(int(state["epoch"]), int(state["consumed"]))


# ------------------------------------------------------------------ datamodule
class EngineDataModule(PointCloudDataModule):
    """:class:`PointCloudDataModule` with :class:`ResumableLoader` for training, :class:`ShardSampler`
    loaders for evaluation, and DataLoader worker seeds drawn from their own generator (so
    making a loader leaves the global torch RNG alone and a resumed run draws what an
    uninterrupted one does)."""

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        if split not in self.datasets:
            raise ValueError(f"no {split} info file was given to {type(self).__name__}")
        dataset = self.datasets[split]
        options = {
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": self.pin_memory,
            "collate_fn": functools.partial(collate, ignore_index=self.ignore_index),
            "generator": torch.Generator().manual_seed(self.seed),
        }
        if split == "train":
            sampler = ResumableSampler(dataset, seed=self.seed)
            sampler.set_epoch(self._trainer_epoch())
            return ResumableLoader(dataset, sampler, batch_size=self.batch_size, **options)
        return DataLoader(dataset, sampler=ShardSampler(dataset), batch_size=self.eval_batch_size, **options)


def info_path(config: DatasetConfig, stage: str) -> Path:
    """The info file of a stage (``train``, ``val``, ``test``)."""
    explicit = getattr(config.info_files, stage)
    root = Path(config.root)
    return root / explicit if explicit is not None else root / info_file_name(getattr(config.splits, stage))


def build_transforms(items: Sequence[dict[str, Any]], config: DatasetConfig) -> list:
    """Transform objects from config items; ``point_cloud_range`` / ``class_names`` are filled
    from the dataset when a transform takes them and the item leaves them out, and a
    ``GTSampling.database`` path is relative to the dataset root."""
    import inspect

    known = transform_classes()
    built = []
    for index, item in enumerate(items):
        cls = known[item["type"]]
        options = {key: value for key, value in item.items() if key != "type"}
        accepted = inspect.signature(cls).parameters
        shared = {"point_cloud_range": list(config.point_cloud_range), "class_names": list(config.class_names)}
        for key, value in shared.items():
            if key in accepted and key not in options:
                options[key] = value
        if item["type"] == "GTSampling" and isinstance(options.get("database"), str):
            options["database"] = str(Path(config.root) / options["database"])
        try:
            built.append(cls(**options))
        except (TypeError, ValueError, FileNotFoundError) as error:
            raise type(error)(f"transform {index} ({item['type']}): {error}") from error
    return built


def label_map(config: DatasetConfig) -> list[int] | None:
    if config.label_map is None or isinstance(config.label_map, list):
        return config.label_map
    return list(NAMED_LABEL_MAPS[config.label_map]())


def build_datamodule(config: DatasetConfig, task: str, seed: int = 0,
                     stages: Sequence[str] = ("train", "val", "test")) -> EngineDataModule:
    """The DataModule of a dataset config; info files of ``stages`` must exist."""
    root = Path(config.root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset.root {root} not found (create it with tools/create_data.py)")
    paths = {stage: info_path(config, stage) for stage in stages}
    for stage, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{stage} info file {path} not found (dataset.splits.{stage} / "
                                    f"dataset.info_files.{stage}; build it with tools/create_data.py)")
    return EngineDataModule(
        root=root,
        class_names=config.class_names,
        train_infos=paths.get("train"),
        val_infos=paths.get("val"),
        test_infos=paths.get("test"),
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        train_transforms=build_transforms(config.train_transforms, config) if "train" in stages else None,
        eval_transforms=build_transforms(config.eval_transforms, config),
        num_sweeps=config.num_sweeps,
        feature_columns=config.feature_columns,
        task=task,
        label_map=label_map(config),
        seed=seed,
        ignore_index=config.ignore_index,
    )
