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


def write_test_outputs(config, module, datamodule, out: Path) -> list[Path]:
    """After ``runner.evaluate``: the metrics JSON (+ details) and, for detection, the results
    file of the benchmark (nuScenes submission or Waymo-style predictions) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    evaluation = module.test_evaluation
    if evaluation is not None:
        written.append(write_json(out / "metrics_summary.json", evaluation.summary))
        if evaluation.details is not None:
            written.append(write_json(out / "metrics_details.json", evaluation.details))
    predictions = getattr(module, "test_predictions", None)
    if config.task != "detection" or not predictions:
        return written
    infos = [info for info in datamodule.datasets["test"].infos if info.sample_id in predictions]
    if config.eval.benchmark == "nuscenes" or infos and infos[0].dataset == "nuscenes":
        from pointformer.evaluation.nuscenes_results import write_results

        written.append(write_results(out / "results_nusc.json", predictions, infos, config.dataset.class_names))
    elif config.eval.benchmark == "waymo":
        from pointformer.evaluation.waymo import WaymoPredictions, write_waymo_results

        frames = {sample: WaymoPredictions.from_detections(found, config.dataset.class_names)
                  for sample, found in predictions.items()}
        write_waymo_results(out / "results_waymo.json", frames)
        written.append(out / "results_waymo.json")
    return written


def render_test_samples(config, module, datamodule, out: Path, count: int) -> list[Path]:
    """After ``runner.evaluate``: ``bev_<i>.png`` of the first ``count`` test samples, ground truth
    beside the predictions (detection) or labels beside predicted labels (segmentation)."""
    from pointformer.data.dataset import collate

    dataset = datamodule.datasets["test"]
    model = module.model.eval()
    predictions = getattr(module, "test_predictions", None) or {}
    written = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        batch = collate([sample], ignore_index=config.dataset.ignore_index)
        path = out / f"bev_{index:02d}.png"
        with torch.no_grad():
            if config.task == "detection":
                detections = predictions.get(sample.meta["sample_id"])
                if detections is None:
                    detections = module.predict_batch(batch, model(batch))[0]
                written.append(render_detections(sample, detections, path, config.dataset.class_names,
                                                 config.dataset.point_cloud_range, with_truth=True))
            else:
                truth = None if batch.point_labels is None else batch.point_labels.cpu().numpy()
                written.append(render_labels(sample, path, model.predict(batch).cpu().numpy(),
                                             config.dataset.class_names, truth, config.dataset.ignore_index))
    return written
