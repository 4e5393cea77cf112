"""SparseResNet8x (spconv, CPU) against a dense twin: the same network written with F.conv3d on a
dense grid, submanifold convolutions masked to their input sites and strided ones to the sites a
max-pool of the occupancy reaches, BatchNorm and residuals by hand. Plus shapes on a nuScenes-like
grid, training on CPU, batch independence and empty samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pointformer.models.backbones.sparse_resnet import SparseResNet8x
from pointformer.models.bev import sparse_to_bev
from pointformer.structures import SparseVoxels

# nuScenes' CenterPoint voxels (0.1 m, 0.2 m over z in [-5, 3]) on a 6.4 m x 6.4 m patch.
NUSCENES_LIKE_SHAPE = (40, 64, 64)
DOWNSAMPLE_PADDINGS = ((1, 1, 1), (1, 1, 1), (0, 1, 1))


def _random_voxels(generator: torch.Generator, shape, counts, channels: int, dtype=torch.float32) -> SparseVoxels:
    """``counts[b]`` distinct random voxels in sample b, rows sorted by (b, z, y, x)."""
    z, y, x = shape
    rows = []
    for b, count in enumerate(counts):
        cells = torch.randperm(z * y * x, generator=generator)[:count].sort().values
        rows.append(torch.stack([torch.full_like(cells, b), cells // (y * x), cells // x % y, cells % x], dim=1))
    coords = torch.cat(rows).int() if rows else torch.zeros(0, 4, dtype=torch.int32)
    feats = torch.randn(coords.shape[0], channels, generator=generator, dtype=dtype)
    return SparseVoxels(coords, feats, shape, len(counts))


def _randomize_norms(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, torch.nn.BatchNorm1d):
                norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
                norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
                norm.weight.copy_(torch.rand(norm.num_features, generator=generator) * 0.5 + 0.5)
                norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
    return module.eval()


# ------------------------------------------------------------------ dense twin
def _dense_weight(conv) -> torch.Tensor:
    """spconv weight (out, kz, ky, kx, in) -> conv3d weight (out, in, kz, ky, kx)."""
    return conv.weight.permute(0, 4, 1, 2, 3)


def _bn(x: torch.Tensor, norm, mask: torch.Tensor) -> torch.Tensor:
    shape = (1, -1, 1, 1, 1)
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return ((x - norm.running_mean.view(shape)) * scale.view(shape) + norm.bias.view(shape)) * mask


def _subm(x, conv, mask):
    return F.conv3d(x, _dense_weight(conv), padding=1) * mask


def _twin_forward(net: SparseResNet8x, voxels: SparseVoxels) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense (B, C, Z', Y', X') output and its (B, 1, Z', Y', X') occupancy, written out."""
    z, y, x = voxels.spatial_shape
    padded = SparseVoxels(voxels.coords, voxels.feats, (z + 1, y, x), voxels.batch_size)
    h = padded.dense()
    mask = padded.replace_feats(torch.ones(voxels.num_voxels, 1, dtype=h.dtype)).dense()
    conv, norm = net.conv_input[0], net.conv_input[1]
    h = F.relu(_bn(_subm(h, conv, mask), norm, mask))
    for i, stage in enumerate(net.stages):
        layers = list(stage)
        if i > 0:
            conv, norm = layers[0], layers[1]
            padding = DOWNSAMPLE_PADDINGS[i - 1]
            mask = F.max_pool3d(mask, 3, stride=2, padding=padding)
            h = F.conv3d(h, _dense_weight(conv), stride=2, padding=padding) * mask
            h = F.relu(_bn(h, norm, mask))
            layers = layers[3:]
        for block in layers:
            inner = F.relu(_bn(_subm(h, block.conv1, mask), block.norm1, mask))
            h = F.relu(_bn(_subm(inner, block.conv2, mask), block.norm2, mask) + h)
    conv, norm = net.conv_out[0], net.conv_out[1]
    mask = F.max_pool3d(mask, (3, 1, 1), stride=(2, 1, 1))
    h = F.relu(_bn(F.conv3d(h, _dense_weight(conv), stride=(2, 1, 1)) * mask, norm, mask))
    return h, mask


