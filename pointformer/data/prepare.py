"""Prepare a dataset root for training: info files per split and the GT-sampling database.

Writes into the root (or ``out_dir``): ``pointformer_infos_<split>.json`` (whose header names
the dataset root relative to the file) and ``gt_database/gt_database.json`` (+ shards), built
from the training split.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .classes import KITTI_CLASSES, NUSCENES_DETECTION_CLASSES, WAYMO_CLASSES
from .gt_database import build_gt_database
from .infos import SampleInfo, save_infos
from .nuscenes_splits import split_scene_names
from .readers.layouts import only_version, default_splits, detect_layout, open_reader

log = logging.getLogger(__name__)

TRAIN_SPLITS = ("train", "training", "mini_train", "all")

# Earlier sweeps recorded per sample unless asked otherwise: nuScenes detectors merge 10 sweeps;
# Waymo single-frame models use none (each Waymo frame is already a full 360-degree scan).
DEFAULT_MAX_SWEEPS = {"nuscenes": 9, "waymo": 0, "kitti": 0, "custom": 0}


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


def layout_feature_columns(root: str | os.PathLike, layout: str) -> tuple[str, ...]:
    """Point features after x, y, z that a layout's readers provide by default."""
    if layout == "waymo":
        return ("intensity", "elongation")
    if layout == "custom":
        from .readers.custom import read_dataset_config

        return tuple(read_dataset_config(root).point_columns[3:])
    return ("intensity",)


def prepare_dataset(
    root: str | os.PathLike,
    layout: str | None = None,
    *,
    version: str | None = None,
    splits: Sequence[str] | None = None,
    max_sweeps: int | None = None,
    out_dir: str | os.PathLike | None = None,
    gt_database: bool = True,
    gt_database_sweeps: int = 0,
    progress: bool = True,
) -> PreparedDataset:
    """Write info files for ``splits`` (default: the ones the root has) and, from the training
    split, the GT database. ``max_sweeps``: earlier sweeps recorded per sample (default per
    layout, :data:`DEFAULT_MAX_SWEEPS`). A split that selects no sample is skipped with a
    warning; when none selects any, that is an error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} not found")
    layout = layout or detect_layout(root)
    max_sweeps = DEFAULT_MAX_SWEEPS[layout] if max_sweeps is None else max_sweeps
    out_dir = Path(out_dir) if out_dir is not None else root
    splits = list(splits or default_splits(root, layout, version))
    if not splits:
        raise ValueError(f"{root}: no {layout} split found (see datasets/README.md for the layout)")

    result = PreparedDataset(root, layout)
    for split, infos in _split_infos(root, layout, version, splits, max_sweeps):
        if not infos:
            log.warning("%s: split %s selects no sample, skipped", root, split)
            continue
        path = out_dir / info_file_name(split)
        save_infos(path, infos, dataset=layout, split=split, version=version or "",
                   root=os.path.relpath(root, out_dir))
        result.info_files[split] = path
        result.sample_counts[split] = len(infos)
        log.info("%s: %d samples -> %s", split, len(infos), path)
    if not result.info_files:
        raise ValueError(f"{root}: none of the splits {splits} selects a sample; nothing written")

    train_split = next((s for s in TRAIN_SPLITS if s in result.info_files), None)
    if gt_database and train_split is not None:
        result.gt_database = build_gt_database(
            result.info_files[train_split], root, out_dir / "gt_database", layout_class_names(root, layout),
            num_sweeps=gt_database_sweeps, feature_columns=layout_feature_columns(root, layout), progress=progress,
        )
    return result


def _split_infos(root: Path, layout: str, version: str | None, splits: Sequence[str], max_sweeps: int):
    """(split, records) per split. nuScenes tables are parsed once and the records partitioned
    by the official scene lists; other layouts open one reader per split."""
    if layout == "nuscenes":
        version = version or only_version(root)
        every = open_reader(root, layout, None, version=version, max_sweeps=max_sweeps).infos
        for split in splits:
            yield split, every if split == "all" else _in_scenes(every, split_scene_names(split))
        return
    options = {"max_sweeps": max_sweeps} if layout == "waymo" else {}
    for split in splits:
        yield split, open_reader(root, layout, split, **options).infos


def _in_scenes(infos: Sequence[SampleInfo], scene_names: Sequence[str]) -> list[SampleInfo]:
    wanted = set(scene_names)
    return [info for info in infos if info.scene in wanted]
