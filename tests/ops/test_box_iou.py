"""box_iou against shapely polygons (BEV) and shapely area x z overlap (3D) on random and
adversarial boxes; the torch path against the numba path, bit for bit, on every input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

import pointformer.ops.rotated_iou as box_iou_module
from pointformer.ops import box_iou
from pointformer.structures import Boxes3D


# ------------------------------------------------------------------ twins
def _footprint(box: np.ndarray, origin: np.ndarray) -> Polygon:
    """Shapely BEV rectangle of one (7,) float64 box, coordinates relative to ``origin`` (2,)."""
    x, y, _, l, w, _, yaw = box[:7]
    c, s = math.cos(yaw), math.sin(yaw)
    corners = [(dl * l / 2, dw * w / 2) for dl, dw in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    return Polygon([(x - origin[0] + c * a - s * b, y - origin[1] + s * a + c * b) for a, b in corners])


def _shapely_iou(first: np.ndarray, second: np.ndarray, mode: str) -> float:
    origin = first[:2]
    a, b = _footprint(first, origin), _footprint(second, origin)
    inter, area_a, area_b = a.intersection(b).area, a.area, b.area
    if mode == "3d":
        top = min(first[2] + first[5] / 2, second[2] + second[5] / 2)
        bottom = max(first[2] - first[5] / 2, second[2] - second[5] / 2)
        inter *= max(top - bottom, 0.0)
        area_a, area_b = area_a * first[5], area_b * second[5]
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _shapely_pairwise(boxes1: torch.Tensor, boxes2: torch.Tensor, mode: str) -> np.ndarray:
    first, second = boxes1.double().numpy(), boxes2.double().numpy()
    return np.array([[_shapely_iou(a, b, mode) for b in second] for a in first]).reshape(len(first), len(second))


def _both_paths(monkeypatch, boxes1, boxes2, mode="bev", aligned=False) -> torch.Tensor:
    """The public result (numba path on CPU), after checking the torch path gives the same bits."""
    ours = box_iou(boxes1, boxes2, mode, aligned)
    with monkeypatch.context() as patch:
        patch.setattr(box_iou_module, "_box_iou_numba", box_iou_module._box_iou_torch)
        torch_path = box_iou(boxes1, boxes2, mode, aligned)
    assert torch_path.dtype == ours.dtype and torch_path.shape == ours.shape
    assert torch.equal(torch_path, ours), float((torch_path - ours).abs().max())
    return ours


def _random_boxes(generator: np.random.Generator, count: int, spread: float) -> torch.Tensor:
    boxes = np.empty((count, 7))
    boxes[:, :2] = generator.uniform(-spread, spread, (count, 2))
    boxes[:, 2] = generator.uniform(-1, 1, count)
    boxes[:, 3:6] = generator.uniform(0.3, 5.0, (count, 3))
    boxes[:, 6] = generator.uniform(-10, 10, count)  # beyond [-pi, pi) on purpose
    return torch.from_numpy(boxes)


def _adversarial_boxes() -> torch.Tensor:
    """Boxes whose pairs touch, coincide, nest, share edges, cross, or have no area."""
    quarter = math.pi / 4
    rows = [
        (0, 0, 0, 2, 1, 1, 0),  # reference rectangle
        (0, 0, 0, 2, 1, 1, 0),  # duplicate
        (0, 0, 0, 2, 1, 1, math.pi),  # same footprint, heading reversed
        (0, 0, 0, 2, 1, 1, 2 * math.pi + 1e-300),  # yaw beyond range
        (0, 0, 0, 1, 2, 1, math.pi / 2),  # same footprint, turned a quarter with l, w swapped
        (2, 0, 0, 2, 1, 1, 0),  # shares the edge x = 1
        (2, 1, 0, 2, 1, 1, 0),  # shares only the corner (1, 0.5)
        (1, 0.5, 0, 2, 1, 1, 0),  # parallel edges, quarter overlap
        (0.5, 0, 0, 1, 1, 1, 0),  # inside, sharing the long edges
        (0.1, 0.05, 0.2, 0.5, 0.3, 0.4, 0.7),  # strictly inside, turned
        (0, 0, 0, 2, 2, 1, quarter),  # square turned 45 degrees: octagon with (0, 0, 0, 2, 2, ...)
        (0, 0, 0, 2, 2, 1, 0),
        (1 + math.sqrt(2) / 2, 0, 0, 1, 1, 1, quarter),  # corner touching the edge x = 1
        (0, 0, 0, 10, 0.2, 1, 0),  # long thin cross ...
        (0, 0, 0, 10, 0.2, 1, math.pi / 2),  # ... and its partner
        (0, 0, 0, 0, 1, 1, 0),  # zero length
        (0, 0, 0, 1, 0, 1, 0.3),  # zero width
        (0, 0, 0, 0, 0, 0, 0),  # a point
        (0, 0, 0, 2, 1, 0, 0),  # zero height
        (0.3, 0.1, 0, 1e-9, 1.0, 1, 0.2),  # needle
        (0.2, 0.2, 0, 1e-6, 1e-6, 1e-6, 1.0),  # tiny box inside
        (0, 0, 1, 2, 1, 1, 0),  # on top of the reference: touching faces in z
        (0, 0, 0.5, 2, 1, 1, 0.0),  # half-height overlap
        (0, 0.5, 0, 2, 1, 1, 1e-17),  # edge y = 0.5 within rounding
    ]
    return torch.tensor(rows, dtype=torch.float64)


# ----------------------------------------------------------------- random
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode", ["bev", "3d"])
def test_random_pairs_match_shapely(monkeypatch, seed, mode):
    generator = np.random.default_rng(seed)
    boxes1, boxes2 = _random_boxes(generator, 30, 4.0), _random_boxes(generator, 25, 4.0)
    ours = _both_paths(monkeypatch, boxes1, boxes2, mode)
    reference = _shapely_pairwise(boxes1, boxes2, mode)
    assert (reference > 0).mean() > 0.2  # the random set really overlaps
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-6, rtol=0)


def test_aligned_is_the_diagonal(monkeypatch):
    generator = np.random.default_rng(7)
    boxes1 = _random_boxes(generator, 40, 2.0)
    boxes2 = boxes1.clone()
    boxes2[:, :2] += torch.from_numpy(generator.normal(0, 0.8, (40, 2)))
    for mode in ("bev", "3d"):
        aligned = _both_paths(monkeypatch, boxes1, boxes2, mode, aligned=True)
        pairwise = _both_paths(monkeypatch, boxes1, boxes2, mode)
        assert torch.equal(aligned, pairwise.diagonal())
        reference = [_shapely_iou(a, b, mode) for a, b in zip(boxes1.numpy(), boxes2.numpy())]
        np.testing.assert_allclose(aligned.numpy(), reference, atol=1e-6, rtol=0)


# ------------------------------------------------------------ adversarial
@pytest.mark.parametrize("mode", ["bev", "3d"])
def test_adversarial_pairs_match_shapely(monkeypatch, mode):
    boxes = _adversarial_boxes()
    ours = _both_paths(monkeypatch, boxes, boxes, mode)
    assert torch.isfinite(ours).all() and (ours >= 0).all() and (ours <= 1).all()
    np.testing.assert_allclose(ours.numpy(), _shapely_pairwise(boxes, boxes, mode), atol=1e-6, rtol=0)


def test_adversarial_exact_values():
    boxes = _adversarial_boxes()
    iou = box_iou(boxes, boxes)
    assert iou[0, 1] == 1.0 and abs(iou[0, 2] - 1) < 1e-12 and abs(iou[0, 3] - 1) < 1e-12 and abs(iou[0, 4] - 1) < 1e-12
    assert iou[0, 5] == 0.0 and iou[0, 6] == 0.0  # shared edge, shared corner
    assert iou[0, 7] == pytest.approx(0.5 / 3.5, abs=1e-15)
    assert iou[0, 8] == 0.5  # nested, exactly half
    assert iou[11, 10] == pytest.approx(8 * (math.sqrt(2) - 1) / (8 - 8 * (math.sqrt(2) - 1)), abs=1e-12)
    assert iou[11, 12] == pytest.approx(0.0, abs=1e-15)
    assert iou[13, 14] == pytest.approx(0.04 / 3.96, abs=1e-12)
    assert (iou[15:18] == 0).all() and (iou[:, 15:18] == 0).all()  # zero-area boxes
    iou_3d = box_iou(boxes, boxes, "3d")
    assert iou_3d[0, 18] == 0.0 and iou_3d[18, 18] == 0.0  # zero height
    assert iou_3d[0, 21] == 0.0 and iou_3d[0, 22] == pytest.approx(1 / 3, abs=1e-15)


def test_identical_boxes_are_one_at_any_pose(monkeypatch):
    generator = np.random.default_rng(3)
    boxes = _random_boxes(generator, 50, 100.0)
    boxes[:, :2] *= torch.from_numpy(generator.choice([1.0, 1e3, 1e6], (50, 1)))
    iou = _both_paths(monkeypatch, boxes, boxes, "3d", aligned=True)
    assert (iou - 1).abs().max() < 1e-12


def test_huge_coordinates_lose_nothing(monkeypatch):
    generator = np.random.default_rng(4)
    boxes1, boxes2 = _random_boxes(generator, 20, 3.0), _random_boxes(generator, 20, 3.0)
    near = _both_paths(monkeypatch, boxes1, boxes2, "3d")
    offset = torch.tensor([3.0e6, -5.0e6, 1.0e4], dtype=torch.float64)
    boxes1[:, :3] += offset
    boxes2[:, :3] += offset
    far = _both_paths(monkeypatch, boxes1, boxes2, "3d")
    np.testing.assert_allclose(far.numpy(), near.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(far.numpy(), _shapely_pairwise(boxes1, boxes2, "3d"), atol=1e-6, rtol=0)


def test_symmetric(monkeypatch):
    boxes = torch.cat([_random_boxes(np.random.default_rng(5), 30, 3.0), _adversarial_boxes()])
    iou = _both_paths(monkeypatch, boxes, boxes)
    assert (iou - iou.T).abs().max() < 1e-12


def test_torch_chunks_and_buffers(monkeypatch):
    """The torch path in tiny chunks still equals the numba path."""
    boxes = torch.cat([_random_boxes(np.random.default_rng(6), 40, 2.0), _adversarial_boxes()])
    expected = box_iou(boxes, boxes)
    monkeypatch.setattr(box_iou_module, "PAIR_CHUNK", 7)
    monkeypatch.setattr(box_iou_module, "FILTER_CHUNK", 50)
    monkeypatch.setattr(box_iou_module, "_box_iou_numba", box_iou_module._box_iou_torch)
    assert torch.equal(box_iou(boxes, boxes), expected)


# ----------------------------------------------------------- input shapes
def test_float32_boxes3d_and_velocity_columns(monkeypatch):
    generator = np.random.default_rng(8)
    boxes = Boxes3D(_random_boxes(generator, 20, 3.0).float()).with_velocity(torch.zeros(20, 2))
    iou = _both_paths(monkeypatch, boxes, boxes[:7])
    assert iou.dtype == torch.float32 and iou.shape == (20, 7)
    reference = _shapely_pairwise(boxes.tensor, boxes.tensor[:7], "bev")
    np.testing.assert_allclose(iou.numpy(), reference, atol=1e-6, rtol=0)
    mixed = box_iou(boxes.tensor.double(), boxes[:7])
    assert mixed.dtype == torch.float64


def test_empty_and_single(monkeypatch):
    one = _random_boxes(np.random.default_rng(9), 1, 1.0)
    none = torch.zeros((0, 7), dtype=torch.float64)
    assert _both_paths(monkeypatch, none, one).shape == (0, 1)
    assert _both_paths(monkeypatch, one, none, "3d").shape == (1, 0)
    assert _both_paths(monkeypatch, none, none, aligned=True).shape == (0,)
    assert _both_paths(monkeypatch, one, one).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[0, 0, 0, 1, 1, 1, float("nan")]]), "finite"),
        (torch.tensor([[float("inf"), 0, 0, 1, 1, 1, 0]]), "finite"),
        (torch.tensor([[0, 0, 0, -1, 1, 1, 0.0]]), ">= 0"),
        (torch.zeros((3, 6)), "7+"),
        (torch.zeros((3, 7), dtype=torch.int64), "floating"),
    ],
)
def test_bad_boxes_raise(bad, message):
    good = torch.zeros((2, 7))
    with pytest.raises(ValueError, match="boxes2") as error:
        box_iou(good, bad)
    assert message in str(error.value)


def test_bad_arguments_raise():
    boxes = torch.zeros((2, 7))
    with pytest.raises(ValueError, match="mode"):
        box_iou(boxes, boxes, mode="2d")
    with pytest.raises(ValueError, match="aligned"):
        box_iou(boxes, boxes[:1], aligned=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    generator = np.random.default_rng(10)
    boxes1 = torch.cat([_random_boxes(generator, 200, 5.0), _adversarial_boxes()])
    boxes2 = torch.cat([_random_boxes(generator, 150, 5.0), _adversarial_boxes()])
    for mode in ("bev", "3d"):
        cpu = box_iou(boxes1, boxes2, mode)
        cuda = box_iou(boxes1.cuda(), boxes2.cuda(), mode)
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu, atol=1e-9, rtol=0)
        aligned = box_iou(boxes1[:150].cuda().float(), boxes2[:150].cuda().float(), mode, aligned=True)
        torch.testing.assert_close(aligned.cpu(), cpu[:150, :150].diagonal().float(), atol=1e-4, rtol=0)  # float32 boxes
