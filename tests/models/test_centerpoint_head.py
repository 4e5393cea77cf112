"""CenterHead: heatmap radius and drawing against independent twins (numpy roots, a per-cell loop),
targets against a per-box loop, the target -> decoder round trip, the losses against explicit
gathers, NMS modes against direct calls of the ops, and a tiny overfit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointformer.models.heads.centerpoint import (
    CenterHead,
    draw_heatmap_gaussian,
    gaussian_kernel,
    gaussian_radius,
)
from pointformer.models.losses import clip_sigmoid, gaussian_focal_loss
from pointformer.ops import box_iou, nms_circle, nms_rotated
from pointformer.structures import Boxes3D

CLASSES = ("car", "truck", "bus", "pedestrian", "cyclist")
# Tasks deliberately not in class order, so local heatmap channels differ from global labels.
TASKS = (("car",), ("bus", "truck"), ("cyclist", "pedestrian"))
# 64 columns (x) by 48 rows (y): a non-square grid catches x/y swaps.
RANGE = (-12.8, -9.6, -3.0, 12.8, 9.6, 3.0)
VOXEL = (0.1, 0.1, 0.2)
FACTOR = 4
CELL = 0.4


def make_head(**overrides) -> CenterHead:
    settings = dict(in_channels=16, class_names=CLASSES, tasks=TASKS, point_cloud_range=RANGE, voxel_size=VOXEL,
                    out_size_factor=FACTOR, share_conv_channels=16, head_conv=16)
    settings.update(overrides)
    return CenterHead(**settings)


# ------------------------------------------------------------------ twins
def _radius_twin(height: float, width: float, overlap: float) -> float:
    """The three CenterNet quadratics a r^2 - b r + c, each solved with numpy's polynomial roots;
    the published value of each case is a times its larger root."""
    total, area = height + width, height * width
    cases = [
        (1.0, total, area * (1 - overlap) / (1 + overlap)),
        (4.0, 2 * total, (1 - overlap) * area),
        (4 * overlap, -2 * overlap * total, (overlap - 1) * area),
    ]
    return min(a * max(np.roots([a, -b, c]).real) for a, b, c in cases)


def _heatmap_twin(height: int, width: int, objects) -> np.ndarray:
    """Per-cell loop: each object (column, row, radius) contributes exp(-d^2 / 2 sigma^2) within its
    square window (values below float64 eps dropped); objects merge by maximum."""
    heatmap = np.zeros((height, width))
    for column, row, radius in objects:
        sigma = (2 * radius + 1) / 6
        for i in range(height):
            for j in range(width):
                dy, dx = i - row, j - column
                if abs(dx) > radius or abs(dy) > radius:
                    continue
                value = math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
                if value < np.finfo(np.float64).eps:
                    value = 0.0
                heatmap[i, j] = max(heatmap[i, j], value)
    return heatmap


def _random_boxes(generator: torch.Generator, count: int, with_velocity: bool = True) -> torch.Tensor:
    x = RANGE[0] + torch.rand(count, generator=generator, dtype=torch.float64) * (RANGE[3] - RANGE[0])
    y = RANGE[1] + torch.rand(count, generator=generator, dtype=torch.float64) * (RANGE[4] - RANGE[1])
    z = torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1
    dims = 0.5 + torch.rand(count, 3, generator=generator, dtype=torch.float64) * 4
    yaw = torch.rand(count, generator=generator, dtype=torch.float64) * 2 * math.pi - math.pi
    columns = [x[:, None], y[:, None], z[:, None], dims, yaw[:, None]]
    if with_velocity:
        columns.append(torch.randn(count, 2, generator=generator, dtype=torch.float64) * 5)
    return torch.cat(columns, dim=1).float()


def _edge_boxes() -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes on the grid's edges and corners (kept), and just outside it (dropped)."""
    x_min, y_min, x_max, y_max = RANGE[0], RANGE[1], RANGE[3], RANGE[4]
    inside = [(x_min, y_min), (x_max - 1e-3, y_max - 1e-3), (x_min, y_max - 1e-3), (x_max - 1e-3, 0.0),
              (0.0, y_min), (x_min + 0.5 * CELL, 0.3)]
    outside = [(x_max, 0.0), (x_min - 0.01, 0.0), (0.0, y_max), (0.0, y_min - 0.01), (50.0, 50.0)]

    def rows(points):
        return torch.tensor([[x, y, 0.2, 4.0, 1.8, 1.6, 3.0, 1.0, -1.0] for x, y in points], dtype=torch.float32)

    return rows(inside), rows(outside)


