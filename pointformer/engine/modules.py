"""LightningModules around the models: the maths of a step; the Trainer holds the loop.

:class:`DetectionModule` and :class:`SegmentationModule` share :class:`PerceptionModule`:
the optimiser (AdamW, no weight decay on norm layers when asked) and its one-cycle schedule
stepped every iteration, per-term loss logging (``train/<term>``, the mean over DDP ranks, which
with the heads' rank-averaged normalisers is the loss of the global batch), and the checkpoint
contents of :mod:`pointformer.engine.checkpoint`.

Validation and test: each rank predicts its share (``ShardSampler``); at the epoch's end the
predictions are gathered on rank 0, scored, and the metrics broadcast so every rank logs the
same values (``val/mAP``, ``val/NDS``, ``val/AP/<class>``; ``val/mIoU``, ``val/IoU/<class>``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pointformer.data.transforms import invert_augmentations
from pointformer.engine.checkpoint import (
    add_prefix,
    rng_states,
    set_rng_states,
    strip_prefix,
)
from pointformer.engine.config import ExperimentConfig
from pointformer.engine.data import world
from pointformer.engine.distributed import (
    broadcast_object,
    gather_objects,
    mean_over_ranks,
)
from pointformer.engine.evaluation import DetectionEvaluator, Evaluation
from pointformer.structures import Boxes3D, Detections

log = logging.getLogger(__name__)
NORM_LAYERS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)


def owns(index: int) -> bool:
    """Whether this rank scores dataset sample ``index`` (``ShardSampler`` gives the other
    ranks' samples to a rank only as padding)."""
    rank, size = world()
    return index % size == rank


class PerceptionModule(pl.LightningModule):
    """Shared training logic; ``model`` defaults to ``config.build_model()``."""

    def __init__(self, config: ExperimentConfig, model: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.model = model if model is not None else config.build_model()
        self.last_losses: dict[str, float] | None = None

    # ------------------------------------------------------------ training
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        outputs = self.model(batch)
        terms = self.model.loss(batch, outputs)
        names = list(terms)
        global_terms = mean_over_ranks(torch.stack([terms[name].detach().float() for name in names]))
        self.last_losses = {name: float(value) for name, value in zip(names, global_terms)}
        for name, value in zip(names, global_terms):
            self.log(f"train/{name}", value, batch_size=len(batch), prog_bar=name == "loss", on_step=True,
                     on_epoch=False)
        return terms["loss"]

    def configure_optimizers(self):
        settings = self.config.train
        decay, no_decay = self._parameter_groups(settings.optimizer.no_decay_norm)
        groups = [{"params": decay, "weight_decay": settings.optimizer.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups, lr=settings.optimizer.lr, betas=tuple(settings.optimizer.betas))
        schedule = settings.schedule
        momentum = schedule.momentum
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.optimizer.lr, total_steps=max(int(self.trainer.estimated_stepping_batches), 1),
            pct_start=schedule.pct_start, anneal_strategy="cos", cycle_momentum=momentum is not None,
            base_momentum=momentum[0] if momentum else 0.85, max_momentum=momentum[1] if momentum else 0.95,
            div_factor=schedule.div_factor, final_div_factor=schedule.final_div_factor,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        """A resumed run must keep its schedule: one-cycle cannot be stretched mid-run."""
        expected = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = self.lr_schedulers()
        if scheduler is not None and scheduler.total_steps != expected:
            raise ValueError(
                f"the checkpoint's one-cycle schedule spans {scheduler.total_steps} steps but this run's "
                f"train.max_steps / max_epochs give {expected}; resume with the settings it was started with "
                "(to train longer, start a new run from its weights)")

    def _parameter_groups(self, no_decay_norm: bool) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(with weight decay, without): norm layers' parameters in the second when asked."""
        norm_ids = set()
        if no_decay_norm:
            for module in self.model.modules():
                if isinstance(module, NORM_LAYERS):
                    norm_ids.update(id(p) for p in module.parameters(recurse=False))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return [p for p in trainable if id(p) not in norm_ids], [p for p in trainable if id(p) in norm_ids]

    def _log_metrics(self, stage: str, metrics: dict[str, float]) -> None:
        """Metrics computed on rank 0 and broadcast: every rank logs the same values."""
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", float(value), sync_dist=False, rank_zero_only=False)

    # ------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = strip_prefix(checkpoint["state_dict"])
        if "training_state_dict" in checkpoint:
            checkpoint["training_state_dict"] = strip_prefix(checkpoint["training_state_dict"])
        checkpoint.update(self.config.model_description())
        checkpoint["point_columns"] = list(self.config.dataset.point_columns)
        checkpoint["num_sweeps"] = self.config.dataset.num_sweeps
        checkpoint["config"] = self.config.to_dict()
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume: the live weights go into the model (the EMA callback takes the averaged ones
        from ``ema_state_dict``), and the random generators continue where they were."""
        if "training_state_dict" in checkpoint:
            checkpoint["ema_state_dict"] = checkpoint["state_dict"]
            checkpoint["state_dict"] = checkpoint["training_state_dict"]
        checkpoint["state_dict"] = add_prefix(checkpoint["state_dict"])
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])


class DetectionModule(PerceptionModule):
    """A ``Detector``: validation/test collect ``Detections`` per sample and score them with the
    config's benchmark (``eval.benchmark``). After ``trainer.test`` on rank 0,
    ``test_predictions`` maps sample id -> Detections and ``test_evaluation`` holds the result."""

    def __init__(self, config: ExperimentConfig, model: nn.Module | None = None):
        super().__init__(config, model)
        self._collected: list[tuple[int, str, Detections]] = []
        self._evaluators: dict[str, DetectionEvaluator] = {}
        self.test_predictions: dict[str, Detections] | None = None
        self.test_evaluation: Evaluation | None = None

    def predict_batch(self, batch, outputs) -> list[Detections]:
        """Detections per sample, in the frame the sample was loaded in, on the CPU."""
        found = self.model.predict(batch, outputs)
        results = []
        for meta, detections in zip(batch.metas, found):
            boxes = detections.boxes
            if meta.get("augmentations"):
                boxes = invert_augmentations(boxes, meta)
            results.append(Detections(Boxes3D(boxes.tensor.detach().float().cpu()), detections.scores.detach().cpu(),
                                      detections.labels.detach().cpu()))
        return results

    def _evaluation_step(self, batch, stage: str) -> None:
        outputs = self.model(batch)
        terms = self.model.loss(batch, outputs)
        self.log(f"{stage}/loss", terms["loss"].detach(), batch_size=len(batch), on_step=False, on_epoch=True,
                 sync_dist=True)
        for meta, detections in zip(batch.metas, self.predict_batch(batch, outputs)):
            if owns(int(meta["index"])):
                self._collected.append((int(meta["index"]), str(meta["sample_id"]), detections))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> list[tuple[str, Detections]]:
        return [(str(meta["sample_id"]), found) for meta, found in zip(batch.metas, self.predict_batch(batch, self.model(batch)))]

    def _gathered(self) -> dict[str, Detections]:
        """Every rank's predictions merged in dataset order (on every rank)."""
        merged: dict[int, tuple[str, Detections]] = {}
        for part in gather_objects(self._collected):
            for index, sample_id, detections in part:
                merged.setdefault(index, (sample_id, detections))
        self._collected = []
        return {sample_id: detections for _, (sample_id, detections) in sorted(merged.items())}

    def _evaluate(self, stage: str, predictions: dict[str, Detections]) -> Evaluation | None:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        dataset = getattr(loaders, "dataset", None)
        if dataset is None or not predictions:
            return None
        if stage not in self._evaluators:
            split = getattr(self.config.dataset.splits, stage)
            self._evaluators[stage] = DetectionEvaluator(self.config.eval, dataset.infos,
                                                         self.config.dataset.class_names, self.config.dataset.root, split)
        return self._evaluators[stage].evaluate(predictions)

    def _finish(self, stage: str) -> None:
        """Gather, score on rank 0, share the metrics (or rank 0's error, so no rank waits forever)."""
        predictions = self._gathered()
        evaluation, failure = None, None
        if self.global_rank == 0:
            try:
                evaluation = self._evaluate(stage, predictions)
            except (ValueError, KeyError, FileNotFoundError) as error:
                failure = f"{stage} evaluation failed: {type(error).__name__}: {error}"
        shared = broadcast_object({"metrics": evaluation.metrics if evaluation is not None else {}, "error": failure})
        if shared["error"] is not None:
            raise ValueError(shared["error"])
        self._log_metrics(stage, shared["metrics"])
        if stage == "test" and self.global_rank == 0:
            self.test_predictions, self.test_evaluation = predictions, evaluation

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")


class SegmentationModule(PerceptionModule):
    """A ``Segmentor``: validation/test stream a confusion matrix (summed over ranks) and log
    ``mIoU``, ``accuracy`` and ``IoU/<class>``; ``test_evaluation`` holds the last test's metrics."""

    def __init__(self, config: ExperimentConfig, model: nn.Module | None = None):
        super().__init__(config, model)
        from pointformer.evaluation.segmentation import ConfusionMatrix

        names = self.config.dataset.class_names
        self.confusion = ConfusionMatrix(len(names), ignore_index=config.dataset.ignore_index, class_names=names)
        self.test_evaluation: Evaluation | None = None

    def _owned_labels(self, batch) -> torch.Tensor:
        """The batch's point labels with the points of padding samples set to the ignore index."""
        labels = batch.point_labels.clone()
        offsets = batch.points.offsets.tolist()
        for sample, meta in enumerate(batch.metas):
            if not owns(int(meta["index"])):
                labels[offsets[sample]:offsets[sample + 1]] = self.config.dataset.ignore_index
        return labels

    def _evaluation_step(self, batch, stage: str) -> None:
        logits = self.model(batch)
        if batch.point_labels is None:
            raise ValueError(f"{stage}: the batch has no point labels to score (an unlabelled split?)")
        terms = self.model.loss(batch, logits)
        self.log(f"{stage}/loss", terms["loss"].detach(), batch_size=len(batch), on_step=False, on_epoch=True,
                 sync_dist=True)
        self.confusion.update(self.model.predict(batch, logits), self._owned_labels(batch))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> list[tuple[str, torch.Tensor]]:
        labels = self.model.predict(batch)
        offsets = batch.points.offsets.tolist()
        return [(str(meta["sample_id"]), labels[offsets[i]:offsets[i + 1]].cpu()) for i, meta in enumerate(batch.metas)]

    def _finish(self, stage: str) -> None:
        if self.confusion.matrix.device != self.device:
            self.confusion.matrix = self.confusion.matrix.to(self.device)
        result = self.confusion.all_reduce().compute()
        self.confusion.reset()
        metrics = {"mIoU": result.miou, "accuracy": result.accuracy}
        metrics.update({f"IoU/{name}": value for name, value in zip(result.class_names, result.iou.tolist())})
        finite = {key: float(value) for key, value in metrics.items() if not math.isnan(value)}
        self._log_metrics(stage, finite)
        if stage == "test":
            self.test_evaluation = Evaluation(finite, result.to_json(), None, result)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")


def module_class(config: ExperimentConfig) -> type[PerceptionModule]:
    return SegmentationModule if config.task == "segmentation" else DetectionModule
