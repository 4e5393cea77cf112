"""Training callbacks: EMA of the weights, throughput in the progress bar, per-rank digests."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from pointformer.engine.checkpoint import MODEL_PREFIX, strip_prefix


class EMA(pl.Callback):
    """Exponential moving average of the model's weights, swapped in for validation and testing.

    After every optimiser step each floating-point parameter and buffer ``e`` of
    ``pl_module.model`` becomes ``d * e + (1 - d) * w`` with ``d = min(decay, (1 + n) / (10 + n))``
    after ``n`` updates (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``: early
    averages forget the initial weights fast); integer buffers are copied.

    In checkpoints (see :mod:`pointformer.engine.checkpoint`) ``state_dict`` holds the averaged
    weights, ``training_state_dict`` the live ones; the callback's own state is the update count.
    On resume the module loads the live weights and this callback takes the average back from
    ``ema_state_dict`` (the file's ``state_dict``, set aside by the module).
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] | None = None
        self._backup: dict[str, torch.Tensor] | None = None
        self._last_step = -1

    # ------------------------------------------------------------ averaging
    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @staticmethod
    def _weights(pl_module: pl.LightningModule) -> dict[str, torch.Tensor]:
        return pl_module.model.state_dict()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.shadow is None:
            self.shadow = {key: value.detach().clone() for key, value in self._weights(pl_module).items()}
        else:
            device = next(iter(self._weights(pl_module).values())).device
            self.shadow = {key: value.to(device) for key, value in self.shadow.items()}
        self._last_step = trainer.global_step

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self._last_step or self.shadow is None:
            return  # no optimiser step this batch (e.g. a skipped step)
        self._last_step = trainer.global_step
        self.update(self._weights(pl_module))

    @torch.no_grad()
    def update(self, weights: dict[str, torch.Tensor]) -> None:
        """One averaging step towards ``weights``."""
        decay = self.current_decay()
        for key, value in weights.items():
            average = self.shadow[key]
            if average.is_floating_point():
                average.mul_(decay).add_(value.detach().to(average.dtype), alpha=1.0 - decay)
            else:
                average.copy_(value)
        self.num_updates += 1

    # ------------------------------------------------------------ swapping
    def _swap_in(self, pl_module: pl.LightningModule) -> None:
        if self.shadow is None or self._backup is not None:
            return
        self._backup = {key: value.detach().clone() for key, value in self._weights(pl_module).items()}
        pl_module.model.load_state_dict(self.shadow)

    def _swap_out(self, pl_module: pl.LightningModule) -> None:
        if self._backup is None:
            return
        pl_module.model.load_state_dict(self._backup)
        self._backup = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_out(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._swap_out(pl_module)

    # ------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.shadow is None:
            return
        live = self._backup if self._backup is not None else strip_prefix(checkpoint["state_dict"])
        checkpoint["training_state_dict"] = {MODEL_PREFIX + key: value for key, value in live.items()}
        checkpoint["state_dict"] = {MODEL_PREFIX + key: value.detach().clone() for key, value in self.shadow.items()}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        average = checkpoint.get("ema_state_dict")
        if average is not None:
            self.shadow = {key: value.detach().clone() for key, value in strip_prefix(average).items()}

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_updates = int(state_dict.get("num_updates", 0))


class Throughput(pl.Callback):
    """Training samples per second (all ranks) in the progress bar and the logs, timed from one
    batch end to the next (data loading included) and smoothed over ``window`` batches;
    ``samples`` / ``seconds`` add up every timed batch of the fit (validation excluded)."""

    def __init__(self, window: int = 20):
        self.window = window
        self._last: float | None = None
        self._recent: list[tuple[int, float]] = []
        self.samples = 0
        self.seconds = 0.0

    @property
    def samples_per_second(self) -> float:
        """Mean over the whole fit (0 before the second batch)."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            count, duration = len(batch) * trainer.world_size, now - self._last
            self.samples += count
            self.seconds += duration
            self._recent = (self._recent + [(count, duration)])[-self.window:]
            samples = sum(count for count, _ in self._recent)
            seconds = sum(duration for _, duration in self._recent)
            if seconds > 0:
                pl_module.log("train/samples_per_s", samples / seconds, prog_bar=True, on_step=True, on_epoch=False,
                              batch_size=len(batch), rank_zero_only=True)
        self._last = now


class DebugDigest(pl.Callback):
    """Debugging DDP: each rank writes ``<out_dir>/rank<r>.json`` at the end of fit with the
    global loss of every step (``pl_module.last_losses``), the SHA-256 of its parameters and of
    its buffers, and the parameters' sum of squares."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        terms = getattr(pl_module, "last_losses", None)
        if terms is not None:
            self.losses.append(float(terms["loss"]))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "losses": self.losses,
            "parameter_digest": tensor_digest(dict(pl_module.model.named_parameters())),
            "buffer_digest": tensor_digest(dict(pl_module.model.named_buffers())),
            "parameter_square_sum": float(sum(float(p.detach().double().pow(2).sum())
                                              for p in pl_module.model.parameters())),
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record, indent=1))


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names and exact bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
