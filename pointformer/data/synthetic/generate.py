"""Whole synthetic datasets: simulate scenes and write them in the nuScenes or Waymo v2 layout.

Scenes are split train/val; nuScenes scene names come from the official split lists so that
the devkit evaluates the val scenes with ``eval_set='val'``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pointformer.data.nuscenes_splits import SPLITS, split_scene_names

from .nuscenes_writer import write_nuscenes
from .simulate import simulate_nuscenes_scene, simulate_waymo_segment
from .waymo_writer import write_waymo_segment

WAYMO_SPLIT_FOLDERS = {"train": "training", "val": "validation"}
MARKER = "synthetic_dataset.json"
"""Written into every generated root: the settings it was made with. Only a root that has it
(or an empty/new one) is ever overwritten."""


@dataclass
class SyntheticSettings:
    layout: str
    num_scenes: int
    samples_per_scene: int
    seed: int
    val_fraction: float
    complete: bool = False


def read_settings(root: str | os.PathLike) -> SyntheticSettings | None:
    """The settings a synthetic root was generated with, None for any other folder."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        return None
    return SyntheticSettings(**json.loads(marker.read_text()))


def _claim_root(root: Path, settings: SyntheticSettings) -> None:
    """Refuse to write over a folder that holds anything but a synthetic dataset; mark the root
    as synthetic (not yet complete) before anything is written, so a crashed run can be redone."""
    if root.exists() and any(root.iterdir()) and read_settings(root) is None:
        raise FileExistsError(
            f"{root} is not empty and holds no {MARKER}: refusing to write a synthetic dataset over it"
        )
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root, settings)


def _mark_complete(root: Path, settings: SyntheticSettings) -> None:
    settings.complete = True
    _write_marker(root, settings)


def _write_marker(root: Path, settings: SyntheticSettings) -> None:
    (root / MARKER).write_text(json.dumps(asdict(settings)))


@dataclass
class GenerationReport:
    """What was generated, and how fast: scene names per split, sweep and point counts."""

    root: Path
    layout: str
    scenes: dict[str, list[str]] = field(default_factory=dict)
    samples: int = 0
    sweeps: int = 0
    points: int = 0
    simulate_seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def points_per_sweep(self) -> float:
        return self.points / max(self.sweeps, 1)

    @property
    def sweeps_per_second(self) -> float:
        return self.sweeps / max(self.simulate_seconds, 1e-9)


def split_counts(num_scenes: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) scene counts: at least one val scene when there are two scenes or more."""
    if num_scenes < 1:
        raise ValueError(f"need at least one scene, got {num_scenes}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    num_val = int(round(num_scenes * val_fraction))
    if num_scenes >= 2 and val_fraction > 0:
        num_val = max(num_val, 1)
    num_train = num_scenes - num_val
    if num_train > len(SPLITS["train"]) or num_val > len(SPLITS["val"]):
        raise ValueError(
            f"{num_train} train / {num_val} val scenes asked for; the official nuScenes split lists name "
            f"{len(SPLITS['train'])} / {len(SPLITS['val'])}"
        )
    return num_train, num_val


def scene_seed(seed: int, split: str, index: int) -> int:
    """Independent seeds per scene: train and val scenes never share one."""
    return int(np.random.SeedSequence([seed, 0 if split == "train" else 1, index]).generate_state(1)[0])


def generate_nuscenes(
    out: str | os.PathLike,
    num_scenes: int,
    samples_per_scene: int,
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
    version: str = "v1.0-trainval",
    progress: bool = True,
) -> GenerationReport:
    """Simulate ``num_scenes`` scenes of ``samples_per_scene`` keyframes and write them under
    ``out`` in the nuScenes layout (tables in ``out/version``)."""
    report = GenerationReport(Path(out), "nuscenes")
    plan = _scene_plan(num_scenes, val_fraction)
    settings = SyntheticSettings("nuscenes", num_scenes, samples_per_scene, seed, val_fraction)
    _claim_root(report.root, settings)

    def scenes():
        """Simulated one at a time and handed to the writer, so one scene is in memory at once."""
        for split, index in plan:
            name = split_scene_names(split)[index]
            start = time.perf_counter()
            scene = simulate_nuscenes_scene(scene_seed(seed, split, index), name, num_keyframes=samples_per_scene)
            report.simulate_seconds += time.perf_counter() - start
            report.scenes.setdefault(split, []).append(name)
            report.samples += sum(s.is_key_frame for s in scene.sweeps)
            report.sweeps += len(scene.sweeps)
            report.points += sum(len(s.points) for s in scene.sweeps)
            yield scene
            del scene  # only the writer holds it now
            if bar:
                bar.advance(task)

    start = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task("simulating and writing scenes", total=len(plan)) if bar else None
        write_nuscenes(out, scenes(), version=version, seed=seed, overwrite=True)
    report.write_seconds = time.perf_counter() - start - report.simulate_seconds
    _mark_complete(report.root, settings)
    return report


def generate_waymo(
    out: str | os.PathLike,
    num_segments: int,
    frames_per_segment: int,
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
    progress: bool = True,
) -> GenerationReport:
    """Simulate segments with the 64-beam top LiDAR and write them in the Waymo v2 layout."""
    report = GenerationReport(Path(out), "waymo")
    plan = _scene_plan(num_segments, val_fraction)
    settings = SyntheticSettings("waymo", num_segments, frames_per_segment, seed, val_fraction)
    _claim_root(report.root, settings)
    with _progress(progress) as bar:
        task = bar.add_task("simulating segments", total=len(plan)) if bar else None
        for split, index in plan:
            context_name = f"synthetic_{seed}_{split}_{index:04d}"
            start = time.perf_counter()
            calibrations, frames = simulate_waymo_segment(scene_seed(seed, split, index), context_name, frames_per_segment)
            report.simulate_seconds += time.perf_counter() - start
            start = time.perf_counter()
            write_waymo_segment(out, WAYMO_SPLIT_FOLDERS[split], context_name, calibrations, frames)
            report.write_seconds += time.perf_counter() - start
            report.scenes.setdefault(split, []).append(context_name)
            report.samples += len(frames)
            report.sweeps += len(frames)
            report.points += sum(int((f.range_images[1][..., 0] > 0).sum()) for f in frames)
            if bar:
                bar.advance(task)
    _mark_complete(report.root, settings)
    return report


def _scene_plan(num_scenes: int, val_fraction: float) -> list[tuple[str, int]]:
    num_train, num_val = split_counts(num_scenes, val_fraction)
    return [("train", i) for i in range(num_train)] + [("val", i) for i in range(num_val)]


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
