"""Files the tools write from predictions: metrics and results JSON, boxes JSON, BEV pictures."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointformer.structures import Detections, Sample


def write_json(path: str | Path, document: Any) -> Path:
    """``document`` as indented JSON (NaN written as ``NaN``, as the nuScenes devkit writes it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path


def detections_document(detections: Detections, class_names: Sequence[str], **extra: Any) -> dict[str, Any]:
    """``{**extra, "box_columns", "detections": [{"box", "label", "score"}, ...]}`` (boxes in the
    sample's frame: x, y, z, l, w, h, yaw[, vx, vy])."""
    width = detections.boxes.tensor.shape[1]
    rows = zip(detections.boxes.tensor.tolist(), detections.scores.tolist(), detections.labels.tolist())
    return {
        **extra,
        "box_columns": ["x", "y", "z", "l", "w", "h", "yaw", "vx", "vy"][:width],
        "detections": [{"box": [float(v) for v in box], "label": class_names[int(label)], "score": float(score)}
                       for box, score, label in rows],
    }


def drawable(detections: Detections, point_cloud_range: Sequence[float]) -> Detections:
    """The detections a BEV picture of ``point_cloud_range`` shows (and lists in its legend):
    finite, centre inside the range, length and width within its extent (an untrained model
    predicts sizes of ~1e9 m)."""
    boxes = detections.boxes.tensor
    x0, y0, _, x1, y1, _ = (float(v) for v in point_cloud_range)
    extent = max(x1 - x0, y1 - y0)
    keep = torch.isfinite(boxes[:, :7]).all(dim=1)
    keep &= (boxes[:, 0] >= x0) & (boxes[:, 0] <= x1) & (boxes[:, 1] >= y0) & (boxes[:, 1] <= y1)
    keep &= (boxes[:, 3] <= extent) & (boxes[:, 4] <= extent)
    return detections.select(torch.nonzero(keep).reshape(-1))


def render_detections(sample: Sample, detections: Detections, path: str | Path, class_names: Sequence[str],
                      point_cloud_range: Sequence[float], with_truth: bool) -> Path:
    """BEV PNG: ground truth beside the predictions (``with_truth``) or the predictions over the
    points; boxes outside ``point_cloud_range`` are left out of the picture."""
    from pointformer.viz import BevView, render_bev, render_bev_comparison

    shown = drawable(detections, point_cloud_range)
    x0, y0, _, x1, y1, _ = (float(v) for v in point_cloud_range)
    view = BevView(half_extent=max(abs(x0), abs(x1), abs(y0), abs(y1)))
    if with_truth:
        return render_bev_comparison(sample, shown, path, class_names=class_names, view=view)
    return render_bev(sample, path, predictions=shown, class_names=class_names, view=view)


def render_labels(sample: Sample, path: str | Path, predicted: np.ndarray, class_names: Sequence[str],
                  truth: np.ndarray | None = None, ignore_index: int = -1) -> Path:
    """BEV PNG of the points coloured by class: ``truth`` (when given) beside ``predicted``."""
    from pointformer.viz import render_segmentation

    names: Mapping[int, str] = {**dict(enumerate(class_names)), ignore_index: "unlabelled"}
    if truth is None:
        return render_segmentation(sample, path, labels=predicted, label_names=names)
    return render_segmentation(sample, path, labels=truth, predicted_labels=predicted, label_names=names)
