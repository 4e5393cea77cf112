"""Small samples and picture checks shared by the viz tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pointformer.structures import Annotations, Boxes3D, Sample
from pointformer.viz.colors import hex_to_rgb

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"


def make_sample(points=None, boxes=None, names=(), *, labels=None, columns=("x", "y", "z", "intensity"),
                meta=None, instance_ids=None) -> Sample:
    points = torch.zeros((0, len(columns))) if points is None else torch.as_tensor(points, dtype=torch.float32)
    boxes = torch.zeros((0, 7)) if boxes is None else torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 7)
    return Sample(points, tuple(columns), Annotations.from_boxes(Boxes3D(boxes), list(names)),
                  point_labels=None if labels is None else torch.as_tensor(labels, dtype=torch.int64),
                  instance_ids=None if instance_ids is None else torch.as_tensor(instance_ids, dtype=torch.int64),
                  meta=dict(meta or {}))


def load_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def color_mask(image: np.ndarray, color: str, tol: int = 6) -> np.ndarray:
    """Pixels within ``tol`` (0..255 per channel) of a hex colour."""
    target = np.round(np.array(hex_to_rgb(color)) * 255).astype(np.int16)
    return np.all(np.abs(image[..., :3].astype(np.int16) - target) <= tol, axis=-1)


def near(mask: np.ndarray, row: int, col: int, radius: int = 2) -> bool:
    """Whether the mask has a pixel within ``radius`` of (row, col)."""
    return bool(mask[max(0, row - radius):row + radius + 1, max(0, col - radius):col + radius + 1].any())
