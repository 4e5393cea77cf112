"""``PointBatch``: point clouds of a batch concatenated, with offsets instead of padding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class PointBatch:
    """``points`` (N, C) float32 of B samples back to back; sample ``i`` is
    ``points[offsets[i]:offsets[i + 1]]``; ``offsets`` is int64 (B + 1,), starting at 0."""

    points: torch.Tensor
    offsets: torch.Tensor

    def __post_init__(self) -> None:
        if self.points.dim() != 2:
            raise ValueError(f"PointBatch.points must be (N, C), got shape {tuple(self.points.shape)}")
        self.offsets = torch.as_tensor(self.offsets, dtype=torch.int64, device=self.points.device)
        if self.offsets.dim() != 1 or self.offsets.numel() < 1:
            raise ValueError(f"PointBatch.offsets must be (B + 1,), got shape {tuple(self.offsets.shape)}")
        if int(self.offsets[0]) != 0 or int(self.offsets[-1]) != self.points.shape[0]:
            raise ValueError(
                f"PointBatch.offsets must run from 0 to N={self.points.shape[0]}, "
                f"got {int(self.offsets[0])}..{int(self.offsets[-1])}"
            )
        if bool((self.offsets[1:] < self.offsets[:-1]).any()):
            raise ValueError("PointBatch.offsets must be non-decreasing")

    @staticmethod
    def from_list(clouds: Sequence[torch.Tensor]) -> "PointBatch":
        """Concatenate (N_i, C) clouds; all must share C."""
        if not clouds:
            raise ValueError("PointBatch.from_list needs at least one cloud")
        widths = {c.shape[1] for c in clouds}
        if len(widths) != 1:
            raise ValueError(f"clouds have different feature counts {sorted(widths)}")
        counts = torch.tensor([c.shape[0] for c in clouds], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        return PointBatch(torch.cat(list(clouds), dim=0), offsets.to(clouds[0].device))

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_features(self) -> int:
        return self.points.shape[1]

    @property
    def counts(self) -> torch.Tensor:
        """(B,) points per sample."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def batch_idx(self) -> torch.Tensor:
        """(N,) int64 sample index of every point."""
        return torch.repeat_interleave(torch.arange(self.batch_size, device=self.points.device), self.counts)

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, i: int) -> torch.Tensor:
        """A view of sample ``i``'s points."""
        if not -self.batch_size <= i < self.batch_size:
            raise IndexError(f"sample {i} out of range for a batch of {self.batch_size}")
        i %= self.batch_size
        return self.points[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def split(self) -> list[torch.Tensor]:
        return list(torch.split(self.points, self.counts.tolist()))

    def to(self, *args, **kwargs) -> "PointBatch":
        points = self.points.to(*args, **kwargs)
        return PointBatch(points, self.offsets.to(points.device))
