"""Models: voxel encoders, window-transformer and sparse-conv backbones, BEV scatter, necks,
CenterPoint and segmentation heads, and the Detector / Segmentor that assemble them."""

from .backbones import FlatFormer, SparseResNet8x, SSTBackbone
from .bev import sparse_to_bev
from .detector import Detector
from .encoders import DynamicVFE, EncodedVoxels, MeanVFE
from .heads.centerpoint import CenterHead
from .heads.segmentation import SegmentationHead
from .necks import SecondFPN
from .segmentor import Segmentor

__all__ = [
    "CenterHead", "Detector", "DynamicVFE", "EncodedVoxels", "FlatFormer", "MeanVFE", "SSTBackbone", "SecondFPN",
    "SegmentationHead", "Segmentor", "SparseResNet8x", "sparse_to_bev",
]
