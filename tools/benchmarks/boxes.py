"""Box ops: rotated BEV IoU against shapely, NMS against a greedy shapely loop and our torch path,
points-in-boxes against ``Boxes3D.points_in_boxes`` on real scans."""

from __future__ import annotations

import math

import numpy as np
import torch

from .common import Row, inputs, median_seconds


# ------------------------------------------------------------------ inputs
def random_boxes(count: int, spread: float, seed: int) -> torch.Tensor:
    """(count, 7) float32 boxes of 0.5-5 m, any heading, centres uniform in +-spread metres."""
    generator = np.random.default_rng(seed)
    boxes = np.empty((count, 7))
    boxes[:, :2] = generator.uniform(-spread, spread, (count, 2))
    boxes[:, 2] = generator.uniform(-1, 1, count)
    boxes[:, 3:6] = generator.uniform(0.5, 5.0, (count, 3))
    boxes[:, 6] = generator.uniform(-math.pi, math.pi, count)
    return torch.from_numpy(boxes).float()


def detections(objects: int, proposals: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detector-like output in a 100 m square: ``proposals`` jittered boxes around each of
    ``objects`` car/pedestrian/cyclist-sized objects. Returns boxes (N, 7), scores (N,), labels (N,)."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 3, objects)
    sizes = np.array([[4.5, 1.9, 1.6], [0.7, 0.7, 1.7], [1.8, 0.6, 1.7]])[labels]
    centres = generator.uniform(-50, 50, (objects, 2))
    yaws = generator.uniform(-math.pi, math.pi, objects)
    count = objects * proposals
    boxes = np.empty((count, 7))
    boxes[:, :2] = np.repeat(centres, proposals, 0) + generator.normal(0, 0.3, (count, 2))
    boxes[:, 2] = generator.normal(0, 0.1, count)
    boxes[:, 3:6] = np.repeat(sizes, proposals, 0) * generator.uniform(0.85, 1.15, (count, 3))
    boxes[:, 6] = np.repeat(yaws, proposals) + generator.normal(0, 0.15, count)
    scores = generator.uniform(0, 1, count)
    return torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), torch.from_numpy(np.repeat(labels, proposals))


def boxes_on_scan(points: np.ndarray, count: int, seed: int) -> torch.Tensor:
    """(count, 7) car-to-truck-sized boxes centred on random points of a scan."""
    generator = np.random.default_rng(seed)
    centres = points[generator.choice(len(points), count, replace=False), :3].astype(np.float64)
    sizes = generator.uniform([3.5, 1.6, 1.4], [8.0, 2.6, 3.0], (count, 3))
    yaws = generator.uniform(-math.pi, math.pi, (count, 1))
    return torch.from_numpy(np.concatenate([centres, sizes, yaws], axis=1)).float()


# ------------------------------------------------------------------ baselines
def shapely_polygons(boxes: torch.Tensor) -> list:
    from shapely.geometry import Polygon

    from pointformer.structures import Boxes3D

    return [Polygon(corners) for corners in Boxes3D(boxes.double()).bev_corners().numpy()]


def shapely_iou_loop(first: list, second: list) -> np.ndarray:
    """The plain baseline: one ``Polygon.intersection`` per pair."""
    out = np.zeros((len(first), len(second)))
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            inter = a.intersection(b).area
            out[i, j] = inter / (a.area + b.area - inter)
    return out


def shapely_iou_vectorised(first: list, second: list) -> np.ndarray:
    """shapely 2's array API over all pairs (GEOS per pair, no Python loop)."""
    import shapely

    a, b = np.array(first, dtype=object)[:, None], np.array(second, dtype=object)[None, :]
    inter = shapely.area(shapely.intersection(a, b))
    return inter / (shapely.area(a) + shapely.area(b) - inter)


def shapely_iou_3d_aligned(first: torch.Tensor, second: torch.Tensor, polygons_first: list, polygons_second: list) -> np.ndarray:
    """3D IoU of row i with row i: shapely BEV intersection times the z overlap."""
    z_first, z_second = first[:, [2, 5]].double().tolist(), second[:, [2, 5]].double().tolist()
    out = np.zeros(len(polygons_first))
    for i, (a, b) in enumerate(zip(polygons_first, polygons_second)):
        (za, ha), (zb, hb) = z_first[i], z_second[i]
        overlap = max(0.0, min(za + ha / 2, zb + hb / 2) - max(za - ha / 2, zb - hb / 2))
        inter = a.intersection(b).area * overlap
        out[i] = inter / (a.area * ha + b.area * hb - inter)
    return out


