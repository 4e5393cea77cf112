#!/usr/bin/env python
"""Look at data: render a dataset sample to a bird's-eye-view PNG.

  visualize.py sample --data ROOT|INFO_FILE [--split val] [--index 0] --out bev.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pointformer.data.infos import info_root, load_infos, load_sample
from pointformer.data.readers.layouts import open_reader
from pointformer.viz.bev import BevView, render_bev


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="one dataset sample as a BEV PNG")
    sample.add_argument("--data", type=Path, required=True,
                        help="a dataset root (layout detected) or a pointformer_infos_*.json file")
    sample.add_argument("--split", default=None, help="split of a dataset root (e.g. train, val, training)")
    sample.add_argument("--index", type=int, default=0, help="sample index within the split")
    sample.add_argument("--num-sweeps", type=int, default=None, help="earlier sweeps to merge (default: all recorded)")
    sample.add_argument("--range", type=float, default=60.0, help="half extent of the view in metres")
    sample.add_argument("--out", type=Path, required=True, help="PNG to write")
    return parser.parse_args(argv)


def load_dataset_sample(data: Path, split: str | None, index: int, num_sweeps: int | None):
    if data.suffix == ".json":
        infos, header = load_infos(data)
        root = info_root(data, header)
    else:
        reader = open_reader(data, split=split)
        infos, root = reader.infos, data
    if not -len(infos) <= index < len(infos):
        raise ValueError(f"--index {index} out of range: {data} has {len(infos)} samples")
    return load_sample(infos[index], root, num_sweeps=num_sweeps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sample = load_dataset_sample(args.data, args.split, args.index, args.num_sweeps)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    path = render_bev(sample, args.out, view=BevView(half_extent=args.range))
    print(f"{sample.num_points} points, {len(sample.annotations)} boxes -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
