"""The fallback 3D renderer: numpy perspective projection with a depth buffer, no GPU, no display.

Used where open3d's offscreen renderer is unavailable. Points are square splats, box edges are
lines sampled one pixel apart; both go through one depth test, lines slightly in front so that
a box edge is not hidden by the points on the box's own surface.
"""

from __future__ import annotations

import numpy as np

from .camera import NEAR_PLANE, Camera

_LINE_DEPTH_BIAS = 0.995  # lines win the depth test against points within 0.5 % of their depth


def rasterize(
    camera: Camera,
    points: np.ndarray,
    point_colors: np.ndarray,
    segments: np.ndarray,
    segment_colors: np.ndarray,
    *,
    point_size: int = 2,
    line_width: int = 2,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Draw (N, 3) ``points`` with (N, 3) RGB ``point_colors`` and (M, 2, 3) line ``segments``
    with (M, 3) ``segment_colors`` (floats in [0, 1]) as seen by ``camera``; returns an
    (H, W, 3) uint8 image. Non-finite points and anything behind the near plane are skipped."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    segments = np.asarray(segments, np.float64).reshape(-1, 2, 3)
    point_colors = _check_colors(point_colors, len(points), "point_colors")
    segment_colors = _check_colors(segment_colors, len(segments), "segment_colors")
    if point_size < 1 or line_width < 1:
        raise ValueError(f"point_size and line_width must be >= 1, got {point_size}, {line_width}")
    pixels, depths, colors = [], [], []
    for part in (_point_fragments(camera, points, point_colors, point_size),
                 _line_fragments(camera, segments, segment_colors, line_width)):
        pixels.append(part[0])
        depths.append(part[1])
        colors.append(part[2])
    image = np.empty((camera.height * camera.width, 3), np.float32)
    image[:] = background
    pixel, depth, color = np.concatenate(pixels), np.concatenate(depths), np.concatenate(colors)
    if len(pixel):
        order = np.lexsort((depth, pixel))
        first = np.ones(len(order), bool)
        first[1:] = pixel[order][1:] != pixel[order][:-1]
        nearest = order[first]
        image[pixel[nearest]] = color[nearest]
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8).reshape(camera.height, camera.width, 3)


def _check_colors(colors: np.ndarray, count: int, name: str) -> np.ndarray:
    colors = np.asarray(colors, np.float32)
    if colors.shape != (count, 3):
        raise ValueError(f"{name} must be ({count}, 3) RGB in [0, 1], got shape {colors.shape}")
    return colors


def _splat(camera: Camera, uv: np.ndarray, depth: np.ndarray, colors: np.ndarray, size: int):
    """Square ``size`` x ``size`` splats centred on continuous image positions: the pixels whose
    centres lie within ``size / 2`` of the position -> (flat pixel, depth, colour)."""
    if len(uv) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3), np.float32)
    offsets = np.arange(size)
    base = np.floor(uv - size / 2.0 + 0.5).astype(np.int64)
    rows = (base[:, 1][:, None, None] + offsets[:, None]).repeat(size, axis=2).reshape(len(uv), -1)
    cols = (base[:, 0][:, None, None] + offsets[None, :]).repeat(size, axis=1).reshape(len(uv), -1)
    inside = (rows >= 0) & (rows < camera.height) & (cols >= 0) & (cols < camera.width)
    owner = np.broadcast_to(np.arange(len(uv))[:, None], rows.shape)[inside]
    return rows[inside] * camera.width + cols[inside], depth[owner], colors[owner]


def _point_fragments(camera: Camera, points: np.ndarray, colors: np.ndarray, size: int):
    camera_points = camera.to_camera(points)
    visible = np.isfinite(camera_points).all(axis=1) & (camera_points[:, 2] >= NEAR_PLANE)
    camera_points, colors = camera_points[visible], colors[visible]
    uv = camera.camera_to_image(camera_points)
    margin = size + 1
    on_image = ((uv[:, 0] > -margin) & (uv[:, 0] < camera.width + margin)
                & (uv[:, 1] > -margin) & (uv[:, 1] < camera.height + margin))
    return _splat(camera, uv[on_image], camera_points[on_image, 2], colors[on_image], size)


def _clip_near(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut (M, 3) camera-space segments at the near plane; returns the kept ends and a keep mask."""
    z0, z1 = start[:, 2], end[:, 2]
    keep = (z0 >= NEAR_PLANE) | (z1 >= NEAR_PLANE)
    with np.errstate(divide="ignore", invalid="ignore"):  # t is only used where the segment crosses
        t = (NEAR_PLANE - z0) / (z1 - z0)
        crossing = start + t[:, None] * (end - start)
    start = np.where((z0 < NEAR_PLANE)[:, None], crossing, start)
    end = np.where((z1 < NEAR_PLANE)[:, None], crossing, end)
    return start, end, keep


def _clip_to_image(uv0: np.ndarray, uv1: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Liang-Barsky: the parameter range [t0, t1] of each 2D segment inside the image rectangle."""
    delta = uv1 - uv0
    t0, t1 = np.zeros(len(uv0)), np.ones(len(uv0))
    for p, q in ((-delta[:, 0], uv0[:, 0]), (delta[:, 0], width - uv0[:, 0]),
                 (-delta[:, 1], uv0[:, 1]), (delta[:, 1], height - uv0[:, 1])):
        with np.errstate(divide="ignore", invalid="ignore"):
            r = q / p
        parallel = p == 0
        t0 = np.where(~parallel & (p < 0), np.maximum(t0, r), t0)
        t1 = np.where(~parallel & (p > 0), np.minimum(t1, r), t1)
        outside = parallel & (q < 0)
        t1 = np.where(outside, -1.0, t1)
    return t0, t1, t0 <= t1


def _line_fragments(camera: Camera, segments: np.ndarray, colors: np.ndarray, width: int):
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3), np.float32))
    if len(segments) == 0:
        return empty
    start, end = camera.to_camera(segments[:, 0]), camera.to_camera(segments[:, 1])
    finite = np.isfinite(start).all(axis=1) & np.isfinite(end).all(axis=1)
    start, end, keep = _clip_near(start[finite], end[finite])
    start, end, colors = start[keep], end[keep], colors[finite][keep]
    uv0, uv1 = camera.camera_to_image(start), camera.camera_to_image(end)
    t0, t1, visible = _clip_to_image(uv0, uv1, camera.width, camera.height)
    if not visible.any():
        return empty
    uv0, uv1, t0, t1 = uv0[visible], uv1[visible], t0[visible], t1[visible]
    inverse0, inverse1 = 1.0 / start[visible, 2], 1.0 / end[visible, 2]  # 1/depth is linear on screen
    colors = colors[visible]
    length = np.abs(uv1 - uv0).max(axis=1) * (t1 - t0)
    counts = np.ceil(length).astype(np.int64) + 1
    owner = np.repeat(np.arange(len(counts)), counts)
    step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    t = t0[owner] + (t1 - t0)[owner] * step / np.maximum(counts[owner] - 1, 1)
    uv = uv0[owner] + t[:, None] * (uv1 - uv0)[owner]
    depth = 1.0 / (inverse0[owner] + t * (inverse1 - inverse0)[owner])
    return _splat(camera, uv, depth * _LINE_DEPTH_BIAS, colors[owner], width)
