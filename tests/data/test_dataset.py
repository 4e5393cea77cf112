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
from pointformer.data.dataset import (
    DetectionDataset,
    EpochDistributedSampler,
    EpochRandomSampler,
    SampleBatch,
    SegmentationDataset,
    collate,
)
from pointformer.data.gt_database import build_gt_database
from pointformer.data.infos import PointSource, SampleInfo, annotations_to_record, empty_annotations_record, save_infos
from pointformer.data.transforms import GlobalRotScaleTrans, GTSampling, PointShuffle, RandomFlip
from pointformer.structures import Annotations, Boxes3D, Sample

try:  # what Lightning's fit loop calls on a loader at the start of every epoch
    from lightning_fabric.utilities.data import _set_sampler_epoch
except ImportError:  # another Lightning layout: the same contract, by hand
    def _set_sampler_epoch(loader: DataLoader, epoch: int) -> None:
        loader.sampler.set_epoch(epoch)

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


def test_collate_names_both_samples_when_box_widths_differ():
    seven = Sample(torch.zeros((1, 4)), COLUMNS, Annotations.from_boxes(Boxes3D(torch.ones(1, 7)), ["car"]),
                   meta={"sample_id": "labelled", "labels": [0]})
    nine = Sample(torch.zeros((1, 4)), COLUMNS, Annotations.empty(with_velocity=True), meta={"sample_id": "bare"})
    with pytest.raises(ValueError, match=r"sample labelled has 7-column boxes, sample bare has 9"):
        collate([seven, seven, nine])
    assert [b.tensor.shape[1] for b in collate([seven, seven]).boxes] == [7, 7]


def test_dataset_gives_frames_without_boxes_its_box_width(tiny):
    root, infos = tiny
    seven = []
    for info in infos:
        record = dict(info.annotations, box_dim=7, boxes=[row[:7] for row in info.annotations["boxes"]])
        seven.append(SampleInfo(info.dataset, info.sample_id, info.lidar, annotations=record))
    seven[1] = SampleInfo("custom", "unlabelled", infos[1].lidar)  # annotations None
    seven[4] = SampleInfo("custom", "empty", infos[4].lidar, annotations=empty_annotations_record(9))
    dataset = DetectionDataset(seven, root, CLASSES, AUGMENT)
    assert dataset.box_dim == 7
    batch = collate([dataset[i] for i in range(6)])
    assert [b.tensor.shape[1] for b in batch.boxes] == [7] * 6
    assert Boxes3D.cat(batch.boxes).tensor.shape == (sum(len(b) for b in batch.boxes), 7)
    assert DetectionDataset([seven[1]], root, CLASSES).box_dim is None
    mixed = [seven[3], infos[2]]
    with pytest.raises(ValueError, match=r"sample3 has 7 columns, sample2 has 9"):
        DetectionDataset(mixed, root, CLASSES)


def test_augmentation_determinism_by_seed_epoch_and_index(tiny):
    root, _ = tiny
    make = lambda seed: DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=seed)
    a, b, c = make(0), make(0), make(1)
    first = [a[i] for i in range(6)]
    assert all(torch.equal(x.points, b[i].points) for i, x in enumerate(first))
    assert not torch.equal(first[2].points, c[2].points)
    assert torch.equal(a[2].points, first[2].points)  # loading again in the same epoch: same sample
    a.set_epoch(1)
    assert a.epoch == 1 and a[2].meta["epoch"] == 1 and first[2].meta["epoch"] == 0
    assert all(not torch.equal(a[i].points, first[i].points) for i in range(6))  # a new epoch: new draws
    b.set_epoch(1)
    assert torch.equal(a[4].points, b[4].points)
    a.set_epoch(0)  # e.g. a resumed run
    assert torch.equal(a[2].points, first[2].points)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        a.set_epoch(-1)
    test = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, test_mode=True)
    test.set_epoch(5)
    assert test.epoch == 0 and torch.equal(test[2].points, first[2].points)


def expected_epochs(root: Path, epochs: int, seed: int = 3) -> list[list[torch.Tensor]]:
    """[epoch][index] augmented points, loaded in this process."""
    reference = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=seed)
    expected = []
    for epoch in range(epochs):
        reference.set_epoch(epoch)
        expected.append([reference[i].points for i in range(len(reference))])
    return expected


