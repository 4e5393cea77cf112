"""What every benchmark case returns, how it is timed, and the shared inputs."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[2]
REALDATA = REPO.parent / "shared" / "realdata"


@dataclass
class Row:
    """One comparison, medians in seconds: ``name`` of the op, ``input`` it ran on, ``baseline``
    (what it is compared with, "" when nothing), ``speedup`` = baseline_seconds / seconds;
    ``peak_mib`` / ``baseline_peak_mib``: extra peak memory of one call where measured."""

    name: str
    input: str
    seconds: float
    baseline: str = ""
    baseline_seconds: float | None = None
    peak_mib: float | None = None
    baseline_peak_mib: float | None = None

    @property
    def speedup(self) -> float | None:
        return None if self.baseline_seconds is None else self.baseline_seconds / self.seconds

    def to_json(self) -> dict:
        return {"name": self.name, "input": self.input, "seconds": self.seconds, "baseline": self.baseline,
                "baseline_seconds": self.baseline_seconds, "speedup": self.speedup,
                "peak_mib": self.peak_mib, "baseline_peak_mib": self.baseline_peak_mib}


def median_seconds(fn: Callable[[], object], repeats: int = 7, warmup: int = 2, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls (``sync`` is
    called after each, e.g. torch.cuda.synchronize)."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@lru_cache(maxsize=None)
def kitti_scan() -> np.ndarray | None:
    """A real 64-beam KITTI scan (float32 x, y, z, intensity; ~120k points), None if absent."""
    path = REALDATA / "kitti_openpcdet_pr653" / "training" / "velodyne" / "000000.bin"
    return np.fromfile(path, np.float32).reshape(-1, 4) if path.is_file() else None


@lru_cache(maxsize=None)
def nuscenes_sweep() -> np.ndarray | None:
    """A real 32-beam nuScenes sweep (x, y, z, intensity; 34,688 points), in our frame."""
    path = REALDATA / "mmdetection3d/demo/data/nuscenes/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
    if not path.is_file():
        return None
    points = np.fromfile(path, np.float32).reshape(-1, 5)[:, :4].copy()
    points[:, [0, 1]] = np.stack([points[:, 1], -points[:, 0]], axis=1)
    return points


@lru_cache(maxsize=None)
def waymo_size_scene(seed: int = 0) -> np.ndarray:
    """A synthetic Waymo-size cloud: one frame of the simulator's 64-beam top LiDAR (x, y, z, intensity; ~160k points, within +-75 m)."""
    from pointformer.data.readers.waymo import range_image_to_points
    from pointformer.data.synthetic.simulate import simulate_waymo_segment

    calibrations, frames = simulate_waymo_segment(seed, "bench", 1)
    top = {c.laser_name: c for c in calibrations}[1]
    return range_image_to_points(frames[0].range_images[1], top)[:, :4].astype(np.float32)


def inputs() -> dict[str, np.ndarray]:
    """The named clouds every area benchmarks on (real ones when shared/realdata is present)."""
    named = {"synthetic Waymo-size": waymo_size_scene()}
    if kitti_scan() is not None:
        named["KITTI 000000 (real)"] = kitti_scan()
    if nuscenes_sweep() is not None:
        named["nuScenes sweep (real)"] = nuscenes_sweep()
    return named


def settle_allocator() -> None:
    """Allocate and free one 24 MB block, once per benchmark process.

    glibc then raises its mmap and trim thresholds, as it does in any process that has freed a
    tensor that size (a training run, at its first step), so buffers are recycled from the heap.
    Without it a short benchmark process hands the heap back to the OS after every call and pays
    a page fault per 4 KiB on the next (about 3.4 us each in this VM), which can outweigh the op.
    Every area is timed after it, so they are measured alike.
    """
    np.ones(3 << 20).sum()
