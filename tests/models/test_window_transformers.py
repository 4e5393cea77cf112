"""Group attention, FlatFormer and the SST-style backbone against explicit twins and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointformer.models.attention import GroupAttention, TransformerLayer, drop_path, sinusoidal_embedding
from pointformer.models.backbones.flatformer import FlatFormer
from pointformer.models.backbones.sst import SSTBackbone
from pointformer.ops import flat_window_plan, sst_window_plan
from pointformer.structures import SparseVoxels


def random_voxels(seed: int, counts: list[int], shape=(1, 40, 40), channels: int = 16) -> SparseVoxels:
    """Distinct random cells, ``counts[b]`` in sample b, rows sorted by (b, z, y, x)."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    rows = []
    for b, count in enumerate(counts):
        cells = np.sort(rng.choice(depth * height * width, count, replace=False))
        rows.append(np.stack([np.full(count, b), cells // (height * width), cells // width % height, cells % width], 1))
    coords = torch.from_numpy(np.concatenate(rows).astype(np.int32)) if rows else torch.zeros((0, 4), dtype=torch.int32)
    feats = torch.from_numpy(rng.standard_normal((len(coords), channels)).astype(np.float32))
    return SparseVoxels(coords, feats, shape, len(counts))


def sample_of(voxels: SparseVoxels, b: int) -> SparseVoxels:
    keep = voxels.coords[:, 0] == b
    coords = voxels.coords[keep].clone()
    coords[:, 0] = 0
    return SparseVoxels(coords, voxels.feats[keep], voxels.spatial_shape, 1)


def attention_loop(module: GroupAttention, x: torch.Tensor, pos: torch.Tensor, plan) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v written out group by group, head by head."""
    heads, channels = module.num_heads, module.channels
    dim = channels // heads
    wq, wk = module.query_key.weight[:channels], module.query_key.weight[channels:]
    bq, bk = module.query_key.bias[:channels], module.query_key.bias[channels:]
    out = torch.zeros_like(x, dtype=torch.float64)
    for bucket in plan.buckets:
        index = bucket.index.view(bucket.num_groups, bucket.group_size)
        for group in range(bucket.num_groups):
            seen = set()
            for slot in range(bucket.group_size):
                voxel = int(index[group, slot])
                if bucket.padding[group, slot] or voxel in seen:
                    continue
                seen.add(voxel)
                keys = [int(index[group, s]) for s in range(bucket.group_size)
                        if not (module.mask_padding and bucket.padding[group, s])]
                token = []
                for h in range(heads):
                    cols = slice(h * dim, (h + 1) * dim)
                    q = ((x[voxel] + pos[voxel]) @ wq.T + bq)[cols].double()
                    scores = [float(q @ (((x[k] + pos[k]) @ wk.T + bk)[cols]).double()) / math.sqrt(dim) for k in keys]
                    weights = np.exp(np.array(scores) - max(scores))
                    weights /= weights.sum()
                    values = [(x[k] @ module.value.weight.T + module.value.bias)[cols].double() for k in keys]
                    token.append(sum(w * v for w, v in zip(weights, values)))
                out[voxel] = torch.cat(token)
    return (out.float() @ module.out.weight.T + module.out.bias)


@pytest.mark.parametrize("mask_padding", [False, True])
def test_group_attention_equals_explicit_loop(mask_padding):
    torch.manual_seed(0)
    voxels = random_voxels(1, [23, 5, 0, 1], channels=8)
    plan = flat_window_plan(voxels, (5, 5), group_size=7, order="y_shift")
    module = GroupAttention(8, num_heads=2, mask_padding=mask_padding).eval()
    pos = torch.randn_like(voxels.feats)
    with torch.no_grad():
        got = module(voxels.feats, pos, plan)
        expected = attention_loop(module, voxels.feats, pos, plan)
    assert torch.allclose(got, expected, atol=1e-5)


def test_group_attention_on_sst_buckets_equals_loop_and_dropped_voxels_get_zeros():
    torch.manual_seed(1)
    voxels = random_voxels(2, [60, 9], shape=(1, 12, 12), channels=8)
    plan = sst_window_plan(voxels, (6, 6), bucket_caps=(4, 16))
    assert plan.num_dropped > 0 and len(plan.buckets) == 2
    module = GroupAttention(8, num_heads=4, mask_padding=True).eval()
    pos = torch.randn_like(voxels.feats)
    with torch.no_grad():
        got = module(voxels.feats, pos, plan)
        expected = attention_loop(module, voxels.feats, pos, plan)
    kept = plan.kept
    assert torch.allclose(got[kept], expected[kept], atol=1e-5)
    assert torch.allclose(got[~kept], module.out.bias.expand(int((~kept).sum()), -1))


def test_masking_changes_results_only_for_groups_with_padding():
    torch.manual_seed(2)
    voxels = random_voxels(3, [11], channels=8)  # last group: 3 real + 1 repeat
    plan = flat_window_plan(voxels, (5, 5), group_size=4)
    masked, unmasked = GroupAttention(8, 2, mask_padding=True).eval(), GroupAttention(8, 2).eval()
    unmasked.load_state_dict(masked.state_dict())
    with torch.no_grad():
        a, b = masked(voxels.feats, None, plan), unmasked(voxels.feats, None, plan)
    bucket = plan.buckets[0]
    padded_groups = bucket.padding.any(1)
    in_padded = torch.zeros(voxels.num_voxels, dtype=torch.bool)
    in_padded[bucket.index.view(bucket.num_groups, -1)[padded_groups].flatten()] = True
    assert torch.allclose(a[~in_padded], b[~in_padded], atol=1e-6)
    assert not torch.allclose(a[in_padded], b[in_padded], atol=1e-4)


def test_sinusoidal_embedding_matches_formula():
    positions = torch.tensor([[0.0, 3.0], [467.0, 1.5]])
    got = sinusoidal_embedding(positions, 10, temperature=100.0)
    per_axis = 4
    for row in range(2):
        for axis in range(2):
            for i in range(per_axis):
                angle = positions[row, axis].item() / 100.0 ** (2 * (i // 2) / per_axis)
                expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
                assert got[row, axis * per_axis + i].item() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(got[:, 8:], torch.zeros(2, 2))
    with pytest.raises(ValueError, match="too few"):
        sinusoidal_embedding(positions, 3)


def test_drop_path_drops_whole_samples_and_keeps_expectation():
    torch.manual_seed(3)
    batch_idx = torch.tensor([0, 0, 1, 1, 1, 2])
    x = torch.ones(6, 4)
    out = drop_path(x, 0.5, batch_idx, 3, training=True)
    for b in range(3):
        rows = out[batch_idx == b]
        assert bool((rows == 0).all()) or bool((rows == 2).all())
    assert torch.equal(drop_path(x, 0.5, batch_idx, 3, training=False), x)
    many = torch.stack([drop_path(torch.ones(1, 1), 0.3, torch.zeros(1, dtype=torch.long), 1, True)
                        for _ in range(4000)])
    assert float(many.mean()) == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_transformer_layer_norm_placement(pre_norm):
    torch.manual_seed(4)
    voxels = random_voxels(5, [12], channels=8)
    plan = flat_window_plan(voxels, (5, 5), 6)
    layer = TransformerLayer(8, 2, pre_norm=pre_norm).eval()
    x = voxels.feats
    with torch.no_grad():
        got = layer(x, None, plan, voxels.batch_idx, 1)
        if pre_norm:
            h = x + layer.attention(layer.norm1(x), None, plan)
            expected = h + layer.ffn(layer.norm2(h))
        else:
            h = layer.norm1(x + layer.attention(x, None, plan))
            expected = layer.norm2(h + layer.ffn(h))
    assert torch.allclose(got, expected, atol=1e-6)


def small_flatformer(**kwargs) -> FlatFormer:
    options = dict(in_channels=16, channels=16, num_heads=2, num_blocks=1, window_shape=(5, 5), group_size=9)
    options.update(kwargs)
    return FlatFormer(**options).eval()


@pytest.mark.parametrize("shape", [(1, 40, 40), (4, 24, 24)])
def test_flatformer_batch_independence(shape):
    torch.manual_seed(5)
    voxels = random_voxels(6, [50, 3, 0, 1, 120], shape=shape)
    model = small_flatformer()
    with torch.no_grad():
        batched = model(voxels)
        for b in range(voxels.batch_size):
            alone = model(sample_of(voxels, b))
            assert torch.allclose(batched.feats[voxels.coords[:, 0] == b], alone.feats, atol=1e-5)
    assert torch.equal(batched.coords, voxels.coords)


@pytest.mark.parametrize("mask_padding", [False, True])
def test_flatformer_output_does_not_depend_on_input_order(mask_padding):
    torch.manual_seed(6)
    voxels = random_voxels(7, [70, 11])
    model = small_flatformer(mask_padding=mask_padding)
    permutation = torch.randperm(voxels.num_voxels)
    shuffled = SparseVoxels(voxels.coords[permutation], voxels.feats[permutation], voxels.spatial_shape, 2)
    with torch.no_grad():
        reference, out = model(voxels), model(shuffled)
    assert torch.allclose(out.feats, reference.feats[permutation], atol=1e-5)


def test_flatformer_uses_all_four_orders_and_the_position_embedding():
    """A model whose orders are all 'x' must differ: the other orders group other voxels."""
    torch.manual_seed(7)
    voxels = random_voxels(8, [80])
    model = small_flatformer()
    only_x = small_flatformer(orders=("x", "x", "x", "x"))
    only_x.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(model(voxels).feats, only_x(voxels).feats, atol=1e-4)
        # Two windows (2 x 5 voxels) along x and y keep every group and snake direction: only
        # the position embedding tells the clouds apart.
        moved = SparseVoxels(voxels.coords + torch.tensor([0, 0, 10, 10], dtype=torch.int32), voxels.feats,
                             (1, 50, 50), 1)
        assert not torch.allclose(model(voxels).feats, model(moved).feats, atol=1e-4)
        model.position_embedding = lambda v: torch.zeros_like(v.feats)
        assert torch.allclose(model(voxels).feats, model(moved).feats, atol=1e-5)


def test_flatformer_published_defaults_and_gradients():
    model = FlatFormer()
    assert (model.out_channels, len(model.layers), model.window_shape, model.group_size) == (128, 8, (13, 13), 144)
    assert model.layers[0].attention.num_heads == 8 and model.layers[0].ffn[0].out_features == 256
    voxels = random_voxels(9, [300, 20], shape=(1, 60, 60), channels=128)
    model.train()
    model(voxels).feats.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_flatformer_handles_empty_batches_and_one_voxel():
    model = small_flatformer()
    with torch.no_grad():
        assert model(random_voxels(0, [0, 0])).feats.shape == (0, 16)
        assert model(random_voxels(0, [1])).feats.shape == (1, 16)


def test_sst_batch_independence_and_order_independence():
    torch.manual_seed(8)
    voxels = random_voxels(10, [90, 2, 0, 40], shape=(1, 30, 30))
    model = SSTBackbone(in_channels=16, channels=16, num_heads=2, num_layers=2, window_shape=(6, 6),
                        bucket_caps=(8, 16, 36)).eval()
    with torch.no_grad():
        batched = model(voxels)
        for b in range(voxels.batch_size):
            alone = model(sample_of(voxels, b))
            assert torch.allclose(batched.feats[voxels.coords[:, 0] == b], alone.feats, atol=1e-5)
        permutation = torch.randperm(voxels.num_voxels)
        shuffled = SparseVoxels(voxels.coords[permutation], voxels.feats[permutation], voxels.spatial_shape, 4)
        assert torch.allclose(model(shuffled).feats, batched.feats[permutation], atol=1e-5)


def test_sst_defaults_match_flatformer_size():
    flat, sst = FlatFormer(), SSTBackbone()
    assert sum(p.numel() for p in flat.parameters()) == sum(p.numel() for p in sst.parameters())
    assert sst.window_shape == flat.window_shape and len(sst.layers) == len(flat.layers)
