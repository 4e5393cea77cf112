"""3D views of a sample: the geometry (coloured points, box wireframes with heading lines, ego,
range rings) and its headless render to PNG.

Renders go through open3d's offscreen renderer where it works (checked once per process in a
child process, since a missing GPU/Vulkan stack can abort the process that tries) and through
the numpy rasterizer of :mod:`pointformer.viz.raster` otherwise. Set the environment variable
``POINTFORMER_3D_BACKEND`` to ``open3d`` or ``numpy`` to choose.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.structures import Annotations, Boxes3D, Detections, Sample

from .camera import Camera
from .colors import (
    BACKGROUND_COLOR, GROUND_TRUTH_COLOR, LegendEntry, class_color, color_points, hex_to_rgb,
)
from .figures import annotate_image, save_image
from .frames import as_predictions
from .raster import rasterize

log = logging.getLogger(__name__)

BACKENDS = ("auto", "open3d", "numpy")
BACKEND_ENV = "POINTFORMER_3D_BACKEND"
EGO_SIZE = (4.5, 2.0, 1.6)  # l, w, h in metres
RING_COLOR = "#4a4a4a"
EGO_COLOR = "#ffffff"

# Edges of Boxes3D.corners(): bottom face, top face, verticals.
BOX_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


@dataclass
class Scene3DStyle:
    """How a 3D view looks: splat and line sizes in pixels, range rings every ``ring_step``
    metres out to ``ring_max`` on the ground (``ground_z``; None: estimated from the points)."""

    point_size: int = 2
    line_width: int = 2
    background: str = BACKGROUND_COLOR
    ring_step: float = 10.0
    ring_max: float = 50.0
    ground_z: float | None = None
    show_ego: bool = True
    show_scores: bool = True


@dataclass
class SceneGeometry:
    """What a 3D view draws: (N, 3) ``points`` with (N, 3) RGB ``point_colors`` in [0, 1],
    (M, 2, 3) line ``segments`` with (M, 3) ``segment_colors``, ``texts`` (position (3,),
    text, hex colour) anchored in 3D, and the ``legend`` explaining the colours."""

    points: np.ndarray
    point_colors: np.ndarray
    segments: np.ndarray
    segment_colors: np.ndarray
    texts: list[tuple[np.ndarray, str, str]] = field(default_factory=list)
    legend: list[LegendEntry] = field(default_factory=list)


@dataclass
class Render3D:
    """A 3D render: ``image`` (H, W, 3) uint8 with legend and title, the ``backend`` that drew it."""

    image: np.ndarray
    backend: str
    legend: list[LegendEntry]


# ------------------------------------------------------------------ geometry
def box_segments(boxes: Boxes3D) -> np.ndarray:
    """(N * 13, 2, 3) line segments: each box's 12 edges, then its heading line from the centre
    to the middle of the front face."""
    if len(boxes) == 0:
        return np.zeros((0, 2, 3))
    corners = boxes.corners().detach().cpu().double().numpy()
    edges = corners[:, BOX_EDGES]  # (N, 12, 2, 3)
    centers = boxes.center.detach().cpu().double().numpy()
    front = corners[:, [0, 3, 4, 7]].mean(axis=1)
    heading = np.stack([centers, front], axis=1)[:, None]
    return np.concatenate([edges, heading], axis=1).reshape(-1, 2, 3)


def ring_segments(radius_step: float, radius_max: float, z: float, pieces: int = 96) -> np.ndarray:
    """Circles around the ego every ``radius_step`` metres up to ``radius_max``, at height ``z``."""
    if radius_step <= 0 or radius_max < radius_step:
        return np.zeros((0, 2, 3))
    angles = np.linspace(0.0, 2 * np.pi, pieces + 1)
    rings = []
    for radius in np.arange(radius_step, radius_max + 1e-6, radius_step):
        circle = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full_like(angles, z)], axis=1)
        rings.append(np.stack([circle[:-1], circle[1:]], axis=1))
    return np.concatenate(rings)


def estimate_ground_z(points: np.ndarray, default: float = -1.8) -> float:
    """Ground height below the sensor: the 5th percentile of z within 30 m (``default`` without points)."""
    if len(points) == 0:
        return default
    near = points[np.hypot(points[:, 0], points[:, 1]) < 30.0, 2]
    near = near[np.isfinite(near)]
    return float(np.percentile(near, 5.0)) if len(near) else default


def build_scene(
    sample: Sample,
    predictions: Annotations | Detections | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    color_by: str = "height",
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | Mapping[int, str] | str | None = None,
    style: Scene3DStyle | None = None,
) -> SceneGeometry:
    """The 3D geometry of a sample: points coloured by ``color_by`` (see
    :func:`pointformer.viz.colors.color_points`), ground-truth boxes in class colours (in
    :data:`GROUND_TRUTH_COLOR` when predictions are drawn too), predicted boxes in class colours
    with their scores, the ego and range rings."""
    style = style or Scene3DStyle()
    predictions, scores = as_predictions(predictions, scores, class_names)
    points = sample.points[:, :3].detach().cpu().double().numpy()
    coloring = color_points(sample, color_by, labels=labels, label_names=label_names)
    ground_z = style.ground_z if style.ground_z is not None else estimate_ground_z(points)

    parts: list[tuple[np.ndarray, np.ndarray]] = []
    legend: list[LegendEntry] = list(coloring.legend)
    texts: list[tuple[np.ndarray, str, str]] = []
    ground_truth = sample.annotations
    gt_uniform = predictions is not None
    parts.append(_colored_boxes(ground_truth, GROUND_TRUTH_COLOR if gt_uniform else None))
    box_names = set() if gt_uniform else set(ground_truth.names)
    if predictions is not None:
        parts.append(_colored_boxes(predictions, None))
        box_names |= set(predictions.names)
        if scores is not None and style.show_scores:
            top = predictions.boxes.corners().detach().cpu().double().numpy()[:, 4] if len(predictions) else []
            texts = [(corner, f"{score:.2f}", class_color(name))
                     for corner, score, name in zip(top, scores, predictions.names)]
    legend += [LegendEntry(name, class_color(name), "line") for name in sorted(box_names)]
    if gt_uniform:
        legend.append(LegendEntry("ground truth", GROUND_TRUTH_COLOR, "line"))
    if style.show_ego:
        ego = Boxes3D(np.array([[0.0, 0.0, ground_z + EGO_SIZE[2] / 2, *EGO_SIZE, 0.0]]))
        parts.append((box_segments(ego), np.tile(hex_to_rgb(EGO_COLOR), (13, 1))))
    rings = ring_segments(style.ring_step, style.ring_max, ground_z)
    parts.append((rings, np.tile(hex_to_rgb(RING_COLOR), (len(rings), 1))))
    segments = np.concatenate([p[0].reshape(-1, 2, 3) for p in parts])
    segment_colors = np.concatenate([p[1].reshape(-1, 3) for p in parts]).astype(np.float32)
    return SceneGeometry(points, coloring.colors, segments, segment_colors, texts, legend)


def _colored_boxes(annotations: Annotations, color: str | None) -> tuple[np.ndarray, np.ndarray]:
    segments = box_segments(annotations.boxes)
    per_box = [hex_to_rgb(color or class_color(name)) for name in annotations.names]
    colors = np.repeat(np.array(per_box, np.float32).reshape(-1, 3), 13, axis=0)
    return segments, colors


# ------------------------------------------------------------------ backends
_PROBE = (
    "import numpy as np, open3d as o3d\n"
    "from open3d.visualization import rendering\n"
    "r = rendering.OffscreenRenderer(16, 16)\n"
    "image = np.asarray(r.render_to_image())\n"
    "print('offscreen-ok', image.shape)\n"
)


@lru_cache(maxsize=1)
def offscreen_available() -> bool:
    """Whether open3d's offscreen renderer works here, tried once in a child process."""
    try:
        import importlib.util

        if importlib.util.find_spec("open3d") is None:
            return False
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=180,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.info("open3d offscreen probe failed: %s", error)
        return False
    works = done.returncode == 0 and "offscreen-ok" in done.stdout
    if not works:
        log.info("open3d offscreen rendering unavailable (exit %s): %s", done.returncode, done.stderr[-500:])
    return works


