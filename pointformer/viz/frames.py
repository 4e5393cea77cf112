"""What the views show: a ``Frame`` (a sample, optional predicted boxes with scores) and the
sequences of frames a dataset, a results file, a scene or a single point file provide."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.data.infos import SampleInfo, info_root, load_infos, load_sample
from pointformer.structures import Annotations, Boxes3D, Detections, Sample


@dataclass
class Frame:
    """One picture's content: ``sample`` (points, ground truth), ``predictions`` (boxes with
    class names) and their ``scores`` (K,), and a ``title`` (None: built from the sample)."""

    sample: Sample
    predictions: Annotations | None = None
    scores: np.ndarray | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if self.predictions is None or len(self.scores) != len(self.predictions):
                count = None if self.predictions is None else len(self.predictions)
                raise ValueError(f"Frame.scores has {len(self.scores)} entries for {count} predicted boxes")


def detections_to_annotations(
    detections: Detections, class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES
) -> tuple[Annotations, np.ndarray]:
    """``Detections`` (labels indexing ``class_names``) -> (Annotations with names, scores (K,))."""
    labels = detections.labels.detach().cpu().numpy()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"detections.labels must index class_names ({len(class_names)} names), "
                         f"got values in [{labels.min()}, {labels.max()}]")
    boxes = Boxes3D(detections.boxes.tensor.detach().cpu())
    names = [class_names[i] for i in labels.tolist()]
    return Annotations.from_boxes(boxes, names), detections.scores.detach().cpu().numpy().astype(np.float64)


def as_predictions(
    predictions: Annotations | Detections | None,
    scores: Sequence[float] | np.ndarray | None = None,
    class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
) -> tuple[Annotations | None, np.ndarray | None]:
    """Predicted boxes as (Annotations, scores or None), whether given as ``Detections`` or as
    ``Annotations`` with separate ``scores``."""
    if predictions is None:
        if scores is not None:
            raise ValueError("scores given without predictions")
        return None, None
    if isinstance(predictions, Detections):
        if scores is not None:
            raise ValueError("scores given twice: Detections carry their own")
        return detections_to_annotations(predictions, class_names)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(predictions):
            raise ValueError(f"scores has {len(scores)} entries for {len(predictions)} predicted boxes")
    return predictions, scores


def filter_boxes(
    annotations: Annotations, scores: np.ndarray | None, classes: Iterable[str] | None, score_threshold: float
) -> tuple[Annotations, np.ndarray | None]:
    """Keep the boxes of ``classes`` (None: all) whose score is at least ``score_threshold``."""
    keep = np.ones(len(annotations), bool)
    if classes is not None:
        wanted = set(classes)
        keep &= np.array([name in wanted for name in annotations.names], bool)
    if scores is not None:
        keep &= scores >= score_threshold
    index = torch.from_numpy(np.nonzero(keep)[0])
    return annotations.select(index), None if scores is None else scores[keep]


def filter_frame(frame: Frame, classes: Iterable[str] | None = None, score_threshold: float = 0.0) -> Frame:
    """The frame with ground truth and predictions limited to ``classes`` (None: all) and the
    predictions to scores >= ``score_threshold``."""
    if not np.isfinite(score_threshold):
        raise ValueError(f"score_threshold must be finite, got {score_threshold}")
    classes = None if classes is None else set(classes)
    ground_truth, _ = filter_boxes(frame.sample.annotations, None, classes, score_threshold)
    predictions, scores = frame.predictions, frame.scores
    if predictions is not None:
        predictions, scores = filter_boxes(predictions, scores, classes, score_threshold)
    return replace(frame, sample=frame.sample.with_annotations(ground_truth), predictions=predictions, scores=scores)


def open_infos(data: str | os.PathLike, split: str | None = None) -> tuple[list[SampleInfo], Path]:
    """(records, dataset root) of an info file (``pointformer_infos_*.json``) or a dataset root
    (layout detected, ``split`` in the layout's own names)."""
    data = Path(data)
    if data.suffix == ".json":
        infos, header = load_infos(data)
        return infos, info_root(data, header)
    from pointformer.data.readers.layouts import open_reader

    return list(open_reader(data, split=split).infos), data


class DatasetFrames(Sequence[Frame]):
    """Frames of dataset records, loaded on access, with optional predictions by sample id.

    ``predictions``: sample id -> ``Detections`` (labels indexing ``class_names``), e.g. from
    ``read_results``; a sample without an entry has no predictions.
    """

    def __init__(
        self,
        infos: Sequence[SampleInfo],
        root: str | os.PathLike | None,
        *,
        num_sweeps: int | None = None,
        predictions: Mapping[str, Detections] | None = None,
        class_names: Sequence[str] = NUSCENES_DETECTION_CLASSES,
        loader: Callable[[SampleInfo], Sample] | None = None,
    ):
        self.infos = list(infos)
        self.root = root
        self.num_sweeps = num_sweeps
        self.predictions = predictions
        self.class_names = tuple(class_names)
        self._loader = loader

    def __len__(self) -> int:
        return len(self.infos)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame index {index} out of range for {len(self)} frames")
        info = self.infos[index]
        sample = self._loader(info) if self._loader else load_sample(info, self.root, num_sweeps=self.num_sweeps)
        if self.predictions is None:
            return Frame(sample)
        found = self.predictions.get(info.sample_id)
        if found is None:
            return Frame(sample, Annotations.from_boxes(Boxes3D.empty(), []), np.zeros(0))
        predictions, scores = detections_to_annotations(found, self.class_names)
        return Frame(sample, predictions, scores)


def scene_indices(infos: Sequence[SampleInfo], scene: str | int) -> list[int]:
    """Positions of the records of one scene, in time order. ``scene``: a scene name (or
    token / Waymo context) as the records store it, or the scene's position in first-seen order."""
    names = list(dict.fromkeys(info.scene for info in infos))
    if isinstance(scene, int) or (isinstance(scene, str) and scene.isdigit() and scene not in names):
        position = int(scene)
        if not 0 <= position < len(names):
            raise ValueError(f"scene index {position} out of range: the data has {len(names)} scenes")
        scene = names[position]
    chosen = [i for i, info in enumerate(infos) if info.scene == scene]
    if not chosen:
        raise ValueError(f"scene {scene!r} not found; scenes: {names[:10]}{' ...' if len(names) > 10 else ''}")
    return sorted(chosen, key=lambda i: infos[i].timestamp_us)


def file_sample(
    path: str | os.PathLike, columns: Sequence[str] | None = None, *, labels_path: str | os.PathLike | None = None
) -> Sample:
    """One point file (``.bin``, ``.pcd.bin``, ``.npy``, ``.pcd``, ``.ply``, ``.las``) as a
    sample with every column the file has; per-point labels from ``labels_path``."""
    from pointformer.data.readers.files import file_info

    info = file_info(path, columns, labels_path=labels_path)
    return load_sample(info, None, feature_columns=info.lidar.columns[3:], time_lag=False)