@pytest.mark.parametrize("num_workers, persistent", [(0, False), (2, True), (2, False)])
def test_workers_give_the_same_augmented_samples(tiny, num_workers, persistent):
    """The sampler's set_epoch reaches the dataset copies inside the workers (persistent ones
    included): every sample equals the one loaded here for (seed, epoch, index)."""
    root, _ = tiny
    expected = expected_epochs(root, 3)
    dataset = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=3)
    sampler = EpochRandomSampler(dataset, seed=3)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=num_workers, collate_fn=collate,
                        persistent_workers=persistent)
    orders = []
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)
        batches = list(loader)
        metas = [meta for batch in batches for meta in batch.metas]
        got = [points for batch in batches for points in batch.points.split()]
        assert [m["epoch"] for m in metas] == [epoch] * 6
        assert sorted(m["index"] for m in metas) == list(range(6))
        assert all(torch.equal(g, expected[epoch][m["index"]]) for g, m in zip(got, metas, strict=True)), epoch
        orders.append([m["index"] for m in metas])
    assert orders[0] == np.random.default_rng([3, 0]).permutation(6).tolist()
    assert len({tuple(o) for o in orders}) == 3  # the order changes with the epoch too


def test_epoch_random_sampler():
    dataset = DetectionDataset([SampleInfo("custom", str(i), PointSource("never_read.bin", "bin")) for i in range(50)],
                               None, CLASSES)
    sampler = EpochRandomSampler(dataset, seed=7)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first == list(sampler) and len(sampler) == 50
    sampler.set_epoch(3)
    assert dataset.epoch == 3 and sorted(sampler) == list(range(50)) and list(sampler) != first
    assert list(EpochRandomSampler(dataset, shuffle=False)) == list(range(50))
    assert list(EpochRandomSampler(DetectionDataset([], None, CLASSES))) == []


def test_distributed_sampler_splits_ranks_and_forwards_the_epoch(tiny):
    root, _ = tiny
    expected = expected_epochs(root, 2)
    seen = {}
    for rank in (0, 1):
        dataset = DetectionDataset(root / "infos.json", root, CLASSES, AUGMENT, num_sweeps=1, seed=3)
        sampler = EpochDistributedSampler(dataset, num_replicas=2, rank=rank, seed=3)
        assert isinstance(sampler, torch.utils.data.DistributedSampler) and len(sampler) == 3
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2 if rank else 0,
                            persistent_workers=bool(rank), collate_fn=collate)
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            assert dataset.epoch == epoch
            metas = [m for batch in loader for m in batch.metas]
            points = [p for batch in loader for p in batch.points.split()]
            assert [m["epoch"] for m in metas] == [epoch] * 3
            assert all(torch.equal(p, expected[epoch][m["index"]]) for p, m in zip(points, metas, strict=True))
            seen[rank, epoch] = [m["index"] for m in metas]
    for epoch in (0, 1):
        assert sorted(seen[0, epoch] + seen[1, epoch]) == list(range(6))  # each rank its own half
    assert seen[0, 0] != seen[0, 1]


def dense_scene(root: Path, name: str, num_cars: int, seed: int) -> SampleInfo:
    """Cars 4 x 2 x 1.5 m along x with 40 points inside each, 100 background points, lidarseg labels."""
    rng = np.random.default_rng(seed)
    boxes = np.array([[-10.0 + 10 * k, 0, 0, 4, 2, 1.5, 0, 0, 0] for k in range(num_cars)]).reshape(-1, 9)
    inside = [box[:3] + rng.uniform(-0.45, 0.45, (40, 3)) * box[3:6] for box in boxes]
    background = rng.uniform([-20, 5, -2], [20, 20, 2], (100, 3))
    xyz = np.concatenate([background, *inside], axis=0)
    points = np.concatenate([xyz, rng.uniform(0, 1, (len(xyz), 1))], axis=1).astype(np.float32)
    points.tofile(root / f"{name}.bin")
    rng.integers(0, 32, size=len(points)).astype(np.uint8).tofile(root / f"{name}_seg.bin")
    record = annotations_to_record(Annotations.from_boxes(Boxes3D(torch.from_numpy(boxes)), ["car"] * num_cars))
    return SampleInfo("custom", name, PointSource(f"{name}.bin", "bin", COLUMNS, labels_path=f"{name}_seg.bin"),
                      annotations=record)


