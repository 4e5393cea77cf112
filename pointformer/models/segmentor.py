"""``Segmentor``: voxel encoder -> sparse backbone (stride 1) -> devoxelise -> per-point classes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .build import build_part
from .detector import batch_points


class Segmentor(nn.Module):
    """Per-point semantic segmentation; ``forward`` returns logits (N, K) for the batch's points."""

    def __init__(self, encoder: nn.Module, backbone: nn.Module, head: nn.Module):
        super().__init__()
        if getattr(backbone, "out_stride", 1) != 1:
            raise ValueError(f"Segmentor needs a backbone that keeps the voxel grid (out_stride 1); "
                             f"{type(backbone).__name__} has out_stride {backbone.out_stride}")
        self.encoder = encoder
        self.backbone = backbone
        self.head = head

    @classmethod
    def from_config(cls, config: Mapping[str, Any], num_classes: int, point_channels: int,
                    voxel_size: Sequence[float], point_cloud_range: Sequence[float],
                    ignore_index: int = -1) -> "Segmentor":
        """Build from ``{"encoder": {...}, "backbone": {...}, "head": {...}}``."""
        unknown = set(config) - {"type", "encoder", "backbone", "head"}
        if unknown:
            raise ValueError(f"model: unknown keys {sorted(unknown)}; a segmentor has encoder, backbone, head")
        for part in ("encoder", "backbone", "head"):
            if part not in config:
                raise ValueError(f"model.{part} is missing")
        encoder = build_part("encoder", config["encoder"], in_channels=point_channels,
                             voxel_size=list(voxel_size), point_cloud_range=list(point_cloud_range))
        backbone = build_part("backbone", config["backbone"], in_channels=encoder.out_channels,
                              spatial_shape=encoder.spatial_shape)
        head = build_part("head", config["head"], voxel_channels=backbone.out_channels, num_classes=num_classes,
                          point_channels=encoder.point_feat_channels, ignore_index=ignore_index)
        return cls(encoder, backbone, head)

    def forward(self, batch) -> torch.Tensor:
        encoded = self.encoder(batch_points(batch))
        voxels = self.backbone(encoded.voxels)
        return self.head(voxels.feats, encoded.point_to_voxel, encoded.point_feats)

    def loss(self, batch, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms against ``batch.point_labels`` (the dataset's ignore index where unlabelled)."""
        if batch.point_labels is None:
            raise ValueError("Segmentor.loss: the batch has no point labels")
        return self.head.loss(logits, batch.point_labels)

    @torch.no_grad()
    def predict(self, batch, logits: torch.Tensor | None = None) -> torch.Tensor:
        """int64 (N,) class per point of the batch."""
        return self.head.predict(self(batch) if logits is None else logits)