def _round_trip_scene(seed: int):
    generator = torch.Generator().manual_seed(seed)
    kept = _random_boxes(generator, 14)
    labels = torch.randint(0, len(CLASSES), (14,), generator=generator)
    inside, outside = _edge_boxes()
    # Two boxes in one cell, of different tasks (car / pedestrian): both must come back.
    same_cell = torch.tensor([[0.85, 2.05, 0.0, 4.0, 1.8, 1.5, -3.1, 0.5, 0.5],
                              [1.15, 2.30, 0.5, 0.7, 0.6, 1.8, 3.1, -0.5, 0.0]])
    cells = ((same_cell[:, :2] - torch.tensor(RANGE[:2])) / CELL).floor()
    assert torch.equal(cells[0], cells[1])
    boxes = torch.cat([kept, inside, same_cell, outside])
    labels = torch.cat([labels, torch.arange(len(inside)) % len(CLASSES), torch.tensor([0, 3]),
                        torch.arange(len(outside)) % len(CLASSES)])
    num_inside = len(kept) + len(inside) + len(same_cell)
    return Boxes3D(boxes), labels, num_inside


def _perfect_preds(head: CenterHead, targets, logit: float = 20.0) -> list[dict[str, torch.Tensor]]:
    """Heatmap logits +logit at target peaks and -logit elsewhere, regression maps holding the
    target codes at their cells (written with an explicit loop), IoU branch 1."""
    preds = []
    for target in targets:
        batch, _, height, width = target.heatmap.shape
        logits = torch.where(target.heatmap == 1, logit, -logit)
        codes = torch.zeros(batch, head.code_size, height, width)
        for b in range(batch):
            for m in range(target.mask.shape[1]):
                if target.mask[b, m]:
                    cell = int(target.indices[b, m])
                    codes[b, :, cell // width, cell % width] = torch.nan_to_num(target.boxes[b, m])
        pred = {"heatmap": logits, "reg": codes[:, 0:2], "height": codes[:, 2:3], "dim": codes[:, 3:6],
                "rot": codes[:, 6:8]}
        if head.with_velocity:
            pred["vel"] = codes[:, 8:10]
        if head.with_iou:
            pred["iou"] = torch.ones(batch, 1, height, width)
        preds.append(pred)
    return preds


def _yaw_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


# ------------------------------------------------------------------ radius / drawing
def test_gaussian_radius_matches_quadratic_roots():
    generator = np.random.default_rng(0)
    heights = np.concatenate([generator.uniform(0.1, 60, 200), [1.0, 5.0, 14.0625, 1e-3, 300.0]])
    widths = np.concatenate([generator.uniform(0.1, 60, 200), [1.0, 5.0, 6.25, 1e-3, 0.5]])
    for overlap in (0.1, 0.3, 0.5, 0.7, 0.99):
        radii = gaussian_radius(torch.from_numpy(heights), torch.from_numpy(widths), overlap)
        expected = [_radius_twin(h, w, overlap) for h, w in zip(heights, widths)]
        np.testing.assert_allclose(radii.numpy(), expected, rtol=1e-9, atol=1e-12)
    # Symmetric in its two sizes, as the published use (length, width) vs (width, length) needs.
    swapped = gaussian_radius(torch.from_numpy(widths), torch.from_numpy(heights), 0.1)
    np.testing.assert_allclose(swapped.numpy(), gaussian_radius(torch.from_numpy(heights),
                                                                torch.from_numpy(widths), 0.1).numpy())
    assert float(gaussian_radius(torch.tensor(0.0), torch.tensor(0.0), 0.1)) == 0.0
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_radius(torch.tensor(1.0), torch.tensor(1.0), 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_radius(torch.tensor(-1.0), torch.tensor(1.0), 0.1)


def test_gaussian_kernel_shape_and_peak():
    for radius in (0, 1, 2, 7):
        kernel = gaussian_kernel(radius)
        assert kernel.shape == (2 * radius + 1, 2 * radius + 1)
        assert float(kernel[radius, radius]) == 1.0 and float(kernel.max()) == 1.0
        assert torch.equal(kernel, kernel.T) and torch.equal(kernel, kernel.flip(0))


@pytest.mark.parametrize("objects", [
    [(5, 4, 2)],
    [(0, 0, 3), (10, 7, 3)],  # opposite corners, windows clipped
    [(4, 3, 2), (6, 3, 3), (5, 5, 1), (5, 5, 0)],  # overlapping, max-merge, radius 0
    [(3, 2, 20)],  # window larger than the map
    [(10, 0, 2), (0, 7, 4)],  # other edges
])
def test_draw_heatmap_gaussian_matches_cell_loop(objects):
    height, width = 8, 11
    heatmap = torch.zeros(height, width)
    for column, row, radius in objects:
        draw_heatmap_gaussian(heatmap, column, row, radius)
    expected = _heatmap_twin(height, width, objects)
    np.testing.assert_allclose(heatmap.numpy(), expected.astype(np.float32), rtol=0, atol=1e-7)
    for column, row, _ in objects:
        assert float(heatmap[row, column]) == 1.0


def test_draw_heatmap_gaussian_rejects_outside_centre():
    with pytest.raises(ValueError, match="outside"):
        draw_heatmap_gaussian(torch.zeros(4, 5), 5, 0, 1)
    with pytest.raises(ValueError, match="outside"):
        draw_heatmap_gaussian(torch.zeros(4, 5), 0, -1, 1)


# ------------------------------------------------------------------ targets
def test_targets_match_per_box_loop():
    head = make_head(min_radius=1, gaussian_overlap=0.1)
    boxes, labels, _ = _round_trip_scene(0)
    targets = head.get_targets([boxes, Boxes3D.empty()], [labels, torch.zeros(0, dtype=torch.int64)])
    tensor = boxes.tensor
    expected_slots = {task_id: [] for task_id in range(len(TASKS))}
    expected_heat = {task_id: np.zeros((len(TASKS[task_id]), 48, 64)) for task_id in range(len(TASKS))}
    for box, label in zip(tensor.tolist(), labels.tolist()):
        name = CLASSES[label]
        task_id = next(t for t, task in enumerate(TASKS) if name in task)
        # The origin is subtracted in the boxes' float32, like a float32 range filter.
        fx = float(np.float32(box[0]) - np.float32(RANGE[0])) / CELL
        fy = float(np.float32(box[1]) - np.float32(RANGE[1])) / CELL
        column, row = math.floor(fx), math.floor(fy)
        if not (0 <= column < 64 and 0 <= row < 48):
            continue
        code = [fx - column, fy - row, box[2], math.log(box[3]), math.log(box[4]), math.log(box[5]),
                math.sin(box[6]), math.cos(box[6]), box[7], box[8]]
        expected_slots[task_id].append((row * 64 + column, code))
        radius = max(1, int(_radius_twin(box[3] / CELL, box[4] / CELL, 0.1)))
        channel = TASKS[task_id].index(name)
        expected_heat[task_id][channel] = np.maximum(expected_heat[task_id][channel],
                                                     _heatmap_twin(48, 64, [(column, row, radius)]))
    for task_id, target in enumerate(targets):
        slots = expected_slots[task_id]
        assert target.heatmap.shape == (2, len(TASKS[task_id]), 48, 64)
        assert int(target.mask[0].sum()) == len(slots) and not target.mask[1].any()
        assert target.indices[0, : len(slots)].tolist() == [cell for cell, _ in slots]
        if slots:
            np.testing.assert_allclose(target.boxes[0, : len(slots)].numpy(), np.array([c for _, c in slots]),
                                       rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(target.heatmap[0].numpy(), expected_heat[task_id].astype(np.float32), atol=1e-7)
        assert not target.heatmap[1].any()


def test_targets_unknown_velocity_and_max_objs():
    head = make_head(max_objs=2)
    boxes = Boxes3D(torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0]] * 3)
                    + torch.tensor([[0.0], [1.0], [2.0]]) * torch.tensor([[1.0, 0, 0, 0, 0, 0, 0]]))
    targets = head.get_targets([boxes], [torch.zeros(3, dtype=torch.int64)])
    assert int(targets[0].mask.sum()) == 2  # the third car is past max_objs
    assert torch.isnan(targets[0].boxes[0, :, 8:]).all()  # 7-column boxes: velocity unknown, not trained


