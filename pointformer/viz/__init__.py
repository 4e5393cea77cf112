"""Views of point clouds, boxes, labels and training runs.

Headless (PNG/GIF/MP4, no display): :func:`render_bev` / :func:`render_bev_comparison`
(bird's-eye view), :func:`render_3d` (perspective; open3d's offscreen renderer or a numpy
fallback), :func:`render_segmentation`, :func:`render_sequence`, and the run plots of
:mod:`pointformer.viz.plots`. Interactive: :func:`pointformer.viz.viewer.run_viewer`.
open3d and matplotlib are imported only when a view needs them.
"""

from .bev import BevView, PointStyle, render_bev, render_bev_comparison
from .camera import Camera
from .colors import CLASS_COLORS, LABEL_SETS, POINT_COLOR_MODES, LegendEntry, class_color, color_points
from .frames import DatasetFrames, Frame, filter_frame
from .scene3d import Scene3DStyle, build_scene, render_3d, render_3d_image
from .segmentation import render_segmentation
from .sequence import render_sequence

__all__ = [
    "CLASS_COLORS", "LABEL_SETS", "POINT_COLOR_MODES", "BevView", "Camera", "DatasetFrames", "Frame", "LegendEntry",
    "PointStyle", "Scene3DStyle", "build_scene", "class_color", "color_points", "filter_frame", "render_3d",
    "render_3d_image", "render_bev", "render_bev_comparison", "render_segmentation", "render_sequence",
]
