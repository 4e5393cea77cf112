"""3D views: box wireframes against explicit corners, and the rendered picture (open3d offscreen
and the numpy fallback) coloured where the camera projects the known box."""

import numpy as np
import pytest
from viz_fixtures import color_mask, load_rgb, make_sample, near

from pointformer.structures import Annotations, Boxes3D
from pointformer.viz.camera import Camera
from pointformer.viz.colors import GROUND_TRUTH_COLOR, class_color, hex_to_rgb
from pointformer.viz.scene3d import (
    Scene3DStyle, box_segments, build_scene, offscreen_available, render_3d, resolve_backend,
)

BOX = [16.0, 3.0, 0.0, 8.0, 2.5, 3.0, 0.4]
CAMERA = Camera.orbit((10.0, 0.0, 0.0), 30.0, 200.0, 35.0, width=320, height=240)


def _explicit_corners(box):
    """The 8 corners with their local (x, y, z) signs, one trigonometric step at a time."""
    x, y, z, length, width, height, yaw = box
    corners, signs = [], []
    for sz in (-1, 1):
        for sx in (-1, 1):
            for sy in (-1, 1):
                lx, ly = sx * length / 2, sy * width / 2
                corners.append((x + lx * np.cos(yaw) - ly * np.sin(yaw), y + lx * np.sin(yaw) + ly * np.cos(yaw),
                                z + sz * height / 2))
                signs.append((sx, sy, sz))
    return np.array(corners), np.array(signs)


def _as_set(segments):
    return {tuple(sorted((tuple(np.round(a, 4)), tuple(np.round(b, 4))))) for a, b in segments}


@pytest.mark.parametrize("box", [BOX, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, -np.pi], [-5.0, 7.0, 2.0, 4.0, 0.5, 1.0, 2.9]])
def test_box_segments_are_the_twelve_edges_and_the_heading(box):
    segments = box_segments(Boxes3D(np.array([box])))
    corners, signs = _explicit_corners(box)
    edges = [(corners[i], corners[j]) for i in range(8) for j in range(i + 1, 8)
             if (signs[i] != signs[j]).sum() == 1]  # an edge joins corners differing along one axis
    front = np.array(box[:3]) + box[3] / 2 * np.array([np.cos(box[6]), np.sin(box[6]), 0.0])
    assert len(edges) == 12 and len(segments) == 13
    assert _as_set(segments) == _as_set(edges + [(np.array(box[:3]), front)])
    assert box_segments(Boxes3D.empty()).shape == (0, 2, 3)


def test_scene_colours_ground_truth_apart_from_predictions_and_anchors_scores():
    sample = make_sample(np.zeros((3, 4)), [BOX], ["bus"])
    predictions = Annotations.from_boxes(Boxes3D(np.array([BOX]) + [0.5, 0, 0, 0, 0, 0, 0]), ["car"])
    style = Scene3DStyle(show_ego=False, ring_step=0)
    alone = build_scene(sample, style=style)
    np.testing.assert_allclose(alone.segment_colors, np.tile(hex_to_rgb(class_color("bus")), (13, 1)), atol=1e-6)
    both = build_scene(sample, predictions, [0.75], style=style)
    np.testing.assert_allclose(both.segment_colors[:13], np.tile(hex_to_rgb(GROUND_TRUTH_COLOR), (13, 1)), atol=1e-6)
    np.testing.assert_allclose(both.segment_colors[13:], np.tile(hex_to_rgb(class_color("car")), (13, 1)), atol=1e-6)
    assert [e.label for e in both.legend] == ["car", "ground truth"]
    (position, text, color), = both.texts
    assert text == "0.75" and color == class_color("car")
    np.testing.assert_allclose(position, predictions.boxes.corners()[0, 4].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="scores"):
        build_scene(sample, predictions, [0.1, 0.2])


