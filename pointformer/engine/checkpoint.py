"""Checkpoint files: written atomically, read back with ``torch.load(weights_only=True)``.

Besides Lightning's own keys (loops, optimiser, scheduler, callbacks, the training loader's
position) a checkpoint of :mod:`pointformer.engine` holds what rebuilds and runs the model
without its config file, the keys ``pointformer.models.export.load_checkpoint`` reads:

- ``state_dict``: the weights to deploy (the EMA weights when EMA is on), keys of the bare
  ``Detector`` / ``Segmentor`` (no ``model.`` prefix);
- ``model_config``, ``class_names``, ``point_channels``, ``voxel_size``, ``point_cloud_range``;

and ``training_state_dict`` (the optimiser's live weights, with EMA on), ``point_columns``,
``num_sweeps``, ``config`` (the whole checked config) and ``rng_states`` (torch, CUDA, numpy and
Python generators, restored on resume).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from pointformer.models.export import read_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file in the target folder, flushes it to disk and renames it over the
    target (``os.replace``), so a crash mid-write leaves the previous checkpoint intact. Loads
    with ``weights_only=True``: a checkpoint holds tensors and plain containers only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location)


def save_atomic(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint read with ``weights_only=True``; clear errors for a missing or foreign file
    (``pointformer.models.export.read_checkpoint``, the one reader of checkpoint files)."""
    return read_checkpoint(path, map_location)


# ------------------------------------------------------------------ weights
MODEL_PREFIX = "model."


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str = MODEL_PREFIX) -> dict[str, torch.Tensor]:
    """The LightningModule's keys (``model.encoder...``) as the bare model's (``encoder...``)."""
    return {key.removeprefix(prefix): value for key, value in state_dict.items()}


def add_prefix(state_dict: dict[str, torch.Tensor], prefix: str = MODEL_PREFIX) -> dict[str, torch.Tensor]:
    return {key if key.startswith(prefix) else prefix + key: value for key, value in state_dict.items()}


# ------------------------------------------------------------------ random generators
def rng_states() -> dict[str, Any]:
    """The global torch, CUDA, numpy and Python generator states as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states` (CUDA states only where CUDA is available)."""
    torch.set_rng_state(states["torch"].cpu())
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    random.setstate(_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


def _plain(value: Any) -> Any:
    """Tuples as lists (checkpoints store lists)."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