def shapely_greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """Greedy NMS with shapely IoU, only for pairs whose axis-aligned bounds overlap."""
    polygons = shapely_polygons(boxes)
    bounds = np.array([p.bounds for p in polygons])
    order = sorted(range(len(polygons)), key=lambda i: (-float(scores[i]), i))
    removed = np.zeros(len(polygons), bool)
    keep = []
    for position, i in enumerate(order):
        if removed[i]:
            continue
        keep.append(i)
        later = np.array(order[position + 1 :], dtype=np.int64)
        later = later[~removed[later]]
        b = bounds[later]
        near = later[(b[:, 0] <= bounds[i, 2]) & (b[:, 2] >= bounds[i, 0]) & (b[:, 1] <= bounds[i, 3]) & (b[:, 3] >= bounds[i, 1])]
        for j in near:
            inter = polygons[i].intersection(polygons[j]).area
            if inter / (polygons[i].area + polygons[j].area - inter) > threshold:
                removed[j] = True
    return keep


def twin_points_in_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    from pointformer.structures import Boxes3D

    mask = Boxes3D(boxes).points_in_boxes(points)
    return torch.where(mask.any(dim=1), mask.to(torch.int8).argmax(dim=1), -1)


# ------------------------------------------------------------------ rows
def iou_rows(repeats: int) -> list[Row]:
    from pointformer.ops import box_iou, rotated_iou

    rows = []
    first, second = random_boxes(500, 5.0, 0), random_boxes(500, 5.0, 1)
    polygons_first, polygons_second = shapely_polygons(first), shapely_polygons(second)
    ours = median_seconds(lambda: box_iou(first, second), repeats)
    overlapping = float((box_iou(first, second) > 0).float().mean())
    label = random_label = f"500 x 500 random boxes in a 10 m square ({overlapping:.0%} of pairs overlap)"
    rows.append(Row("BEV IoU pairwise", label, ours, "shapely Polygon.intersection loop",
                    median_seconds(lambda: shapely_iou_loop(polygons_first, polygons_second), 1, warmup=0)))
    rows.append(Row("BEV IoU pairwise", label, ours, "shapely 2 vectorised intersection",
                    median_seconds(lambda: shapely_iou_vectorised(polygons_first, polygons_second), 1, warmup=0)))
    tables = rotated_iou.box_table(first.double()), rotated_iou.box_table(second.double())
    rows.append(Row("BEV IoU pairwise, torch path on CPU", label,
                    median_seconds(lambda: rotated_iou._box_iou_torch(*tables, "bev", False), repeats), "numba path", ours))

    predictions, _, _ = detections(200, 5, 2)
    truth, _, _ = detections(200, 1, 2)
    polygons_predictions, polygons_truth = shapely_polygons(predictions), shapely_polygons(truth)
    label = "1000 detections x 200 ground truth boxes in 100 m"
    rows.append(Row("BEV IoU pairwise", label, median_seconds(lambda: box_iou(predictions, truth), repeats),
                    "shapely Polygon.intersection loop",
                    median_seconds(lambda: shapely_iou_loop(polygons_predictions, polygons_truth), 1, warmup=0)))
    matched = truth.repeat_interleave(5, 0)
    polygons_matched = shapely_polygons(matched)
    rows.append(Row("3D IoU aligned", "1000 detections x their ground truth box",
                    median_seconds(lambda: box_iou(predictions, matched, "3d", aligned=True), repeats),
                    "shapely Polygon.intersection loop x z overlap",
                    median_seconds(lambda: shapely_iou_3d_aligned(predictions, matched, polygons_predictions, polygons_matched),
                                   repeats)))
    if torch.cuda.is_available():
        cuda_first, cuda_second = first.cuda(), second.cuda()
        rows.append(Row("BEV IoU pairwise, CUDA", random_label,
                        median_seconds(lambda: box_iou(cuda_first, cuda_second), repeats, sync=torch.cuda.synchronize),
                        "numba path", ours))
    return rows


