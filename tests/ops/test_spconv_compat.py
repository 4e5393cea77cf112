"""spconv on CPU: a SubMConv3d + SparseConv3d stack runs forward and backward and matches
a dense ``conv3d`` twin (values and gradients) on a small grid."""

import pytest
import torch
import torch.nn.functional as F

from pointformer.ops.spconv_compat import CPU_STREAM_PATCHED, apply_cpu_stream_patch, spconv
from pointformer.structures import SparseVoxels


def _random_voxels(generator: torch.Generator, batch_size=2, shape=(6, 7, 8), count=25, channels=3):
    coords = set()
    while len(coords) < count:
        b = int(torch.randint(batch_size, (1,), generator=generator))
        z, y, x = (int(torch.randint(s, (1,), generator=generator)) for s in shape)
        coords.add((b, z, y, x))
    coords = torch.tensor(sorted(coords), dtype=torch.int32)
    feats = torch.randn(len(coords), channels, generator=generator, dtype=torch.float64)
    return SparseVoxels(coords, feats, shape, batch_size)


def _dense_weight(conv) -> torch.Tensor:
    """spconv weight (out, kz, ky, kx, in) -> conv3d weight (out, in, kz, ky, kx)."""
    return conv.weight.permute(0, 4, 1, 2, 3)


def test_patch_applies_only_without_cuda():
    assert CPU_STREAM_PATCHED == (not torch.cuda.is_available())
    assert apply_cpu_stream_patch() == CPU_STREAM_PATCHED  # idempotent


@pytest.mark.parametrize("seed", range(8))
def test_subm_then_strided_matches_dense_twin(seed):
    generator = torch.Generator().manual_seed(seed)
    voxels = _random_voxels(generator)
    subm = spconv.SubMConv3d(3, 4, 3, padding=1, bias=False, indice_key="subm").double()
    down = spconv.SparseConv3d(4, 5, 3, stride=2, padding=1, bias=False).double()
    net = spconv.SparseSequential(subm, down)

    feats = voxels.feats.clone().requires_grad_(True)
    out = net(voxels.replace_feats(feats).to_spconv())
    weights = torch.randn(out.features.shape, generator=generator, dtype=torch.float64)
    (out.features * weights).sum().backward()

    dense_in = voxels.replace_feats(voxels.feats.clone()).dense().requires_grad_(True)
    occupied = (voxels.replace_feats(torch.ones(voxels.num_voxels, 1, dtype=torch.float64)).dense() > 0).double()
    w1 = _dense_weight(subm).detach().clone().requires_grad_(True)
    w2 = _dense_weight(down).detach().clone().requires_grad_(True)
    hidden = F.conv3d(dense_in, w1, padding=1) * occupied  # submanifold: outputs only at input sites
    dense_out = F.conv3d(hidden, w2, stride=2, padding=1)

    b, z, y, x = out.indices.long().unbind(1)
    twin = dense_out[b, :, z, y, x]
    torch.testing.assert_close(out.features, twin, rtol=1e-9, atol=1e-9)

    # Sites spconv did not produce have no input in their receptive field: the twin is 0 there.
    active = torch.zeros(dense_out.shape[0], *dense_out.shape[2:], dtype=torch.bool)
    active[b, z, y, x] = True
    assert dense_out.permute(0, 2, 3, 4, 1)[~active].abs().max() == 0

    (twin * weights).sum().backward()
    vb, vz, vy, vx = voxels.coords.long().unbind(1)
    torch.testing.assert_close(feats.grad, dense_in.grad[vb, :, vz, vy, vx], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(subm.weight.grad.permute(0, 4, 1, 2, 3), w1.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(down.weight.grad.permute(0, 4, 1, 2, 3), w2.grad, rtol=1e-9, atol=1e-9)


def test_empty_sample_in_batch():
    coords = torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.int32)  # sample 0 has no voxels
    voxels = SparseVoxels(coords, torch.randn(2, 2), (3, 3, 3), batch_size=2)
    conv = spconv.SubMConv3d(2, 2, 3, padding=1)
    out = conv(voxels.to_spconv())
    assert out.features.shape == (2, 2) and out.batch_size == 2
    out.features.sum().backward()
    assert conv.weight.grad is not None


def test_cpu_kernels_are_guarded():
    import spconv.pytorch.ops as ops

    for name in ("indice_conv", "indice_conv_backward", "indice_maxpool", "indice_maxpool_backward"):
        assert getattr(getattr(ops, name), "pointformer_single_threaded", False), name
