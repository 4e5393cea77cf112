"""Morton and Hilbert codes against bit-by-bit Python, Wikipedia's 2D xy2d and the curve's
defining property (consecutive cells are neighbours); curve plans against sorted()."""

import itertools

import numpy as np
import pytest
import torch
from grouping_checks import (assert_plan_has_groups, assert_plans_equal, check_plan_properties, equal_size_groups,
                             random_voxels, voxels_from)

from pointformer.ops import grouping_kernels
from pointformer.ops.curves import CURVE_ORDERS, curve_keys, curve_plan, curve_plans, hilbert_code, morton_code
from pointformer.structures import SparseVoxels


def morton_loop(point: list[int], bits: int) -> int:
    """Interleave bit by bit, most significant level first, first axis first in a level."""
    code = 0
    for level in reversed(range(bits)):
        for value in point:
            code = code * 2 + (value >> level) % 2
    return code


def hilbert_skilling_loop(point: list[int], bits: int) -> int:
    """Skilling (2004), AxestoTranspose, as printed: Python ints, one bit mask at a time."""
    x = list(point)
    n = len(x)
    m = 1 << (bits - 1)
    q = m
    while q > 1:
        p = q - 1
        for i in range(n):
            if x[i] & q:
                x[0] ^= p
            else:
                t = (x[0] ^ x[i]) & p
                x[0] ^= t
                x[i] ^= t
        q >>= 1
    for i in range(1, n):
        x[i] ^= x[i - 1]
    t = 0
    q = m
    while q > 1:
        if x[n - 1] & q:
            t ^= q - 1
        q >>= 1
    transposed = [value ^ t for value in x]
    return morton_loop(transposed, bits)


def hilbert_wikipedia_xy2d(side: int, x: int, y: int) -> int:
    """https://en.wikipedia.org/wiki/Hilbert_curve (xy2d with its rot)."""
    d = 0
    s = side // 2
    while s > 0:
        rx = 1 if x & s else 0
        ry = 1 if y & s else 0
        d += s * s * ((3 * rx) ^ ry)
        if ry == 0:
            if rx == 1:
                x, y = side - 1 - x, side - 1 - y
            x, y = y, x
        s //= 2
    return d


def grid(dims: int, bits: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(1 << bits), repeat=dims)), dtype=torch.int64)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("dims, bits", [(1, 4), (2, 1), (2, 3), (3, 2), (2, 7)])
def test_morton_matches_loop(dims, bits, backend):
    rng = np.random.default_rng(bits)
    axes = torch.from_numpy(rng.integers(0, 1 << bits, (300, dims)))
    axes[0] = (1 << bits) - 1  # the largest coordinate on every axis
    expected = [morton_loop(row, bits) for row in axes.tolist()]
    assert morton_code(axes, bits, backend).tolist() == expected


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_hilbert_2d_is_wikipedias(backend):
    for bits in (1, 2, 3, 5):
        cells = grid(2, bits)
        expected = [hilbert_wikipedia_xy2d(1 << bits, x, y) for x, y in cells.tolist()]
        assert hilbert_code(cells, bits, backend).tolist() == expected


def test_hilbert_3d_order_one_is_the_gray_code_cube():
    order = torch.argsort(hilbert_code(grid(3, 1), 1))
    assert grid(3, 1)[order].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 0, 0]]


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("dims, bits", [(2, 4), (3, 1), (3, 2), (3, 3), (4, 2)])
def test_hilbert_is_a_hilbert_curve(dims, bits, backend):
    """A bijection onto [0, 2**(D bits)) whose consecutive cells are unit steps, starting at
    the origin; equal to the bit-by-bit transcription of Skilling's algorithm."""
    cells = grid(dims, bits)
    codes = hilbert_code(cells, bits, backend)
    assert sorted(codes.tolist()) == list(range(len(cells)))
    path = cells[torch.argsort(codes)]
    assert path[0].tolist() == [0] * dims
    assert ((path[1:] - path[:-1]).abs().sum(1) == 1).all()
    assert codes.tolist() == [hilbert_skilling_loop(row, bits) for row in cells.tolist()]


def test_hilbert_random_deep_codes_match_loop():
    rng = np.random.default_rng(0)
    for dims, bits in [(2, 11), (3, 11), (3, 20)]:
        axes = torch.from_numpy(rng.integers(0, 1 << bits, (200, dims)))
        expected = [hilbert_skilling_loop(row, bits) for row in axes.tolist()]
        assert hilbert_code(axes, bits).tolist() == expected
        assert hilbert_code(axes, bits, backend="torch").tolist() == expected


