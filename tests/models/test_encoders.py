"""DynamicVFE and MeanVFE against explicit Python loop twins: each twin assigns points to voxels
itself (float32 arithmetic of the grid rule, per point), then walks voxel by voxel and point by
point through the decorations, Linear + eval BatchNorm + ReLU layers and max pools, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pointformer.models.encoders import DynamicVFE, EncodedVoxels, MeanVFE
from pointformer.ops import VoxelGrid
from pointformer.structures import PointBatch

VOXEL_SIZE = (0.25, 0.5, 1.0)  # exactly representable: boundaries x0 + k * size are exact
RANGE = (-2.0, -4.0, -3.0, 2.0, 4.0, 1.0)  # 16 x 16 x 4 voxels
PILLAR_SIZE = (0.32, 0.32, 6.0)
PILLAR_RANGE = (-3.2, -3.2, -2.0, 3.2, 3.2, 4.0)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


# ------------------------------------------------------------------ twins
def _twin_voxel_of_point(point: np.ndarray, grid: VoxelGrid):
    """(z, y, x) of one point, or None when dropped (NaN/inf or outside the range)."""
    index = []
    for axis in range(3):
        p = np.float32(point[axis])
        if not math.isfinite(p):
            return None
        lo, hi = np.float32(grid.point_cloud_range[axis]), np.float32(grid.point_cloud_range[axis + 3])
        i = math.floor(np.float32(p - lo) / np.float32(grid.voxel_size[axis]))
        if not (lo <= p < hi and 0 <= i < grid.spatial_shape[2 - axis]):
            return None
        index.append(i)
    return index[2], index[1], index[0]


def _twin_groups(clouds: list[np.ndarray], grid: VoxelGrid) -> dict[tuple[int, int, int, int], list[int]]:
    """Sorted {(b, z, y, x): [global point rows]}."""
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    row = 0
    for b, cloud in enumerate(clouds):
        for point in cloud:
            voxel = _twin_voxel_of_point(point, grid)
            if voxel is not None:
                groups.setdefault((b, *voxel), []).append(row)
            row += 1
    return dict(sorted(groups.items()))


def _layer_params(encoder: DynamicVFE) -> list[tuple[np.ndarray, ...]]:
    params = []
    for layer in encoder.vfe_layers:
        linear, norm = layer[0], layer[1]
        params.append(tuple(t.detach().double().numpy() for t in (
            linear.weight, norm.running_mean, norm.running_var, norm.weight, norm.bias)) + (norm.eps,))
    return params


def _twin_dynamic_vfe(encoder: DynamicVFE, clouds: list[np.ndarray]):
    """(coords (M, 4), voxel feats (M, C), point feats (N, C)) by explicit loops, float64."""
    grid = encoder.grid
    points = np.concatenate(clouds).astype(np.float64) if clouds else np.zeros((0, encoder.in_channels))
    params = _layer_params(encoder)
    groups = _twin_groups(clouds, grid)
    size = np.asarray(grid.voxel_size, np.float64)
    low = np.asarray(grid.point_cloud_range[:3], np.float64)
    point_feats = np.zeros((points.shape[0], encoder.out_channels))
    voxel_feats = []
    for (b, z, y, x), rows in groups.items():
        members = points[rows]
        mean = sum(p[:3] for p in members) / len(rows)
        centre = (np.array([x, y, z], np.float64) + 0.5) * size + low
        features = []
        for p in members:
            decorated = list(p)
            if encoder.with_cluster_center:
                decorated += list(p[:3] - mean)
            if encoder.with_voxel_center:
                decorated += list(p[:3] - centre)
            if encoder.with_distance:
                decorated.append(math.sqrt(sum(v * v for v in p[:3])))
            features.append(np.array(decorated))
        for k, (weight, mean_bn, var_bn, gamma, beta, eps) in enumerate(params):
            outputs = []
            for f in features:
                h = weight @ f
                h = (h - mean_bn) / np.sqrt(var_bn + eps) * gamma + beta
                outputs.append(np.maximum(h, 0.0))
            pooled = np.max(np.stack(outputs), axis=0)
            if k < len(params) - 1:
                features = [np.concatenate([o, pooled]) for o in outputs]
        for row, out in zip(rows, outputs):
            point_feats[row] = out
        voxel_feats.append(pooled)
    coords = np.array(list(groups), np.int64).reshape(-1, 4)
    return coords, np.array(voxel_feats).reshape(-1, encoder.out_channels), point_feats


def _twin_mean(clouds: list[np.ndarray], grid: VoxelGrid, channels: int):
    groups = _twin_groups(clouds, grid)
    points = np.concatenate(clouds).astype(np.float64)
    feats = [sum(points[r] for r in rows) / len(rows) for rows in groups.values()]
    return np.array(list(groups), np.int64).reshape(-1, 4), np.array(feats).reshape(-1, channels)


# ------------------------------------------------------------------ helpers
def _randomize(encoder: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, eval mode (so BN uses its running stats)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
    return encoder.eval()


def _cloud(generator: torch.Generator, count: int, columns: int = 5, low=RANGE[:3], high=RANGE[3:]) -> torch.Tensor:
    low_t, high_t = torch.tensor(low), torch.tensor(high)
    xyz = torch.rand(count, 3, generator=generator) * (high_t - low_t) + low_t
    return torch.cat([xyz, torch.rand(count, columns - 3, generator=generator)], dim=1)


def _check_against_twin(encoder: DynamicVFE, clouds: list[torch.Tensor], with_no_grad: bool = True) -> EncodedVoxels:
    batch = PointBatch.from_list(clouds)
    coords, voxel_feats, point_feats = _twin_dynamic_vfe(encoder, [c.numpy() for c in clouds])
    runs = [encoder(batch)]
    if with_no_grad:
        with torch.no_grad():  # numba pooling instead of torch's
            runs.append(encoder(batch))
    for encoded in runs:
        assert encoded.voxels.coords.dtype == torch.int32
        assert encoded.voxels.batch_size == len(clouds)
        assert encoded.voxels.spatial_shape == encoder.spatial_shape
        np.testing.assert_array_equal(encoded.voxels.coords.numpy(), coords)
        torch.testing.assert_close(encoded.voxels.feats.double(), torch.from_numpy(voxel_feats), **TOLERANCE)
        torch.testing.assert_close(encoded.point_feats.double(), torch.from_numpy(point_feats), **TOLERANCE)
        # point_to_voxel indexes the voxel whose coords the twin gave the point.
        rows = {row: i for i, rows in enumerate(_twin_groups([c.numpy() for c in clouds], encoder.grid).values())
                for row in rows}
        expected = [rows.get(r, -1) for r in range(batch.points.shape[0])]
        assert encoded.point_to_voxel.tolist() == expected
    return runs[0]


# ------------------------------------------------------------------ DynamicVFE
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("options", [
    {},
    {"with_distance": True},
    {"with_cluster_center": False, "feat_channels": (16, 32, 8)},
    {"with_voxel_center": False, "with_distance": True, "feat_channels": (24,)},
])
def test_dynamic_vfe_matches_loop_twin_on_random_clouds(seed, options):
    generator = torch.Generator().manual_seed(seed)
    encoder = _randomize(DynamicVFE(5, VOXEL_SIZE, RANGE, **options), seed)
    # Clustered clouds so that many voxels hold several points.
    clouds = [_cloud(generator, n, low=(-1.0, -2.0, -3.0), high=(0.5, 1.0, 0.0)) for n in (120, 37, 64)]
    _check_against_twin(encoder, clouds)


def test_dynamic_vfe_published_waymo_pillars():
    """FlatFormer's Waymo encoder: 5 columns, 0.32 m pillars, [64, 128], both centre offsets."""
    generator = torch.Generator().manual_seed(7)
    encoder = _randomize(DynamicVFE(5, PILLAR_SIZE, PILLAR_RANGE), 7)
    assert encoder.spatial_shape == (1, 20, 20)
    assert encoder.decorated_channels == 11 and encoder.out_channels == 128
    assert [layer[0].in_features for layer in encoder.vfe_layers] == [11, 128]
    norm = encoder.vfe_layers[0][1]
    assert norm.eps == 1e-3 and norm.momentum == 0.01 and encoder.vfe_layers[0][0].bias is None
    clouds = [_cloud(generator, 300, low=PILLAR_RANGE[:3], high=PILLAR_RANGE[3:]) for _ in range(2)]
    _check_against_twin(encoder, clouds)


