"""Point colourings against explicit per-point twins; legends list exactly the classes present."""

import numpy as np
import pytest
from matplotlib import colormaps
from viz_fixtures import make_sample

from pointformer.data.classes import NUSCENES_LIDARSEG_CATEGORIES
from pointformer.viz.colors import (
    UNLABELLED_COLOR, class_color, color_points, hex_to_rgb, instance_color, label_name_lookup, semantic_color,
)


def test_height_colours_follow_viridis_over_the_fixed_range():
    z = np.array([-10.0, -3.0, 0.0, 1.5, 3.0, 50.0, np.nan])
    points = np.c_[np.zeros((7, 2)), z, np.zeros(7)]
    coloring = color_points(make_sample(points), "height")
    for value, color in zip(z, coloring.colors):
        expected = colormaps["viridis"](min(max((0.0 if np.isnan(value) else value + 3.0) / 6.0, 0.0), 1.0))[:3]
        np.testing.assert_allclose(color, expected, atol=1e-6)
    assert coloring.value_range == (-3.0, 3.0) and coloring.legend == []


def test_intensity_and_time_lag_ranges():
    rng = np.random.default_rng(0)
    points = np.c_[rng.normal(size=(200, 3)), rng.uniform(0, 255, 200), rng.uniform(0, 0.45, 200)]
    sample = make_sample(points, columns=("x", "y", "z", "intensity", "time_lag"))
    low, high = color_points(sample, "intensity").value_range
    assert (low, high) == pytest.approx(tuple(np.percentile(points[:, 3], [1, 99])))
    assert color_points(sample, "time_lag").value_range == pytest.approx((0.0, points[:, 4].max()))
    assert color_points(sample, "intensity", value_range=(0, 1)).value_range == (0, 1)
    with pytest.raises(ValueError, match="time_lag"):
        color_points(make_sample(points[:, :4]), "time_lag")
    with pytest.raises(ValueError, match="mode"):
        color_points(sample, "rainbow")


def test_semantic_colours_and_legend_list_the_classes_present():
    labels = np.array([17, 24, -1, 17, 99, 24, 24])
    sample = make_sample(np.zeros((7, 4)), labels=labels, meta={"dataset": "nuscenes"})
    coloring = color_points(sample, "semantic")
    names = {-1: "unlabelled", 17: NUSCENES_LIDARSEG_CATEGORIES[17], 24: NUSCENES_LIDARSEG_CATEGORIES[24],
             99: "class 99"}
    assert [entry.label for entry in coloring.legend] == [names[i] for i in (-1, 17, 24, 99)]
    for label, color in zip(labels, coloring.colors):
        expected = UNLABELLED_COLOR if label < 0 else semantic_color(names[label])
        np.testing.assert_allclose(color, hex_to_rgb(expected), atol=1e-6)
    assert semantic_color("vehicle.car") == class_color("car")  # fine category -> its class's colour
    override = color_points(sample, "semantic", labels=np.zeros(7, np.int64), label_names=["road"])
    assert [entry.label for entry in override.legend] == ["road"]
    with pytest.raises(ValueError, match="point labels"):
        color_points(make_sample(np.zeros((2, 4))), "semantic")
    with pytest.raises(ValueError, match="labels must be"):
        color_points(sample, "semantic", labels=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="label set"):
        label_name_lookup("not-a-set")


def test_instances_from_ids_and_from_boxes():
    ids = np.array([-1, 0, 4, 4, 9])
    coloring = color_points(make_sample(np.zeros((5, 4)), instance_ids=ids), "instance")
    grey = hex_to_rgb(UNLABELLED_COLOR)
    expected = [grey, grey, instance_color(4), instance_color(4), instance_color(9)]
    np.testing.assert_allclose(coloring.colors, np.array(expected), atol=1e-6)

    # No instance ids: the box a point lies in is its instance.
    points = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0.5, 0.2, 0.1, 0], [50, 50, 0, 0]], float)
    boxes = [[0, 0, 0, 2, 2, 2, 0], [10, 0, 0, 2, 2, 2, 0.3]]
    coloring = color_points(make_sample(points, boxes, ["car", "car"]), "instance")
    inside = np.stack([[abs(p[0] - b[0]) <= 1 and abs(p[1] - b[1]) <= 1 for b in boxes] for p in points])
    for point_colour, row in zip(coloring.colors, inside):
        expected = instance_color(int(np.argmax(row)) + 1) if row.any() else grey
        np.testing.assert_allclose(point_colour, expected, atol=1e-6)
    assert not np.allclose(coloring.colors[0], coloring.colors[1])


def test_empty_cloud_colours():
    for mode in ("height", "instance"):
        assert color_points(make_sample(), mode).colors.shape == (0, 3)
    assert color_points(make_sample(labels=np.zeros(0, np.int64)), "semantic").legend == []


def test_hex_colour_parsing():
    assert hex_to_rgb("#ff8000") == pytest.approx((1.0, 128 / 255, 0.0))
    with pytest.raises(ValueError, match="rrggbb"):
        hex_to_rgb("red")
