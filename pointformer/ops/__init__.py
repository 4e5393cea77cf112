"""Tensor algorithms: voxelizers, window grouping, box ops. One public function per idea;
each runs numba on CPU tensors and torch on CUDA tensors, with the same results."""

from .box_points import points_in_boxes, points_in_boxes_batch
from .curves import CURVE_ORDERS, curve_keys, curve_plan, curve_plans, hilbert_code, morton_code
from .grouping import FLAT_ORDERS, flat_window_plan, flat_window_plans, window_positions
from .nms import nms_circle, nms_rotated
from .rotated_iou import box_iou
from .sst_windows import SST_BUCKET_CAPS, sst_window_plan, sst_window_plans
from .voxelize import (
    DynamicVoxelization, HardVoxelization, VoxelGrid, dynamic_voxelize, hard_voxelize, voxel_max, voxel_mean,
    voxelize_mean,
)

__all__ = [
    "CURVE_ORDERS",
    "DynamicVoxelization",
    "FLAT_ORDERS",
    "HardVoxelization",
    "SST_BUCKET_CAPS",
    "VoxelGrid",
    "box_iou",
    "curve_keys",
    "curve_plan",
    "curve_plans",
    "dynamic_voxelize",
    "flat_window_plan",
    "flat_window_plans",
    "hard_voxelize",
    "hilbert_code",
    "morton_code",
    "nms_circle",
    "nms_rotated",
    "points_in_boxes",
    "points_in_boxes_batch",
    "sst_window_plan",
    "sst_window_plans",
    "voxel_max",
    "voxel_mean",
    "voxelize_mean",
    "window_positions",
]
