"""The interactive open3d viewer: step through frames, change the point colouring, filter by
class and score.

Keys: N / right arrow next frame, P / left arrow previous, M next point colouring, C next class
filter (all, then each class present in the frame), ] and [ raise and lower the score threshold
by 0.05, H help, Q / Esc quit. Each frame's boxes and scores are also printed to the terminal
(the legacy open3d window draws no text).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .colors import POINT_COLOR_MODES
from .frames import Frame, filter_frame
from .scene3d import Scene3DStyle, SceneGeometry, build_scene, open3d_geometries

KEY_HELP = ("N/right: next  P/left: previous  M: point colours  C: class filter  "
            "]/[: score threshold +/-0.05  H: help  Q/Esc: quit")
THRESHOLD_STEP = 0.05


@dataclass
class ViewerState:
    """Where the viewer is: frame ``index`` of ``frames``, point colouring ``color_by``, the
    class filter (None: all classes) and the predictions' ``score_threshold``."""

    frames: Sequence[Frame]
    index: int = 0
    color_by: str = "height"
    classes: frozenset[str] | None = None
    score_threshold: float = 0.0
    color_modes: tuple[str, ...] = POINT_COLOR_MODES
    _cache: dict[int, Frame] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.frames) == 0:
            raise ValueError("the viewer needs at least one frame")
        if not 0 <= self.index < len(self.frames):
            raise ValueError(f"start index {self.index} out of range for {len(self.frames)} frames")
        if self.color_by not in self.color_modes:
            raise ValueError(f"color_by must be one of {self.color_modes}, got {self.color_by!r}")
        if self.classes is not None:
            self.classes = frozenset(self.classes)

    def raw_frame(self) -> Frame:
        """The current frame, unfiltered (loaded once)."""
        if self.index not in self._cache:
            self._cache.clear()
            self._cache[self.index] = self.frames[self.index]
        return self._cache[self.index]

    def frame(self) -> Frame:
        """The current frame with the class filter and score threshold applied."""
        return filter_frame(self.raw_frame(), self.classes, self.score_threshold)

    def next(self) -> None:
        self.index = (self.index + 1) % len(self.frames)

    def previous(self) -> None:
        self.index = (self.index - 1) % len(self.frames)

    def cycle_color(self) -> None:
        position = self.color_modes.index(self.color_by) if self.color_by in self.color_modes else -1
        self.color_by = self.color_modes[(position + 1) % len(self.color_modes)]

    def present_classes(self) -> list[str]:
        """Classes of the current frame's ground truth and predictions, sorted."""
        frame = self.raw_frame()
        names = set(frame.sample.annotations.names)
        if frame.predictions is not None:
            names |= set(frame.predictions.names)
        return sorted(names)

    def cycle_class(self) -> None:
        """All classes -> the first present class -> the next ... -> all classes."""
        options: list[frozenset[str] | None] = [None] + [frozenset([name]) for name in self.present_classes()]
        position = options.index(self.classes) if self.classes in options else 0
        self.classes = options[(position + 1) % len(options)]

    def change_threshold(self, delta: float) -> None:
        self.score_threshold = float(np.clip(round(self.score_threshold + delta, 6), 0.0, 1.0))

    def geometry(self, style: Scene3DStyle | None = None) -> SceneGeometry:
        """The current frame's scene, falling back to height colours where the frame lacks what
        the chosen colouring needs (e.g. no labels for 'semantic')."""
        frame = self.frame()
        try:
            return build_scene(frame.sample, frame.predictions, frame.scores, color_by=self.color_by, style=style)
        except ValueError:
            return build_scene(frame.sample, frame.predictions, frame.scores, color_by="height", style=style)

    def status(self) -> str:
        """One line per box of the current frame, after a header naming the frame and settings."""
        frame = self.frame()
        sample = frame.sample
        classes = "all" if self.classes is None else ", ".join(sorted(self.classes))
        header = (f"[{self.index + 1}/{len(self.frames)}] {frame.title or sample.meta.get('sample_id', '')}: "
                  f"{sample.num_points} points, {len(sample.annotations)} GT boxes; colour {self.color_by}; "
                  f"classes {classes}; score >= {self.score_threshold:.2f}")
        lines = [header]
        if frame.predictions is not None:
            scores = frame.scores if frame.scores is not None else [float("nan")] * len(frame.predictions)
            centers = frame.predictions.boxes.center.detach().cpu().numpy()
            for name, score, center in zip(frame.predictions.names, scores, centers):
                lines.append(f"  {name:<22} score {score:.3f} at ({center[0]:.1f}, {center[1]:.1f}) m")
        return "\n".join(lines)


def has_display() -> bool:
    """Whether a window can be shown: on Linux an X11 or Wayland display must be set."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_viewer(state: ViewerState, *, style: Scene3DStyle | None = None, width: int = 1280, height: int = 800,
                visible: bool = True):
    """An open3d key-callback window showing ``state``'s frame, with the keys of :data:`KEY_HELP`
    bound. Returns (visualizer, {key code: callback}); each callback changes the state and
    redraws, as a key press would."""
    import open3d as o3d

    visualizer = o3d.visualization.VisualizerWithKeyCallback()
    if not visualizer.create_window("pointformer", width=width, height=height, visible=visible):
        raise RuntimeError("open3d could not open a window; render to PNG with --out instead")
    options = visualizer.get_render_option()
    options.background_color = np.zeros(3)
    options.point_size = float((style or Scene3DStyle()).point_size)

    def show(reset_view: bool) -> bool:
        visualizer.clear_geometries()
        for _, item in open3d_geometries(state.geometry(style)):
            visualizer.add_geometry(item, reset_bounding_box=reset_view)
        print(state.status(), flush=True)
        return True

    def action(step):
        def callback(_visualizer) -> bool:
            step()
            return show(False)

        return callback

    bindings = {
        ord("N"): state.next, 262: state.next, ord("P"): state.previous, 263: state.previous,
        ord("M"): state.cycle_color, ord("C"): state.cycle_class,
        ord("]"): lambda: state.change_threshold(THRESHOLD_STEP),
        ord("["): lambda: state.change_threshold(-THRESHOLD_STEP),
        ord("H"): lambda: print(KEY_HELP, flush=True),
    }
    callbacks = {key: action(step) for key, step in bindings.items()}
    for key, callback in callbacks.items():
        visualizer.register_key_callback(key, callback)
    show(True)
    return visualizer, callbacks


def run_viewer(state: ViewerState, *, style: Scene3DStyle | None = None, width: int = 1280, height: int = 800) -> None:
    """Open the viewer window on ``state`` and run until it is closed. Raises ``RuntimeError``
    where there is no display (a hidden window would wait for keys nobody can press)."""
    if not has_display():
        raise RuntimeError("no display (DISPLAY / WAYLAND_DISPLAY unset): the interactive viewer needs one; "
                           "render to PNG with --out instead")
    visualizer, _ = open_viewer(state, style=style, width=width, height=height)
    print(KEY_HELP, flush=True)
    visualizer.run()
    visualizer.destroy_window()
