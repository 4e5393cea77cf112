"""``SparseVoxels``: the non-empty voxels of a batch, in spconv's index order."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class SparseVoxels:
    """``coords`` int32 (M, 4) as ``[batch, z, y, x]``; ``feats`` (M, C);
    ``spatial_shape`` (Z, Y, X) voxels; ``batch_size`` B (samples may have no voxels)."""

    coords: torch.Tensor
    feats: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int

    def __post_init__(self) -> None:
        if self.coords.dim() != 2 or self.coords.shape[1] != 4:
            raise ValueError(f"SparseVoxels.coords must be (M, 4), got shape {tuple(self.coords.shape)}")
        if self.feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f"SparseVoxels has {self.coords.shape[0]} coords but {self.feats.shape[0]} feature rows")
        if len(self.spatial_shape) != 3:
            raise ValueError(f"SparseVoxels.spatial_shape must be (Z, Y, X), got {self.spatial_shape}")
        self.spatial_shape = tuple(int(s) for s in self.spatial_shape)
        self.coords = self.coords.to(torch.int32)

    @property
    def num_voxels(self) -> int:
        return self.coords.shape[0]

    @property
    def batch_idx(self) -> torch.Tensor:
        return self.coords[:, 0].long()

    def replace_feats(self, feats: torch.Tensor) -> "SparseVoxels":
        return replace(self, feats=feats)

    def to(self, *args, **kwargs) -> "SparseVoxels":
        feats = self.feats.to(*args, **kwargs)
        return replace(self, coords=self.coords.to(feats.device), feats=feats)

    def to_spconv(self):
        """As a ``spconv.pytorch.SparseConvTensor`` (spconv is imported here, on use)."""
        from pointformer.ops.spconv_compat import spconv

        return spconv.SparseConvTensor(self.feats, self.coords, list(self.spatial_shape), self.batch_size)

    @staticmethod
    def from_spconv(tensor) -> "SparseVoxels":
        return SparseVoxels(tensor.indices, tensor.features, tuple(tensor.spatial_shape), tensor.batch_size)

    def dense(self) -> torch.Tensor:
        """(B, C, Z, Y, X) dense grid, zeros where no voxel (duplicates are summed)."""
        z, y, x = self.spatial_shape
        grid = self.feats.new_zeros((self.batch_size, z, y, x, self.feats.shape[1]))
        b, cz, cy, cx = self.coords.long().unbind(1)
        grid.index_put_((b, cz, cy, cx), self.feats, accumulate=True)
        return grid.permute(0, 4, 1, 2, 3).contiguous()
