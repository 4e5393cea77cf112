"""Per-point semantic segmentation head on voxel features.

Voxel features go back to the points through the point -> voxel index (devoxelisation), are
concatenated with the encoder's per-point features when there are any, and an MLP scores the
classes. Points the voxelizer dropped (out of range, non-finite) have no voxel: they keep
their own point features and a zero voxel part, so every point gets logits.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import lovasz_softmax


def devoxelize(voxel_feats: torch.Tensor, point_to_voxel: torch.Tensor) -> torch.Tensor:
    """(M, C) voxel features -> (N, C) per point via ``point_to_voxel`` (N,); zeros where -1."""
    if point_to_voxel.numel() and int(point_to_voxel.max()) >= voxel_feats.shape[0]:
        raise ValueError(f"devoxelize: point_to_voxel refers to voxel {int(point_to_voxel.max())} "
                         f"of {voxel_feats.shape[0]}")
    has_voxel = (point_to_voxel >= 0).unsqueeze(1)
    gathered = voxel_feats.index_select(0, point_to_voxel.clamp_min(0)) if voxel_feats.shape[0] else \
        voxel_feats.new_zeros((point_to_voxel.shape[0], voxel_feats.shape[1]))
    return gathered * has_voxel


class SegmentationHead(nn.Module):
    """Logits (N, num_classes) for every point.

    ``hidden_channels``: widths of the Linear + LayerNorm + ReLU layers (per point, so a
    point's logits never depend on the rest of the batch); then the classifier.
    Loss: cross-entropy with ``ignore_index`` (optional ``class_weights``), plus
    ``lovasz_weight`` times the Lovász-softmax loss when it is > 0.
    """

    def __init__(self, voxel_channels: int, num_classes: int, point_channels: int = 0,
                 hidden_channels: Sequence[int] = (128,), ignore_index: int = -1, lovasz_weight: float = 0.0,
                 class_weights: Sequence[float] | None = None, dropout: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"SegmentationHead.num_classes must be >= 2, got {num_classes}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"SegmentationHead.class_weights has {len(class_weights)} entries for "
                             f"{num_classes} classes")
        self.num_classes = num_classes
        self.point_channels = point_channels
        self.ignore_index = ignore_index
        self.lovasz_weight = lovasz_weight
        layers: list[nn.Module] = []
        width = voxel_channels + point_channels
        for hidden in hidden_channels:
            layers += [nn.Linear(width, hidden, bias=False), nn.LayerNorm(hidden), nn.ReLU(inplace=True)]
            width = hidden
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, voxel_feats: torch.Tensor, point_to_voxel: torch.Tensor,
                point_feats: torch.Tensor | None = None) -> torch.Tensor:
        """(M, C_voxel), (N,), (N, C_point) or None -> (N, num_classes) logits."""
        feats = devoxelize(voxel_feats, point_to_voxel)
        if self.point_channels:
            if point_feats is None or point_feats.shape != (point_to_voxel.shape[0], self.point_channels):
                got = None if point_feats is None else tuple(point_feats.shape)
                raise ValueError(f"SegmentationHead expects point_feats ({point_to_voxel.shape[0]}, "
                                 f"{self.point_channels}), got {got}")
            feats = torch.cat([feats, point_feats], dim=1)
        return self.mlp(feats)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "ce"[, "lovasz"]}`` for logits (N, K) and int64 labels (N,)."""
        if labels.shape != logits.shape[:1]:
            raise ValueError(f"SegmentationHead.loss: {tuple(labels.shape)} labels for {logits.shape[0]} points")
        valid = labels != self.ignore_index
        if not bool(valid.any()):
            zero = logits.sum() * 0
            terms = {"ce": zero}
        else:
            terms = {"ce": F.cross_entropy(logits, labels, weight=self.class_weights,
                                           ignore_index=self.ignore_index)}
        if self.lovasz_weight > 0:
            probabilities = logits.softmax(1)
            terms["lovasz"] = self.lovasz_weight * lovasz_softmax(probabilities, labels, ignore_index=self.ignore_index)
        terms["loss"] = sum(terms.values())
        return terms

    @staticmethod
    def predict(logits: torch.Tensor) -> torch.Tensor:
        """int64 (N,) most likely class per point."""
        return logits.argmax(1)
