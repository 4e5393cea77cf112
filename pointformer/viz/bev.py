"""Bird's-eye-view images of a sample: points, boxes with headings and scores, ego, range rings,
a legend of the classes present; ground truth and predictions overlaid or side by side.

Rendered with matplotlib's Agg backend, so it needs no display.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.structures import Annotations, Detections, Sample

from .colors import CLASS_COLORS, OTHER_COLOR, LegendEntry, PointColors, class_color, color_points
from .figures import draw_legend, figure_to_image, pyplot, save_figure
from .frames import as_predictions
from .scene3d import sample_title

__all__ = [
    "CLASS_COLORS", "OTHER_COLOR", "BevView", "PointStyle", "bev_figure", "bev_image", "class_color", "draw_bev_panel",
    "render_bev", "render_bev_comparison",
]


@dataclass
class BevView:
    """What part of the plane to draw: a square of ``half_extent`` metres around the ego."""

    half_extent: float = 60.0
    ring_step: float = 10.0
    point_size: float = 0.4
    figure_inches: float = 9.0
    dpi: int = 110

    def __post_init__(self) -> None:
        if not (self.half_extent > 0 and np.isfinite(self.half_extent)):
            raise ValueError(f"BevView.half_extent must be a positive number of metres, got {self.half_extent}")


@dataclass
class PointStyle:
    """How points are coloured: ``color_by`` one of ``height``, ``intensity``, ``time_lag``,
    ``semantic``, ``instance``; ``labels``/``label_names`` for semantic colours."""

    color_by: str = "height"
    labels: np.ndarray | None = None
    label_names: Sequence[str] | Mapping[int, str] | str | None = None


def draw_bev_panel(
    ax,
    sample: Sample,
    view: BevView,
    *,
    ground_truth: Annotations | None,
    predictions: Annotations | None = None,
    scores: np.ndarray | None = None,
    points: PointStyle | None = None,
    prediction_linestyle: str = "--",
) -> list[LegendEntry]:
    """Draw one BEV panel on ``ax``: points, rings, ground truth (solid), predictions (dashed,
    with scores), ego. Returns the legend entries of what it drew (classes present, sorted)."""
    ax.set_facecolor("black")
    coloring = _draw_points(ax, sample, view, points or PointStyle())
    _draw_range_rings(ax, view)
    names = set()
    if ground_truth is not None:
        names |= _draw_boxes(ax, ground_truth, view, linestyle="-")
    if predictions is not None:
        names |= _draw_boxes(ax, predictions, view, linestyle=prediction_linestyle, scores=scores)
    _draw_ego(ax)
    ax.set_xlim(-view.half_extent, view.half_extent)
    ax.set_ylim(-view.half_extent, view.half_extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x forward [m]")
    ax.set_ylabel("y left [m]")
    entries = list(coloring.legend) + [LegendEntry(name, class_color(name), "line") for name in sorted(names)]
    if ground_truth is not None and predictions is not None and prediction_linestyle != "-":
        entries += [LegendEntry("ground truth", "#ffffff", "line"), LegendEntry("prediction", "#ffffff", "dashed")]
    return entries


def bev_figure(
    sample: Sample,
    predictions: Annotations | Detections | None = None,
    scores: Sequence[float] | None = None,
    *,
    view: BevView | None = None,
    title: str | None = None,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    points: PointStyle | None = None,
    side_by_side: bool = False,
):
    """The matplotlib figure of a BEV: one panel with predictions over the ground truth, or
    (``side_by_side``) ground truth left and predictions right over the same points."""
    plt = pyplot()
    view = view or BevView()
    predictions, scores = as_predictions(predictions, scores, class_names)
    title = title or _default_title(sample, points)
    if side_by_side:
        if predictions is None:
            raise ValueError("side_by_side needs predictions")
        fig, (left, right) = plt.subplots(1, 2, figsize=(2 * view.figure_inches, view.figure_inches), dpi=view.dpi)
        draw_legend(left, draw_bev_panel(left, sample, view, ground_truth=sample.annotations, points=points))
        left.set_title(f"ground truth: {len(sample.annotations)} boxes")
        draw_legend(right, draw_bev_panel(right, sample, view, ground_truth=None, predictions=predictions,
                                          scores=scores, points=points, prediction_linestyle="-"))
        right.set_title(f"predictions: {len(predictions)} boxes" + _score_note(scores))
        fig.suptitle(title)
    else:
        fig, ax = plt.subplots(figsize=(view.figure_inches, view.figure_inches), dpi=view.dpi)
        draw_legend(ax, draw_bev_panel(ax, sample, view, ground_truth=sample.annotations, predictions=predictions,
                                       scores=scores, points=points))
        ax.set_title(title)
    fig.tight_layout()
    return fig


def render_bev(
    sample: Sample,
    path: str | os.PathLike,
    *,
    predictions: Annotations | Detections | None = None,
    scores: Sequence[float] | None = None,
    view: BevView | None = None,
    title: str | None = None,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    points: PointStyle | None = None,
) -> Path:
    """Draw ``sample`` (points coloured by height unless ``points`` says otherwise, GT boxes
    solid) and optional predictions (dashed, with scores) to a PNG at ``path``; returns the path.
    ``predictions``: ``Annotations`` (with ``scores``) or ``Detections`` (labels indexing ``class_names``)."""
    fig = bev_figure(sample, predictions, scores, view=view, title=title, class_names=class_names, points=points)
    return save_figure(fig, path)


def render_bev_comparison(
    sample: Sample,
    predictions: Annotations | Detections,
    path: str | os.PathLike,
    *,
    scores: Sequence[float] | None = None,
    view: BevView | None = None,
    title: str | None = None,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
    points: PointStyle | None = None,
) -> Path:
    """Ground truth (left) and predictions with scores (right) side by side, to a PNG at ``path``."""
    fig = bev_figure(sample, predictions, scores, view=view, title=title, class_names=class_names, points=points,
                     side_by_side=True)
    return save_figure(fig, path)


def bev_image(sample: Sample, predictions: Annotations | Detections | None = None,
              scores: Sequence[float] | None = None, **options) -> np.ndarray:
    """:func:`bev_figure` as an (H, W, 3) uint8 array (same size for every sample of one view)."""
    plt = pyplot()
    fig = bev_figure(sample, predictions, scores, **options)
    image = figure_to_image(fig)
    plt.close(fig)
    return image


def _score_note(scores: np.ndarray | None) -> str:
    if scores is None or len(scores) == 0:
        return ""
    return f", scores {scores.min():.2f}..{scores.max():.2f}"


def _default_title(sample: Sample, points: PointStyle | None) -> str:
    mode = (points or PointStyle()).color_by
    return sample_title(sample) + ("" if mode == "height" else f"  (points by {mode})")


def _draw_points(ax, sample: Sample, view: BevView, style: PointStyle) -> PointColors:
    coloring = color_points(sample, style.color_by, labels=style.labels, label_names=style.label_names)
    points = sample.points.detach().cpu().numpy()
    if len(points) == 0:
        return coloring
    inside = (np.abs(points[:, 0]) <= view.half_extent) & (np.abs(points[:, 1]) <= view.half_extent)
    ax.scatter(points[inside, 0], points[inside, 1], c=coloring.colors[inside], s=view.point_size, linewidths=0,
               rasterized=True)
    return coloring


def _draw_range_rings(ax, view: BevView) -> None:
    from matplotlib import patches

    for radius in np.arange(view.ring_step, view.half_extent + 1e-6, view.ring_step):
        ax.add_patch(patches.Circle((0, 0), radius, fill=False, color="#555555", lw=0.6, ls=":"))
        ax.text(radius * 0.7071, radius * 0.7071, f"{radius:g} m", color="#777777", fontsize=7)


def _draw_boxes(ax, annotations: Annotations, view: BevView, linestyle: str,
                scores: np.ndarray | None = None) -> set[str]:
    """Outlines and heading lines (clipped by the axes); scores only where their corner lies in
    the view: matplotlib still rasterises clipped text, and fails on anchors far out (an
    untrained model's boxes reach 1e9 m)."""
    if len(annotations) == 0:
        return set()
    corners = annotations.boxes.bev_corners().detach().cpu().numpy()
    centers = annotations.boxes.center.detach().cpu().numpy()
    for i, (polygon, name) in enumerate(zip(corners, annotations.names)):
        color = class_color(name)
        closed = np.vstack([polygon, polygon[:1]])
        ax.plot(closed[:, 0], closed[:, 1], color=color, lw=1.2, ls=linestyle)
        front = (polygon[0] + polygon[3]) / 2  # midpoint of the front edge
        ax.plot([centers[i, 0], front[0]], [centers[i, 1], front[1]], color=color, lw=1.2, ls=linestyle)
        if scores is not None and bool(np.all(np.abs(polygon[0]) <= view.half_extent)):
            ax.text(polygon[0, 0], polygon[0, 1], f"{scores[i]:.2f}", color=color, fontsize=6, clip_on=True)
    return set(annotations.names)


def _draw_ego(ax) -> None:
    ax.plot([0], [0], marker=(3, 0, -90), markersize=10, color="white")
