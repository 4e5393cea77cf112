"""Assemble a Lightning ``Trainer`` from a config and run training or evaluation.

Work directory layout::

    <work_dir>/config.yaml                 the checked config of the run (overrides applied)
    <work_dir>/checkpoints/last.ckpt       every validation, every N steps / minutes, at the end
    <work_dir>/checkpoints/best.ckpt       best ``train.checkpoint.monitor`` so far
    <work_dir>/tensorboard/version_*/      TensorBoard events
    <work_dir>/csv/version_*/metrics.csv   the same scalars as CSV (one version per launch)

Distributed training is Lightning's: ``devices > 1`` (or ``num_nodes > 1``) runs DDP, launched
by Lightning itself, by ``torchrun`` or by SLURM (the cluster environment is detected). Batch
norm then normalises over the global batch (``train.sync_batchnorm``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from pointformer.engine.callbacks import EMA, DebugDigest, Throughput
from pointformer.engine.checkpoint import (
    AtomicCheckpointIO,
    load_checkpoint_file,
    strip_prefix,
)
from pointformer.engine.config import ExperimentConfig, parse_duration
from pointformer.engine.data import EngineDataModule, build_datamodule
from pointformer.engine.distributed import BatchNormSync
from pointformer.engine.modules import PerceptionModule, module_class

log = logging.getLogger(__name__)
LAST_NAME = "last"
BEST_NAME = "best"

MONITORS = {
    "nuscenes": ("val/mAP", "val/NDS", "val/loss"),
    "waymo": ("val/mAP", "val/mAP_L1", "val/mAPH_L1", "val/mAP_L2", "val/mAPH_L2", "val/loss"),
    "segmentation": ("val/mIoU", "val/accuracy", "val/loss"),
    "none": ("val/loss",),
}


@dataclass
class RunOptions:
    """Command-line choices that are not part of the experiment: where, on how many devices,
    and the switches tests and debugging use."""

    work_dir: Path
    devices: int = 1
    num_nodes: int = 1
    progress_bar: bool = True
    loggers: bool = True
    debug_digest: bool = False
    extra_callbacks: list[Callback] = field(default_factory=list)


def uses_cuda(config: ExperimentConfig) -> bool:
    return config.train.accelerator != "cpu" and torch.cuda.is_available()


def precision(config: ExperimentConfig) -> str:
    """``train.precision`` for this machine: mixed precision only on a GPU."""
    wanted = config.train.precision
    if wanted == "auto":
        return "16-mixed" if uses_cuda(config) else "32-true"
    if "mixed" in wanted and not uses_cuda(config):
        log.warning("train.precision=%s needs a GPU; training in 32-bit on the CPU", wanted)
        return "32-true"
    return "32-true" if wanted == "32" else wanted


def check_monitor(config: ExperimentConfig) -> None:
    monitor = config.train.checkpoint.monitor
    if monitor is None:
        return
    benchmark = "segmentation" if config.task == "segmentation" else config.eval.benchmark
    allowed = MONITORS[benchmark]
    if monitor not in allowed and not (benchmark != "none" and monitor.startswith(("val/AP", "val/IoU/"))):
        raise ValueError(f"train.checkpoint.monitor: {monitor!r} is not logged with eval.benchmark={benchmark!r}; "
                         f"use one of {list(allowed)} (or val/AP/<class>, val/IoU/<class>)")


def checkpoint_callbacks(config: ExperimentConfig, directory: Path) -> list[ModelCheckpoint]:
    """``last.ckpt`` (every validation, on a step / time interval, at the end) and ``best.ckpt``."""
    settings = config.train.checkpoint
    callbacks = [ModelCheckpoint(dirpath=directory, filename=LAST_NAME, save_top_k=1, monitor=None,
                                 save_on_train_epoch_end=True, enable_version_counter=False)]
    if settings.every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=directory, filename=LAST_NAME, save_top_k=1, monitor=None,
                                         every_n_train_steps=settings.every_n_steps, enable_version_counter=False))
    if settings.every_n_minutes:
        from datetime import timedelta

        callbacks.append(ModelCheckpoint(dirpath=directory, filename=LAST_NAME, save_top_k=1, monitor=None,
                                         train_time_interval=timedelta(minutes=settings.every_n_minutes),
                                         enable_version_counter=False))
    if settings.monitor is not None:
        callbacks.append(ModelCheckpoint(dirpath=directory, filename=BEST_NAME, monitor=settings.monitor,
                                         mode=settings.mode, save_top_k=1, auto_insert_metric_name=False,
                                         enable_version_counter=False))
    return callbacks


def build_trainer(config: ExperimentConfig, options: RunOptions, *, fitting: bool = True) -> pl.Trainer:
    """The Trainer of a config: precision, clipping, determinism, DDP, checkpoints, loggers."""
    train = config.train
    cuda = uses_cuda(config)
    callbacks: list[Callback] = list(options.extra_callbacks)
    if fitting:
        check_monitor(config)
        callbacks += checkpoint_callbacks(config, options.work_dir / "checkpoints")
        callbacks.append(Throughput())
        if train.ema_decay is not None:
            callbacks.append(EMA(train.ema_decay))
        if options.loggers:
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if options.debug_digest:
            callbacks.append(DebugDigest(options.work_dir / "debug"))
    if options.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    loggers = [TensorBoardLogger(options.work_dir, name="tensorboard"), CSVLogger(options.work_dir, name="csv")] \
        if options.loggers else False
    distributed = options.devices > 1 or options.num_nodes > 1
    plugins: list = [AtomicCheckpointIO()]
    if distributed and train.sync_batchnorm:
        plugins.append(BatchNormSync(cuda))
    strategy = DDPStrategy(find_unused_parameters=train.find_unused_parameters) if distributed else "auto"
    return pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=options.devices,
        num_nodes=options.num_nodes,
        strategy=strategy,
        plugins=plugins,
        precision=precision(config),
        max_epochs=train.max_epochs if train.max_epochs is not None else -1,
        max_steps=train.max_steps if train.max_steps is not None else -1,
        max_time=parse_duration(train.max_time, "train.max_time") if train.max_time else None,
        gradient_clip_val=train.grad_clip,
        gradient_clip_algorithm="norm",
        deterministic=train.deterministic,
        check_val_every_n_epoch=train.val_interval,
        log_every_n_steps=train.log_every_n_steps,
        limit_train_batches=train.limit_train_batches,
        limit_val_batches=train.limit_val_batches,
        limit_test_batches=train.limit_val_batches,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=callbacks,
        logger=loggers,
        enable_progress_bar=options.progress_bar,
        enable_model_summary=options.progress_bar,
        default_root_dir=options.work_dir,
    )


def write_config(config: ExperimentConfig, work_dir: Path) -> Path:
    """The checked config as ``<work_dir>/config.yaml`` (rank 0 only under DDP)."""
    path = work_dir / "config.yaml"
    if rank_zero_only.rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def resolve_resume(resume: str | os.PathLike | None, work_dir: Path) -> Path | None:
    """``--resume`` without a path means ``<work_dir>/checkpoints/last.ckpt``; it must exist."""
    if resume is None:
        return None
    path = work_dir / "checkpoints" / f"{LAST_NAME}.ckpt" if str(resume) in ("", "auto", "last") else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: checkpoint {path} not found")
    return path


def train(config: ExperimentConfig, options: RunOptions, resume: str | os.PathLike | None = None
          ) -> tuple[pl.Trainer, PerceptionModule]:
    """Fit the config's model; ``resume``: a checkpoint (or "auto" for the work dir's last)."""
    checkpoint = resolve_resume(resume, options.work_dir)
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    datamodule = build_datamodule(config.dataset, config.task, seed=config.train.seed, stages=("train", "val"))
    module = module_class(config)(config)
    trainer = build_trainer(config, options)
    write_config(config, options.work_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
    return trainer, module


def load_module(config: ExperimentConfig, checkpoint_path: str | os.PathLike) -> PerceptionModule:
    """A module with the deployable weights (``state_dict``) of a checkpoint. The checkpoint's
    own model description wins over the config's model section (a warning names a difference)."""
    payload = load_checkpoint_file(checkpoint_path)
    if "state_dict" not in payload:
        raise ValueError(f"checkpoint {checkpoint_path} has no state_dict")
    if "model_config" in payload and payload["model_config"] != config.model:
        log.warning("checkpoint %s was trained with another model section than the config's; using the checkpoint's",
                    checkpoint_path)
        config.model = dict(payload["model_config"])
    for key in ("class_names", "point_channels"):
        expected = list(config.dataset.class_names) if key == "class_names" else config.dataset.point_channels
        if key in payload and payload[key] != expected:
            raise ValueError(f"checkpoint {checkpoint_path}: {key} {payload[key]} differ from the config's {expected}")
    module = module_class(config)(config)
    try:
        module.model.load_state_dict(strip_prefix(payload["state_dict"]), strict=True)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {checkpoint_path}: its weights do not fit the model: {error}") from error
    return module


def evaluate(config: ExperimentConfig, checkpoint_path: str | os.PathLike, options: RunOptions
             ) -> tuple[PerceptionModule, EngineDataModule]:
    """Run the test split through a checkpoint; the module holds ``test_evaluation`` (and, for
    detection, ``test_predictions``) on rank 0 afterwards."""
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    module = load_module(config, checkpoint_path)
    datamodule = build_datamodule(config.dataset, config.task, seed=config.train.seed, stages=("test",))
    trainer = build_trainer(config, options, fitting=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return module, datamodule


def default_work_dir(config_path: str | os.PathLike) -> Path:
    return Path("work_dirs") / Path(config_path).stem


__all__: Sequence[str] = ("RunOptions", "build_trainer", "default_work_dir", "evaluate", "load_module", "train")