def test_segmentation_ignore_index_covers_pasted_and_unlabelled_points(tmp_path):
    source, target = dense_scene(tmp_path, "source", 3, 0), dense_scene(tmp_path, "target", 0, 1)
    database = build_gt_database([source], tmp_path, tmp_path / "db", ["car"], progress=False)
    paste = GTSampling(database, {"car": 3}, min_points=1)
    label_map = [0, 1] * 16  # no raw id is ignored: every 255 below comes from a pasted point
    dataset = SegmentationDataset([target], tmp_path, ("a", "b"), label_map, [paste], num_sweeps=0,
                                  ignore_index=255)
    sample = dataset[0]
    pasted = sample.meta["gt_sampled"]["car"]
    assert pasted == 3 and sample.num_points == 100 + 3 * 40
    labels = sample.point_labels
    assert int((labels == 255).sum()) == 3 * 40 and int((labels == -1).sum()) == 0
    raw = np.fromfile(tmp_path / "target_seg.bin", np.uint8)
    assert labels[:100].tolist() == (raw % 2).tolist()

    unlabelled = Sample(torch.zeros((2, 4)), COLUMNS, Annotations.empty(), meta={"sample_id": "u"})
    partly = Sample(torch.zeros((3, 4)), COLUMNS, Annotations.empty(), point_labels=torch.tensor([1, -1, 0]))
    batch = collate([sample, unlabelled, partly], ignore_index=255)
    assert batch.point_labels.tolist() == labels.tolist() + [255, 255, 1, 255, 0]
    assert collate([unlabelled, partly]).point_labels.tolist() == [-1, -1, 1, -1, 0]


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
    assert isinstance(train.sampler, EpochRandomSampler) and {m["epoch"] for b in batches for m in b.metas} == {0}
    _set_sampler_epoch(train, 2)  # what Lightning's fit loop calls at the start of an epoch
    assert module.datasets["train"].epoch == 2 and module.datasets["val"].epoch == 0
    assert {m["epoch"] for b in train for m in b.metas} == {2}
    val_batches = list(val)
    assert [m["index"] for b in val_batches for m in b.metas] == list(range(6))
    assert all(b.point_columns == COLUMNS + ("time_lag",) for b in val_batches)
    with pytest.raises(ValueError, match="no test info"):
        module.test_dataloader()
    seg = PointCloudDataModule(root, NUSCENES_LIDARSEG_CLASSES, predict_infos=root / "infos.json", num_workers=0,
                               task="segmentation", label_map=nuscenes_lidarseg_to_benchmark(), batch_size=6,
                               ignore_index=255)
    seg.setup("predict")
    (batch,) = list(seg.predict_dataloader())
    labels = batch.point_labels
    assert labels[labels != 255].max() <= 15 and int((labels == 255).sum()) >= 6 * 2 * 50  # sweeps: unlabelled
    assert int((labels == -1).sum()) == 0
    with pytest.raises(ValueError, match="label_map"):
        PointCloudDataModule(root, CLASSES, task="segmentation")


def test_resumed_training_loader_starts_at_the_trainers_epoch(tiny):
    """Lightning builds (and workers prefetch from) the training iterator before its first
    set_epoch: the sampler must already be at the resumed epoch."""
    from types import SimpleNamespace

    from pointformer.data.datamodule import PointCloudDataModule

    root, _ = tiny
    module = PointCloudDataModule(root, CLASSES, train_infos=root / "infos.json", batch_size=6, num_workers=2,
                                  train_transforms=AUGMENT, num_sweeps=1)
    module.trainer = SimpleNamespace(fit_loop=SimpleNamespace(
        epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=2))))
    module.setup("fit")
    resumed = module.train_dataloader()
    (batch,) = list(resumed)
    assert {m["epoch"] for m in batch.metas} == {2}
    expected = EpochRandomSampler(module.datasets["train"], seed=0)
    expected.set_epoch(2)
    assert [m["index"] for m in batch.metas] == list(expected)


def test_negative_sweep_counts_are_an_error(tiny):
    root, _ = tiny
    with pytest.raises(ValueError, match="num_sweeps must be >= 0"):
        DetectionDataset(root / "infos.json", root, CLASSES, num_sweeps=-1)[0]


def test_datamodule_uses_a_distributed_sampler_under_ddp(tiny, tmp_path):
    import torch.distributed as dist

    from pointformer.data.datamodule import PointCloudDataModule

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    root, _ = tiny
    module = PointCloudDataModule(root, CLASSES, train_infos=root / "infos.json", batch_size=4, num_workers=0,
                                  train_transforms=AUGMENT, num_sweeps=1, seed=3)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        train = module.train_dataloader()
    finally:
        dist.destroy_process_group()
    # A DistributedSampler already: Lightning keeps it, and calls its set_epoch each epoch.
    assert isinstance(train.sampler, EpochDistributedSampler) and train.sampler.num_replicas == 1
    _set_sampler_epoch(train, 1)
    metas = [m for b in train for m in b.metas]
    assert module.datasets["train"].epoch == 1 and {m["epoch"] for m in metas} == {1}
    assert sorted(m["index"] for m in metas) == list(range(6))


def test_data_modules_do_not_import_lightning():
    code = ("import sys; import pointformer.data.dataset, pointformer.data.transforms, pointformer.data.gt_database; "
            "assert not any(m.split('.')[0] in ('lightning', 'pytorch_lightning') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
