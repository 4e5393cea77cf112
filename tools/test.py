#!/usr/bin/env python
"""Evaluate a checkpoint on the test split of a config (dataset.splits.test).

  test.py CONFIG --ckpt PATH [--out DIR] [key=value ...] [--render N] [--devices N]

Writes into --out (default: <checkpoint folder>/../test/):
  metrics_summary.json   detection on nuScenes layouts: the nuScenes devkit's metrics_summary
                         layout (label_aps, mean_ap, tp_errors, nd_score, ...); Waymo: mAP / mAPH
                         per level and class; segmentation: mIoU, per-class IoU and accuracy
  metrics_details.json   nuScenes: the precision-recall curves (the devkit's metrics_details)
  results_nusc.json      detection on nuScenes layouts: the submission ({"meta", "results"},
                         global frame) that the official devkit evaluates
  results_waymo.json     detection with the Waymo benchmark: the predictions per frame
  bev_<i>.png            with --render N: ground truth (left) and predictions (right) of the
                         first N test samples, bird's-eye view

and prints the metrics table. The checkpoint's own model description (model_config, classes)
is used; the config supplies the dataset, the benchmark and the loader settings. Overrides as
in train.py (e.g. dataset.splits.test=train, train.limit_val_batches=4 for a quick look).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML config file the checkpoint was trained with (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, value as YAML")
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint (last.ckpt, best.ckpt, ...)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <ckpt folder>/../test)")
    parser.add_argument("--render", type=int, default=0, metavar="N", help="BEV images of the first N samples")
    parser.add_argument("--devices", type=int, default=1, help="devices to evaluate on (>1 runs DDP)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_intermixed_args(argv)
    if args.render < 0 or args.devices < 1:
        parser.error("--render must be >= 0 and --devices >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rich.console import Console

    from pointformer.engine.config import load_config
    from pointformer.engine.outputs import render_test_samples, write_test_outputs
    from pointformer.engine.runner import RunOptions, evaluate

    out = args.out or args.ckpt.resolve().parent.parent / "test"
    try:
        if not args.ckpt.is_file():
            raise FileNotFoundError(f"--ckpt {args.ckpt} not found")
        config = load_config(args.config, args.overrides, check_model=False)
        options = RunOptions(work_dir=out, devices=args.devices, progress_bar=not args.no_progress, loggers=False)
        module, datamodule = evaluate(config, args.ckpt, options)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if module.global_rank != 0:
        return 0
    evaluation = module.test_evaluation
    written = write_test_outputs(config, module, datamodule, out)
    if args.render:
        written += render_test_samples(config, module, datamodule, out, args.render)
    console = Console(width=160)
    if evaluation is not None and evaluation.table() is not None:
        console.print(evaluation.table())
    elif evaluation is None:
        console.print(f"no metrics: eval.benchmark is {config.eval.benchmark!r}")
    for path in written:
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
