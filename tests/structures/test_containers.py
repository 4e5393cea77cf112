"""PointBatch, SparseVoxels, Annotations and Sample: invariants and errors."""

import numpy as np
import pytest
import torch

from pointformer.structures import Annotations, Boxes3D, PointBatch, Sample, SparseVoxels


def test_point_batch_round_trip_with_empty_samples():
    clouds = [torch.randn(5, 4), torch.zeros(0, 4), torch.randn(1, 4), torch.zeros(0, 4)]
    batch = PointBatch.from_list(clouds)
    assert batch.batch_size == 4 and batch.counts.tolist() == [5, 0, 1, 0]
    assert batch.batch_idx.tolist() == [0] * 5 + [2]
    for original, part in zip(clouds, batch.split()):
        assert torch.equal(original, part)
    assert torch.equal(batch[2], clouds[2]) and torch.equal(batch[-2], clouds[2])
    with pytest.raises(IndexError):
        batch[4]


@pytest.mark.parametrize(
    "offsets, message",
    [([0, 3], "from 0 to N=4"), ([1, 4], "from 0 to N=4"), ([0, 3, 2, 4], "non-decreasing"), ([[0, 4]], r"\(B \+ 1,\)")],
)
def test_point_batch_rejects_bad_offsets(offsets, message):
    with pytest.raises(ValueError, match=message):
        PointBatch(torch.zeros(4, 3), torch.tensor(offsets))


def test_point_batch_rejects_mixed_widths():
    with pytest.raises(ValueError, match="different feature counts"):
        PointBatch.from_list([torch.zeros(2, 3), torch.zeros(2, 4)])


def test_sparse_voxels_dense_and_spconv_round_trip():
    coords = torch.tensor([[0, 0, 1, 2], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.int64)
    feats = torch.tensor([[1.0], [2.0], [3.0]])
    voxels = SparseVoxels(coords, feats, (2, 3, 4), batch_size=3)
    assert voxels.coords.dtype == torch.int32
    dense = voxels.dense()
    assert dense.shape == (3, 1, 2, 3, 4)
    assert dense[0, 0, 0, 1, 2] == 1 and dense[1, 0, 1, 0, 0] == 5 and dense.sum() == 6
    back = SparseVoxels.from_spconv(voxels.to_spconv())
    assert torch.equal(back.coords, voxels.coords) and back.spatial_shape == (2, 3, 4) and back.batch_size == 3


def test_sparse_voxels_validation():
    with pytest.raises(ValueError, match=r"\(M, 4\)"):
        SparseVoxels(torch.zeros(3, 3, dtype=torch.int32), torch.zeros(3, 1), (1, 1, 1), 1)
    with pytest.raises(ValueError, match="feature rows"):
        SparseVoxels(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(2, 1), (1, 1, 1), 1)


def _annotations(n=4):
    boxes = Boxes3D(torch.arange(n * 9, dtype=torch.float32).reshape(n, 9))
    return Annotations(boxes, [f"c{i}" for i in range(n)], torch.arange(n), ["a"] * n, [str(i) for i in range(n)])


def test_annotations_select_keeps_fields_aligned():
    ann = _annotations()
    picked = ann.select(torch.tensor([False, True, False, True]))
    assert picked.names == ["c1", "c3"] and picked.ids == ["1", "3"]
    assert picked.num_points.tolist() == [1, 3] and torch.equal(picked.boxes.tensor, ann.boxes.tensor[[1, 3]])
    assert len(ann.select(np.array([], dtype=np.int64))) == 0
    assert ann.labels(["c3", "c0"]).tolist() == [1, -1, -1, 0]
    assert len(Annotations.cat([ann, picked])) == 6


def test_annotations_reject_misaligned_fields():
    with pytest.raises(ValueError, match="names has 1 entries for 2 boxes"):
        Annotations(Boxes3D(torch.zeros(2, 7)), ["a"], torch.zeros(2), ["", ""], ["", ""])


def test_sample_select_points_moves_labels_along():
    points = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    sample = Sample(points, ("x", "y", "z", "intensity"), _annotations(), point_labels=torch.arange(5))
    kept = sample.select_points(torch.tensor([True, False, True, False, True]))
    assert kept.point_labels.tolist() == [0, 2, 4] and kept.points.shape == (3, 4)
    assert torch.equal(sample.column("intensity"), points[:, 3])
    with pytest.raises(KeyError, match="time_lag"):
        sample.column("time_lag")


def test_sample_validation():
    with pytest.raises(ValueError, match="columns"):
        Sample(torch.zeros(3, 4), ("x", "y", "z"), Annotations.empty())
    with pytest.raises(ValueError, match="start with x, y, z"):
        Sample(torch.zeros(3, 3), ("y", "x", "z"), Annotations.empty())
    with pytest.raises(ValueError, match="point_labels has 2 entries for 3 points"):
        Sample(torch.zeros(3, 3), ("x", "y", "z"), Annotations.empty(), point_labels=torch.zeros(2))