def test_two_boxes_of_one_class_in_one_cell_share_a_peak():
    head = make_head(score_threshold=0.5, nms_type="none")
    boxes = Boxes3D(torch.tensor([[0.85, 2.05, 0.0, 4.0, 1.8, 1.5, 0.3, 0.0, 0.0],
                                  [1.15, 2.30, 0.4, 4.2, 1.9, 1.6, 0.5, 1.0, 1.0]]))
    targets = head.get_targets([boxes], [torch.tensor([0, 0])])
    assert targets[0].mask[0].tolist() == [True, True]
    assert int(targets[0].indices[0, 0]) == int(targets[0].indices[0, 1])
    assert int((targets[0].heatmap == 1).sum()) == 1
    # One cell and one class hold one detection: the regression map keeps the last box written.
    (detections,) = head.decode(_perfect_preds(head, targets))
    assert len(detections) == 1
    assert float(box_iou(detections.boxes, boxes[1:], mode="3d")[0, 0]) > 0.99


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("with_iou", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_targets_decode_round_trip(seed, with_iou):
    head = make_head(with_iou=with_iou, score_threshold=0.5, nms_type="none", max_num=1000)
    boxes, labels, num_inside = _round_trip_scene(seed)
    second = Boxes3D(boxes.tensor[:3].clone())
    targets = head.get_targets([boxes, second], [labels, labels[:3]])
    decoded = head.decode(_perfect_preds(head, targets))
    for detections, (gt, gt_labels) in zip(decoded, [(boxes.tensor[:num_inside], labels[:num_inside]),
                                                      (second.tensor, labels[:3])]):
        assert len(detections) == len(gt)
        assert detections.boxes.tensor.shape[1] == 9
        iou = box_iou(gt, detections.boxes.tensor, mode="3d")
        best = iou.argmax(dim=1)
        assert (iou.max(dim=1).values > 0.99).all()
        assert sorted(best.tolist()) == list(range(len(gt)))  # a one-to-one match
        assert torch.equal(detections.labels[best], gt_labels)
        matched = detections.boxes.tensor[best]
        torch.testing.assert_close(matched[:, [0, 1, 2, 3, 4, 5, 7, 8]], gt[:, [0, 1, 2, 3, 4, 5, 7, 8]],
                                   atol=1e-4, rtol=1e-5)
        assert _yaw_difference(matched[:, 6], gt[:, 6]).abs().max() < 1e-4
        assert (matched[:, 6] >= -math.pi).all() and (matched[:, 6] < math.pi).all()
        assert torch.all(detections.scores > 0.99)


def test_round_trip_without_velocity_gives_seven_columns():
    head = make_head(with_velocity=False, score_threshold=0.5, nms_type="none")
    boxes, labels, num_inside = _round_trip_scene(3)
    boxes = Boxes3D(boxes.tensor[:, :7])
    targets = head.get_targets([boxes], [labels])
    (detections,) = head.decode(_perfect_preds(head, targets))
    assert detections.boxes.tensor.shape == (num_inside, 7)
    iou = box_iou(boxes.tensor[:num_inside], detections.boxes.tensor, mode="3d")
    assert (iou.max(dim=1).values > 0.99).all()


def test_decode_top_k_threshold_and_range():
    head = make_head(score_threshold=0.0, max_num=7, nms_type="none")
    generator = torch.Generator().manual_seed(4)
    preds = head(torch.randn(2, 16, 48, 64, generator=generator))
    decoded = head.decode(preds)
    for sample, detections in enumerate(decoded):
        expected = []
        for pred in preds:
            expected.append(pred["heatmap"][sample].sigmoid().reshape(-1).topk(7).values)
        torch.testing.assert_close(detections.scores, torch.cat(expected))
    # post_center_range keeps centres inside, score_threshold keeps scores above it.
    ranged = make_head(score_threshold=0.3, max_num=200, nms_type="none", post_center_range=(-5, -4, -10, 6, 3, 10))
    ranged.load_state_dict(head.state_dict())
    for detections in ranged.decode(preds):
        centres = detections.boxes.tensor[:, :3]
        assert (detections.scores > 0.3).all()
        assert (centres[:, 0] >= -5).all() and (centres[:, 0] <= 6).all()
        assert (centres[:, 1] >= -4).all() and (centres[:, 1] <= 3).all()


def test_decode_iou_rectification():
    generator = torch.Generator().manual_seed(6)
    scalar = make_head(with_iou=True, score_threshold=-1.0, max_num=48 * 64 * 2, nms_type="none", iou_pow=2.0)
    preds = scalar(torch.randn(1, 16, 48, 64, generator=generator))
    preds[1]["iou"] = torch.rand(1, 1, 48, 64, generator=generator) * 1.4 - 0.2  # outside [0, 1] too
    (detections,) = scalar.decode(preds)
    heat = preds[1]["heatmap"][0].sigmoid()
    iou = preds[1]["iou"][0, 0].clamp(0, 1)
    expected = (heat * iou**2).reshape(-1)
    in_task = (detections.labels == 1) | (detections.labels == 2)
    torch.testing.assert_close(detections.scores[in_task].sort().values, expected.sort().values)
    per_class = make_head(with_iou=True, score_threshold=-1.0, max_num=48 * 64 * 2, nms_type="none",
                          iou_pow=(0.5, 0.2, 0.7, 0.3, 0.9))
    per_class.load_state_dict(scalar.state_dict())
    (detections,) = per_class.decode(preds)
    # Task 1 channels: bus (class 2, a=0.7), truck (class 1, a=0.2).
    for channel, class_id, power in ((0, 2, 0.7), (1, 1, 0.2)):
        expected = (heat[channel] ** (1 - power) * iou**power).reshape(-1)
        got = detections.scores[detections.labels == class_id]
        torch.testing.assert_close(got.sort().values, expected.sort().values)


# ------------------------------------------------------------------ loss
def test_loss_is_near_zero_at_perfect_predictions():
    head = make_head(with_iou=True)
    boxes, labels, _ = _round_trip_scene(5)
    targets = head.get_targets([boxes], [labels])
    preds = _perfect_preds(head, targets)
    losses = head.loss(preds, [boxes], [labels])
    for name, value in losses.items():
        assert float(value) < 1e-4, name
    assert set(losses) == {"loss"} | {f"{kind}/task{t}" for kind in ("heatmap", "bbox", "iou") for t in range(3)}


def test_loss_terms_match_explicit_gathers():
    head = make_head(with_iou=True, bbox_loss_weight=0.25, iou_loss_weight=1.5)
    generator = torch.Generator().manual_seed(8)
    preds = head(torch.randn(2, 16, 48, 64, generator=generator))
    boxes, labels, num_inside = _round_trip_scene(6)
    second = Boxes3D(_random_boxes(generator, 3))
    second_labels = torch.tensor([0, 0, 0])
    losses = head.loss(preds, [boxes, second], [labels, second_labels])
    losses = {name: value.detach() for name, value in losses.items()}
    targets = head.get_targets([boxes, second], [labels, second_labels])
    # Slot m of a task holds the m-th box of that task among those inside the grid.
    slot_boxes = [[[i for i in range(len(gt_labels)) if _task_of(int(gt_labels[i])) == task_id and i < inside]
                   for task_id in range(len(TASKS))]
                  for gt_labels, inside in ((labels, num_inside), (second_labels, len(second)))]
    weights = torch.tensor([1.0] * 8 + [0.2, 0.2])
    for task_id, (pred, target) in enumerate(zip(preds, targets)):
        heat = clip_sigmoid(pred["heatmap"])
        assert float(losses[f"heatmap/task{task_id}"]) == pytest.approx(
            float(gaussian_focal_loss(heat, target.heatmap).detach()), rel=1e-6)
        total, iou_total, count = 0.0, 0.0, int(target.mask.sum())
        for b, m in zip(*torch.nonzero(target.mask, as_tuple=True)):
            cell = int(target.indices[b, m])
            row, column = cell // 64, cell % 64
            code = torch.cat([pred[name][b, :, row, column] for name in ("reg", "height", "dim", "rot", "vel")])
            code = code.detach()
            goal = target.boxes[b, m]
            total += float(((code - goal).abs() * weights).sum())
            x = (column + float(code[0])) * CELL + RANGE[0]
            y = (row + float(code[1])) * CELL + RANGE[1]
            predicted = [x, y, float(code[2]), *code[3:6].exp().tolist(), math.atan2(float(code[6]), float(code[7]))]
            truth = (boxes, second)[int(b)].tensor[slot_boxes[int(b)][task_id][int(m)]]
            truth_iou = float(box_iou(torch.tensor([predicted]), truth[None, :7].double(), mode="3d")[0, 0])
            iou_total += abs(float(pred["iou"][b, 0, row, column].detach()) - truth_iou)
        assert float(losses[f"bbox/task{task_id}"]) == pytest.approx(0.25 * total / (count + 1e-4), rel=1e-5)
        assert float(losses[f"iou/task{task_id}"]) == pytest.approx(1.5 * iou_total / (count + 1e-4), rel=1e-4,
                                                                     abs=1e-6)
    parts = sum(float(v) for k, v in losses.items() if k != "loss")
    assert float(losses["loss"]) == pytest.approx(parts, rel=1e-6)


def test_loss_gradients_reach_every_parameter():
    head = make_head(with_iou=True)
    generator = torch.Generator().manual_seed(9)
    preds = head(torch.randn(2, 16, 48, 64, generator=generator))
    # One box per task: with one object a final bias gradient cannot cancel out between objects.
    boxes = Boxes3D(_random_boxes(generator, 3))
    labels = torch.tensor([0, 2, 4])
    head.loss(preds, [boxes, Boxes3D.empty()], [labels, torch.zeros(0, dtype=torch.int64)])["loss"].backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name



def test_initial_heatmap_logits_stay_near_the_prior():
    """Every heatmap logit of a fresh head lies near ``init_bias`` (focal loss starts small), at
    the widths the configs use."""
    for width in (16, 32, 64):
        head = make_head(in_channels=width, share_conv_channels=width, head_conv=width, init_bias=-2.19)
        with torch.no_grad():
            preds = head(torch.randn(2, width, 48, 64, generator=torch.Generator().manual_seed(width)))
        for task in preds:
            heatmap = task["heatmap"]
            # Kaiming weights on the last conv spread them with a std of 2 to 4 at these widths.
            assert float(heatmap.std()) < 0.6, (width, float(heatmap.std()))
            assert float(heatmap.mean()) == pytest.approx(-2.19, abs=0.5)

def test_loss_with_empty_sample_and_single_task_sample():
    head = make_head()
    generator = torch.Generator().manual_seed(10)
    preds = head(torch.randn(2, 16, 48, 64, generator=generator))
    cars = Boxes3D(_random_boxes(generator, 2))
    losses = head.loss(preds, [cars, Boxes3D.empty()], [torch.zeros(2, dtype=torch.int64),
                                                        torch.zeros(0, dtype=torch.int64)])
    losses = {name: value.detach() for name, value in losses.items()}
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["bbox/task0"]) > 0
    assert float(losses["bbox/task1"]) == 0.0 and float(losses["bbox/task2"]) == 0.0
    # Without positives the focal loss is divided by 1.
    for task_id in (1, 2):
        heat = clip_sigmoid(preds[task_id]["heatmap"])
        assert float(losses[f"heatmap/task{task_id}"]) == pytest.approx(
            float(gaussian_focal_loss(heat, torch.zeros_like(heat)).detach()), rel=1e-6)
    empty = head.loss(preds, [Boxes3D.empty(), Boxes3D.empty()], [torch.zeros(0, dtype=torch.int64)] * 2)
    assert torch.isfinite(empty["loss"]) and float(empty["bbox/task0"].detach()) == 0.0


