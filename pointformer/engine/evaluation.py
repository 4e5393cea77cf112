"""The benchmark hook of the engine: per-sample predictions in, metrics to log and a summary out.

:class:`DetectionEvaluator` scores ``Detections`` (in each sample's frame, labels indexing the
model's class names) with ``pointformer.evaluation``: nuScenes (NDS, mAP and the TP errors; the
ground truth from the root's devkit tables when every sample of the split is scored, else from
the info records) or Waymo-style (mAP / mAPH at LEVEL_1 and LEVEL_2).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointformer.data.infos import SampleInfo
from pointformer.engine.config import EvalConfig
from pointformer.structures import Detections

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """``metrics``: flat name -> number to log (``mAP``, ``NDS``, ``AP/car``, ...); ``summary``:
    the benchmark's JSON document (nuScenes: the devkit's ``metrics_summary.json`` layout);
    ``details``: optional curves (nuScenes ``metrics_details.json``); ``result``: the metrics object."""

    metrics: dict[str, float]
    summary: dict[str, Any]
    details: dict[str, Any] | None = None
    result: Any = field(default=None, repr=False)

    def table(self):
        """A rich renderable of the result (None when the benchmark has none)."""
        return self.result.table() if self.result is not None and hasattr(self.result, "table") else None


class DetectionEvaluator:
    """Scores detections of the samples of ``infos`` (one split) under ``root``."""

    def __init__(self, config: EvalConfig, infos: Sequence[SampleInfo], class_names: Sequence[str],
                 root: str | Path, split: str):
        self.config = config
        self.infos = list(infos)
        self.class_names = tuple(class_names)
        self.root = Path(root)
        self.split = split
        self._tables_truth = None

    def evaluate(self, detections: Mapping[str, Detections]) -> Evaluation | None:
        """``detections``: sample id -> Detections for some or all samples of the split."""
        if self.config.benchmark == "nuscenes":
            return self._nuscenes(detections)
        if self.config.benchmark == "waymo":
            return self._waymo(detections)
        return None

    # ------------------------------------------------------------ nuScenes
    def _nuscenes(self, detections: Mapping[str, Detections]) -> Evaluation:
        from pointformer.evaluation.nuscenes import DetectionConfig, evaluate_nuscenes

        config = DetectionConfig(class_range=self.config.class_range) if self.config.class_range else DetectionConfig()
        truth = self._nuscenes_truth(detections)
        ordered = {token: detections[token] for token in truth.sample_tokens}
        metrics = evaluate_nuscenes(truth, ordered, config, class_names=self.class_names)
        flat = {"mAP": metrics.mean_ap, "NDS": metrics.nd_score}
        for name, value in metrics.tp_errors.items():
            flat[f"{name}"] = value
        for name, value in metrics.mean_dist_aps.items():
            flat[f"AP/{name}"] = value
        return Evaluation(_finite(flat), metrics.to_summary(), metrics.details(), metrics)

    def _nuscenes_truth(self, detections: Mapping[str, Detections]):
        """Ground truth of the scored samples: the devkit tables when they cover exactly the
        split and every sample was scored, else the info records of the scored samples."""
        from pointformer.evaluation.nuscenes import NuScenesGroundTruth, find_version

        scored = [info for info in self.infos if info.sample_id in detections]
        unknown = set(detections) - {info.sample_id for info in self.infos}
        if unknown:
            raise ValueError(f"detections for {len(unknown)} samples not in the {self.split} split, "
                             f"e.g. {min(unknown)!r}")
        if self.config.ground_truth == "tables" and len(scored) == len(self.infos):
            if self._tables_truth is None:
                try:
                    self._tables_truth = NuScenesGroundTruth.from_tables(self.root, find_version(self.root), self.split)
                except (FileNotFoundError, ValueError) as error:
                    log.warning("nuScenes tables not usable (%s); scoring against the info records", error)
                    self._tables_truth = False
            if self._tables_truth and set(self._tables_truth.sample_tokens) == set(detections):
                return self._tables_truth
        return NuScenesGroundTruth.from_infos(scored)

    # ------------------------------------------------------------ Waymo
    def _waymo(self, detections: Mapping[str, Detections]) -> Evaluation:
        from pointformer.evaluation.waymo import (
            WaymoGroundTruth,
            WaymoPredictions,
            evaluate_waymo,
        )

        truth = {info.sample_id: WaymoGroundTruth.from_info(info) for info in self.infos
                 if info.sample_id in detections}
        predictions = {sample: WaymoPredictions.from_detections(found, self.class_names)
                       for sample, found in detections.items()}
        metrics = evaluate_waymo(truth, predictions, classes=self.class_names)
        flat = {}
        for level in (1, 2):
            flat[f"mAP_L{level}"] = metrics.mean_ap(level)
            flat[f"mAPH_L{level}"] = metrics.mean_aph(level)
            for name in self.class_names:
                flat[f"AP_L{level}/{name}"] = metrics.get(name, level).ap
        flat["mAP"] = flat["mAP_L2"]
        return Evaluation(_finite(flat), metrics.to_json(), None, metrics)


def _finite(values: Mapping[str, float]) -> dict[str, float]:
    """Numbers only, NaN (an unscored error) left out so loggers and monitors see real values."""
    return {key: float(value) for key, value in values.items() if value is not None and not math.isnan(float(value))}
