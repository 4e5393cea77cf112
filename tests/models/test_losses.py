"""Losses against explicit twins: the focal and L1 losses against Python loops over elements,
Lovász-softmax against the Lovász extension of the Jaccard loss evaluated from its definition
(an integral over thresholds of set functions built with Python sets)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pointformer.models.losses import clip_sigmoid, gaussian_focal_loss, lovasz_grad, lovasz_softmax, weighted_l1_loss


# ------------------------------------------------------------------ twins
def _focal_twin(pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0) -> float:
    total, positives = 0.0, 0
    for p, t in zip(pred.double().reshape(-1).tolist(), target.double().reshape(-1).tolist()):
        if t == 1.0:
            positives += 1
            total += -math.log(p + 1e-12) * (1 - p) ** alpha
        else:
            total += -math.log(1 - p + 1e-12) * p**alpha * (1 - t) ** gamma
    return total / max(positives, 1)


def _l1_twin(pred, target, mask, weights) -> float:
    total = 0.0
    for b, m in itertools.product(range(pred.shape[0]), range(pred.shape[1])):
        if not mask[b, m]:
            continue
        for d in range(pred.shape[2]):
            value = float(target[b, m, d])
            if not math.isnan(value):
                total += abs(float(pred[b, m, d]) - value) * float(weights[d])
    return total / (float(mask.sum()) + 1e-4)


def _jaccard_loss(errors: set[int], foreground: set[int]) -> float:
    """Delta_J(M) = |M| / |F u M| (0 for M empty): the Jaccard loss of mispredicted set M."""
    if not errors:
        return 0.0
    return len(errors) / len(foreground | errors)


def _lovasz_extension(errors: list[float], foreground: set[int]) -> float:
    """f(m) = integral_0^inf Delta({i : m_i >= t}) dt for m >= 0, computed exactly on the piecewise
    constant integrand (the level sets only change at the values of m)."""
    levels = sorted({0.0, *errors})
    total = 0.0
    for low, high in itertools.pairwise(levels):
        level_set = {i for i, e in enumerate(errors) if e >= high}
        total += (high - low) * _jaccard_loss(level_set, foreground)
    return total


def _lovasz_twin(probas: torch.Tensor, labels: torch.Tensor, classes="present", ignore=None) -> float:
    rows = [(p, int(label)) for p, label in zip(probas.double().tolist(), labels.tolist())
            if ignore is None or label != ignore]
    num_classes = probas.shape[1]
    chosen = range(num_classes) if isinstance(classes, str) else classes
    losses = []
    for c in chosen:
        foreground = {i for i, (_, label) in enumerate(rows) if label == c}
        if classes == "present" and not foreground:
            continue
        errors = [abs((1.0 if label == c else 0.0) - p[c]) for p, label in rows]
        losses.append(_lovasz_extension(errors, foreground))
    return float(np.mean(losses)) if losses else 0.0


# ------------------------------------------------------------------ focal
def _heatmap_case(generator: torch.Generator, shape=(2, 3, 7, 9), positives: int = 4):
    target = torch.rand(shape, generator=generator) ** 3
    flat = target.view(-1)
    flat[torch.randperm(flat.numel(), generator=generator)[:positives]] = 1.0
    pred = clip_sigmoid(torch.randn(shape, generator=generator) * 3)
    return pred, target


@pytest.mark.parametrize("positives", [0, 1, 5])
def test_gaussian_focal_loss_matches_loop(positives):
    generator = torch.Generator().manual_seed(positives)
    pred, target = _heatmap_case(generator, positives=positives)
    loss = gaussian_focal_loss(pred.double(), target.double())
    assert float(loss) == pytest.approx(_focal_twin(pred, target), rel=1e-10)


def test_gaussian_focal_loss_other_exponents_and_extremes():
    generator = torch.Generator().manual_seed(3)
    pred, target = _heatmap_case(generator)
    loss = gaussian_focal_loss(pred.double(), target.double(), alpha=1.5, gamma=2.0)
    assert float(loss) == pytest.approx(_focal_twin(pred, target, 1.5, 2.0), rel=1e-10)
    # Saturated predictions stay finite thanks to eps; a perfect positive costs nothing.
    extreme = torch.tensor([0.0, 1.0, 1.0, 0.0], requires_grad=True)
    truth = torch.tensor([1.0, 0.0, 1.0, 0.0])
    value = gaussian_focal_loss(extreme, truth)
    assert torch.isfinite(value)
    assert float(value.detach()) == pytest.approx(_focal_twin(extreme.detach(), truth), rel=1e-6)
    value.backward()
    assert torch.isfinite(extreme.grad).all()


def test_gaussian_focal_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ"):
        gaussian_focal_loss(torch.zeros(2, 3), torch.zeros(3, 2))


def test_clip_sigmoid_bounds():
    values = clip_sigmoid(torch.tensor([-1e4, 0.0, 1e4]))
    assert values.tolist() == pytest.approx([1e-4, 0.5, 1 - 1e-4])


# ------------------------------------------------------------------ L1
def test_weighted_l1_loss_matches_loop_with_nan_targets():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 5, 10, generator=generator, dtype=torch.float64)
    target = torch.randn(3, 5, 10, generator=generator, dtype=torch.float64)
    target[0, 1, 8:] = float("nan")
    target[2, 4, :] = float("nan")  # a masked-out slot full of NaN
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    weights = [1.0] * 8 + [0.2, 0.2]
    loss = weighted_l1_loss(pred, target, mask, weights)
    assert float(loss) == pytest.approx(_l1_twin(pred, target, mask, weights), rel=1e-10)
    pred.requires_grad_(True)
    weighted_l1_loss(pred, target, mask, weights).backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[1] == 0).all() and (pred.grad[0, 1, 8:] == 0).all()


def test_weighted_l1_loss_empty_mask_and_zero_weights():
    pred, target = torch.ones(2, 3, 4), torch.zeros(2, 3, 4)
    assert float(weighted_l1_loss(pred, target, torch.zeros(2, 3, dtype=torch.bool), [1.0] * 4)) == 0.0
    mask = torch.ones(2, 3)
    assert float(weighted_l1_loss(pred, target, mask, [0.0] * 4)) == 0.0
    assert float(weighted_l1_loss(pred, target, mask, [1.0, 0, 0, 0])) == pytest.approx(6 / (6 + 1e-4))


def test_weighted_l1_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="code_weights"):
        weighted_l1_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 2), [1.0, 1.0])
    with pytest.raises(ValueError, match="mask"):
        weighted_l1_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(2, 1), [1.0] * 3)
    with pytest.raises(ValueError, match="pred and target"):
        weighted_l1_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2), [1.0] * 3)


# ------------------------------------------------------------------ Lovász
def test_lovasz_grad_is_the_discrete_derivative_of_the_jaccard_loss():
    generator = torch.Generator().manual_seed(1)
    for size in (1, 2, 5, 9):
        for _ in range(5):
            gt = (torch.rand(size, generator=generator) < 0.5).double()
            foreground = {i for i in range(size) if gt[i] == 1}
            expected = [_jaccard_loss(set(range(i + 1)), foreground) - _jaccard_loss(set(range(i)), foreground)
                        for i in range(size)]
            assert lovasz_grad(gt).tolist() == pytest.approx(expected, abs=1e-12)


def _random_probas(generator: torch.Generator, count: int, classes: int, quantize: bool = False) -> torch.Tensor:
    logits = torch.randn(count, classes, generator=generator, dtype=torch.float64) * 2
    probas = logits.softmax(dim=1)
    return (probas * 4).round() / 4 if quantize else probas  # quantized: many ties


@pytest.mark.parametrize("quantize", [False, True])
def test_lovasz_softmax_matches_definition(quantize):
    generator = torch.Generator().manual_seed(int(quantize))
    for trial in range(30):
        count = 1 + trial % 8
        probas = _random_probas(generator, count, 3, quantize)
        labels = torch.randint(0, 3, (count,), generator=generator)
        for classes in ("present", "all", [0, 2]):
            loss = lovasz_softmax(probas, labels, classes=classes)
            assert float(loss) == pytest.approx(_lovasz_twin(probas, labels, classes), abs=1e-12)


def test_lovasz_softmax_ignore_index_and_spatial_layout():
    generator = torch.Generator().manual_seed(7)
    probas = torch.randn(2, 4, 3, 2, generator=generator, dtype=torch.float64).softmax(dim=1)
    labels = torch.randint(0, 4, (2, 3, 2), generator=generator)
    labels[0, 0, 0] = 255
    labels[1, 2, 1] = 255
    loss = lovasz_softmax(probas, labels, ignore_index=255)
    flat_probas, flat_labels = probas.movedim(1, -1).reshape(-1, 4), labels.reshape(-1)
    assert float(loss) == pytest.approx(_lovasz_twin(flat_probas, flat_labels, ignore=255), abs=1e-12)


def test_lovasz_softmax_hard_predictions_give_one_minus_iou():
    generator = torch.Generator().manual_seed(11)
    for _ in range(20):
        count, classes = 12, 4
        predicted = torch.randint(0, classes, (count,), generator=generator)
        labels = torch.randint(0, classes, (count,), generator=generator)
        probas = torch.nn.functional.one_hot(predicted, classes).double()
        ious = []
        for c in labels.unique().tolist():
            truth, guess = labels == c, predicted == c
            ious.append(float((truth & guess).sum()) / float((truth | guess).sum()))
        assert float(lovasz_softmax(probas, labels)) == pytest.approx(1 - np.mean(ious), abs=1e-12)


def test_lovasz_softmax_perfect_and_degenerate_inputs():
    labels = torch.tensor([0, 1, 2, 1])
    perfect = torch.nn.functional.one_hot(labels, 3).double().requires_grad_(True)
    assert float(lovasz_softmax(perfect, labels).detach()) == 0.0
    # Nothing left after ignoring, or nothing at all: zero, still differentiable.
    probas = torch.full((4, 3), 1 / 3, requires_grad=True)
    loss = lovasz_softmax(probas, torch.full((4,), -1), ignore_index=-1)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert probas.grad is not None
    assert float(lovasz_softmax(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))) == 0.0
    # One element.
    single = torch.tensor([[0.2, 0.8]], dtype=torch.float64)
    assert float(lovasz_softmax(single, torch.tensor([0]))) == pytest.approx(0.8)


def test_lovasz_softmax_gradient_flows():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(20, 5, generator=generator, requires_grad=True)
    labels = torch.randint(0, 5, (20,), generator=generator)
    lovasz_softmax(logits.softmax(dim=1), labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_lovasz_softmax_rejects_bad_input():
    probas = torch.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="labels must lie"):
        lovasz_softmax(probas, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must be"):
        lovasz_softmax(probas, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        lovasz_softmax(probas, torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="classes"):
        lovasz_softmax(probas, torch.tensor([0, 1, 1]), classes="some")
    with pytest.raises(ValueError, match="class ids"):
        lovasz_softmax(probas, torch.tensor([0, 1, 1]), classes=[3])
