"""Detector assembly from config and an overfit on one simulated nuScenes-layout sample."""

from __future__ import annotations

import pytest
import torch

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.data.dataset import DetectionDataset, collate
from pointformer.data.prepare import prepare_dataset
from pointformer.data.synthetic.generate import generate_nuscenes
from pointformer.models.backbones.flatformer import FlatFormer
from pointformer.models.backbones.sparse_resnet import SparseResNet8x
from pointformer.models.backbones.sst import SSTBackbone
from pointformer.models.detector import Detector
from pointformer.ops import box_iou
from pointformer.structures import Boxes3D

RANGE = [-19.2, -19.2, -3.0, 19.2, 19.2, 3.0]
PILLARS = [0.48, 0.48, 6.0]  # an 80 x 80 grid keeps the overfit CPU-cheap
SMALL_FLATFORMER = {
    "encoder": {"type": "DynamicVFE", "feat_channels": [16, 32], "norm_momentum": 0.1},
    "backbone": {"type": "FlatFormer", "channels": 32, "num_heads": 4, "num_blocks": 1, "group_size": 64},
    "neck": {"type": "SecondFPN", "layer_nums": [1, 1], "out_channels": [16, 32], "upsample_channels": [32, 32],
             "norm_momentum": 0.1},
    "head": {"type": "CenterHead", "share_conv_channels": 16, "head_conv": 16, "norm_momentum": 0.1,
             "bbox_loss_weight": 1.0, "min_radius": 1, "nms_type": "circle", "circle_min_radius": [1.0],
             "pre_max_size": 200, "post_max_size": 100, "score_threshold": 0.1},
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector_data") / "synthetic"
    generate_nuscenes(root, num_scenes=1, samples_per_scene=2, seed=3, progress=False)
    prepare_dataset(root, gt_database=False, progress=False)
    dataset = DetectionDataset(root / "pointformer_infos_train.json", root, NUSCENES_DETECTION_CLASSES, num_sweeps=1)
    return collate([dataset[0]], NUSCENES_DETECTION_CLASSES)


def in_range(batch):
    boxes, labels = batch.boxes[0], batch.labels[0]
    centre = boxes.tensor[:, :2]
    keep = (centre.abs() < 18.0).all(1) & (batch.annotations[0].num_points >= 5)
    return boxes.tensor[keep], labels[keep]


def test_detector_overfits_one_simulated_sample(batch):
    """Loss falls > 10x from its value after 5 steps, and every car is found with BEV IoU > 0.5."""
    torch.manual_seed(0)
    boxes, labels = in_range(batch)
    assert int((labels == 0).sum()) >= 3
    batch.boxes, batch.labels = [Boxes3D(boxes)], [labels]
    model = Detector.from_config(SMALL_FLATFORMER, NUSCENES_DETECTION_CLASSES,
                                 point_channels=len(batch.point_columns), voxel_size=PILLARS, point_cloud_range=RANGE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        terms = model.loss(batch, model(batch))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["loss"].detach()))
    assert losses[-1] < losses[5] / 10, losses
    model.eval()
    detections = model.predict(batch)[0]
    cars = boxes[labels == 0]
    iou = box_iou(detections.boxes.tensor[:, :7], cars[:, :7], mode="bev")
    best, match = iou.max(0)
    assert bool((best > 0.5).all()), best
    assert bool((detections.labels[match] == 0).all())


@pytest.mark.parametrize("backbone", [
    {"type": "SSTBackbone", "channels": 64, "num_heads": 4, "num_layers": 2, "window_shape": [8, 8],
     "bucket_caps": [16, 32, 64]},
    {"type": "SparseResNet8x", "base_channels": 8, "out_channels": 32},
])
def test_swapping_the_backbone_is_one_config_entry(batch, backbone):
    config = {**SMALL_FLATFORMER, "backbone": backbone}
    voxel_size = PILLARS
    if backbone["type"] == "SparseResNet8x":  # a 3D sparse-conv backbone needs voxels, not pillars
        config["encoder"] = {"type": "MeanVFE"}
        voxel_size = [0.2, 0.2, 0.2]
    model = Detector.from_config(config, NUSCENES_DETECTION_CLASSES, point_channels=len(batch.point_columns),
                                 voxel_size=voxel_size, point_cloud_range=RANGE)
    kinds = {"SSTBackbone": SSTBackbone, "SparseResNet8x": SparseResNet8x}
    assert isinstance(model.backbone, kinds[backbone["type"]]) and not isinstance(model.backbone, FlatFormer)
    outputs = model(batch)
    grid = model.head.grid
    assert outputs[0]["heatmap"].shape == (1, len(NUSCENES_DETECTION_CLASSES), grid.height, grid.width)
    terms = model.loss(batch, outputs)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    model.eval()
    assert len(model.predict(batch)) == 1


def test_detector_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"model.neck.layer_num: SecondFPN has no option 'layer_num' "
                                         r"\(did you mean 'layer_nums'\?\)"):
        Detector.from_config({**SMALL_FLATFORMER, "neck": {"type": "SecondFPN", "layer_num": [1, 1]}},
                             NUSCENES_DETECTION_CLASSES, 5, PILLARS, RANGE)
    with pytest.raises(ValueError, match="model.head is missing"):
        Detector.from_config({k: v for k, v in SMALL_FLATFORMER.items() if k != "head"},
                             NUSCENES_DETECTION_CLASSES, 5, PILLARS, RANGE)
    with pytest.raises(ValueError, match=r"unknown keys \['heads'\]"):
        Detector.from_config({**SMALL_FLATFORMER, "heads": {}}, NUSCENES_DETECTION_CLASSES, 5, PILLARS, RANGE)
