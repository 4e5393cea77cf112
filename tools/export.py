#!/usr/bin/env python
"""Export a FlatFormer detector (or segmentor) to ONNX; optionally check it with onnxruntime.

  export.py [--ckpt PATH | --config FILE] --out model.onnx [--check [FILE]] [--opset N]

The graph holds the voxel encoder, the FlatFormer layers, the BEV scatter, the neck and the
head's raw maps; voxelization (unique/sort), the flattened-window plans (sorts), top-K decoding
and NMS stay in Python (pointformer.models.export.prepare_inputs before the graph,
head.predict after it). Batch size 1; points, voxels and groups are dynamic dimensions, the BEV
grid is static. See pointformer/models/export.py for the graph's inputs and outputs.

Model source (one of):
  --ckpt PATH    a checkpoint written with torch.save holding the dict
                   {"state_dict": model.state_dict(),
                    "model_config": {"type": "Detector", "encoder": {...}, "backbone": {...},
                                     "neck": {...}, "head": {...}},   (Detector.from_config layout;
                                     a segmentor: "type": "Segmentor", no neck)
                    "class_names": [...], "point_channels": int,
                    "voxel_size": [vx, vy, vz], "point_cloud_range": [x0, y0, z0, x1, y1, z1]}
                 loaded with torch.load(weights_only=True).
  --config FILE  a YAML/JSON file with the same keys but state_dict: a freshly initialised model.
  (neither)      a freshly initialised FlatFormer-CenterPoint with the published Waymo settings
                 (0.32 m pillars on 468 x 468, DynamicVFE [64, 128], FlatFormer width 128, 8 heads,
                 2 blocks x 4 orders, 13 x 13 windows, groups of 144, SECOND [3, 3] + FPN,
                 CenterPoint head with an IoU branch; 3 classes, x, y, z, intensity points).

--check runs the exported graph with onnxruntime on one cloud (FILE: a .bin / .npy / .pcd /
.ply / .las point file whose first point_channels columns are used; default a synthetic
Waymo-size cloud, 180k points) and prints the largest absolute difference from PyTorch (next
to the largest output, as float32 rounding grows with it) and both CPU latencies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pointformer.models.export import (
    DEFAULT_OPSET,
    ModelDescription,
    export_onnx,
    load_checkpoint,
    onnx_session,
    plan_orders,
    prepare_inputs,
    pytorch_outputs,
    run_onnx,
    synthetic_cloud,
)
from pointformer.structures import PointBatch

WAYMO_FLATFORMER_CENTERPOINT = {
    "model_config": {
        "type": "Detector",
        "encoder": {"type": "DynamicVFE", "feat_channels": [64, 128], "with_cluster_center": True,
                    "with_voxel_center": True, "with_distance": False},
        "backbone": {"type": "FlatFormer", "channels": 128, "num_heads": 8, "num_blocks": 2, "window_shape": [13, 13],
                     "group_size": 144, "orders": ["x", "x_shift", "y", "y_shift"], "ffn_ratio": 2.0},
        "neck": {"type": "SecondFPN", "layer_nums": [3, 3], "layer_strides": [1, 2], "out_channels": [64, 128],
                 "upsample_strides": [1, 2], "upsample_channels": [128, 128], "conv_shortcut": True},
        "head": {"type": "CenterHead", "with_velocity": False, "with_iou": True, "min_radius": 1,
                 "code_weights": [1.0] * 8, "bbox_loss_weight": 2.0, "iou_loss_weight": 1.0, "max_num": 4096,
                 "score_threshold": 0.1, "post_center_range": [-74.88, -74.88, -10.0, 74.88, 74.88, 10.0],
                 "post_center_limit_range": [-80.0, -80.0, -10.0, 80.0, 80.0, 10.0], "iou_pow": 2.0,
                 "nms_type": "rotated", "nms_threshold": [0.8, 0.55, 0.55], "pre_max_size": [2048, 1024, 1024],
                 "post_max_size": [300, 100, 100]},
    },
    "class_names": ["Vehicle", "Pedestrian", "Cyclist"],
    "point_channels": 4,
    "voxel_size": [0.32, 0.32, 6.0],
    "point_cloud_range": [-74.88, -74.88, -2.0, 74.88, 74.88, 4.0],
}
SYNTHETIC = "synthetic"
EXAMPLE_POINTS = 20_000  # the traced example's size does not matter: points, voxels and groups stay dynamic


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--ckpt", type=Path, default=None, help="checkpoint file (layout above)")
    source.add_argument("--config", type=Path, default=None,
                        help="YAML/JSON model description (checkpoint layout without state_dict): random weights")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write (its folder must exist)")
    parser.add_argument("--check", nargs="?", const=SYNTHETIC, default=None, metavar="FILE",
                        help="compare onnxruntime with PyTorch on FILE (default: a synthetic Waymo-size cloud)")
    parser.add_argument("--points", type=int, default=180_000,
                        help="points of the synthetic --check cloud (default 180000)")
    parser.add_argument("--repeats", type=int, default=1, help="--check latency: best of this many runs (default 1)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset, 18 (default) to 20")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh weights and synthetic clouds")
    return parser.parse_args(argv)


def load_model(args: argparse.Namespace):
    """The model to export and its description, from --ckpt, --config or the published default."""
    if args.ckpt is not None:
        return load_checkpoint(args.ckpt)
    if args.config is not None:
        values = read_config(args.config)
        description = ModelDescription.from_mapping(values, f"--config {args.config}")
    else:
        description = ModelDescription.from_mapping(WAYMO_FLATFORMER_CENTERPOINT, "published default")
    torch.manual_seed(args.seed)
    return description.build().eval(), description


def read_config(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"--config {path} not found")
    import yaml

    text = path.read_text()
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"--config {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                         f"{error}") from error


def read_cloud(path: Path, channels: int):
    """The first ``channels`` columns of a point file, as a one-sample PointBatch."""
    from pointformer.data.readers.files import read_points

    cloud = read_points(path)
    points = torch.as_tensor(np.asarray(cloud.points, dtype=np.float32))
    if points.dim() != 2 or points.shape[1] < channels:
        raise ValueError(f"--check {path}: the model takes {channels} point columns, the file has "
                         f"{tuple(points.shape)} ({', '.join(cloud.columns)})")
    return PointBatch.from_list([points[:, :channels].contiguous()])


def check(model, graph, cloud, repeats: int = 1) -> dict:
    """Largest |onnxruntime - PyTorch| over all outputs, and CPU latencies (best of ``repeats``):
    the whole PyTorch forward (voxelization and plans included), ``prepare_inputs`` (the same
    voxelization and plans) and the onnxruntime graph."""
    session = onnx_session(graph.path)
    times: dict[str, list[float]] = {"pytorch_s": [], "prepare_s": [], "onnxruntime_s": []}
    for _ in range(repeats):
        start = time.perf_counter()
        expected = pytorch_outputs(model, cloud)
        times["pytorch_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        inputs = prepare_inputs(model, cloud)
        times["prepare_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        got = run_onnx(session, inputs)
        times["onnxruntime_s"].append(time.perf_counter() - start)
    difference = max((float(np.abs(a - e.numpy()).max()) for a, e in zip(got, expected) if a.size), default=0.0)
    largest = max((float(e.abs().max()) for e in expected if e.numel()), default=0.0)
    slots = inputs[f"plan_{plan_orders(model)[0]}_index"].shape[0]
    return {"points": int(cloud.points.shape[0]), "kept_points": int(inputs["points"].shape[0]),
            "voxels": int(inputs["coords"].shape[0]), "groups": slots // model.backbone.group_size,
            "max_abs_difference": difference, "max_abs_output": largest,
            **{name: min(values) for name, values in times.items()}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.out.parent.is_dir():
            raise FileNotFoundError(f"--out {args.out}: folder {args.out.parent} does not exist")
        if args.check not in (None, SYNTHETIC) and not Path(args.check).is_file():
            raise FileNotFoundError(f"--check {args.check} not found")
        model, description = load_model(args)
        example = synthetic_cloud(model, EXAMPLE_POINTS, seed=args.seed)
        start = time.perf_counter()
        graph = export_onnx(model, example, args.out, opset=args.opset or DEFAULT_OPSET)
        print(f"wrote {graph.path} ({graph.num_bytes / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s): "
              f"{type(model).__name__} with {len(description.class_names)} classes")
        print(f"  inputs:  {', '.join(graph.input_names)}")
        print(f"  outputs: {', '.join(graph.output_names)}")
        if args.check is not None:
            if args.check == SYNTHETIC:
                cloud = synthetic_cloud(model, args.points, seed=args.seed + 1)
            else:
                cloud = read_cloud(Path(args.check), description.point_channels)
            if args.repeats < 1:
                raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
            result = check(model, graph, cloud, args.repeats)
            print(f"check on {args.check}: {result['points']} points ({result['kept_points']} in range), "
                  f"{result['voxels']} voxels, {result['groups']} groups")
            print(f"  max |onnxruntime - pytorch| = {result['max_abs_difference']:.3g} "
                  f"(largest |output| {result['max_abs_output']:.3g})")
            print(f"  CPU latency: pytorch {result['pytorch_s'] * 1e3:.0f} ms (whole forward); "
                  f"prepare_inputs {result['prepare_s'] * 1e3:.0f} ms + onnxruntime {result['onnxruntime_s'] * 1e3:.0f} ms"
                  f" (graph), best of {args.repeats}")
    except (FileNotFoundError, ValueError, TypeError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
