"""Small typed containers used everywhere: boxes, points, voxels, samples."""

from .boxes import Boxes3D
from .points import PointBatch
from .sample import Annotations, Sample
from .voxels import SparseVoxels

__all__ = ["Annotations", "Boxes3D", "PointBatch", "Sample", "SparseVoxels"]
