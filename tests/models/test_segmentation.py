"""Segmentation head (devoxelisation, losses) and the Segmentor end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pointformer.models.heads.segmentation import SegmentationHead, devoxelize
from pointformer.models.segmentor import Segmentor
from pointformer.structures import PointBatch


def test_devoxelize_matches_loop_and_zeroes_dropped_points():
    generator = torch.Generator().manual_seed(0)
    voxel_feats = torch.randn(7, 3, generator=generator)
    index = torch.tensor([0, 6, -1, 3, 3, -1, 0])
    got = devoxelize(voxel_feats, index)
    for point, voxel in enumerate(index.tolist()):
        expected = torch.zeros(3) if voxel < 0 else voxel_feats[voxel]
        assert torch.equal(got[point], expected)
    assert devoxelize(torch.zeros(0, 3), torch.tensor([-1, -1])).shape == (2, 3)
    assert devoxelize(voxel_feats, torch.zeros(0, dtype=torch.int64)).shape == (0, 3)
    with pytest.raises(ValueError, match="refers to voxel 7"):
        devoxelize(voxel_feats, torch.tensor([7]))


def test_head_concatenates_point_features_and_scores_every_point():
    torch.manual_seed(1)
    head = SegmentationHead(voxel_channels=4, num_classes=3, point_channels=2, hidden_channels=()).eval()
    voxel_feats, point_feats = torch.randn(2, 4), torch.randn(3, 2)
    index = torch.tensor([1, -1, 0])
    logits = head(voxel_feats, index, point_feats)
    linear = head.mlp[-1]
    expected = torch.cat([devoxelize(voxel_feats, index), point_feats], 1) @ linear.weight.T + linear.bias
    assert torch.allclose(logits, expected, atol=1e-6)
    with pytest.raises(ValueError, match="expects point_feats"):
        head(voxel_feats, index, None)


def test_head_loss_is_cross_entropy_with_ignore_index_plus_lovasz():
    torch.manual_seed(2)
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.tensor([0, 2, 255, 1, 255, 2])
    plain = SegmentationHead(4, 3, ignore_index=255)
    terms = plain.loss(logits, labels)
    keep = labels != 255
    assert torch.allclose(terms["ce"], F.cross_entropy(logits[keep], labels[keep]))
    assert set(terms) == {"ce", "loss"}
    with_lovasz = SegmentationHead(4, 3, ignore_index=255, lovasz_weight=0.5).loss(logits, labels)
    assert with_lovasz["lovasz"] > 0 and torch.allclose(with_lovasz["loss"], with_lovasz["ce"] + with_lovasz["lovasz"])
    nothing = plain.loss(logits, torch.full((6,), 255))
    nothing["loss"].backward()
    assert float(nothing["loss"].detach()) == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="labels for 6 points"):
        plain.loss(logits, labels[:4])


def labelled_street(seed: int, count: int = 2500) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground (class 0), a car-sized block (1) and a pole (2): (N, 4) points and labels."""
    rng = np.random.default_rng(seed)
    ground = np.c_[rng.uniform(-10, 10, (count, 2)), rng.normal(-1.8, 0.02, count)]
    car = np.c_[rng.uniform(2, 6.5, count // 3), rng.uniform(-3, -1, count // 3), rng.uniform(-1.7, -0.2, count // 3)]
    pole = np.c_[rng.normal(-4, 0.08, count // 5), rng.normal(4, 0.08, count // 5), rng.uniform(-1.7, 2.5, count // 5)]
    xyz = np.concatenate([ground, car, pole]).astype(np.float32)
    labels = np.concatenate([np.zeros(len(ground)), np.ones(len(car)), np.full(len(pole), 2)]).astype(np.int64)
    intensity = rng.uniform(0, 1, (len(xyz), 1)).astype(np.float32)
    return torch.from_numpy(np.c_[xyz, intensity]), torch.from_numpy(labels)


SMALL_SEGMENTOR = {
    "encoder": {"type": "DynamicVFE", "feat_channels": [16, 32], "norm_momentum": 0.1},
    "backbone": {"type": "FlatFormer", "channels": 32, "num_heads": 4, "num_blocks": 1, "window_shape": [8, 8],
                 "group_size": 32},
    "head": {"type": "SegmentationHead", "hidden_channels": [32], "lovasz_weight": 0.5},
}


def build_small_segmentor() -> Segmentor:
    return Segmentor.from_config(SMALL_SEGMENTOR, num_classes=3, point_channels=4, voxel_size=[0.4, 0.4, 0.5],
                                 point_cloud_range=[-12.8, -12.8, -2.0, 12.8, 12.8, 3.0], ignore_index=-1)


class _Batch:
    def __init__(self, points: PointBatch, labels: torch.Tensor):
        self.points, self.point_labels = points, labels


def test_segmentor_overfits_one_labelled_cloud():
    torch.manual_seed(3)
    points, labels = labelled_street(4)
    outside = torch.tensor([[40.0, 0.0, 0.0, 0.5]])  # out of range: no voxel, still gets logits
    batch = _Batch(PointBatch(torch.cat([points, outside]), torch.tensor([0, len(points) + 1])),
                   torch.cat([labels, torch.tensor([-1])]))
    model = build_small_segmentor()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        terms = model.loss(batch, model(batch))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        first = float(terms["ce"].detach()) if first is None else first
    model.eval()
    predicted = model.predict(batch)
    assert predicted.shape == (len(points) + 1,)
    assert float(model.loss(batch, model(batch))["ce"]) < first / 10
    accuracy = float((predicted[:-1] == labels).float().mean())
    assert accuracy > 0.98


def test_segmentor_head_sees_the_encoders_per_point_features():
    """Two points of one voxel get different logits only through DynamicVFE's per-point features
    (devoxelised features are equal within a voxel); MeanVFE has none to give."""
    model = build_small_segmentor().eval()
    assert model.head.point_channels == model.encoder.out_channels == 32
    same_voxel = torch.tensor([[1.05, 1.05, 0.1, 0.2], [1.35, 1.3, 0.4, 0.9]])
    with torch.no_grad():
        logits = model(_Batch(PointBatch(same_voxel, torch.tensor([0, 2])), torch.zeros(2, dtype=torch.int64)))
    assert not torch.allclose(logits[0], logits[1])
    mean_config = {**SMALL_SEGMENTOR, "encoder": {"type": "MeanVFE"}}
    mean_model = Segmentor.from_config(mean_config, 3, 4, [0.4, 0.4, 0.5], [-12.8, -12.8, -2.0, 12.8, 12.8, 3.0])
    assert mean_model.head.point_channels == 0


def test_segmentor_checks_its_config_and_backbone_stride():
    with pytest.raises(ValueError, match=r"model.backbone.type: unknown backbone 'FlatFormr' \(did you mean 'FlatFormer'"):
        Segmentor.from_config({**SMALL_SEGMENTOR, "backbone": {"type": "FlatFormr"}}, 3, 4, [0.4, 0.4, 0.5],
                              [-12.8, -12.8, -2.0, 12.8, 12.8, 3.0])
    with pytest.raises(ValueError, match=r"model.head.hiden_channels: .*did you mean 'hidden_channels'"):
        Segmentor.from_config({**SMALL_SEGMENTOR, "head": {"type": "SegmentationHead", "hiden_channels": [8]}}, 3, 4,
                              [0.4, 0.4, 0.5], [-12.8, -12.8, -2.0, 12.8, 12.8, 3.0])
    with pytest.raises(ValueError, match="out_stride 1"):
        from pointformer.models.backbones.sparse_resnet import SparseResNet8x
        from pointformer.models.encoders import MeanVFE
        Segmentor(MeanVFE(4, [0.4, 0.4, 0.2], [-12.8, -12.8, -2.0, 12.8, 12.8, 3.0]),
                  SparseResNet8x(4, (25, 64, 64)), SegmentationHead(128, 3))