def test_backend_choice(monkeypatch):
    monkeypatch.setenv("POINTFORMER_3D_BACKEND", "numpy")
    assert resolve_backend("auto") == "numpy" and resolve_backend("open3d") == "open3d"
    monkeypatch.setenv("POINTFORMER_3D_BACKEND", "opengl")
    with pytest.raises(ValueError, match="POINTFORMER_3D_BACKEND"):
        resolve_backend("auto")
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("vulkan")


def _backends():
    return ["numpy", pytest.param("open3d", marks=pytest.mark.skipif(
        not offscreen_available(), reason="open3d offscreen rendering unavailable here"))]


@pytest.mark.parametrize("backend", _backends())
def test_box_lands_where_the_camera_projects_it(tmp_path, backend):
    ground = np.c_[np.mgrid[-10:10:0.5, -10:10:0.5].reshape(2, -1).T, np.full(1600, -1.8), np.zeros(1600)]
    sample = make_sample(ground, [BOX], ["bus"])
    path = render_3d(sample, tmp_path / "box.png", camera=CAMERA, backend=backend, title="")
    image = load_rgb(path)
    assert image.shape == (CAMERA.height, CAMERA.width, 3)
    red = color_mask(image, class_color("bus"))
    boxes = Boxes3D(np.array([BOX]))
    # The heading line starts at the box centre and ends mid front face; the corners are edge ends.
    front = np.array(BOX[:3]) + BOX[3] / 2 * np.array([np.cos(BOX[6]), np.sin(BOX[6]), 0.0])
    for point in [BOX[:3], front, *boxes.corners()[0].numpy()]:
        assert near(red, *CAMERA.pixel(point)), f"no box colour at the projection of {point}"
    uv, _ = CAMERA.project(boxes.corners()[0].double().numpy())
    (u0, v0), (u1, v1) = np.floor(uv.min(axis=0)) - 2, np.ceil(uv.max(axis=0)) + 2
    rows, cols = np.nonzero(red)
    in_box = (cols >= u0) & (cols <= u1) & (rows >= v0) & (rows <= v1)
    legend_region = (rows < CAMERA.height // 3) & (cols > CAMERA.width // 2)
    assert in_box.sum() > 50
    assert (in_box | legend_region).all(), "box colour outside the box's projection and the legend"
    assert legend_region.any(), "the legend lists the class present"
    assert not color_mask(image, class_color("car"))[: CAMERA.height // 3, CAMERA.width // 2:].any()


@pytest.mark.parametrize("backend", _backends())
def test_empty_cloud_renders(tmp_path, backend):
    sample = make_sample()
    path = render_3d(sample, tmp_path / "empty.png", camera=CAMERA, backend=backend)
    image = load_rgb(path)
    assert image.shape == (CAMERA.height, CAMERA.width, 3)
    assert color_mask(image, "#000000").mean() > 0.5  # mostly background, rings and ego aside


@pytest.mark.skipif(not offscreen_available(), reason="open3d offscreen rendering unavailable here")
def test_camera_projection_matches_open3d_camera_matrices(tmp_path):
    from pointformer.viz.scene3d import _offscreen_renderer

    render_3d(make_sample(), tmp_path / "camera.png", camera=CAMERA, backend="open3d")
    camera = _offscreen_renderer(CAMERA.width, CAMERA.height).scene.camera
    view, projection = np.asarray(camera.get_view_matrix()), np.asarray(camera.get_projection_matrix())
    points = np.random.default_rng(0).uniform([0, -20, -3], [60, 20, 5], (100, 3))
    clip = (projection @ view @ np.c_[points, np.ones(len(points))].T).T
    ndc = clip[:, :2] / clip[:, 3:]
    open3d_uv = np.stack([(ndc[:, 0] + 1) / 2 * CAMERA.width, (1 - ndc[:, 1]) / 2 * CAMERA.height], axis=1)
    np.testing.assert_allclose(CAMERA.project(points)[0], open3d_uv, atol=1e-3)
