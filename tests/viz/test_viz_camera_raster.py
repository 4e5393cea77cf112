"""Camera projection against the OpenGL matrix pipeline, and the numpy rasterizer against
per-pixel brute force (nearest point wins, lines cover what dense sampling covers)."""

import numpy as np
import pytest

from pointformer.viz.camera import NEAR_PLANE, Camera
from pointformer.viz.raster import rasterize


def _opengl_project(camera: Camera, points: np.ndarray) -> np.ndarray:
    """gluLookAt + gluPerspective + viewport, in homogeneous coordinates."""
    eye, target, up = (np.asarray(v, float) for v in (camera.eye, camera.target, camera.up))
    f = (target - eye) / np.linalg.norm(target - eye)
    s = np.cross(f, up)
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = s, u, -f
    view[:3, 3] = -view[:3, :3] @ eye
    aspect = camera.width / camera.height
    cot = 1.0 / np.tan(np.radians(camera.fov_deg) / 2)
    near, far = 0.1, 1000.0
    projection = np.array([[cot / aspect, 0, 0, 0], [0, cot, 0, 0],
                           [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]])
    clip = (projection @ view @ np.c_[points, np.ones(len(points))].T).T
    ndc = clip[:, :3] / clip[:, 3:]
    return np.stack([(ndc[:, 0] + 1) / 2 * camera.width, (1 - ndc[:, 1]) / 2 * camera.height], axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_projection_matches_the_opengl_pipeline(seed):
    rng = np.random.default_rng(seed)
    eye = rng.uniform(-50, 50, 3)
    camera = Camera(tuple(eye), tuple(eye + rng.normal(size=3) * 10), fov_deg=float(rng.uniform(20, 100)),
                    width=int(rng.integers(10, 2000)), height=int(rng.integers(10, 2000)))
    points = rng.uniform(-100, 100, (500, 3))
    uv, depth = camera.project(points)
    front = depth > NEAR_PLANE
    np.testing.assert_allclose(uv[front], _opengl_project(camera, points[front]), rtol=1e-6, atol=1e-6)
    assert np.isnan(uv[~front]).all()


def test_camera_rejects_bad_settings():
    with pytest.raises(ValueError, match="fov_deg"):
        Camera((0, 0, 0), (1, 0, 0), fov_deg=180)
    with pytest.raises(ValueError, match="parallel"):
        Camera((0, 0, 0), (0, 0, 5))
    with pytest.raises(ValueError, match="eye"):
        Camera((0, np.nan, 0), (1, 0, 0))
    with pytest.raises(ValueError, match="behind"):
        Camera((0, 0, 0), (1, 0, 0)).pixel((-5, 0, 0))


def _brute_force_points(camera, points, colors, size):
    """Per pixel, the colour of the nearest point whose square splat covers the pixel centre."""
    image = np.zeros((camera.height, camera.width, 3))
    best = np.full((camera.height, camera.width), np.inf)
    for point, color in zip(points, colors):
        (u, v), depth = camera.project(point[None])[0][0], camera.to_camera(point[None])[0, 2]
        if not np.isfinite(u) or not np.isfinite(depth):
            continue
        for row in range(camera.height):
            for col in range(camera.width):
                if abs(col + 0.5 - u) < size / 2 and abs(row + 0.5 - v) < size / 2 and depth < best[row, col]:
                    best[row, col], image[row, col] = depth, color
    return np.round(image * 255).astype(np.uint8)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_points_nearest_wins_like_brute_force(size):
    rng = np.random.default_rng(size)
    camera = Camera((-10.0, 0.0, 3.0), (10.0, 0.0, 0.0), width=24, height=18, fov_deg=50)
    points = np.c_[rng.uniform(-2, 30, 150), rng.uniform(-8, 8, 150), rng.uniform(-2, 4, 150)]
    points = np.vstack([points, points[:20] + [[0.5, 0, 0]], [[np.nan, 0, 0], [np.inf, 1, 1], [-30, 0, 3]]])
    colors = rng.uniform(0, 1, (len(points), 3))
    image = rasterize(camera, points, colors, np.zeros((0, 2, 3)), np.zeros((0, 3)), point_size=size)
    np.testing.assert_array_equal(image, _brute_force_points(camera, points, colors, size))


def _dense_pixels(camera, segment, samples=20000):
    t = np.linspace(0, 1, samples)[:, None]
    line = segment[0] + t * (segment[1] - segment[0])
    uv, depth = camera.project(line)
    keep = (depth >= NEAR_PLANE) & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (
        uv[:, 1] < camera.height)
    return {(int(v), int(u)) for u, v in np.floor(uv[keep])}


def _dilate(pixels):
    return {(r + dr, c + dc) for r, c in pixels for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


@pytest.mark.parametrize("segment", [
    [[5.0, -4.0, 0.0], [20.0, 6.0, 1.0]],      # in front
    [[-20.0, 1.0, 0.5], [15.0, -2.0, 0.0]],    # crosses the near plane
    [[8.0, -500.0, 0.0], [8.0, 500.0, 0.0]],   # far beyond the image on both sides
    [[3.0, 2.0, 0.0], [3.0, 2.0, 0.0]],        # a single point
])
def test_line_covers_what_dense_sampling_covers(segment):
    camera = Camera((-10.0, 0.0, 3.0), (10.0, 0.0, 0.0), width=64, height=48, fov_deg=60)
    segment = np.array(segment)
    image = rasterize(camera, np.zeros((0, 3)), np.zeros((0, 3)), segment[None], np.array([[1.0, 1.0, 1.0]]),
                      line_width=1)
    drawn = {tuple(p) for p in np.argwhere(image.sum(axis=-1) > 0)}
    dense = _dense_pixels(camera, segment)
    assert dense, "the test segment must be visible"
    assert dense <= _dilate(drawn) and drawn <= _dilate(dense)


def test_segments_behind_the_camera_and_empty_inputs_draw_nothing():
    camera = Camera((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), width=16, height=12)
    behind = np.array([[[-5.0, -1.0, 0.0], [-2.0, 1.0, 0.0]], [[np.nan, 0, 0], [3.0, 0, 0]]])
    image = rasterize(camera, np.zeros((0, 3)), np.zeros((0, 3)), behind, np.ones((2, 3)), background=(0.0, 0.2, 0.0))
    assert image.shape == (12, 16, 3) and (image == [0, 51, 0]).all()
    with pytest.raises(ValueError, match="point_colors"):
        rasterize(camera, np.zeros((3, 3)), np.zeros((2, 3)), np.zeros((0, 2, 3)), np.zeros((0, 3)))


def test_lines_win_over_points_on_the_same_surface():
    camera = Camera((-10.0, 0.0, 0.0), (0.0, 0.0, 0.0), width=32, height=32, fov_deg=40)
    y, z = np.meshgrid(np.linspace(-3, 3, 20), np.linspace(-3, 3, 20))
    wall = np.c_[np.zeros(400), y.ravel(), z.ravel()]
    line = np.array([[[0.0, -2.0, 0.0], [0.0, 2.0, 0.0]]])
    image = rasterize(camera, wall, np.tile([0.0, 0.0, 1.0], (400, 1)), line, np.array([[1.0, 0.0, 0.0]]),
                      point_size=3)
    row, col = camera.pixel((0.0, 0.0, 0.0))
    assert tuple(image[row, col]) == (255, 0, 0)
