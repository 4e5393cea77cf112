"""Prepare a dataset root for training: info files per split and the GT-sampling database.

Writes into the root (or ``out_dir``): ``pointformer_infos_<split>.json`` and
``gt_database/gt_database.json`` (+ shards), built from the training split.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .classes import KITTI_CLASSES, NUSCENES_DETECTION_CLASSES, WAYMO_CLASSES
from .gt_database import build_gt_database
from .infos import save_infos
from .readers.layouts import default_splits, detect_layout, open_reader

log = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "training", "mini_train", "all")


@dataclass
class PreparedDataset:
    """What :func:`prepare_dataset` wrote: info files per split, the GT database index."""

    root: Path
    layout: str
    info_files: dict[str, Path] = field(default_factory=dict)
    sample_counts: dict[str, int] = field(default_factory=dict)
    gt_database: Path | None = None


def info_file_name(split: str) -> str:
    return f"pointformer_infos_{split}.json"


def layout_class_names(root: str | os.PathLike, layout: str) -> tuple[str, ...]:
    """The classes a layout's benchmark scores (custom: its dataset.json)."""
    if layout == "nuscenes":
        return NUSCENES_DETECTION_CLASSES
    if layout == "kitti":
        return KITTI_CLASSES
    if layout == "waymo":
        return WAYMO_CLASSES
    from .readers.custom import custom_class_names

    return tuple(custom_class_names(root))


def prepare_dataset(
    root: str | os.PathLike,
    layout: str | None = None,
    *,
    version: str | None = None,
    splits: Sequence[str] | None = None,
    max_sweeps: int = 9,
    out_dir: str | os.PathLike | None = None,
    gt_database: bool = True,
    gt_database_sweeps: int = 0,
    progress: bool = True,
) -> PreparedDataset:
    """Write info files for ``splits`` (default: the ones the root has) and, from the training
    split, the GT database. ``max_sweeps`` earlier sweeps are recorded per sample (nuScenes,
    Waymo). A split that selects no sample is skipped with a warning."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} not found")
    layout = layout or detect_layout(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    result = PreparedDataset(root, layout)
    splits = splits or default_splits(root, layout, version)
    if not splits:
        raise ValueError(f"{root}: no {layout} split found (see datasets/README.md for the layout)")
    for split in splits:
        try:
            reader = open_reader(root, layout, split, **_reader_options(layout, version, max_sweeps))
        except ValueError as error:
            if "selects no sample" not in str(error):
                raise
            log.warning("split %s skipped: %s", split, error)
            continue
        infos = reader.infos
        path = out_dir / info_file_name(split)
        save_infos(path, infos, dataset=layout, split=split, version=version or "")
        result.info_files[split] = path
        result.sample_counts[split] = len(infos)
        log.info("%s: %d samples -> %s", split, len(infos), path)

    train_split = next((s for s in TRAIN_SPLITS if s in result.info_files), None)
    if gt_database and train_split is not None:
        result.gt_database = build_gt_database(
            result.info_files[train_split], root, out_dir / "gt_database", layout_class_names(root, layout),
            num_sweeps=gt_database_sweeps, progress=progress,
        )
    return result


def _reader_options(layout: str, version: str | None, max_sweeps: int) -> dict:
    if layout == "nuscenes":
        return {"version": version, "max_sweeps": max_sweeps}
    if layout == "waymo":
        return {"max_sweeps": max_sweeps}
    return {}
