"""Segmentation views: points coloured by semantic class, with a legend of the classes present
and their point counts; ground-truth and predicted labels side by side."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pointformer.structures import Sample

from .bev import BevView
from .colors import LegendEntry, categorical_colors, default_label_names, label_name_lookup
from .figures import draw_legend, figure_to_image, pyplot, save_figure
from .scene3d import sample_title


def segmentation_legend(labels: np.ndarray, label_names: Mapping[int, str]) -> list[LegendEntry]:
    """One entry per label present (sorted by id): '<name> (<points>)' in the class colour."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    entries = categorical_colors(labels, label_names).legend
    _, counts = np.unique(labels, return_counts=True)
    return [LegendEntry(f"{entry.label} ({count})", entry.color) for entry, count in zip(entries, counts.tolist())]


def _labels_of(sample: Sample, labels: np.ndarray | None, what: str) -> np.ndarray:
    if labels is None:
        if sample.point_labels is None:
            raise ValueError(f"{what}: the sample has no point labels and none were given")
        return sample.point_labels.detach().cpu().numpy().astype(np.int64)
    labels = np.asarray(labels)
    if labels.shape != (sample.num_points,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be ({sample.num_points},) integers, got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64)


def _draw_panel(ax, xy: np.ndarray, labels: np.ndarray, names: Mapping[int, str], view: BevView, title: str) -> None:
    coloring = categorical_colors(labels, names)
    ax.set_facecolor("black")
    inside = (np.abs(xy[:, 0]) <= view.half_extent) & (np.abs(xy[:, 1]) <= view.half_extent)
    if inside.any():
        ax.scatter(xy[inside, 0], xy[inside, 1], c=coloring.colors[inside], s=view.point_size * 2, linewidths=0,
                   rasterized=True)
    ax.plot([0], [0], marker=(3, 0, -90), markersize=10, color="white")
    ax.set_xlim(-view.half_extent, view.half_extent)
    ax.set_ylim(-view.half_extent, view.half_extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x forward [m]")
    ax.set_ylabel("y left [m]")
    ax.set_title(title)
    draw_legend(ax, segmentation_legend(labels, names), fontsize=7)


def segmentation_figure(
    sample: Sample,
    *,
    labels: np.ndarray | None = None,
    predicted_labels: np.ndarray | None = None,
    label_names: Sequence[str] | Mapping[int, str] | str | None = None,
    view: BevView | None = None,
    title: str | None = None,
):
    """BEV figure of points coloured by class: ``labels`` (default ``sample.point_labels``)
    and, when given, ``predicted_labels`` in a second panel. ``label_names``: names of the ids
    (list, mapping, or a key of ``LABEL_SETS``; default the dataset's)."""
    plt = pyplot()
    view = view or BevView()
    truth = _labels_of(sample, labels, "labels")
    names = label_name_lookup(label_names if label_names is not None else default_label_names(sample))
    xy = sample.points[:, :2].detach().cpu().numpy()
    panels = [(truth, f"labels: {len(np.unique(truth))} classes")]
    if predicted_labels is not None:
        predicted = _labels_of(sample, predicted_labels, "predicted_labels")
        agree = float((predicted == truth).mean()) if len(truth) else float("nan")
        panels.append((predicted, f"predicted: {agree:.1%} of points agree"))
    fig, axes = plt.subplots(1, len(panels), figsize=(view.figure_inches * len(panels), view.figure_inches),
                             dpi=view.dpi, squeeze=False)
    for ax, (values, panel_title) in zip(axes[0], panels):
        _draw_panel(ax, xy, values, names, view, panel_title)
    fig.suptitle(title or sample_title(sample))
    fig.tight_layout()
    return fig


def render_segmentation(sample: Sample, path: str | os.PathLike, **options) -> Path:
    """:func:`segmentation_figure` to a PNG at ``path``; returns the path."""
    return save_figure(segmentation_figure(sample, **options), path)


def segmentation_image(sample: Sample, **options) -> np.ndarray:
    """:func:`segmentation_figure` as an (H, W, 3) uint8 array."""
    plt = pyplot()
    fig = segmentation_figure(sample, **options)
    image = figure_to_image(fig)
    plt.close(fig)
    return image
