#!/usr/bin/env python
"""Run a trained checkpoint on one point cloud; write its predictions as JSON and a PNG.

  demo.py --ckpt PATH FILE [--out DIR] [--score-threshold S]
  demo.py --ckpt PATH SAMPLE_ID --data ROOT [--out DIR]

FILE: a point file (.bin / .pcd.bin / .npy / .pcd / .ply / .las). Its x, y, z and the feature
columns the model was trained on are used (matched by name; a time_lag column the file lacks is
0, as for a single sweep). SAMPLE_ID: a sample of a prepared dataset root (a nuScenes sample
token, a Waymo frame id, ...) found in ROOT's pointformer_infos_*.json, loaded with the sweeps
the model was trained with; its ground truth is drawn beside the predictions.

The checkpoint alone describes the model (no config needed). Writes <out>/<name>.json
(detection: boxes x, y, z, l, w, h, yaw[, vx, vy] in the cloud's frame with class and score;
segmentation: the class count and <name>_labels.npy, one class id per point) and <name>.png
(bird's-eye view). --out defaults to work_dirs/demo_outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a point file, or with --data a sample id (nuScenes sample token, ...)")
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint written by tools/train.py")
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset root to look the sample id up in")
    parser.add_argument("--out", type=Path, default=Path("work_dirs/demo_outputs"), help="output folder")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="detection: keep boxes scoring above this")
    return parser.parse_args(argv)


def load_input(source: str, data: Path | None, columns: list[str], num_sweeps: int):
    """(sample with the model's point columns, has ground truth)."""
    from pointformer.viz.frames import file_sample

    path = Path(source)
    if path.is_file():
        return select_columns(file_sample(path), columns), False
    if data is None:
        raise FileNotFoundError(f"{source} is not a file (to look it up as a sample id, give --data ROOT)")
    info = find_sample(data, source)
    from pointformer.data.infos import load_sample

    features = [c for c in columns[3:] if c != "time_lag"]
    sample = load_sample(info, data, num_sweeps=num_sweeps, feature_columns=features, time_lag="time_lag" in columns)
    return sample, True


def find_sample(root: Path, sample_id: str):
    """The info record ``sample_id`` from any ``pointformer_infos_*.json`` of ``root``."""
    from pointformer.data.infos import load_infos

    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} not found")
    files = sorted(root.glob("pointformer_infos_*.json"))
    if not files:
        raise FileNotFoundError(f"--data {root} holds no pointformer_infos_*.json (run tools/create_data.py)")
    for path in files:
        for info in load_infos(path)[0]:
            if info.sample_id == sample_id:
                return info
    raise ValueError(f"sample {sample_id!r} is in none of {[p.name for p in files]}")


def select_columns(sample, columns: list[str]):
    """The sample's points reduced / completed to ``columns`` (time_lag filled with 0)."""
    import torch

    parts = []
    for name in columns:
        if name in sample.point_columns:
            parts.append(sample.column(name))
        elif name == "time_lag":
            parts.append(torch.zeros(sample.num_points, dtype=sample.points.dtype))
        else:
            raise ValueError(f"the model needs point column {name!r}, the file has {list(sample.point_columns)}")
    from dataclasses import replace

    return replace(sample, points=torch.stack(parts, dim=1).contiguous(), point_columns=tuple(columns))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from pointformer.models.export import model_from_checkpoint, read_checkpoint
    from pointformer.structures import PointBatch

    try:
        payload = read_checkpoint(args.ckpt)
        model, description = model_from_checkpoint(payload, f"checkpoint {args.ckpt}")
        columns = list(payload.get("point_columns") or ["x", "y", "z", "intensity"][:description.point_channels])
        sample, with_truth = load_input(args.source, args.data, columns, int(payload.get("num_sweeps", 0)))
    except (FileNotFoundError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    name = Path(args.source).name.split(".")[0] if Path(args.source).is_file() else args.source
    args.out.mkdir(parents=True, exist_ok=True)
    points = PointBatch.from_list([sample.points])
    with torch.no_grad():
        if description.is_segmentor:
            labels = model.predict(points).cpu().numpy()
            written = write_segmentation(args.out, name, sample, labels, description.class_names)
        else:
            detections = model.predict(points)[0]
            keep = detections.scores > args.score_threshold
            detections = detections.select(torch.nonzero(keep).reshape(-1))
            written = write_detections(args.out, name, sample, detections, description, with_truth)
    for path in written:
        print(f"wrote {path}")
    return 0


def write_detections(out: Path, name: str, sample, detections, description, with_truth: bool) -> list[Path]:
    from pointformer.engine.outputs import (
        detections_document,
        render_detections,
        write_json,
    )

    document = detections_document(detections, description.class_names, source=sample.meta.get("lidar_path") or name,
                                   sample_id=sample.meta.get("sample_id"), num_points=sample.num_points)
    json_path = write_json(out / f"{name}.json", document)
    png_path = render_detections(sample, detections, out / f"{name}.png", description.class_names,
                                 description.point_cloud_range, with_truth)
    return [json_path, png_path]


def write_segmentation(out: Path, name: str, sample, labels, class_names) -> list[Path]:
    import numpy as np

    from pointformer.engine.outputs import render_labels, write_json

    counts = np.bincount(labels, minlength=len(class_names))
    document = {"source": sample.meta.get("lidar_path") or name, "sample_id": sample.meta.get("sample_id"),
                "num_points": len(labels), "class_counts": {n: int(c) for n, c in zip(class_names, counts)}}
    json_path = write_json(out / f"{name}.json", document)
    labels_path = out / f"{name}_labels.npy"
    np.save(labels_path, labels.astype(np.int64))
    png_path = render_labels(sample, out / f"{name}.png", labels, class_names)
    return [json_path, labels_path, png_path]


if __name__ == "__main__":
    sys.exit(main())
