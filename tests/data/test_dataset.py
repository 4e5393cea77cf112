"""Datasets, collate and the DataModule over a tiny dataset of .bin files written here."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pointformer.data.classes import NUSCENES_LIDARSEG_CLASSES, nuscenes_lidarseg_to_benchmark
from pointformer.data.dataset import DetectionDataset, SampleBatch, SegmentationDataset, collate
from pointformer.data.infos import PointSource, SampleInfo, annotations_to_record, save_infos
from pointformer.data.transforms import GlobalRotScaleTrans, PointShuffle, RandomFlip
from pointformer.structures import Annotations, Boxes3D, Sample

COLUMNS = ("x", "y", "z", "intensity")
CLASSES = ("car", "pedestrian", "bicycle")
AUGMENT = [GlobalRotScaleTrans(translation_std=(0.5, 0.5, 0.1)), RandomFlip(), PointShuffle()]


def write_dataset(root: Path, count: int = 5, sweeps: int = 0, lidarseg: bool = False) -> list[SampleInfo]:
    infos = []
    for i in range(count):
        rng = np.random.default_rng(i)
        points = rng.uniform(-20, 20, size=(100 + 37 * i, 4)).astype(np.float32)
        points.tofile(root / f"lidar{i}.bin")
        labels_path = None
        if lidarseg:
            labels_path = f"lidar{i}_seg.bin"
            rng.integers(0, 32, size=len(points)).astype(np.uint8).tofile(root / labels_path)
        sweep_sources = []
        for k in range(sweeps):
            rng.uniform(-20, 20, size=(50, 4)).astype(np.float32).tofile(root / f"lidar{i}_{k}.bin")
            sweep_sources.append(PointSource(f"lidar{i}_{k}.bin", "bin", COLUMNS, time_lag=0.05 * (k + 1)))
        n = i % 4
        boxes = np.concatenate([rng.uniform(-15, 15, (n, 3)), rng.uniform(1, 4, (n, 3)),
                                rng.uniform(-math.pi, math.pi, (n, 1)), rng.normal(0, 2, (n, 2))], 1)
        names = [("car", "pedestrian", "animal", "bicycle")[j % 4] for j in range(n)]
        record = annotations_to_record(Annotations.from_boxes(Boxes3D(torch.from_numpy(boxes).float()), names))
        infos.append(SampleInfo("custom", f"sample{i}", PointSource(f"lidar{i}.bin", "bin", COLUMNS,
                                                                   labels_path=labels_path),
                                sweep_sources, record))
    return infos


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    infos = write_dataset(root, count=6, sweeps=2, lidarseg=True)
    save_infos(root / "infos.json", infos)
    return root, infos


def test_detection_dataset_sample_and_labels(tiny):
    root, infos = tiny
    dataset = DetectionDataset(root / "infos.json", root, CLASSES, num_sweeps=1)
    assert len(dataset) == 6
    sample = dataset[3]
    assert sample.point_columns == COLUMNS + ("time_lag",)
    assert sample.num_points == 100 + 37 * 3 + 50
    assert sample.annotations.names == ["car", "pedestrian", "animal"]
    assert sample.meta["labels"] == [0, 1, -1] and sample.meta["index"] == 3
    assert sample.meta["sample_id"] == "sample3"
    with pytest.raises(IndexError):
        dataset[6]
    keyframe_only = DetectionDataset(infos, root, CLASSES, num_sweeps=0)[3]
    assert keyframe_only.point_columns == COLUMNS


def test_collate_shapes_offsets_and_device(tiny):
    root, _ = tiny
    dataset = DetectionDataset(root / "infos.json", root, CLASSES, num_sweeps=2)
    samples = [dataset[i] for i in range(4)]
    batch = collate(samples)
    counts = [s.num_points for s in samples]
    assert isinstance(batch, SampleBatch) and batch.batch_size == len(batch) == 4
    assert batch.points.points.shape == (sum(counts), 5)
    assert batch.points.offsets.tolist() == np.concatenate([[0], np.cumsum(counts)]).tolist()
    for i, sample in enumerate(samples):
        assert torch.equal(batch.points[i], sample.points)
        assert torch.equal(batch.boxes[i].tensor, sample.boxes.tensor)
        assert batch.labels[i].tolist() == sample.meta["labels"] and batch.labels[i].dtype == torch.int64
    assert [len(b) for b in batch.boxes] == [0, 1, 2, 3]
    assert batch.point_labels.shape == (sum(counts),)  # lidarseg on keyframes, -1 on sweeps
    assert bool((batch.point_labels[: 100] >= 0).all()) and bool((batch.point_labels[100: counts[0]] == -1).all())
    moved = batch.to("cpu")
    assert torch.equal(moved.points.points, batch.points.points) and moved.metas is batch.metas
    relabelled = collate(samples, class_names=("bicycle", "car"))
    assert relabelled.labels[3].tolist() == [1, -1, -1]


def test_collate_adversarial(tiny):
    root, _ = tiny
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    dataset = DetectionDataset(root / "infos.json", root, CLASSES, num_sweeps=0)
    other = DetectionDataset(root / "infos.json", root, CLASSES, num_sweeps=1)
    with pytest.raises(ValueError, match="point columns"):
        collate([dataset[0], other[1]])
    bare = Sample(torch.zeros((0, 4)), COLUMNS, Annotations.empty(), meta={})
    batch = collate([bare, bare])
    assert batch.points.points.shape == (0, 4) and batch.labels[0].shape == (0,) and batch.point_labels is None
    boxed = Sample(torch.zeros((1, 4)), COLUMNS,
                   Annotations.from_boxes(Boxes3D(torch.ones(1, 7)), ["car"]), meta={"sample_id": "x"})
    with pytest.raises(ValueError, match="no meta\\['labels'\\]"):
        collate([boxed])
    with pytest.raises(ValueError, match="2 labels"):
        collate([Sample(boxed.points, COLUMNS, boxed.annotations, meta={"labels": [0, 1]})])
    mixed = collate([Sample(torch.zeros((2, 4)), COLUMNS, Annotations.empty(), point_labels=torch.tensor([3, 4])),
                     bare, Sample(torch.zeros((1, 4)), COLUMNS, Annotations.empty())])
    assert mixed.point_labels.tolist() == [3, 4, -1]


def test_augmentation_determinism_by_seed_index_and_visit(tiny):
    root, _ = tiny
    make = lambda seed: DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=seed)
    a, b, c = make(0), make(0), make(1)
    first = [a[i] for i in range(6)]
    assert all(torch.equal(x.points, b[i].points) for i, x in enumerate(first))
    assert not torch.equal(first[2].points, c[2].points)
    second = a[2]  # second visit = next epoch: different augmentation
    assert not torch.equal(second.points, first[2].points)
    a.set_epoch(0)
    assert torch.equal(a[2].points, first[2].points)
    test = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, test_mode=True)
    assert torch.equal(test[2].points, test[2].points) and torch.equal(test[2].points, first[2].points)


@pytest.mark.parametrize("num_workers, persistent", [(0, False), (2, True), (2, False)])
def test_workers_give_the_same_augmented_samples(tiny, num_workers, persistent):
    root, _ = tiny
    reference = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=3)
    expected = [[reference[i].points for i in range(6)] for _ in range(2)]  # two epochs
    dataset = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=3)
    loader = DataLoader(dataset, batch_size=2, num_workers=num_workers, collate_fn=collate,
                        persistent_workers=persistent)
    for epoch in range(2):
        batches = list(loader)
        got = [points for batch in batches for points in batch.points.split()]
        assert all(torch.equal(g, e) for g, e in zip(got, expected[epoch], strict=True)), epoch


def test_segmentation_dataset_maps_lidarseg_labels(tiny):
    root, infos = tiny
    table = nuscenes_lidarseg_to_benchmark()
    dataset = SegmentationDataset(infos, root, NUSCENES_LIDARSEG_CLASSES, table, num_sweeps=1)
    sample = dataset[1]
    raw = np.fromfile(root / "lidar1_seg.bin", dtype=np.uint8)
    expected = [table[r] for r in raw] + [-1] * 50
    assert sample.point_labels.tolist() == expected
    assert -1 in expected[: len(raw)] and max(expected) <= 15
    custom = SegmentationDataset(infos, root, ("a", "b"), [0, 1] * 16, num_sweeps=0, ignore_index=255)
    assert custom[0].point_labels.tolist() == (np.fromfile(root / "lidar0_seg.bin", np.uint8) % 2).tolist()
    with pytest.raises(ValueError, match="outside label_map"):
        SegmentationDataset(infos, root, ("a",), [0] * 10)[0]
    with pytest.raises(ValueError, match="class names"):
        SegmentationDataset(infos, root, ("a",), [0, 3])
    unlabelled = [SampleInfo("custom", "u", PointSource("lidar0.bin", "bin", COLUMNS))]
    with pytest.raises(ValueError, match="no point labels"):
        SegmentationDataset(unlabelled, root, ("a",), [0])[0]
    assert SegmentationDataset(unlabelled, root, ("a",), [0], test_mode=True)[0].point_labels is None


@pytest.mark.parametrize("num_workers", [0, 2])
def test_datamodule_iterates(tiny, num_workers):
    from pointformer.data.datamodule import PointCloudDataModule

    root, _ = tiny
    module = PointCloudDataModule(root, CLASSES, train_infos=root / "infos.json", val_infos=root / "infos.json",
                                  batch_size=4, eval_batch_size=3, num_workers=num_workers, train_transforms=AUGMENT,
                                  num_sweeps=1)
    module.setup("fit")
    train, val = module.train_dataloader(), module.val_dataloader()
    assert train.persistent_workers == (num_workers > 0) and not train.pin_memory
    batches = list(train)
    assert [b.batch_size for b in batches] == [4, 2]
    assert sorted(m["index"] for b in batches for m in b.metas) == list(range(6))
    val_batches = list(val)
    assert [m["index"] for b in val_batches for m in b.metas] == list(range(6))
    assert all(b.point_columns == COLUMNS + ("time_lag",) for b in val_batches)
    with pytest.raises(ValueError, match="no test info"):
        module.test_dataloader()
    seg = PointCloudDataModule(root, NUSCENES_LIDARSEG_CLASSES, predict_infos=root / "infos.json", num_workers=0,
                               task="segmentation", label_map=nuscenes_lidarseg_to_benchmark(), batch_size=6)
    seg.setup("predict")
    (batch,) = list(seg.predict_dataloader())
    assert batch.point_labels.max() <= 15
    with pytest.raises(ValueError, match="label_map"):
        PointCloudDataModule(root, CLASSES, task="segmentation")


def test_data_modules_do_not_import_lightning():
    code = ("import sys; import pointformer.data.dataset, pointformer.data.transforms, pointformer.data.gt_database; "
            "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
