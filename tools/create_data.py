#!/usr/bin/env python
"""Create datasets and their training files.

  create_data.py synthetic --out DIR --scenes N --samples-per-scene M --seed S [--format waymo]
      simulate a dataset (nuScenes layout by default), then build its info files and GT database
  create_data.py nuscenes|kitti|waymo|custom --root DIR
      build info files (pointformer_infos_<split>.json) and the GT database for a dataset root
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pointformer.data.prepare import PreparedDataset, prepare_dataset

console = Console()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    synthetic = commands.add_parser("synthetic", help="simulate a dataset and prepare it")
    synthetic.add_argument("--out", type=Path, required=True, help="dataset root to write")
    synthetic.add_argument("--scenes", type=int, default=10, help="scenes (segments) in all splits")
    synthetic.add_argument("--samples-per-scene", type=int, default=10, help="keyframes (frames) per scene")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--val-fraction", type=float, default=0.2, help="share of scenes in the val split")
    synthetic.add_argument("--format", choices=("nuscenes", "waymo"), default="nuscenes", help="on-disk layout")
    _add_prepare_options(synthetic)

    for layout in ("nuscenes", "kitti", "waymo", "custom"):
        real = commands.add_parser(layout, help=f"prepare a {layout} root (info files, GT database)")
        real.add_argument("--root", type=Path, required=True, help="dataset root (see datasets/README.md)")
        real.add_argument("--version", default=None, help="nuScenes table folder, e.g. v1.0-trainval")
        real.add_argument("--splits", nargs="+", default=None, help="splits to write (default: all present)")
        real.add_argument("--out-dir", type=Path, default=None, help="where info files go (default: the root)")
        _add_prepare_options(real)
    return parser.parse_args(argv)


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-sweeps", type=int, default=None,
                        help="earlier sweeps recorded per sample (default: nuScenes 9, others 0)")
    parser.add_argument("--no-gt-database", action="store_true", help="skip the GT-sampling database")


def create_synthetic(args: argparse.Namespace) -> PreparedDataset:
    from pointformer.data.synthetic.generate import generate_nuscenes, generate_waymo

    generate = generate_nuscenes if args.format == "nuscenes" else generate_waymo
    start = time.perf_counter()
    report = generate(args.out, args.scenes, args.samples_per_scene, args.seed, val_fraction=args.val_fraction)
    table = Table(title=f"synthetic {args.format} dataset in {args.out}")
    for column in ("split", "scenes", "samples", "sweeps", "points/sweep", "sim sweeps/s", "write s"):
        table.add_column(column)
    table.add_row(
        ", ".join(f"{k}: {len(v)}" for k, v in report.scenes.items()), str(sum(map(len, report.scenes.values()))),
        str(report.samples), str(report.sweeps), f"{report.points_per_sweep:,.0f}",
        f"{report.sweeps_per_second:.2f}", f"{report.write_seconds:.1f}",
    )
    console.print(table)
    prepared = prepare_dataset(args.out, args.format, max_sweeps=args.max_sweeps, gt_database=not args.no_gt_database)
    console.print(f"generated and prepared in {time.perf_counter() - start:.1f} s")
    return prepared


def prepare_real(args: argparse.Namespace) -> PreparedDataset:
    return prepare_dataset(
        args.root, args.command, version=args.version, splits=args.splits, max_sweeps=args.max_sweeps,
        out_dir=args.out_dir, gt_database=not args.no_gt_database,
    )


def print_prepared(prepared: PreparedDataset) -> None:
    table = Table(title=f"{prepared.layout} root {prepared.root}")
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("info file")
    for split, path in prepared.info_files.items():
        table.add_row(split, str(prepared.sample_counts[split]), str(path))
    console.print(table)
    if prepared.gt_database is not None:
        console.print(f"GT database: {prepared.gt_database}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    args = parse_args(argv)
    try:
        prepared = create_synthetic(args) if args.command == "synthetic" else prepare_real(args)
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        return 1
    print_prepared(prepared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
