"""GroupPlan / GroupBucket by hand: gather, scatter (with drops), checks on construction."""

import pytest
import torch

from pointformer.structures import GroupBucket, GroupPlan


def two_bucket_plan() -> GroupPlan:
    """Voxels 0..5: bucket 0 holds groups [2, 0] and [4, 4(pad)], bucket 1 holds [1, 3, 1(pad)];
    voxel 5 is dropped."""
    first = GroupBucket(torch.tensor([2, 0, 4, 4]), torch.tensor([[False, False], [False, True]]), torch.tensor([0, 1]))
    second = GroupBucket(torch.tensor([1, 3, 1]), torch.tensor([[False, False, True]]), torch.tensor([0]))
    return GroupPlan((first, second), torch.tensor([1, 4, 0, 5, 2, -1]), num_dropped=1)


def test_gather_and_scatter_by_hand():
    plan = two_bucket_plan()
    feats = torch.arange(12.0).view(6, 2)
    grouped = plan.gather(feats)
    assert isinstance(grouped, list) and [g.shape for g in grouped] == [(2, 2, 2), (1, 3, 2)]
    assert grouped[0][:, :, 0].tolist() == [[4.0, 0.0], [8.0, 8.0]]
    assert grouped[1][0, :, 0].tolist() == [2.0, 6.0, 2.0]
    assert plan.index.tolist() == [2, 0, 4, 4, 1, 3, 1] and plan.num_groups == 3 and plan.group_sizes == (2, 3)
    assert plan.kept.tolist() == [True] * 5 + [False]
    # Padding outputs are discarded: poison them and scatter back.
    grouped[0][1, 1] = -100
    grouped[1][0, 2] = -100
    out = plan.scatter(grouped, fill=feats)
    assert torch.equal(out, feats)
    assert plan.scatter(grouped)[5].tolist() == [0.0, 0.0]


def test_one_bucket_gather_is_a_tensor_and_to_moves_everything():
    plan = GroupPlan((GroupBucket(torch.tensor([1, 0, 1]), torch.tensor([[False, False, True]]), torch.tensor([0])),),
                     torch.tensor([1, 0]))
    feats = torch.tensor([[1.0], [2.0]])
    grouped = plan.gather(feats)
    assert isinstance(grouped, torch.Tensor) and grouped.view(-1).tolist() == [2.0, 1.0, 2.0]
    assert torch.equal(plan.scatter(grouped), feats)
    moved = plan.to("cpu")
    assert moved.inverse.device.type == "cpu" and moved.buckets[0].padding.dtype == torch.bool


def test_errors():
    plan = two_bucket_plan()
    with pytest.raises(ValueError, match="feats has 5 rows"):
        plan.gather(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="got 1 outputs for 2 buckets"):
        plan.scatter(torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match="output of shape"):
        plan.scatter([torch.zeros(2, 3, 1), torch.zeros(1, 3, 1)])
    with pytest.raises(ValueError, match="fill must have shape"):
        plan.scatter([torch.zeros(2, 2, 1), torch.zeros(1, 3, 1)], fill=torch.zeros(6, 2))
    with pytest.raises(ValueError, match=r"index must be int64 \(4,\)"):
        GroupBucket(torch.tensor([0, 1, 2]), torch.zeros(2, 2, dtype=torch.bool), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="bool"):
        GroupBucket(torch.tensor([0, 1]), torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="batch must be int64"):
        GroupBucket(torch.tensor([0, 1]), torch.zeros(1, 2, dtype=torch.bool), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="S >= 1"):
        GroupBucket(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 0, dtype=torch.bool), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least one bucket"):
        GroupPlan((), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_dropped"):
        GroupPlan(plan.buckets, plan.inverse, num_dropped=7)


def test_inverse_and_num_dropped_must_agree():
    bucket = GroupBucket(torch.tensor([0, 1], dtype=torch.int64), torch.zeros(1, 2, dtype=torch.bool),
                         torch.zeros(1, dtype=torch.int64))
    with pytest.raises(ValueError, match="marks 1 voxels dropped"):
        GroupPlan([bucket], torch.tensor([0, 1, -1], dtype=torch.int64), num_dropped=0)
