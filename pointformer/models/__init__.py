"""Models: voxel encoders, backbones, BEV scatter, necks, heads."""

from .backbones import SparseResNet8x
from .bev import sparse_to_bev
from .encoders import DynamicVFE, EncodedVoxels, MeanVFE
from .necks import SecondFPN

__all__ = ["DynamicVFE", "EncodedVoxels", "MeanVFE", "SecondFPN", "SparseResNet8x", "sparse_to_bev"]
