#!/usr/bin/env python
"""Look at data: point clouds, ground truth, predictions, labels and training runs.

  visualize.py sample   --data ROOT|INFO_FILE [--split val] [--index 0] [--view bev 3d seg] [--out sample.png]
  visualize.py results  --data ROOT|INFO_FILE --results results_nusc.json [--index 0 | --sample ID] [--out cmp.png]
  visualize.py file     PATH [--labels LABELS.npy] [--label-names semantickitti] [--view 3d] [--out cloud.png]
  visualize.py sequence --data ROOT|INFO_FILE [--scene NAME|INDEX] [--results FILE] --out scene.gif|scene.mp4
  visualize.py run      RUN_DIR [--out DIR]

With --out, pictures are written (PNG; GIF/MP4 for sequence); several --view values write
<out stem>_<view>.png. Without --out, sample/results/file/sequence open the interactive open3d
viewer (keys: N/P next/previous, M colours, C class filter, ]/[ score threshold, Q quit).
Views: bev (points, boxes, headings, ego, rings, legend), 3d (perspective), seg (points by
semantic class), compare (ground truth and predictions side by side, BEV).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from pointformer.data.classes import NUSCENES_DETECTION_CLASSES
from pointformer.viz.bev import BevView, PointStyle, render_bev, render_bev_comparison
from pointformer.viz.camera import Camera
from pointformer.viz.colors import LABEL_SETS, POINT_COLOR_MODES
from pointformer.viz.frames import DatasetFrames, Frame, file_sample, filter_frame, open_infos, scene_indices
from pointformer.viz.scene3d import BACKENDS, Scene3DStyle, render_3d
from pointformer.viz.segmentation import render_segmentation

VIEWS = ("bev", "3d", "seg", "compare")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="a dataset sample (PNG, or the viewer over the dataset)")
    _add_data(sample)
    sample.add_argument("--index", type=int, default=0, help="sample index within the split")
    _add_views(sample, default="bev")

    results = commands.add_parser("results", help="a nuScenes results file over its dataset")
    _add_data(results)
    results.add_argument("--results", type=Path, required=True, help="nuScenes-format detection results JSON")
    results.add_argument("--index", type=int, default=0, help="sample index within the split")
    results.add_argument("--sample", default=None, help="sample id (nuScenes sample token) instead of --index")
    _add_views(results, default="compare")

    point_file = commands.add_parser("file", help="one point file (.bin, .pcd.bin, .npy, .pcd, .ply, .las)")
    point_file.add_argument("path", type=Path)
    point_file.add_argument("--columns", default=None,
                            help="comma-separated column names of a .bin/.npy (default by extension/width)")
    point_file.add_argument("--labels", type=Path, default=None, help="per-point labels (.npy integers or .label)")
    point_file.add_argument("--nuscenes-lidar", action="store_true",
                            help="the file is in nuScenes' LIDAR_TOP frame (x right, y forward): turn it into ours")
    point_file.add_argument("--recenter", action="store_true",
                            help="move the cloud's xy median and low z (5th percentile) to the origin "
                                 "(for clouds not centred on a sensor: maps, aerial scans)")
    _add_views(point_file, default="bev")

    sequence = commands.add_parser("sequence", help="a scene frame by frame (GIF/MP4, or the viewer)")
    _add_data(sequence)
    sequence.add_argument("--scene", default="0", help="scene name (or token / Waymo context) or index")
    sequence.add_argument("--results", type=Path, default=None, help="nuScenes results JSON to draw as predictions")
    sequence.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    sequence.add_argument("--fps", type=float, default=4.0)
    _add_views(sequence, default="bev", single=True)

    run = commands.add_parser("run", help="a training run folder: curves, per-class AP, PR curves")
    run.add_argument("run", type=Path, help="run folder (Lightning CSVLogger output, evaluation JSON)")
    run.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: RUN/plots)")
    return parser.parse_args(argv)


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True,
                        help="a dataset root (layout detected) or a pointformer_infos_*.json file")
    parser.add_argument("--split", default=None, help="split of a dataset root (e.g. train, val, training)")
    parser.add_argument("--num-sweeps", type=int, default=None,
                        help="earlier sweeps to merge (default: all recorded; 0 for semantic colours)")


def _add_views(parser: argparse.ArgumentParser, default: str, single: bool = False) -> None:
    choices = ("bev", "3d") if single else VIEWS
    parser.add_argument("--view", nargs=None if single else "+", choices=choices, default=default if single else [default],
                        help=f"what to draw (default {default})")
    parser.add_argument("--out", type=Path, default=None, help="file to write (interactive viewer without it)")
    parser.add_argument("--color-by", choices=POINT_COLOR_MODES, default="height", help="point colours")
    parser.add_argument("--label-names", choices=sorted(LABEL_SETS), default=None,
                        help="names of the semantic label ids (default: the dataset's)")
    parser.add_argument("--classes", default=None, help="comma-separated classes to show (default: all)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="hide predictions scoring below this")
    parser.add_argument("--range", type=float, default=60.0, help="half extent of the BEV (and 3D camera) in metres")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="3D renderer (auto: open3d if it works)")
    parser.add_argument("--width", type=int, default=960, help="3D image width in pixels")
    parser.add_argument("--height", type=int, default=720, help="3D image height in pixels")


# ------------------------------------------------------------------ pictures
def view_paths(out: Path, views: Sequence[str]) -> dict[str, Path]:
    """One path per view: ``out`` itself for one view, ``<stem>_<view><suffix>`` for several."""
    if len(views) == 1:
        return {views[0]: out}
    suffix = out.suffix or ".png"
    return {view: out.with_name(f"{out.stem}_{view}{suffix}") for view in dict.fromkeys(views)}


def render_views(frame: Frame, args: argparse.Namespace) -> list[Path]:
    """Write every requested view of one frame; returns the paths."""
    points = PointStyle(args.color_by, label_names=args.label_names)
    bev = BevView(half_extent=args.range)
    written = []
    for view, path in view_paths(args.out, args.view).items():
        sample = frame.sample
        if view == "bev":
            written.append(render_bev(sample, path, predictions=frame.predictions, scores=frame.scores, view=bev,
                                      title=frame.title, points=points))
        elif view == "3d":
            camera = Camera.chase(args.range, width=args.width, height=args.height)
            written.append(render_3d(sample, path, frame.predictions, frame.scores, camera=camera,
                                     color_by=args.color_by, label_names=args.label_names,
                                     style=Scene3DStyle(ring_max=args.range), backend=args.backend,
                                     title=frame.title))
        elif view == "seg":
            written.append(render_segmentation(sample, path, label_names=args.label_names, view=bev, title=frame.title))
        else:
            if frame.predictions is None:
                raise ValueError("--view compare needs predictions (use the results subcommand)")
            written.append(render_bev_comparison(sample, frame.predictions, path, scores=frame.scores, view=bev,
                                                 title=frame.title, points=points))
    return written


def _classes(args: argparse.Namespace) -> set[str] | None:
    return None if args.classes is None else {name.strip() for name in args.classes.split(",") if name.strip()}


def _num_sweeps(args: argparse.Namespace) -> int | None:
    """Labels exist on keyframe points only: semantic views load no sweeps unless asked to."""
    if args.num_sweeps is not None:
        return args.num_sweeps
    semantic = args.color_by == "semantic" or "seg" in (args.view if isinstance(args.view, list) else [args.view])
    return 0 if semantic else None


def _frames(args: argparse.Namespace, results: Path | None) -> DatasetFrames:
    infos, root = open_infos(args.data, args.split)
    predictions = None
    if results is not None:
        from pointformer.evaluation.nuscenes_results import read_results

        predictions = read_results(results, infos)
    return DatasetFrames(infos, root, num_sweeps=_num_sweeps(args), predictions=predictions,
                         class_names=NUSCENES_DETECTION_CLASSES)


def _pick(frames: DatasetFrames, index: int, sample_id: str | None) -> int:
    if sample_id is not None:
        ids = [info.sample_id for info in frames.infos]
        if sample_id not in ids:
            raise ValueError(f"--sample {sample_id!r} is not a sample of {frames.root} ({len(ids)} samples)")
        return ids.index(sample_id)
    if not -len(frames) <= index < len(frames):
        raise ValueError(f"--index {index} out of range: the data has {len(frames)} samples")
    return index % len(frames)


def _view_interactively(frames: Sequence[Frame], index: int, args: argparse.Namespace) -> None:
    from pointformer.viz.viewer import ViewerState, run_viewer

    state = ViewerState(frames, index=index, color_by=args.color_by, classes=_classes(args),
                        score_threshold=args.score_threshold)
    run_viewer(state)


def _report(frame: Frame, paths: list[Path]) -> None:
    predicted = "" if frame.predictions is None else f", {len(frame.predictions)} predictions"
    print(f"{frame.sample.num_points} points, {len(frame.sample.annotations)} boxes{predicted} -> "
          + ", ".join(map(str, paths)))


# ------------------------------------------------------------------ commands
def _show_dataset_frame(args: argparse.Namespace, results: Path | None, sample: str | None) -> int:
    """Render one frame of a dataset (with a results file's boxes when given), or open the viewer."""
    frames = _frames(args, results)
    index = _pick(frames, args.index, sample)
    if args.out is None:
        _view_interactively(frames, index, args)
        return 0
    frame = filter_frame(frames[index], _classes(args), args.score_threshold)
    _report(frame, render_views(frame, args))
    return 0


def command_sample(args: argparse.Namespace) -> int:
    return _show_dataset_frame(args, None, None)


def command_results(args: argparse.Namespace) -> int:
    return _show_dataset_frame(args, args.results, args.sample)


def command_file(args: argparse.Namespace) -> int:
    columns = None if args.columns is None else [c.strip() for c in args.columns.split(",")]
    sample = file_sample(args.path, columns, labels_path=args.labels)
    if args.nuscenes_lidar:
        from pointformer.data.readers.nuscenes import nuscenes_lidar_points_to_ours

        sample = sample.with_points(nuscenes_lidar_points_to_ours(sample.points))
    if args.recenter:
        sample = recentered(sample)
    elif sample.num_points:
        distance = float(sample.points[:, :2].median(dim=0).values.norm())
        if distance > args.range:
            print(f"note: the cloud's xy median lies {distance:.0f} m from the origin, outside the "
                  f"{args.range:g} m view; --recenter brings it into view", file=sys.stderr)
    frame = Frame(sample, title=f"{args.path.name}  {sample.num_points} points")
    if args.out is None:
        _view_interactively([frame], 0, args)
        return 0
    _report(frame, render_views(frame, args))
    return 0


def recentered(sample):
    """The sample moved so that its xy median and its 5th-percentile z are at the origin."""
    import torch

    if sample.num_points == 0:
        return sample
    xyz = sample.points[:, :3].double()
    shift = torch.cat([xyz[:, :2].median(dim=0).values, torch.quantile(xyz[:, 2], 0.05).reshape(1)])
    points = sample.points.clone()
    points[:, :3] = (xyz - shift).to(points.dtype)
    return sample.with_points(points)


def command_sequence(args: argparse.Namespace) -> int:
    from pointformer.viz.sequence import render_sequence

    frames = _frames(args, args.results)
    chosen = scene_indices(frames.infos, args.scene)
    if args.max_frames is not None:
        if args.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
        chosen = chosen[:args.max_frames]
    scene = DatasetFrames([frames.infos[i] for i in chosen], frames.root, num_sweeps=frames.num_sweeps,
                          predictions=frames.predictions, class_names=frames.class_names)
    if args.out is None:
        _view_interactively(scene, 0, args)
        return 0
    classes = _classes(args)
    titled = (_titled(filter_frame(frame, classes, args.score_threshold), position, len(scene))
              for position, frame in enumerate(scene))
    camera = Camera.chase(args.range, width=args.width, height=args.height)
    path = render_sequence(titled, args.out, view=args.view, fps=args.fps, bev_view=BevView(half_extent=args.range),
                           camera=camera, points=PointStyle(args.color_by, label_names=args.label_names),
                           style=Scene3DStyle(ring_max=args.range), backend=args.backend)
    print(f"{len(scene)} frames of scene {scene.infos[0].scene!r} -> {path}")
    return 0


def _titled(frame: Frame, position: int, count: int) -> Frame:
    meta = frame.sample.meta
    title = f"{meta.get('scene', '')}  frame {position + 1}/{count}  {meta.get('sample_id', '')}"
    return Frame(frame.sample, frame.predictions, frame.scores, title)


def command_run(args: argparse.Namespace) -> int:
    from pointformer.viz.plots import plot_run

    out = args.out if args.out is not None else args.run / "plots"
    for path in plot_run(args.run, out):
        print(path)
    return 0


COMMANDS = {"sample": command_sample, "results": command_results, "file": command_file,
            "sequence": command_sequence, "run": command_run}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
