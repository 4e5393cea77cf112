"""Flattened-window plans (FlatFormer) against sorted() over explicit tuple keys, the plan
properties, numba == torch, adversarial inputs and window positions."""

import numpy as np
import pytest
import torch
from grouping_checks import (assert_plan_has_groups, assert_plans_equal, check_plan_properties, equal_size_groups,
                             random_voxels, voxels_from)

from pointformer.ops import grouping_kernels
from pointformer.ops.grouping import FLAT_ORDERS, flat_window_plan, flat_window_plans, window_positions
from pointformer.structures import SparseVoxels


def twin_order(voxels: SparseVoxels, window: tuple[int, int], order: str) -> list[list[int]]:
    """Voxels of each sample in flattened-window order, by sorted() over tuple keys: window row
    (band), window column (reversed in odd bands), column inside the window (reversed with it),
    row inside the window (reversed in odd columns), z (reversed where x + y is odd), input index."""
    wx, wy = window
    sx, sy = (wx // 2, wy // 2) if order.endswith("_shift") else (0, 0)

    def key(i):
        b, z, y, x = voxels.coords[i].tolist()
        xs, ys = x + sx, y + sy
        z_key = z if (xs + ys) % 2 == 0 else -z
        if order.startswith("x"):
            band, sweep = ys // wy, (1 if ys // wy % 2 == 0 else -1)
            row = ys % wy if xs % 2 == 0 else -(ys % wy)
            return (b, band, sweep * (xs // wx), sweep * (xs % wx), row, z_key, i)
        band, sweep = xs // wx, (1 if xs // wx % 2 == 0 else -1)
        column = xs % wx if ys % 2 == 0 else -(xs % wx)
        return (b, band, sweep * (ys // wy), sweep * (ys % wy), column, z_key, i)

    ordered = sorted(range(voxels.num_voxels), key=key)
    batch = voxels.coords[:, 0].tolist()
    return [[i for i in ordered if batch[i] == b] for b in range(voxels.batch_size)]


def check_against_twin(voxels: SparseVoxels, window: tuple[int, int], group_size: int) -> dict:
    plans = flat_window_plans(voxels, window, group_size)
    twins = flat_window_plans(voxels, window, group_size, backend="torch")
    assert list(plans) == list(FLAT_ORDERS)
    for order, plan in plans.items():
        assert plan.group_sizes == (group_size,)
        assert_plan_has_groups(plan, equal_size_groups(twin_order(voxels, window, order), group_size))
        check_plan_properties(plan, voxels)
        assert_plans_equal(plan, twins[order])
    return plans


@pytest.mark.parametrize("seed", range(6))
def test_pillars_match_twin(seed):
    rng = np.random.default_rng(seed)
    shape = (1, int(rng.integers(5, 30)), int(rng.integers(5, 30)))
    counts = [int(rng.integers(0, 60)) for _ in range(int(rng.integers(1, 4)))]
    window = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    check_against_twin(random_voxels(rng, shape, counts), window, int(rng.integers(1, 20)))


@pytest.mark.parametrize("seed", range(4))
def test_3d_voxels_match_twin(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (int(rng.integers(2, 5)), int(rng.integers(4, 16)), int(rng.integers(4, 16)))
    counts = [int(rng.integers(1, 120)) for _ in range(2)]
    check_against_twin(random_voxels(rng, shape, counts), (int(rng.integers(2, 6)), int(rng.integers(2, 6))), 11)


def test_parallel_lanes_match_twin(monkeypatch):
    """Large inputs plan the orders on parallel lanes; forced here on a small one."""
    monkeypatch.setattr(grouping_kernels, "PARALLEL_MIN_VOXELS", 0)
    rng = np.random.default_rng(21)
    check_against_twin(random_voxels(rng, (3, 20, 18), [150, 0, 90], duplicates=15), (5, 4), 13)


@pytest.mark.parametrize("size, max_key", [(0, 5), (1, 0), (7, 0), (3000, 40), (3000, 1 << 20), (5000, (1 << 62) - 1),
                                           (200, (1 << 57) + 3)])
def test_radix_sort_is_a_stable_argsort(size, max_key):
    """Packed (key and index in one int64) and paired (keys near 2**62) passes alike."""
    rng = np.random.default_rng(size)
    keys = rng.integers(0, max_key + 1, size, dtype=np.int64)
    if size > 10:
        keys[:size // 3] = keys[size // 3:2 * (size // 3)]  # many ties
        keys[0] = max_key
    assert grouping_kernels.radix_argsort(keys, max_key).tolist() == np.argsort(keys, kind="stable").tolist()


def test_duplicates_keep_input_order():
    rng = np.random.default_rng(7)
    voxels = random_voxels(rng, (2, 9, 11), [30, 25], duplicates=40)
    check_against_twin(voxels, (4, 3), 9)


def test_flatformer_waymo_setting():
    """13 x 13 windows, groups of 144, a 468 x 468 pillar grid: voxels crowded at the grid's
    corners and edges, exactly on window borders and at the last row and column."""
    rng = np.random.default_rng(3)
    edge = [0, 1, 12, 13, 14, 25, 26, 233, 234, 454, 455, 466, 467]
    coords = {(b, 0, y, x) for b in range(2) for y in edge for x in edge}
    coords |= {(1, 0, int(y), int(x)) for y, x in rng.integers(0, 468, (300, 2))}
    voxels = voxels_from(sorted(coords), (1, 468, 468), 2)
    plans = check_against_twin(voxels, (13, 13), 144)
    assert plans["x"].num_groups == sum(-(-(voxels.coords[:, 0] == b).sum().item() // 144) for b in range(2))


def test_adversarial_batches():
    # Empty sample first (the published code crashes there), empty in the middle, one voxel,
    # a sample smaller than a group (the published code pads it from the previous sample).
    coords = [(1, 0, 3, 4), (3, 0, 0, 0), (3, 0, 7, 9), (3, 0, 7, 8)] + [(5, 0, y, x) for y in range(3) for x in range(4)]
    voxels = voxels_from(coords, (1, 8, 10), 7)
    plans = check_against_twin(voxels, (3, 3), 5)
    for plan in plans.values():
        part = plan.buckets[0]
        assert part.batch.tolist() == [1, 3, 5, 5, 5]
        assert part.index.view(-1, 5)[0].tolist() == [0] * 5
        assert part.padding[0].tolist() == [False, True, True, True, True]


def test_group_size_one_and_larger_than_everything():
    rng = np.random.default_rng(11)
    voxels = random_voxels(rng, (1, 12, 12), [20, 7])
    for group_size in (1, 1000):
        plans = check_against_twin(voxels, (5, 5), group_size)
        assert plans["y_shift"].num_groups == (27 if group_size == 1 else 2)


def test_empty_batch():
    voxels = SparseVoxels(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 8), (1, 10, 10), 3)
    for backend in ("numba", "torch"):
        plans = flat_window_plans(voxels, (4, 4), 6, backend=backend)
        for plan in plans.values():
            assert plan.num_groups == 0 and plan.num_voxels == 0
            grouped = plan.gather(voxels.feats)
            assert grouped.shape == (0, 6, 8)
            assert plan.scatter(grouped).shape == (0, 8)


def test_single_order_and_subset():
    rng = np.random.default_rng(5)
    voxels = random_voxels(rng, (1, 20, 20), [50])
    every = flat_window_plans(voxels, (6, 4), 16)
    assert_plans_equal(flat_window_plan(voxels, (6, 4), 16, "y_shift"), every["y_shift"])
    subset = flat_window_plans(voxels, (6, 4), 16, orders=("x_shift", "y"))
    assert list(subset) == ["x_shift", "y"]
    assert_plans_equal(subset["y"], every["y"])


@pytest.mark.parametrize("order", FLAT_ORDERS)
def test_dense_grid_neighbours(order):
    """On a fully occupied grid, consecutive tokens are unit-step neighbours (x, y or z) except
    where the sweep moves to the next band of windows."""
    shape, window = (3, 10, 14), (4, 3)
    depth, size_y, size_x = shape
    coords = [(0, z, y, x) for z in range(depth) for y in range(size_y) for x in range(size_x)]
    voxels = voxels_from(coords, shape, 1)
    plan = flat_window_plan(voxels, window, 7, order)
    sequence = voxels.coords[plan.index[~plan.buckets[0].padding.view(-1)]].long()
    steps = (sequence[1:] - sequence[:-1]).abs().sum(1)
    shifted = order.endswith("_shift")
    if order.startswith("x"):
        bands = {(y + (window[1] // 2 if shifted else 0)) // window[1] for y in range(size_y)}
    else:
        bands = {(x + (window[0] // 2 if shifted else 0)) // window[0] for x in range(size_x)}
    assert (steps != 1).sum().item() <= len(bands) - 1
    assert sequence.shape[0] == voxels.num_voxels


@pytest.mark.parametrize("seed", range(3))
def test_window_positions_match_loop(seed):
    rng = np.random.default_rng(seed)
    voxels = random_voxels(rng, (3, 17, 23), [40, 30])
    for shifted in (False, True):
        wx, wy = 5, 4
        sx, sy = (2, 2) if shifted else (0, 0)
        positions = window_positions(voxels, (wx, wy), shifted)
        assert positions.dtype == torch.float32 and positions.shape == (70, 3)
        for row, (b, z, y, x) in zip(positions.tolist(), voxels.coords.tolist()):
            expected = [((x + sx) % wx + 0.5) / wx * 2 - 1, ((y + sy) % wy + 0.5) / wy * 2 - 1, (z + 0.5) / 3 * 2 - 1]
            assert row == pytest.approx(expected, abs=1e-6)
        assert positions.abs().max() < 1


@pytest.mark.parametrize(
    "coords, shape, batch_size, message",
    [
        ([(0, 0, 0, 10)], (1, 10, 10), 1, r"\(x\) spans \[10, 10\], outside \[0, 10\)"),
        ([(0, 0, -1, 0)], (1, 10, 10), 1, r"\(y\) spans"),
        ([(0, 1, 0, 0)], (1, 10, 10), 1, r"\(z\) spans"),
        ([(2, 0, 0, 0)], (1, 10, 10), 2, r"\(batch\) spans"),
    ],
)
@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_rejects_coords_outside_the_grid(coords, shape, batch_size, message, backend):
    with pytest.raises(ValueError, match=message):
        flat_window_plans(voxels_from(coords, shape, batch_size), (3, 3), 4, backend=backend)


def test_rejects_bad_arguments():
    voxels = voxels_from([(0, 0, 0, 0)], (1, 4, 4), 1)
    with pytest.raises(ValueError, match="group_size"):
        flat_window_plans(voxels, (3, 3), 0)
    with pytest.raises(ValueError, match="wx"):
        flat_window_plans(voxels, (0, 3), 4)
    with pytest.raises(ValueError, match=r"\(wx, wy\)"):
        flat_window_plans(voxels, (3, 3, 1), 4)
    with pytest.raises(ValueError, match="order"):
        flat_window_plan(voxels, (3, 3), 4, "z")
    with pytest.raises(ValueError, match="distinct"):
        flat_window_plans(voxels, (3, 3), 4, orders=("x", "x"))
    with pytest.raises(ValueError, match="backend"):
        flat_window_plans(voxels, (3, 3), 4, backend="cuda")
    huge = SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.zeros(1, 1), (1 << 22, 1 << 22, 1 << 22), 1)
    with pytest.raises(ValueError, match="62"):
        flat_window_plans(huge, (3, 3), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(9)
    voxels = random_voxels(rng, (2, 60, 70), [500, 0, 800], duplicates=20)
    cpu = flat_window_plans(voxels, (13, 13), 36)
    cuda = flat_window_plans(voxels.to("cuda"), (13, 13), 36)
    for order in FLAT_ORDERS:
        assert cuda[order].inverse.is_cuda
        assert_plans_equal(cpu[order], cuda[order])
