"""Voxel encoders: points of a batch -> features of their occupied voxels.

``DynamicVFE`` is mmdetection3d's dynamic voxel feature encoder (the one FlatFormer's Waymo
config uses): every point is decorated with its offsets to the mean of its voxel's points and to
the voxel centre, passed through Linear + BatchNorm + ReLU layers, and each layer but the last
concatenates the voxel's max back onto every point; the last layer's point features are
max-pooled into the voxel. ``MeanVFE`` averages the raw point columns of each voxel.

Points outside ``point_cloud_range`` or with NaN/inf in x, y or z get ``point_to_voxel = -1``,
take no part in any feature or BatchNorm statistic, and get zero point features; the voxelizer
logs how many were dropped.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pointformer.ops import VoxelGrid, dynamic_voxelize, voxel_max, voxel_mean
from pointformer.ops.voxelize import DynamicVoxelization
from pointformer.structures import PointBatch, SparseVoxels


@dataclass
class EncodedVoxels:
    """``voxels``: coords int32 (M, 4) [b, z, y, x] sorted, feats (M, C_out); ``point_to_voxel``
    int64 (N,) row of ``voxels`` per input point, -1 if dropped; ``point_feats`` (N, C_point)
    per-point features of the last layer before pooling (zeros for dropped points), None where
    the encoder has none."""

    voxels: SparseVoxels
    point_to_voxel: torch.Tensor
    point_feats: torch.Tensor | None


class MeanVFE(nn.Module):
    """Voxel features = mean of the point columns (x, y, z, intensity, ...) of its points."""

    def __init__(self, in_channels: int, voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.grid = VoxelGrid.create(voxel_size, point_cloud_range)
        self.out_channels = self.in_channels
        self.point_feat_channels = 0  # no per-point features

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return self.grid.spatial_shape

    def forward(self, points: PointBatch) -> EncodedVoxels:
        _check_points(points, self.in_channels)
        assignment = _voxelize(points, self.grid)
        feats = voxel_mean(points.points, assignment.point_to_voxel, assignment.num_voxels)
        voxels = SparseVoxels(assignment.coords, feats, assignment.spatial_shape, assignment.batch_size)
        return EncodedVoxels(voxels, assignment.point_to_voxel, None)

    def encode_assigned(
        self, cloud: torch.Tensor, voxel_of_point: torch.Tensor, coords: torch.Tensor, traceable: bool = False
    ) -> tuple[None, torch.Tensor]:
        """Kept points ``cloud`` (K, in_channels) in voxels ``voxel_of_point`` (K,) of ``coords``
        (M, 4) -> (None, (M, in_channels) voxel means); ``traceable`` as ``DynamicVFE.encode_assigned``."""
        mean = _scatter_mean if traceable else voxel_mean
        return None, mean(cloud, voxel_of_point, coords.shape[0])


class DynamicVFE(nn.Module):
    """mmdet3d ``DynamicVFE``: decorated points -> [Linear(no bias), BatchNorm1d, ReLU] layers with
    the voxel max concatenated back after every layer but the last -> scatter-max to voxels.

    Point decorations, in this order after the ``in_channels`` raw columns: offset (x, y, z) to the
    mean of the voxel's points (``with_cluster_center``), offset to the voxel centre
    (``with_voxel_center``), distance to the origin (``with_distance``)."""

    def __init__(
        self,
        in_channels: int,
        voxel_size: Sequence[float],
        point_cloud_range: Sequence[float],
        feat_channels: Sequence[int] = (64, 128),
        with_cluster_center: bool = True,
        with_voxel_center: bool = True,
        with_distance: bool = False,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.grid = VoxelGrid.create(voxel_size, point_cloud_range)
        if isinstance(feat_channels, (int, str)) or len(feat_channels) == 0:
            raise ValueError(f"feat_channels must be a non-empty sequence of positive ints, got {feat_channels!r}")
        widths = [_positive_int(c, "feat_channels") for c in feat_channels]
        self.with_cluster_center = bool(with_cluster_center)
        self.with_voxel_center = bool(with_voxel_center)
        self.with_distance = bool(with_distance)
        self.decorated_channels = (
            self.in_channels + 3 * self.with_cluster_center + 3 * self.with_voxel_center + int(self.with_distance)
        )
        layers = []
        for i, width in enumerate(widths):
            fan_in = self.decorated_channels if i == 0 else 2 * widths[i - 1]
            layers.append(
                nn.Sequential(
                    nn.Linear(fan_in, width, bias=False),
                    nn.BatchNorm1d(width, eps=norm_eps, momentum=norm_momentum),
                    nn.ReLU(inplace=True),
                )
            )
        self.vfe_layers = nn.ModuleList(layers)
        self.out_channels = widths[-1]
        self.point_feat_channels = widths[-1]  # per-point features of the last layer (EncodedVoxels.point_feats)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return self.grid.spatial_shape

    def forward(self, points: PointBatch) -> EncodedVoxels:
        _check_points(points, self.in_channels)
        assignment = _voxelize(points, self.grid)
        num_points = points.points.shape[0]
        num_kept = num_points - assignment.num_out_of_range - assignment.num_non_finite
        dtype = self.vfe_layers[0][0].weight.dtype
        point_to_voxel = assignment.point_to_voxel
        if num_kept == 0:
            feats = points.points.new_zeros((0, self.out_channels), dtype=dtype)
            voxels = SparseVoxels(assignment.coords, feats, assignment.spatial_shape, assignment.batch_size)
            return EncodedVoxels(voxels, point_to_voxel, feats.new_zeros((num_points, self.out_channels)))

        kept = None if num_kept == num_points else torch.nonzero(point_to_voxel >= 0).squeeze(1)
        cloud = points.points if kept is None else points.points[kept]
        voxel_of_point = point_to_voxel if kept is None else point_to_voxel[kept]
        point_feats, voxel_feats = self.encode_assigned(cloud, voxel_of_point, assignment.coords)
        if kept is not None:
            point_feats = point_feats.new_zeros((num_points, point_feats.shape[1])).index_copy(0, kept, point_feats)
        voxels = SparseVoxels(assignment.coords, voxel_feats, assignment.spatial_shape, assignment.batch_size)
        return EncodedVoxels(voxels, point_to_voxel, point_feats)

    def encode_assigned(
        self, cloud: torch.Tensor, voxel_of_point: torch.Tensor, coords: torch.Tensor, traceable: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder on a voxel assignment made beforehand: kept points ``cloud``
        (K, in_channels), each in voxel ``voxel_of_point`` (K,) int64 of ``coords`` (M, 4)
        [b, z, y, x] (every voxel holding a point) -> per-point features (K, C_out) of the last
        layer and per-voxel max (M, C_out).

        ``traceable``: segment mean / max as torch scatters (the same values) instead of the numba
        kernels, so the method can be traced into an ONNX graph with K and M dynamic."""
        mean, maximum = (_scatter_mean, _scatter_max) if traceable else (voxel_mean, voxel_max)
        num_voxels = coords.shape[0]
        features = self._decorate(cloud, voxel_of_point, coords, mean).to(self.vfe_layers[0][0].weight.dtype)
        for i, layer in enumerate(self.vfe_layers):
            point_feats = layer(features)
            voxel_feats = maximum(point_feats, voxel_of_point, num_voxels)
            if i < len(self.vfe_layers) - 1:
                features = torch.cat([point_feats, voxel_feats[voxel_of_point]], dim=1)
        return point_feats, voxel_feats

    def _decorate(self, cloud: torch.Tensor, voxel_of_point: torch.Tensor, coords: torch.Tensor, mean) -> torch.Tensor:
        """(K, decorated_channels): raw columns, then the enabled offsets and distance."""
        xyz = cloud[:, :3]
        parts = [cloud]
        if self.with_cluster_center:
            cluster_mean = mean(xyz, voxel_of_point, coords.shape[0])
            parts.append(xyz - cluster_mean[voxel_of_point])
        if self.with_voxel_center:
            parts.append(xyz - self._voxel_centres(coords, cloud)[voxel_of_point])
        if self.with_distance:
            parts.append(torch.linalg.vector_norm(xyz, dim=1, keepdim=True))
        return torch.cat(parts, dim=1)

    def _voxel_centres(self, coords: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(M, 3) x, y, z of the centres of voxels ``coords`` [b, z, y, x], in ``like``'s dtype."""
        size = torch.tensor(self.grid.voxel_size, dtype=like.dtype, device=like.device)
        origin = torch.tensor(self.grid.point_cloud_range[:3], dtype=like.dtype, device=like.device)
        index_xyz = coords[:, [3, 2, 1]].to(like.dtype)
        return index_xyz * size + (size / 2 + origin)


def _scatter_mean(feats: torch.Tensor, voxel_of_point: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """``voxel_mean`` for points that all have a voxel, as torch scatters (sums in float64)."""
    index = voxel_of_point.unsqueeze(1).expand(-1, feats.shape[1])
    wide = feats.double()
    sums = wide.new_zeros((num_voxels, feats.shape[1])).scatter_add(0, index, wide)
    counts = wide.new_zeros((num_voxels, 1)).scatter_add(0, voxel_of_point.unsqueeze(1), torch.ones_like(wide[:, :1]))
    return (sums / counts.clamp_min(1.0)).to(feats.dtype)


def _scatter_max(feats: torch.Tensor, voxel_of_point: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """``voxel_max`` for points that all have a voxel and voxels that all have a point."""
    index = voxel_of_point.unsqueeze(1).expand(-1, feats.shape[1])
    lowest = feats.new_full((num_voxels, feats.shape[1]), float("-inf"))
    return lowest.scatter_reduce(0, index, feats, reduce="amax", include_self=True)


def _voxelize(points: PointBatch, grid: VoxelGrid) -> DynamicVoxelization:
    return dynamic_voxelize(points, grid.voxel_size, grid.point_cloud_range)


def _check_points(points: PointBatch, in_channels: int) -> None:
    if not isinstance(points, PointBatch):
        raise TypeError(f"points must be a PointBatch, got {type(points).__name__}")
    if points.num_features != in_channels:
        raise ValueError(f"points have {points.num_features} columns, the encoder expects in_channels={in_channels}")


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