# ------------------------------------------------------------------ NMS
def _overlapping_preds(head: CenterHead, generator: torch.Generator, batch: int = 2) -> list[dict[str, torch.Tensor]]:
    """Random heatmaps with boxes of about 3 x 1.5 m on 0.4 m cells, so that neighbouring
    candidates overlap with IoUs spread over (0, 1) and NMS thresholds matter."""
    preds = []
    for task in head.tasks:
        def noise(channels: int, scale: float) -> torch.Tensor:
            return torch.randn(batch, channels, 48, 64, generator=generator) * scale

        dims = torch.tensor([3.0, 1.5, 1.5]).log().reshape(1, 3, 1, 1) + noise(3, 0.2)
        yaw = noise(1, 0.3)
        preds.append({"heatmap": noise(len(task), 2.0), "reg": torch.rand(batch, 2, 48, 64, generator=generator),
                      "height": noise(1, 0.1), "dim": dims, "rot": torch.cat([yaw.sin(), yaw.cos()], dim=1),
                      "vel": noise(2, 1.0)})
    return preds


def _task_of(label: int) -> int:
    return next(t for t, task in enumerate(TASKS) if CLASSES[label] in task)


@pytest.mark.parametrize("mode", ["circle", "rotated", "rotated_per_class", "none"])
def test_nms_modes_match_direct_op_calls(mode):
    options = {
        "circle": dict(nms_type="circle", circle_min_radius=(4.0, 1.0, 0.5), post_max_size=20, pre_max_size=None),
        "rotated": dict(nms_type="rotated", nms_threshold=0.1, pre_max_size=60, post_max_size=15),
        "rotated_per_class": dict(nms_type="rotated", nms_threshold=(0.1, 0.2, 0.3, 0.05, 0.5),
                                  pre_max_size=(50, 40, 30, 20, 10), post_max_size=(9, 8, 7, 6, 5)),
        "none": dict(nms_type="none"),
    }[mode]
    head = make_head(score_threshold=0.2, max_num=150, **options)
    preds = _overlapping_preds(head, torch.Generator().manual_seed(12))
    candidates = head.decode(preds)
    final = head.predict(preds)
    for found, pool in zip(final, candidates):
        assert len(pool) > 50
        expected = []
        for task_id in range(len(TASKS)):
            members = torch.tensor([i for i, label in enumerate(pool.labels.tolist()) if _task_of(label) == task_id],
                                   dtype=torch.int64)
            boxes, scores = pool.boxes.tensor[members], pool.scores[members]
            if mode == "none":
                expected.append(members)
            elif mode == "circle":
                expected.append(members[nms_circle(boxes, scores, options["circle_min_radius"][task_id],
                                                   post_max_size=20)])
            elif mode == "rotated":
                expected.append(members[nms_rotated(boxes, scores, 0.1, pre_max_size=60, post_max_size=15)])
            else:
                for class_id in (CLASSES.index(name) for name in TASKS[task_id]):
                    of_class = members[pool.labels[members] == class_id]
                    keep = nms_rotated(pool.boxes.tensor[of_class], pool.scores[of_class],
                                       options["nms_threshold"][class_id],
                                       pre_max_size=options["pre_max_size"][class_id],
                                       post_max_size=options["post_max_size"][class_id])
                    expected.append(of_class[keep])
        index = torch.cat(expected)
        assert torch.equal(found.boxes.tensor, pool.boxes.tensor[index])
        assert torch.equal(found.scores, pool.scores[index])
        assert torch.equal(found.labels, pool.labels[index])
        if mode != "none":
            assert len(found) < len(pool)


