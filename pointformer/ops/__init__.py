"""Tensor algorithms: voxelizers, window grouping, box ops. One public function per idea."""

from .box_points import points_in_boxes, points_in_boxes_batch
from .nms import nms_circle, nms_rotated
from .rotated_iou import box_iou
from .voxelize import DynamicVoxelization
from .voxelize import HardVoxelization
from .voxelize import VoxelGrid
from .voxelize import dynamic_voxelize
from .voxelize import hard_voxelize
from .voxelize import voxel_max
from .voxelize import voxel_mean
from .voxelize import voxelize_mean
from .curves import CURVE_ORDERS, curve_keys, curve_plan, curve_plans, hilbert_code, morton_code
from .grouping import FLAT_ORDERS, flat_window_plan, flat_window_plans, window_positions
from .sst_windows import SST_BUCKET_CAPS, sst_window_plan, sst_window_plans
