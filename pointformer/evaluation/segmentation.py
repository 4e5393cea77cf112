"""Semantic segmentation metrics: a streaming confusion matrix, per-class IoU, mIoU, accuracy.

``ConfusionMatrix`` counts (target, prediction) pairs batch by batch on the device the labels
live on; points whose target is the ignore index are skipped. Across DDP ranks,
:meth:`ConfusionMatrix.all_reduce` sums the matrices of every rank (a no-op when
``torch.distributed`` is not initialised); :meth:`merge` adds another matrix by hand.

IoU of class c = TP / (TP + FP + FN) from the matrix; NaN for a class that appears in neither
targets nor predictions. mIoU is the mean over the classes with an IoU (NaN when none);
accuracy = correct / counted points (NaN before any point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class SegmentationMetrics:
    """Metrics of a confusion matrix: ``iou`` (C,) per class (NaN for absent classes),
    ``miou``, ``accuracy`` (overall), ``class_accuracy`` (C,) recall per class (NaN without
    targets), ``num_points`` counted; ``class_names`` (C,)."""

    class_names: tuple[str, ...]
    iou: np.ndarray
    miou: float
    accuracy: float
    class_accuracy: np.ndarray
    num_points: int

    def to_json(self) -> dict[str, Any]:
        """JSON-able values; NaN (absent class) becomes None."""
        def value(x: float) -> float | None:
            return None if math.isnan(x) else float(x)
        return {
            "miou": value(self.miou), "accuracy": value(self.accuracy), "num_points": self.num_points,
            "iou": {name: value(v) for name, v in zip(self.class_names, self.iou)},
            "class_accuracy": {name: value(v) for name, v in zip(self.class_names, self.class_accuracy)},
        }

    def table(self):
        """A ``rich.table.Table``: IoU and accuracy (%) per class, then mIoU and accuracy."""
        from rich.table import Table

        def percent(x: float) -> str:
            return "-" if math.isnan(x) else f"{100 * x:.2f}"

        table = Table(title=f"Segmentation ({self.num_points} points)")
        for column in ("Class", "IoU", "Acc"):
            table.add_column(column, justify="left" if column == "Class" else "right")
        for name, iou, accuracy in zip(self.class_names, self.iou, self.class_accuracy):
            table.add_row(name, percent(iou), percent(accuracy))
        table.add_row("mean / overall", percent(self.miou), percent(self.accuracy))
        return table


class ConfusionMatrix:
    """(C, C) int64 counts, rows = target class, columns = predicted class.

    ``num_classes``: C; ``ignore_index``: target value skipped (None: every target must be a
    class); ``class_names``: C names (default ``class_<i>``); ``device``: where the counts live
    (default: the device of the first update)."""

    def __init__(self, num_classes: int, ignore_index: int | None = None, class_names: Sequence[str] | None = None,
                 device: torch.device | str | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names: {len(class_names)} names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) if class_names is not None else tuple(
            f"class_{i}" for i in range(num_classes))
        self.matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64,
                                  device=device if device is not None else "cpu")
        self._device_fixed = device is not None

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count a batch. ``pred``: integer labels of ``target``'s shape, or floating scores with
        one more trailing dimension of size C (argmax taken); ``target``: integer labels."""
        pred, target = self._labels(pred, target)
        keep = target != self.ignore_index if self.ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
        target, pred = target[keep], pred[keep]
        _check_range(target, self.num_classes, "target", self.ignore_index)
        _check_range(pred, self.num_classes, "pred", None)
        counts = torch.bincount(target * self.num_classes + pred, minlength=self.num_classes ** 2)
        if not self._device_fixed:
            self.matrix = self.matrix.to(counts.device)
            self._device_fixed = True
        self.matrix += counts.reshape(self.num_classes, self.num_classes).to(self.matrix.device)

    def _labels(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise ValueError("pred and target must be torch tensors")
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer labels, got {target.dtype}")
        if pred.dtype.is_floating_point:
            if pred.shape != (*target.shape, self.num_classes):
                raise ValueError(f"pred scores must be target's shape + ({self.num_classes},), got {tuple(pred.shape)} "
                                 f"for target {tuple(target.shape)}")
            pred = pred.argmax(dim=-1)
        elif pred.shape != target.shape:
            raise ValueError(f"pred labels must have target's shape {tuple(target.shape)}, got {tuple(pred.shape)}")
        if pred.device != target.device:
            raise ValueError(f"pred on {pred.device} but target on {target.device}")
        return pred.reshape(-1).long(), target.reshape(-1).long()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (same classes) into this one; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"merge: {other.num_classes} classes into a {self.num_classes}-class matrix")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self, group: Any = None) -> ConfusionMatrix:
        """Sum the counts of every rank in place (``torch.distributed`` must be initialised for
        anything to happen; the matrix must be on a device the backend handles). Returns self."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM, group=group)
        return self

    def compute(self) -> SegmentationMetrics:
        matrix = self.matrix.detach().cpu().numpy().astype(np.float64)
        tp = np.diag(matrix)
        targets, predictions = matrix.sum(axis=1), matrix.sum(axis=0)
        union = targets + predictions - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            class_accuracy = np.where(targets > 0, tp / targets, np.nan)
        total = matrix.sum()
        present = ~np.isnan(iou)
        return SegmentationMetrics(
            class_names=self.class_names,
            iou=iou,
            miou=float(iou[present].mean()) if present.any() else float("nan"),
            accuracy=float(tp.sum() / total) if total > 0 else float("nan"),
            class_accuracy=class_accuracy,
            num_points=int(total),
        )


def _check_range(labels: torch.Tensor, num_classes: int, name: str, ignore_index: int | None) -> None:
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        hint = f" (ignore_index is {ignore_index})" if ignore_index is not None else ""
        raise ValueError(f"{name} labels must be in [0, {num_classes}){hint}, got range [{low}, {high}]")
