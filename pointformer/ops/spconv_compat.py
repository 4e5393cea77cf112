"""spconv, importable from one place and trainable on CPU.

Two patches, applied here and only here, once, on import:

- spconv's backward passes ask ``torch.cuda.current_stream()`` for a stream handle even for
  CPU tensors, which fails on a CPU-only torch. When CUDA is unavailable we give spconv the
  null stream (0), which its CPU kernels ignore; on a CUDA machine nothing is changed.
- spconv 2.3's CPU gather-GEMM-scatter convolution races with torch's intra-op thread pool:
  with more than one torch thread, a few percent of output rows come out wrong, differently
  from run to run (tests/ops/test_spconv_compat.py catches it). Its CPU conv and pooling ops
  therefore run with one torch thread; CUDA tensors are untouched.
"""

from __future__ import annotations

import functools
import importlib
from typing import Callable

import torch

import spconv.pytorch as spconv  # noqa: F401  (re-exported: import spconv from here)

# Modules that bound ``get_current_stream`` by name at import time.
_STREAM_USERS = (
    "spconv.pytorch.cppcore",
    "spconv.pytorch.ops",
    "spconv.pytorch.hash",
    "spconv.pytorch.quantization.core",
    "spconv.pytorch.quantization.quantized.conv",
    "spconv.pytorch.quantization.intrinsic.quantized.conv_relu",
)


def _null_stream() -> int:
    return 0


def cpu_stream_patch_needed() -> bool:
    return not torch.cuda.is_available()


def apply_cpu_stream_patch() -> bool:
    """Point spconv's stream lookup at the null stream when CUDA is unavailable.

    Returns True when the patch is in effect. Idempotent.
    """
    if not cpu_stream_patch_needed():
        return False
    for name in _STREAM_USERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "get_current_stream"):
            module.get_current_stream = _null_stream
    return True


# spconv.pytorch.ops functions that run the CPU gather/GEMM/scatter kernels.
_CPU_KERNEL_OPS = (
    "indice_conv", "indice_conv_backward", "indice_maxpool", "indice_maxpool_backward",
)


def _single_threaded_on_cpu(op: Callable) -> Callable:
    """``op`` with torch's intra-op threads set to 1 while its first tensor argument is on CPU."""

    @functools.wraps(op)
    def wrapper(features: torch.Tensor, *args, **kwargs):
        if features.is_cuda:
            return op(features, *args, **kwargs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return op(features, *args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    wrapper.pointformer_single_threaded = True
    return wrapper


def apply_cpu_thread_guard() -> None:
    """Run spconv's CPU kernels single-threaded (see the module docstring). Idempotent."""
    ops = importlib.import_module("spconv.pytorch.ops")
    for name in _CPU_KERNEL_OPS:
        op = getattr(ops, name)
        if not getattr(op, "pointformer_single_threaded", False):
            setattr(ops, name, _single_threaded_on_cpu(op))


CPU_STREAM_PATCHED = apply_cpu_stream_patch()
apply_cpu_thread_guard()
