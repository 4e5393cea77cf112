"""Losses of the detection and segmentation heads.

- ``gaussian_focal_loss``: CenterNet's penalty-reduced focal loss on Gaussian heatmaps
  (mmdet's ``GaussianFocalLoss``), summed and divided by the number of positives.
- ``weighted_l1_loss``: CenterPoint's box regression loss: L1 with per-code weights over the
  object slots of a mask, divided by the number of objects (+1e-4).
- ``lovasz_softmax`` / ``lovasz_grad``: Berman et al.'s Lovász-softmax, the convex surrogate of
  the per-class Jaccard loss, averaged over classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CLIP_SIGMOID_EPS = 1e-4  # CenterPoint's clip_sigmoid bound


def clip_sigmoid(logits: torch.Tensor, eps: float = CLIP_SIGMOID_EPS) -> torch.Tensor:
    """Sigmoid clamped to [eps, 1 - eps] (CenterPoint's ``clip_sigmoid``), any shape."""
    return torch.clamp(logits.sigmoid(), min=eps, max=1 - eps)


def gaussian_focal_loss(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0, eps: float = 1e-12
) -> torch.Tensor:
    """CenterNet focal loss on a Gaussian heatmap, normalised by the number of positives.

    pred, target: same shape, probabilities in [0, 1]; cells with ``target == 1`` are positives
    and cost ``-log(p) (1 - p)^alpha``, all others cost ``-log(1 - p) p^alpha (1 - t)^gamma``.
    Returns the scalar sum over all cells divided by ``max(#positives, 1)``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"gaussian_focal_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    positive = target.eq(1)
    positive_loss = -(pred + eps).log() * (1 - pred).pow(alpha) * positive
    negative_loss = -(1 - pred + eps).log() * pred.pow(alpha) * (1 - target).pow(gamma) * ~positive
    num_positives = max(int(positive.sum().item()), 1)
    return (positive_loss + negative_loss).sum() / num_positives


def weighted_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, code_weights: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """CenterPoint's box regression loss.

    pred, target (B, M, D): regression codes of M object slots; mask (B, M) bool or 0/1, which
    slots hold an object; code_weights (D,). NaN targets (e.g. unknown velocity) cost nothing.
    Returns ``sum(|pred - target| * mask * code_weights) / (#objects + 1e-4)``.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"weighted_l1_loss: pred and target must be the same (B, M, D), "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"weighted_l1_loss: mask must be {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    weights = torch.as_tensor(code_weights, dtype=pred.dtype, device=pred.device)
    if weights.shape != (pred.shape[2],):
        raise ValueError(f"weighted_l1_loss: code_weights must be ({pred.shape[2]},), got {tuple(weights.shape)}")
    mask = mask.to(pred.dtype)
    known = ~torch.isnan(target)
    error = torch.where(known, (pred - target).abs(), torch.zeros_like(pred))
    return (error * mask[..., None] * weights).sum() / (mask.sum() + 1e-4)


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """(P,) 0/1 ground truth sorted by decreasing error -> (P,) gradient of the Lovász extension
    of the Jaccard loss: ``J(i) - J(i-1)`` with ``J(i)`` the Jaccard loss of the first i errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: str | Sequence[int] = "present",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Multi-class Lovász-softmax loss (Berman et al. 2018), averaged over classes.

    probas: (N, C) class probabilities, or (B, C, *spatial) with the classes on dim 1; labels:
    (N,) or (B, *spatial) integer. ``classes``: "present" (classes occurring in ``labels``),
    "all", or a list of class ids. Elements labelled ``ignore_index`` are left out. Returns a
    scalar; zero (still attached to ``probas``) when no element or no class is left.
    """
    flat_probas, flat_labels = _flatten_probas(probas, labels)
    if ignore_index is not None:
        valid = flat_labels != ignore_index
        flat_probas, flat_labels = flat_probas[valid], flat_labels[valid]
    num_classes = flat_probas.shape[1]
    if flat_labels.numel() and (int(flat_labels.min()) < 0 or int(flat_labels.max()) >= num_classes):
        raise ValueError(f"lovasz_softmax: labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
                         f"got range [{int(flat_labels.min())}, {int(flat_labels.max())}]")
    if flat_labels.numel() == 0:
        return flat_probas.sum() * 0.0
    if classes == "present" or classes == "all":
        class_ids = list(range(num_classes))
    elif isinstance(classes, str):
        raise ValueError(f"lovasz_softmax: classes must be 'present', 'all' or a list of ids, got {classes!r}")
    else:
        class_ids = [int(c) for c in classes]
        if any(c < 0 or c >= num_classes for c in class_ids):
            raise ValueError(f"lovasz_softmax: class ids must lie in [0, {num_classes}), got {class_ids}")
    losses = []
    for class_id in class_ids:
        foreground = (flat_labels == class_id).to(flat_probas.dtype)
        if classes == "present" and foreground.sum() == 0:
            continue
        errors = (foreground - flat_probas[:, class_id]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(foreground[order])))
    if not losses:
        return flat_probas.sum() * 0.0
    return torch.stack(losses).mean()


def _flatten_probas(probas: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) and (N,) from (N, C)/(N,) or (B, C, *S)/(B, *S)."""
    if probas.dim() < 2:
        raise ValueError(f"lovasz_softmax: probas must be (N, C) or (B, C, ...), got shape {tuple(probas.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"lovasz_softmax: labels must be an integer tensor, got {labels.dtype}")
    expected = probas.shape[:1] + probas.shape[2:]
    if labels.shape != expected:
        raise ValueError(f"lovasz_softmax: labels must be {tuple(expected)} for probas {tuple(probas.shape)}, "
                         f"got {tuple(labels.shape)}")
    if probas.dim() > 2:
        probas = probas.movedim(1, -1).reshape(-1, probas.shape[1])
    return probas, labels.reshape(-1)
