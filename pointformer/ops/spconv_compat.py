"""spconv, importable from one place and trainable on CPU.

spconv's backward passes ask ``torch.cuda.current_stream()`` for a stream handle even for CPU
tensors, which fails on a CPU-only torch. When CUDA is unavailable we give spconv the null
stream (0), which its CPU kernels ignore. The patch is applied here and only here, once, on
import; on a CUDA machine nothing is changed.
"""

from __future__ import annotations

import importlib

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


CPU_STREAM_PATCHED = apply_cpu_stream_patch()
