"""nms_rotated against a greedy Python loop over shapely IoU, nms_circle against a greedy loop
over squared distances; the torch path against the numba path (same indices) on every input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

import pointformer.ops.nms as nms_module
from pointformer.ops import nms_circle, nms_rotated
from pointformer.structures import Boxes3D


# ------------------------------------------------------------------ twins
def _footprints(boxes: torch.Tensor) -> list[Polygon]:
    return [Polygon(corners) for corners in Boxes3D(boxes.double()).bev_corners().numpy()]


def _shapely_iou(a: Polygon, b: Polygon) -> float:
    if a.bounds[0] > b.bounds[2] or b.bounds[0] > a.bounds[2] or a.bounds[1] > b.bounds[3] or b.bounds[1] > a.bounds[3]:
        return 0.0
    inter = a.intersection(b).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def _greedy(count, scores, suppresses, labels=None, score_threshold=None, pre_max_size=None, post_max_size=None) -> list[int]:
    """Textbook greedy NMS over ``suppresses(kept, other) -> bool``."""
    ranked = sorted(range(count), key=lambda i: (-float(scores[i]), i))
    if score_threshold is not None:
        ranked = [i for i in ranked if float(scores[i]) >= score_threshold]
    ranked = ranked[:pre_max_size]
    keep: list[int] = []
    removed: set[int] = set()
    for position, i in enumerate(ranked):
        if i in removed:
            continue
        keep.append(i)
        for j in ranked[position + 1 :]:
            same_class = labels is None or int(labels[i]) == int(labels[j])
            if j not in removed and same_class and suppresses(i, j):
                removed.add(j)
    return keep[:post_max_size]


def _greedy_rotated(boxes, scores, threshold, **options) -> list[int]:
    polygons = _footprints(boxes)
    return _greedy(len(boxes), scores, lambda i, j: _shapely_iou(polygons[i], polygons[j]) > threshold, **options)


def _greedy_circle(boxes, scores, threshold, **options) -> list[int]:
    xy = boxes[:, :2].double().tolist()

    def close(i: int, j: int) -> bool:
        return (xy[i][0] - xy[j][0]) ** 2 + (xy[i][1] - xy[j][1]) ** 2 < threshold

    return _greedy(len(boxes), scores, close, **options)


def _both_paths(monkeypatch, function, *args, **kwargs) -> torch.Tensor:
    """The public result (numba path on CPU), after checking the torch path keeps the same boxes
    both in one block and in many small blocks."""
    ours = function(*args, **kwargs)
    assert ours.dtype == torch.int64
    name = "_nms_rotated_numba" if function is nms_rotated else "_nms_circle_numba"
    for block in (nms_module.BLOCK, 3):
        with monkeypatch.context() as patch:
            patch.setattr(nms_module, name, getattr(nms_module, name.replace("numba", "torch")))
            patch.setattr(nms_module, "BLOCK", block)
            assert torch.equal(function(*args, **kwargs), ours)
    return ours


def _detections(seed: int, objects: int = 25, proposals: int = 6):
    """Clustered proposals like a detector's: jittered copies around random objects, scores
    rounded so that ties happen, three classes."""
    generator = np.random.default_rng(seed)
    centres = generator.uniform(-30, 30, (objects, 2))
    sizes = generator.uniform(0.5, 5, (objects, 3))
    yaws = generator.uniform(-math.pi, math.pi, objects)
    rows = []
    for k in range(objects):
        for _ in range(proposals):
            xy = centres[k] + generator.normal(0, 0.4, 2)
            lwh = sizes[k] * generator.uniform(0.8, 1.2, 3)
            rows.append([*xy, generator.normal(), *lwh, yaws[k] + generator.normal(0, 0.2)])
    boxes = torch.tensor(rows, dtype=torch.float64)
    scores = torch.from_numpy(generator.uniform(0, 1, len(rows)).round(1))
    labels = torch.from_numpy(generator.integers(0, 3, len(rows)))
    return boxes, scores, labels


# ----------------------------------------------------------------- rotated
@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("threshold", [0.1, 0.5])
def test_rotated_matches_greedy_shapely(monkeypatch, seed, threshold):
    boxes, scores, _ = _detections(seed)
    ours = _both_paths(monkeypatch, nms_rotated, boxes, scores, threshold)
    expected = _greedy_rotated(boxes, scores, threshold)
    assert ours.tolist() == expected
    assert 25 <= len(expected) < len(boxes)  # suppression really happened


@pytest.mark.parametrize(
    "options",
    [
        {"labels": True},
        {"score_threshold": 0.35},
        {"pre_max_size": 40},
        {"post_max_size": 17},
        {"labels": True, "score_threshold": 0.2, "pre_max_size": 100, "post_max_size": 30},
        {"pre_max_size": 0},
        {"post_max_size": 0},
        {"score_threshold": 2.0},
    ],
)
def test_rotated_options_match_greedy_shapely(monkeypatch, options):
    boxes, scores, labels = _detections(2)
    options = {**options, "labels": labels} if options.get("labels") else options
    ours = _both_paths(monkeypatch, nms_rotated, Boxes3D(boxes.float()), scores.float(), 0.3, **options)
    assert ours.tolist() == _greedy_rotated(boxes.float(), scores.float(), 0.3, **options)


def test_rotated_threshold_is_strict(monkeypatch):
    boxes = torch.tensor([[0, 0, 0, 2, 1, 1, 0], [1, 0, 0, 2, 1, 1, 0]], dtype=torch.float64)  # IoU exactly 1/3
    scores = torch.tensor([0.5, 0.9])
    assert _both_paths(monkeypatch, nms_rotated, boxes, scores, 1 / 3).tolist() == [1, 0]
    assert _both_paths(monkeypatch, nms_rotated, boxes, scores, 1 / 3 - 1e-12).tolist() == [1]


def test_rotated_ties_and_duplicates(monkeypatch):
    boxes = torch.tensor([[5, 5, 0, 4, 2, 1.5, 0.3]] * 6 + [[50, 5, 0, 4, 2, 1.5, 0.3]] * 3, dtype=torch.float64)
    scores = torch.tensor([0.5, 0.7, 0.7, 0.2, 0.7, 0.7, 0.1, 0.1, 0.1])
    assert _both_paths(monkeypatch, nms_rotated, boxes, scores, 0.5).tolist() == [1, 6]
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 2])
    assert _both_paths(monkeypatch, nms_rotated, boxes, scores, 0.5, labels=labels).tolist() == [1, 2, 6]


def test_rotated_touching_and_degenerate_boxes_are_kept(monkeypatch):
    boxes = torch.tensor(
        [[0, 0, 0, 2, 1, 1, 0], [2, 0, 0, 2, 1, 1, 0], [0, 1, 0, 2, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 2, 0, 1, 0]],
        dtype=torch.float64,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    assert _both_paths(monkeypatch, nms_rotated, boxes, scores, 0.0).tolist() == [0, 1, 2, 3, 4]


def test_rotated_huge_coordinates(monkeypatch):
    boxes, scores, _ = _detections(3)
    near = nms_rotated(boxes, scores, 0.2)
    shifted = boxes.clone()
    shifted[:, :2] += torch.tensor([4.0e6, -2.5e6], dtype=torch.float64)
    assert _both_paths(monkeypatch, nms_rotated, shifted, scores, 0.2).tolist() == near.tolist()


def test_empty_and_single(monkeypatch):
    none, one = torch.zeros((0, 7)), torch.tensor([[1.0, 2, 0, 1, 1, 1, 0]])
    for function in (nms_rotated, nms_circle):
        assert _both_paths(monkeypatch, function, none, torch.zeros(0), 0.5).shape == (0,)
        assert _both_paths(monkeypatch, function, one, torch.tensor([0.3]), 0.5).tolist() == [0]
        assert _both_paths(monkeypatch, function, one, torch.tensor([0.3]), 0.5, score_threshold=0.4).tolist() == []


# ------------------------------------------------------------------ circle
@pytest.mark.parametrize("options", [{}, {"labels": True}, {"score_threshold": 0.3, "pre_max_size": 60, "post_max_size": 20}])
def test_circle_matches_greedy_loop(monkeypatch, options):
    boxes, scores, labels = _detections(4)
    options = {**options, "labels": labels} if options.get("labels") else options
    ours = _both_paths(monkeypatch, nms_circle, boxes, scores, 0.64, **options)
    expected = _greedy_circle(boxes, scores, 0.64, **options)
    assert ours.tolist() == expected and len(expected) < len(boxes)


def test_circle_threshold_is_strict(monkeypatch):
    boxes = torch.tensor([[0, 0, 0, 1, 1, 1, 0], [3, 4, 9, 1, 1, 1, 2], [0, 0.5, 0, 1, 1, 1, 0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert _both_paths(monkeypatch, nms_circle, boxes, scores, 25.0).tolist() == [0, 1]
    assert _both_paths(monkeypatch, nms_circle, boxes, scores, 25.000001).tolist() == [0]


# ------------------------------------------------------------------ errors
def test_bad_inputs_raise():
    boxes, scores, labels = _detections(5, objects=2)
    with pytest.raises(ValueError, match="scores must be a floating"):
        nms_rotated(boxes, scores[:-1], 0.5)
    with pytest.raises(ValueError, match="scores must be finite"):
        nms_circle(boxes, torch.where(scores > 0.5, float("nan"), scores), 1.0)
    with pytest.raises(ValueError, match="labels must be an integer"):
        nms_rotated(boxes, scores, 0.5, labels=labels.float())
    with pytest.raises(ValueError, match="pre_max_size"):
        nms_rotated(boxes, scores, 0.5, pre_max_size=-1)
    with pytest.raises(ValueError, match="post_max_size"):
        nms_circle(boxes, scores, 0.5, post_max_size=-2)
    bad = boxes.clone()
    bad[3, 6] = float("inf")
    with pytest.raises(ValueError, match=r"boxes: .*rows \[3\]"):
        nms_rotated(bad, scores, 0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    boxes, scores, labels = _detections(6, objects=200, proposals=8)
    for function, threshold in ((nms_rotated, 0.3), (nms_circle, 1.0)):
        for options in ({}, {"labels": labels, "pre_max_size": 1000, "post_max_size": 300, "score_threshold": 0.1}):
            cpu = function(boxes, scores, threshold, **options)
            cuda_options = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in options.items()}
            cuda = function(boxes.cuda(), scores.cuda(), threshold, **cuda_options)
            assert cuda.device.type == "cuda" and torch.equal(cuda.cpu(), cpu)
