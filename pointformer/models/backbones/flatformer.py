"""FlatFormer (Liu et al., CVPR 2023): flattened window attention for point cloud transformers.

Voxels are sorted by window in four orders (x, x-shift, y, y-shift), the sorted list is cut
into groups of exactly ``group_size`` voxels, and dense attention runs inside each group. A
block is four layers, one per order; the plans are computed once per forward and reused by
every block. The published Waymo model uses 0.32 m pillars (468 x 468), width 128, 8 heads,
FFN 2x, 2 blocks, 13 x 13 windows, groups of 144 and a sinusoidal embedding of the pillar's
x/y grid position added to queries and keys; those are the defaults here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pointformer.ops import FLAT_ORDERS, flat_window_plans
from pointformer.structures import GroupPlan, SparseVoxels

from ..attention import TransformerLayer, sinusoidal_embedding


class FlatFormer(nn.Module):
    """``SparseVoxels`` (M, in_channels) -> ``SparseVoxels`` (M, channels) on the same coords.

    ``orders``: the flattened-window orders of a block's layers (default x, x_shift, y,
    y_shift). ``drop_path`` rises linearly from 0 to this value over the layers.
    ``mask_padding``: mask padded slots as keys (off as published). ``pre_norm``: pre-norm
    layers instead of the published post-norm. Position embedding: x/y grid coordinates for
    pillars, x/y/z for 3D voxels (``normalize_pos`` maps each axis to [0, 2 pi) first).
    """

    def __init__(self, in_channels: int = 128, channels: int = 128, num_heads: int = 8, num_blocks: int = 2,
                 window_shape: Sequence[int] = (13, 13), group_size: int = 144,
                 orders: Sequence[str] = FLAT_ORDERS, ffn_ratio: float = 2.0, activation: str = "gelu",
                 pre_norm: bool = False, drop_path: float = 0.0, mask_padding: bool = False,
                 pos_temperature: float = 10000.0, normalize_pos: bool = False):
        super().__init__()
        self.window_shape = tuple(int(w) for w in window_shape)
        self.group_size = int(group_size)
        self.orders = tuple(orders)
        self.pos_temperature = pos_temperature
        self.normalize_pos = normalize_pos
        self.out_channels = channels
        self.out_stride = 1
        self.input_projection = nn.Identity() if in_channels == channels else nn.Linear(in_channels, channels)
        num_layers = num_blocks * len(self.orders)
        rates = torch.linspace(0, drop_path, num_layers).tolist() if num_layers > 1 else [drop_path]
        self.layers = nn.ModuleList(
            TransformerLayer(channels, num_heads, ffn_ratio, activation, pre_norm, rate, mask_padding)
            for rate in rates
        )
        self.output_norm = nn.LayerNorm(channels) if pre_norm else nn.Identity()
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def position_embedding(self, voxels: SparseVoxels) -> torch.Tensor:
        """(M, channels) sinusoidal embedding of each voxel's grid position."""
        depth, height, width = voxels.spatial_shape
        coords = voxels.coords.float()
        axes = [coords[:, 3], coords[:, 2]] + ([coords[:, 1]] if depth > 1 else [])
        if self.normalize_pos:
            sizes = (width, height, depth)
            axes = [axis / size * 2 * torch.pi for axis, size in zip(axes, sizes)]
        return sinusoidal_embedding(torch.stack(axes, 1), self.out_channels, self.pos_temperature)

    def forward(self, voxels: SparseVoxels, plans: Mapping[str, GroupPlan] | None = None) -> SparseVoxels:
        """``plans``: the ``flat_window_plans`` of ``voxels`` for every order, made beforehand
        (ONNX export keeps the sorts outside the graph); None computes them here."""
        if plans is None:
            with torch.no_grad():
                plans = flat_window_plans(voxels, self.window_shape, self.group_size, tuple(dict.fromkeys(self.orders)))
        else:
            missing = sorted(set(self.orders) - set(plans))
            if missing:
                raise ValueError(f"FlatFormer.forward: plans lack the orders {missing}; got {sorted(plans)}")
        pos = self.position_embedding(voxels).to(voxels.feats.dtype)
        batch_idx = voxels.batch_idx
        x = self.input_projection(voxels.feats)
        for index, layer in enumerate(self.layers):
            x = layer(x, pos, plans[self.orders[index % len(self.orders)]], batch_idx, voxels.batch_size)
        return voxels.replace_feats(self.output_norm(x))
