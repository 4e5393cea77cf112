"""What DDP needs beyond Lightning: batch norm over the global batch on any device, and moving
Python results between ranks.

``torch.nn.SyncBatchNorm`` runs on GPUs only. :class:`GlobalBatchNorm` computes the same
statistics with two autograd-aware all-reduces (per-channel sums, then centred squares), so a
CPU (gloo) run normalises over the global batch too. Its backward is exact: the all-reduce's
backward sums the gradients every rank's loss sends to the shared statistics, which with DDP's
gradient average gives the single-process gradient of the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning.plugins import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def distributed() -> bool:
    """True when a process group of more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: every rank's output is the sum of the inputs, and
    the gradient reaching each input is the sum of the gradients every rank's output received
    (the derivative of the total loss of all ranks)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.detach().clone()
        dist.all_reduce(total)
        return total


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    return SumOverRanks.apply(tensor)


class GlobalBatchNorm(_BatchNorm):
    """Batch normalisation whose training statistics are those of the batch of every rank
    (mean and biased variance over all ranks' elements); plain batch norm outside DDP and in
    eval mode. Any input (N, C, ...) with the channels on dim 1; ``original_class`` is the
    class it replaced (:func:`revert_global_batchnorm` gives it back)."""

    original_class: type[_BatchNorm] = nn.BatchNorm1d

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C, ...) input, got shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() / max(input.shape[1], 1)], dtype=input.dtype, device=input.device)
        total = sum_over_ranks(count)
        if float(total) == 0:
            return input
        mean = sum_over_ranks(input.sum(dims)) / total
        centred = input - mean.reshape(shape)
        var = sum_over_ranks((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(total))
        out = centred * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, total: float) -> None:
        """As ``F.batch_norm`` does: running variance unbiased (n / (n - 1))."""
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (total / max(total - 1.0, 1.0))
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


def _swap_batchnorm(module: nn.Module, make) -> nn.Module:
    """``module`` with every batch-norm layer ``make`` accepts replaced by ``make(layer)``."""
    replacement = make(module)
    if replacement is not None:
        return replacement
    for name, child in module.named_children():
        module.add_module(name, _swap_batchnorm(child, make))
    return module


def _copy_batchnorm(source: _BatchNorm, cls: type[_BatchNorm]) -> _BatchNorm:
    """A ``cls`` layer with ``source``'s settings, parameters, statistics, device, dtype and mode."""
    reference = source.weight if source.affine else source.running_mean
    placement = {} if reference is None else {"device": reference.device, "dtype": reference.dtype}
    target = cls(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats,
                 **placement)
    target.load_state_dict(source.state_dict())
    target.train(source.training)
    return target


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Every ``BatchNorm1d/2d/3d`` of ``module`` replaced by a :class:`GlobalBatchNorm` with its
    parameters and statistics (state-dict keys unchanged)."""
    def make(layer: nn.Module):
        if isinstance(layer, _BatchNorm) and not isinstance(layer, (GlobalBatchNorm, nn.SyncBatchNorm)):
            converted = _copy_batchnorm(layer, GlobalBatchNorm)
            converted.original_class = type(layer)
            return converted
        return None

    return _swap_batchnorm(module, make)


def revert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Inverse of :func:`convert_global_batchnorm`."""
    def make(layer: nn.Module):
        if isinstance(layer, GlobalBatchNorm):
            return _copy_batchnorm(layer, layer.original_class)
        return None

    return _swap_batchnorm(module, make)


class BatchNormSync(LayerSync):
    """Lightning plugin: batch norm over the global batch under DDP, ``torch.nn.SyncBatchNorm``
    on CUDA and :class:`GlobalBatchNorm` elsewhere (Lightning applies it when fitting with DDP)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def apply(self, model: nn.Module) -> nn.Module:
        if self.cuda:
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return convert_global_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        if self.cuda:
            from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm

            return TorchSyncBatchNorm().revert(model)
        return revert_global_batchnorm(model)


# ------------------------------------------------------------------ objects between ranks
def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` in rank order (``[value]`` outside DDP)."""
    if not distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` on every rank."""
    if not distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=source)
    return box[0]


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over ranks (a copy; ``tensor`` itself outside DDP)."""
    if not distributed():
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced)
    return reduced / dist.get_world_size()
