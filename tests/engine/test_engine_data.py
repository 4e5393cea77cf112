"""Training order across ranks, resuming a loader mid-epoch, evaluation shards; EMA; atomic
checkpoint files and random-generator states. Twins: explicit loops over positions."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from pointformer.data.dataset import EpochRandomSampler
from pointformer.engine.callbacks import EMA
from pointformer.engine.checkpoint import (
    load_checkpoint_file,
    rng_states,
    save_atomic,
    set_rng_states,
)
from pointformer.engine.data import ResumableLoader, ResumableSampler, ShardSampler


class Numbers(Dataset):
    """Items are their indices; records the epoch it was given."""

    def __init__(self, size: int):
        self.size, self.epoch = size, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def positions_by_hand(size: int, replicas: int, rank: int, seed: int, epoch: int) -> list[int]:
    """Twin: the permutation, wrapped around to a multiple of ``replicas``, every replicas-th from rank."""
    order = list(np.random.default_rng([seed, epoch]).permutation(size))
    total = math.ceil(size / replicas) * replicas
    padded = [order[i % size] for i in range(total)] if size else []
    return [int(padded[p]) for p in range(total) if p % replicas == rank]


@pytest.mark.parametrize("size", [0, 1, 2, 5, 7, 16])
@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_ranks_split_one_permutation(size, replicas):
    for epoch in (0, 3):
        shares = []
        for rank in range(replicas):
            sampler = ResumableSampler(Numbers(size), seed=4, num_replicas=replicas, rank=rank)
            sampler.set_epoch(epoch)
            assert sampler.dataset.epoch == epoch
            share = list(sampler)
            assert share == positions_by_hand(size, replicas, rank, 4, epoch)
            assert len(share) == len(sampler)
            shares.append(share)
        if size:
            assert set().union(*map(set, shares)) == set(range(size))
            # step k of W ranks with batch 1 = step k of one process with batch W
            interleaved = [shares[r][k] for k in range(len(shares[0])) for r in range(replicas)]
            assert interleaved[:size] == positions_by_hand(size, 1, 0, 4, epoch)


def test_one_rank_is_the_datasets_own_epoch_sampler():
    dataset = Numbers(9)
    mine, theirs = ResumableSampler(dataset, seed=2, num_replicas=1, rank=0), EpochRandomSampler(dataset, seed=2)
    for epoch in range(3):
        mine.set_epoch(epoch), theirs.set_epoch(epoch)
        assert list(mine) == list(theirs)


def flatten(batches) -> list[int]:
    return [item for batch in batches for item in batch]


def loader(size, batch, replicas=1, rank=0, epoch=0):
    sampler = ResumableSampler(Numbers(size), seed=1, num_replicas=replicas, rank=rank)
    sampler.set_epoch(epoch)
    return ResumableLoader(sampler.dataset, sampler, batch_size=batch, collate_fn=list)


@pytest.mark.parametrize("size, batch, stop", [(10, 3, 0), (10, 3, 1), (10, 3, 3), (10, 3, 4), (1, 1, 1), (7, 2, 2)])
def test_a_loader_resumes_where_it_stopped(size, batch, stop):
    whole = list(loader(size, batch))
    first = loader(size, batch)
    iterator = iter(first)
    seen = [next(iterator) for _ in range(stop)]
    state = first.state_dict()
    assert state["consumed"] == min(sum(len(b) for b in seen), size) and state["epoch"] == 0
    second = loader(size, batch)
    second.load_state_dict(state)
    rest = list(second)
    assert flatten(seen + rest) == flatten(whole)
    assert len(second) == len(first)  # Lightning counts the batches already trained itself
    assert list(second) == whole  # the skip applies once


def test_resume_position_is_global_across_world_sizes():
    """Two ranks consumed 2 steps of batch 1 (4 positions); one process resuming skips those 4."""
    ranks = [loader(8, 1, replicas=2, rank=r, epoch=2) for r in (0, 1)]
    iterators = [iter(r) for r in ranks]
    for _ in range(2):
        [next(i) for i in iterators]
    state = ranks[0].state_dict()
    assert state == {"epoch": 2, "consumed": 4, "dataset_size": 8, "seed": 1}
    alone = loader(8, 1, epoch=2)
    alone.load_state_dict(state)
    assert flatten(alone) == positions_by_hand(8, 1, 0, 1, 2)[4:]


def test_a_state_of_another_epoch_or_dataset():
    finished = loader(6, 2)
    list(finished)
    state = finished.state_dict()
    assert state["consumed"] == 6
    nxt = loader(6, 2, epoch=1)
    nxt.load_state_dict(state)  # a checkpoint from the end of epoch 0: epoch 1 starts at 0
    assert flatten(nxt) == positions_by_hand(6, 1, 0, 1, 1)
    with pytest.raises(ValueError, match="had 6 samples"):
        loader(5, 2).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        loader(6, 2).load_state_dict({"epoch": 0})


@pytest.mark.parametrize("size, replicas", [(0, 2), (1, 2), (5, 2), (6, 3), (7, 4)])
def test_evaluation_shards_cover_every_sample_once_by_owner(size, replicas):
    owned = []
    lengths = set()
    for rank in range(replicas):
        sampler = ShardSampler(Numbers(size), num_replicas=replicas, rank=rank)
        share = list(sampler)
        lengths.add(len(share))
        assert len(share) == len(sampler)
        owned += [i for i in share if sampler.owns(i)]
    assert sorted(owned) == list(range(size))
    assert len(lengths) == 1  # every rank runs as many steps


# ------------------------------------------------------------------ EMA
def test_ema_follows_the_tensorflow_rule():
    weights = {"w": torch.tensor([1.0, -2.0]), "count": torch.tensor(3)}
    ema = EMA(0.9)
    ema.shadow = {key: value.clone() for key, value in weights.items()}
    expected = weights["w"].clone()
    for step in range(6):
        new = {"w": torch.tensor([float(step), 2.0 * step]), "count": torch.tensor(step)}
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * new["w"]
        ema.update(new)
        assert torch.allclose(ema.shadow["w"], expected)
        assert int(ema.shadow["count"]) == step
    assert ema.state_dict() == {"decay": 0.9, "num_updates": 6}
    with pytest.raises(ValueError, match="decay"):
        EMA(1.0)


def test_ema_swaps_in_and_back():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(2, 1)

    holder = Holder()
    live = {k: v.clone() for k, v in holder.model.state_dict().items()}
    ema = EMA(0.5)
    ema.shadow = {k: torch.zeros_like(v) for k, v in live.items()}
    ema.on_validation_start(None, holder)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in holder.model.state_dict().values())
    ema.on_validation_end(None, holder)
    assert all(torch.equal(holder.model.state_dict()[k], v) for k, v in live.items())


# ------------------------------------------------------------------ checkpoint files
def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.ckpt"
    save_atomic({"step": torch.tensor(1)}, path)
    with pytest.raises((AttributeError, TypeError, RuntimeError)):  # a lambda cannot be pickled
        save_atomic({"bad": lambda: None}, path)  # cannot be pickled
    assert load_checkpoint_file(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class Custom:
    """Not a tensor or plain container: refused by weights_only loading."""


def test_checkpoints_load_with_weights_only(tmp_path):
    torch.save({"object": Custom()}, tmp_path / "unsafe.ckpt")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint_file(tmp_path / "unsafe.ckpt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(tmp_path / "none.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(ValueError, match="not a checkpoint dict"):
        load_checkpoint_file(tmp_path / "list.ckpt")


def test_random_states_survive_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # a cached Gaussian in numpy's state
    save_atomic({"rng": rng_states()}, tmp_path / "rng.ckpt")
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    set_rng_states(load_checkpoint_file(tmp_path / "rng.ckpt")["rng"])
    again = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]