def test_dynamic_vfe_one_point_and_one_voxel():
    encoder = _randomize(DynamicVFE(4, VOXEL_SIZE, RANGE, feat_channels=(8, 16)), 1)
    encoded = _check_against_twin(encoder, [torch.tensor([[0.1, 0.2, -0.5, 0.7]])])
    assert encoded.voxels.num_voxels == 1
    # Many points in one voxel: the cluster offsets sum to zero, the max pools over all of them.
    generator = torch.Generator().manual_seed(2)
    inside = torch.tensor([0.0, 0.5, 0.0]) + torch.rand(50, 3, generator=generator) * torch.tensor([0.25, 0.5, 1.0])
    cloud = torch.cat([inside.clamp(max=torch.tensor([0.2499, 0.9999, 0.9999])), torch.rand(50, 1)], dim=1)
    encoded = _check_against_twin(encoder, [cloud])
    assert encoded.voxels.num_voxels == 1 and encoded.voxels.coords.tolist() == [[0, 3, 9, 8]]


def test_dynamic_vfe_points_on_voxel_boundaries():
    """Points exactly on voxel faces go to the voxel above; the max edge of the range is out."""
    encoder = _randomize(DynamicVFE(4, VOXEL_SIZE, RANGE, feat_channels=(8, 16)), 3)
    xs = [-2.0, -1.75, -0.25, 0.0, 0.25, 1.75, 2.0]
    ys = [-4.0, -0.5, 0.0, 3.5, 4.0]
    zs = [-3.0, -1.0, 0.0, 1.0]
    cloud = torch.tensor([[x, y, z, 0.5] for x in xs for y in ys for z in zs])
    encoded = _check_against_twin(encoder, [cloud])
    on_max_edge = (cloud[:, 0] == 2.0) | (cloud[:, 1] == 4.0) | (cloud[:, 2] == 1.0)
    assert (encoded.point_to_voxel[on_max_edge] == -1).all()
    assert (encoded.point_to_voxel[~on_max_edge] >= 0).all()