def resolve_backend(backend: str = "auto") -> str:
    """'open3d' or 'numpy': ``backend``, else the environment's choice, else open3d where it works."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV, "auto")
        if backend not in BACKENDS:
            raise ValueError(f"{BACKEND_ENV} must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "open3d" if offscreen_available() else "numpy"
    return backend


_OFFSCREEN_RENDERERS: dict[tuple[int, int], Any] = {}


def _offscreen_renderer(width: int, height: int):
    """One open3d renderer per image size, kept for the process (creating one costs seconds)."""
    key = (width, height)
    if key not in _OFFSCREEN_RENDERERS:
        from open3d.visualization import rendering

        _OFFSCREEN_RENDERERS[key] = rendering.OffscreenRenderer(width, height)
    return _OFFSCREEN_RENDERERS[key]


def open3d_geometries(geometry: SceneGeometry) -> list[tuple[str, Any]]:
    """(name, open3d geometry) pairs: a PointCloud and a LineSet (omitted where empty)."""
    import open3d as o3d

    out = []
    if len(geometry.points):
        finite = np.isfinite(geometry.points).all(axis=1)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(geometry.points[finite]))
        cloud.colors = o3d.utility.Vector3dVector(geometry.point_colors[finite].astype(np.float64))
        out.append(("points", cloud))
    if len(geometry.segments):
        vertices = geometry.segments.reshape(-1, 3)
        lines = np.arange(len(vertices)).reshape(-1, 2)
        line_set = o3d.geometry.LineSet(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector2iVector(lines))
        line_set.colors = o3d.utility.Vector3dVector(geometry.segment_colors.astype(np.float64))
        out.append(("lines", line_set))
    return out


def render_open3d(geometry: SceneGeometry, camera: Camera, style: Scene3DStyle) -> np.ndarray:
    """(H, W, 3) uint8 render of ``geometry`` through open3d's offscreen renderer."""
    from open3d.visualization import rendering

    renderer = _offscreen_renderer(camera.width, camera.height)
    scene = renderer.scene
    scene.clear_geometry()
    scene.set_background([*hex_to_rgb(style.background), 1.0])
    scene.view.set_post_processing(False)  # no tone mapping: colours come out as given
    for name, item in open3d_geometries(geometry):
        material = rendering.MaterialRecord()
        if name == "points":
            material.shader, material.point_size = "defaultUnlit", float(style.point_size)
        else:
            material.shader, material.line_width = "unlitLine", float(style.line_width)
        scene.add_geometry(name, item, material)
    renderer.setup_camera(camera.fov_deg, np.asarray(camera.target, np.float32), np.asarray(camera.eye, np.float32),
                          np.asarray(camera.up, np.float32))
    image = np.asarray(renderer.render_to_image()).copy()
    scene.clear_geometry()
    return image


