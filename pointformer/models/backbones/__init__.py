"""Backbones: ``SparseVoxels -> SparseVoxels``; FlatFormer, the SST-style baseline, spconv's sparse ResNet."""

from .flatformer import FlatFormer
from .sparse_resnet import SparseBasicBlock, SparseResNet8x
from .sst import SSTBackbone

__all__ = ["FlatFormer", "SSTBackbone", "SparseBasicBlock", "SparseResNet8x"]
