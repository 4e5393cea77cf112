"""Shared by the grouping tests: random voxels, the properties every GroupPlan must have, the
equal-size cut written as a plain Python loop, and plan equality."""

from __future__ import annotations

import numpy as np
import torch

from pointformer.structures import GroupPlan, SparseVoxels


def random_voxels(rng: np.random.Generator, shape: tuple[int, int, int], counts: list[int],
                  duplicates: int = 0) -> SparseVoxels:
    """Distinct cells per sample (``counts[b]`` of them, at most the grid), shuffled across the batch; then
    ``duplicates`` rows copied from random rows (an invalid SparseVoxels the ops must still plan)."""
    depth, size_y, size_x = shape
    rows = []
    for b, count in enumerate(counts):
        count = min(count, depth * size_y * size_x)
        cells = rng.choice(depth * size_y * size_x, count, replace=False)
        rows.append(np.stack([np.full(count, b), cells // (size_y * size_x), cells // size_x % size_y, cells % size_x], 1))
    coords = np.concatenate(rows) if rows else np.zeros((0, 4), np.int64)
    if duplicates and len(coords):
        coords = np.concatenate([coords, coords[rng.integers(0, len(coords), duplicates)]])
    coords = coords[rng.permutation(len(coords))]
    feats = torch.from_numpy(rng.standard_normal((len(coords), 3)))
    return SparseVoxels(torch.from_numpy(coords.astype(np.int32)), feats, shape, len(counts))


def voxels_from(coords: list[tuple[int, int, int, int]], shape: tuple[int, int, int], batch_size: int) -> SparseVoxels:
    tensor = torch.tensor(coords, dtype=torch.int32).reshape(-1, 4)
    return SparseVoxels(tensor, torch.arange(len(coords), dtype=torch.float64)[:, None], shape, batch_size)


def equal_size_groups(sorted_per_sample: list[list[int]], group_size: int) -> list[tuple[int, list[int], list[bool]]]:
    """The cut as a loop: (sample, voxels, padding) per group; a short last group repeats its
    own voxels from its first slot on."""
    groups = []
    for sample, tokens in enumerate(sorted_per_sample):
        for first in range(0, len(tokens), group_size):
            chunk = tokens[first:first + group_size]
            slots = [chunk[j % len(chunk)] for j in range(group_size)]
            groups.append((sample, slots, [j >= len(chunk) for j in range(group_size)]))
    return groups


def assert_plan_has_groups(plan: GroupPlan, groups: list[tuple[int, list[int], list[bool]]], bucket: int = 0) -> None:
    part = plan.buckets[bucket]
    size = part.group_size
    assert part.index.view(-1, size).tolist() == [slots for _, slots, _ in groups]
    assert part.padding.tolist() == [padding for _, _, padding in groups]
    assert part.batch.tolist() == [sample for sample, _, _ in groups]


def check_plan_properties(plan: GroupPlan, voxels: SparseVoxels) -> None:
    """Every kept voxel in exactly one real slot, ``inverse`` pointing at it, dropped voxels
    (inverse -1) in none; groups within one sample; padding duplicating a real voxel of its
    own group; gather then scatter returns the features."""
    batch = voxels.coords[:, 0].tolist()
    inverse = plan.inverse.tolist()
    assert len(inverse) == voxels.num_voxels
    real_slots = {}
    position = 0
    for part in plan.buckets:
        index = part.index.view(part.num_groups, part.group_size).tolist()
        for group, (slots, padding, sample) in enumerate(zip(index, part.padding.tolist(), part.batch.tolist())):
            real = [voxel for voxel, pad in zip(slots, padding) if not pad]
            assert real, "a group without a real voxel"
            assert padding == sorted(padding), "padding slots must follow the real ones"
            for j, (voxel, pad) in enumerate(zip(slots, padding)):
                assert batch[voxel] == sample, f"group {group} of sample {sample} holds voxel {voxel} of sample {batch[voxel]}"
                if pad:
                    assert voxel in real, "a filler slot must repeat a real voxel of its own group"
                else:
                    assert voxel not in real_slots, f"voxel {voxel} has two real slots"
                    real_slots[voxel] = position + j
            position += part.group_size
    dropped = [v for v, slot in enumerate(inverse) if slot == -1]
    assert len(dropped) == plan.num_dropped
    assert sorted(real_slots) == [v for v in range(voxels.num_voxels) if inverse[v] != -1]
    assert all(inverse[v] == slot for v, slot in real_slots.items())
    assert plan.num_slots == position
    if voxels.num_voxels:
        assert torch.equal(plan.index[plan.inverse[plan.kept]], torch.arange(voxels.num_voxels)[plan.kept])
    grouped = plan.gather_buckets(voxels.feats)
    assert all(g.shape == (p.num_groups, p.group_size, voxels.feats.shape[1]) for g, p in zip(grouped, plan.buckets))
    assert torch.equal(plan.scatter(grouped, fill=voxels.feats), voxels.feats)


def assert_plans_equal(a: GroupPlan, b: GroupPlan) -> None:
    assert a.group_sizes == b.group_sizes and a.num_dropped == b.num_dropped
    for x, y in zip(a.buckets, b.buckets):
        assert torch.equal(x.index.cpu(), y.index.cpu())
        assert torch.equal(x.padding.cpu(), y.padding.cpu())
        assert torch.equal(x.batch.cpu(), y.batch.cpu())
    assert torch.equal(a.inverse.cpu(), b.inverse.cpu())
