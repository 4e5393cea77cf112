"""sparse_to_bev against ``SparseVoxels.dense()`` reshaped and an explicit per-voxel loop;
SecondFPN against a functional twin (F.conv2d / batch_norm / conv_transpose2d with its weights,
the shortcut written out) and the published FlatFormer / CenterPoint / PointPillars shapes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pointformer.models.bev import sparse_to_bev
from pointformer.models.necks import SecondFPN
from pointformer.structures import SparseVoxels


# ------------------------------------------------------------------ sparse_to_bev
def _random_voxels(generator: torch.Generator, batch_size: int, shape, count: int, channels: int,
                   skip_sample: int | None = None) -> SparseVoxels:
    z, y, x = shape
    cells = torch.randperm(batch_size * z * y * x, generator=generator)
    if skip_sample is not None:
        cells = cells[cells // (z * y * x) != skip_sample]
    cells = cells[:count].sort().values
    coords = torch.stack([cells // (z * y * x), cells // (y * x) % z, cells // x % y, cells % x], dim=1)
    feats = torch.randn(coords.shape[0], channels, generator=generator)
    return SparseVoxels(coords.int(), feats, shape, batch_size)


def _loop_bev(voxels: SparseVoxels) -> torch.Tensor:
    z_count, y_count, x_count = voxels.spatial_shape
    channels = voxels.feats.shape[1]
    out = torch.zeros(voxels.batch_size, channels * z_count, y_count, x_count)
    for (b, z, y, x), row in zip(voxels.coords.tolist(), voxels.feats):
        for c in range(channels):
            out[b, c * z_count + z, y, x] = row[c]
    return out


@pytest.mark.parametrize("shape", [(1, 12, 10), (3, 7, 9), (2, 1, 1)])
@pytest.mark.parametrize("seed", range(2))
def test_sparse_to_bev_matches_dense_and_loop(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    count = max(1, math.prod(shape) // 3)
    voxels = _random_voxels(generator, 3, shape, count, channels=4, skip_sample=1)
    # Shuffled rows: the result must not depend on the order of the voxels.
    order = torch.randperm(voxels.num_voxels, generator=generator)
    shuffled = SparseVoxels(voxels.coords[order], voxels.feats[order], shape, 3)
    bev = sparse_to_bev(shuffled)
    z, y, x = shape
    assert bev.shape == (3, 4 * z, y, x) and bev.is_contiguous()
    assert torch.equal(bev, voxels.dense().reshape(3, 4 * z, y, x))
    assert torch.equal(bev, _loop_bev(voxels))
    assert (bev[1] == 0).all()


def test_sparse_to_bev_empty_and_gradients():
    empty = SparseVoxels(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 6), (2, 5, 4), 2)
    bev = sparse_to_bev(empty)
    assert bev.shape == (2, 12, 5, 4) and (bev == 0).all()

    generator = torch.Generator().manual_seed(3)
    voxels = _random_voxels(generator, 2, (2, 6, 5), 20, channels=3)
    feats = voxels.feats.clone().requires_grad_(True)
    bev = sparse_to_bev(voxels.replace_feats(feats))
    weights = torch.randn(bev.shape, generator=generator)
    (bev * weights).sum().backward()
    b, z, y, x = voxels.coords.long().unbind(1)
    expected = torch.stack([weights[b, c * 2 + z, y, x] for c in range(3)], dim=1)
    assert torch.equal(feats.grad, expected)


def test_sparse_to_bev_rejects_coords_outside_the_grid():
    for coords in ([[0, 0, 0, 5]], [[2, 0, 0, 0]], [[0, -1, 0, 0]]):
        voxels = SparseVoxels(torch.tensor(coords, dtype=torch.int32), torch.ones(1, 2), (1, 3, 5), 2)
        with pytest.raises(ValueError, match="coords"):
            sparse_to_bev(voxels)


# ------------------------------------------------------------------ SecondFPN
def _fpn(in_channels, layer_nums, layer_strides, out_channels, upsample_strides, upsample_channels, shortcut):
    return {"in_channels": in_channels, "layer_nums": layer_nums, "layer_strides": layer_strides,
            "out_channels": out_channels, "upsample_strides": upsample_strides,
            "upsample_channels": upsample_channels, "conv_shortcut": shortcut}


PUBLISHED = {
    # FlatFormer Waymo: BEV of 128 channels at stride 1; SECOND with shortcut; FPN to 2 x 128.
    "flatformer_waymo": _fpn(128, (3, 3), (1, 2), (64, 128), (1, 2), (128, 128), True),
    # CenterPoint nuScenes VoxelNet: 256 BEV channels (128 x 2 z levels) at stride 8.
    "centerpoint_nuscenes": _fpn(256, (5, 5), (1, 2), (128, 256), (1, 2), (256, 256), False),
    # PointPillars (mmdet3d): three stages at strides 2, 4, 8 brought back to 2.
    "pointpillars": _fpn(64, (3, 5, 5), (2, 2, 2), (64, 128, 256), (1, 2, 4), (128, 128, 128), False),
    # Fractional upsample stride: the stride-1 stage is brought down to stride 2.
    "fractional": _fpn(16, (1, 1), (1, 2), (8, 16), (0.5, 1), (8, 8), True),
}
EXPECTED = {"flatformer_waymo": (256, 1), "centerpoint_nuscenes": (512, 1), "pointpillars": (384, 2),
            "fractional": (16, 2)}


def _randomize_norms(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.2)
                norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
                norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.2)
    return module.eval()


def _twin_fpn(neck: SecondFPN, config: dict, bev: torch.Tensor) -> torch.Tensor:
    """The published SECOND + SECONDFPN computation written out with functional ops."""

    def bn(x, norm):
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)

    x = bev
    outputs = []
    for i, stride in enumerate(config["layer_strides"]):
        for j in range(config["layer_nums"][i] + 1):
            conv, norm = neck.stages[i][j][0], neck.stages[i][j][1]
            y = F.relu(bn(F.conv2d(x, conv.weight, stride=stride if j == 0 else 1, padding=1), norm))
            same_shape = j > 0 or (stride == 1 and x.shape[1] == y.shape[1])
            x = x + y if config["conv_shortcut"] and same_shape else y
        layer, norm = neck.deblocks[i][0], neck.deblocks[i][1]
        up = config["upsample_strides"][i]
        if up > 1:
            y = F.conv_transpose2d(x, layer.weight, stride=up)
        else:
            factor = round(1 / up)
            y = F.conv2d(x, layer.weight, stride=factor)
        outputs.append(F.relu(bn(y, norm)))
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_second_fpn_published_configs_match_functional_twin(name):
    config = PUBLISHED[name]
    torch.manual_seed(0)
    neck = _randomize_norms(SecondFPN(**config), 1)
    channels, stride = EXPECTED[name]
    assert neck.out_channels == channels and neck.out_stride == stride
    assert [len(stage) for stage in neck.stages] == [n + 1 for n in config["layer_nums"]]
    size = 16 if name != "pointpillars" else 24
    bev = torch.randn(2, config["in_channels"], size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = neck(bev)
        twin = _twin_fpn(neck, config, bev)
    assert out.shape == (2, channels, size // stride, size // stride)
    torch.testing.assert_close(out, twin, rtol=1e-4, atol=1e-4)


def test_second_fpn_shortcut_changes_the_output():
    """Same weights with and without the shortcut give different maps (it is really added)."""
    config = dict(PUBLISHED["flatformer_waymo"])
    torch.manual_seed(0)
    with_shortcut = _randomize_norms(SecondFPN(**config), 1)
    config["conv_shortcut"] = False
    without = _randomize_norms(SecondFPN(**config), 1)
    without.load_state_dict(with_shortcut.state_dict())
    bev = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        difference = (with_shortcut(bev) - without(bev)).abs().max()
    assert difference > 1e-2


def test_second_fpn_layers_norms_and_init():
    neck = SecondFPN(**PUBLISHED["flatformer_waymo"])
    first = neck.stages[1][0][0]
    assert isinstance(first, torch.nn.Conv2d) and first.stride == (2, 2) and first.bias is None
    assert isinstance(neck.deblocks[0][0], torch.nn.Conv2d) and neck.deblocks[0][0].kernel_size == (1, 1)
    up = neck.deblocks[1][0]
    assert isinstance(up, torch.nn.ConvTranspose2d) and up.stride == (2, 2) and up.kernel_size == (2, 2)
    norms = [m for m in neck.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4 + 4 + 2 and all(n.eps == 1e-3 and n.momentum == 0.01 for n in norms)
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * k * k)).
    conv = neck.stages[1][1][0]
    expected_std = math.sqrt(2.0 / (128 * 9))
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.05
    assert abs(conv.weight.mean().item()) < 0.1 * expected_std


def test_second_fpn_trains():
    neck = SecondFPN(**PUBLISHED["fractional"]).train()
    out = neck(torch.randn(2, 16, 8, 8))
    out.square().mean().backward()
    for name, parameter in neck.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_second_fpn_rejects_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="one integer output stride"):
        SecondFPN(64, (1, 1), (1, 2), (8, 8), (1, 1), (8, 8))
    with pytest.raises(ValueError, match="upsample_strides"):
        SecondFPN(64, (1, 1), (1, 2), (8, 8), (1, 1.5), (8, 8))
    with pytest.raises(ValueError, match="one length"):
        SecondFPN(64, (1, 1), (1, 2), (8,), (1, 2), (8, 8))
    with pytest.raises(ValueError, match="layer_strides"):
        SecondFPN(64, (1, 1), (0, 2), (8, 8), (1, 2), (8, 8))
    neck = SecondFPN(**PUBLISHED["flatformer_waymo"])
    with pytest.raises(ValueError, match="multiples"):
        neck(torch.zeros(1, 128, 9, 8))
    with pytest.raises(ValueError, match="bev must be"):
        neck(torch.zeros(1, 64, 8, 8))