@pytest.mark.parametrize("seed", range(2))
def test_matches_dense_twin(seed):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    shape = (24, 16, 16)  # the smallest z (24 + 1 padding) that leaves one output level
    net = _randomize_norms(SparseResNet8x(4, shape).double(), seed)
    assert net.output_shape == (1, 2, 2)
    voxels = _random_voxels(generator, shape, (150, 0, 60), channels=4, dtype=torch.float64)
    with torch.no_grad():
        out = net(voxels)
        twin, mask = _twin_forward(net, voxels)
    assert out.spatial_shape == net.output_shape == tuple(twin.shape[2:])
    active = mask[:, 0] > 0
    assert torch.equal(out.coords.long(), torch.nonzero(active))  # same sites, sorted (b, z, y, x)
    b, z, y, x = out.coords.long().unbind(1)
    torch.testing.assert_close(out.feats, twin[b, :, z, y, x], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ shapes, training, batches
def test_nuscenes_like_grid_shapes_and_training_on_cpu():
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    net = SparseResNet8x(5, NUSCENES_LIKE_SHAPE).train()
    assert net.sparse_shape == (41, 64, 64)
    assert net.output_shape == (2, 8, 8) and net.out_stride == 8 and net.out_channels == 128
    assert net.bev_channels == 256
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 1 + 4 * 2 * 2 + 3 + 1 and all(n.eps == 1e-3 and n.momentum == 0.01 for n in norms)
    voxels = _random_voxels(generator, NUSCENES_LIKE_SHAPE, (900, 600), channels=5)
    feats = voxels.feats.clone().requires_grad_(True)
    out = net(voxels.replace_feats(feats))
    assert out.spatial_shape == (2, 8, 8) and out.batch_size == 2 and out.feats.shape[1] == 128
    assert out.coords.dtype == torch.int32
    assert len({tuple(c) for c in out.coords.tolist()}) == out.num_voxels
    bev = sparse_to_bev(out)
    assert bev.shape == (2, net.bev_channels, 8, 8)
    weights = torch.randn(bev.shape, generator=generator)
    (bev * weights).sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0


def test_published_nuscenes_grid_output_shape():
    """CenterPoint nuScenes 0.1 m: (40, 1024, 1024) -> (2, 128, 128); 0.075 m: (40, 1440, 1440) -> (2, 180, 180)."""
    assert SparseResNet8x(5, (40, 1024, 1024)).output_shape == (2, 128, 128)
    assert SparseResNet8x(5, (40, 1440, 1440)).output_shape == (2, 180, 180)
    assert SparseResNet8x(4, (40, 1600, 1408)).output_shape == (2, 200, 176)  # OpenPCDet KITTI


def test_batch_independence_in_eval():
    generator = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    net = _randomize_norms(SparseResNet8x(5, NUSCENES_LIKE_SHAPE), 4)
    batch = _random_voxels(generator, NUSCENES_LIKE_SHAPE, (500, 700, 0), channels=5)
    mine = batch.coords[:, 0] == 1
    alone = SparseVoxels(batch.coords[mine] * torch.tensor([0, 1, 1, 1], dtype=torch.int32), batch.feats[mine],
                         NUSCENES_LIKE_SHAPE, 1)
    with torch.no_grad():
        together = net(batch)
        single = net(alone)
    rows = together.coords[:, 0] == 1
    assert torch.equal(together.coords[rows][:, 1:], single.coords[:, 1:])
    torch.testing.assert_close(together.feats[rows], single.feats, rtol=1e-5, atol=1e-5)
    assert not (together.coords[:, 0] == 2).any()


def test_empty_samples_and_empty_batch():
    torch.manual_seed(5)
    net = _randomize_norms(SparseResNet8x(3, NUSCENES_LIKE_SHAPE), 5)
    empty = SparseVoxels(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 3), NUSCENES_LIKE_SHAPE, 2)
    out = net(empty)
    assert out.num_voxels == 0 and out.feats.shape == (0, 128)
    assert out.spatial_shape == net.output_shape and out.batch_size == 2
    assert sparse_to_bev(out).shape == (2, 256, 8, 8)
    voxels = _random_voxels(torch.Generator().manual_seed(5), NUSCENES_LIKE_SHAPE, (0, 300, 0), channels=3)
    with torch.no_grad():
        out = net(voxels)
    assert set(out.coords[:, 0].tolist()) == {1} and out.batch_size == 3


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="too small"):
        SparseResNet8x(4, (23, 64, 64))
    with pytest.raises(ValueError, match="spatial_shape"):
        SparseResNet8x(4, (40, 64))
    with pytest.raises(ValueError, match="blocks_per_stage"):
        SparseResNet8x(4, (40, 64, 64), blocks_per_stage=(2, 2, 2))
    net = SparseResNet8x(4, (40, 64, 64))
    with pytest.raises(ValueError, match="spatial_shape"):
        net(SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.zeros(1, 4), (41, 64, 64), 1))
    with pytest.raises(ValueError, match="feats"):
        net(SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.zeros(1, 5), (40, 64, 64), 1))
