"""SST-style single-stride window transformer (Fan et al., CVPR 2022): the padding baseline.

Each regular or shifted window is one group; windows are bucketed by how many voxels they
hold and padded to the bucket's cap, padded keys masked (``pointformer.ops.sst_window_plans``).
Layers alternate regular and shifted windows; queries and keys get a sinusoidal embedding of
the voxel's offset from its window's centre (in voxels), as SST does. With the defaults it
has FlatFormer's width and depth (8 layers of width 128, 8 heads, FFN 2x) and its 13 x 13
windows, so the two differ only in how voxels are grouped.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pointformer.ops import SST_BUCKET_CAPS, sst_window_plans, window_positions
from pointformer.structures import SparseVoxels

from ..attention import TransformerLayer, sinusoidal_embedding


class SSTBackbone(nn.Module):
    """``SparseVoxels`` (M, in_channels) -> ``SparseVoxels`` (M, channels) on the same coords.

    Voxels a window cannot hold (more than the largest cap) skip attention: the layer's
    residual passes them through (SST drops them; they keep their features here).
    """

    def __init__(self, in_channels: int = 128, channels: int = 128, num_heads: int = 8, num_layers: int = 8,
                 window_shape: Sequence[int] = (13, 13), bucket_caps: Sequence[int] = SST_BUCKET_CAPS,
                 ffn_ratio: float = 2.0, activation: str = "gelu", pre_norm: bool = False, drop_path: float = 0.0,
                 pos_temperature: float = 10000.0):
        super().__init__()
        self.window_shape = tuple(int(w) for w in window_shape)
        self.bucket_caps = tuple(int(c) for c in bucket_caps)
        self.pos_temperature = pos_temperature
        self.out_channels = channels
        self.out_stride = 1
        self.input_projection = nn.Identity() if in_channels == channels else nn.Linear(in_channels, channels)
        rates = torch.linspace(0, drop_path, num_layers).tolist() if num_layers > 1 else [drop_path]
        self.layers = nn.ModuleList(
            TransformerLayer(channels, num_heads, ffn_ratio, activation, pre_norm, rate, mask_padding=True)
            for rate in rates
        )
        self.output_norm = nn.LayerNorm(channels) if pre_norm else nn.Identity()
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def position_embedding(self, voxels: SparseVoxels, shifted: bool) -> torch.Tensor:
        """(M, channels): sinusoidal embedding of the offset (voxels) from the window centre."""
        normalised = window_positions(voxels, self.window_shape, shifted)
        half = torch.tensor([self.window_shape[0] / 2, self.window_shape[1] / 2, voxels.spatial_shape[0] / 2],
                            device=normalised.device)
        axes = 2 if voxels.spatial_shape[0] == 1 else 3
        return sinusoidal_embedding((normalised * half)[:, :axes], self.out_channels, self.pos_temperature)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        with torch.no_grad():
            plans = sst_window_plans(voxels, self.window_shape, self.bucket_caps)
        dtype = voxels.feats.dtype
        pos = {name: self.position_embedding(voxels, name == "shifted").to(dtype) for name in plans}
        batch_idx = voxels.batch_idx
        x = self.input_projection(voxels.feats)
        for index, layer in enumerate(self.layers):
            name = "shifted" if index % 2 else "regular"
            x = layer(x, pos[name], plans[name], batch_idx, voxels.batch_size)
        return voxels.replace_feats(self.output_norm(x))
