"""SST window batching against a dictionary-of-windows loop: buckets, padding, drops."""

import logging
from collections import defaultdict

import numpy as np
import pytest
import torch
from grouping_checks import assert_plan_has_groups, assert_plans_equal, check_plan_properties, random_voxels, voxels_from

from pointformer.ops.sst_windows import SST_BUCKET_CAPS, sst_window_plan, sst_window_plans
from pointformer.structures import SparseVoxels


def twin_buckets(voxels: SparseVoxels, window: tuple[int, int], shifted: bool, caps: tuple[int, ...]):
    """Groups per bucket and the dropped voxels, by a loop over a dict of windows."""
    wx, wy = window
    sx, sy = (wx // 2, wy // 2) if shifted else (0, 0)
    windows = defaultdict(list)
    for i, (b, z, y, x) in enumerate(voxels.coords.tolist()):
        windows[(b, (y + sy) // wy, (x + sx) // wx)].append(((y + sy) % wy, (x + sx) % wx, z, i))
    buckets, dropped = [[] for _ in caps], set()
    for key in sorted(windows):
        members = [entry[-1] for entry in sorted(windows[key])]
        level = next((level for level, cap in enumerate(caps) if cap >= len(members)), len(caps) - 1)
        cap = caps[level]
        kept = members[:cap]
        dropped.update(members[cap:])
        buckets[level].append((key[0], [kept[j % len(kept)] for j in range(cap)], [j >= len(kept) for j in range(cap)]))
    return buckets, dropped


def check_against_twin(voxels, window, shifted, caps):
    plan = sst_window_plan(voxels, window, shifted, caps)
    assert_plans_equal(plan, sst_window_plan(voxels, window, shifted, caps, backend="torch"))
    buckets, dropped = twin_buckets(voxels, window, shifted, caps)
    assert plan.group_sizes == tuple(caps)
    for level, groups in enumerate(buckets):
        assert_plan_has_groups(plan, groups, level)
    assert plan.num_dropped == len(dropped)
    assert sorted(torch.nonzero(plan.inverse == -1).view(-1).tolist()) == sorted(dropped)
    check_plan_properties(plan, voxels)
    return plan


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shifted", [False, True])
def test_matches_twin(seed, shifted):
    rng = np.random.default_rng(seed)
    depth = 1 if seed % 2 == 0 else 3
    voxels = random_voxels(rng, (depth, int(rng.integers(6, 25)), int(rng.integers(6, 25))),
                           [int(rng.integers(0, 150)) for _ in range(int(rng.integers(1, 4)))])
    window = (int(rng.integers(2, 7)), int(rng.integers(2, 7)))
    caps = tuple(sorted({int(c) for c in rng.integers(1, 30, 3)}))
    check_against_twin(voxels, window, shifted, caps)


def test_drops_overflowing_windows_and_logs(caplog):
    coords = [(0, 0, y, x) for y in range(4) for x in range(4)] + [(1, 0, 9, 9)]
    voxels = voxels_from(coords, (1, 10, 10), 2)
    with caplog.at_level(logging.DEBUG, logger="pointformer.ops.sst_windows"):
        plan = check_against_twin(voxels, (4, 4), False, (2, 5))
    assert plan.num_dropped == 11 and "11 of 17 voxels dropped" in caplog.text
    # The kept five are the window's first in raster order (y, then x).
    assert plan.buckets[1].index.tolist() == [0, 1, 2, 3, 4]
    out = plan.scatter(plan.gather_buckets(voxels.feats))
    assert out[plan.kept].tolist() == voxels.feats[plan.kept].tolist() and out[~plan.kept].abs().sum() == 0


def test_waymo_setting_with_duplicates_and_boundaries():
    rng = np.random.default_rng(4)
    edge = [0, 12, 13, 25, 26, 454, 455, 467]
    coords = [(0, 0, y, x) for y in edge for x in edge] + [(1, 0, int(y), int(x)) for y, x in rng.integers(0, 468, (400, 2))]
    coords += [(1, 0, y, x) for y in range(13) for x in range(13)] + coords[:20]
    voxels = voxels_from(coords, (1, 468, 468), 3)
    for shifted in (False, True):
        check_against_twin(voxels, (13, 13), shifted, SST_BUCKET_CAPS)


def test_empty_batch_and_pair():
    voxels = SparseVoxels(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 2), (1, 5, 5), 2)
    plans = sst_window_plans(voxels, (2, 2), (1, 4))
    assert list(plans) == ["regular", "shifted"]
    for backend in ("numba", "torch"):
        plan = sst_window_plan(voxels, (2, 2), True, (1, 4), backend=backend)
        assert plan.num_groups == 0 and plan.group_sizes == (1, 4)
        assert plan.scatter(plan.gather(voxels.feats)).shape == (0, 2)


def test_rejects_bad_caps():
    voxels = voxels_from([(0, 0, 0, 0)], (1, 4, 4), 1)
    for caps in [(), (30, 30), (60, 30), (0, 4)]:
        with pytest.raises(ValueError, match="bucket_caps"):
            sst_window_plan(voxels, (3, 3), bucket_caps=caps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(2)
    voxels = random_voxels(rng, (1, 100, 90), [2000, 0, 3000])
    for shifted in (False, True):
        cpu = sst_window_plan(voxels, (13, 13), shifted, (10, 30, 60))
        cuda = sst_window_plan(voxels.to("cuda"), (13, 13), shifted, (10, 30, 60))
        assert cuda.inverse.is_cuda
        assert_plans_equal(cpu, cuda)
