"""A scene frame by frame: BEV or 3D pictures of each frame, written as an animated GIF
(Pillow) or an MP4 (imageio-ffmpeg, when installed)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .bev import BevView, PointStyle, bev_image
from .camera import Camera
from .frames import Frame
from .scene3d import Scene3DStyle, render_3d_image

VIEWS = ("bev", "3d")
ANIMATION_SUFFIXES = (".gif", ".mp4")


def frame_image(
    frame: Frame,
    view: str = "bev",
    *,
    bev_view: BevView | None = None,
    camera: Camera | None = None,
    points: PointStyle | None = None,
    style: Scene3DStyle | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """One frame as an (H, W, 3) uint8 picture: a BEV (predictions dashed over ground truth) or
    a 3D view; the size depends only on the view settings, so frames of a scene stack."""
    points = points or PointStyle()
    if view == "bev":
        return bev_image(frame.sample, frame.predictions, frame.scores, view=bev_view, title=frame.title, points=points)
    if view == "3d":
        return render_3d_image(frame.sample, frame.predictions, frame.scores, camera=camera, color_by=points.color_by,
                               labels=points.labels, label_names=points.label_names, style=style, backend=backend,
                               title=frame.title).image
    raise ValueError(f"view must be one of {VIEWS}, got {view!r}")


def mp4_available() -> bool:
    """Whether MP4 writing works here (it needs the imageio-ffmpeg package)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_gif(images: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 5.0) -> Path:
    """Animated GIF of (H, W, 3) uint8 frames, looping. Pillow merges consecutive identical frames."""
    from PIL import Image

    frames = [Image.fromarray(np.ascontiguousarray(image)) for image in _checked(images)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(1, round(1000.0 / fps)), loop=0)
    return path


def write_mp4(images: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 5.0) -> Path:
    """H.264 MP4 of (H, W, 3) uint8 frames (padded with black to multiples of 16 pixels)."""
    if not mp4_available():
        raise ValueError(f"{path}: writing MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); "
                         "write a .gif instead")
    import imageio_ffmpeg

    images = _checked(images)
    height, width = images[0].shape[:2]
    padded_height, padded_width = -(-height // 16) * 16, -(-width // 16) * 16
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (padded_width, padded_height), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=1)
    writer.send(None)
    try:
        for image in images:
            canvas = np.zeros((padded_height, padded_width, 3), np.uint8)
            canvas[:height, :width] = image
            writer.send(canvas)
    finally:
        writer.close()
    return path


def write_animation(images: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 5.0) -> Path:
    """GIF or MP4 by the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(images, path, fps)
    if suffix == ".mp4":
        return write_mp4(images, path, fps)
    raise ValueError(f"{path}: animation file must end in {' or '.join(ANIMATION_SUFFIXES)}")


def render_sequence(frames: Iterable[Frame], path: str | os.PathLike, *, view: str = "bev", fps: float = 5.0,
                    **options) -> Path:
    """Render every frame (see :func:`frame_image` for ``view`` and ``options``) and write
    them as a GIF or MP4 at ``path``; returns the path."""
    suffix = Path(path).suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise ValueError(f"{path}: animation file must end in {' or '.join(ANIMATION_SUFFIXES)}")
    if suffix == ".mp4" and not mp4_available():
        raise ValueError(f"{path}: writing MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); "
                         "write a .gif instead")
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    images = [frame_image(frame, view, **options) for frame in frames]
    return write_animation(images, path, fps)


def _checked(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    images = [np.asarray(image) for image in images]
    if not images:
        raise ValueError("an animation needs at least one frame")
    shape = images[0].shape
    for index, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"frame {index} must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
        if image.shape != shape:
            raise ValueError(f"frame {index} has shape {image.shape}, frame 0 {shape}: all frames must match")
    return images
