#!/usr/bin/env python
"""The main job, end to end on one machine with no download: synthetic data, training,
evaluation, pictures.

  quickstart.py [--work-dir work_dirs/demo] [--data datasets/synthetic_nuscenes] [key=value ...]

1. simulates a nuScenes-layout dataset (unless the same one is already there) and prepares its
   info files and GT-sampling database;
2. trains FlatFormer-CenterPoint (configs/flatformer_centerpoint_synthetic.yaml) on its train
   scenes;
3. evaluates the last checkpoint on the held-out val scenes with the nuScenes detection benchmark;
4. writes into the work directory:
     checkpoints/last.ckpt        the trained model (tools/test.py, tools/demo.py, tools/export.py)
     csv/, tensorboard/           the training logs; config.yaml, the config of the run
     metrics_summary.json         the nuScenes devkit's layout (label_aps, nd_score, ...)
     metrics_details.json         precision-recall curves, the devkit's layout
     results_nusc.json            the predictions as a nuScenes submission (the devkit reads it)
     bev_<i>.png                  ground truth beside the predictions, first val samples
     curves.png, class_ap.png     training curves; AP per class and distance threshold
     pr_curves.png                precision-recall curves per class
     quickstart.json              timings, throughput and the headline metrics
   and prints the metrics table.

Overrides (key=value, as in tools/train.py) change the config, e.g. train.max_epochs=2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from rich.console import Console

console = Console(width=160)
PREPARED_STAMP = "prepared.stamp"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "flatformer_centerpoint_synthetic.yaml"
NO_VALIDATION = 10**9
"""Epochs between validations during training: never (the held-out scenes are scored once, after)."""
CAR_AP_TARGET = 0.5
"""Car AP at the 2 m threshold the main job is meant to reach on the held-out scenes."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, value as YAML")
    parser.add_argument("--work-dir", type=Path, default=Path("work_dirs/demo"), help="where everything is written")
    parser.add_argument("--data", type=Path, default=Path("datasets/synthetic_nuscenes"),
                        help="synthetic dataset root (generated when absent or made with other settings)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="experiment config")
    parser.add_argument("--scenes", type=int, default=40, help="simulated scenes; 20 %% of them are held out")
    parser.add_argument("--samples-per-scene", type=int, default=6, help="keyframes per scene")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation (training uses train.seed)")
    parser.add_argument("--renders", type=int, default=3, help="val samples drawn as ground truth vs predictions")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_intermixed_args(argv)
    if args.scenes < 2 or args.samples_per_scene < 1 or args.renders < 0:
        parser.error("need --scenes >= 2 (train and val), --samples-per-scene >= 1 and --renders >= 0")
    return args


def ensure_dataset(args: argparse.Namespace) -> float:
    """Generate and prepare the dataset unless one made with the same settings exists; seconds spent."""
    from pointformer.data.prepare import prepare_dataset
    from pointformer.data.synthetic.generate import generate_nuscenes, read_settings

    settings = read_settings(args.data)
    wanted = (args.scenes, args.samples_per_scene, args.seed)
    prepared = (args.data / PREPARED_STAMP).is_file()
    if settings and settings.complete and prepared and (settings.num_scenes, settings.samples_per_scene, settings.seed) == wanted:
        console.print(f"using the synthetic dataset in {args.data}")
        return 0.0
    (args.data / PREPARED_STAMP).unlink(missing_ok=True)
    start = time.perf_counter()
    report = generate_nuscenes(args.data, args.scenes, args.samples_per_scene, args.seed, progress=not args.no_progress)
    prepare_dataset(args.data, "nuscenes")
    (args.data / PREPARED_STAMP).touch()
    seconds = time.perf_counter() - start
    console.print(
        f"generated {report.samples} samples ({report.sweeps} sweeps, {report.points_per_sweep:,.0f} points per "
        f"sweep, {report.sweeps_per_second:.1f} sweeps/s simulated) and prepared them in {seconds:.1f} s"
    )
    return seconds


def load_demo_config(args: argparse.Namespace):
    """The experiment config on ``--data``; validation is left to the evaluation after training
    (it would score the same held-out scenes twice), so no best checkpoint either."""
    from pointformer.engine.config import load_config

    config = load_config(args.config, [f"dataset.root={args.data}", "train.checkpoint.monitor=null", *args.overrides])
    config.train.val_interval = NO_VALIDATION
    return config


def run_training(config, args: argparse.Namespace) -> dict[str, float]:
    """Fit; the training figures for the report."""
    from pointformer.engine.callbacks import Throughput
    from pointformer.engine.runner import RunOptions, train

    start = time.perf_counter()
    trainer, _ = train(config, RunOptions(work_dir=args.work_dir, progress_bar=not args.no_progress))
    seconds = time.perf_counter() - start
    throughput = next(c for c in trainer.callbacks if isinstance(c, Throughput))
    return {"train_seconds": seconds, "steps": trainer.global_step, "epochs": trainer.current_epoch,
            "samples_per_second": throughput.samples_per_second}


def run_evaluation(config, args: argparse.Namespace) -> tuple[object, list[Path], float]:
    """Score the last checkpoint on the held-out scenes; (evaluation, files written, seconds)."""
    from pointformer.engine.outputs import render_test_samples, write_test_outputs
    from pointformer.engine.runner import RunOptions, evaluate

    start = time.perf_counter()
    checkpoint = args.work_dir / "checkpoints" / "last.ckpt"
    options = RunOptions(work_dir=args.work_dir, progress_bar=not args.no_progress, loggers=False)
    module, datamodule = evaluate(config, checkpoint, options)
    written = write_test_outputs(config, module, datamodule, args.work_dir)
    written += render_test_samples(config, module, datamodule, args.work_dir, args.renders)
    return module.test_evaluation, written, time.perf_counter() - start


def plot_run(args: argparse.Namespace) -> list[Path]:
    """curves.png, class_ap.png and pr_curves.png of the work directory."""
    from pointformer.viz.plots import plot_run as plot_run_folder

    return plot_run_folder(args.work_dir, args.work_dir)


def report(args: argparse.Namespace, evaluation, figures: dict[str, float]) -> dict[str, float]:
    """Print the metrics table and the headline figures; write them to quickstart.json."""
    summary = evaluation.summary
    car_ap_2m = float(summary["label_aps"]["car"]["2.0"])
    headline = {
        **figures,
        "car_ap_2m": car_ap_2m,
        "car_ap_2m_target": CAR_AP_TARGET,
        "mAP": float(summary["mean_ap"]),
        "NDS": float(summary["nd_score"]),
        "ap_2m": {name: float(aps["2.0"]) for name, aps in summary["label_aps"].items()},
        "ap": {name: float(value) for name, value in summary["mean_dist_aps"].items()},
    }
    (args.work_dir / "quickstart.json").write_text(json.dumps(headline, indent=2))
    if evaluation.table() is not None:
        console.print(evaluation.table())
    verdict = "[green]reached[/green]" if car_ap_2m >= CAR_AP_TARGET else "[red]not reached[/red]"
    console.print(
        f"trained {figures['steps']} steps in {figures['train_seconds'] / 60:.1f} min "
        f"({figures['samples_per_second']:.2f} samples/s); data {figures['data_seconds']:.0f} s, "
        f"evaluation {figures['eval_seconds']:.0f} s, total {figures['total_seconds'] / 60:.1f} min"
    )
    console.print(f"car AP @ 2 m on the held-out scenes: {car_ap_2m:.3f} (target {CAR_AP_TARGET}: {verdict}); "
                  f"mAP {headline['mAP']:.3f}, NDS {headline['NDS']:.3f}")
    return headline


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        figures = {"data_seconds": ensure_dataset(args)}
        config = load_demo_config(args)
        figures.update(run_training(config, args))
        evaluation, written, figures["eval_seconds"] = run_evaluation(config, args)
        written += plot_run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    figures["total_seconds"] = time.perf_counter() - start
    report(args, evaluation, figures)
    for path in written:
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