def test_post_center_limit_range_after_nms():
    head = make_head(score_threshold=0.2, nms_type="none", post_center_limit_range=(-3, -2, -10, 4, 5, 10))
    generator = torch.Generator().manual_seed(13)
    preds = head(torch.randn(1, 16, 48, 64, generator=generator))
    (pool,), (found,) = head.decode(preds), head.predict(preds)
    centres = pool.boxes.tensor[:, :3]
    inside = (centres[:, 0] >= -3) & (centres[:, 0] <= 4) & (centres[:, 1] >= -2) & (centres[:, 1] <= 5)
    inside &= (centres[:, 2] >= -10) & (centres[:, 2] <= 10)
    assert torch.equal(found.boxes.tensor, pool.boxes.tensor[inside]) and 0 < len(found) < len(pool)


# ------------------------------------------------------------------ presets and checks
def test_published_presets():
    nuscenes = CenterHead.centerpoint_nuscenes()
    assert (nuscenes.grid.width, nuscenes.grid.height) == (128, 128) and len(nuscenes.task_heads) == 6
    assert nuscenes.code_weights == (1.0,) * 8 + (0.2, 0.2) and nuscenes.bbox_loss_weight == 0.25
    assert nuscenes.nms_type == "circle" and nuscenes.circle_min_radius == (4.0, 12.0, 10.0, 1.0, 0.85, 0.175)
    waymo = CenterHead.flatformer_waymo()
    assert (waymo.grid.width, waymo.grid.height) == (468, 468) and waymo.with_iou and waymo.bbox_loss_weight == 2.0
    assert waymo.nms_threshold == (0.8, 0.55, 0.55) and waymo.max_num == 4096 and waymo.min_radius == 1
    assert waymo.box_dim == 7
    head = waymo.task_heads[0].branches
    assert set(head) == {"reg", "height", "dim", "rot", "iou", "heatmap"}
    assert float(head["heatmap"][-1].bias[0].detach()) == pytest.approx(-2.19)
    assert head["heatmap"][-1].kernel_size == (3, 3)
    with_velocity = CenterHead.flatformer_waymo(with_velocity=True)
    assert with_velocity.code_weights[8:] == (0.0, 0.0)


