"""``Detector``: voxel encoder -> sparse backbone -> BEV -> neck -> CenterPoint head -> boxes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from pointformer.structures import Detections, PointBatch

from .bev import sparse_to_bev
from .build import build_part


def batch_points(batch) -> PointBatch:
    """The ``PointBatch`` of a ``SampleBatch`` (or the argument itself when it is one)."""
    # A PointBatch has a ``points`` attribute too (its tensor): test for it first.
    points = batch if isinstance(batch, PointBatch) else getattr(batch, "points", batch)
    if not isinstance(points, PointBatch):
        raise TypeError(f"expected a SampleBatch or PointBatch, got {type(batch).__name__}")
    return points


def bev_channels(backbone: nn.Module, spatial_shape: Sequence[int]) -> int:
    """Channels of the backbone's output once its z levels are stacked into a BEV map."""
    if hasattr(backbone, "bev_channels"):
        return int(backbone.bev_channels)
    return int(backbone.out_channels) * int(spatial_shape[0])


class Detector(nn.Module):
    """A 3D detector assembled from its parts; ``forward`` returns the head's raw outputs,
    ``loss`` the loss terms against the batch's boxes, ``predict`` one ``Detections`` per sample."""

    def __init__(self, encoder: nn.Module, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.backbone = backbone
        self.neck = neck
        self.head = head

    @classmethod
    def from_config(cls, config: Mapping[str, Any], class_names: Sequence[str], point_channels: int,
                    voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> "Detector":
        """Build from ``{"encoder": {...}, "backbone": {...}, "neck": {...}, "head": {...}}``;
        channel counts, the head's output stride and the dataset's geometry are filled in."""
        unknown = set(config) - {"type", "encoder", "backbone", "neck", "head"}
        if unknown:
            raise ValueError(f"model: unknown keys {sorted(unknown)}; a detector has encoder, backbone, neck, head")
        for part in ("encoder", "backbone", "neck", "head"):
            if part not in config:
                raise ValueError(f"model.{part} is missing")
        geometry = dict(voxel_size=list(voxel_size), point_cloud_range=list(point_cloud_range))
        encoder = build_part("encoder", config["encoder"], in_channels=point_channels, **geometry)
        backbone = build_part("backbone", config["backbone"], in_channels=encoder.out_channels,
                              spatial_shape=encoder.spatial_shape)
        neck = build_part("neck", config["neck"], in_channels=bev_channels(backbone, encoder.spatial_shape))
        head = build_part("head", config["head"], in_channels=neck.out_channels, class_names=list(class_names),
                          out_size_factor=backbone.out_stride * neck.out_stride,
                          tasks=[list(class_names)], **geometry)
        return cls(encoder, backbone, neck, head)

    def forward(self, batch) -> list[dict[str, torch.Tensor]]:
        encoded = self.encoder(batch_points(batch))
        voxels = self.backbone(encoded.voxels)
        return self.head(self.neck(sparse_to_bev(voxels)))

    def loss(self, batch, outputs: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Loss terms (``"loss"`` is their total) against ``batch.boxes`` / ``batch.labels``."""
        return self.head.loss(outputs, batch.boxes, batch.labels)

    @torch.no_grad()
    def predict(self, batch, outputs: list[dict[str, torch.Tensor]] | None = None) -> list[Detections]:
        """One ``Detections`` per sample, in the sample frame."""
        return self.head.predict(self(batch) if outputs is None else outputs)
