"""The BEV render draws what it is given where it belongs: checked on the picture's pixels."""

import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from pointformer.structures import Annotations, Boxes3D, Sample
from pointformer.viz.bev import BevView, class_color, render_bev


def _pixels_near(image: np.ndarray, color: str, tol: float = 0.08) -> np.ndarray:
    return np.all(np.abs(image[..., :3] - np.array(to_rgb(color))) < tol, axis=-1)


def _sample(boxes, names, points=None):
    points = torch.zeros((0, 4)) if points is None else points
    return Sample(points, ("x", "y", "z", "intensity"), Annotations.from_boxes(Boxes3D(boxes), names))


def test_box_lands_on_the_expected_side(tmp_path):
    # A big bus behind and to the right of the ego (the legend sits top right, away from it).
    sample = _sample(torch.tensor([[-30.0, -30.0, 0.0, 12.0, 3.0, 3.5, 0.0]]), ["bus"])
    image = imread(render_bev(sample, tmp_path / "bev.png", view=BevView(half_extent=60.0)))
    mask = _pixels_near(image, class_color("bus"))
    height, width = image.shape[:2]
    top, bottom = slice(0, height // 2), slice(height // 2, height)
    left, right = slice(0, width // 2), slice(width // 2, width)
    # +x is to the right of the image, +y up: rear-right -> left half, lower half.
    assert mask[bottom, left].sum() > 20
    assert mask[top, left].sum() == 0 and mask[bottom, right].sum() == 0  # the legend is top right

def test_empty_cloud_and_no_boxes_render(tmp_path):
    path = render_bev(_sample(torch.zeros((0, 7)), []), tmp_path / "empty.png")
    assert imread(path).shape[0] > 100


def test_points_outside_view_are_skipped_without_error(tmp_path):
    points = torch.tensor([[1e6, 1e6, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    render_bev(_sample(torch.zeros((0, 7)), [], points), tmp_path / "far.png")


def test_scored_boxes_far_outside_the_view_render(tmp_path):
    """An untrained model's boxes reach 1e9 m; their score labels must not reach the rasteriser."""
    from pointformer.structures import Detections

    boxes = torch.tensor([[1e9, 2e9, 0.0, 1e9, 1e9, 1.0, 0.0], [-30.0, -30.0, 0.0, 12.0, 3.0, 3.5, 0.0]])
    far = Detections(Boxes3D(boxes), torch.tensor([0.5, 0.9]), torch.tensor([0, 0]))
    image = imread(render_bev(_sample(torch.zeros((0, 7)), []), tmp_path / "far_boxes.png", predictions=far,
                              class_names=["bus"], view=BevView(half_extent=60.0)))
    mask = _pixels_near(image, class_color("bus"))
    height, width = image.shape[:2]
    assert mask[height // 2:, : width // 2].sum() > 20  # the box in view is still drawn