def test_code_arguments_checked():
    with pytest.raises(ValueError, match=r"\[0, 2\*\*2\)"):
        morton_code(torch.tensor([[4, 0]]), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\*\*2\)"):
        hilbert_code(torch.tensor([[-1, 0]]), 2)
    with pytest.raises(ValueError, match="int64"):
        morton_code(torch.zeros(1, 3, dtype=torch.int64), 21)
    with pytest.raises(ValueError, match="integer"):
        hilbert_code(torch.zeros(2, 2), 3)


def twin_curve_order(voxels: SparseVoxels, order: str) -> list[list[int]]:
    """sorted() over (sample, curve code of the explicit axes, input index)."""
    depth, size_y, size_x = voxels.spatial_shape
    sizes = [size_x, size_y] + ([depth] if depth > 1 else [])
    bits = max(1, max((s - 1).bit_length() for s in sizes))
    encode = hilbert_skilling_loop if order.startswith("hilbert") else morton_loop

    def key(i):
        b, z, y, x = voxels.coords[i].tolist()
        axes = [y, x] if order.endswith("_trans") else [x, y]
        return (b, encode(axes + ([z] if depth > 1 else []), bits), i)

    ordered = sorted(range(voxels.num_voxels), key=key)
    batch = voxels.coords[:, 0].tolist()
    return [[i for i in ordered if batch[i] == b] for b in range(voxels.batch_size)]


@pytest.mark.parametrize("seed", range(6))
def test_plans_match_twin(seed, monkeypatch):
    if seed % 2:  # plan the orders on parallel lanes, as for large inputs
        monkeypatch.setattr(grouping_kernels, "PARALLEL_MIN_VOXELS", 0)
    rng = np.random.default_rng(seed)
    depth = 1 if seed < 3 else int(rng.integers(2, 6))
    voxels = random_voxels(rng, (depth, int(rng.integers(3, 40)), int(rng.integers(3, 40))),
                           [int(rng.integers(0, 80)) for _ in range(3)], duplicates=int(rng.integers(0, 10)))
    group_size = int(rng.integers(1, 30))
    plans = curve_plans(voxels, group_size)
    torch_plans = curve_plans(voxels, group_size, backend="torch")
    assert list(plans) == list(CURVE_ORDERS)
    for order, plan in plans.items():
        assert_plan_has_groups(plan, equal_size_groups(twin_curve_order(voxels, order), group_size))
        check_plan_properties(plan, voxels)
        assert_plans_equal(plan, torch_plans[order])


def test_keys_put_the_sample_above_the_code():
    coords = torch.tensor([[0, 0, 7, 7], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.int32)
    for order in CURVE_ORDERS:
        keys = curve_keys(coords, (1, 8, 8), order)
        assert keys.tolist() == curve_keys(coords, (1, 8, 8), order, backend="torch").tolist()
        assert keys[1] == 1 << 6 and max(keys[0], keys[3]) < keys[1] < keys[2]
    with pytest.raises(ValueError, match="batch"):
        curve_keys(torch.tensor([[-1, 0, 0, 0]]), (1, 8, 8), "z")
    with pytest.raises(ValueError, match="curve order"):
        curve_keys(coords, (1, 8, 8), "peano")


def test_adversarial_batches():
    coords = [(2, 0, 7, 7), (2, 0, 0, 0), (4, 0, 3, 3)]
    voxels = voxels_from(coords, (1, 8, 8), 5)
    for backend in ("numba", "torch"):
        plan = curve_plan(voxels, 4, "hilbert", backend)
        check_plan_properties(plan, voxels)
        assert plan.buckets[0].batch.tolist() == [2, 4]
        assert plan.buckets[0].index.tolist() == [1, 0, 1, 0, 2, 2, 2, 2]
    empty = SparseVoxels(torch.zeros(0, 4, dtype=torch.int32), torch.zeros(0, 1), (4, 8, 8), 2)
    assert curve_plan(empty, 4).num_groups == 0 and curve_plan(empty, 4, backend="torch").num_groups == 0
    with pytest.raises(ValueError, match="62"):
        curve_plans(SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.zeros(1, 1), (1 << 21, 4, 4), 2), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(8)
    voxels = random_voxels(rng, (5, 200, 300), [3000, 0, 2000])
    cpu, cuda = curve_plans(voxels, 48), curve_plans(voxels.to("cuda"), 48)
    for order in CURVE_ORDERS:
        assert cuda[order].inverse.is_cuda
        assert_plans_equal(cpu[order], cuda[order])
