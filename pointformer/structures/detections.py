"""``Detections``: the boxes a detector returns for one sample, with scores and class labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .boxes import Boxes3D


@dataclass
class Detections:
    """K detections of one sample: ``boxes`` (K, 7|9) in the sample frame, ``scores`` float32
    (K,) in [0, 1], ``labels`` int64 (K,) indices into the detector's class names."""

    boxes: Boxes3D
    scores: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        count = len(self.boxes)
        if tuple(self.scores.shape) != (count,):
            raise ValueError(f"Detections.scores must be ({count},) for {count} boxes, got {tuple(self.scores.shape)}")
        if tuple(self.labels.shape) != (count,) or self.labels.dtype != torch.int64:
            raise ValueError(f"Detections.labels must be int64 ({count},), "
                             f"got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.boxes)

    @staticmethod
    def empty(box_dim: int = 9, device: torch.device | str = "cpu") -> "Detections":
        return Detections(Boxes3D(torch.zeros((0, box_dim), device=device)),
                          torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device))

    def select(self, index: torch.Tensor) -> "Detections":
        """The detections at ``index`` (bool mask or int64 positions)."""
        return Detections(Boxes3D(self.boxes.tensor[index]), self.scores[index], self.labels[index])

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(Boxes3D(self.boxes.tensor.to(device)), self.scores.to(device), self.labels.to(device))

    def detach(self) -> "Detections":
        return Detections(Boxes3D(self.boxes.tensor.detach()), self.scores.detach(), self.labels.detach())
