"""BEV views on the picture: boxes where the axes put their coordinates, GT and predictions side by
side, the legend listing exactly the classes present, points coloured by class."""

import numpy as np
import pytest
import torch
from viz_fixtures import color_mask, load_rgb, make_sample, near

from pointformer.structures import Boxes3D, Detections
from pointformer.viz.bev import BevView, PointStyle, bev_figure, render_bev, render_bev_comparison
from pointformer.viz.colors import class_color, semantic_color
from pointformer.viz.figures import figure_to_image, pyplot

SMALL = BevView(half_extent=40.0, figure_inches=5.0, dpi=80)


def _pixel(fig, ax, x, y):
    """(row, col) in the saved picture of data point (x, y) on ``ax``."""
    fig.canvas.draw()
    col, up = ax.transData.transform((x, y))
    return int(fig.bbox.height - up), int(col)


def test_box_centre_and_front_where_the_axes_put_them():
    box = [-20.0, -15.0, 0.0, 8.0, 3.0, 3.0, 0.6]
    fig = bev_figure(make_sample(boxes=[box], names=["truck"]), view=SMALL)
    ax = fig.axes[0]
    image = figure_to_image(fig)
    orange = color_mask(image, class_color("truck"), tol=10)
    along = np.array([np.cos(box[6]), np.sin(box[6])])
    centre, ahead, behind, outside = (_pixel(fig, ax, *(np.array(box[:2]) + d * along)) for d in (0, 2, -2, -6))
    pyplot().close(fig)
    assert near(orange, *centre) and near(orange, *ahead)  # the heading line runs centre -> front edge
    assert not near(orange, *behind) and not near(orange, *outside)


def test_legend_lists_exactly_the_classes_present(tmp_path):
    # Boxes in the lower left; the legend sits upper right.
    boxes = [[-30.0, -30.0, 0.0, 4.5, 2.0, 1.6, 0.0], [-20.0, -25.0, 0.0, 1.0, 1.0, 1.8, 0.0]]
    path = render_bev(make_sample(boxes=boxes, names=["car", "pedestrian"]), tmp_path / "legend.png", view=SMALL)
    image = load_rgb(path)
    height, width = image.shape[:2]
    legend_area = image[: height // 3, width // 2:]
    for name in ("car", "pedestrian"):
        assert color_mask(legend_area, class_color(name), tol=10).sum() > 5, name
    for name in ("bus", "truck", "traffic_cone"):
        assert not color_mask(image, class_color(name), tol=10).any(), name


def test_ground_truth_and_predictions_side_by_side(tmp_path):
    sample = make_sample(boxes=[[10.0, -20.0, 0.0, 12.0, 3.0, 3.5, 0.0]], names=["bus"])
    detections = Detections(Boxes3D(torch.tensor([[-15.0, -20.0, 0.0, 4.5, 2.0, 1.6, 0.0, 0.0, 0.0]])),
                            torch.tensor([0.8]), torch.tensor([0]))  # label 0 = car
    path = render_bev_comparison(sample, detections, tmp_path / "compare.png", view=SMALL)
    image = load_rgb(path)
    left, right = image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2:]
    assert color_mask(left, class_color("bus"), tol=10).sum() > 20
    assert not color_mask(right, class_color("bus"), tol=10).any()
    assert color_mask(right, class_color("car"), tol=10).sum() > 20
    assert not color_mask(left, class_color("car"), tol=10).any()
    with pytest.raises(ValueError, match="scores given twice"):
        render_bev_comparison(sample, detections, tmp_path / "x.png", scores=[0.5])


def test_points_coloured_by_semantic_class(tmp_path):
    rng = np.random.default_rng(0)
    car = np.c_[rng.uniform(-32, -28, (400, 2)), np.zeros((400, 2))]
    road = np.c_[rng.uniform(26, 30, (400, 1)), rng.uniform(-32, -28, (400, 1)), np.zeros((400, 2))]
    labels = np.r_[np.full(400, 17), np.full(400, 24)]
    sample = make_sample(np.r_[car, road], labels=labels, meta={"dataset": "nuscenes"})
    view = BevView(half_extent=40.0, figure_inches=5.0, dpi=80, point_size=20.0)
    fig = bev_figure(sample, view=view, points=PointStyle("semantic"))
    ax = fig.axes[0]
    image = figure_to_image(fig)
    car_at, road_at = _pixel(fig, ax, -30, -30), _pixel(fig, ax, 28, -30)
    pyplot().close(fig)
    assert near(color_mask(image, semantic_color("vehicle.car"), tol=10), *car_at)
    assert near(color_mask(image, semantic_color("flat.driveable_surface"), tol=10), *road_at)


def test_bad_view():
    with pytest.raises(ValueError, match="half_extent"):
        BevView(half_extent=0.0)
    with pytest.raises(ValueError, match="side_by_side needs predictions"):
        bev_figure(make_sample(), side_by_side=True)