def test_bad_configuration_and_inputs_raise():
    with pytest.raises(ValueError, match="tasks"):
        make_head(tasks=(("car",), ("truck", "bus")))
    with pytest.raises(ValueError, match="tasks"):
        make_head(tasks=(("car", "car"), ("truck", "bus", "pedestrian", "cyclist")))
    with pytest.raises(ValueError, match="code_weights"):
        make_head(code_weights=[1.0] * 8)
    with pytest.raises(ValueError, match="nms_type"):
        make_head(nms_type="soft")
    with pytest.raises(ValueError, match="circle_min_radius"):
        make_head(nms_type="circle")
    with pytest.raises(ValueError, match="nms_threshold"):
        make_head(nms_threshold=(0.1, 0.2))
    with pytest.raises(ValueError, match="per-class"):
        make_head(pre_max_size=(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="point_cloud_range"):
        make_head(point_cloud_range=(0, 0, 0, 1, 1))
    head = make_head()
    preds = head(torch.zeros(1, 16, 48, 64))
    with pytest.raises(ValueError, match="gt_labels"):
        head.loss(preds, [Boxes3D(torch.zeros(1, 9) + 1)], [torch.tensor([5])])
    with pytest.raises(ValueError, match="finite"):
        head.loss(preds, [Boxes3D(torch.full((1, 9), float("nan")))], [torch.tensor([0])])
    with pytest.raises(ValueError, match="samples"):
        head.loss(preds, [Boxes3D.empty(), Boxes3D.empty()], [torch.zeros(0, dtype=torch.int64)] * 2)
    with pytest.raises(ValueError, match="bev must be"):
        head(torch.zeros(1, 16, 40, 64))
    wrong_size = [{name: value[..., :40, :] for name, value in pred.items()} for pred in preds]
    with pytest.raises(ValueError, match="preds"):
        head.decode(wrong_size)
    with pytest.raises(ValueError, match="one dict per task"):
        head.decode(preds[:2])


# ------------------------------------------------------------------ overfit
def test_tiny_overfit_recovers_three_boxes():
    """Fixed random BEV features (32 channels, 32x32 cells of 0.8 m), one task of three classes,
    three boxes: Adam with a cosine schedule for 100 steps."""
    torch.manual_seed(0)
    head = make_head(class_names=("car", "bus", "pedestrian"), tasks=(("car", "bus", "pedestrian"),),
                     point_cloud_range=(-12.8, -12.8, -3.0, 12.8, 12.8, 3.0), voxel_size=(0.2, 0.2, 0.2),
                     in_channels=32, share_conv_channels=16, head_conv=16, with_iou=True, norm_momentum=0.1,
                     bbox_loss_weight=2.0, nms_threshold=0.2)
    features = torch.randn(1, 32, 32, 32)
    gt = Boxes3D(torch.tensor([[-6.1, 4.3, 0.2, 4.5, 1.9, 1.6, 0.4, 3.0, -1.0],
                               [5.3, -7.7, -0.3, 0.8, 0.7, 1.8, -2.5, 0.5, 0.2],
                               [8.2, 6.6, 0.6, 10.5, 2.9, 3.4, 2.9, 0.0, 0.0]]))
    labels = torch.tensor([0, 2, 1])
    steps = 100
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=1e-4)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = head.loss(head(features), [gt], [labels])["loss"]
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(float(loss.detach()))
    assert history[-1] < history[0] / 10, (history[0], history[-1])
    head.eval()
    (detections,) = head.predict(head(features))
    top = detections.select(detections.scores.argsort(descending=True)[:3])
    iou = box_iou(gt, top.boxes, mode="3d")
    best = iou.argmax(dim=1)
    assert (iou.max(dim=1).values > 0.7).all(), iou
    assert sorted(best.tolist()) == [0, 1, 2] and torch.equal(top.labels[best], labels)
