"""Recognise a dataset root's layout and open the matching reader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LAYOUTS = ("nuscenes", "kitti", "waymo", "custom")


def nuscenes_versions(root: Path) -> list[str]:
    """The table folders (``v1.0-trainval``, Lyft's ``v1.01-train`` ...) under a nuScenes-schema root."""
    return sorted(p.name for p in root.glob("v1.0*-*") if p.is_dir() and (p / "sample.json").is_file())


def detect_layout(root: str | os.PathLike) -> str:
    """'nuscenes' | 'kitti' | 'waymo' | 'custom' from the folders a root holds."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} not found")
    if nuscenes_versions(root):
        return "nuscenes"
    if any((root / split / "velodyne").is_dir() for split in ("training", "testing")):
        return "kitti"
    if any((root / split / "lidar").is_dir() for split in ("training", "validation", "testing")):
        return "waymo"
    if (root / "points").is_dir():
        return "custom"
    raise ValueError(
        f"{root}: not a known dataset layout (looked for v1.0-*/sample.json (nuScenes), "
        f"training/velodyne (KITTI), training/lidar/*.parquet (Waymo v2), points/ (custom); "
        f"see datasets/README.md)"
    )


def default_splits(root: str | os.PathLike, layout: str, version: str | None = None) -> list[str]:
    """The splits an info builder writes for a root: those that exist there."""
    root = Path(root)
    if layout == "nuscenes":
        version = version or only_version(root)
        if version == "v1.0-mini":
            return ["mini_train", "mini_val"]
        if version == "v1.0-test":
            return ["test"]
        # Official split lists name nuScenes scenes only: other schemas (Lyft) are read whole.
        return ["train", "val"] if version == "v1.0-trainval" else ["all"]
    if layout == "kitti":
        named = [s for s in ("train", "val", "test") if (root / "ImageSets" / f"{s}.txt").is_file()]
        return named or [s for s in ("training", "testing") if (root / s / "velodyne").is_dir()]
    if layout == "waymo":
        return [s for s in ("training", "validation", "testing") if (root / s / "lidar").is_dir()]
    if layout == "custom":
        named = [s for s in ("train", "val", "test") if (root / "splits" / f"{s}.txt").is_file()]
        return named or ["all"]
    raise ValueError(f"unknown dataset layout {layout!r}; known: {LAYOUTS}")


def open_reader(root: str | os.PathLike, layout: str | None = None, split: str | None = None, **options: Any):
    """The reader for ``root`` (layout detected when not given). ``split``: the layout's own
    split names (nuScenes train/val/..., KITTI training/train/..., Waymo training/...,
    custom train/val/test or ``all``). Other options go to the reader."""
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout == "nuscenes":
        from .nuscenes import NuScenesReader

        version = options.pop("version", None) or only_version(root)
        return NuScenesReader(root, version, None if split == "all" else split, **options)
    if layout == "kitti":
        from .kitti import KittiReader

        return KittiReader(root, split or "training", **options)
    if layout == "waymo":
        from .waymo import WaymoReader

        return WaymoReader(root, split or "training", **options)
    if layout == "custom":
        from .custom import CustomReader

        return CustomReader(root, None if split in (None, "all") else split, **options)
    raise ValueError(f"unknown dataset layout {layout!r}; known: {LAYOUTS}")


def only_version(root: Path) -> str:
    versions = nuscenes_versions(root)
    if len(versions) != 1:
        raise ValueError(
            f"{root}: found nuScenes table folders {versions or 'none'}; name one with --version"
        )
    return versions[0]
