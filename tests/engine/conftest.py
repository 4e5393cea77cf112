"""A tiny simulated nuScenes dataset (4 training and 4 validation keyframes, GT database) made
once per test session, and tiny detection / segmentation configs over it that inherit the
shipped synthetic configs (so the shipped files are what is trained, shrunk by overrides)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"


def tool(name: str):
    """The module of ``tools/<name>.py`` (imported by path: ``test`` would otherwise be Python's own)."""
    module_name = f"pointformer_tools_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, TOOLS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]

ALL_CLASSES = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
               "pedestrian", "traffic_cone"]

# A model of a few thousand parameters on a 32 x 32 pillar grid: a step takes a fraction of a second.
TINY_DETECTOR = {
    "dataset": {
        "point_cloud_range": [-12.8, -12.8, -5.0, 12.8, 12.8, 3.0],
        "voxel_size": [0.8, 0.8, 8.0],
        "num_sweeps": 0,
        "batch_size": 2,
        "num_workers": 0,
    },
    "model": {
        "encoder": {"feat_channels": [16, 16]},
        "backbone": {"channels": 16, "num_heads": 2, "num_blocks": 1, "group_size": 32},
        "neck": {"layer_nums": [1, 1], "layer_strides": [1, 2], "out_channels": [16, 16],
                 "upsample_channels": [16, 16]},
        "head": {"share_conv_channels": 16, "head_conv": 16, "tasks": [ALL_CLASSES], "max_num": 100},
    },
    "train": {"max_steps": 4, "max_epochs": None, "log_every_n_steps": 1,
              "checkpoint": {"every_n_steps": 0, "every_n_minutes": 0.0}},
}

TINY_SEGMENTOR = {
    "dataset": {
        "point_cloud_range": [-12.8, -12.8, -5.0, 12.8, 12.8, 3.0],
        "voxel_size": [0.8, 0.8, 0.8],
        "batch_size": 2,
        "num_workers": 0,
    },
    "model": {
        "encoder": {"feat_channels": [16, 16]},
        "backbone": {"channels": 16, "num_heads": 2, "num_blocks": 1, "group_size": 32},
        "head": {"hidden_channels": [16]},
    },
    "train": {"max_steps": 3, "max_epochs": None, "log_every_n_steps": 1,
              "checkpoint": {"every_n_steps": 0, "every_n_minutes": 0.0}},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tiny models' ops are too small to share, and on a busy machine
    two OpenMP threads wait for each other (a 16-channel 32 x 32 convolution takes 20x longer)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    from pointformer.data.prepare import prepare_dataset
    from pointformer.data.synthetic.generate import generate_nuscenes

    root = tmp_path_factory.mktemp("engine_data") / "synthetic"
    generate_nuscenes(root, num_scenes=2, samples_per_scene=4, seed=11, progress=False)
    prepare_dataset(root, "nuscenes", progress=False)
    return root


def write_config(path: Path, base: str, root: Path, settings: dict) -> Path:
    """A config file inheriting ``configs/<base>`` with ``settings`` and the data root."""
    document = {"_base_": str(REPO / "configs" / base), **settings}
    document["dataset"] = {**settings.get("dataset", {}), "root": str(root)}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def detector_config(tiny_root, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("configs") / "tiny_detector.yaml",
                        "flatformer_centerpoint_synthetic.yaml", tiny_root, TINY_DETECTOR)


@pytest.fixture(scope="session")
def segmentor_config(tiny_root, tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("configs") / "tiny_segmentor.yaml",
                        "flatformer_seg_synthetic.yaml", tiny_root, TINY_SEGMENTOR)
