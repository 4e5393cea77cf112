"""Tensor algorithms: voxelizers, window grouping, box ops. One public function per idea."""

from .box_points import points_in_boxes, points_in_boxes_batch
from .nms import nms_circle, nms_rotated
from .rotated_iou import box_iou
from .voxelize import (
    DynamicVoxelization, HardVoxelization, VoxelGrid, dynamic_voxelize, hard_voxelize, voxel_max, voxel_mean,
    voxelize_mean,
)
