"""Sparse voxels -> dense bird's-eye-view map (pillar scatter, or CenterPoint's height compression)."""

from __future__ import annotations

import torch

from pointformer.structures import SparseVoxels


def sparse_to_bev(voxels: SparseVoxels) -> torch.Tensor:
    """(B, C * Z, Y, X) dense map of ``voxels`` (coords unique), zeros where no voxel.

    Channel ``c * Z + z`` holds feature ``c`` of z level ``z``: the layout of CenterPoint's /
    OpenPCDet's height compression, ``dense (B, C, Z, Y, X).view(B, C * Z, Y, X)``; with pillars
    (Z = 1) it is the PointPillars scatter. One ``index_put_``; gradients flow to ``feats``."""
    _check_coords(voxels)
    z_count, y_count, x_count = voxels.spatial_shape
    channels = voxels.feats.shape[1]
    canvas = voxels.feats.new_zeros((voxels.batch_size, channels, z_count, y_count, x_count))
    b, z, y, x = voxels.coords.long().unbind(1)
    # Write through a (B, Z, Y, X, C) view: each voxel's channel row lands strided in the
    # (B, C, Z, Y, X) storage, so the reshape below needs no copy.
    canvas.permute(0, 2, 3, 4, 1).index_put_((b, z, y, x), voxels.feats)
    return canvas.view(voxels.batch_size, channels * z_count, y_count, x_count)


def _check_coords(voxels: SparseVoxels) -> None:
    if voxels.num_voxels == 0:
        return
    low = voxels.coords.amin(dim=0).tolist()
    high = voxels.coords.amax(dim=0).tolist()
    limits = (voxels.batch_size, *voxels.spatial_shape)
    for axis, name in enumerate("bzyx"):
        if low[axis] < 0 or high[axis] >= limits[axis]:
            raise ValueError(
                f"SparseVoxels.coords {name} must lie in [0, {limits[axis]}), got {low[axis]}..{high[axis]}"
            )
