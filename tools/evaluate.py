#!/usr/bin/env python
"""Evaluate a detection results file against a dataset root; print a table, optionally write JSON.

  evaluate.py --data ROOT --results FILE [--benchmark nuscenes|waymo|kitti] [--split val] [--out FILE]

nuscenes (default): FILE is a nuScenes submission (``{"meta", "results"}``, boxes in the global
  frame, every sample of the split present); ROOT holds the tables (``ROOT/v1.0-trainval`` or
  the version given with --version). The metrics are the official devkit's (NDS, mAP, per-class
  AP at 0.5/1/2/4 m, ATE/ASE/AOE/AVE/AAE); --out writes them with the keys and layout of the
  devkit's metrics_summary.json. --split all evaluates every sample of the version.
waymo:  FILE is a results file of pointformer.evaluation.waymo; mAP / mAPH at LEVEL_1 / LEVEL_2.
kitti:  FILE is a folder of KITTI-format label files; 3D and BEV AP (R40 / R11).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

BENCHMARKS = ("nuscenes", "waymo", "kitti")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset root the results are evaluated against")
    parser.add_argument("--results", type=Path, required=True,
                        help="results file (nuscenes, waymo) or folder of label files (kitti)")
    parser.add_argument("--benchmark", choices=BENCHMARKS, default="nuscenes",
                        help="which benchmark (default nuscenes)")
    parser.add_argument("--split", default="val",
                        help="split to evaluate (default val; nuscenes: 'all' for every sample)")
    parser.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    parser.add_argument("--version", default=None,
                        help="nuscenes: table folder under ROOT (default v1.0-trainval, else the only v1.* folder)")
    parser.add_argument("--config", type=Path, default=None,
                        help="nuscenes: a devkit detection config JSON (default detection_cvpr_2019)")
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace):
    """The metrics object of the chosen benchmark (with ``table()`` and ``to_json()``)."""
    if not args.data.exists():
        raise FileNotFoundError(f"--data {args.data} not found")
    if not args.results.exists():
        raise FileNotFoundError(f"--results {args.results} not found")
    if args.benchmark == "nuscenes":
        from pointformer.evaluation.nuscenes import DetectionConfig, evaluate_results_file

        config = DetectionConfig.load(args.config) if args.config is not None else None
        split = None if args.split == "all" else args.split
        return evaluate_results_file(args.data, args.results, split, version=args.version, config=config)
    if args.benchmark == "waymo":
        from pointformer.evaluation.waymo import evaluate_results_file as evaluate_waymo_file

        return evaluate_waymo_file(args.data, args.results, args.split)
    from pointformer.evaluation.kitti import evaluate_results_dir

    return evaluate_results_dir(args.data, args.results, args.split)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        metrics = evaluate(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    Console(width=160).print(metrics.table())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(metrics.to_json(), indent=2))
        print(f"metrics written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
