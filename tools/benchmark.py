#!/usr/bin/env python
"""Benchmarks: ours against a baseline measured in the same run (medians); a table, and JSON.

  benchmark.py data [--data ROOT]   simulator speed; nuScenes info records and 10-sweep clouds
                                    against the official devkit
  benchmark.py ops                  voxelizers vs spconv / a torch.unique baseline, window
                                    planning vs SST batching, rotated IoU / NMS vs shapely
  benchmark.py models               backbone latency and peak memory: FlatFormer vs SST-style
                                    windows vs spconv sparse ResNet, FlatFormer/SST time by part
  benchmark.py evaluation           nuScenes detection evaluation vs the devkit's DetectionEval
                                    (6,000 samples, 500 boxes each; the devkit takes many minutes)

--json FILE writes the rows: a list of {name, input, seconds, baseline, baseline_seconds,
speedup}, so runs can be compared across commits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.common import Row, settle_allocator  # noqa: E402

console = Console(width=160)
OPS_AREAS = ("voxelize", "grouping", "boxes")


def machine() -> dict[str, str]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cores": str(os.cpu_count()),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def print_rows(title: str, rows: list[Row]) -> None:
    table = Table(title=f"{title}  ({', '.join(f'{k} {v}' for k, v in machine().items())})")
    memory = any(row.peak_mib is not None for row in rows)
    columns = ["op", "input", "ours (ms)", "baseline", "baseline (ms)", "speed-up"]
    columns += ["ours peak (MiB)", "baseline peak (MiB)"] if memory else []
    for column in columns:
        table.add_column(column, justify="right" if "(" in column or column == "speed-up" else "left")
    for row in rows:
        cells = [
            row.name, row.input, f"{row.seconds * 1e3:.3f}", row.baseline or "-",
            "-" if row.baseline_seconds is None else f"{row.baseline_seconds * 1e3:.3f}",
            "-" if row.speedup is None else f"{row.speedup:.2f}x",
        ]
        if memory:
            cells += ["-" if value is None else f"{value:.0f}" for value in (row.peak_mib, row.baseline_peak_mib)]
        table.add_row(*cells)
    console.print(table)


def ops_rows(repeats: int, areas: list[str]) -> list[Row]:
    import importlib

    rows: list[Row] = []
    for area in areas:
        rows += importlib.import_module(f"benchmarks.{area}").rows(repeats)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="simulator and nuScenes reading vs the devkit")
    data.add_argument("--data", type=Path, default=None, help="a nuScenes v1.0-trainval root (default: synthetic)")
    data.add_argument("--scenes", type=int, default=4, help="synthetic scenes when --data is not given")
    data.add_argument("--samples-per-scene", type=int, default=10)
    ops = commands.add_parser("ops", help="voxelization, window grouping and box ops")
    ops.add_argument("--areas", nargs="+", choices=OPS_AREAS, default=list(OPS_AREAS))
    models = commands.add_parser("models", help="backbone latency and memory: FlatFormer vs SST vs spconv")
    models.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    for command in (data, ops, models):
        command.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (median)")
        command.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    evaluation = commands.add_parser("evaluation", help="nuScenes detection evaluation vs the devkit")
    evaluation.add_argument("--scenes", type=int, default=150, help="val scenes of 40 samples (150: 6,000 samples)")
    evaluation.add_argument("--boxes-per-sample", type=int, default=500)
    evaluation.add_argument("--data", type=Path, default=None, help="folder to keep and reuse the generated files")
    evaluation.add_argument("--repeats", type=int, default=3, help="timed calls of ours (median; the devkit runs once)")
    evaluation.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settle_allocator()
    if args.command == "data":
        from benchmarks import data

        rows = data.rows(args.repeats, args.data, args.scenes, args.samples_per_scene)
    elif args.command == "models":
        from benchmarks import models

        rows = models.rows(args.repeats, memory=not args.no_memory)
    elif args.command == "evaluation":
        from benchmarks import evaluation

        rows = evaluation.rows(args.repeats, args.scenes, args.boxes_per_sample, args.data)
    else:
        rows = ops_rows(args.repeats, args.areas)
    print_rows(args.command, rows)
    if args.json is not None:
        args.json.write_text(json.dumps([row.to_json() for row in rows], indent=2))
        console.print(f"rows written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
