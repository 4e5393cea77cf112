#!/usr/bin/env python
"""The main job on the embedded default data, end to end on one machine.

Generates a small synthetic nuScenes-layout dataset (unless it is already there), prepares
its info files and GT database, and renders bird's-eye views of validation samples with their
boxes into the work directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pointformer.data.infos import load_infos, load_sample
from pointformer.data.prepare import info_file_name, prepare_dataset
from pointformer.viz.bev import render_bev

console = Console()
PREPARED_STAMP = "prepared.stamp"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path("work_dirs/demo"))
    parser.add_argument("--data", type=Path, default=Path("datasets/synthetic_nuscenes"),
                        help="synthetic dataset root (generated when absent)")
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--samples-per-scene", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renders", type=int, default=2, help="validation samples to render")
    return parser.parse_args(argv)


def ensure_dataset(args: argparse.Namespace) -> None:
    """Generate and prepare the dataset unless one made with the same settings exists."""
    from pointformer.data.synthetic.generate import generate_nuscenes, read_settings

    settings = read_settings(args.data)
    wanted = (args.scenes, args.samples_per_scene, args.seed)
    prepared = (args.data / PREPARED_STAMP).is_file()
    if settings and settings.complete and prepared and (settings.num_scenes, settings.samples_per_scene, settings.seed) == wanted:
        console.print(f"using the synthetic dataset in {args.data}")
        return
    (args.data / PREPARED_STAMP).unlink(missing_ok=True)
    start = time.perf_counter()
    report = generate_nuscenes(args.data, args.scenes, args.samples_per_scene, args.seed)
    prepare_dataset(args.data, "nuscenes")
    (args.data / PREPARED_STAMP).touch()
    console.print(
        f"generated {report.samples} samples ({report.sweeps} sweeps, {report.points_per_sweep:,.0f} points per "
        f"sweep, {report.sweeps_per_second:.1f} sweeps/s simulated) in {time.perf_counter() - start:.1f} s"
    )


def render_validation(args: argparse.Namespace) -> list[Path]:
    infos, _ = load_infos(args.data / info_file_name("val"))
    table = Table(title="validation samples")
    for column in ("sample", "points", "boxes", "classes", "image"):
        table.add_column(column)
    paths = []
    for index in range(min(args.renders, len(infos))):
        sample = load_sample(infos[index], args.data)
        path = render_bev(sample, args.work_dir / f"val_{index:02d}_bev.png")
        classes = sorted(set(sample.annotations.names))
        table.add_row(sample.meta["sample_id"][:8], f"{sample.num_points:,}", str(len(sample.annotations)),
                      ", ".join(classes), str(path))
        paths.append(path)
    console.print(table)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    ensure_dataset(args)
    render_validation(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
