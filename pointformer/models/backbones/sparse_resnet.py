"""``SparseResNet8x``: CenterPoint's VoxelNet 3D sparse encoder on spconv (mmdet3d ``SparseEncoder``
with ``block_type="basicblock"``, OpenPCDet ``VoxelResBackBone8x``).

Layout (base_channels C = 16, 2 blocks per stage as published)::

    SubMConv3d(in, C) BN ReLU                                   stride 1
    stage 1: blocks x SparseBasicBlock(C)                       stride 1
    stage 2: SparseConv3d(C, 2C, 3, s2, p1) BN ReLU, blocks x SparseBasicBlock(2C)   stride 2
    stage 3: SparseConv3d(2C, 4C, 3, s2, p1) BN ReLU, blocks x SparseBasicBlock(4C)  stride 4
    stage 4: SparseConv3d(4C, 8C, 3, s2, p(0,1,1)) BN ReLU, blocks x SparseBasicBlock(8C)  stride 8
    SparseConv3d(8C, out, (3,1,1), s(2,1,1), p0) BN ReLU        z compressed

The grid is padded by one voxel on top in z, as CenterPoint's ``sparse_shape = grid_size + [1, 0, 0]``
(41 z levels for nuScenes' 40), so nuScenes' (40, 1024, 1024) grid ends as (2, 128, 128) and
``sparse_to_bev`` gives 128 * 2 = 256 channels.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from pointformer.ops.spconv_compat import spconv
from pointformer.structures import SparseVoxels

# (kernel, stride, padding) per axis (z, y, x) of each strided convolution, in order.
_DOWNSAMPLE_PADDINGS = ((1, 1, 1), (1, 1, 1), (0, 1, 1))
_OUTPUT_KERNEL, _OUTPUT_STRIDE, _OUTPUT_PADDING = (3, 1, 1), (2, 1, 1), (0, 0, 0)


def _conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class SparseBasicBlock(spconv.SparseModule):
    """Residual block on a fixed set of sites: SubM3x3 BN ReLU SubM3x3 BN, + input, ReLU."""

    def __init__(self, channels: int, indice_key: str, norm_eps: float, norm_momentum: float) -> None:
        super().__init__()
        self.conv1 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.norm1 = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.conv2 = spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=indice_key)
        self.norm2 = nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.norm1(out.features)))
        out = self.conv2(out)
        return out.replace_feature(self.relu(self.norm2(out.features) + x.features))


class SparseResNet8x(nn.Module):
    """``forward(voxels)`` on the (Z, Y, X) grid ``spatial_shape`` -> stride-8 (in y, x) sparse
    voxels with ``out_channels`` features on the grid ``output_shape``."""

    out_stride = 8

    def __init__(
        self,
        in_channels: int,
        spatial_shape: Sequence[int],
        base_channels: int = 16,
        out_channels: int = 128,
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        pad_z: int = 1,
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.in_channels = _int_at_least(in_channels, "in_channels", 1)
        base = _int_at_least(base_channels, "base_channels", 1)
        self.out_channels = _int_at_least(out_channels, "out_channels", 1)
        pad_z = _int_at_least(pad_z, "pad_z", 0)
        if isinstance(spatial_shape, (str, numbers.Number)) or len(spatial_shape) != 3:
            raise ValueError(f"spatial_shape must be (Z, Y, X), got {spatial_shape!r}")
        self.spatial_shape = tuple(_int_at_least(s, "spatial_shape", 1) for s in spatial_shape)
        if isinstance(blocks_per_stage, (str, numbers.Number)) or len(blocks_per_stage) != 4:
            raise ValueError(f"blocks_per_stage must be 4 block counts, got {blocks_per_stage!r}")
        blocks = [_int_at_least(n, "blocks_per_stage", 0) for n in blocks_per_stage]
        z, y, x = self.spatial_shape
        self.sparse_shape = (z + pad_z, y, x)
        self.output_shape = self._output_shape(self.sparse_shape)

        def norm(channels: int) -> nn.BatchNorm1d:
            return nn.BatchNorm1d(channels, eps=norm_eps, momentum=norm_momentum)

        widths = [base, 2 * base, 4 * base, 8 * base]
        self.conv_input = spconv.SparseSequential(
            spconv.SubMConv3d(self.in_channels, base, 3, padding=1, bias=False, indice_key="subm1"),
            norm(base),
            nn.ReLU(),
        )
        stages = []
        for i, (width, count) in enumerate(zip(widths, blocks)):
            layers = []
            if i > 0:
                layers += [
                    spconv.SparseConv3d(
                        widths[i - 1], width, 3, stride=2, padding=_DOWNSAMPLE_PADDINGS[i - 1], bias=False,
                        indice_key=f"spconv{i + 1}",
                    ),
                    norm(width),
                    nn.ReLU(),
                ]
            layers += [SparseBasicBlock(width, f"res{i + 1}", norm_eps, norm_momentum) for _ in range(count)]
            stages.append(spconv.SparseSequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv3d(
                widths[-1], self.out_channels, _OUTPUT_KERNEL, stride=_OUTPUT_STRIDE, padding=_OUTPUT_PADDING,
                bias=False, indice_key="spconv_down2",
            ),
            norm(self.out_channels),
            nn.ReLU(),
        )

    def _output_shape(self, sparse_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        shape = list(sparse_shape)
        for padding in _DOWNSAMPLE_PADDINGS:
            shape = [_conv_output_size(s, 3, 2, p) for s, p in zip(shape, padding)]
        shape = [
            _conv_output_size(s, k, st, p) for s, k, st, p in zip(shape, _OUTPUT_KERNEL, _OUTPUT_STRIDE, _OUTPUT_PADDING)
        ]
        if min(shape) < 1:
            raise ValueError(
                f"spatial_shape {self.spatial_shape} is too small for SparseResNet8x: the padded grid "
                f"{sparse_shape} leaves no output voxel (z needs at least 24 levels before padding by 1)"
            )
        return tuple(shape)

    @property
    def bev_channels(self) -> int:
        """Channels of ``sparse_to_bev`` of the output: ``out_channels`` x output z levels."""
        return self.out_channels * self.output_shape[0]

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        if tuple(voxels.spatial_shape) != self.spatial_shape:
            raise ValueError(f"voxels.spatial_shape {voxels.spatial_shape} differs from the backbone's {self.spatial_shape}")
        if voxels.feats.dim() != 2 or voxels.feats.shape[1] != self.in_channels:
            raise ValueError(f"voxels.feats must be (M, {self.in_channels}), got shape {tuple(voxels.feats.shape)}")
        if voxels.num_voxels == 0:  # spconv cannot run on an empty tensor
            feats = voxels.feats.new_zeros((0, self.out_channels))
            return SparseVoxels(voxels.coords.new_zeros((0, 4)), feats, self.output_shape, voxels.batch_size)
        x = spconv.SparseConvTensor(
            voxels.feats, voxels.coords.contiguous(), list(self.sparse_shape), voxels.batch_size
        )
        x = self.conv_input(x)
        for stage in self.stages:
            x = stage(x)
        x = self.conv_out(x)
        return _sorted_voxels(SparseVoxels(x.indices, x.features, tuple(x.spatial_shape), voxels.batch_size))


def _sorted_voxels(voxels: SparseVoxels) -> SparseVoxels:
    """``voxels`` with rows in (b, z, y, x) order (spconv emits them in hash order)."""
    z_count, y_count, x_count = voxels.spatial_shape
    b, z, y, x = voxels.coords.long().unbind(1)
    order = torch.argsort(((b * z_count + z) * y_count + y) * x_count + x)
    return SparseVoxels(voxels.coords[order], voxels.feats[order], voxels.spatial_shape, voxels.batch_size)


def _int_at_least(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)
