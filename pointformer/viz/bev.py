"""Bird's-eye-view images of a sample: points, boxes with headings, ego, range rings, a legend.

Rendered with matplotlib's Agg backend, so it needs no display.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pointformer.structures import Annotations, Sample

# One colour per nuScenes detection class (and the Waymo/KITTI names that mean the same thing).
CLASS_COLORS: dict[str, str] = {
    "car": "#1f77b4", "Car": "#1f77b4", "Vehicle": "#1f77b4",
    "truck": "#ff7f0e", "Truck": "#ff7f0e",
    "construction_vehicle": "#8c564b",
    "bus": "#d62728",
    "trailer": "#9467bd",
    "barrier": "#7f7f7f",
    "motorcycle": "#e377c2",
    "bicycle": "#bcbd22", "Cyclist": "#bcbd22",
    "pedestrian": "#2ca02c", "Pedestrian": "#2ca02c",
    "traffic_cone": "#17becf",
}
OTHER_COLOR = "#444444"


@dataclass
class BevView:
    """What part of the plane to draw: a square of ``half_extent`` metres around the ego."""

    half_extent: float = 60.0
    ring_step: float = 10.0
    point_size: float = 0.4
    figure_inches: float = 9.0
    dpi: int = 110


def class_color(name: str) -> str:
    return CLASS_COLORS.get(name, OTHER_COLOR)


def render_bev(
    sample: Sample,
    path: str | os.PathLike,
    *,
    predictions: Annotations | None = None,
    scores: Sequence[float] | None = None,
    view: BevView | None = None,
    title: str | None = None,
) -> Path:
    """Draw ``sample`` (points coloured by height, GT boxes solid) and optional predictions
    (dashed, with scores) to a PNG at ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    view = view or BevView()
    fig, ax = plt.subplots(figsize=(view.figure_inches, view.figure_inches), dpi=view.dpi)
    ax.set_facecolor("black")
    _draw_points(ax, sample, view)
    _draw_range_rings(ax, view)
    names_present = _draw_boxes(ax, sample.annotations, linestyle="-")
    if predictions is not None:
        names_present |= _draw_boxes(ax, predictions, linestyle="--", scores=scores)
    _draw_ego(ax)

    ax.set_xlim(-view.half_extent, view.half_extent)
    ax.set_ylim(-view.half_extent, view.half_extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x forward [m]")
    ax.set_ylabel("y left [m]")
    handles = [Line2D([], [], color=class_color(n), lw=2, label=n) for n in sorted(names_present)]
    if predictions is not None:
        handles += [Line2D([], [], color="white", lw=1.5, ls="-", label="ground truth"),
                    Line2D([], [], color="white", lw=1.5, ls="--", label="prediction")]
    if handles:
        legend = ax.legend(handles=handles, loc="upper right", fontsize=8, facecolor="#222222", labelcolor="white")
        legend.get_frame().set_edgecolor("#888888")
    ax.set_title(title or _default_title(sample))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _default_title(sample: Sample) -> str:
    meta = sample.meta
    return (f"{meta.get('dataset', '')} {meta.get('sample_id', '')}  "
            f"{sample.num_points} points, {len(sample.annotations)} boxes")


def _draw_points(ax, sample: Sample, view: BevView) -> None:
    points = sample.points.numpy()
    if len(points) == 0:
        return
    inside = (np.abs(points[:, 0]) <= view.half_extent) & (np.abs(points[:, 1]) <= view.half_extent)
    points = points[inside]
    heights = np.clip(points[:, 2], -3.0, 3.0)
    ax.scatter(points[:, 0], points[:, 1], c=heights, s=view.point_size, cmap="viridis",
               vmin=-3.0, vmax=3.0, linewidths=0, rasterized=True)


def _draw_range_rings(ax, view: BevView) -> None:
    import matplotlib.patches as patches

    for radius in np.arange(view.ring_step, view.half_extent + 1e-6, view.ring_step):
        ax.add_patch(patches.Circle((0, 0), radius, fill=False, color="#555555", lw=0.6, ls=":"))
        ax.text(radius * 0.7071, radius * 0.7071, f"{radius:g} m", color="#777777", fontsize=7)


def _draw_boxes(ax, annotations: Annotations, linestyle: str, scores: Sequence[float] | None = None) -> set[str]:
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
        if scores is not None:
            ax.text(polygon[0, 0], polygon[0, 1], f"{scores[i]:.2f}", color=color, fontsize=6)
    return set(annotations.names)


def _draw_ego(ax) -> None:
    ax.plot([0], [0], marker=(3, 0, -90), markersize=10, color="white")
