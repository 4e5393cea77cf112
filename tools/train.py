#!/usr/bin/env python
"""Train a model from a YAML config.

  train.py CONFIG [key.sub.key=value ...] [--resume [CKPT]] [--devices N] [--work-dir DIR]

CONFIG: a file of configs/ (it may inherit others through _base_). Overrides replace any key,
the value read as YAML, e.g.  train.max_epochs=2  dataset.batch_size=4
model.backbone.channels=96  train.optimizer.lr=2e-3. A misspelt key stops before training
with the nearest valid name.

Writes into the work directory (default work_dirs/<config name>/): config.yaml (the config as
run), checkpoints/last.ckpt (every validation, every train.checkpoint.every_n_steps steps /
every_n_minutes, at the end) and checkpoints/best.ckpt (best train.checkpoint.monitor),
TensorBoard events (tensorboard/) and CSV logs (csv/). The progress bar shows the losses and
training samples per second.

--resume continues a stopped or killed run from its last.ckpt (or the checkpoint given) with
the same weights, optimiser, schedule, data order (mid-epoch included) and random state.
--devices N > 1 trains with DDP (Lightning starts the processes; under torchrun or SLURM use
--devices per node and --num-nodes); batch norm then uses the global batch, and the batch size
of the config is per device.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

RESUME_LAST = "auto"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, value as YAML")
    parser.add_argument("--resume", nargs="?", const=RESUME_LAST, default=None, metavar="CKPT",
                        help="resume from CKPT (default: <work-dir>/checkpoints/last.ckpt)")
    parser.add_argument("--devices", type=int, default=1, help="devices (GPUs, or CPU processes) per node; >1 runs DDP")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes for multi-node DDP (torchrun / SLURM)")
    parser.add_argument("--work-dir", type=Path, default=None, help="output folder (default work_dirs/<config name>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    parser.add_argument("--debug-digest", action="store_true",
                        help="debugging DDP: each rank writes <work-dir>/debug/rank<r>.json with its step losses and "
                             "a digest of its final weights")
    args = parser.parse_intermixed_args(argv)
    # "--resume key=value": argparse gives the override to --resume; put it back.
    if args.resume not in (None, RESUME_LAST) and "=" in args.resume and not Path(args.resume).exists():
        args.overrides.append(args.resume)
        args.resume = RESUME_LAST
    if args.devices < 1 or args.num_nodes < 1:
        parser.error("--devices and --num-nodes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pointformer.engine.config import load_config
    from pointformer.engine.runner import RunOptions, default_work_dir, train

    try:
        config = load_config(args.config, args.overrides)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    work_dir = args.work_dir or default_work_dir(args.config)
    options = RunOptions(work_dir=work_dir, devices=args.devices, num_nodes=args.num_nodes,
                         progress_bar=not args.no_progress, debug_digest=args.debug_digest)
    start = time.perf_counter()
    try:
        trainer, _ = train(config, options, resume=args.resume)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if trainer.is_global_zero:
        report(trainer, work_dir, time.perf_counter() - start)
    return 0


def report(trainer, work_dir: Path, seconds: float) -> None:
    """Where the checkpoints are and the last validation metrics."""
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
    print(f"trained {trainer.global_step} steps ({trainer.current_epoch} epochs) in {seconds:.0f} s; "
          f"work dir {work_dir}")
    for name in ("val/mAP", "val/NDS", "val/mIoU", "val/mAPH_L2", "val/loss"):
        if name in metrics:
            print(f"  {name} = {metrics[name]:.4f}")
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is not None and callback.best_model_path:
            score = "" if callback.best_model_score is None else f" ({callback.monitor} {float(callback.best_model_score):.4f})"
            print(f"  best checkpoint: {callback.best_model_path}{score}")
    print(f"  last checkpoint: {work_dir / 'checkpoints' / 'last.ckpt'}")


if __name__ == "__main__":
    sys.exit(main())
