"""Segmentation views (class colours where the points are, a legend of the classes present with
their counts) and animations (a GIF holds one frame per sample)."""

import importlib.util

import numpy as np
import pytest
from PIL import Image
from viz_fixtures import color_mask, load_rgb, make_sample

from pointformer.viz.bev import BevView
from pointformer.viz.colors import semantic_color
from pointformer.viz.frames import Frame
from pointformer.viz.segmentation import render_segmentation, segmentation_legend
from pointformer.viz.sequence import render_sequence, write_animation, write_gif

SMALL = BevView(half_extent=40.0, figure_inches=4.0, dpi=80, point_size=12.0)


def _two_class_sample():
    rng = np.random.default_rng(1)
    left = np.c_[rng.uniform(-32, -24, (300, 1)), rng.uniform(-32, -24, (300, 1)), np.zeros((300, 2))]
    right = np.c_[rng.uniform(24, 32, (100, 1)), rng.uniform(-32, -24, (100, 1)), np.zeros((100, 2))]
    labels = np.r_[np.full(300, 1), np.full(100, 9)]  # SemanticKITTI: car, road
    return make_sample(np.r_[left, right], labels=labels)


def test_segmentation_colours_points_by_class_and_lists_the_classes(tmp_path):
    sample = _two_class_sample()
    path = render_segmentation(sample, tmp_path / "seg.png", label_names="semantickitti", view=SMALL)
    image = load_rgb(path)
    height, width = image.shape[:2]
    car, road = color_mask(image, semantic_color("car"), 10), color_mask(image, semantic_color("road"), 10)
    lower = slice(height // 2, height)
    assert car[lower, : width // 2].sum() > 50 and not car[lower, width // 2:].any()
    assert road[lower, width // 2:].sum() > 20 and not road[lower, : width // 2].any()
    legend_area = slice(0, height // 3), slice(width // 2, width)
    assert car[legend_area].any() and road[legend_area].any()  # both listed
    assert not color_mask(image, semantic_color("vegetation"), 10).any()  # absent class not listed
    assert [(e.label, e.color) for e in segmentation_legend(sample.point_labels.numpy(), {1: "car", 9: "road"})] == [
        ("car (300)", semantic_color("car")), ("road (100)", semantic_color("road"))]


def test_predicted_labels_get_their_own_panel(tmp_path):
    sample = _two_class_sample()
    predicted = np.full(sample.num_points, 9)
    image = load_rgb(render_segmentation(sample, tmp_path / "pred.png", predicted_labels=predicted,
                                         label_names="semantickitti", view=SMALL))
    right_half = image[:, image.shape[1] // 2:]
    assert not color_mask(right_half, semantic_color("car"), 10).any()  # all points predicted road
    with pytest.raises(ValueError, match="predicted_labels"):
        render_segmentation(sample, tmp_path / "bad.png", predicted_labels=np.zeros(3, np.int64))


def test_empty_and_unlabelled_clouds(tmp_path):
    render_segmentation(make_sample(labels=np.zeros(0, np.int64)), tmp_path / "empty.png", view=SMALL)
    with pytest.raises(ValueError, match="no point labels"):
        render_segmentation(make_sample(np.zeros((4, 4))), tmp_path / "none.png", view=SMALL)


def test_gif_has_one_frame_per_sample(tmp_path):
    frames = [Frame(make_sample(boxes=[[5.0 * k, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]], names=["car"]), title=f"frame {k}")
              for k in range(3)]
    path = render_sequence(frames, tmp_path / "scene.gif", fps=4, bev_view=BevView(20.0, figure_inches=2.5, dpi=60))
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (150, 150)
        assert gif.info["duration"] == 250
    with pytest.raises(ValueError, match="gif or .mp4"):
        render_sequence(frames, tmp_path / "scene.avi")
    with pytest.raises(ValueError, match="all frames must match"):
        write_gif([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="at least one frame"):
        write_gif([], tmp_path / "x.gif")


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is not None, reason="imageio-ffmpeg is installed")
def test_mp4_without_imageio_ffmpeg_says_what_it_needs(tmp_path):
    with pytest.raises(ValueError, match="imageio-ffmpeg"):
        write_animation([np.zeros((4, 4, 3), np.uint8)], tmp_path / "x.mp4")


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="imageio-ffmpeg is not installed")
def test_mp4_has_one_frame_per_image(tmp_path):
    import imageio_ffmpeg

    images = [np.full((37, 50, 3), 40 * k, np.uint8) for k in range(4)]
    path = write_animation(images, tmp_path / "x.mp4", fps=5)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (64, 48) and sum(1 for _ in reader) == 4