def render_numpy(geometry: SceneGeometry, camera: Camera, style: Scene3DStyle) -> np.ndarray:
    """(H, W, 3) uint8 render of ``geometry`` through the numpy rasterizer."""
    return rasterize(camera, geometry.points, geometry.point_colors, geometry.segments, geometry.segment_colors,
                     point_size=style.point_size, line_width=style.line_width,
                     background=hex_to_rgb(style.background))


# ------------------------------------------------------------------ renders
def render_geometry(
    geometry: SceneGeometry, camera: Camera, *, style: Scene3DStyle | None = None, backend: str = "auto",
    title: str | None = None,
) -> Render3D:
    """Draw ``geometry`` with ``camera``, then its legend, title and 3D-anchored texts."""
    style = style or Scene3DStyle()
    chosen = resolve_backend(backend)
    if chosen == "open3d":
        try:
            raw = render_open3d(geometry, camera, style)
        except (RuntimeError, OSError) as error:
            if backend == "open3d":
                raise
            log.warning("open3d offscreen render failed (%s); using the numpy renderer", error)
            chosen, raw = "numpy", render_numpy(geometry, camera, style)
    else:
        raw = render_numpy(geometry, camera, style)
    texts = []
    if geometry.texts:
        anchors = np.stack([position for position, _, _ in geometry.texts])
        uv, _ = camera.project(anchors)
        for (u, v), (_, text, color) in zip(uv, geometry.texts):
            if np.isfinite(u) and 0 <= u < camera.width and 0 <= v < camera.height:
                texts.append((float(u), float(v), text, color))
    image = annotate_image(raw, legend=geometry.legend, title=title, texts=texts)
    return Render3D(image, chosen, geometry.legend)


def render_3d_image(
    sample: Sample,
    predictions: Annotations | Detections | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    camera: Camera | None = None,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    color_by: str = "height",
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | Mapping[int, str] | str | None = None,
    style: Scene3DStyle | None = None,
    backend: str = "auto",
    title: str | None = None,
) -> Render3D:
    """A perspective 3D view of ``sample`` (and predictions) as an image; see :func:`build_scene`.
    ``camera`` defaults to :meth:`Camera.chase` over 50 m; ``title`` to the sample's id and counts."""
    geometry = build_scene(sample, predictions, scores, class_names=class_names, color_by=color_by, labels=labels,
                           label_names=label_names, style=style)
    return render_geometry(geometry, camera or Camera.chase(), style=style, backend=backend,
                           title=title if title is not None else sample_title(sample))


def render_3d(sample: Sample, path: str | os.PathLike, predictions: Annotations | Detections | None = None,
              scores: Sequence[float] | np.ndarray | None = None, **options: Any) -> Path:
    """:func:`render_3d_image` written to a PNG at ``path``; returns the path."""
    return save_image(render_3d_image(sample, predictions, scores, **options).image, path)


def sample_title(sample: Sample) -> str:
    """'<dataset> <sample id>  N points, M boxes'."""
    meta = sample.meta
    return (f"{meta.get('dataset', '')} {meta.get('sample_id', '')}  "
            f"{sample.num_points} points, {len(sample.annotations)} boxes").strip()
