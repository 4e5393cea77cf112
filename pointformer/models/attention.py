"""Attention inside the groups of a ``GroupPlan``, and the transformer layer built on it.

Shared by the window transformers (FlatFormer, SST). Token-wise work (the q/k/v and output
projections, the FFN, the norms) runs on the M voxels; only the attention itself runs on the
grouped ``(groups, heads, group size, head dim)`` layout, through
``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointformer.structures import GroupPlan


class GroupAttention(nn.Module):
    """Multi-head self-attention inside every group of a plan.

    Queries and keys see ``x + pos`` and values see ``x`` (DETR / FlatFormer / SST style).
    ``mask_padding``: padded slots (duplicates of a real token of the same group) are masked as
    keys, so a group attends to its real tokens exactly once each; False keeps them (FlatFormer's
    published behaviour, and the fastest kernels). Padded outputs are always discarded.
    """

    def __init__(self, channels: int, num_heads: int, mask_padding: bool = False, dropout: float = 0.0):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"GroupAttention: channels={channels} is not divisible by num_heads={num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.mask_padding = mask_padding
        self.dropout = dropout
        self.query_key = nn.Linear(channels, 2 * channels)
        self.value = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None, plan: GroupPlan) -> torch.Tensor:
        """(M, C) features and (M, C) position embeddings -> (M, C) attention outputs.

        Voxels the plan dropped (SST windows over the largest bucket) get zeros."""
        query_key = self.query_key(x if pos is None else x + pos)
        qkv = torch.cat([query_key, self.value(x)], dim=1)
        grouped = [self._attend(tokens, bucket.padding) for tokens, bucket in
                   zip(plan.gather_buckets(qkv), plan.buckets)]
        return self.out(plan.scatter(grouped))

    def _attend(self, qkv: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """(G, S, 3C) packed q/k/v of one bucket -> (G, S, C)."""
        groups, size, _ = qkv.shape
        head_dim = self.channels // self.num_heads
        q, k, v = qkv.view(groups, size, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if self.mask_padding and groups > 0:
            mask = ~padding.view(groups, 1, 1, size)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return out.transpose(1, 2).reshape(groups, size, self.channels)


def drop_path(x: torch.Tensor, probability: float, batch_idx: torch.Tensor, batch_size: int,
              training: bool) -> torch.Tensor:
    """Stochastic depth per sample of a concatenated batch: each sample's residual branch
    ``x`` (M, C) is zeroed with ``probability`` and the kept ones scaled by 1 / (1 - p)."""
    if not training or probability == 0.0:
        return x
    keep = 1.0 - probability
    sample_kept = torch.rand(batch_size, device=x.device, dtype=x.dtype).add_(keep).floor_()
    return x * (sample_kept / keep).index_select(0, batch_idx).unsqueeze(1)


class TransformerLayer(nn.Module):
    """Group attention + FFN over the voxels of one plan.

    Post-norm as FlatFormer and SST publish it (``x = norm(x + f(x))``), or pre-norm
    (``x = x + f(norm(x))``) with ``pre_norm=True``. FFN width ``ffn_ratio * channels``.
    """

    def __init__(self, channels: int, num_heads: int, ffn_ratio: float = 2.0, activation: str = "gelu",
                 pre_norm: bool = False, drop_path: float = 0.0, mask_padding: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"TransformerLayer.activation must be 'gelu' or 'relu', got {activation!r}")
        hidden = int(round(channels * ffn_ratio))
        self.attention = GroupAttention(channels, num_heads, mask_padding, dropout)
        self.ffn = nn.Sequential(nn.Linear(channels, hidden), nn.GELU() if activation == "gelu" else nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, channels))
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.pre_norm = pre_norm
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None, plan: GroupPlan, batch_idx: torch.Tensor,
                batch_size: int) -> torch.Tensor:
        """(M, C) -> (M, C); ``batch_idx`` (M,) the sample of every voxel (for drop-path)."""
        def residual(branch: torch.Tensor) -> torch.Tensor:
            return drop_path(branch, self.drop_path, batch_idx, batch_size, self.training)

        if self.pre_norm:
            x = x + residual(self.attention(self.norm1(x), pos, plan))
            return x + residual(self.ffn(self.norm2(x)))
        x = self.norm1(x + residual(self.attention(x, pos, plan)))
        return self.norm2(x + residual(self.ffn(x)))


def sinusoidal_embedding(positions: torch.Tensor, channels: int, temperature: float = 10000.0) -> torch.Tensor:
    """(M, A) positions -> (M, channels) sine/cosine features, ``2 * (channels // (2 A))`` per
    axis (sin on even, cos on odd columns, frequencies ``temperature ** (2 (i // 2) / n)``),
    axes one after the other, zero columns to fill ``channels``."""
    count, axes = positions.shape
    per_axis = (channels // (2 * axes)) * 2
    if per_axis == 0:
        raise ValueError(f"sinusoidal_embedding: {channels} channels are too few for {axes} axes")
    column = torch.arange(per_axis, device=positions.device)
    inverse_frequency = temperature ** (2 * torch.div(column, 2, rounding_mode="floor") / per_axis)
    angles = positions.float().unsqueeze(2) / inverse_frequency
    embedding = torch.where(column % 2 == 0, angles.sin(), angles.cos()).flatten(1)
    return F.pad(embedding, (0, channels - axes * per_axis))
