"""Backbones: ``forward(voxels: SparseVoxels) -> SparseVoxels`` with ``out_channels`` and ``out_stride``."""

from .sparse_resnet import SparseBasicBlock, SparseResNet8x

__all__ = ["SparseBasicBlock", "SparseResNet8x"]
