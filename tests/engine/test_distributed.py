"""Global batch norm, the CenterPoint loss normalisers and the object helpers against one process
on the whole batch, in two real gloo processes (file store, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pointformer.engine.distributed import (
    GlobalBatchNorm,
    broadcast_object,
    convert_global_batchnorm,
    gather_objects,
    mean_over_ranks,
    revert_global_batchnorm,
)

ROWS = (5, 3)  # uneven shards
CHANNELS = 4


def test_global_batchnorm_is_batchnorm_outside_ddp():
    torch.manual_seed(0)
    plain, converted = nn.BatchNorm2d(CHANNELS, momentum=0.3), None
    converted = convert_global_batchnorm(nn.Sequential(nn.BatchNorm2d(CHANNELS, momentum=0.3)))[0]
    assert isinstance(converted, GlobalBatchNorm)
    x = torch.randn(3, CHANNELS, 5, 5) * 7 + 3
    for mode in ("train", "eval"):
        plain.train(mode == "train"), converted.train(mode == "train")
        assert torch.allclose(plain(x), converted(x), atol=1e-6)
    assert torch.allclose(plain.running_var, converted.running_var)


def test_convert_and_revert_keep_state_and_types():
    model = nn.Sequential(nn.Linear(3, CHANNELS), nn.BatchNorm1d(CHANNELS, eps=1e-3, momentum=0.01),
                          nn.Sequential(nn.Conv2d(CHANNELS, CHANNELS, 1), nn.BatchNorm2d(CHANNELS)))
    model[1].running_mean.fill_(2.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_global_batchnorm(model)
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[2][1], GlobalBatchNorm)
    assert converted[1].eps == 1e-3 and converted[1].momentum == 0.01
    reverted = revert_global_batchnorm(converted)
    assert type(reverted[1]) is nn.BatchNorm1d and type(reverted[2][1]) is nn.BatchNorm2d
    for key, value in reverted.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_helpers_are_identity_outside_ddp():
    assert gather_objects({"a": 1}) == [{"a": 1}]
    assert broadcast_object([1, 2]) == [1, 2]
    tensor = torch.tensor([1.0, 2.0])
    assert mean_over_ranks(tensor) is tensor


# ------------------------------------------------------------------ two processes
def batchnorm_inputs(dims: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(dims)
    shape = (sum(ROWS), CHANNELS) + (3, 2) * (dims == 2)
    return torch.randn(shape, generator=generator, dtype=torch.float64) * 5 + 2


def check_batchnorm(rank: int, dims: int) -> None:
    """Each rank normalises its shard; outputs, input and weight gradients and running statistics
    equal BatchNorm over the whole batch (mean loss over ranks = the single-process loss)."""
    full = batchnorm_inputs(dims)
    upstream = torch.randn(full.shape, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    reference = cls(CHANNELS, momentum=0.2).double()
    with torch.no_grad():  # the same affine parameters on both ranks
        reference.weight.copy_(torch.linspace(0.5, 1.5, CHANNELS)), reference.bias.copy_(torch.linspace(-1, 1, CHANNELS))
    layer = convert_global_batchnorm(nn.Sequential(cls(CHANNELS, momentum=0.2).double()))[0]
    layer.load_state_dict(reference.state_dict())
    start = sum(ROWS[:rank])
    shard = full[start:start + ROWS[rank]].clone().requires_grad_(True)
    out = layer(shard)
    (out * upstream[start:start + ROWS[rank]]).sum().backward()
    weight_grad = torch.stack([layer.weight.grad, layer.bias.grad])
    dist.all_reduce(weight_grad)  # DDP averages; the single-process loss below is the mean over ranks
    weight_grad /= 2

    whole = full.clone().requires_grad_(True)
    expected = reference(whole)
    ((expected * upstream).sum() / 2).backward()
    assert torch.allclose(out, expected[start:start + ROWS[rank]], atol=1e-10)
    assert torch.allclose(shard.grad, 2 * whole.grad[start:start + ROWS[rank]], atol=1e-10)
    assert torch.allclose(weight_grad, torch.stack([reference.weight.grad, reference.bias.grad]), atol=1e-10)
    assert torch.allclose(layer.running_mean, reference.running_mean, atol=1e-12)
    assert torch.allclose(layer.running_var, reference.running_var, atol=1e-12)

    local = cls(CHANNELS).double()  # without synchronisation the shard's own statistics are used
    local.load_state_dict(reference.state_dict())
    assert not torch.allclose(local(full[start:start + ROWS[rank]]), expected[start:start + ROWS[rank]], atol=1e-3)


def head_batch():
    from pointformer.structures import Boxes3D

    head_classes = ["car", "pedestrian"]
    from pointformer.models.heads.centerpoint import CenterHead

    head = CenterHead(8, head_classes, [head_classes], [-8.0, -8.0, -3.0, 8.0, 8.0, 1.0], [0.5, 0.5, 4.0], 2,
                      with_velocity=False, with_iou=True, min_radius=1)
    generator = torch.Generator().manual_seed(5)
    preds = [{name: torch.randn(2, channels, 16, 16, generator=generator, dtype=torch.float32)
              for name, channels in {**head.branch_channels(), "heatmap": 2}.items()}]
    boxes = [Boxes3D(torch.tensor([[1.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.3], [-4.0, 3.0, -1.0, 0.8, 0.7, 1.8, -1.0],
                                   [5.0, -5.0, -1.0, 4.2, 1.9, 1.6, 2.0]])),
             Boxes3D(torch.zeros((0, 7)))]  # the second rank's sample has no object at all
    labels = [torch.tensor([0, 1, 0]), torch.zeros(0, dtype=torch.int64)]
    return head, preds, boxes, labels


def check_head_normalisers(rank: int) -> None:
    """Rank r's loss on sample r, scaled by the rank balance: the mean over ranks equals the
    single-process loss of both samples and each rank's gradient equals W times the single
    process's on its sample (DDP divides by W)."""
    head, preds, boxes, labels = head_batch()
    single_preds = [{k: v.clone().requires_grad_(True) for k, v in preds[0].items()}]
    head.eval()  # eval: no collective, plain normalisers, as one process computes them
    single = head.loss(single_preds, boxes, labels)
    single["loss"].backward()

    head.train()
    mine = [{k: v[rank:rank + 1].clone().requires_grad_(True) for k, v in preds[0].items()}]
    terms = head.loss(mine, boxes[rank:rank + 1], labels[rank:rank + 1])
    terms["loss"].backward()
    for name, value in terms.items():
        assert torch.allclose(mean_over_ranks(value.detach()), single[name].detach(), rtol=1e-5), name
    for key, tensor in mine[0].items():
        assert torch.allclose(tensor.grad, 2 * single_preds[0][key].grad[rank:rank + 1], atol=1e-6, rtol=1e-4), key

    with torch.no_grad():  # without the balance (no grad: no collective) the mean is not the global loss
        unbalanced = head.loss(mine, boxes[rank:rank + 1], labels[rank:rank + 1])["loss"]
    assert not torch.allclose(mean_over_ranks(unbalanced), single["loss"].detach(), rtol=1e-3)


def check_objects(rank: int) -> None:
    assert gather_objects({"rank": rank}) == [{"rank": 0}, {"rank": 1}]
    assert broadcast_object("from zero" if rank == 0 else None) == "from zero"
    assert torch.equal(mean_over_ranks(torch.tensor([float(rank), 4.0])), torch.tensor([0.5, 4.0]))


def worker(rank: int, store: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        check_batchnorm(rank, 1)
        check_batchnorm(rank, 2)
        check_head_normalisers(rank)
        check_objects(rank)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_equal_one_process_on_the_whole_batch(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "store"),), nprocs=2, join=True)
