"""Lightning DataModule over info files (the only module of ``pointformer.data`` importing Lightning)."""

from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from pointformer.data.dataset import (
    DetectionDataset,
    EpochDistributedSampler,
    EpochRandomSampler,
    SampleTransform,
    SegmentationDataset,
    collate,
)


_ALL_SPLITS = ("train", "val", "test", "predict")
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class PointCloudDataModule(pl.LightningDataModule):
    """Train / val / test / predict loaders over info files under one dataset ``root``.

    ``task``: ``"detection"`` (:class:`DetectionDataset`) or ``"segmentation"``
    (:class:`SegmentationDataset`, which needs ``label_map``; unlabelled points get
    ``ignore_index``). ``train_transforms`` apply to the training set only, ``eval_transforms``
    (e.g. a range filter) to the others. Workers persist between epochs when ``num_workers > 0``;
    memory is pinned only when CUDA is available (``pin_memory=None``).

    Only the training loader shuffles, through a sampler with ``set_epoch`` that also sets the
    training dataset's epoch (augmentations drawn from ``(seed, epoch, index)``):
    :class:`EpochRandomSampler` in one process, :class:`EpochDistributedSampler` (this rank's
    share) when ``torch.distributed`` is initialised as the loader is made. Lightning calls
    ``train_dataloader().sampler.set_epoch(epoch)`` at the start of every training epoch, so no
    engine code is needed; a loop without Lightning makes that call itself.
    """

    def __init__(
        self,
        root: str | os.PathLike | None,
        class_names: Sequence[str],
        train_infos: str | os.PathLike | None = None,
        val_infos: str | os.PathLike | None = None,
        test_infos: str | os.PathLike | None = None,
        predict_infos: str | os.PathLike | None = None,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        train_transforms: SampleTransform | Sequence[SampleTransform] | None = None,
        eval_transforms: SampleTransform | Sequence[SampleTransform] | None = None,
        num_sweeps: int | None = None,
        feature_columns: Sequence[str] = ("intensity",),
        task: str = "detection",
        label_map: Sequence[int] | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
        ignore_index: int = -1,
    ):
        super().__init__()
        if task not in ("detection", "segmentation"):
            raise ValueError(f"task must be 'detection' or 'segmentation', got {task!r}")
        if task == "segmentation" and label_map is None:
            raise ValueError("task='segmentation' needs a label_map (raw point label -> training id)")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.root = root
        self.class_names = tuple(class_names)
        self.info_paths = {"train": train_infos, "val": val_infos, "test": test_infos, "predict": predict_infos}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.train_transforms = train_transforms
        self.eval_transforms = eval_transforms
        self.num_sweeps = num_sweeps
        self.feature_columns = tuple(feature_columns)
        self.task = task
        self.label_map = None if label_map is None else list(np.asarray(label_map).tolist())
        self.seed = seed
        self.ignore_index = ignore_index
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.datasets: dict[str, DetectionDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of a stage (``fit``, ``validate``, ``test``, ``predict``; None = all given)."""
        for split in _STAGE_SPLITS.get(stage or "", _ALL_SPLITS):
            if split not in self.datasets and self.info_paths[split] is not None:
                self.datasets[split] = self._make_dataset(split)

    def _make_dataset(self, split: str) -> DetectionDataset:
        training = split == "train"
        arguments = dict(
            infos=self.info_paths[split],
            root=self.root,
            class_names=self.class_names,
            transforms=self.train_transforms if training else self.eval_transforms,
            num_sweeps=self.num_sweeps,
            feature_columns=self.feature_columns,
            test_mode=not training,
            seed=self.seed,
        )
        if self.task == "segmentation":
            return SegmentationDataset(label_map=self.label_map, ignore_index=self.ignore_index, **arguments)
        return DetectionDataset(**arguments)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        if split not in self.datasets:
            raise ValueError(f"no {split} info file was given to {type(self).__name__}")
        training = split == "train"
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size if training else self.eval_batch_size,
            sampler=self._train_sampler(dataset) if training else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=functools.partial(collate, ignore_index=self.ignore_index),
            drop_last=False,
        )

    def _train_sampler(self, dataset: DetectionDataset) -> Sampler[int]:
        """A shuffling sampler whose ``set_epoch`` (called by Lightning) reaches the dataset.

        It starts at the trainer's current epoch: Lightning builds the training iterator (and
        its workers prefetch) before its first ``set_epoch`` call, so a resumed run would
        otherwise replay epoch 0's order.
        """
        if dist.is_available() and dist.is_initialized():
            sampler = EpochDistributedSampler(dataset, shuffle=True, seed=self.seed)
        else:
            sampler = EpochRandomSampler(dataset, seed=self.seed)
        sampler.set_epoch(self._trainer_epoch())
        return sampler

    def _trainer_epoch(self) -> int:
        """Epochs the attached trainer has completed (0 without a trainer)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