def test_dynamic_vfe_drops_out_of_range_and_non_finite_points():
    generator = torch.Generator().manual_seed(4)
    encoder = _randomize(DynamicVFE(4, VOXEL_SIZE, RANGE, feat_channels=(8, 16)), 4)
    cloud = _cloud(generator, 80, columns=4)
    bad = torch.tensor([
        [float("nan"), 0.0, 0.0, 0.1], [0.0, float("inf"), 0.0, 0.2], [0.0, 0.0, -float("inf"), 0.3],
        [5.0, 0.0, 0.0, 0.4], [0.0, -4.5, 0.0, 0.5], [0.0, 0.0, 1e30, 0.6], [-1e30, 0.0, 0.0, 0.7],
    ])
    mixed = torch.cat([cloud[:40], bad, cloud[40:]])
    encoded = _check_against_twin(encoder, [mixed])
    dropped = encoded.point_to_voxel == -1
    assert dropped.sum() == len(bad) and dropped[40:47].all()
    assert (encoded.point_feats[dropped] == 0).all()
    clean = encoder(PointBatch.from_list([cloud]))
    assert torch.equal(encoded.voxels.feats, clean.voxels.feats)


def test_dropped_points_stay_out_of_batchnorm_statistics():
    """In training, NaN / out-of-range points change neither the output nor the running stats."""
    generator = torch.Generator().manual_seed(5)
    cloud = _cloud(generator, 60, columns=4)
    bad = torch.tensor([[float("nan"), 0.0, 0.0, 0.0], [100.0, 100.0, 100.0, 5.0]])
    results = []
    for points in (cloud, torch.cat([bad[:1], cloud, bad[1:]])):
        torch.manual_seed(0)
        encoder = DynamicVFE(4, VOXEL_SIZE, RANGE, feat_channels=(8, 16)).train()
        encoded = encoder(PointBatch.from_list([points]))
        results.append((encoded.voxels.feats.detach(), [m.running_mean.clone() for m in encoder.modules()
                                                        if isinstance(m, torch.nn.BatchNorm1d)]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)
    assert torch.isfinite(results[1][0]).all()


def test_dynamic_vfe_empty_cloud_and_empty_samples():
    encoder = _randomize(DynamicVFE(4, VOXEL_SIZE, RANGE, feat_channels=(8, 16)), 6)
    for batch in (PointBatch.from_list([torch.zeros(0, 4)]), PointBatch.from_list([torch.zeros(0, 4)] * 3),
                  PointBatch.from_list([torch.tensor([[9.0, 9.0, 9.0, 0.0], [float("nan"), 0.0, 0.0, 0.0]])])):
        for training in (False, True):
            encoded = encoder.train(training)(batch)
            assert encoded.voxels.num_voxels == 0
            assert encoded.voxels.feats.shape == (0, 16)
            assert encoded.voxels.batch_size == batch.batch_size
            assert encoded.point_feats.shape == (batch.points.shape[0], 16)
            assert (encoded.point_to_voxel == -1).all()
    encoder.eval()
    generator = torch.Generator().manual_seed(6)
    clouds = [_cloud(generator, 30, columns=4), torch.zeros(0, 4), _cloud(generator, 20, columns=4), torch.zeros(0, 4)]
    encoded = _check_against_twin(encoder, clouds)
    assert sorted(set(encoded.voxels.coords[:, 0].tolist())) == [0, 2]


def test_dynamic_vfe_batch_independence_in_eval():
    generator = torch.Generator().manual_seed(8)
    encoder = _randomize(DynamicVFE(5, VOXEL_SIZE, RANGE), 8)
    clouds = [_cloud(generator, n) for n in (90, 150, 40)]
    alone = encoder(PointBatch.from_list([clouds[1]]))
    together = encoder(PointBatch.from_list(clouds))
    mine = together.voxels.coords[:, 0] == 1
    assert torch.equal(together.voxels.coords[mine][:, 1:], alone.voxels.coords[:, 1:])
    torch.testing.assert_close(together.voxels.feats[mine], alone.voxels.feats, rtol=0, atol=1e-6)
    rows = slice(90, 240)
    torch.testing.assert_close(together.point_feats[rows], alone.point_feats, rtol=0, atol=1e-6)


def test_dynamic_vfe_gradients_reach_every_parameter():
    generator = torch.Generator().manual_seed(9)
    encoder = DynamicVFE(5, VOXEL_SIZE, RANGE, feat_channels=(16, 32, 24), with_distance=True).train()
    clouds = [_cloud(generator, n, low=(-1.0, -2.0, -3.0), high=(0.5, 1.0, 0.0)) for n in (100, 70)]
    clouds[0][5] = torch.tensor([float("nan"), 0.0, 0.0, 0.0, 0.0])
    clouds[0][6] = torch.tensor([50.0, 0.0, 0.0, 1.0, 1.0])
    clouds[0].requires_grad_(True)
    encoded = encoder(PointBatch.from_list(clouds))
    weights = torch.randn(encoded.voxels.feats.shape, generator=generator)
    (encoded.voxels.feats * weights).sum().add(encoded.point_feats.sum() * 0.1).backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name
    assert torch.isfinite(clouds[0].grad).all() and clouds[0].grad.abs().sum() > 0
    assert (clouds[0].grad[5:7] == 0).all()  # dropped points take no part


def test_dynamic_vfe_rejects_bad_arguments():
    with pytest.raises(ValueError, match="in_channels"):
        DynamicVFE(5, VOXEL_SIZE, RANGE)(PointBatch.from_list([torch.zeros(3, 4)]))
    with pytest.raises(ValueError, match="feat_channels"):
        DynamicVFE(5, VOXEL_SIZE, RANGE, feat_channels=())
    with pytest.raises(ValueError, match="feat_channels"):
        DynamicVFE(5, VOXEL_SIZE, RANGE, feat_channels=(64, 0))
    with pytest.raises(ValueError, match="voxel_size"):
        DynamicVFE(5, (0.1, -0.1, 0.2), RANGE)
    with pytest.raises(ValueError, match="in_channels"):
        MeanVFE(0, VOXEL_SIZE, RANGE)


# ------------------------------------------------------------------ MeanVFE
@pytest.mark.parametrize("seed", range(3))
def test_mean_vfe_matches_loop_twin(seed):
    generator = torch.Generator().manual_seed(seed)
    encoder = MeanVFE(5, VOXEL_SIZE, RANGE)
    clouds = [_cloud(generator, 100, low=(-1.0, -2.0, -3.0), high=(0.5, 1.0, 0.0)), torch.zeros(0, 5),
              torch.cat([_cloud(generator, 40), torch.tensor([[float("nan"), 0, 0, 0, 0], [3.0, 0, 0, 0, 0]])])]
    coords, feats = _twin_mean([c.numpy() for c in clouds], encoder.grid, 5)
    encoded = encoder(PointBatch.from_list(clouds))
    assert encoder.out_channels == 5 and encoded.point_feats is None
    np.testing.assert_array_equal(encoded.voxels.coords.numpy(), coords)
    torch.testing.assert_close(encoded.voxels.feats.double(), torch.from_numpy(feats), **TOLERANCE)
    assert (encoded.point_to_voxel[-2:] == -1).all()
    empty = encoder(PointBatch.from_list([torch.zeros(0, 5)]))
    assert empty.voxels.feats.shape == (0, 5)