def nms_rows(repeats: int) -> list[Row]:
    from pointformer.ops import nms

    rows = []
    for objects in (250, 1000):
        boxes, scores, labels = detections(objects, 4, 3)
        label = f"{len(boxes)} detections around {objects} objects"
        ours = median_seconds(lambda: nms.nms_rotated(boxes, scores, 0.2), repeats)
        kept = len(nms.nms_rotated(boxes, scores, 0.2))
        rows.append(Row(f"rotated NMS (IoU > 0.2, {kept} kept)", label, ours, "greedy loop, shapely IoU (AABB pre-filter)",
                        median_seconds(lambda: shapely_greedy_nms(boxes, scores, 0.2), 1, warmup=0)))
        rows.append(Row("rotated NMS, torch path on CPU", label,
                        median_seconds(lambda: torch_nms_rotated(boxes, scores, 0.2), repeats), "numba path", ours))
        ours = median_seconds(lambda: nms.nms_circle(boxes, scores, 1.0, labels=labels), repeats)
        rows.append(Row("circle NMS (d^2 < 1 m^2, per class)", label, ours, "torch path on CPU",
                        median_seconds(lambda: torch_nms_circle(boxes, scores, 1.0, labels), repeats)))
        if torch.cuda.is_available():
            cuda_boxes, cuda_scores = boxes.cuda(), scores.cuda()
            rows.append(Row("rotated NMS, CUDA", label,
                            median_seconds(lambda: nms.nms_rotated(cuda_boxes, cuda_scores, 0.2), repeats, sync=torch.cuda.synchronize),
                            "numba path", median_seconds(lambda: nms.nms_rotated(boxes, scores, 0.2), repeats)))
    return rows


def points_in_boxes_rows(repeats: int) -> list[Row]:
    from pointformer.ops import box_points

    rows = []
    for name, cloud in inputs().items():
        points = torch.from_numpy(cloud)
        boxes = boxes_on_scan(cloud, 50, 4)
        inside = int((box_points.points_in_boxes(points, boxes) >= 0).sum())
        label = f"{name}: {len(points)} points, 50 boxes holding {inside}"
        ours = median_seconds(lambda: box_points.points_in_boxes(points, boxes), repeats)
        rows.append(Row("points in boxes", label, ours, "Boxes3D.points_in_boxes + first index",
                        median_seconds(lambda: twin_points_in_boxes(points, boxes), repeats)))
        rows.append(Row("points in boxes, torch path on CPU", label,
                        median_seconds(lambda: torch_points_in_boxes(points, boxes), repeats), "numba path", ours))
        if torch.cuda.is_available():
            cuda_points, cuda_boxes = points.cuda(), boxes.cuda()
            rows.append(Row("points in boxes, CUDA", label,
                            median_seconds(lambda: box_points.points_in_boxes(cuda_points, cuda_boxes), repeats,
                                           sync=torch.cuda.synchronize), "numba path", ours))
    return rows


def torch_nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """nms_rotated through its torch path, on the boxes' device."""
    from pointformer.ops import nms, rotated_iou

    order, labels = nms._ranked(boxes, scores, None, None, None)
    return order[nms._nms_rotated_torch(rotated_iou.box_table(boxes[order]), labels, threshold, len(order))]


def torch_nms_circle(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, labels: torch.Tensor) -> torch.Tensor:
    """nms_circle through its torch path, on the boxes' device."""
    from pointformer.ops import nms

    order, ranked_labels = nms._ranked(boxes, scores, labels, None, None)
    centres = boxes[order][:, :2].to(torch.float64).contiguous()
    return order[nms._nms_circle_torch(centres, ranked_labels, threshold, len(order))]


def torch_points_in_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """points_in_boxes through its torch path, on the points' device."""
    from pointformer.ops import box_points, rotated_iou

    return box_points._points_in_boxes_torch(points[:, :3].to(torch.float64).contiguous(), rotated_iou.box_table(boxes))


def rows(repeats: int = 7) -> list[Row]:
    """IoU, NMS and points-in-boxes rows (shapely loops run once: they take seconds)."""
    return iou_rows(repeats) + nms_rows(repeats) + points_in_boxes_rows(repeats)
