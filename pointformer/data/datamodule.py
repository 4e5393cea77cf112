"""Lightning DataModule over info files (the only module of ``pointformer.data`` importing Lightning)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from pointformer.data.dataset import DetectionDataset, SampleTransform, SegmentationDataset, collate


_ALL_SPLITS = ("train", "val", "test", "predict")
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class PointCloudDataModule(pl.LightningDataModule):
    """Train / val / test / predict loaders over info files under one dataset ``root``.

    ``task``: ``"detection"`` (:class:`DetectionDataset`) or ``"segmentation"``
    (:class:`SegmentationDataset`, which needs ``label_map``). ``train_transforms`` apply to the
    training set only, ``eval_transforms`` (e.g. a range filter) to the others. Only the
    training loader shuffles (seeded by ``seed``); workers persist between epochs when
    ``num_workers > 0``; memory is pinned only when CUDA is available (``pin_memory=None``).
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
            return SegmentationDataset(label_map=self.label_map, **arguments)
        return DetectionDataset(**arguments)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        if split not in self.datasets:
            raise ValueError(f"no {split} info file was given to {type(self).__name__}")
        training = split == "train"
        generator = torch.Generator().manual_seed(self.seed) if training else None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if training else self.eval_batch_size,
            shuffle=training,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=collate,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
