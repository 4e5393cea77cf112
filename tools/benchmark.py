#!/usr/bin/env python
"""Benchmarks, as ratios against a baseline measured in the same run; prints a table and JSON.

  benchmark.py data [--data ROOT] [--repeats 5] [--json out.json]
      simulator speed (32-beam nuScenes-like sweeps/s, 64-beam Waymo-like frames/s), and our
      nuScenes reading against the official devkit: table parsing (NuScenes() vs our info
      records) and 10-sweep merged clouds (from_file_multisweep vs load_sample)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

console = Console(width=150)


@dataclass
class Measurement:
    """Median seconds per call of ours and of a baseline (None when there is none)."""

    name: str
    ours_s: float
    baseline_s: float | None = None
    baseline: str = ""
    unit_count: float = 1.0
    unit: str = "call"

    @property
    def speedup(self) -> float | None:
        return None if self.baseline_s is None else self.baseline_s / self.ours_s

    @property
    def ours_per_second(self) -> float:
        return self.unit_count / self.ours_s


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict[str, str]:
    import os

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cores": str(os.cpu_count()), "cuda": str(torch.cuda.is_available())}


# ----------------------------------------------------------------------- data
def bench_simulator(repeats: int) -> list[Measurement]:
    import numpy as np

    from pointformer.data.synthetic.lidar import nuscenes_hdl32e, scan, waymo_top64
    from pointformer.data.synthetic.scene import sample_scene
    from pointformer.data.synthetic.simulate import NUSCENES_EGO_FROM_LIDAR, WAYMO_VEHICLE_FROM_TOP

    scene = sample_scene(np.random.default_rng(0))
    map_from_ego = scene.ego.pose(5.0)
    results = []
    for name, model, ego_from_sensor in (
        ("simulate sweep, 32-beam nuScenes-like", nuscenes_hdl32e(), NUSCENES_EGO_FROM_LIDAR),
        ("simulate frame, 64-beam Waymo-like", waymo_top64(WAYMO_VEHICLE_FROM_TOP), WAYMO_VEHICLE_FROM_TOP),
    ):
        rng = np.random.default_rng(1)
        seconds = median_seconds(lambda: scan(scene, model, map_from_ego @ ego_from_sensor, 5.0, rng), repeats)
        results.append(Measurement(name, seconds, unit="sweep"))
    return results


def devkit_infos(root: Path, version: str, max_sweeps: int) -> list[dict]:
    """The baseline: info records built with the devkit the way mmdetection3d's create_data does
    (NuScenes(), boxes from get_sample_data, box_velocity, sweep-to-keyframe matrices)."""
    import numpy as np
    from nuscenes import NuScenes
    from pyquaternion import Quaternion

    def sensor_to_global(sd: dict) -> np.ndarray:
        calibration = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        ego_from_sensor = np.eye(4)
        ego_from_sensor[:3, :3] = Quaternion(calibration["rotation"]).rotation_matrix
        ego_from_sensor[:3, 3] = calibration["translation"]
        global_from_ego = np.eye(4)
        global_from_ego[:3, :3] = Quaternion(pose["rotation"]).rotation_matrix
        global_from_ego[:3, 3] = pose["translation"]
        return global_from_ego @ ego_from_sensor

    nusc = NuScenes(version, str(root), verbose=False)
    infos = []
    for sample in nusc.sample:
        token = sample["data"]["LIDAR_TOP"]
        path, boxes, _ = nusc.get_sample_data(token)
        key = nusc.get("sample_data", token)
        key_from_global = np.linalg.inv(sensor_to_global(key))
        sweeps, sd = [], key
        while len(sweeps) < max_sweeps and sd["prev"]:
            sd = nusc.get("sample_data", sd["prev"])
            sweeps.append({"path": sd["filename"], "transform": key_from_global @ sensor_to_global(sd),
                           "time_lag": (key["timestamp"] - sd["timestamp"]) * 1e-6})
        velocities = [nusc.box_velocity(t)[:2] for t in sample["anns"]]
        infos.append({"path": path, "boxes": [(b.center, b.wlh, b.orientation.yaw_pitch_roll[0]) for b in boxes],
                      "velocity": velocities, "sweeps": sweeps})
    return infos


def bench_nuscenes_reading(root: Path, repeats: int) -> list[Measurement]:
    from nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud

    from pointformer.data.infos import load_sample
    from pointformer.data.readers.nuscenes import nuscenes_infos

    version = "v1.0-trainval"
    ours_tables = median_seconds(lambda: nuscenes_infos(root, version, None, 9), repeats)
    devkit_tables = median_seconds(lambda: devkit_infos(root, version, 9), repeats)
    infos = nuscenes_infos(root, version, None, 9)
    nusc = NuScenes(version, str(root), verbose=False)
    info = infos[len(infos) // 2]
    sample = nusc.get("sample", info.sample_id)
    ours_load = median_seconds(lambda: load_sample(info, root, num_sweeps=9), repeats)
    devkit_load = median_seconds(
        lambda: LidarPointCloud.from_file_multisweep(nusc, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=10), repeats
    )
    return [
        Measurement(f"info records ({len(infos)} samples, 9 sweeps)", ours_tables, devkit_tables,
                    "devkit, mmdet3d-style"),
        Measurement("10-sweep merged cloud", ours_load, devkit_load, "devkit from_file_multisweep"),
    ]


def run_data(args: argparse.Namespace) -> list[Measurement]:
    results = bench_simulator(args.repeats)
    if args.data is not None:
        return results + bench_nuscenes_reading(args.data, args.repeats)
    from pointformer.data.synthetic.generate import generate_nuscenes

    with tempfile.TemporaryDirectory() as tmp:
        generate_nuscenes(tmp, args.scenes, args.samples_per_scene, seed=0, progress=False)
        return results + bench_nuscenes_reading(Path(tmp), args.repeats)


# ----------------------------------------------------------------- reporting
def report(title: str, results: list[Measurement], json_path: Path | None) -> None:
    table = Table(title=title)
    for column in ("benchmark", "ours (ms)", "ours / s", "baseline", "baseline (ms)", "speed-up"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.name, f"{r.ours_s * 1e3:.2f}", f"{r.ours_per_second:.1f} {r.unit}s", r.baseline or "-",
            "-" if r.baseline_s is None else f"{r.baseline_s * 1e3:.2f}",
            "-" if r.speedup is None else f"{r.speedup:.2f}x",
        )
    console.print(table)
    document = {"benchmark": title, "machine": machine(),
                "results": [{**asdict(r), "speedup": r.speedup} for r in results]}
    text = json.dumps(document, indent=2)
    print(text)
    if json_path is not None:
        json_path.write_text(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="simulator and nuScenes reading vs the devkit")
    data.add_argument("--data", type=Path, default=None, help="a nuScenes v1.0-trainval root (default: synthetic)")
    data.add_argument("--scenes", type=int, default=4, help="synthetic scenes when --data is not given")
    data.add_argument("--samples-per-scene", type=int, default=10)
    data.add_argument("--repeats", type=int, default=5)
    data.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "data":
        report("data", run_data(args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
