"""``GroupPlan``: how the voxels of a stage are cut into groups of equal size for attention.

A grouping op (flattened windows, SST windows, space-filling curves) computes one plan per
stage; every block of the stage reuses it. The attention module only ever sees a plan:
``gather`` lays the voxel features out as ``(groups, group size, C)`` batches, one per
bucket of equal-size groups, and ``scatter`` puts the group outputs back in voxel order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class GroupBucket:
    """G groups of S slots each.

    ``index`` int64 (G * S,): the voxel each slot holds, groups one after the other.
    ``padding`` bool (G, S): True for filler slots, which hold a duplicate of a real token of
    the same group (so of the same sample); attention may mask them as keys.
    ``batch`` int64 (G,): the sample each group belongs to (a group never mixes samples).
    """

    index: torch.Tensor
    padding: torch.Tensor
    batch: torch.Tensor

    def __post_init__(self) -> None:
        if self.padding.dim() != 2 or self.padding.dtype != torch.bool:
            raise ValueError(f"GroupBucket.padding must be bool (G, S), "
                             f"got {self.padding.dtype} {tuple(self.padding.shape)}")
        groups, size = self.padding.shape
        if size < 1:
            raise ValueError("GroupBucket.padding must have a group size S >= 1")
        if self.index.dtype != torch.int64 or tuple(self.index.shape) != (groups * size,):
            raise ValueError(f"GroupBucket.index must be int64 ({groups * size},) for {groups} groups of {size}, "
                             f"got {self.index.dtype} {tuple(self.index.shape)}")
        if self.batch.dtype != torch.int64 or tuple(self.batch.shape) != (groups,):
            raise ValueError(f"GroupBucket.batch must be int64 ({groups},), "
                             f"got {self.batch.dtype} {tuple(self.batch.shape)}")

    @property
    def num_groups(self) -> int:
        return self.padding.shape[0]

    @property
    def group_size(self) -> int:
        return self.padding.shape[1]

    @property
    def num_slots(self) -> int:
        return self.index.shape[0]

    def gather(self, feats: torch.Tensor) -> torch.Tensor:
        """(M, ...) voxel features -> (G, S, ...) group features."""
        return feats.index_select(0, self.index).view(self.num_groups, self.group_size, *feats.shape[1:])

    def to(self, device: torch.device | str) -> "GroupBucket":
        return GroupBucket(self.index.to(device), self.padding.to(device), self.batch.to(device))


@dataclass(frozen=True)
class GroupPlan:
    """Buckets of equal-size groups and the way back to voxel order.

    ``buckets``: one ``GroupBucket`` per group size (flattened windows and curves have one;
    SST windows have one per population level).
    ``inverse`` int64 (M,): for each voxel, the position of its real (non-padding) slot in the
    concatenation of all buckets' slots; -1 for a voxel the plan dropped (only SST windows
    drop, when a window holds more voxels than the largest bucket; ``num_dropped`` counts them).
    """

    buckets: tuple[GroupBucket, ...]
    inverse: torch.Tensor
    num_dropped: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "buckets", tuple(self.buckets))
        if not self.buckets:
            raise ValueError("GroupPlan needs at least one bucket")
        if self.inverse.dim() != 1 or self.inverse.dtype != torch.int64:
            raise ValueError(f"GroupPlan.inverse must be int64 (M,), "
                             f"got {self.inverse.dtype} {tuple(self.inverse.shape)}")
        if not 0 <= self.num_dropped <= self.inverse.shape[0]:
            raise ValueError(f"GroupPlan.num_dropped={self.num_dropped} is not within [0, M={self.inverse.shape[0]}]")
        dropped = int((self.inverse < 0).sum())
        if dropped != self.num_dropped:
            raise ValueError(f"GroupPlan.inverse marks {dropped} voxels dropped (-1) but num_dropped={self.num_dropped}")

    @property
    def num_voxels(self) -> int:
        return self.inverse.shape[0]

    @property
    def num_groups(self) -> int:
        return sum(bucket.num_groups for bucket in self.buckets)

    @property
    def group_sizes(self) -> tuple[int, ...]:
        return tuple(bucket.group_size for bucket in self.buckets)

    @property
    def num_slots(self) -> int:
        return sum(bucket.num_slots for bucket in self.buckets)

    @property
    def index(self) -> torch.Tensor:
        """int64 (sum of G_b * S_b,): slot -> voxel over all buckets, in bucket order."""
        if len(self.buckets) == 1:
            return self.buckets[0].index
        return torch.cat([bucket.index for bucket in self.buckets])

    @property
    def kept(self) -> torch.Tensor:
        """bool (M,): voxels that have a slot (all of them unless the plan dropped some)."""
        return self.inverse >= 0

    def gather_buckets(self, feats: torch.Tensor) -> list[torch.Tensor]:
        """(M, ...) voxel features -> one (G_b, S_b, ...) tensor per bucket."""
        if feats.shape[0] != self.num_voxels:
            raise ValueError(f"GroupPlan.gather: feats has {feats.shape[0]} rows, "
                             f"the plan has {self.num_voxels} voxels")
        return [bucket.gather(feats) for bucket in self.buckets]

    def gather(self, feats: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """(M, ...) -> (G, S, ...) for a one-bucket plan, else the list of ``gather_buckets``."""
        grouped = self.gather_buckets(feats)
        return grouped[0] if len(grouped) == 1 else grouped

    def scatter(self, outputs: torch.Tensor | Sequence[torch.Tensor], fill: torch.Tensor | None = None) -> torch.Tensor:
        """Group outputs (one (G, S, ...) tensor, or one per bucket) -> (M, ...) in voxel order.

        Each voxel takes the output of its real slot; padding outputs are discarded. Dropped
        voxels take the row of ``fill`` (M, ...) (e.g. the block input), or zeros without it.
        """
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if len(outputs) != len(self.buckets):
            raise ValueError(f"GroupPlan.scatter: got {len(outputs)} outputs for {len(self.buckets)} buckets")
        flat = []
        for bucket, output in zip(self.buckets, outputs):
            if tuple(output.shape[:2]) != (bucket.num_groups, bucket.group_size):
                raise ValueError(f"GroupPlan.scatter: output of shape {tuple(output.shape)} for a bucket of "
                                 f"{bucket.num_groups} groups of {bucket.group_size}")
            flat.append(output.reshape(bucket.num_slots, *output.shape[2:]))
        slots = flat[0] if len(flat) == 1 else torch.cat(flat)
        if self.num_dropped == 0:
            return slots.index_select(0, self.inverse)
        kept = self.kept
        rows = slots.index_select(0, self.inverse.clamp_min(0))
        if fill is None:
            fill = rows.new_zeros(())
        elif fill.shape != rows.shape:
            raise ValueError(f"GroupPlan.scatter: fill must have shape {tuple(rows.shape)}, got {tuple(fill.shape)}")
        return torch.where(kept.view(-1, *([1] * (rows.dim() - 1))), rows, fill)

    def to(self, device: torch.device | str) -> "GroupPlan":
        return GroupPlan(tuple(bucket.to(device) for bucket in self.buckets), self.inverse.to(device), self.num_dropped)
