"""Small typed containers used everywhere: boxes, points, voxels, samples, group plans."""

from .boxes import Boxes3D
from .detections import Detections
from .group_plan import GroupBucket, GroupPlan
from .points import PointBatch
from .sample import Annotations, Sample
from .voxels import SparseVoxels

__all__ = ["Annotations", "Boxes3D", "Detections", "GroupBucket", "GroupPlan", "PointBatch", "Sample", "SparseVoxels"]
