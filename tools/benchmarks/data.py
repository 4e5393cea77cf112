"""Data benchmarks: the simulator, and nuScenes reading against the official devkit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import Row, median_seconds


def simulator_rows(repeats: int) -> list[Row]:
    from pointformer.data.synthetic.lidar import nuscenes_hdl32e, scan, waymo_top64
    from pointformer.data.synthetic.scene import sample_scene
    from pointformer.data.synthetic.simulate import NUSCENES_EGO_FROM_LIDAR, WAYMO_VEHICLE_FROM_TOP

    scene = sample_scene(np.random.default_rng(0))
    map_from_ego = scene.ego.pose(5.0)
    rows = []
    for name, model, ego_from_sensor in (
        ("simulate sweep", nuscenes_hdl32e(), NUSCENES_EGO_FROM_LIDAR),
        ("simulate frame", waymo_top64(WAYMO_VEHICLE_FROM_TOP), WAYMO_VEHICLE_FROM_TOP),
    ):
        rng = np.random.default_rng(1)
        seconds = median_seconds(lambda: scan(scene, model, map_from_ego @ ego_from_sensor, 5.0, rng), repeats)
        label = "32-beam nuScenes-like" if "sweep" in name else "64-beam Waymo-like"
        rows.append(Row(name, label, seconds))
    return rows


def devkit_infos(root: Path, version: str, max_sweeps: int) -> list[dict]:
    """The baseline: info records built with the devkit the way mmdetection3d's create_data does
    (NuScenes(), boxes from get_sample_data, box_velocity, sweep-to-keyframe matrices)."""
    from nuscenes import NuScenes
    from pyquaternion import Quaternion

    nusc = NuScenes(version, str(root), verbose=False)

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


def nuscenes_rows(root: Path, repeats: int) -> list[Row]:
    from nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud

    from pointformer.data.infos import load_sample
    from pointformer.data.readers.nuscenes import nuscenes_infos

    version = "v1.0-trainval"
    infos = nuscenes_infos(root, version, None, 9)
    nusc = NuScenes(version, str(root), verbose=False)
    info = infos[len(infos) // 2]
    sample = nusc.get("sample", info.sample_id)
    label = f"synthetic nuScenes, {len(infos)} samples"
    return [
        Row("info records (9 sweeps)", label, median_seconds(lambda: nuscenes_infos(root, version, None, 9), repeats),
            "devkit, mmdet3d-style", median_seconds(lambda: devkit_infos(root, version, 9), repeats)),
        Row("10-sweep merged cloud", label, median_seconds(lambda: load_sample(info, root, num_sweeps=9), repeats),
            "devkit from_file_multisweep",
            median_seconds(lambda: LidarPointCloud.from_file_multisweep(nusc, sample, "LIDAR_TOP", "LIDAR_TOP",
                                                                        nsweeps=10), repeats)),
    ]


def rows(repeats: int = 7, data: Path | None = None, scenes: int = 4, samples_per_scene: int = 10) -> list[Row]:
    """Simulator speed, and reading ``data`` (a nuScenes root; default: a synthetic one)."""
    result = simulator_rows(repeats)
    if data is not None:
        return result + nuscenes_rows(data, repeats)
    from pointformer.data.synthetic.generate import generate_nuscenes

    with tempfile.TemporaryDirectory() as tmp:
        generate_nuscenes(tmp, scenes, samples_per_scene, seed=0, progress=False)
        return result + nuscenes_rows(Path(tmp), repeats)
